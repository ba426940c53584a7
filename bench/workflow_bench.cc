// cogs-bench workflow: the reference workflow server.create against the in-process simulated
// service, durability on (SQLite WAL, synchronous=FULL). See bench/README.md for the figures.
#include "bench/workflow_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cogs/base/check.h"
#include "cogs/base/paths.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"

namespace cogs::bench {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace sim = cogs::services::sim;
using namespace std::chrono_literals;

const char* kServices[] = {"network", "volume", "scheduler", "compute"};

double Seconds(SteadyTime a, SteadyTime b) { return std::chrono::duration<double>(b - a).count(); }

double Percentile(std::vector<int64_t>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
}

// The disk's rate of 4 KiB append + fdatasync, in `dir`, for about `seconds`.
double MeasureFsyncs(const fs::path& dir, double seconds) {
    const fs::path file = dir / "fsync-probe";
    int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_APPEND, 0644);
    COGS_CHECK(fd >= 0);
    std::string block(4096, 'x');
    const auto start = SteadyClock::now();
    int n = 0;
    while (Seconds(start, SteadyClock::now()) < seconds) {
        COGS_CHECK(::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()));
        COGS_CHECK(::fdatasync(fd) == 0);
        ++n;
    }
    const double rate = n / Seconds(start, SteadyClock::now());
    ::close(fd);
    fs::remove(file);
    return rate;
}

struct PhaseOptions {
    int workflows = 20000;
    int window = 4000;         // workflows kept in flight
    double rate = 0;           // >0: start at this fixed rate instead of a window
    bool fail_boot = false;    // step 5 always fails: full compensation
    bool hang = false;         // the service never answers: park `workflows` and measure memory
    bool pipelined_sync = true;  // see store::SqliteOptions
};

struct PhaseResult {
    double seconds = 0;
    uint64_t finished = 0;
    uint64_t succeeded = 0;
    uint64_t rolled_back = 0;
    store::StoreStats store;
    std::vector<int64_t> overhead_ns;
    long rss_before_kib = 0;
    long rss_after_kib = 0;
};

PhaseResult RunPhase(const fs::path& dir, const std::vector<workflow::Definition>& defs, const PhaseOptions& o) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto store = store::OpenSqliteStore({.path = (dir / "cogs.db").string(), .pipelined_sync = o.pipelined_sync});
    COGS_CHECK(store.has_value());
    asio::io_context io;
    sim::SimOptions so;
    so.seed = 7;
    if (o.fail_boot) {
        so.faults.fail_actions = {"boot"};
    }
    so.faults.hang_all = o.hang;
    sim::SimService service(io, so);
    workflow::ServiceCatalog catalog;
    for (const char* name : kServices) {
        catalog.Add(name, sim::MakeSimClient(service, name));
    }
    workflow::Registry registry(store->get());
    COGS_CHECK(registry.LoadFromStore().has_value());
    for (auto d : defs) {
        if (o.hang) {
            for (auto& s : d.steps) {
                s.timeout = 10min;  // parked, not timing out
            }
        }
        COGS_CHECK(registry.Register(std::move(d)).has_value());
    }
    workflow::EngineOptions eo;
    eo.default_bulkhead = o.hang ? o.workflows + 1 : 4096;
    workflow::Engine engine(io, **store, registry, catalog, eo);
    COGS_CHECK(engine.Recover().has_value());

    PhaseResult r;
    if (o.rate > 0) {
        r.overhead_ns.reserve(o.workflows * 6);
        engine.SetStepOverheadObserver([&r](int64_t ns) { r.overhead_ns.push_back(ns); });
    }
    int started = 0;
    auto start_one = [&] {
        workflow::StartRequest req;
        req.type = "server.create";
        req.id = fmt::format("wf-{:07}", started);
        req.input = fmt::format(R"({{"network_id":"net-1","flavor":"m1.small","image":"img-1","size_gb":10,"n":{}}})",
                                started);
        ++started;
        engine.Start(std::move(req), [](Result<std::string> id) { COGS_CHECK(id.has_value()); });
    };
    engine.OnFinished([&](const workflow::FinishedEvent& ev) {
        ++r.finished;
        r.succeeded += ev.state == store::WorkflowState::kSucceeded;
        r.rolled_back += ev.state == store::WorkflowState::kRolledBack;
        if (static_cast<int>(r.finished) == o.workflows) {
            io.stop();
        } else if (o.rate == 0 && started < o.workflows) {
            start_one();
        }
    });

    r.rss_before_kib = base::ResidentKib();
    const auto t0 = SteadyClock::now();
    asio::steady_timer ticker(io);
    std::function<void()> tick;
    if (o.hang) {
        for (int i = 0; i < o.workflows; ++i) {
            start_one();
        }
        // Parked once every workflow's first call is out.
        tick = [&] {
            if (static_cast<int>(engine.Stats().calls) >= o.workflows) {
                r.rss_after_kib = base::ResidentKib();
                io.stop();
                return;
            }
            ticker.expires_after(10ms);
            ticker.async_wait([&](auto) { tick(); });
        };
        tick();
    } else if (o.rate > 0) {
        tick = [&] {
            const double due = Seconds(t0, SteadyClock::now()) * o.rate;
            while (started < o.workflows && started < due) {
                start_one();
            }
            if (started < o.workflows) {
                ticker.expires_after(1ms);
                ticker.async_wait([&](auto) { tick(); });
            }
        };
        tick();
    } else {
        for (int i = 0; i < std::min(o.window, o.workflows); ++i) {
            start_one();
        }
    }
    io.run();
    r.seconds = Seconds(t0, SteadyClock::now());
    engine.Shutdown();
    (*store)->Flush();
    r.store = (*store)->Stats();
    return r;
}

}  // namespace

int RunWorkflowBench(const WorkflowBenchOptions& options) {
    spdlog::set_level(spdlog::level::warn);
    const std::string dir = base::FindProjectPath("workflows");
    auto defs = workflow::LoadDefinitionsFromFile(dir + "/server.create.yaml");
    if (!defs) {
        fmt::print(stderr, "cannot load server.create: {}\n", defs.error().ToString());
        return 2;
    }
    const fs::path data = options.data_dir;
    fs::create_directories(data);

    const double fsyncs = MeasureFsyncs(data, 1.0);
    fmt::print("disk: {:.0f} fsyncs/s (4 KiB append + fdatasync)\n", fsyncs);

    // Parked first, while the heap is fresh: later phases leave freed memory that would hide
    // the growth.
    PhaseOptions park;
    park.pipelined_sync = options.pipelined_sync;
    park.workflows = options.parked;
    park.hang = true;
    auto k = RunPhase(data / "parked", *defs, park);
    const double kib = static_cast<double>(k.rss_after_kib - k.rss_before_kib) / park.workflows;
    fmt::print("parked: {} workflows, RSS {} -> {} KiB = {:.2f} KiB each\n", park.workflows, k.rss_before_kib,
               k.rss_after_kib, kib);

    PhaseOptions peak;
    peak.pipelined_sync = options.pipelined_sync;
    peak.workflows = options.workflows;
    peak.window = options.window;
    auto p = RunPhase(data / "peak", *defs, peak);
    COGS_CHECK(static_cast<int>(p.succeeded) == peak.workflows);
    const double wps = p.finished / p.seconds;
    fmt::print("peak: {} workflows in {:.2f}s = {:.0f}/s, {:.1f} transitions/commit\n", p.finished, p.seconds, wps,
               static_cast<double>(p.store.transitions) / std::max<uint64_t>(1, p.store.commits));

    PhaseOptions half;
    half.pipelined_sync = options.pipelined_sync;
    half.rate = wps / 2;
    half.workflows = std::max(1000, static_cast<int>(wps * options.half_rate_seconds / 2));
    auto h = RunPhase(data / "half", *defs, half);
    const double p50 = Percentile(h.overhead_ns, 0.50) / 1000.0;
    const double p99 = Percentile(h.overhead_ns, 0.99) / 1000.0;
    fmt::print("half rate ({:.0f}/s): step overhead p50 {:.0f} us, p99 {:.0f} us over {} steps\n", half.rate, p50,
               p99, h.overhead_ns.size());

    PhaseOptions rb;
    rb.pipelined_sync = options.pipelined_sync;
    rb.workflows = std::max(1000, options.workflows / 2);
    rb.window = options.window;
    rb.fail_boot = true;
    auto b = RunPhase(data / "rollback", *defs, rb);
    COGS_CHECK(static_cast<int>(b.rolled_back) == rb.workflows);
    fmt::print("rollback: {} workflows in {:.2f}s = {:.0f}/s\n", b.finished, b.seconds, b.finished / b.seconds);

    fs::remove_all(data);
    fmt::print(
        R"({{"bench":"workflow","sync":"{}","workflows":{},"workflows_per_s":{:.0f},"transitions_per_s":{:.0f},"fsyncs_per_s":{:.0f},)"
        R"("commits_per_s":{:.0f},"transitions_per_commit":{:.1f},"step_overhead_p50_us":{:.0f},"step_overhead_p99_us":{:.0f},)"
        R"("half_rate_workflows_per_s":{:.0f},"rollback_workflows_per_s":{:.0f},"rss_kib_per_inflight":{:.2f},"parked":{}}})"
        "\n",
        options.pipelined_sync ? "pipelined" : "inline", p.finished, wps, p.store.transitions / p.seconds, fsyncs, p.store.commits / p.seconds,
        static_cast<double>(p.store.transitions) / std::max<uint64_t>(1, p.store.commits), p50, p99, half.rate,
        b.finished / b.seconds, kib, park.workflows);
    return 0;
}

}  // namespace cogs::bench
