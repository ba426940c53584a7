// cogs-chaos host-failure: the figures of issue 5's targets. Per run: fill one host with N servers
// (the others disabled meanwhile), SIGKILL its agent, time detection (injection -> suspect/down in
// GET /v1/hosts) and heal (injection -> every one of the N ACTIVE on another host, in cogsd and in
// that host's inventory); then crash instances on a healthy host and time crash -> ACTIVE again in
// its inventory. The agent comes back and the servers are deleted before the next run.
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "test/chaos/chaos_cloud.h"
#include "test/chaos/cloud_chaos.h"
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

struct RunFigures {
    std::string host;
    double fill_s = 0;
    std::optional<double> detect_s, heal_s;
    size_t healed = 0;
    std::optional<double> restart_p50_s, restart_max_s;
    size_t crashed = 0;
    size_t restarted = 0;
    std::string crash_error;
};

}  // namespace

int RunHostFailure(const HostFailureOptions& o) {
    const fs::path dir = o.dir.empty()
                             ? fs::temp_directory_path() / fmt::format("cogs-chaos-hf-{}", ::getpid())
                             : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    ChaosCloudOptions co;
    co.dir = dir.string();
    co.hosts = o.hosts;
    co.boot_ms = 50;
    // Room for all N servers on one host (1 vCPU each, 4x CPU overcommit), RAM to spare.
    co.agent_vcpus = std::max(16, o.servers / 4 + 8);
    co.agent_ram_mb = std::max(65536, o.servers * 256 * 2);
    co.cogsd_flags = {{"--reconcile-ms", "2000"},
                      {"--orphan-grace-ms", "5000"},
                      {"--lease-ttl-ms", "3000"},
                      {"--fence-window-ms", "1000"},
                      {"--restart-grace-ms", "3000"}};
    fmt::print(stderr, "cogs-chaos host-failure: {} hosts, {} servers, {} runs, working directory {}\n",
               o.hosts, o.servers, o.runs, dir.string());
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
    std::vector<ApiClient> agents;
    for (int h = 0; h < o.hosts; ++h) {
        agents.emplace_back(cloud.ProcessUrl(ChaosCloud::kAgent + h),
                            cloud.ServiceToken(ChaosCloud::kAgent + h));
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

    // Places `count` new servers on host `target` (every other host disabled meanwhile) and waits
    // until they are ACTIVE there; their ids are added to `ids`.
    auto fill = [&](int target, int count, const std::string& tag, std::set<std::string>& ids) {
        const std::string name = ChaosCloud::HostName(target);
        for (int h = 0; h < o.hosts; ++h) {
            if (h != target) {
                (void)PostUntilAnswered(api, "/v1/hosts/" + ChaosCloud::HostName(h) + "/disable",
                                        R"({"reason":"chaos host-failure fill"})",
                                        fmt::format("hf-dis-{}-{}", tag, h));
            }
        }
        std::set<std::string> made;
        for (int i = 0; i < count; ++i) {
            json::object body{{"name", fmt::format("hf{}-{}", tag, i)},
                              {"flavor", seeded->flavor},
                              {"image", seeded->image},
                              {"network_id", seeded->network_id}};
            auto r = PostUntilAnswered(api, "/v1/servers", json::serialize(body),
                                       fmt::format("hf-{}-{}-{}", o.seed, tag, i));
            if (r && r->status == 202 && r->body.is_object()) {
                made.insert(Str(r->body.as_object().at("server").as_object(), "id"));
            } else {
                fmt::print(stderr, "create server {}: {}\n", i, r ? r->text : r.error().message);
            }
        }
        const bool filled = WaitUntil(
            [&] {
                auto s = servers_now();
                if (!s) {
                    return false;
                }
                size_t active = 0;
                for (const auto& id : made) {
                    auto it = s->find(id);
                    active += it != s->end() && it->second.first == "ACTIVE" && it->second.second == name;
                }
                return active == made.size();
            },
            std::chrono::seconds(o.timeout_s), 200ms);
        for (int h = 0; h < o.hosts; ++h) {
            if (h != target) {
                (void)PostUntilAnswered(api, "/v1/hosts/" + ChaosCloud::HostName(h) + "/enable", "{}",
                                        fmt::format("hf-en-{}-{}", tag, h));
            }
        }
        ids.insert(made.begin(), made.end());
        return filled && made.size() == static_cast<size_t>(count);
    };

    std::vector<RunFigures> runs;
    bool ok = true;
    for (int run = 0; run < o.runs; ++run) {
        RunFigures fig;
        const int target = run % o.hosts;
        fig.host = ChaosCloud::HostName(target);
        fmt::print(stderr, "run {}: filling {} with {} servers\n", run + 1, fig.host, o.servers);
        const SteadyTime fill_start = SteadyClock::now();
        std::set<std::string> ids;
        const bool filled = fill(target, o.servers, fmt::format("{}", run), ids);
        fig.fill_s = Seconds(SteadyClock::now() - fill_start);
        if (!filled || ids.size() != static_cast<size_t>(o.servers)) {
            fmt::print(stderr, "run {}: only part of the {} servers became ACTIVE on {}\n", run + 1,
                       o.servers, fig.host);
            ok = false;
        }
        fmt::print(stderr, "run {}: {} servers ACTIVE on {} after {:.1f}s; SIGKILL its agent\n", run + 1,
                   ids.size(), fig.host, fig.fill_s);

        // Kill the host's agent; time detection and heal.
        const SteadyTime t0 = SteadyClock::now();
        cloud.Kill(ChaosCloud::kAgent + target);
        const SteadyTime deadline = t0 + std::chrono::seconds(o.timeout_s);
        while (SteadyClock::now() < deadline && (!fig.detect_s || !fig.heal_s)) {
            const SteadyTime round = SteadyClock::now();
            if (!fig.detect_s) {
                auto h = api.Call("GET", "/v1/hosts/" + fig.host, "", {}, 2s);
                if (h && h->status == 200 && h->body.is_object()) {
                    const std::string state = Str(h->body.as_object().at("host").as_object(), "state");
                    if (state == "suspect" || state == "down") {
                        fig.detect_s = Seconds(SteadyClock::now() - t0);
                        fmt::print(stderr, "run {}: {} {} after {:.2f}s\n", run + 1, fig.host, state,
                                   *fig.detect_s);
                    }
                }
            }
            if (auto s = servers_now()) {
                std::map<std::string, std::map<std::string, InstanceView>> inv;  // host -> instances
                size_t healed = 0;
                for (const auto& id : ids) {
                    auto it = s->find(id);
                    if (it == s->end() || it->second.first != "ACTIVE" || it->second.second == fig.host ||
                        it->second.second.empty()) {
                        continue;
                    }
                    const std::string& host = it->second.second;
                    if (!inv.count(host)) {
                        const int h = std::stoi(host.substr(5)) - 1;  // "host-N"
                        inv[host] =
                            ComputeInventory(agents[h], 2s).value_or(std::map<std::string, InstanceView>{});
                    }
                    auto i = inv[host].find(id);
                    healed += i != inv[host].end() && i->second.state == "ACTIVE";
                }
                fig.healed = healed;
                if (healed == ids.size() && !ids.empty() && !fig.heal_s) {
                    fig.heal_s = Seconds(SteadyClock::now() - t0);
                    fmt::print(stderr, "run {}: all {} servers ACTIVE elsewhere after {:.2f}s\n", run + 1,
                               healed, *fig.heal_s);
                }
            }
            std::this_thread::sleep_until(round + 100ms);
        }
        if (!fig.heal_s) {
            fmt::print(stderr, "run {}: only {} of {} servers ACTIVE elsewhere after {} s\n", run + 1,
                       fig.healed, ids.size(), o.timeout_s);
        }
        if (auto s = cloud.Restart(ChaosCloud::kAgent + target); !s) {
            fmt::print(stderr, "run {}: restart of the agent failed: {}\n", run + 1, s.error().message);
            ok = false;
        }

        // Instance restarts: crash instances on a healthy host, topped up to --crashes instances.
        const int best = (target + 1) % o.hosts;
        std::map<std::string, InstanceView> best_inv;
        if (auto inv = ComputeInventory(agents[best], 2s)) {
            size_t active = 0;
            for (const auto& [id, i] : *inv) {
                active += i.state == "ACTIVE";
            }
            if (active < static_cast<size_t>(o.crashes)) {
                (void)fill(best, o.crashes - static_cast<int>(active), fmt::format("{}c", run), ids);
            }
        }
        best_inv = ComputeInventory(agents[best], 2s).value_or(std::map<std::string, InstanceView>{});
        std::map<std::string, SteadyTime> crashed;
        std::vector<double> restart;
        for (const auto& [id, i] : best_inv) {
            if (static_cast<int>(crashed.size()) >= o.crashes) {
                break;
            }
            if (i.state != "ACTIVE") {
                continue;
            }
            auto r = agents[best].Call("POST", "/v1/instances/" + id + "/crash", "", {}, 2s);
            if (r && r->status / 100 == 2) {
                crashed[id] = SteadyClock::now();
            } else if (fig.crash_error.empty()) {
                fig.crash_error = r ? fmt::format("{} {}", r->status, r->text) : r.error().message;
            }
        }
        fig.crashed = crashed.size();
        WaitUntil(
            [&] {
                auto inv = ComputeInventory(agents[best], 2s);
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
                   run + 1, fig.crashed, ChaosCloud::HostName(best), fig.restarted,
                   JsonNumber(fig.restart_p50_s), JsonNumber(fig.restart_max_s),
                   fig.crash_error.empty() ? "" : "; crash refused: " + fig.crash_error);
        ok = ok && fig.detect_s && fig.heal_s && fig.crashed > 0 && fig.restarted == fig.crashed;

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
            "{}{{\"run\":{},\"host\":\"{}\",\"fill_s\":{:.3f},\"detect_s\":{},\"heal_s\":{},\"healed\":{},"
            "\"crashed\":{},\"restarted\":{},\"restart_p50_s\":{},\"restart_max_s\":{}}}",
            i == 0 ? "" : ",", i + 1, r.host, r.fill_s, JsonNumber(r.detect_s), JsonNumber(r.heal_s),
            r.healed, r.crashed, r.restarted, JsonNumber(r.restart_p50_s), JsonNumber(r.restart_max_s));
    }
    cloud.Stop();
    if (ok && !o.keep) {
        fs::remove_all(dir);
    } else {
        fmt::print(stderr, "cogs-chaos host-failure: logs of every process in {}/logs\n", dir.string());
    }
    fmt::print(
        "{{\"test\":\"host-failure\",\"hosts\":{},\"servers\":{},\"crashes\":{},\"runs\":[{}],\"detect_s\":{}"
        ","
        "\"heal_s\":{},\"restart_p50_s\":{},\"restart_max_s\":{},\"ok\":{},\"dir\":\"{}\"}}\n",
        o.hosts, o.servers, o.crashes, runs_json,
        JsonNumber(median([](const RunFigures& r) { return r.detect_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.heal_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.restart_p50_s; })),
        JsonNumber(median([](const RunFigures& r) { return r.restart_max_s; })), ok,
        ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
