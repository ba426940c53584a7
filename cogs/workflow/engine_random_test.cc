// The randomized test: many random DAGs run under random injected faults (retryable errors,
// permanent refusals, hangs, lost replies) and random cancels against the simulated service, then
// checked against the service's ledger — the ground truth of what was applied. With the default
// circuit breaker, and with a hair-trigger one that opens all the time (steps, compensations and
// polls then keep waiting and being released in the middle of everything).
//
// It runs on the system clock: the simulated service and its client time calls out with asio's
// steady timers. Nothing here bounds how long the run takes; a watchdog fails it only if nothing at
// all happens (no call, no workflow finished) for a whole minute, which no machine's load explains.
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/workflow/engine.h"
#include "test/support/random_dag.h"
#include "test/support/temp_dir.h"

namespace cogs::workflow {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace sim = services::sim;
using namespace std::chrono_literals;
using store::WorkflowState;

struct Effects {
    int applied = 0;
    int compensated = 0;
    int64_t last_us = 0;
};

struct RandomCase {
    uint64_t seed;
    bool twitchy_breaker;  // opens after 2 failures, for 5..40 ms
};

void PrintTo(const RandomCase& c, std::ostream* os) {
    *os << "seed " << c.seed << (c.twitchy_breaker ? ", twitchy breaker" : "");
}

class EngineRandomTest : public ::testing::TestWithParam<RandomCase> {};

TEST_P(EngineRandomTest, LedgerMatchesOutcomes) {
    const uint64_t seed = GetParam().seed;
    const cogs::testing::TempDir dir("cogs-random");
    auto st = store::OpenSqliteStore({dir / "cogs.db"});
    ASSERT_TRUE(st) << st.error().ToString();
    asio::io_context io;
    sim::SimOptions so;
    so.seed = seed;
    so.faults.error_rate = 0.08;
    so.faults.permanent_rate = 0.02;
    so.faults.hang_rate = 0.02;
    so.faults.lost_reply_rate = 0.04;
    sim::SimService service(io, so);
    ServiceCatalog catalog;
    catalog.Add("sim", sim::MakeSimClient(service, "sim"));
    Registry registry(st->get());
    ASSERT_TRUE(registry.LoadFromStore());
    std::mt19937_64 rng(seed);
    testing::RandomDagOptions dag;
    dag.timeout = 40ms;
    constexpr int kTypes = 25;
    for (int t = 0; t < kTypes; ++t) {
        ASSERT_TRUE(registry.Register(testing::RandomDefinition(rng, "rand" + std::to_string(t), dag)));
    }
    EngineOptions eo;
    eo.seed = seed;
    eo.default_bulkhead = 64;
    if (GetParam().twitchy_breaker) {
        eo.breaker.failure_threshold = 2;
        eo.breaker.open_for = 5ms;
        eo.breaker.max_open_for = 40ms;
    }
    Engine engine(io, **st, registry, catalog, eo);
    ASSERT_TRUE(engine.Recover());

    constexpr int kWorkflows = 500;
    std::map<std::string, FinishedEvent> finished;
    engine.OnFinished([&](const FinishedEvent& ev) {
        finished[ev.id] = ev;
        if (finished.size() == kWorkflows) {
            io.stop();
        }
    });
    std::vector<std::unique_ptr<asio::steady_timer>> cancels;
    for (int i = 0; i < kWorkflows; ++i) {
        StartRequest r;
        r.id = "r" + std::to_string(i);
        r.type = "rand" + std::to_string(i % kTypes);
        engine.Start(r, [](Result<std::string> res) { ASSERT_TRUE(res) << res.error().ToString(); });
        if (std::bernoulli_distribution(0.05)(rng)) {
            auto t = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(rng() % 100));
            t->async_wait([&engine, id = r.id](auto) { engine.Cancel(id, [](Status) {}); });
            cancels.push_back(std::move(t));
        }
    }
    asio::steady_timer watchdog(io);
    uint64_t progress = 0;
    std::function<void()> watch = [&] {
        watchdog.expires_after(60s);
        watchdog.async_wait([&](boost::system::error_code ec) {
            if (ec) {
                return;
            }
            const uint64_t now = engine.Stats().calls + finished.size();
            if (now == progress) {
                ADD_FAILURE() << "stuck: nothing happened for a minute; finished " << finished.size();
                io.stop();
                return;
            }
            progress = now;
            watch();
        });
    };
    watch();
    io.run();
    watchdog.cancel();
    ASSERT_EQ(finished.size(), static_cast<size_t>(kWorkflows));
    engine.Shutdown();
    (*st)->Flush();

    std::map<std::string, std::map<std::string, Effects>> effects;
    for (const auto& e : service.Ledger()) {
        const auto a = e.key.find('/');
        const auto b = e.key.rfind('/');
        auto& fx = effects[e.key.substr(0, a)][e.key.substr(a + 1, b - a - 1)];
        if (e.outcome == sim::Outcome::kApplied) {
            ++fx.applied;
        } else if (e.outcome == sim::Outcome::kCompensated) {
            ++fx.compensated;
        } else {
            continue;
        }
        fx.last_us = std::max(fx.last_us, e.at_us);
    }
    std::map<WorkflowState, int> by_state;
    for (const auto& [id, ev] : finished) {
        ++by_state[ev.state];
        auto rec = (*st)->GetWorkflow(id);
        ASSERT_TRUE(rec);
        EXPECT_TRUE(store::IsTerminal(rec->state)) << id;
        const Definition* def = registry.Get(rec->type, rec->version);
        ASSERT_NE(def, nullptr);
        for (const auto& [step, fx] : effects[id]) {
            EXPECT_LE(fx.last_us, rec->finished_ms * 1000 + 999)
                << id << "/" << step << " applied after the end";
            const int idx = def->StepIndex(step);
            ASSERT_GE(idx, 0) << step;
            if (ev.state == WorkflowState::kSucceeded) {
                EXPECT_EQ(fx.applied, 1) << id << "/" << step;
                EXPECT_EQ(fx.compensated, 0) << id << "/" << step;
            } else if (ev.state == WorkflowState::kRolledBack && def->steps[idx].compensation) {
                EXPECT_EQ(fx.compensated, fx.applied) << id << "/" << step << " not compensated exactly once";
            }
        }
        if (ev.state == WorkflowState::kSucceeded) {
            EXPECT_EQ(effects[id].size(), def->steps.size()) << id << ": a step never applied";
        }
    }
    // Faults must have produced both outcomes, or the test proved little.
    EXPECT_GT(by_state[WorkflowState::kSucceeded], kWorkflows / 4);
    EXPECT_GT(by_state[WorkflowState::kRolledBack], 10);
    EXPECT_EQ(by_state[WorkflowState::kFailed], 0);
    EXPECT_GT(service.stats().lost_replies_injected, 0u);
    EXPECT_GT(service.stats().hangs_injected, 0u);
    const EngineStats stats = engine.Stats();
    EXPECT_EQ(stats.circuit_waiting, 0u);
    if (GetParam().twitchy_breaker) {
        EXPECT_GT(stats.circuit_opens, 10u) << "the breaker was meant to open often";
        EXPECT_GT(stats.circuit_waits, 100u);
    }
    RecordProperty("circuit_opens", static_cast<int>(stats.circuit_opens));
    RecordProperty("circuit_waits", static_cast<int>(stats.circuit_waits));
}

INSTANTIATE_TEST_SUITE_P(Seeds, EngineRandomTest,
                         ::testing::Values(RandomCase{1, false}, RandomCase{2, false}, RandomCase{3, false},
                                           RandomCase{4, true}, RandomCase{5, true}),
                         [](const ::testing::TestParamInfo<RandomCase>& info) {
                             return std::to_string(info.param.seed) +
                                    (info.param.twitchy_breaker ? "_twitchy_breaker" : "");
                         });

}  // namespace
}  // namespace cogs::workflow
