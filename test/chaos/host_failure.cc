// cogs-chaos host-failure: the figures of issue 5's targets, and issue 16's at scale. Per run: fill
// --failing hosts with --servers servers between them (the others disabled meanwhile), SIGKILL the
// agents serving them at once, time detection (injection -> every one of them suspect, then down, in
// GET /v1/hosts; each suspect's lapse since its last renewal checked against the lease TTL cogsd
// grants for this cluster size) and heal (injection -> every server ACTIVE on another host, in cogsd
// and in that host's inventory, none running twice); then crash instances on a healthy host and time
// crash -> ACTIVE again in its inventory. The agents come back and the servers are deleted before the
// next run.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/base/time.h"
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

// POST until answered (re-sent with the same key on transport errors, 5xx and 429).
Result<ApiReply> PostUntilAnswered(ControlPlaneClient& api, const std::string& target,
                                   const std::string& body, const std::string& key) {
    const SteadyTime deadline = SteadyClock::now() + 60s;
    for (;;) {
        auto r = api.Call("POST", target, body, {{"idempotency-key", key}}, 10s);
        if (r && r->status != 429 && r->status < 500) {
            return r;
        }
        if (SteadyClock::now() > deadline) {
            return r ? MakeError(ErrorCode::kUnavailable, fmt::format("POST {}: {}", target, r->status))
                     : MakeError(r.error());
        }
        std::this_thread::sleep_for(r && !r->header_retry_after.empty() ? 1s : 200ms);
    }
}

// The lease TTL cogsd grants with --lease-ttl-ms `base_ms` and its default --max-renewals-per-s
// (2000) to a cloud of `hosts` hosts: HostMonitor::LeaseTtl (cogs/cloud/health/host_monitor.h).
int64_t LeaseTtlMs(int64_t base_ms, int64_t hosts) {
    constexpr int64_t kRate = 2000;
    const int64_t needed_ms = (3 * hosts * 1000 + kRate - 1) / kRate;
    return std::max(base_ms, (needed_ms + 99) / 100 * 100);
}

struct RunFigures {
    std::string host;  // the first failed host
    std::vector<std::string> failed;
    double fill_s = 0;
    // detect: kill -> the first / every failed host suspect (or down); down: kill -> every one down.
    std::optional<double> detect_first_s, detect_s, down_s, heal_s;
    // The longest lapse from a failed host's last renewal to its suspicion (cogsd's own clock).
    std::optional<int64_t> lapse_max_ms;
    size_t healed = 0;
    size_t duplicates = 0;  // servers running on two live hosts after the heal
    std::optional<double> restart_p50_s, restart_max_s;
    size_t crashed = 0;
    size_t restarted = 0;
    std::string crash_error;
};

}  // namespace

int RunHostFailure(const HostFailureOptions& o) {
    const int per_agent = o.hosts_per_agent > 0 ? o.hosts_per_agent : o.failing;
    if (o.failing < 1 || o.failing >= o.hosts || o.failing % per_agent != 0 || o.hosts % per_agent != 0) {
        fmt::print(
            stderr,
            "--failing must be below --hosts, and --hosts and --failing multiples of --hosts-per-agent\n");
        return 2;
    }
    const fs::path dir = o.dir.empty()
                             ? fs::temp_directory_path() / fmt::format("cogs-chaos-hf-{}", ::getpid())
                             : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string loadavg_start = LoadAverage();
    ChaosCloudOptions co;
    co.dir = dir.string();
    co.hosts = o.hosts;
    co.hosts_per_agent = per_agent;
    co.boot_ms = 50;
    // Room for a failed host's share on one host (1 vCPU each, 4x CPU overcommit), RAM to spare.
    const int share = (o.servers + o.failing - 1) / o.failing;
    co.agent_vcpus = std::max(16, share / 4 + 8);
    co.agent_ram_mb = std::max(65536, share * 256 * 2);
    constexpr int64_t kLeaseTtlMs = 3000;
    constexpr int64_t kFenceWindowMs = 1000;  // suspect -> down
    co.cogsd_flags = {{"--reconcile-ms", "2000"},
                      {"--orphan-grace-ms", "5000"},
                      {"--lease-ttl-ms", std::to_string(kLeaseTtlMs)},
                      {"--fence-window-ms", std::to_string(kFenceWindowMs)},
                      {"--restart-grace-ms", "3000"}};
    if (o.evacuation_parallelism > 0) {
        co.cogsd_flags["--evacuation-parallelism"] = std::to_string(o.evacuation_parallelism);
    }
    const int64_t ttl_ms = LeaseTtlMs(kLeaseTtlMs, o.hosts);
    fmt::print(
        stderr,
        "cogs-chaos host-failure: {} hosts ({} per agent), {} failing at once with {} servers, {} runs; "
        "lease TTL {} ms; working directory {}\n",
        o.hosts, per_agent, o.failing, o.servers, o.runs, ttl_ms, dir.string());
    auto started = ChaosCloud::Start(co);
    if (!started) {
        fmt::print(stderr, "the cloud did not start: {}\n", started.error().message);
        fmt::print("{{\"test\":\"host-failure\",\"error\":\"the cloud did not start\",\"dir\":\"{}\"}}\n",
                   dir.string());
        return 2;
    }
    ChaosCloud& cloud = **started;
    ControlPlaneClient api(cloud.api_urls(), cloud.admin_token());
    auto seeded = SeedCloud(api);
    if (!seeded) {
        fmt::print(stderr, "seeding failed: {}\n", seeded.error().message);
        return 2;
    }
    std::vector<ApiClient> agents;  // per agent process
    for (int a = 0; a < cloud.agents(); ++a) {
        agents.emplace_back(cloud.ProcessUrl(ChaosCloud::kAgent + a),
                            cloud.ServiceToken(ChaosCloud::kAgent + a));
    }
    std::map<std::string, int> host_index;
    for (int h = 0; h < o.hosts; ++h) {
        host_index[cloud.HostNameOf(h)] = h;
    }
    auto servers_now = [&]() -> std::optional<std::map<std::string, std::pair<std::string, std::string>>> {
        auto l = ListAll(api, "/v1/servers", "servers");
        if (!l) {
            return std::nullopt;
        }
        std::map<std::string, std::pair<std::string, std::string>> out;  // id -> (status, host)
        for (const auto& s : *l) {
            out[Str(s, "id")] = {Str(s, "status"), Str(s, "host")};
        }
        return out;
    };

    // Places count[i] new servers on host targets[i], one host after the other (every other host
    // disabled meanwhile), waiting until each host's are ACTIVE there; their ids are added to `ids`.
    std::vector<bool> enabled(o.hosts, true);
    auto set_enabled = [&](int h, bool on, const std::string& tag) {
        if (enabled[h] != on) {
            (void)PostUntilAnswered(api, "/v1/hosts/" + cloud.HostNameOf(h) + (on ? "/enable" : "/disable"),
                                    on ? "{}" : R"({"reason":"chaos host-failure fill"})",
                                    fmt::format("hf-{}-{}-{}", on ? "en" : "dis", tag, h));
            enabled[h] = on;
        }
    };
    auto fill = [&](const std::vector<int>& targets, const std::vector<int>& count, const std::string& tag,
                    std::set<std::string>& ids) {
        bool filled = true;
        for (size_t t = 0; t < targets.size(); ++t) {
            const std::string name = cloud.HostNameOf(targets[t]);
            for (int h = 0; h < o.hosts; ++h) {
                set_enabled(h, h == targets[t], fmt::format("{}-{}", tag, t));
            }
            std::set<std::string> made;
            for (int i = 0; i < count[t]; ++i) {
                json::object body{{"name", fmt::format("hf{}-{}-{}", tag, t, i)},
                                  {"flavor", seeded->flavor},
                                  {"image", seeded->image},
                                  {"network_id", seeded->network_id}};
                auto r = PostUntilAnswered(api, "/v1/servers", json::serialize(body),
                                           fmt::format("hf-{}-{}-{}-{}", o.seed, tag, t, i));
                if (r && r->status == 202 && r->body.is_object()) {
                    made.insert(Str(r->body.as_object().at("server").as_object(), "id"));
                } else {
                    fmt::print(stderr, "create server {} on {}: {}\n", i, name,
                               r ? r->text : r.error().message);
                }
            }
            filled = WaitUntil(
                         [&] {
                             auto s = servers_now();
                             if (!s) {
                                 return false;
                             }
                             size_t active = 0;
                             for (const auto& id : made) {
                                 auto it = s->find(id);
                                 active += it != s->end() && it->second.first == "ACTIVE" &&
                                           it->second.second == name;
                             }
                             return active == made.size();
                         },
                         std::chrono::seconds(o.timeout_s), 200ms) &&
                     filled && made.size() == static_cast<size_t>(count[t]);
            ids.insert(made.begin(), made.end());
        }
        for (int h = 0; h < o.hosts; ++h) {
            set_enabled(h, true, tag);
        }
        return filled;
    };

    // cogsd's count of servers evacuated ACTIVE elsewhere (cogs_heal_moves_total), or -1: tells the
    // heal watch when to read the whole server list (1,000 views ten times a second would load the
    // cogsd it measures).
    ApiClient cogsd(cloud.api_url(), cloud.admin_token());
    auto evacuated_total = [&]() -> int64_t {
        auto r = cogsd.Call("GET", "/metrics", "", {}, 2s);
        const std::string key = "\ncogs_heal_moves_total{type=\"server.evacuate\"} ";
        const auto at = r && r->status == 200 ? r->text.find(key) : std::string::npos;
        return at == std::string::npos ? -1 : std::atoll(r->text.c_str() + at + key.size());
    };

    std::vector<RunFigures> runs;
    bool ok = true;
    for (int run = 0; run < o.runs; ++run) {
        RunFigures fig;
        // --failing consecutive hosts: whole agents' groups (both are multiples of hosts_per_agent).
        std::vector<int> targets, count;
        std::set<int> failed_agents;
        for (int k = 0; k < o.failing; ++k) {
            const int h = (run * o.failing + k) % o.hosts;
            targets.push_back(h);
            count.push_back(o.servers / o.failing + (k < o.servers % o.failing ? 1 : 0));
            fig.failed.push_back(cloud.HostNameOf(h));
            failed_agents.insert(cloud.AgentOf(h));
        }
        const std::set<std::string> failed(fig.failed.begin(), fig.failed.end());
        fig.host = fig.failed.front();
        fmt::print(stderr, "run {}: filling {} host(s) from {} with {} servers\n", run + 1, o.failing,
                   fig.host, o.servers);
        const SteadyTime fill_start = SteadyClock::now();
        std::set<std::string> ids;
        const bool filled = fill(targets, count, fmt::format("{}", run), ids);
        fig.fill_s = Seconds(SteadyClock::now() - fill_start);
        if (!filled || ids.size() != static_cast<size_t>(o.servers)) {
            fmt::print(stderr, "run {}: only part of the {} servers became ACTIVE on their hosts\n", run + 1,
                       o.servers);
            ok = false;
        }
        std::vector<int> kill;
        for (int a : failed_agents) {
            kill.push_back(ChaosCloud::kAgent + a);
        }
        fmt::print(stderr,
                   "run {}: {} servers ACTIVE after {:.1f}s; SIGKILL {} agent(s) serving {} host(s)\n",
                   run + 1, ids.size(), fig.fill_s, kill.size(), failed.size());

        // Kill the hosts' agents at once; time detection and heal.
        const int64_t evacuated_before = std::max<int64_t>(0, evacuated_total());
        SteadyTime last_full_check{};
        int list_reads = 0;
        const SteadyTime t0 = SteadyClock::now();
        cloud.Kill(kill);
        const SteadyTime deadline = t0 + std::chrono::seconds(o.timeout_s);
        std::map<std::string, double> suspect_at, down_at;  // failed host -> seconds after the kill
        while (SteadyClock::now() < deadline && (down_at.size() < failed.size() || !fig.heal_s)) {
            const SteadyTime round = SteadyClock::now();
            if (down_at.size() < failed.size()) {
                if (auto l = ListAll(api, "/v1/hosts", "hosts")) {
                    const double now_s = Seconds(SteadyClock::now() - t0);
                    for (const auto& h : *l) {
                        const std::string name = Str(h, "name");
                        const std::string state = Str(h, "state");
                        if (!failed.count(name) || (state != "suspect" && state != "down")) {
                            continue;
                        }
                        if (!suspect_at.count(name)) {
                            suspect_at[name] = now_s;
                            // cogsd's own times: the suspicion (or the down, a fence window after it).
                            auto since = ParseRfc3339(Str(h, "state_since"));
                            auto last = ParseRfc3339(Str(h, "last_renewal_at"));
                            if (since && last) {
                                const int64_t lapse = *since - *last - (state == "down" ? kFenceWindowMs : 0);
                                fig.lapse_max_ms = std::max(fig.lapse_max_ms.value_or(lapse), lapse);
                            }
                        }
                        if (state == "down" && !down_at.count(name)) {
                            down_at[name] = now_s;
                        }
                    }
                    if (!suspect_at.empty() && !fig.detect_first_s) {
                        fig.detect_first_s = suspect_at.begin()->second;
                        for (const auto& [name, at] : suspect_at) {
                            fig.detect_first_s = std::min(*fig.detect_first_s, at);
                        }
                    }
                    if (suspect_at.size() == failed.size() && !fig.detect_s) {
                        fig.detect_s = now_s;
                        fmt::print(stderr, "run {}: every failed host suspect after {:.2f}s\n", run + 1,
                                   now_s);
                    }
                    if (down_at.size() == failed.size() && !fig.down_s) {
                        fig.down_s = now_s;
                        fmt::print(stderr, "run {}: every failed host down after {:.2f}s\n", run + 1, now_s);
                    }
                }
            }
            // The whole list once cogsd counts them all evacuated, and at least every second.
            const bool look =
                !fig.heal_s && (evacuated_total() - evacuated_before >= static_cast<int64_t>(ids.size()) ||
                                SteadyClock::now() - last_full_check >= 1s);
            if (look) {
                last_full_check = SteadyClock::now();
                ++list_reads;
            }
            if (auto s = look ? servers_now() : std::nullopt) {
                std::map<int, std::map<std::string, InstanceView>> inv;  // agent -> instances
                size_t healed = 0;
                for (const auto& id : ids) {
                    auto it = s->find(id);
                    const std::string& host = it == s->end() ? "" : it->second.second;
                    if (it == s->end() || it->second.first != "ACTIVE" || failed.count(host) ||
                        !host_index.count(host)) {
                        continue;
                    }
                    const int a = cloud.AgentOf(host_index.at(host));
                    if (!inv.count(a)) {
                        inv[a] =
                            ComputeInventory(agents[a], 2s).value_or(std::map<std::string, InstanceView>{});
                    }
                    auto i = inv[a].find(id);
                    healed += i != inv[a].end() && i->second.state == "ACTIVE" && i->second.host == host;
                }
                fig.healed = healed;
                if (healed == ids.size() && !ids.empty()) {
                    fig.heal_s = Seconds(SteadyClock::now() - t0);
                    fmt::print(
                        stderr,
                        "run {}: all {} servers ACTIVE elsewhere after {:.2f}s ({} reads of the list)\n",
                        run + 1, healed, *fig.heal_s, list_reads);
                }
            }
            std::this_thread::sleep_until(round + 100ms);
        }
        if (!fig.heal_s) {
            fmt::print(stderr, "run {}: only {} of {} servers ACTIVE elsewhere after {} s\n", run + 1,
                       fig.healed, ids.size(), o.timeout_s);
        }
        if (!fig.down_s) {
            fmt::print(stderr, "run {}: {} of {} failed hosts suspect, {} down after {} s\n", run + 1,
                       suspect_at.size(), failed.size(), down_at.size(), o.timeout_s);
        }
        if (fig.lapse_max_ms && *fig.lapse_max_ms > ttl_ms + o.timer_slack_ms) {
            fmt::print(stderr,
                       "run {}: a host was suspected {} ms after its last renewal (bound: TTL {} + {} ms)\n",
                       run + 1, *fig.lapse_max_ms, ttl_ms, o.timer_slack_ms);
        }
        // No server running twice: every live agent's inventory, once healed.
        {
            std::map<std::string, int> running;  // server -> live hosts running it
            for (int a = 0; a < cloud.agents(); ++a) {
                if (failed_agents.count(a)) {
                    continue;
                }
                for (const auto& [id, i] :
                     ComputeInventory(agents[a], 5s).value_or(std::map<std::string, InstanceView>{})) {
                    running[id] += ids.count(id) && InstanceRunning(i.state);
                }
            }
            fig.duplicates = static_cast<size_t>(
                std::count_if(running.begin(), running.end(), [](const auto& r) { return r.second > 1; }));
            if (fig.duplicates > 0) {
                fmt::print(stderr, "run {}: {} servers running on two live hosts\n", run + 1, fig.duplicates);
            }
        }
        for (int p : kill) {
            if (auto st = cloud.Restart(p); !st) {
                fmt::print(stderr, "run {}: restart of {} failed: {}\n", run + 1, cloud.ProcessName(p),
                           st.error().message);
                ok = false;
            }
        }

        // Instance restarts: crash instances on a healthy host, topped up to --crashes instances.
        int best = 0;
        while (failed.count(cloud.HostNameOf(best))) {
            ++best;
        }
        const std::string best_name = cloud.HostNameOf(best);
        ApiClient& best_agent = agents[cloud.AgentOf(best)];
        auto best_inventory = [&] {
            std::map<std::string, InstanceView> out;
            for (auto& [id, i] :
                 ComputeInventory(best_agent, 2s).value_or(std::map<std::string, InstanceView>{})) {
                if (i.host == best_name) {
                    out[id] = i;
                }
            }
            return out;
        };
        {
            size_t active = 0;
            for (const auto& [id, i] : best_inventory()) {
                active += i.state == "ACTIVE";
            }
            if (active < static_cast<size_t>(o.crashes)) {
                (void)fill({best}, {o.crashes - static_cast<int>(active)}, fmt::format("{}c", run), ids);
            }
        }
        std::map<std::string, SteadyTime> crashed;
        std::vector<double> restart;
        for (const auto& [id, i] : best_inventory()) {
            if (static_cast<int>(crashed.size()) >= o.crashes) {
                break;
            }
            if (i.state != "ACTIVE") {
                continue;
            }
            auto r = best_agent.Call("POST", "/v1/instances/" + id + "/crash", "", {}, 2s);
            if (r && r->status / 100 == 2) {
                crashed[id] = SteadyClock::now();
            } else if (fig.crash_error.empty()) {
                fig.crash_error = r ? fmt::format("{} {}", r->status, r->text) : r.error().message;
            }
        }
        fig.crashed = crashed.size();
        WaitUntil(
            [&] {
                auto inv = ComputeInventory(best_agent, 2s);
                if (!inv) {
                    return false;
                }
                for (auto it = crashed.begin(); it != crashed.end();) {
                    auto i = inv->find(it->first);
                    if (i != inv->end() && i->second.state == "ACTIVE") {
                        restart.push_back(Seconds(SteadyClock::now() - it->second));
                        it = crashed.erase(it);
                    } else {
                        ++it;
                    }
                }
                return crashed.empty();
            },
            60s, 50ms);
        fig.restarted = restart.size();
        if (!restart.empty()) {
            fig.restart_p50_s = Percentile(restart, 0.5);
            fig.restart_max_s = Percentile(restart, 1.0);
        }
        fmt::print(stderr, "run {}: crashed {} instances on {}: {} ACTIVE again (p50 {} s, max {} s){}\n",
                   run + 1, fig.crashed, best_name, fig.restarted, JsonNumber(fig.restart_p50_s),
                   JsonNumber(fig.restart_max_s),
                   fig.crash_error.empty() ? "" : "; crash refused: " + fig.crash_error);
        ok = ok && fig.detect_s && fig.down_s && fig.heal_s && fig.duplicates == 0 && fig.lapse_max_ms &&
             *fig.lapse_max_ms <= ttl_ms + o.timer_slack_ms && (o.crashes == 0 || fig.crashed > 0) &&
             fig.restarted == fig.crashed;

        // Clean up for the next run.
        for (const auto& id : ids) {
            for (int attempt = 0; attempt < 100; ++attempt) {
                auto r = api.Call("DELETE", "/v1/servers/" + id, "", {}, 10s);
                if (r && (r->status / 100 == 2 || r->status == 404)) {
                    break;
                }
                std::this_thread::sleep_for(200ms);  // 409 while transitional, or cogsd busy
            }
        }
        WaitUntil(
            [&] {
                auto s = servers_now();
                return s && std::none_of(ids.begin(), ids.end(),
                                         [&](const std::string& id) { return s->count(id); });
            },
            std::chrono::seconds(o.timeout_s), 250ms);
        runs.push_back(fig);
    }

    auto median = [&](auto field) -> std::optional<double> {
        std::vector<double> v;
        for (const auto& r : runs) {
            if (auto x = field(r)) {
                v.push_back(*x);
            }
        }
        if (v.empty()) {
            return std::nullopt;
        }
        return Percentile(v, 0.5);
    };
    std::string runs_json;
    for (size_t i = 0; i < runs.size(); ++i) {
        const auto& r = runs[i];
        runs_json += fmt::format(
            "{}{{\"run\":{},\"host\":\"{}\",\"failed_hosts\":{},\"fill_s\":{:.3f},\"detect_first_s\":{},"
            "\"detect_s\":{},\"down_s\":{},\"lapse_max_ms\":{},\"heal_s\":{},\"healed\":{},\"duplicates\":{},"
            "\"crashed\":{},\"restarted\":{},\"restart_p50_s\":{},\"restart_max_s\":{}}}",
            i == 0 ? "" : ",", i + 1, r.host, r.failed.size(), r.fill_s, JsonNumber(r.detect_first_s),
            JsonNumber(r.detect_s), JsonNumber(r.down_s),
            r.lapse_max_ms ? std::to_string(*r.lapse_max_ms) : "null", JsonNumber(r.heal_s), r.healed,
            r.duplicates, r.crashed, r.restarted, JsonNumber(r.restart_p50_s), JsonNumber(r.restart_max_s));
    }
    const std::string loadavg_end = LoadAverage();
    cloud.Stop();
    if (ok && !o.keep) {
        fs::remove_all(dir);
    } else {
        fmt::print(stderr, "cogs-chaos host-failure: logs of every process in {}/logs\n", dir.string());
    }
    int64_t lapse_max = -1;
    for (const auto& r : runs) {
        lapse_max = std::max(lapse_max, r.lapse_max_ms.value_or(-1));
    }
    fmt::print(
        "{{\"test\":\"host-failure\",\"hosts\":{},\"failing\":{},\"hosts_per_agent\":{},\"agents\":{},"
        "\"servers\":{},\"crashes\":{},\"lease_ttl_ms\":{},\"detect_bound_ms\":{},\"lapse_max_ms\":{},"
        "\"runs\":[{}],\"detect_s\":{},\"down_s\":{},\"heal_s\":{},\"restart_p50_s\":{},\"restart_max_s\":{},"
        "\"loadavg_start\":{},\"loadavg_end\":{},\"ok\":{},\"dir\":\"{}\"}}\n",
        o.hosts, o.failing, per_agent, cloud.agents(), o.servers, o.crashes, ttl_ms,
        ttl_ms + o.timer_slack_ms, lapse_max < 0 ? "null" : std::to_string(lapse_max), runs_json,
        JsonNumber(median([](const RunFigures& r) { return r.detect_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.down_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.heal_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.restart_p50_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.restart_max_s; })), loadavg_start, loadavg_end,
        ok, ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
