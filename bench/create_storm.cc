// cogs-bench create-storm (see create_storm.h and bench/README.md): the cloud is started and set up
// (create_storm_cloud.h), the storm and the cleanup run as timed phases (create_storm_phase.h), then
// the results are checked against the services' inventories and reported with the machine's figures
// (create_storm_checks.h) as one JSON object on stdout.
#include "bench/create_storm.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <memory>
#include <optional>

#include "bench/create_storm_checks.h"
#include "bench/create_storm_cloud.h"
#include "bench/create_storm_idle.h"
#include "bench/create_storm_phase.h"
#include "bench/create_storm_real.h"
#include "bench/create_storm_util.h"
#include "cogs/base/secret.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench {
namespace storm {
namespace {

using namespace std::chrono_literals;
using testing::ApiClient;
using testing::DevCloud;

// The id of the replica that leads (its process name in `cogs dev`, "cogsd-2"); "" on sqlite.
std::string Leader(const DevCloud& dev) {
    if (dev.postgres() == nullptr) {
        return "";
    }
    ApiClient admin = dev.Admin();
    const auto reply = admin.Must("GET", "/v1/replicas");
    for (const auto& r : Arr(reply.body, "replicas")) {
        if (S(r, "role") == "leader") {
            return S(r, "id");
        }
    }
    return "";
}

int Run(const CreateStormOptions& o) {
    const auto n = static_cast<size_t>(std::max(0, o.servers));
    std::unique_ptr<StormCloud> cloud = StormCloud::Start(o);
    if (!cloud) {
        return 1;
    }
    DevCloud& dev = cloud->dev();
    const std::vector<SimAgent>& sims = cloud->sims();

    auto setup = SetUp(dev, o);
    if (!setup || !AwaitHostsUp(dev, cloud->hosts())) {
        Progress("set-up failed; logs in {}/logs (COGS_KEEP_TEST_DIRS=1 keeps them)", dev.data_dir());
        return 1;
    }

    std::vector<Accounted> procs;
    const std::string leader = Leader(dev);
    int cogsd_pid = 0;  // the one that leads: the one that does the work
    for (const auto& p : dev.processes()) {
        // cogsd-1..N keep their names: the leader's CPU and the followers' (forwarding) apart.
        std::string group = p.name.find("compute") != std::string::npos ? "compute" : p.name;
        procs.push_back({group, p.pid});
        if (p.name == "cogsd" || p.name == leader) {
            cogsd_pid = p.pid;
        }
    }
    for (const SimAgent& sim : sims) {
        procs.push_back({"compute", sim.pid});
    }
    if (const auto* pg = dev.postgres()) {
        procs.push_back({"postgres", pg->pid});
        for (int child : ChildPids(pg->pid)) {  // its backends, the cogsd replicas' connections among them
            procs.push_back({"postgres", child});
        }
    }
    procs.push_back({"bench", static_cast<int>(::getpid())});
    const int64_t cogsd_rss_before = cogsd_pid ? StatusKib(cogsd_pid, "VmRSS") : 0;
    // The machine as the storm finds it: a shared VM's load and disk move the figures a lot.
    const double load_before = LoadAverage();
    const double fsyncs_per_s = MeasureFsyncs(dev.data_dir(), 1.0);
    Progress("load average {:.1f}; the disk does {:.0f} fsyncs/s (4 KiB append + fdatasync)", load_before,
             fsyncs_per_s);

    json::object idle;
    if (o.idle_s > 0) {
        idle = MeasureIdle(dev, procs, leader.empty() ? "cogsd" : leader, o.idle_s);
    }

    const bool real = o.driver == "container";
    const std::string image = real ? "busybox" : "cirros";
    json::object boot;
    if (real && o.boot_samples > 0) {
        Progress("boot time: {} single servers, one at a time, on the idle cloud", o.boot_samples);
        boot = MeasureBootTimes(dev, setup->member_token, setup->network_id, o.boot_samples);
    }

    // ---- the storm ----
    const std::string run = RandomHex(4);
    std::vector<Tracked> servers(n);
    std::vector<std::string> urls;
    for (const auto& r : dev.replicas()) {
        urls.push_back(r.url);
    }
    Phase::Options po{urls, setup->member_token, o.connections, Millis(o.poll_ms),
                      std::chrono::seconds(o.deadline_s)};
    if (!dev.ca_file().empty()) {
        auto tls = http::MakeClientTls(http::TlsFiles{.ca_file = dev.ca_file()});
        if (!tls) {
            Progress("the dev CA: {}", tls.error().ToString());
            return 1;
        }
        po.tls = *tls;
    }
    po.per_request = static_cast<size_t>(std::max(1, o.bulk));
    const size_t requests = (n + po.per_request - 1) / po.per_request;
    Phase* storm_ptr = nullptr;
    Phase storm(po, servers, [&](size_t i) {
        http::Request req;
        req.method = "POST";
        req.target = "/v1/servers";
        // A bulk request names its servers storm-<i>-1 .. storm-<i>-<count>.
        const std::string count =
            o.bulk > 1 ? fmt::format(R"(,"min_count":{})", storm_ptr->Covered(i)) : std::string();
        req.body =
            fmt::format(R"({{"name":"storm-{}","flavor":"bench.tiny","image":"{}","network_id":"{}"{}}})", i,
                        image, setup->network_id, count);
        req.headers.emplace_back("content-type", "application/json");
        req.headers.emplace_back("idempotency-key", fmt::format("storm-{}-{}", run, i));
        return req;
    });
    storm_ptr = &storm;
    Progress(
        "storm: {} servers in {} POST /v1/servers at once on {} connections to {} replica(s), polling "
        "every {} ms",
        n, requests, o.connections, urls.size(), o.poll_ms);
    CpuMeter cpu(procs);
    cpu.Start();
    storm.Run(Phase::Watch::kCreate);
    json::object storm_cpu = cpu.Stop();
    const int64_t cogsd_rss_after = cogsd_pid ? StatusKib(cogsd_pid, "VmRSS") : 0;
    const int64_t cogsd_hwm = cogsd_pid ? StatusKib(cogsd_pid, "VmHWM") : 0;
    json::object cogsd_heap = CogsdHeap(dev);

    std::vector<double> to_active, accept;
    SteadyTime first = SteadyTime::max(), last_active = SteadyTime::min();
    int active = 0, errors = 0, refused = 0;
    for (const auto& t : servers) {
        first = std::min(first, t.sent);
        if (t.answered && !t.refused) {
            accept.push_back(Ms(t.sent, *t.answered));
        }
        refused += t.refused;
        errors += t.error;
        if (t.done) {
            ++active;
            to_active.push_back(Ms(t.sent, *t.done));
            last_active = std::max(last_active, *t.done);
        }
    }
    const int failed = static_cast<int>(n) - active;
    const double span_s = active > 0 ? Seconds(first, last_active) : 0;
    Progress("storm over: {} ACTIVE, {} ERROR, {} refused, {} not settled; {} retries after 429", active,
             errors, refused, failed - errors - refused, storm.retries_429);
    for (const auto& r : storm.refusals) {
        Progress("refused: {}", r);
    }

    json::object memory;
    if (real) {
        std::vector<std::string> running;
        for (const auto& t : servers) {
            if (t.done && !t.id.empty()) {
                running.push_back(t.id);
            }
        }
        memory = InstanceMemory(dev, running);
    }

    // ---- checks: what cogsd says against what the services hold ----
    ApiClient member(dev.api_url(), setup->member_token);
    auto listed = ListAll(member, "/v1/servers?status=ACTIVE", "servers");
    std::optional<Checks> checks;
    if (listed) {
        checks = Check(dev, sims, *listed, o);
    }
    if (errors > 0) {
        auto in_error = ListAll(member, "/v1/servers?status=ERROR", "servers");
        if (in_error && !in_error->empty()) {
            Progress("first ERROR: {}", Json(in_error->front()));
        }
    }

    json::object out;
    out["benchmark"] = "create-storm";
    out["servers"] = n;
    out["bulk"] = o.bulk;
    out["requests"] = static_cast<int64_t>(requests);
    out["servers_per_s"] = span_s > 0 ? Round(active / span_s) : 0.0;
    out["request_to_active_p50_ms"] = Round(Percentile(to_active, 0.50));
    out["request_to_active_p99_ms"] = Round(Percentile(to_active, 0.99));
    out["request_to_active_max_ms"] = Round(Percentile(to_active, 1.0));
    out["accept_p50_ms"] = Round(Percentile(accept, 0.50));
    out["accept_p99_ms"] = Round(Percentile(accept, 0.99));
    out["failed"] = failed;
    out["overcommitted_hosts"] = checks ? checks->overcommitted_hosts : -1;
    out["duplicate_addresses"] = checks ? checks->duplicate_addresses : -1;
    out["active"] = active;
    out["error"] = errors;
    out["refused"] = refused;
    out["timed_out"] = storm.timed_out;
    out["retries_429"] = storm.retries_429;
    out["retries_503"] = storm.retries_503;
    out["transport_retries"] = storm.transport_retries;
    out["storm_s"] = Round(span_s, 3);
    if (checks) {
        out["overcommitted_hosts_api"] = checks->overcommitted_api;
        out["overcommitted_hosts_agents"] = checks->overcommitted_agents;
        out["host_usage_mismatches"] = checks->usage_mismatches;
        out["addresses_missing"] = checks->addresses_missing;
        out["instances_on_agents"] = checks->instances;
        out["hosts_used"] = checks->hosts_used;
        out["max_instances_per_host"] = checks->max_per_host;
    }
    out["poll_rounds"] = storm.poll_rounds;
    out["poll_round_mean_ms"] = Round(storm.mean_round_ms);
    out["cpu_storm"] = std::move(storm_cpu);
    out["cogsd_rss_kib_before"] = cogsd_rss_before;
    out["cogsd_rss_kib_after"] = cogsd_rss_after;
    out["cogsd_rss_peak_kib"] = cogsd_hwm;
    for (auto& [k, v] : cogsd_heap) {
        out[k] = v;
    }
    for (auto& [k, v] : boot) {
        out[k] = v;
    }
    for (auto& [k, v] : idle) {
        out[k] = v;
    }
    for (auto& [k, v] : memory) {
        out[k] = v;
    }

    // ---- cleanup: delete them all, timed the same way ----
    if (o.cleanup) {
        std::vector<Tracked> doomed;
        for (const auto& t : servers) {
            if (!t.id.empty()) {
                doomed.push_back(Tracked{});
                doomed.back().id = t.id;
            }
        }
        po.per_request = 1;  // one DELETE per server, bulk or not
        Phase del(po, doomed, [&](size_t i) {
            http::Request req;
            req.method = "DELETE";
            req.target = "/v1/servers/" + doomed[i].id;
            return req;
        });
        Progress("cleanup: {} DELETE /v1/servers/{{id}} at once", doomed.size());
        cpu.Start();
        del.Run(Phase::Watch::kDelete);
        json::object del_cpu = cpu.Stop();
        int deleted = 0;
        SteadyTime last_gone = SteadyTime::min();
        std::vector<double> to_gone;
        for (const auto& t : doomed) {
            if (t.done) {
                ++deleted;
                last_gone = std::max(last_gone, *t.done);
                to_gone.push_back(Ms(t.sent, *t.done));
            }
        }
        const double del_s = deleted > 0 ? Seconds(doomed.front().sent, last_gone) : 0;
        Progress("cleanup over: {} of {} gone in {:.2f} s; {} retries after 429", deleted, doomed.size(),
                 del_s, del.retries_429);
        for (const auto& r : del.refusals) {
            Progress("delete refused: {}", r);
        }
        int64_t left = 0;
        AgentUsage(dev, sims, &left);
        out["deleted"] = deleted;
        out["deleted_per_s"] = del_s > 0 ? Round(deleted / del_s) : 0.0;
        out["request_to_gone_p50_ms"] = Round(Percentile(to_gone, 0.50));
        out["request_to_gone_p99_ms"] = Round(Percentile(to_gone, 0.99));
        out["delete_retries_429"] = del.retries_429;
        out["instances_left_after_cleanup"] = left;
        if (real) {
            // The API shows a server gone once its agent dropped the instance; the container's
            // removal (stop, runc delete, cgroups, rootfs, namespace) follows on the agent's pool.
            // The machine is clean when runc knows none of them any more.
            int64_t containers = 0;
            testing::WaitUntil([&] { return (containers = ContainersLeft(dev)) == 0; }, 300s, 100ms);
            const double clean_s =
                Seconds(doomed.empty() ? SteadyClock::now() : doomed.front().sent, SteadyClock::now());
            out["machine_clean_s"] = Round(clean_s, 2);
            out["containers_left_after_cleanup"] = containers;
            Progress("cleanup on the machine: {} containers left after {:.1f} s", containers, clean_s);
        }
        out["cpu_cleanup"] = std::move(del_cpu);
    }

    out["driver"] = o.driver;
    out["store"] = o.store;
    out["tls"] = !dev.ca_file().empty();
    out["replicas"] = static_cast<int64_t>(urls.size());
    if (!leader.empty()) {
        out["leader"] = leader;
    }
    out["hosts"] = o.hosts + o.sim_hosts;
    out["boot_ms"] = o.boot_ms;
    out["connections"] = o.connections;
    out["poll_ms"] = o.poll_ms;
    out["machine"] = json::object{{"nproc", ::sysconf(_SC_NPROCESSORS_ONLN)},
                                  {"cpu", CpuModel()},
                                  {"loadavg_1m", Round(load_before, 2)},
                                  {"fsyncs_per_s", Round(fsyncs_per_s, 0)}};

    if (real) {
        // Whatever is still there (no cleanup, or one that did not finish) goes before the agents
        // stop: a stopped agent would leave it running for good.
        if (const int64_t swept = SweepContainers(dev); swept > 0) {
            Progress("removed {} containers the cloud left running", swept);
            out["containers_swept"] = swept;
        }
        // The network's bridge is on the machine, not in the data dir: it goes before the cloud.
        out["network_deleted"] = TearDown(dev, *setup);
    }
    const std::string run_dir = real ? RunDirOf(dev) : "";
    cloud->Stop();
    if (run_dir.rfind("/run/cogs/dev-", 0) == 0) {
        std::error_code ec;
        std::filesystem::remove_all(run_dir, ec);  // the agents' runc roots, empty now
    }
    fmt::print("{}\n", Json(out));
    std::fflush(stdout);
    if (o.check) {
        // The invariants an overloaded control plane must keep (issue 16): everything asked for is
        // ACTIVE, nothing overcommitted, no address twice or missing, cogsd's usage equal to the agents'.
        const bool clean = failed == 0 && checks && checks->overcommitted_hosts == 0 &&
                           checks->duplicate_addresses == 0 && checks->addresses_missing == 0 &&
                           checks->usage_mismatches == 0;
        if (!clean) {
            Progress("--check: FAILED ({} failed; the checks above)", failed);
            return 3;
        }
        Progress(
            "--check: every server ACTIVE, no overcommit, no duplicate or missing address, usage agrees");
    }
    return 0;
}

}  // namespace
}  // namespace storm

int RunCreateStorm(const CreateStormOptions& options) { return storm::Run(options); }

}  // namespace cogs::bench
