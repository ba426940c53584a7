// cogs-chaos ha --failover-only: the failover benchmark of cogsd's replicas (docs/ha.md). A cloud with
// `--replicas` replicas on a private PostgreSQL, two servers per host, and no workload: `--kills`
// times, the leader is lost — SIGKILL and SIGSTOP in turn — and the run times the loss to the first
// mutation a new leader answers 2xx (MutationProber: POST /v1/flavors every 100 ms through every
// replica). A killed leader is restarted once the new one answered; a frozen one is thawed 5 s after
// the freeze at the earliest, must exit 75 by itself and is restarted then. Before each loss every
// replica runs and one of them leads.
//
// What must not happen meanwhile: a host declared down or a server evacuated (nothing but the
// control plane fails here), two replicas elected with one token, a thawed leader that goes on.
// Also reported: compute agents that fenced their hosts (a lease that ran out during a failover),
// servers no longer ACTIVE where they were.
#include <signal.h>

#include <filesystem>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "test/chaos/chaos_cloud.h"
#include "test/chaos/cloud_chaos.h"
#include "test/chaos/ha_checks.h"
#include "test/support/cloud_api.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr double kTargetS = 5;  // the target
constexpr double kLimitS = 15;  // slower fails the run (as `ha`)
constexpr Duration kFrozenAtLeast = 5s;
constexpr Duration kThawDeadline = 10s;

// The sum of an unlabelled counter over every agent's /metrics (-1 if one did not answer).
double AgentCounter(const ChaosCloud& cloud, const std::string& name) {
    double sum = 0;
    for (int h = 0; h < cloud.hosts(); ++h) {
        ApiClient agent(cloud.ProcessUrl(ChaosCloud::kAgent + h), "");
        auto r = agent.Call("GET", "/metrics", "", {}, 5s);
        if (!r || r->status != 200) {
            return -1;
        }
        const std::string key = "\n" + name + " ";
        const auto at = r->text.find(key);
        if (at != std::string::npos) {
            sum += std::atof(r->text.c_str() + at + key.size());
        }
    }
    return sum;
}

struct Loss {
    std::string kind;  // "sigkill" | "sigstop"
    std::string from;  // the leader lost
    std::string to;    // the next one
    std::optional<double> seconds;
    std::optional<double> thaw_exit_s;  // sigstop: SIGCONT -> exit 75
    int thaw_status = 0;
};

class Bench {
public:
    explicit Bench(ChaosCloud& cloud) : cloud_(cloud), t0_(SteadyClock::now()) {
        for (int r = 0; r < cloud.replicas(); ++r) {
            direct_.emplace_back(cloud.ProcessUrl(cloud.ReplicaProc(r)), cloud.admin_token());
        }
    }

    template <typename... Args>
    void Log(fmt::format_string<Args...> f, Args&&... args) {
        fmt::print(stderr, "[{:8.3f}s] {}\n", Seconds(SteadyClock::now() - t0_),
                   fmt::format(f, std::forward<Args>(args)...));
    }

    // Every replica runs and answers /healthz, one leads (its index), and a mutation goes through;
    // -1 after `timeout`.
    int AwaitSteady(Duration timeout) {
        int leader = -1;
        std::string last;
        const bool ok = WaitUntil(
            [&] {
                for (int r = 0; r < cloud_.replicas(); ++r) {
                    if (!cloud_.Running(cloud_.ReplicaProc(r))) {
                        last = cloud_.ReplicaId(r) + " is not running";
                        (void)cloud_.Restart(cloud_.ReplicaProc(r));
                        return false;
                    }
                    auto h = direct_[r].Call("GET", "/healthz", "", {}, 2s);
                    if (!h || h->status != 200) {
                        last = cloud_.ReplicaId(r) + " does not answer /healthz";
                        return false;
                    }
                }
                auto id = LeaderId(direct_[0], 2s);
                leader = id ? cloud_.ReplicaIndex(*id) : -1;
                if (leader < 0) {
                    last = "no replica leads";
                    return false;
                }
                ControlPlaneClient api(cloud_.api_urls(), cloud_.admin_token());
                auto m = api.Call("POST", "/v1/flavors",
                                  json::serialize(json::object{{"name", fmt::format("steady-{}", ++steady_)},
                                                               {"vcpus", 1},
                                                               {"ram_mb", 1},
                                                               {"disk_gb", 0}}),
                                  {}, 5s);
                if (!m || m->status / 100 != 2) {
                    last = "a mutation was refused";
                    return false;
                }
                return true;
            },
            timeout, 200ms);
        if (!ok) {
            Log("NOT STEADY after {:.0f}s: {}", Seconds(timeout), last);
            return -1;
        }
        return leader;
    }

    // Loses the leader `leader` (SIGKILL or SIGSTOP), times the failover, brings it back.
    Loss LoseLeader(int leader, bool freeze) {
        Loss loss;
        loss.kind = freeze ? "sigstop" : "sigkill";
        loss.from = cloud_.ReplicaId(leader);
        const int proc = cloud_.ReplicaProc(leader);
        const SteadyTime at = SteadyClock::now();
        if (freeze) {
            cloud_.Freeze(proc);
        } else {
            cloud_.Kill(proc);
        }
        clock_.Lost(loss.kind, at);
        Log("{} {} (the leader)", freeze ? "SIGSTOP" : "SIGKILL", loss.from);
        if (clock_.AwaitIdle(60s)) {
            loss.seconds = Seconds(*clock_.failovers().back().ended - at);
        }
        for (int r = 0; r < cloud_.replicas(); ++r) {
            if (r == leader) {
                continue;
            }
            if (auto id = LeaderId(direct_[r], 2s); id && !id->empty()) {
                loss.to = *id;
                break;
            }
        }
        Log("failover {} -> {}: {}", loss.from, loss.to.empty() ? "?" : loss.to,
            loss.seconds ? fmt::format("{:.3f}s", *loss.seconds) : "NOT WITHIN 60s");
        if (!freeze) {
            if (auto s = cloud_.Restart(proc); !s) {
                Log("restart of {} FAILED: {}", loss.from, s.error().message);
            }
            return loss;
        }
        std::this_thread::sleep_until(at + kFrozenAtLeast);
        cloud_.Thaw(proc);
        const SteadyTime thawed = SteadyClock::now();
        const bool exited = WaitUntil([&] { return !cloud_.Running(proc); }, kThawDeadline, 20ms);
        if (exited) {
            loss.thaw_status = cloud_.ExitStatus(proc).value_or(-1);
            loss.thaw_exit_s = Seconds(SteadyClock::now() - thawed);
            Log("thawed {} exited {:.3f}s after SIGCONT with status {}{}", loss.from, *loss.thaw_exit_s,
                loss.thaw_status, loss.thaw_status == 75 ? "" : ": NOT 75");
        } else {
            ApiClient metrics(cloud_.ProcessUrl(proc), "");
            const std::optional<bool> leads = ClaimsToLead(metrics, 2s);
            loss.thaw_status = leads.value_or(false) ? -2 : -1;
            Log("THAWED LEADER DID NOT EXIT: {} still runs {:.0f}s after SIGCONT{}; killing it", loss.from,
                Seconds(kThawDeadline), leads.value_or(false) ? " and CLAIMS TO LEAD" : "");
            cloud_.Kill(proc);
        }
        if (auto s = cloud_.Restart(proc); !s) {
            Log("restart of {} FAILED: {}", loss.from, s.error().message);
        }
        return loss;
    }

    FailoverClock& clock() { return clock_; }
    SteadyTime t0() const { return t0_; }

private:
    ChaosCloud& cloud_;
    const SteadyTime t0_;
    std::vector<ApiClient> direct_;  // each replica, admin token
    FailoverClock clock_;
    int steady_ = 0;
};

// Creates two servers per host (spread) and waits until they are ACTIVE: id -> host.
Result<std::map<std::string, std::string>> PlaceServers(ControlPlaneClient& api, const Seeded& seeded,
                                                        int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
        const json::object body{{"name", fmt::format("fo{}", i)},
                                {"flavor", seeded.flavor},
                                {"image", seeded.image},
                                {"network_id", seeded.network_id},
                                {"weigher", "spread"}};
        auto r = api.Call("POST", "/v1/servers", json::serialize(body),
                          {{"idempotency-key", fmt::format("fo-{}", i)}}, 20s);
        if (!r || r->status / 100 != 2 || !r->body.is_object()) {
            return MakeError(ErrorCode::kUnavailable,
                             "POST /v1/servers: " + (r ? r->text : r.error().message));
        }
        ids.push_back(Str(r->body.as_object().at("server").as_object(), "id"));
    }
    std::map<std::string, std::string> placed;
    const bool active = WaitUntil(
        [&] {
            auto list = ListAll(api, "/v1/servers", "servers");
            if (!list) {
                return false;
            }
            placed.clear();
            for (const auto& s : *list) {
                if (Str(s, "status") == "ACTIVE") {
                    placed[Str(s, "id")] = Str(s, "host");
                }
            }
            return placed.size() >= ids.size();
        },
        120s, 250ms);
    if (!active) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("{} of {} servers ACTIVE after 120 s", placed.size(), ids.size()));
    }
    return placed;
}

}  // namespace

int RunFailoverBench(const CloudChaosOptions& o) {
    const fs::path dir = o.dir.empty() ? fs::temp_directory_path() /
                                             fmt::format("cogs-chaos-failover-{}-{}", o.seed, ::getpid())
                                       : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string load_start = LoadAverage();
    fmt::print(
        stderr,
        "cogs-chaos ha --failover-only: {} leader losses, {} replicas (leader lease {} ms, renewed every {} "
        "ms), {} hosts, load {}, working directory {}\n",
        o.kills, o.replicas, o.leader_ttl_ms, o.leader_renew_ms, o.hosts, load_start, dir.string());
    ChaosCloudOptions co = ChaosCloudOptionsFor(o, dir.string());
    co.reply_drop_rate = 0;
    auto started = ChaosCloud::Start(co);
    auto fail = [&](const std::string& what) {
        fmt::print(stderr, "{}\nlogs in {}\n", what, dir.string());
        fmt::print("{{\"test\":\"ha-failover\",\"error\":\"{}\",\"dir\":\"{}\"}}\n", what, dir.string());
        return 2;
    };
    if (!started) {
        fmt::print(stderr, "{}\n", started.error().message);
        return fail("the cloud did not start");
    }
    ChaosCloud& cloud = **started;
    ControlPlaneClient api(cloud.api_urls(), cloud.admin_token());
    auto seeded = SeedCloud(api);
    if (!seeded) {
        fmt::print(stderr, "{}\n", seeded.error().message);
        return fail("seeding failed");
    }
    auto placed = PlaceServers(api, *seeded, 2 * o.hosts);
    if (!placed) {
        fmt::print(stderr, "{}\n", placed.error().message);
        return fail("the servers did not come up");
    }
    const double fences_start = AgentCounter(cloud, "cogs_compute_fences_total");
    std::set<uint64_t> tokens_at_start;
    for (const auto& [id, tokens] : LoggedTokens(cloud)) {
        tokens_at_start.insert(tokens.begin(), tokens.end());
    }

    const int64_t wall_t0 = WallNowMs();
    Bench bench(cloud);
    std::vector<Loss> losses;
    int unsteady = 0;
    {
        MutationProber prober(cloud.api_urls(), cloud.admin_token(), {&bench.clock()});
        for (int i = 0; i < o.kills; ++i) {
            const int leader = bench.AwaitSteady(60s);
            if (leader < 0) {
                ++unsteady;
                break;
            }
            // The agents renew (and the restarted replica settles) before the next loss.
            std::this_thread::sleep_for(1s);
            losses.push_back(bench.LoseLeader(leader, i % 2 == 1));
        }
        if (bench.AwaitSteady(60s) < 0) {
            ++unsteady;
        }
    }
    // Long enough after the last failover for a host it wronged to be declared down: the restart grace,
    // a host's lease and its fence window (3 + 3 + 1 s), with slack.
    bench.Log("losses done; watching the hosts for 10s");
    std::this_thread::sleep_for(10s);

    auto cp = AuditControlPlane(cloud, {}, wall_t0, 0);
    if (!cp) {
        bench.Log("AUDIT OF THE CONTROL PLANE FAILED: {}", cp.error().message);
    } else {
        for (const auto& line : cp->findings) {
            bench.Log("{}", line);
        }
    }
    int moved = 0, not_active = 0;
    if (auto list = ListAll(api, "/v1/servers", "servers")) {
        std::map<std::string, json::object> now;
        for (const auto& s : *list) {
            now[Str(s, "id")] = s;
        }
        for (const auto& [id, host] : *placed) {
            auto it = now.find(id);
            if (it == now.end() || Str(it->second, "status") != "ACTIVE") {
                ++not_active;
                bench.Log("server {} is {}", id, it == now.end() ? "gone" : Str(it->second, "status"));
            } else if (Str(it->second, "host") != host) {
                ++moved;
                bench.Log("server {} moved from {} to {}", id, host, Str(it->second, "host"));
            }
        }
    } else {
        not_active = -1;
    }
    const double fences_end = AgentCounter(cloud, "cogs_compute_fences_total");
    const std::string load_end = LoadAverage();

    std::vector<double> all, kills, stops, thaw_exit;
    int unmeasured = 0, thaw_bad = 0, thaw_alive = 0, thaw_leading = 0;
    std::string list;
    for (const auto& l : losses) {
        if (l.seconds) {
            all.push_back(*l.seconds);
            (l.kind == "sigkill" ? kills : stops).push_back(*l.seconds);
        } else {
            ++unmeasured;
        }
        if (l.kind == "sigstop") {
            if (l.thaw_exit_s && l.thaw_status == 75) {
                thaw_exit.push_back(*l.thaw_exit_s);
            } else if (l.thaw_exit_s) {
                ++thaw_bad;
            } else {
                ++thaw_alive;
                thaw_leading += l.thaw_status == -2 ? 1 : 0;
            }
        }
        list += fmt::format(
            "{}{{\"kind\":\"{}\",\"from\":\"{}\",\"to\":\"{}\",\"seconds\":{},\"thaw_exit_s\":{}}}",
            list.empty() ? "" : ",", l.kind, l.from, l.to, JsonNumber(l.seconds), JsonNumber(l.thaw_exit_s));
    }
    const ControlPlaneAudit none;
    const ControlPlaneAudit& c = cp ? *cp : none;
    int leader_changes = 0;
    for (uint64_t t : c.tokens) {
        leader_changes += tokens_at_start.count(t) == 0 ? 1 : 0;
    }
    const double max_s = all.empty() ? 0 : Percentile(all, 1.0);
    const bool ok = cp && unsteady == 0 && unmeasured == 0 && static_cast<int>(losses.size()) == o.kills &&
                    max_s <= kLimitS && c.evacuations.false_evacuations == 0 &&
                    c.evacuations.false_host_downs == 0 && c.token_audit.split_tokens == 0 && thaw_bad == 0 &&
                    thaw_alive == 0;
    cloud.Stop();
    if (ok && !o.keep) {
        fs::remove_all(dir);
    } else {
        fmt::print(stderr, "cogs-chaos ha --failover-only: {}; logs of every process in {}/logs\n",
                   ok ? "passed" : "FAILED", dir.string());
    }
    fmt::print(
        "{{\"test\":\"ha-failover\",\"seed\":{},\"replicas\":{},\"hosts\":{},\"servers\":{},\"leader_ttl_"
        "ms\":{},"
        "\"leader_renew_ms\":{},\"kills\":{},\"failover_p50_s\":{},\"failover_max_s\":{},\"failover_target_"
        "s\":{},"
        "\"within_target\":{},\"sigkill_p50_s\":{},\"sigkill_max_s\":{},\"sigstop_p50_s\":{},\"sigstop_max_"
        "s\":{},"
        "\"unmeasured\":{},\"unsteady\":{},\"false_evacuations\":{},\"false_host_downs\":{},\"evacuations\":{"
        "},"
        "\"host_downs\":{},\"servers_moved\":{},\"servers_not_active\":{},\"agent_fences\":{},"
        "\"leader_changes\":{},\"split_brain_tokens\":{},\"thawed_leaders\":{{\"thawed\":{},\"exited_75\":{},"
        "\"bad_exit\":{},\"not_exited\":{},\"still_leading\":{},\"exit_p50_s\":{},\"exit_max_s\":{}}},"
        "\"failovers\":[{}],\"loadavg_start\":{},\"loadavg_end\":{},\"dir\":\"{}\"}}\n",
        o.seed, o.replicas, o.hosts, placed->size(), o.leader_ttl_ms, o.leader_renew_ms, losses.size(),
        JsonNumber(Percentile(all, 0.5)), JsonNumber(Percentile(all, 1.0)), kTargetS,
        !all.empty() && max_s <= kTargetS, JsonNumber(Percentile(kills, 0.5)),
        JsonNumber(Percentile(kills, 1.0)), JsonNumber(Percentile(stops, 0.5)),
        JsonNumber(Percentile(stops, 1.0)), unmeasured, unsteady, c.evacuations.false_evacuations,
        c.evacuations.false_host_downs, c.evacuations.evacuations, c.evacuations.host_downs, moved,
        not_active,
        fences_start < 0 || fences_end < 0 ? "null" : fmt::format("{:.0f}", fences_end - fences_start),
        leader_changes, c.token_audit.split_tokens, thaw_exit.size() + thaw_bad + thaw_alive,
        thaw_exit.size(), thaw_bad, thaw_alive, thaw_leading, JsonNumber(Percentile(thaw_exit, 0.5)),
        JsonNumber(Percentile(thaw_exit, 1.0)), list, load_start, load_end,
        ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
