#include "cogs/workflow/internal/step_machine.h"

#include <gtest/gtest.h>

namespace cogs::workflow::internal {
namespace {

using store::StepRecord;
using store::StepState;
using namespace std::chrono_literals;

StepDef MakeStep(int max_attempts = 3) {
    StepDef s;
    s.name = "boot";
    s.action = {"compute", "boot"};
    s.retry.max_attempts = max_attempts;
    s.retry.initial_backoff = 100ms;
    s.retry.max_backoff = 1s;
    s.compensation = Compensation{{"compute", "delete"}, "", RetryPolicy{}, 1s};
    return s;
}

// A step record whose action was first sent at 0 ms.
StepRecord Dispatched() {
    StepRecord r;
    MarkDispatched(r, 0, false);
    return r;
}

Result<ActionReply> Done(std::string out) { return ActionReply{false, std::move(out)}; }
Result<ActionReply> Fail(ErrorCode c) { return MakeError(c, "boom"); }

TEST(StepMachineTest, DispatchMarksAppliedAndCountsAttempts) {
    StepRecord r;
    MarkDispatched(r, 1000, false);
    EXPECT_EQ(r.state, StepState::kRunning);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_TRUE(r.applied);
    EXPECT_EQ(r.started_ms, 1000);
    MarkDispatched(r, 2000, false);
    EXPECT_EQ(r.attempts, 2);
    EXPECT_EQ(r.started_ms, 1000) << "started_ms is the first attempt's";
}

TEST(StepMachineTest, SuccessStoresOutput) {
    StepDef d = MakeStep();
    StepRecord r = Dispatched();
    EXPECT_EQ(ApplyActionResult(d, r, Done(R"({"id":1})"), 5, 0.5, 0, true), Next::kSucceeded);
    EXPECT_EQ(r.state, StepState::kSucceeded);
    EXPECT_EQ(r.output, R"({"id":1})");
    EXPECT_EQ(r.finished_ms, 5);
    EXPECT_TRUE(NeedsCompensation(d, r));
}

TEST(StepMachineTest, RetryableErrorSchedulesJitteredRetryThenGivesUp) {
    StepDef d = MakeStep(2);
    StepRecord r = Dispatched();
    EXPECT_EQ(ApplyActionResult(d, r, Fail(ErrorCode::kUnavailable), 10, 0.5, 0, true), Next::kRetry);
    EXPECT_EQ(r.state, StepState::kWaitingRetry);
    // Second attempt's cap is initial_backoff (100 ms); jitter 0.5 -> 50 ms.
    EXPECT_EQ(r.next_at_ms, 60);
    MarkDispatched(r, 60, false);
    EXPECT_EQ(ApplyActionResult(d, r, Fail(ErrorCode::kUnavailable), 70, 0.5, 0, true), Next::kFailed);
    EXPECT_EQ(r.state, StepState::kFailed);
    EXPECT_TRUE(r.applied) << "an unknown outcome may have been applied";
    EXPECT_TRUE(NeedsCompensation(d, r));
    EXPECT_NE(r.error.find("gave up after 2 attempts"), std::string::npos) << r.error;
}

TEST(StepMachineTest, DefinitiveErrorFailsAtOnceAndClearsApplied) {
    StepDef d = MakeStep(5);
    StepRecord r = Dispatched();
    EXPECT_EQ(ApplyActionResult(d, r, Fail(ErrorCode::kFailedPrecondition), 10, 0.5, 0, true), Next::kFailed);
    EXPECT_FALSE(r.applied);
    EXPECT_FALSE(NeedsCompensation(d, r));
}

TEST(StepMachineTest, NoRetryPastDeadlineOrWhileCompensating) {
    StepDef d = MakeStep(5);
    StepRecord r = Dispatched();
    EXPECT_EQ(ApplyActionResult(d, r, Fail(ErrorCode::kUnavailable), 10, 0.99, 20, true), Next::kFailed);
    StepRecord r2 = Dispatched();
    EXPECT_EQ(ApplyActionResult(d, r2, Fail(ErrorCode::kUnavailable), 10, 0.5, 0, false), Next::kFailed);
    EXPECT_TRUE(r2.applied);
}

TEST(StepMachineTest, AcceptedThenPolledToCompletionOrDeadline) {
    StepDef d = MakeStep();
    StepRecord r = Dispatched();
    ActionReply accepted{true, ""};
    EXPECT_EQ(ApplyActionResult(d, r, accepted, 1, 0.5, 0, true), Next::kPoll);
    EXPECT_EQ(r.state, StepState::kPolling);
    EXPECT_EQ(ApplyPollResult(d, r, accepted, 100, 20ms, 2s, 0), Next::kPoll);
    EXPECT_GE(r.next_at_ms, 120);
    EXPECT_EQ(ApplyPollResult(d, r, accepted, 100, 20ms, 2s, 110), Next::kFailed) << "step deadline";
    StepRecord r2 = Dispatched();
    ApplyActionResult(d, r2, accepted, 1, 0.5, 0, true);
    EXPECT_EQ(ApplyPollResult(d, r2, Done("{}"), 50, 20ms, 2s, 0), Next::kSucceeded);
}

TEST(StepMachineTest, CompensationRetriesThenFails) {
    StepDef d = MakeStep();
    d.compensation->retry.max_attempts = 2;
    StepRecord r;
    r.state = StepState::kSucceeded;
    r.applied = true;
    MarkDispatched(r, 0, true);
    EXPECT_EQ(r.state, StepState::kCompensating);
    EXPECT_EQ(ApplyCompensationResult(*d.compensation, r, Fail(ErrorCode::kUnavailable), 5, 0.5),
              Next::kRetry);
    EXPECT_TRUE(NeedsCompensation(d, r));
    MarkDispatched(r, 10, true);
    EXPECT_EQ(ApplyCompensationResult(*d.compensation, r, Fail(ErrorCode::kUnavailable), 15, 0.5),
              Next::kFailed);
    EXPECT_EQ(r.state, StepState::kCompensationFailed);
    StepRecord ok;
    ok.state = StepState::kSucceeded;
    ok.applied = true;
    MarkDispatched(ok, 0, true);
    EXPECT_EQ(ApplyCompensationResult(*d.compensation, ok, Done("{}"), 5, 0.5), Next::kSucceeded);
    EXPECT_EQ(ok.state, StepState::kCompensated);
    EXPECT_FALSE(NeedsCompensation(d, ok));
}

TEST(StepMachineTest, StopForward) {
    StepRecord p;
    StopForward(p, 1);
    EXPECT_EQ(p.state, StepState::kSkipped);
    StepRecord w;
    w.state = StepState::kWaitingRetry;
    w.applied = true;
    StopForward(w, 1);
    EXPECT_EQ(w.state, StepState::kFailed);
    EXPECT_TRUE(w.applied);
}

TEST(StepMachineTest, CompensationOrderFollowsReverseDependencies) {
    auto def = DefinitionBuilder("t")
                   .Step("a", "s.a")
                   .Compensate("s.undo_a")
                   .Step("b", "s.b")
                   .After("a")
                   .Compensate("s.undo_b")
                   .Step("c", "s.c")
                   .After("a")
                   .Build();
    ASSERT_TRUE(def) << def.error().ToString();
    std::vector<StepRecord> steps(3);
    std::vector<uint8_t> busy(3, 0);
    for (auto& s : steps) {
        s.state = StepState::kSucceeded;
        s.applied = true;
    }
    EXPECT_FALSE(CompensationReady(*def, steps, busy, 0)) << "b still needs undoing";
    EXPECT_TRUE(CompensationReady(*def, steps, busy, 1));
    steps[1].state = StepState::kCompensated;
    EXPECT_TRUE(CompensationReady(*def, steps, busy, 0)) << "c has no compensation";
    busy[2] = 1;
    EXPECT_FALSE(CompensationReady(*def, steps, busy, 0)) << "c is busy";
    busy[2] = 0;
    steps[1].state = StepState::kCompensationFailed;
    EXPECT_FALSE(CompensationReady(*def, steps, busy, 0)) << "never undo below a failed compensation";
    EXPECT_TRUE(DependenciesDone(*def, steps, 1));
    steps[0].state = StepState::kRunning;
    EXPECT_FALSE(DependenciesDone(*def, steps, 1));
}

}  // namespace
}  // namespace cogs::workflow::internal
