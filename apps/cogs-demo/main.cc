// cogs-demo: what `make run` starts for now. Runs bench.server_create workflows durably against the
// in-process simulated services with faults injected, then prints what happened: outcomes, and
// the step timeline of a workflow that succeeded and of one that rolled back. Run it again on the
// same data directory and it first resumes anything an interrupted run left unfinished.
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cogs/base/paths.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"

namespace asio = boost::asio;
using namespace cogs;
namespace sim = cogs::services::sim;
using namespace std::chrono_literals;

namespace {

void PrintTimeline(store::Store& st, const workflow::Registry& registry, const std::string& id) {
    auto wf = st.GetWorkflow(id);
    if (!wf) {
        return;
    }
    const workflow::Definition* def = registry.Get(wf->type, wf->version);
    fmt::print("\nworkflow {}  type {} v{}  state {}{}\n", wf->id, wf->type, wf->version,
               store::ToString(wf->state), wf->reason.empty() ? "" : "  reason: " + wf->reason);
    for (const auto& s : wf->steps) {
        fmt::print("  {:<14} {:<20} attempts {}  undo attempts {}\n",
                   def != nullptr ? def->steps[s.index].name : std::to_string(s.index),
                   store::ToString(s.state), s.attempts, s.comp_attempts);
        std::istringstream log(s.log);
        for (std::string line; std::getline(log, line);) {
            fmt::print("      {}\n", line);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cogs-demo: durable workflows against simulated services"};
    std::string data_dir = ".cogs";
    std::string workflows_dir = base::FindProjectPath("bench/workflows");
    int count = 200;
    app.add_option("--data-dir", data_dir, "where the store lives");
    app.add_option("--workflows", workflows_dir, "directory of workflow definitions (YAML)");
    app.add_option("--count", count, "bench.server_create workflows to run")->check(CLI::Range(1, 1000000));
    std::string list_state, show_id, list_type;
    bool list = false;
    app.add_flag("--list", list, "list the workflows of the data directory instead of running");
    app.add_option("--state", list_state,
                   "with --list: only this state (running, compensating, succeeded, "
                   "rolled_back, failed)");
    app.add_option("--type", list_type, "with --list: only this workflow type");
    app.add_option("--show", show_id, "print one workflow's step timeline instead of running");
    CLI11_PARSE(app, argc, argv);
    spdlog::set_level(spdlog::level::warn);

    std::filesystem::create_directories(data_dir);
    auto st = store::OpenSqliteStore({data_dir + "/cogs.db"});
    if (!st) {
        fmt::print(stderr, "cogs-demo: {}\n", st.error().ToString());
        return 1;
    }
    if (list || !show_id.empty()) {
        workflow::Registry saved(st->get());
        if (auto s = saved.LoadFromStore(); !s) {
            fmt::print(stderr, "cogs-demo: {}\n", s.error().ToString());
            return 1;
        }
        if (!show_id.empty()) {
            if (auto wf = (*st)->GetWorkflow(show_id); !wf) {
                fmt::print(stderr, "cogs-demo: {}\n", wf.error().ToString());
                return 1;
            }
            PrintTimeline(**st, saved, show_id);
            return 0;
        }
        store::ListFilter filter;
        filter.type = list_type;
        if (!list_state.empty()) {
            filter.state = store::ParseWorkflowState(list_state);
            if (!filter.state) {
                fmt::print(stderr, "cogs-demo: --state: unknown state '{}'\n", list_state);
                return 2;
            }
        }
        filter.limit = 1000;
        for (;;) {
            auto page = (*st)->ListWorkflows(filter);
            if (!page) {
                fmt::print(stderr, "cogs-demo: {}\n", page.error().ToString());
                return 1;
            }
            for (const auto& w : *page) {
                fmt::print("{:<28} {:<16} v{:<3} {:<13} {}\n", w.id, w.type, w.version,
                           store::ToString(w.state), w.reason);
                filter.after_id = w.id;
            }
            if (page->size() < static_cast<size_t>(filter.limit)) {
                return 0;
            }
        }
    }

    auto defs = workflow::LoadDefinitionsFromDirectory(workflows_dir);
    if (!defs) {
        fmt::print(stderr, "cogs-demo: {}\n", defs.error().ToString());
        return 1;
    }
    workflow::Registry registry(st->get());
    if (auto s = registry.LoadFromStore(); !s) {
        fmt::print(stderr, "cogs-demo: {}\n", s.error().ToString());
        return 1;
    }
    if (auto s = registry.RegisterAll(std::move(*defs)); !s) {
        fmt::print(stderr, "cogs-demo: {}\n", s.error().ToString());
        return 1;
    }

    asio::io_context io;
    sim::SimOptions so;
    so.faults.error_rate = 0.05;
    so.faults.lost_reply_rate = 0.02;
    so.faults.latency = 2ms;
    sim::SimService service(io, so);
    workflow::ServiceCatalog catalog;
    for (const char* name : {"network", "volume", "scheduler", "compute"}) {
        catalog.Add(name, sim::MakeSimClient(service, name));
    }
    workflow::Engine engine(io, **st, registry, catalog, {});
    if (auto s = engine.Recover(); !s) {
        fmt::print(stderr, "cogs-demo: {}\n", s.error().ToString());
        return 1;
    }
    const uint64_t resumed = engine.Stats().resumed;
    fmt::print("cogs-demo: store {}/cogs.db, workflow types: {}; resumed {} unfinished workflow(s)\n",
               data_dir, fmt::join(registry.Types(), ", "), resumed);

    const std::string run = fmt::format("{:x}", WallNowMs());
    std::string ok_id, rolled_id, cancelled_id;
    int started = 0;
    auto start = [&](int i) {
        workflow::StartRequest req;
        req.type = "bench.server_create";
        req.id = fmt::format("demo-{}-{:04}", run, i);
        req.input =
            fmt::format(R"({{"network_id":"net-demo","flavor":"m1.small","image":"debian-12","size_gb":{}}})",
                        10 + i % 40);
        ++started;
        engine.Start(std::move(req), [](Result<std::string> r) {
            if (!r) {
                fmt::print(stderr, "start failed: {}\n", r.error().ToString());
            }
        });
        return fmt::format("demo-{}-{:04}", run, i);
    };
    // Phase 1: `count` creates with transient faults (retried). Phase 2: boot fails for good in
    // 10 more (rolled back). Phase 3: one that hangs is cancelled (rolled back).
    int phase = 1;
    uint64_t finished = 0;
    asio::steady_timer timer(io);
    engine.OnFinished([&](const workflow::FinishedEvent& ev) {
        ++finished;
        if (ev.state == store::WorkflowState::kSucceeded && ok_id.empty()) {
            ok_id = ev.id;
        }
        if (finished != static_cast<uint64_t>(started) + resumed) {
            return;
        }
        if (phase == 1) {
            phase = 2;
            auto f = so.faults;
            f.fail_actions = {"boot"};
            service.SetFaults(f);
            for (int i = 0; i < 10; ++i) {
                rolled_id = start(count + i);
            }
        } else if (phase == 2) {
            phase = 3;
            auto f = so.faults;
            f.hang_all = true;
            service.SetFaults(f);
            cancelled_id = start(count + 10);
            timer.expires_after(200ms);
            timer.async_wait([&](auto) {
                service.SetFaults(so.faults);  // the undo calls must get through
                engine.Cancel(cancelled_id, [](Status) {});
            });
        } else {
            io.stop();
        }
    });
    const auto t0 = SteadyClock::now();
    for (int i = 0; i < count; ++i) {
        start(i);
    }
    io.run();
    const double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    engine.Shutdown();
    (*st)->Flush();

    const auto stats = engine.Stats();
    fmt::print(
        "\nran {} workflows in {:.2f}s: {} succeeded, {} rolled back, {} failed; {} calls, {} retries, {} "
        "timeouts, {} compensations\n",
        stats.succeeded + stats.rolled_back + stats.failed, secs, stats.succeeded, stats.rolled_back,
        stats.failed, stats.calls, stats.retries, stats.timeouts, stats.compensations);
    auto counts = (*st)->CountByState();
    if (counts) {
        fmt::print("store now holds:");
        for (const auto& [state, n] : *counts) {
            fmt::print("  {} {}", store::ToString(state), n);
        }
        fmt::print("\n");
    }
    PrintTimeline(**st, registry, ok_id);
    PrintTimeline(**st, registry, rolled_id);
    PrintTimeline(**st, registry, cancelled_id);
    fmt::print(
        "\ninspect later: {0} --data-dir {1} --list [--state rolled_back]   |   {0} --data-dir {1} --show "
        "ID\n",
        argv[0], data_dir);
    return 0;
}
