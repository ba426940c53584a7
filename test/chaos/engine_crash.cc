// cogs-chaos engine-crash: SIGKILLs an engine process at random moments while it runs workflows
// against the simulated service process, restarts it, and finally checks the invariants against
// the service's ledger and the engine's store.
#include "test/chaos/engine_crash.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "cogs/base/check.h"
#include "cogs/base/paths.h"
#include "cogs/http/client.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"
#include "test/chaos/process.h"
#include "test/support/random_dag.h"

namespace cogs::testing {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* kServices[] = {"network", "volume", "scheduler", "compute", "sim"};
constexpr int kRandomTypes = 4;

std::vector<workflow::Definition> ChaosDefinitions(uint64_t seed) {
    std::vector<workflow::Definition> defs;
    auto loaded =
        workflow::LoadDefinitionsFromFile(base::FindProjectPath("bench/workflows") + "/server_create.yaml");
    COGS_CHECK(loaded.has_value());
    for (auto& d : *loaded) {
        for (auto& s : d.steps) {
            s.timeout = 300ms;
            if (s.compensation) {
                s.compensation->timeout = 300ms;
                s.compensation->retry.max_attempts = 100;
            }
        }
        defs.push_back(std::move(d));
    }
    std::mt19937_64 rng(seed);
    RandomDagOptions o;
    o.timeout = 300ms;
    o.comp_max_attempts = 100;
    for (int i = 0; i < kRandomTypes; ++i) {
        defs.push_back(RandomDefinition(rng, fmt::format("chaos.dag{}", i), o));
    }
    return defs;
}

std::string WorkflowId(int i) { return fmt::format("c{:06}", i); }

std::optional<std::string> ReadFile(const fs::path& p) {
    std::ifstream in(p);
    if (!in) {
        return std::nullopt;
    }
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A blocking GET through the project's HTTP client.
Result<std::string> HttpGet(uint16_t port, const std::string& target) {
    asio::io_context io;
    auto client = http::MakeClient(io, {"127.0.0.1", port, 1});
    Result<std::string> out = MakeError(ErrorCode::kInternal, "no answer");
    http::Request req;
    req.method = "GET";
    req.target = target;
    client->Send(std::move(req), SteadyClock::now() + 30s, [&](Result<http::Response> r) {
        if (!r) {
            out = MakeError(r.error());
        } else if (r->status != 200) {
            out = MakeError(ErrorCode::kInternal, fmt::format("GET {}: {}", target, r->status));
        } else {
            out = std::move(r->body);
        }
        io.stop();  // the pooled keep-alive connection would otherwise keep run() going
    });
    io.run();
    return out;
}

}  // namespace

int RunEngineWorker(const WorkerOptions& o) {
    spdlog::set_level(spdlog::level::warn);
    const fs::path dir = o.data_dir;
    auto store = store::OpenSqliteStore({.path = (dir / "cogs.db").string()});
    if (!store) {
        fmt::print(stderr, "worker: {}\n", store.error().ToString());
        return 3;
    }
    asio::io_context io;
    workflow::ServiceCatalog catalog;
    for (const char* name : kServices) {
        catalog.Add(name, services::kit::MakeHttpServiceClient(io, "127.0.0.1", o.sim_port, name, 32));
    }
    workflow::Registry registry(store->get());
    COGS_CHECK(registry.LoadFromStore().has_value());
    COGS_CHECK(registry.RegisterAll(ChaosDefinitions(o.seed)).has_value());
    workflow::EngineOptions eo;
    eo.owner = "chaos-worker";
    eo.default_bulkhead = 32;
    eo.seed = o.seed ^ static_cast<uint64_t>(::getpid());
    workflow::Engine engine(io, **store, registry, catalog, eo);
    if (auto s = engine.Recover(); !s) {
        fmt::print(stderr, "worker: recover: {}\n", s.error().ToString());
        return 3;
    }
    // Ids acknowledged by an earlier incarnation are not submitted again.
    std::set<std::string> known;
    if (auto text = ReadFile(dir / "accepted.log")) {
        std::istringstream in(*text);
        for (std::string line; std::getline(in, line);) {
            known.insert(line);
        }
    }
    std::vector<int> pending;
    for (int i = 0; i < o.workflows; ++i) {
        if (known.count(WorkflowId(i)) == 0) {
            pending.push_back(i);
        }
    }
    std::ofstream accepted(dir / "accepted.log", std::ios::app);
    const std::vector<std::string> types = registry.Types();
    size_t answered = 0;
    auto maybe_exit = [&] {
        if (answered == pending.size() && engine.Stats().inflight == 0) {
            io.stop();
        }
    };
    engine.OnFinished([&](const workflow::FinishedEvent&) { asio::post(io, maybe_exit); });
    // Submit at a bounded rate, so that kills land during submission as well as during execution.
    size_t next = 0;
    const auto t0 = SteadyClock::now();
    asio::steady_timer pacer(io);
    std::function<void()> submit = [&] {
        const double due = std::chrono::duration<double>(SteadyClock::now() - t0).count() * o.rate + 1;
        for (; next < pending.size() && static_cast<double>(next) < due; ++next) {
            const int i = pending[next];
            workflow::StartRequest req;
            req.id = WorkflowId(i);
            req.type = types[i % types.size()];
            req.input = fmt::format(R"({{"network_id":"net-{}","flavor":"m1","image":"img","size_gb":{}}})",
                                    i % 7, 1 + i % 50);
            engine.Start(std::move(req), [&, i](Result<std::string> r) {
                ++answered;
                if (r || r.error().code == ErrorCode::kAlreadyExists) {
                    accepted << WorkflowId(i) << '\n';
                    accepted.flush();  // in the page cache: survives SIGKILL of this process
                } else {
                    fmt::print(stderr, "worker: start {}: {}\n", WorkflowId(i), r.error().ToString());
                    std::exit(4);
                }
                maybe_exit();
            });
        }
        if (next < pending.size()) {
            pacer.expires_after(5ms);
            pacer.async_wait([&](auto) { submit(); });
        }
    };
    submit();
    asio::post(io, maybe_exit);
    io.run();
    engine.Shutdown();
    (*store)->Flush();
    return 0;
}

int RunEngineCrash(const CrashOptions& o) {
    const fs::path dir = o.dir.empty()
                             ? fs::temp_directory_path() / fmt::format("cogs-chaos-{}-{}", o.seed, ::getpid())
                             : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::mt19937_64 rng(o.seed);

    Child sim = Child::Spawn(
        // --insecure: the workers call it without a token; --test-routes: the ledger is read below.
        {SiblingBinary("cogs-sim"),
         "--insecure",
         "--test-routes",
         "--listen",
         "127.0.0.1:0",
         "--port-file",
         (dir / "sim.port").string(),
         "--ledger",
         (dir / "ledger.db").string(),
         "--seed",
         std::to_string(o.seed),
         "--error-rate",
         "0.03",
         "--permanent-rate",
         "0.01",
         "--hang-rate",
         "0.01",
         "--lost-reply-rate",
         "0.02",
         "--latency-ms",
         "1"},
        (dir / "sim.log").string());
    uint16_t port = 0;
    for (int i = 0; i < 1000 && port == 0; ++i) {
        if (auto text = ReadFile(dir / "sim.port"); text && !text->empty()) {
            port = static_cast<uint16_t>(std::stoi(*text));
        } else {
            std::this_thread::sleep_for(10ms);
        }
    }
    if (port == 0) {
        fmt::print(stderr, "cogs-sim did not start; see {}\n", (dir / "sim.log").string());
        return 2;
    }
    const std::vector<std::string> worker_argv = {SiblingBinary("cogs-chaos"),
                                                  "engine-worker",
                                                  "--data",
                                                  dir.string(),
                                                  "--sim-port",
                                                  std::to_string(port),
                                                  "--workflows",
                                                  std::to_string(o.workflows),
                                                  "--seed",
                                                  std::to_string(o.seed),
                                                  "--rate",
                                                  std::to_string(o.rate)};
    const auto t0 = SteadyClock::now();
    int kills = 0;
    for (int k = 0; k < o.kills; ++k) {
        Child worker = Child::Spawn(worker_argv, (dir / "worker.log").string());
        const int ms = std::uniform_int_distribution<int>(30, o.max_kill_interval_ms)(rng);
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        if (!worker.Running()) {
            const int rc = worker.Wait();
            if (rc != 0) {
                fmt::print(stderr, "worker exited with {} before its kill; see {}\n", rc,
                           (dir / "worker.log").string());
                return 2;
            }
            break;  // everything finished before this kill: no more kills are possible
        }
        worker.Kill(SIGKILL);
        worker.Wait();
        ++kills;
    }
    Child last = Child::Spawn(worker_argv, (dir / "worker.log").string());
    const int rc = last.Wait(o.finish_timeout_s * 1000);
    if (rc != 0) {
        fmt::print(stderr, "final worker {}; see {}\n", rc < 0 ? "timed out" : fmt::format("exited {}", rc),
                   (dir / "worker.log").string());
        last.Kill(SIGKILL);
    }
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();

    // --- Invariants -------------------------------------------------------------------------
    auto ledger_text = HttpGet(port, "/v1/ledger");
    if (!ledger_text) {
        fmt::print(stderr, "ledger: {}\n", ledger_text.error().ToString());
        return 2;
    }
    sim.Kill(SIGTERM);
    sim.Wait(5000);
    auto store = store::OpenSqliteStore({.path = (dir / "cogs.db").string()});
    COGS_CHECK(store.has_value());
    workflow::Registry registry(store->get());
    COGS_CHECK(registry.LoadFromStore().has_value());
    std::map<std::string, store::WorkflowSummary> wfs;
    store::ListFilter f;
    f.limit = 1000;
    for (;;) {
        auto page = (*store)->ListWorkflows(f);
        COGS_CHECK(page.has_value());
        for (auto& w : *page) {
            f.after_id = w.id;
            wfs[w.id] = w;
        }
        if (page->size() < 1000) {
            break;
        }
    }
    std::set<std::string> accepted;
    if (auto text = ReadFile(dir / "accepted.log")) {
        std::istringstream in(*text);
        for (std::string line; std::getline(in, line);) {
            if (line.size() == WorkflowId(0).size()) {
                accepted.insert(line);
            }
        }
    }

    // Ledger: per workflow and step, the applied "do" entries and the compensations.
    struct StepEffects {
        int applied = 0;
        int compensated = 0;
        int64_t last_us = 0;
    };
    std::map<std::string, std::map<std::string, StepEffects>> effects;  // workflow -> step -> effects
    auto ledger = boost::json::parse(*ledger_text);
    for (const auto& e : ledger.as_array()) {
        const auto& obj = e.as_object();
        const std::string key(obj.at("key").as_string());
        const std::string outcome(obj.at("outcome").as_string());
        const auto slash1 = key.find('/');
        const auto slash2 = key.rfind('/');
        if (slash1 == std::string::npos || slash2 == slash1) {
            continue;
        }
        auto& fx = effects[key.substr(0, slash1)][key.substr(slash1 + 1, slash2 - slash1 - 1)];
        if (outcome == "applied") {
            ++fx.applied;
        } else if (outcome == "compensated") {
            ++fx.compensated;
        } else {
            continue;
        }
        fx.last_us = std::max<int64_t>(fx.last_us, obj.at("at_us").to_number<int64_t>());
    }

    int64_t lost = 0, duplicate = 0, uncompensated = 0, non_terminal = 0, after_end = 0;
    std::map<std::string, int64_t> by_state;
    for (const auto& id : accepted) {
        if (wfs.count(id) == 0) {
            ++lost;
        }
    }
    for (const auto& [id, w] : wfs) {
        ++by_state[std::string(store::ToString(w.state))];
        if (!store::IsTerminal(w.state)) {
            ++non_terminal;
            continue;
        }
        for (const auto& [step, fx] : effects[id]) {
            if (fx.applied > 1 || fx.compensated > 1) {
                ++duplicate;
            }
            if (w.state == store::WorkflowState::kSucceeded && fx.compensated != 0) {
                ++duplicate;  // a succeeded workflow undid something
            }
            const workflow::Definition* def = registry.Get(w.type, w.version);
            COGS_CHECK(def != nullptr);
            const int idx = def->StepIndex(step);
            COGS_CHECK(idx >= 0);
            if (w.state == store::WorkflowState::kRolledBack && def->steps[idx].compensation &&
                fx.applied != fx.compensated) {
                ++uncompensated;
            }
            if (fx.last_us > w.finished_ms * 1000 + 999) {
                ++after_end;
            }
        }
        if (w.state == store::WorkflowState::kSucceeded) {
            // Every step applied exactly once: the ledger holds one entry per step.
            auto rec = (*store)->GetWorkflow(id);
            COGS_CHECK(rec.has_value());
            if (effects[id].size() != rec->steps.size()) {
                ++duplicate;
            }
        }
    }
    for (const auto& [id, _] : effects) {
        if (wfs.count(id) == 0) {
            ++lost;  // an effect of a workflow the store does not know
        }
    }
    std::string states;
    for (const auto& [s, n] : by_state) {
        states += fmt::format("{}\"{}\":{}", states.empty() ? "" : ",", s, n);
    }
    // A run that killed less often than asked proved less than asked: it fails too.
    const bool ok = lost == 0 && duplicate == 0 && uncompensated == 0 && non_terminal == 0 &&
                    after_end == 0 && static_cast<int>(accepted.size()) == o.workflows && kills == o.kills;
    if (ok && !o.keep) {
        fs::remove_all(dir);
    }
    fmt::print(
        R"({{"test":"engine-crash","seed":{},"workflows":{},"accepted":{},"kills":{},"seconds":{:.1f},"states":{{{}}},)"
        R"("lost":{},"duplicate_effects":{},"uncompensated":{},"non_terminal":{},"applied_after_end":{},"dir":"{}"}})"
        "\n",
        o.seed, wfs.size(), accepted.size(), kills, seconds, states, lost, duplicate, uncompensated,
        non_terminal, after_end, ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
