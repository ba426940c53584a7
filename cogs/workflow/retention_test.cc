// A long run of retention: thousands of workflows through the engine and the simulated service on a
// fake clock, with the workflow pruner and the service's ledger retention on. The store's ended
// workflows and the service's ledger (in memory and in its file) stay within their bounds all along.
#include "cogs/workflow/retention.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <optional>
#include <set>

#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/workflow/engine.h"
#include "test/support/temp_dir.h"

namespace cogs::workflow {
namespace {

namespace asio = boost::asio;
namespace sim = services::sim;
using namespace std::chrono_literals;
using store::WorkflowState;

class RetentionTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto st = store::OpenSqliteStore({dir_ / "cogs.db", /*synchronous_full=*/false});
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        sim_ = std::make_unique<sim::SimService>(io_, SimOptions());
        catalog_.Add("sim", sim::MakeSimClient(*sim_, "sim"));
        registry_ = std::make_unique<Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        auto def = DefinitionBuilder("two")
                       .Step("a", "sim.a")
                       .Compensate("sim.undo_a")
                       .Step("b", "sim.b")
                       .After("a")
                       .Build();
        ASSERT_TRUE(def) << def.error().ToString();
        ASSERT_TRUE(registry_->Register(std::move(*def)));
        EngineOptions eo;
        eo.clock = &clock_;
        eo.seed = 1;
        engine_ = std::make_unique<Engine>(io_, *store_, *registry_, catalog_, eo);
        engine_->OnFinished([this](const FinishedEvent& ev) { finished_.insert(ev.id); });
        ASSERT_TRUE(engine_->Recover());
    }

    void TearDown() override {
        pruner_.reset();
        engine_->Shutdown();
        store_->Flush();
    }

    sim::SimOptions SimOptions() {
        sim::SimOptions o;
        o.ledger_path = dir_ / "sim.db";
        o.clock = &clock_;
        o.retention = {2h, 1500, 30min};
        return o;
    }

    // Runs every handler and commit that is ready, until nothing more happens without time moving.
    void Settle() {
        for (size_t ran = 1; ran != 0;) {
            io_.restart();
            ran = io_.poll();
            store_->Flush();
            io_.restart();
            ran += io_.poll();
        }
    }

    // One pass of the pruner, waited for (it works on its own thread).
    store::PruneResult Prune() {
        std::optional<Result<store::PruneResult>> got;
        pruner_->PruneNow([&](Result<store::PruneResult> r) { got = std::move(r); });
        while (!got) {
            io_.restart();
            io_.run_one_for(10ms);
        }
        EXPECT_TRUE(*got) << got->error().ToString();
        return got->value_or(store::PruneResult{});
    }

    int64_t Ended() {
        int64_t n = 0;
        auto counts = store_->CountByState();
        EXPECT_TRUE(counts) << counts.error().ToString();
        for (const auto& [state, count] : counts.value_or(std::vector<std::pair<WorkflowState, int64_t>>{})) {
            EXPECT_TRUE(state != WorkflowState::kRunning || count == 0)
                << "every workflow of the run has ended";
            n += state == WorkflowState::kSucceeded ? count : 0;
        }
        return n;
    }

    const cogs::testing::TempDir dir_{"cogs-retention-test"};
    runtime::FakeClock clock_;
    observe::Metrics metrics_;
    asio::io_context io_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<sim::SimService> sim_;
    ServiceCatalog catalog_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<WorkflowPruner> pruner_;
    std::set<std::string> finished_;
};

// 2,500 workflows of two steps, 100 every 5 minutes of fake time: 5,000 ledger entries.
TEST_F(RetentionTest, EndedWorkflowsAndTheLedgerStayWithinTheirBoundsOverALongRun) {
    pruner_ = std::make_unique<WorkflowPruner>(io_, *store_, RetentionOptions{2h, 1000, 10min, 100}, &clock_,
                                               &metrics_);
    pruner_->Start();
    constexpr int kRounds = 25, kPerRound = 100;
    int64_t most_ended = 0;
    size_t most_ledger = 0;
    for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kPerRound; ++i) {
            StartRequest r;
            r.type = "two";
            engine_->Start(std::move(r), [](Result<std::string> started) { ASSERT_TRUE(started); });
        }
        Settle();
        ASSERT_EQ(finished_.size(), static_cast<size_t>((round + 1) * kPerRound));
        most_ledger = std::max(most_ledger, sim_->Ledger().size());
        Prune();
        most_ended = std::max(most_ended, Ended());
        clock_.Advance(5min);  // the pruner's own timer fires too, every 10 minutes
    }
    EXPECT_EQ(most_ended, 1000) << "the newest 1,000 ended workflows are kept, no more";
    EXPECT_EQ(most_ledger, 1500u) << "the ledger is bounded by its keep_at_most";
    const std::string text = metrics_.Render();
    EXPECT_NE(text.find("cogs_retained_workflows{state=\"done\"} 1000"), std::string::npos) << text;
    EXPECT_NE(text.find("cogs_retained_workflows{state=\"failed\"} 0"), std::string::npos) << text;
    EXPECT_NE(text.find("cogs_pruned_total{what=\"workflows\"} 1500"), std::string::npos) << text;

    // The ledger's file holds no more than its memory did.
    sim_.reset();
    sim_ = std::make_unique<sim::SimService>(io_, SimOptions());
    EXPECT_EQ(sim_->Ledger().size(), 1500u);
}

}  // namespace
}  // namespace cogs::workflow
