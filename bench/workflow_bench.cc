// cogs-bench workflow: the reference workflow bench.server_create against the in-process simulated
// service, durability on (SQLite WAL, synchronous=FULL; or a private PostgreSQL server, fsync and
// synchronous_commit on), with metrics and tracing off or on. See bench/README.md for the figures.
#include "bench/workflow_bench.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/workflow_bench_pg.h"
#include "cogs/base/check.h"
#include "cogs/base/paths.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/observe/trace.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/store/store.h"
#include "cogs/store/store_metrics.h"
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

// CPU seconds (user + system) used so far by every thread of this process.
double ProcessCpuSeconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return s(u.ru_utime) + s(u.ru_stime);
}

double Percentile(std::vector<int64_t>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return static_cast<double>(
        v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
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
    int window = 4000;            // workflows kept in flight
    double rate = 0;              // >0: start at this fixed rate instead of a window
    bool fail_boot = false;       // step 5 always fails: full compensation
    bool hang = false;            // the service never answers: park `workflows` and measure memory
    bool pipelined_sync = true;   // see store::SqliteOptions
    bool observe = false;         // a metrics registry for engine and store, a traceparent per workflow
    PgBenchServer* pg = nullptr;  // non-null: the phase runs on a fresh database of this server
};

struct PhaseResult {
    double seconds = 0;
    double cpu_seconds = 0;         // the process's, while the phase ran
    double server_cpu_seconds = 0;  // PostgreSQL's, while the phase ran
    uint64_t finished = 0;
    uint64_t succeeded = 0;
    uint64_t rolled_back = 0;
    store::StoreStats store;
    std::vector<int64_t> overhead_ns;
    long rss_before_kib = 0;
    long rss_after_kib = 0;
    size_t metrics_bytes = 0;  // observe on: the size of one /metrics rendering at the end
    double render_ms = 0;      // and how long it took
};

// Drops the phase's PostgreSQL database once the store (declared after it) has closed.
struct PhaseDatabase {
    PgBenchServer* pg = nullptr;
    ~PhaseDatabase() {
        if (pg != nullptr) {
            pg->DropDatabase();
        }
    }
};

Result<PhaseResult> RunPhase(const fs::path& dir, const std::vector<workflow::Definition>& defs,
                             const PhaseOptions& o) {
    // Declared before the store and the engine, which hold pointers into it.
    std::unique_ptr<observe::Metrics> metrics = o.observe ? std::make_unique<observe::Metrics>() : nullptr;
    PhaseDatabase database;
    Result<std::unique_ptr<store::Store>> store = MakeError(ErrorCode::kInternal, "no store");
    if (o.pg != nullptr) {
        COGS_ASSIGN_OR_RETURN(std::string conninfo, o.pg->NewDatabase(dir.filename().string()));
        database.pg = o.pg;
        store::PgOptions pgo;
        pgo.conninfo = conninfo;
        pgo.on_commit = store::CommitMetrics(metrics.get());
        store = store::OpenPgStore(pgo);
    } else {
        fs::remove_all(dir);
        fs::create_directories(dir);
        store::SqliteOptions sqlite;
        sqlite.path = (dir / "cogs.db").string();
        sqlite.pipelined_sync = o.pipelined_sync;
        sqlite.on_commit = store::CommitMetrics(metrics.get());
        store = store::OpenSqliteStore(sqlite);
    }
    if (!store) {
        return MakeError(store.error());
    }
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
    COGS_TRY(registry.LoadFromStore());
    for (auto d : defs) {
        if (o.hang) {
            for (auto& s : d.steps) {
                s.timeout = 10min;  // parked, not timing out
            }
        }
        COGS_TRY(registry.Register(std::move(d)));
    }
    workflow::EngineOptions eo;
    eo.default_bulkhead = o.hang ? o.workflows + 1 : 4096;
    eo.metrics = metrics.get();
    workflow::Engine engine(io, **store, registry, catalog, eo);
    COGS_TRY(engine.Recover());

    PhaseResult r;
    if (o.rate > 0) {
        r.overhead_ns.reserve(o.workflows * 6);
        engine.SetStepOverheadObserver([&r](int64_t ns) { r.overhead_ns.push_back(ns); });
    }
    int started = 0;
    auto start_one = [&] {
        workflow::StartRequest req;
        req.type = "bench.server_create";
        req.id = fmt::format("wf-{:07}", started);
        req.input = fmt::format(
            R"({{"network_id":"net-1","flavor":"m1.small","image":"img-1","size_gb":10,"n":{}}})", started);
        if (o.observe) {
            req.traceparent = observe::TraceContext::New().ToTraceparent();  // as the API starts a trace
        }
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
    const double cpu0 = ProcessCpuSeconds();
    const double server_cpu0 = o.pg != nullptr ? o.pg->CpuSeconds() : 0;
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
    r.cpu_seconds = ProcessCpuSeconds() - cpu0;
    r.server_cpu_seconds = o.pg != nullptr ? o.pg->CpuSeconds() - server_cpu0 : 0;
    engine.Shutdown();
    (*store)->Flush();
    r.store = (*store)->Stats();
    if (metrics != nullptr) {
        const auto before_render = SteadyClock::now();
        r.metrics_bytes = metrics->Render().size();
        r.render_ms = Seconds(before_render, SteadyClock::now()) * 1000;
    }
    return r;
}

// The figures of one run of every phase.
struct Figures {
    int workflows = 0;
    double workflows_per_s = 0;
    double cpu_us_per_workflow = 0;  // peak phase: the process's CPU time per workflow
    double transitions_per_s = 0;
    double commits_per_s = 0;
    double transitions_per_commit = 0;
    double step_overhead_p50_us = 0;
    double step_overhead_p99_us = 0;
    double half_rate = 0;
    double rollback_workflows_per_s = 0;
    double rss_kib_per_inflight = 0;
    size_t metrics_bytes = 0;
    double render_ms = 0;
    // CPU seconds while each timed phase ran (peak, half, rollback): this process's and, with
    // PostgreSQL, the server's. Both run on the same cores.
    double peak_cpu_s = 0;
    double half_cpu_s = 0;
    double rollback_cpu_s = 0;
    double peak_server_cpu_s = 0;
    double half_server_cpu_s = 0;
    double rollback_server_cpu_s = 0;
    double server_cpu_us_per_workflow = 0;  // peak phase: the server's CPU time per workflow
};

Result<Figures> RunOnce(const WorkflowBenchOptions& options, const std::vector<workflow::Definition>& defs,
                        const fs::path& data, bool observe, PgBenchServer* pg) {
    const char* tag = observe ? "observe on" : "observe off";
    Figures f;
    // Parked first, while the heap is fresh: later phases leave freed memory that would hide
    // the growth.
    PhaseOptions park;
    park.pipelined_sync = options.pipelined_sync;
    park.observe = observe;
    park.pg = pg;
    park.workflows = options.parked;
    park.hang = true;
    COGS_ASSIGN_OR_RETURN(PhaseResult k, RunPhase(data / "parked", defs, park));
    f.rss_kib_per_inflight = static_cast<double>(k.rss_after_kib - k.rss_before_kib) / park.workflows;
    fmt::print("[{}] parked: {} workflows, RSS {} -> {} KiB = {:.2f} KiB each\n", tag, park.workflows,
               k.rss_before_kib, k.rss_after_kib, f.rss_kib_per_inflight);

    PhaseOptions peak;
    peak.pipelined_sync = options.pipelined_sync;
    peak.observe = observe;
    peak.pg = pg;
    peak.workflows = options.workflows;
    peak.window = options.window;
    COGS_ASSIGN_OR_RETURN(PhaseResult p, RunPhase(data / "peak", defs, peak));
    COGS_CHECK(static_cast<int>(p.succeeded) == peak.workflows);
    f.workflows = static_cast<int>(p.finished);
    f.workflows_per_s = static_cast<double>(p.finished) / p.seconds;
    f.cpu_us_per_workflow = p.cpu_seconds * 1e6 / static_cast<double>(p.finished);
    f.transitions_per_s = static_cast<double>(p.store.transitions) / p.seconds;
    f.commits_per_s = static_cast<double>(p.store.commits) / p.seconds;
    f.transitions_per_commit = static_cast<double>(p.store.transitions) /
                               static_cast<double>(std::max<uint64_t>(1, p.store.commits));
    f.metrics_bytes = p.metrics_bytes;
    f.render_ms = p.render_ms;
    f.peak_cpu_s = p.cpu_seconds;
    f.peak_server_cpu_s = p.server_cpu_seconds;
    f.server_cpu_us_per_workflow = p.server_cpu_seconds * 1e6 / static_cast<double>(p.finished);
    fmt::print(
        "[{}] peak: {} workflows in {:.2f}s = {:.0f}/s, {:.0f} us CPU each, {:.1f} transitions/commit\n", tag,
        p.finished, p.seconds, f.workflows_per_s, f.cpu_us_per_workflow, f.transitions_per_commit);
    if (pg != nullptr) {
        fmt::print(
            "[{}] peak: PostgreSQL used {:.2f} s CPU ({:.0f} us per workflow), the bench {:.2f} s, "
            "in {:.2f} s on {} cores; {:.0f} commits/s\n",
            tag, p.server_cpu_seconds, f.server_cpu_us_per_workflow, p.cpu_seconds, p.seconds,
            ::sysconf(_SC_NPROCESSORS_ONLN), f.commits_per_s);
    }

    PhaseOptions half;
    half.pipelined_sync = options.pipelined_sync;
    half.observe = observe;
    half.pg = pg;
    half.rate = f.workflows_per_s / 2;
    half.workflows = std::max(1000, static_cast<int>(f.workflows_per_s * options.half_rate_seconds / 2));
    COGS_ASSIGN_OR_RETURN(PhaseResult h, RunPhase(data / "half", defs, half));
    f.half_rate = half.rate;
    f.half_cpu_s = h.cpu_seconds;
    f.half_server_cpu_s = h.server_cpu_seconds;
    f.step_overhead_p50_us = Percentile(h.overhead_ns, 0.50) / 1000.0;
    f.step_overhead_p99_us = Percentile(h.overhead_ns, 0.99) / 1000.0;
    fmt::print("[{}] half rate ({:.0f}/s): step overhead p50 {:.0f} us, p99 {:.0f} us over {} steps\n", tag,
               half.rate, f.step_overhead_p50_us, f.step_overhead_p99_us, h.overhead_ns.size());

    PhaseOptions rb;
    rb.pipelined_sync = options.pipelined_sync;
    rb.observe = observe;
    rb.pg = pg;
    rb.workflows = std::max(1000, options.workflows / 2);
    rb.window = options.window;
    rb.fail_boot = true;
    COGS_ASSIGN_OR_RETURN(PhaseResult b, RunPhase(data / "rollback", defs, rb));
    COGS_CHECK(static_cast<int>(b.rolled_back) == rb.workflows);
    f.rollback_workflows_per_s = static_cast<double>(b.finished) / b.seconds;
    f.rollback_cpu_s = b.cpu_seconds;
    f.rollback_server_cpu_s = b.server_cpu_seconds;
    fmt::print("[{}] rollback: {} workflows in {:.2f}s = {:.0f}/s\n", tag, b.finished, b.seconds,
               f.rollback_workflows_per_s);
    if (observe) {
        fmt::print("[{}] /metrics after the peak phase: {} bytes, rendered in {:.2f} ms\n", tag,
                   f.metrics_bytes, f.render_ms);
    }
    std::fflush(stdout);
    return f;
}

// The JSON fields of one figure set (no braces); with PostgreSQL, also the server's CPU.
std::string FiguresJson(const Figures& f, bool pg) {
    // Per timed phase: {"bench": s} or {"bench": s, "server": s}.
    auto cpu = [pg](double bench, double server) {
        return pg ? fmt::format(R"({{"bench":{:.2f},"server":{:.2f}}})", bench, server)
                  : fmt::format(R"({{"bench":{:.2f}}})", bench);
    };
    std::string out = fmt::format(
        R"("workflows":{},"workflows_per_s":{:.0f},"cpu_us_per_workflow":{:.1f},"transitions_per_s":{:.0f},"commits_per_s":{:.0f},)"
        R"("transitions_per_commit":{:.1f},"step_overhead_p50_us":{:.0f},"step_overhead_p99_us":{:.0f},)"
        R"("half_rate_workflows_per_s":{:.0f},"rollback_workflows_per_s":{:.0f},"rss_kib_per_inflight":{:.2f},)"
        R"("metrics_bytes":{},"metrics_render_ms":{:.2f},"cpu_s":{{"peak":{},"half":{},"rollback":{}}})",
        f.workflows, f.workflows_per_s, f.cpu_us_per_workflow, f.transitions_per_s, f.commits_per_s,
        f.transitions_per_commit, f.step_overhead_p50_us, f.step_overhead_p99_us, f.half_rate,
        f.rollback_workflows_per_s, f.rss_kib_per_inflight, f.metrics_bytes, f.render_ms,
        cpu(f.peak_cpu_s, f.peak_server_cpu_s), cpu(f.half_cpu_s, f.half_server_cpu_s),
        cpu(f.rollback_cpu_s, f.rollback_server_cpu_s));
    if (pg) {
        out += fmt::format(R"(,"server_cpu_us_per_workflow":{:.1f})", f.server_cpu_us_per_workflow);
    }
    return out;
}

double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0
                     : (v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

// Per figure, the median over runs.
Figures MedianOf(const std::vector<Figures>& runs) {
    auto med = [&](auto field) {
        std::vector<double> v;
        for (const Figures& f : runs) {
            v.push_back(static_cast<double>(f.*field));
        }
        return Median(std::move(v));
    };
    Figures m;
    m.workflows = runs.empty() ? 0 : runs[0].workflows;
    m.workflows_per_s = med(&Figures::workflows_per_s);
    m.cpu_us_per_workflow = med(&Figures::cpu_us_per_workflow);
    m.transitions_per_s = med(&Figures::transitions_per_s);
    m.commits_per_s = med(&Figures::commits_per_s);
    m.transitions_per_commit = med(&Figures::transitions_per_commit);
    m.step_overhead_p50_us = med(&Figures::step_overhead_p50_us);
    m.step_overhead_p99_us = med(&Figures::step_overhead_p99_us);
    m.half_rate = med(&Figures::half_rate);
    m.rollback_workflows_per_s = med(&Figures::rollback_workflows_per_s);
    m.rss_kib_per_inflight = med(&Figures::rss_kib_per_inflight);
    m.metrics_bytes = static_cast<size_t>(med(&Figures::metrics_bytes));
    m.render_ms = med(&Figures::render_ms);
    m.peak_cpu_s = med(&Figures::peak_cpu_s);
    m.half_cpu_s = med(&Figures::half_cpu_s);
    m.rollback_cpu_s = med(&Figures::rollback_cpu_s);
    m.peak_server_cpu_s = med(&Figures::peak_server_cpu_s);
    m.half_server_cpu_s = med(&Figures::half_server_cpu_s);
    m.rollback_server_cpu_s = med(&Figures::rollback_server_cpu_s);
    m.server_cpu_us_per_workflow = med(&Figures::server_cpu_us_per_workflow);
    return m;
}

// How much lower `on` is than `off`, in percent of `off` (negative: on was faster).
double LossPct(double off, double on) { return off > 0 ? (off - on) / off * 100 : 0; }

std::string Joined(const std::vector<Figures>& runs, double Figures::*field) {
    std::string out;
    for (const Figures& f : runs) {
        out += fmt::format("{}{:.0f}", out.empty() ? "" : ",", f.*field);
    }
    return out;
}

// What precedes the figures in the JSON line: the store, how it syncs, and the server's settings.
std::string StoreJson(const WorkflowBenchOptions& options, const PgBenchServer* pg) {
    if (pg == nullptr) {
        return fmt::format(R"("store":"sqlite","sync":"{}")",
                           options.pipelined_sync ? "pipelined" : "inline");
    }
    std::string settings;
    for (const auto& [name, value] : pg->settings()) {
        settings += fmt::format(R"({}"{}":"{}")", settings.empty() ? "" : ",", name, value);
    }
    return fmt::format(
        R"("store":"postgres","sync":"fsync=on,synchronous_commit=on","pg_settings":{{{}}},)"
        R"("skipped":"the SQLite sync variants (pipelined/inline fdatasync): PostgreSQL syncs its WAL in COMMIT")",
        settings);
}

int RunAll(const WorkflowBenchOptions& options, const std::vector<workflow::Definition>& defs,
           const fs::path& data, double fsyncs, PgBenchServer* pg) {
    const std::string store = StoreJson(options, pg);
    auto fail = [](const Error& e) {
        fmt::print(stderr, "cogs-bench workflow: {}\n", e.ToString());
        return 1;
    };
    if (!options.compare_observe) {
        auto f = RunOnce(options, defs, data, options.observe, pg);
        if (!f) {
            return fail(f.error());
        }
        fmt::print(R"({{"bench":"workflow",{},"observe":"{}",{},"fsyncs_per_s":{:.0f},"parked":{}}})"
                   "\n",
                   store, options.observe ? "on" : "off", FiguresJson(*f, pg != nullptr), fsyncs,
                   options.parked);
        return 0;
    }

    // Off and on alternately, so that a change in the machine's load (other jobs on the same two
    // cores) falls on both modes alike; medians per mode.
    std::vector<Figures> off, on;
    for (int run = 0; run < options.runs; ++run) {
        fmt::print("run {} of {}\n", run + 1, options.runs);
        for (bool observe : {false, true}) {
            auto f = RunOnce(options, defs, data, observe, pg);
            if (!f) {
                return fail(f.error());
            }
            (observe ? on : off).push_back(*f);
        }
    }
    const Figures m_off = MedianOf(off);
    const Figures m_on = MedianOf(on);
    fmt::print(
        "observe off: {:.0f} workflows/s, {:.0f} us CPU each; on: {:.0f} workflows/s, {:.0f} us CPU each "
        "(medians of {}): {:.1f} % fewer workflows/s, {:.1f} % more CPU per workflow with metrics and "
        "tracing on\n",
        m_off.workflows_per_s, m_off.cpu_us_per_workflow, m_on.workflows_per_s, m_on.cpu_us_per_workflow,
        options.runs, LossPct(m_off.workflows_per_s, m_on.workflows_per_s),
        -LossPct(m_off.cpu_us_per_workflow, m_on.cpu_us_per_workflow));
    fmt::print(
        R"({{"bench":"workflow",{},"compare":"observe","runs":{},"off":{{{}}},"on":{{{}}},)"
        R"("overhead_pct":{{"workflows_per_s":{:.1f},"cpu_us_per_workflow":{:.1f},"rollback_workflows_per_s":{:.1f},)"
        R"("half_rate_workflows_per_s":{:.1f},"step_overhead_p50_us":{:.1f},"step_overhead_p99_us":{:.1f}}},)"
        R"("runs_workflows_per_s":{{"off":[{}],"on":[{}]}},"runs_cpu_us_per_workflow":{{"off":[{}],"on":[{}]}},)"
        R"("fsyncs_per_s":{:.0f},"parked":{}}})"
        "\n",
        store, options.runs, FiguresJson(m_off, pg != nullptr), FiguresJson(m_on, pg != nullptr),
        LossPct(m_off.workflows_per_s, m_on.workflows_per_s),
        // For CPU and latencies, "overhead" is how much higher on is.
        -LossPct(m_off.cpu_us_per_workflow, m_on.cpu_us_per_workflow),
        LossPct(m_off.rollback_workflows_per_s, m_on.rollback_workflows_per_s),
        LossPct(m_off.half_rate, m_on.half_rate),
        -LossPct(m_off.step_overhead_p50_us, m_on.step_overhead_p50_us),
        -LossPct(m_off.step_overhead_p99_us, m_on.step_overhead_p99_us),
        Joined(off, &Figures::workflows_per_s), Joined(on, &Figures::workflows_per_s),
        Joined(off, &Figures::cpu_us_per_workflow), Joined(on, &Figures::cpu_us_per_workflow), fsyncs,
        options.parked);
    return 0;
}

}  // namespace

int RunWorkflowBench(const WorkflowBenchOptions& options) {
    // Every component at warn, in both modes: the engine writes an info line per rolled-back
    // workflow, which the rollback phase would otherwise print 15,000 times.
    spdlog::set_level(spdlog::level::warn);
    (void)observe::SetLevel("*", "warn");
    const std::string dir = base::FindProjectPath("bench/workflows");
    auto defs = workflow::LoadDefinitionsFromFile(dir + "/server_create.yaml");
    if (!defs) {
        fmt::print(stderr, "cannot load bench.server_create: {}\n", defs.error().ToString());
        return 2;
    }
    const fs::path data = options.data_dir;
    fs::create_directories(data);

    const double fsyncs = MeasureFsyncs(data, 1.0);
    fmt::print("disk: {:.0f} fsyncs/s (4 KiB append + fdatasync)\n", fsyncs);

    // The server lives in the data dir (the disk the fsync figure is about) for the whole run; every
    // way out below stops it and removes its directory.
    std::unique_ptr<PgBenchServer> pg;
    if (options.store == "postgres") {
        auto started = PgBenchServer::Start((data / "pg").string(), options.pg_settings);
        if (!started) {
            fmt::print(stderr, "cogs-bench workflow: PostgreSQL did not start: {}\n",
                       started.error().message);
            if (!fs::exists(data / "pg")) {  // else another run's server still shuts down in it
                fs::remove_all(data);
            }
            return 1;
        }
        pg = std::move(*started);
        fmt::print("postgres: a private server (fsync on, synchronous_commit on) in {}, log {}\n",
                   (data / "pg").string(), pg->log_path());
        std::fflush(stdout);
    }
    const int rc = RunAll(options, *defs, data, fsyncs, pg.get());
    pg.reset();
    fs::remove_all(data);
    return rc;
}

}  // namespace cogs::bench
