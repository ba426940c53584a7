// Conformance tests of the Store interface, run against every backend (SQLite, PostgreSQL on a
// private server this binary starts), plus the SQLite backend's own guarantees (the process lock,
// lease expiry at open, schema versions).
#include "cogs/store/store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <semaphore>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cogs/pg/conn.h"
#include "cogs/sqlite/db.h"
#include "cogs/store/internal/pg_store.h"
#include "cogs/store/internal/sqlite_store.h"
#include "cogs/store/records.h"
#include "test/support/private_pg.h"
#include "test/support/temp_dir.h"

namespace cogs::store {
namespace {

using OpenFn = std::function<Result<std::unique_ptr<Store>>(const std::string& dir)>;

struct Backend {
    std::string name;
    OpenFn open;
};

std::ostream& operator<<(std::ostream& os, const Backend& b) { return os << b.name; }

using cogs::testing::TempDir;

Status CommitAndWait(Store& store, WriteGroup group) {
    std::promise<Status> done;
    auto future = done.get_future();
    store.Commit(std::move(group), [&](Status st) { done.set_value(std::move(st)); });
    return future.get();
}

StepRecord Step(int index, StepState state = StepState::kPending) {
    StepRecord s;
    s.index = index;
    s.state = state;
    return s;
}

WorkflowRecord Workflow(const std::string& id, const std::string& type = "vm.create", int steps = 2,
                        WorkflowState state = WorkflowState::kRunning) {
    WorkflowRecord w;
    w.id = id;
    w.type = type;
    w.version = 1;
    w.input = R"({"name":")" + id + R"("})";
    w.state = state;
    w.created_ms = 1000;
    w.updated_ms = 1000;
    for (int i = 0; i < steps; ++i) {
        w.steps.push_back(Step(i));
    }
    return w;
}

WriteGroup Create(uint64_t fence, WorkflowRecord w) {
    WriteGroup g;
    g.fence = fence;
    g.creates.push_back(std::move(w));
    return g;
}

WriteGroup UpdateStep(uint64_t fence, const std::string& id, StepRecord step, std::string log = "") {
    WriteGroup g;
    g.fence = fence;
    g.steps.push_back(StepUpdate{id, std::move(step), std::move(log)});
    return g;
}

WriteGroup UpdateWorkflow(uint64_t fence, const std::string& id, WorkflowState state,
                          std::string reason = "") {
    WriteGroup g;
    g.fence = fence;
    WorkflowUpdate u;
    u.id = id;
    u.state = state;
    u.reason = std::move(reason);
    u.updated_ms = 2000;
    u.finished_ms = IsTerminal(state) ? 2000 : 0;
    g.workflows.push_back(std::move(u));
    return g;
}

std::set<std::string> Ids(const std::vector<WorkflowRecord>& records) {
    std::set<std::string> ids;
    for (const auto& r : records) {
        ids.insert(r.id);
    }
    return ids;
}

// Holds the writer inside a commit callback, so that groups committed meanwhile queue up and go
// into the next transaction together once Release() is called: the way to test batch behaviour
// deterministically.
class WriterGate {
public:
    explicit WriterGate(Store& store) {
        std::promise<void> entered;
        auto entered_future = entered.get_future();
        // The callback holds its own reference to the shared state: the gate may be gone before
        // the callback returns from wait().
        store.Commit(WriteGroup{}, [&entered, open = open_.get_future().share()](Status) {
            entered.set_value();
            open.wait();
        });
        entered_future.wait();
    }
    ~WriterGate() { Release(); }
    void Release() {
        if (!released_) {
            released_ = true;
            open_.set_value();
        }
    }

private:
    std::promise<void> open_;
    bool released_ = false;
};

class StoreTest : public ::testing::TestWithParam<Backend> {
protected:
    void SetUp() override { Open(); }

    void Open() {
        auto s = GetParam().open(dir_.path());
        ASSERT_TRUE(s) << s.error().ToString();
        store_ = std::move(*s);
    }
    void Reopen() {
        store_.reset();
        Open();
    }

    Lease MustLease(const std::string& owner, int64_t ttl_ms = 60'000) {
        auto lease = store_->AcquireLease(owner, ttl_ms);
        EXPECT_TRUE(lease) << lease.error().ToString();
        return lease ? *lease : Lease{};
    }

    WorkflowRecord MustGet(const std::string& id) {
        auto r = store_->GetWorkflow(id);
        EXPECT_TRUE(r) << r.error().ToString();
        return r ? *r : WorkflowRecord{};
    }

    TempDir dir_;
    std::unique_ptr<Store> store_;
};

#define ASSERT_OK(expr)                                              \
    do {                                                             \
        auto _st = (expr);                                           \
        ASSERT_TRUE(_st) << #expr << ": " << _st.error().ToString(); \
    } while (0)

#define EXPECT_CODE(expr, want)                                                \
    do {                                                                       \
        auto _st = (expr);                                                     \
        ASSERT_FALSE(_st) << #expr << " succeeded, wanted " << ToString(want); \
        EXPECT_EQ(_st.error().code, want) << _st.error().ToString();           \
    } while (0)

TEST(RecordsTest, StateNames) {
    EXPECT_EQ(ToString(WorkflowState::kRolledBack), "rolled_back");
    EXPECT_EQ(ToString(StepState::kWaitingRetry), "waiting_retry");
    EXPECT_EQ(ToString(StepState::kCompensationFailed), "compensation_failed");
    for (auto s : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                   WorkflowState::kRolledBack, WorkflowState::kFailed}) {
        EXPECT_EQ(ParseWorkflowState(ToString(s)), s);
    }
    EXPECT_EQ(ParseWorkflowState("Running"), std::nullopt);
    EXPECT_EQ(ParseWorkflowState(""), std::nullopt);
    EXPECT_FALSE(IsTerminal(WorkflowState::kRunning));
    EXPECT_FALSE(IsTerminal(WorkflowState::kCompensating));
    EXPECT_TRUE(IsTerminal(WorkflowState::kSucceeded));
    EXPECT_TRUE(IsTerminal(WorkflowState::kRolledBack));
    EXPECT_TRUE(IsTerminal(WorkflowState::kFailed));
}

TEST_P(StoreTest, CreateAndGetRoundTripEveryField) {
    Lease lease = MustLease("engine-a");
    WorkflowRecord w;
    w.id = "wf-1";
    w.type = "network.attach";
    w.version = 7;
    w.input = R"({"vm":"v1","net":"n\u00e9t","quote":"\"x\""})";
    w.state = WorkflowState::kCompensating;
    w.reason = "step 2 failed: quota";
    w.cancel_requested = true;
    w.created_ms = 1'700'000'000'001;
    w.updated_ms = 1'700'000'000'002;
    w.deadline_ms = 1'700'000'000'003;
    w.finished_ms = 0;
    w.trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    w.project = "p-1";
    w.resource_kind = "port";
    w.resource_id = "port-9";
    w.fence = 999'999;  // ignored: a create is stamped with its group's token
    StepRecord s0;
    s0.index = 0;
    s0.state = StepState::kSucceeded;
    s0.attempts = 3;
    s0.comp_attempts = 1;
    s0.applied = true;
    s0.next_at_ms = 11;
    s0.started_ms = 12;
    s0.finished_ms = 13;
    s0.output = R"({"id":"nic-1"})";
    s0.error = "unavailable: try again";
    s0.log = "{\"kind\":\"action\"}\n";
    w.steps = {s0, Step(1, StepState::kWaitingRetry), Step(2)};
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, w)));

    WorkflowRecord got = MustGet("wf-1");
    EXPECT_EQ(got.id, w.id);
    EXPECT_EQ(got.type, w.type);
    EXPECT_EQ(got.version, w.version);
    EXPECT_EQ(got.input, w.input);
    EXPECT_EQ(got.state, w.state);
    EXPECT_EQ(got.reason, w.reason);
    EXPECT_EQ(got.cancel_requested, w.cancel_requested);
    EXPECT_EQ(got.created_ms, w.created_ms);
    EXPECT_EQ(got.updated_ms, w.updated_ms);
    EXPECT_EQ(got.deadline_ms, w.deadline_ms);
    EXPECT_EQ(got.finished_ms, w.finished_ms);
    EXPECT_EQ(got.trace, w.trace);
    EXPECT_EQ(got.project, w.project);
    EXPECT_EQ(got.resource_kind, w.resource_kind);
    EXPECT_EQ(got.resource_id, w.resource_id);
    EXPECT_EQ(got.fence, lease.token);
    ASSERT_EQ(got.steps.size(), 3u);
    const StepRecord& g0 = got.steps[0];
    EXPECT_EQ(g0.index, 0);
    EXPECT_EQ(g0.state, s0.state);
    EXPECT_EQ(g0.attempts, s0.attempts);
    EXPECT_EQ(g0.comp_attempts, s0.comp_attempts);
    EXPECT_EQ(g0.applied, s0.applied);
    EXPECT_EQ(g0.next_at_ms, s0.next_at_ms);
    EXPECT_EQ(g0.started_ms, s0.started_ms);
    EXPECT_EQ(g0.finished_ms, s0.finished_ms);
    EXPECT_EQ(g0.output, s0.output);
    EXPECT_EQ(g0.error, s0.error);
    EXPECT_EQ(g0.log, s0.log);
    EXPECT_EQ(got.steps[1].index, 1);
    EXPECT_EQ(got.steps[1].state, StepState::kWaitingRetry);
    EXPECT_EQ(got.steps[2].index, 2);
    EXPECT_EQ(got.steps[2].state, StepState::kPending);

    EXPECT_CODE(store_->GetWorkflow("wf-2"), ErrorCode::kNotFound);

    // The summary carries the trace and the resource too.
    auto listed = store_->ListWorkflows(ListFilter{});
    ASSERT_TRUE(listed) << listed.error().ToString();
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].trace, w.trace);
    EXPECT_EQ((*listed)[0].project, w.project);
    EXPECT_EQ((*listed)[0].resource_kind, w.resource_kind);
    EXPECT_EQ((*listed)[0].resource_id, w.resource_id);
}

TEST_P(StoreTest, DuplicateCreateFailsAloneInItsBatch) {
    Lease lease = MustLease("engine-a");
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("a", "t", 1))));

    std::vector<Status> results(3);
    uint64_t commits_before;
    {
        WriterGate gate(*store_);
        commits_before = store_->Stats().commits;
        WorkflowRecord dup = Workflow("a", "other-type", 4);
        store_->Commit(Create(lease.token, Workflow("b", "t", 1)), [&](Status st) { results[0] = st; });
        store_->Commit(Create(lease.token, dup), [&](Status st) { results[1] = st; });
        store_->Commit(Create(lease.token, Workflow("c", "t", 1)), [&](Status st) { results[2] = st; });
    }
    store_->Flush();
    EXPECT_EQ(store_->Stats().commits, commits_before + 1) << "the three groups were not one transaction";
    EXPECT_TRUE(results[0]);
    ASSERT_FALSE(results[1]);
    EXPECT_EQ(results[1].error().code, ErrorCode::kAlreadyExists);
    EXPECT_TRUE(results[2]);

    EXPECT_EQ(MustGet("a").type, "t");
    EXPECT_EQ(MustGet("a").steps.size(), 1u);
    EXPECT_EQ(MustGet("b").steps.size(), 1u);
    EXPECT_EQ(MustGet("c").steps.size(), 1u);
}

TEST_P(StoreTest, CreateWithRepeatedStepIndexIsRefusedWhole) {
    Lease lease = MustLease("engine-a");
    WorkflowRecord w = Workflow("w", "t", 0);
    w.steps = {Step(0), Step(1), Step(1)};
    EXPECT_CODE(CommitAndWait(*store_, Create(lease.token, w)), ErrorCode::kInvalidArgument);
    EXPECT_CODE(store_->GetWorkflow("w"), ErrorCode::kNotFound);  // the refused create left no row
}

TEST_P(StoreTest, PendingStepsNeedNoRowsAndTheirFirstChangeIsFenced) {
    Lease a = MustLease("engine-a", -1);  // already expired: its workflows are claimable
    ASSERT_OK(CommitAndWait(*store_, Create(a.token, Workflow("w", "t", 3))));
    WorkflowRecord got = MustGet("w");
    ASSERT_EQ(got.steps.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(got.steps[i].index, i);
        EXPECT_EQ(got.steps[i].state, StepState::kPending);
    }
    // A step beyond the workflow's steps is refused, not stored.
    EXPECT_CODE(CommitAndWait(*store_, UpdateStep(a.token, "w", Step(3, StepState::kRunning))),
                ErrorCode::kFenced);
    // After another owner claims the workflow, the old owner cannot give a pending step its first row.
    Lease b = MustLease("engine-b");
    store_->Flush();
    auto claimed = store_->ClaimOrphaned(b, 10);
    ASSERT_TRUE(claimed) << claimed.error().ToString();
    ASSERT_EQ(claimed->size(), 1u);
    EXPECT_CODE(CommitAndWait(*store_, UpdateStep(a.token, "w", Step(1, StepState::kRunning))),
                ErrorCode::kFenced);
    EXPECT_EQ(MustGet("w").steps[1].state, StepState::kPending);
    ASSERT_OK(CommitAndWait(*store_, UpdateStep(b.token, "w", Step(1, StepState::kRunning))));
    EXPECT_EQ(MustGet("w").steps[1].state, StepState::kRunning);
}

TEST_P(StoreTest, StepUpdatesWriteEveryColumnAndAppendLogs) {
    Lease lease = MustLease("engine-a");
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("w", "t", 3))));

    StepRecord s = Step(1, StepState::kRunning);
    s.attempts = 1;
    s.applied = true;
    s.started_ms = 100;
    s.log = "ignored by updates";
    ASSERT_OK(CommitAndWait(*store_, UpdateStep(lease.token, "w", s, "{\"attempt\":1}\n")));

    s.state = StepState::kWaitingRetry;
    s.attempts = 2;
    s.comp_attempts = 4;
    s.applied = false;
    s.next_at_ms = 500;
    s.finished_ms = 0;
    s.error = "unavailable: 503";
    s.output = "";
    ASSERT_OK(CommitAndWait(*store_, UpdateStep(lease.token, "w", s, "{\"attempt\":2}\n")));
    ASSERT_OK(CommitAndWait(*store_, UpdateStep(lease.token, "w", s)));  // empty append

    WorkflowRecord got = MustGet("w");
    ASSERT_EQ(got.steps.size(), 3u);
    const StepRecord& g = got.steps[1];
    EXPECT_EQ(g.state, StepState::kWaitingRetry);
    EXPECT_EQ(g.attempts, 2);
    EXPECT_EQ(g.comp_attempts, 4);
    EXPECT_FALSE(g.applied);
    EXPECT_EQ(g.next_at_ms, 500);
    EXPECT_EQ(g.started_ms, 100);
    EXPECT_EQ(g.error, "unavailable: 503");
    EXPECT_EQ(g.log, "{\"attempt\":1}\n{\"attempt\":2}\n");
    EXPECT_EQ(got.steps[0].state, StepState::kPending);
    EXPECT_EQ(got.steps[2].state, StepState::kPending);
    EXPECT_EQ(got.steps[0].log, "");

    // A group of several changes commits them together.
    WriteGroup g2;
    g2.fence = lease.token;
    g2.steps.push_back(StepUpdate{"w", Step(0, StepState::kSucceeded), "a\n"});
    g2.steps.push_back(StepUpdate{"w", Step(2, StepState::kSucceeded), "c\n"});
    WorkflowUpdate u;
    u.id = "w";
    u.state = WorkflowState::kSucceeded;
    u.reason = "done";
    u.cancel_requested = true;
    u.updated_ms = 900;
    u.finished_ms = 901;
    g2.workflows.push_back(u);
    ASSERT_OK(CommitAndWait(*store_, g2));
    got = MustGet("w");
    EXPECT_EQ(got.state, WorkflowState::kSucceeded);
    EXPECT_EQ(got.reason, "done");
    EXPECT_TRUE(got.cancel_requested);
    EXPECT_EQ(got.updated_ms, 900);
    EXPECT_EQ(got.finished_ms, 901);
    EXPECT_EQ(got.created_ms, 1000);
    EXPECT_EQ(got.steps[0].state, StepState::kSucceeded);
    EXPECT_EQ(got.steps[0].log, "a\n");
    EXPECT_EQ(got.steps[2].log, "c\n");
}

TEST_P(StoreTest, StaleOwnerIsFencedAfterClaimAndChangesNothing) {
    Lease old_owner = MustLease("engine-a", -1);  // already expired: this owner is dead
    WorkflowRecord w = Workflow("w", "t", 2);
    w.steps[0].log = "old log\n";
    ASSERT_OK(CommitAndWait(*store_, Create(old_owner.token, w)));

    Lease new_owner = MustLease("engine-b");
    ASSERT_GT(new_owner.token, old_owner.token);
    auto claimed = store_->ClaimOrphaned(new_owner, 10);
    ASSERT_TRUE(claimed) << claimed.error().ToString();
    ASSERT_EQ(claimed->size(), 1u);
    EXPECT_EQ((*claimed)[0].id, "w");
    EXPECT_EQ((*claimed)[0].fence, new_owner.token);
    ASSERT_EQ((*claimed)[0].steps.size(), 2u);
    EXPECT_EQ((*claimed)[0].steps[0].log, "") << "claims do not load logs";
    EXPECT_EQ((*claimed)[0].input, w.input);

    uint64_t fenced_before = store_->Stats().fenced;
    EXPECT_CODE(CommitAndWait(*store_, UpdateStep(old_owner.token, "w", Step(0, StepState::kSucceeded), "x")),
                ErrorCode::kFenced);
    EXPECT_CODE(CommitAndWait(*store_, UpdateWorkflow(old_owner.token, "w", WorkflowState::kSucceeded)),
                ErrorCode::kFenced);
    EXPECT_EQ(store_->Stats().fenced, fenced_before + 2);
    WorkflowRecord got = MustGet("w");
    EXPECT_EQ(got.state, WorkflowState::kRunning);
    EXPECT_EQ(got.steps[0].state, StepState::kPending);
    EXPECT_EQ(got.steps[0].log, "old log\n");
    EXPECT_EQ(got.fence, new_owner.token);

    ASSERT_OK(
        CommitAndWait(*store_, UpdateStep(new_owner.token, "w", Step(0, StepState::kSucceeded), "new\n")));
    EXPECT_EQ(MustGet("w").steps[0].log, "old log\nnew\n");

    // Unknown rows refuse the group too; nothing else in it is applied.
    WriteGroup g = UpdateStep(new_owner.token, "w", Step(1, StepState::kRunning));
    g.steps.push_back(StepUpdate{"w", Step(7), ""});
    EXPECT_CODE(CommitAndWait(*store_, g), ErrorCode::kFenced);
    EXPECT_CODE(CommitAndWait(*store_, UpdateWorkflow(new_owner.token, "nope", WorkflowState::kRunning)),
                ErrorCode::kFenced);
    EXPECT_EQ(MustGet("w").steps[1].state, StepState::kPending);
}

TEST_P(StoreTest, FencedGroupIsAllOrNothingAndSparesItsBatch) {
    Lease dead = MustLease("engine-a", -1);
    ASSERT_OK(CommitAndWait(*store_, Create(dead.token, Workflow("stolen", "t", 1))));
    Lease me = MustLease("engine-b");
    ASSERT_OK(CommitAndWait(*store_, Create(me.token, Workflow("mine", "t", 2))));
    Lease other = MustLease("engine-c");
    ASSERT_OK(CommitAndWait(*store_, Create(other.token, Workflow("theirs", "t", 1))));
    auto claimed = store_->ClaimOrphaned(me, 10);
    ASSERT_TRUE(claimed);
    ASSERT_EQ(Ids(*claimed), std::set<std::string>{"stolen"});

    std::vector<Status> results(4);
    uint64_t commits_before;
    uint64_t fenced_before;
    {
        WriterGate gate(*store_);
        commits_before = store_->Stats().commits;
        fenced_before = store_->Stats().fenced;
        store_->Commit(UpdateStep(me.token, "mine", Step(1, StepState::kRunning), "one\n"),
                       [&](Status st) { results[0] = st; });
        // Its first write matches its token, its second does not (another owner's workflow).
        WriteGroup half_fenced;
        half_fenced.fence = me.token;
        half_fenced.steps.push_back(StepUpdate{"mine", Step(0, StepState::kSucceeded), "should vanish\n"});
        half_fenced.steps.push_back(StepUpdate{"theirs", Step(0, StepState::kSucceeded), ""});
        store_->Commit(std::move(half_fenced), [&](Status st) { results[1] = st; });
        // Its first write is fine, its second names a step that does not exist.
        WriteGroup half_missing;
        half_missing.fence = me.token;
        half_missing.workflows.push_back(WorkflowUpdate{"mine", WorkflowState::kSucceeded, "x", false, 5, 5});
        half_missing.steps.push_back(StepUpdate{"mine", Step(5, StepState::kSucceeded), ""});
        store_->Commit(std::move(half_missing), [&](Status st) { results[2] = st; });
        store_->Commit(UpdateStep(dead.token, "stolen", Step(0, StepState::kRunning)),
                       [&](Status st) { results[3] = st; });
    }
    store_->Flush();
    EXPECT_EQ(store_->Stats().commits, commits_before + 1) << "the groups were not one transaction";
    EXPECT_EQ(store_->Stats().fenced, fenced_before + 3);
    EXPECT_TRUE(results[0]);
    for (size_t i = 1; i < results.size(); ++i) {
        ASSERT_FALSE(results[i]) << i;
        EXPECT_EQ(results[i].error().code, ErrorCode::kFenced) << results[i].error().ToString();
    }

    WorkflowRecord mine = MustGet("mine");
    EXPECT_EQ(mine.state, WorkflowState::kRunning) << "half of a refused group was applied";
    EXPECT_EQ(mine.steps[0].state, StepState::kPending) << "half of a refused group was applied";
    EXPECT_EQ(mine.steps[0].log, "");
    EXPECT_EQ(mine.steps[1].state, StepState::kRunning);
    EXPECT_EQ(mine.steps[1].log, "one\n");
    EXPECT_EQ(MustGet("theirs").steps[0].state, StepState::kPending);
    EXPECT_EQ(MustGet("stolen").steps[0].state, StepState::kPending);
}

TEST_P(StoreTest, TokensGrowAcrossAcquiresAndReopen) {
    uint64_t last = 0;
    for (const char* owner : {"a", "b", "a", "c", "a"}) {
        Lease l = MustLease(owner);
        EXPECT_GT(l.token, last);
        EXPECT_EQ(l.owner, owner);
        last = l.token;
    }
    Reopen();
    Lease l = MustLease("a");
    EXPECT_GT(l.token, last);
    last = l.token;
    Reopen();
    EXPECT_GT(MustLease("z").token, last);
    EXPECT_CODE(store_->AcquireLease("", 1000), ErrorCode::kInvalidArgument);
}

TEST_P(StoreTest, RenewExtendsOnlyTheCurrentLease) {
    Lease first = MustLease("a", 1000);
    int64_t old_expiry = first.expires_ms;
    ASSERT_OK(store_->RenewLease(first, 600'000));
    EXPECT_GT(first.expires_ms, old_expiry);

    Lease second = MustLease("a");
    EXPECT_CODE(store_->RenewLease(first, 1000), ErrorCode::kFenced);
    ASSERT_OK(store_->RenewLease(second, 1000));
    // A claim with the superseded lease is refused as well.
    EXPECT_CODE(store_->ClaimOrphaned(first, 10), ErrorCode::kFenced);
}

TEST_P(StoreTest, ClaimTakesOnlyNonTerminalWorkflowsOfDeadOwners) {
    Lease live = MustLease("live");
    Lease dead = MustLease("dead", -1);
    ASSERT_OK(CommitAndWait(*store_, Create(live.token, Workflow("live-running"))));
    ASSERT_OK(CommitAndWait(*store_, Create(dead.token, Workflow("dead-running"))));
    ASSERT_OK(CommitAndWait(
        *store_, Create(dead.token, Workflow("dead-compensating", "t", 2, WorkflowState::kCompensating))));
    for (auto s : {WorkflowState::kSucceeded, WorkflowState::kRolledBack, WorkflowState::kFailed}) {
        ASSERT_OK(CommitAndWait(*store_,
                                Create(dead.token, Workflow("dead-" + std::string(ToString(s)), "t", 2, s))));
    }

    Lease claimer = MustLease("claimer");
    auto one = store_->ClaimOrphaned(claimer, 1);
    ASSERT_TRUE(one) << one.error().ToString();
    ASSERT_EQ(one->size(), 1u);
    auto rest = store_->ClaimOrphaned(claimer, 100);
    ASSERT_TRUE(rest);
    std::set<std::string> ids = Ids(*one);
    ids.merge(Ids(*rest));
    EXPECT_EQ(ids, (std::set<std::string>{"dead-running", "dead-compensating"}));
    for (const auto& r : *rest) {
        EXPECT_EQ(r.fence, claimer.token);
        EXPECT_EQ(r.steps.size(), 2u);
    }

    // Claimed work belongs to a live lease now: nobody else gets it, not even the claimer again.
    auto again = store_->ClaimOrphaned(claimer, 100);
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->empty());
    Lease other = MustLease("other");
    auto by_other = store_->ClaimOrphaned(other, 100);
    ASSERT_TRUE(by_other);
    EXPECT_TRUE(by_other->empty());
    EXPECT_EQ(MustGet("dead-failed").fence, dead.token) << "a failed workflow waits for ReviveFailed";
    EXPECT_EQ(MustGet("live-running").fence, live.token);

    EXPECT_CODE(store_->ClaimOrphaned(claimer, 0), ErrorCode::kInvalidArgument);
}

TEST_P(StoreTest, WorkOfASupersededLeaseIsClaimable) {
    Lease first = MustLease("engine-a");
    ASSERT_OK(CommitAndWait(*store_, Create(first.token, Workflow("w"))));
    Lease restarted = MustLease("engine-a");  // same owner name, new incarnation
    auto claimed = store_->ClaimOrphaned(restarted, 10);
    ASSERT_TRUE(claimed);
    ASSERT_EQ(Ids(*claimed), std::set<std::string>{"w"});
    EXPECT_CODE(CommitAndWait(*store_, UpdateStep(first.token, "w", Step(0, StepState::kRunning))),
                ErrorCode::kFenced);
}

TEST_P(StoreTest, ManyThreadsCommitConcurrentlyInRealBatches) {
    constexpr int kThreads = 8;
    constexpr int kPerThread = 1000;  // each: a create and a step update, so 2,000 groups a thread
    Lease lease = MustLease("engine");
    StoreStats before = store_->Stats();
    std::vector<std::atomic<int>> calls(kThreads * kPerThread * 2);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                std::string id = "w-" + std::to_string(t) + "-" + std::to_string(i);
                size_t slot = static_cast<size_t>((t * kPerThread + i) * 2);
                auto done = [&, slot](size_t k) {
                    return [&, k = slot + k](Status st) {
                        calls[k].fetch_add(1);
                        if (!st) {
                            failures.fetch_add(1);
                        }
                    };
                };
                store_->Commit(Create(lease.token, Workflow(id, "t" + std::to_string(t % 3), 2)), done(0));
                // Queued after the create by the same thread, so it commits after it.
                StepRecord s = Step(0, StepState::kSucceeded);
                s.attempts = 1;
                s.output = std::to_string(i);
                store_->Commit(UpdateStep(lease.token, id, s, "attempt 1\n"), done(1));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    store_->Flush();
    for (size_t k = 0; k < calls.size(); ++k) {
        ASSERT_EQ(calls[k].load(), 1) << "callback " << k;
    }
    EXPECT_EQ(failures.load(), 0);

    StoreStats after = store_->Stats();
    uint64_t commits = after.commits - before.commits;
    uint64_t transitions = after.transitions - before.transitions;
    EXPECT_EQ(after.groups - before.groups, static_cast<uint64_t>(kThreads * kPerThread * 2));
    // A create counts its workflow (its two steps are pending: not state changes); the update one.
    EXPECT_EQ(transitions, static_cast<uint64_t>(kThreads * kPerThread * 2));
    ASSERT_GT(commits, 0u);
    double per_commit = static_cast<double>(transitions) / static_cast<double>(commits);
    EXPECT_GT(per_commit, 1.0) << "no batching: one transaction per group";
    std::printf("[ figures  ] %llu transitions in %llu commits: %.1f per commit\n",
                static_cast<unsigned long long>(transitions), static_cast<unsigned long long>(commits),
                per_commit);

    auto counts = store_->CountByState();
    ASSERT_TRUE(counts);
    EXPECT_EQ((*counts)[0], std::make_pair(WorkflowState::kRunning, int64_t{kThreads * kPerThread}));
    for (int t = 0; t < kThreads; ++t) {
        for (int i = 0; i < kPerThread; ++i) {
            auto r = store_->GetWorkflow("w-" + std::to_string(t) + "-" + std::to_string(i));
            ASSERT_TRUE(r) << r.error().ToString();
            ASSERT_EQ(r->steps.size(), 2u);
            EXPECT_EQ(r->steps[0].state, StepState::kSucceeded);
            EXPECT_EQ(r->steps[0].output, std::to_string(i));
            EXPECT_EQ(r->steps[0].log, "attempt 1\n");
        }
    }
}

TEST_P(StoreTest, CallbacksRunInQueueOrder) {
    Lease lease = MustLease("engine");
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("w", "t", 4))));
    constexpr int kGroups = 3000;
    std::mutex mu;
    std::vector<int> order;
    for (int i = 0; i < kGroups; ++i) {
        StepRecord step = Step(i % 4, StepState::kRunning);
        step.attempts = i;
        // Every tenth group is fenced: refusals keep their place in the order too.
        uint64_t fence = i % 10 == 9 ? lease.token + 1000 : lease.token;
        store_->Commit(UpdateStep(fence, "w", step, std::to_string(i) + "\n"), [&, i](Status st) {
            EXPECT_EQ(static_cast<bool>(st), i % 10 != 9) << i;
            std::lock_guard lock(mu);
            order.push_back(i);
        });
    }
    store_->Flush();
    ASSERT_EQ(order.size(), static_cast<size_t>(kGroups));
    for (int i = 0; i < kGroups; ++i) {
        ASSERT_EQ(order[static_cast<size_t>(i)], i);
    }
    // The last accepted write to each step is the one that stays; its log holds every accepted append.
    WorkflowRecord got = MustGet("w");
    for (int idx = 0; idx < 4; ++idx) {
        int last = -1;
        std::string log;
        for (int i = idx; i < kGroups; i += 4) {
            if (i % 10 != 9) {
                last = i;
                log += std::to_string(i) + "\n";
            }
        }
        EXPECT_EQ(got.steps[static_cast<size_t>(idx)].attempts, last);
        EXPECT_EQ(got.steps[static_cast<size_t>(idx)].log, log);
    }
}

TEST_P(StoreTest, ListFiltersAndPaginates) {
    Lease lease = MustLease("engine");
    std::map<std::string, std::pair<std::string, WorkflowState>> all;
    for (int i = 0; i < 30; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "wf-%02d", i);
        std::string type = i % 3 == 0 ? "vm.create" : "vm.delete";
        WorkflowState state = i % 2 == 0 ? WorkflowState::kSucceeded : WorkflowState::kRunning;
        all[id] = {type, state};
        WorkflowRecord w = Workflow(id, type, 1, state);
        w.reason = "r" + std::to_string(i);
        w.finished_ms = i;
        ASSERT_OK(CommitAndWait(*store_, Create(lease.token, w)));
    }
    auto collect = [&](ListFilter f) {
        std::vector<std::string> ids;
        for (int pages = 0; pages < 100; ++pages) {
            auto page = store_->ListWorkflows(f);
            EXPECT_TRUE(page) << page.error().ToString();
            if (!page || page->empty()) {
                break;
            }
            EXPECT_LE(static_cast<int>(page->size()), std::max(f.limit, 1));
            for (const auto& s : *page) {
                ids.push_back(s.id);
                EXPECT_EQ(s.type, all[s.id].first);
                EXPECT_EQ(s.state, all[s.id].second);
            }
            f.after_id = page->back().id;
        }
        return ids;
    };
    auto expected = [&](auto pred) {
        std::vector<std::string> ids;
        for (const auto& [id, v] : all) {
            if (pred(v.first, v.second)) {
                ids.push_back(id);
            }
        }
        return ids;
    };

    ListFilter f;
    f.limit = 7;
    EXPECT_EQ(collect(f), expected([](auto&, auto) { return true; }));
    f.state = WorkflowState::kRunning;
    EXPECT_EQ(collect(f), expected([](auto&, auto s) { return s == WorkflowState::kRunning; }));
    f.type = "vm.create";
    EXPECT_EQ(collect(f),
              expected([](auto& t, auto s) { return s == WorkflowState::kRunning && t == "vm.create"; }));
    f.state.reset();
    EXPECT_EQ(collect(f), expected([](auto& t, auto) { return t == "vm.create"; }));
    f.type = "nothing";
    EXPECT_TRUE(collect(f).empty());

    ListFilter one;
    one.limit = 0;  // clamped to 1
    auto page = store_->ListWorkflows(one);
    ASSERT_TRUE(page);
    ASSERT_EQ(page->size(), 1u);
    EXPECT_EQ((*page)[0].id, "wf-00");
    EXPECT_EQ((*page)[0].reason, "r0");
    EXPECT_EQ((*page)[0].version, 1);
    EXPECT_EQ((*page)[0].created_ms, 1000);
    one.limit = 1'000'000;  // clamped to 1000
    one.after_id = "wf-27";
    page = store_->ListWorkflows(one);
    ASSERT_TRUE(page);
    ASSERT_EQ(page->size(), 2u);
    EXPECT_EQ((*page)[1].id, "wf-29");
    EXPECT_EQ((*page)[1].finished_ms, 29);
}

TEST_P(StoreTest, ListFiltersByProject) {
    Lease lease = MustLease("engine");
    for (int i = 0; i < 12; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "wf-%02d", i);
        WorkflowRecord w = Workflow(id, i % 2 == 0 ? "server.create" : "server.delete", 1,
                                    i % 4 == 0 ? WorkflowState::kSucceeded : WorkflowState::kRunning);
        w.project = i % 3 == 0 ? "p-a" : "p-b";
        ASSERT_OK(CommitAndWait(*store_, Create(lease.token, w)));
    }
    EXPECT_EQ(MustGet("wf-03").project, "p-a");
    auto ids = [&](ListFilter f) {
        std::vector<std::string> out;
        auto page = store_->ListWorkflows(f);
        EXPECT_TRUE(page) << page.error().ToString();
        for (const auto& s : page ? *page : std::vector<WorkflowSummary>{}) {
            EXPECT_EQ(s.project, f.project.empty() ? s.project : f.project);
            out.push_back(s.id);
        }
        return out;
    };
    ListFilter f;
    f.project = "p-a";
    EXPECT_EQ(ids(f), (std::vector<std::string>{"wf-00", "wf-03", "wf-06", "wf-09"}));
    f.type = "server.create";
    EXPECT_EQ(ids(f), (std::vector<std::string>{"wf-00", "wf-06"}));
    f.state = WorkflowState::kSucceeded;
    EXPECT_EQ(ids(f), (std::vector<std::string>{"wf-00"}));
    f.type.clear();
    f.state.reset();
    f.after_id = "wf-03";
    f.limit = 1;
    EXPECT_EQ(ids(f), (std::vector<std::string>{"wf-06"}));
    f.project = "p-none";
    EXPECT_TRUE(ids(f).empty());
}

TEST_P(StoreTest, ResourcesCommitWithTheWorkflowAndSurviveReopen) {
    Lease lease = MustLease("engine");
    WriteGroup g = Create(lease.token, Workflow("w1", "server.create", 2));
    g.resources.push_back(ResourceWrite{"server", "s1", "p1", R"({"status":"BUILD"})", false});
    g.resources.push_back(ResourceWrite{"network", "n1", "p1", R"({"name":"net"})", false});
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));

    // A duplicate create refuses the whole group: its resources are not written either.
    WriteGroup dup = Create(lease.token, Workflow("w1", "server.create", 2));
    dup.resources.push_back(ResourceWrite{"server", "s2", "p1", "{}", false});
    EXPECT_CODE(CommitAndWait(*store_, std::move(dup)), ErrorCode::kAlreadyExists);

    // A group of resources alone: an update and an erase.
    WriteGroup upd;
    upd.resources.push_back(ResourceWrite{"server", "s1", "p1", R"({"status":"ACTIVE"})", false});
    upd.resources.push_back(ResourceWrite{"network", "n1", "", "", true});
    upd.resources.push_back(ResourceWrite{"host", "h1", "", R"({"vcpus":8})", false});
    ASSERT_OK(CommitAndWait(*store_, std::move(upd)));
    Reopen();
    auto all = store_->LoadResources();
    ASSERT_TRUE(all) << all.error().ToString();
    ASSERT_EQ(all->size(), 2u);
    EXPECT_EQ((*all)[0].kind, "host");
    EXPECT_EQ((*all)[0].id, "h1");
    EXPECT_EQ((*all)[0].project, "");
    EXPECT_EQ((*all)[1].kind, "server");
    EXPECT_EQ((*all)[1].id, "s1");
    EXPECT_EQ((*all)[1].project, "p1");
    EXPECT_EQ((*all)[1].body, R"({"status":"ACTIVE"})");
}

// A bulk request's workflows: several creates in one group exist together or not at all.
TEST_P(StoreTest, SeveralCreatesInOneGroupAreAllOrNothing) {
    Lease lease = MustLease("engine");
    WriteGroup g = Create(lease.token, Workflow("b1", "server.create", 2));
    g.creates.push_back(Workflow("b2", "server.create", 2));
    g.resources.push_back(ResourceWrite{"server", "s1", "p1", "{}", false});
    g.resources.push_back(ResourceWrite{"server", "s2", "p1", "{}", false});
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));

    // One id taken refuses the whole group: the new workflow and its server are not written.
    WriteGroup again = Create(lease.token, Workflow("b3", "server.create", 2));
    again.creates.push_back(Workflow("b1", "server.create", 2));
    again.resources.push_back(ResourceWrite{"server", "s3", "p1", "{}", false});
    EXPECT_CODE(CommitAndWait(*store_, std::move(again)), ErrorCode::kAlreadyExists);

    Reopen();
    EXPECT_TRUE(store_->GetWorkflow("b1"));
    EXPECT_TRUE(store_->GetWorkflow("b2"));
    EXPECT_CODE(store_->GetWorkflow("b3"), ErrorCode::kNotFound);
    auto all = store_->LoadResources();
    ASSERT_TRUE(all) << all.error().ToString();
    ASSERT_EQ(all->size(), 2u);
    EXPECT_EQ((*all)[0].id, "s1");
    EXPECT_EQ((*all)[1].id, "s2");
}

TEST_P(StoreTest, ImageChunksKeepEveryByteAndSurviveReopen) {
    // Every byte value, NUL included, and a chunk larger than a page.
    std::string binary;
    for (int i = 0; i < 3 * 4096 + 5; ++i) {
        binary.push_back(static_cast<char>(i % 256));
    }
    ASSERT_OK(store_->PutChunk("b1", 0, binary));
    ASSERT_OK(store_->PutChunk("b1", 1, std::string(1, '\0')));
    ASSERT_OK(store_->PutChunk("b2", 0, "other"));
    ASSERT_OK(store_->PutChunk("b2", 0, "replaced"));
    Reopen();
    auto c0 = store_->GetChunk("b1", 0);
    ASSERT_TRUE(c0) << c0.error().ToString();
    EXPECT_TRUE(*c0 == binary) << "chunk 0 read back with " << c0->size() << " bytes";
    EXPECT_EQ(store_->GetChunk("b1", 1).value_or("?"), std::string(1, '\0'));
    EXPECT_EQ(store_->GetChunk("b2", 0).value_or("?"), "replaced");
    EXPECT_CODE(store_->GetChunk("b1", 2), ErrorCode::kNotFound);
    EXPECT_EQ(store_->CountChunks("b1").value_or(-1), 2);
    EXPECT_EQ(store_->CountChunks("").value_or(-1), 3);
    EXPECT_EQ(store_->ListBlobs().value_or(std::vector<std::string>{}),
              (std::vector<std::string>{"b1", "b2"}));

    EXPECT_EQ(store_->DeleteChunks("b1").value_or(-1), 2);
    EXPECT_EQ(store_->CountChunks("b1").value_or(-1), 0);
    EXPECT_EQ(store_->CountChunks("").value_or(-1), 1);
    EXPECT_CODE(store_->GetChunk("b1", 0), ErrorCode::kNotFound);
}

TEST_P(StoreTest, CountByState) {
    Lease lease = MustLease("engine");
    auto counts = store_->CountByState();
    ASSERT_TRUE(counts);
    for (const auto& [state, n] : *counts) {
        EXPECT_EQ(n, 0) << ToString(state);
    }
    int n = 0;
    std::map<WorkflowState, int64_t> want;
    for (auto s : {WorkflowState::kRunning, WorkflowState::kRunning, WorkflowState::kFailed,
                   WorkflowState::kRolledBack, WorkflowState::kRunning, WorkflowState::kCompensating}) {
        ASSERT_OK(
            CommitAndWait(*store_, Create(lease.token, Workflow("w" + std::to_string(n++), "t", 1, s))));
        ++want[s];
    }
    ASSERT_OK(CommitAndWait(*store_, UpdateWorkflow(lease.token, "w0", WorkflowState::kSucceeded)));
    --want[WorkflowState::kRunning];
    ++want[WorkflowState::kSucceeded];
    counts = store_->CountByState();
    ASSERT_TRUE(counts);
    std::map<WorkflowState, int64_t> got;
    for (const auto& [state, count] : *counts) {
        if (count != 0) {
            got[state] = count;
        }
    }
    EXPECT_EQ(got, want);
}

TEST_P(StoreTest, ReviveFailedHandsTheWorkflowBackForCompensation) {
    Lease old_owner = MustLease("engine-a");
    WorkflowRecord w = Workflow("w", "t", 3, WorkflowState::kFailed);
    w.reason = "compensation of step 1 failed";
    w.finished_ms = 5000;
    w.steps[0].state = StepState::kCompensated;
    w.steps[0].comp_attempts = 1;
    w.steps[1].state = StepState::kCompensationFailed;
    w.steps[1].comp_attempts = 5;
    w.steps[1].attempts = 2;
    w.steps[1].log = "kept\n";
    w.steps[2].state = StepState::kSkipped;
    ASSERT_OK(CommitAndWait(*store_, Create(old_owner.token, w)));
    ASSERT_OK(CommitAndWait(*store_, Create(old_owner.token, Workflow("running"))));

    Lease operator_lease = MustLease("engine-b");
    EXPECT_CODE(store_->ReviveFailed(operator_lease, "nope"), ErrorCode::kNotFound);
    EXPECT_CODE(store_->ReviveFailed(operator_lease, "running"), ErrorCode::kConflict);

    auto revived = store_->ReviveFailed(operator_lease, "w");
    ASSERT_TRUE(revived) << revived.error().ToString();
    for (const WorkflowRecord& r : {*revived, MustGet("w")}) {
        EXPECT_EQ(r.state, WorkflowState::kCompensating);
        EXPECT_EQ(r.reason, w.reason);
        EXPECT_EQ(r.fence, operator_lease.token);
        EXPECT_EQ(r.finished_ms, 0);
        ASSERT_EQ(r.steps.size(), 3u);
        EXPECT_EQ(r.steps[0].state, StepState::kCompensated);
        EXPECT_EQ(r.steps[0].comp_attempts, 1);
        EXPECT_EQ(r.steps[1].state, StepState::kCompensating);
        EXPECT_EQ(r.steps[1].comp_attempts, 0);
        EXPECT_EQ(r.steps[1].attempts, 2);
        EXPECT_EQ(r.steps[2].state, StepState::kSkipped);
    }
    EXPECT_EQ(MustGet("w").steps[1].log, "kept\n");

    EXPECT_CODE(CommitAndWait(*store_, UpdateStep(old_owner.token, "w", Step(1, StepState::kCompensated))),
                ErrorCode::kFenced);
    ASSERT_OK(
        CommitAndWait(*store_, UpdateStep(operator_lease.token, "w", Step(1, StepState::kCompensated))));
    EXPECT_CODE(store_->ReviveFailed(operator_lease, "w"), ErrorCode::kConflict);
}

TEST_P(StoreTest, DefinitionsAreIdempotentForEqualText) {
    ASSERT_OK(store_->SaveDefinition({"vm.create", 2, "steps: [b]\n"}));
    ASSERT_OK(store_->SaveDefinition({"vm.create", 1, "steps: [a]\n"}));
    ASSERT_OK(store_->SaveDefinition({"net.attach", 1, "steps: [n]\n"}));
    ASSERT_OK(store_->SaveDefinition({"vm.create", 1, "steps: [a]\n"}));
    EXPECT_CODE(store_->SaveDefinition({"vm.create", 1, "steps: [changed]\n"}), ErrorCode::kAlreadyExists);

    Reopen();
    auto defs = store_->LoadDefinitions();
    ASSERT_TRUE(defs) << defs.error().ToString();
    ASSERT_EQ(defs->size(), 3u);
    EXPECT_EQ((*defs)[0].type, "net.attach");
    EXPECT_EQ((*defs)[1].type, "vm.create");
    EXPECT_EQ((*defs)[1].version, 1);
    EXPECT_EQ((*defs)[1].text, "steps: [a]\n");
    EXPECT_EQ((*defs)[2].version, 2);
    EXPECT_EQ((*defs)[2].text, "steps: [b]\n");
}

TEST_P(StoreTest, AcknowledgedWritesSurviveReopen) {
    Lease lease = MustLease("engine");
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("w", "t", 2))));
    ASSERT_OK(CommitAndWait(*store_, UpdateStep(lease.token, "w", Step(1, StepState::kPolling), "poll\n")));
    Reopen();
    WorkflowRecord got = MustGet("w");
    EXPECT_EQ(got.fence, lease.token);
    ASSERT_EQ(got.steps.size(), 2u);
    EXPECT_EQ(got.steps[1].state, StepState::kPolling);
    EXPECT_EQ(got.steps[1].log, "poll\n");
}

TEST_P(StoreTest, DestroyingTheStoreDrainsTheQueue) {
    Lease lease = MustLease("engine");
    constexpr int kGroups = 500;
    std::atomic<int> ok{0};
    for (int i = 0; i < kGroups; ++i) {
        store_->Commit(Create(lease.token, Workflow("w" + std::to_string(i), "t", 1)), [&](Status st) {
            if (st) {
                ok.fetch_add(1);
            }
        });
    }
    store_.reset();  // no Flush: the destructor must commit and call back everything queued
    EXPECT_EQ(ok.load(), kGroups);
    Open();
    auto counts = store_->CountByState();
    ASSERT_TRUE(counts);
    EXPECT_EQ((*counts)[0].second, kGroups);
}

TEST_P(StoreTest, CallbacksMayCallTheStore) {
    Lease lease = MustLease("engine");
    std::promise<Result<Lease>> inner_lease;
    std::promise<Status> second;
    store_->Commit(Create(lease.token, Workflow("w", "t", 1)), [&](Status st) {
        EXPECT_TRUE(st);
        // On the writer thread: must neither deadlock nor run inside a transaction.
        inner_lease.set_value(store_->AcquireLease("other", 1000));
        store_->Commit(UpdateStep(lease.token, "w", Step(0, StepState::kRunning)),
                       [&](Status st2) { second.set_value(st2); });
    });
    auto l = inner_lease.get_future().get();
    ASSERT_TRUE(l) << l.error().ToString();
    EXPECT_GT(l->token, lease.token);
    ASSERT_OK(second.get_future().get());
    EXPECT_EQ(MustGet("w").steps[0].state, StepState::kRunning);
}

// ---------------------------------------------------------------------------------------------
// Events.

EventRecord Event(const std::string& type, const std::string& kind, const std::string& id,
                  const std::string& project = "p1", const std::string& workflow = "",
                  int64_t time_ms = 1000) {
    EventRecord e;
    e.time_ms = time_ms;
    e.project = project;
    e.resource_kind = kind;
    e.resource_id = id;
    e.workflow_id = workflow;
    e.type = type;
    e.message = type + " of " + kind + " " + id;
    e.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    return e;
}

EventFilter Filter(std::string project, std::string kind = "", std::string id = "", std::string workflow = "",
                   int64_t after_seq = 0, int limit = 100) {
    EventFilter f;
    f.project = std::move(project);
    f.resource_kind = std::move(kind);
    f.resource_id = std::move(id);
    f.workflow_id = std::move(workflow);
    f.after_seq = after_seq;
    f.limit = limit;
    return f;
}

std::vector<std::string> Types(const std::vector<EventRecord>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) {
        out.push_back(e.type);
    }
    return out;
}

TEST_P(StoreTest, EventsCommitWithTheirGroupAndOnlyThen) {
    Lease lease = MustLease("engine");
    WorkflowRecord w = Workflow("w1", "server.create", 2);
    w.project = "p1";
    w.resource_kind = "server";
    w.resource_id = "s1";
    WriteGroup create = Create(lease.token, w);
    create.events.push_back(Event("created", "server", "s1", "p1", "w1", 1000));
    ASSERT_OK(CommitAndWait(*store_, std::move(create)));

    WriteGroup step = UpdateStep(lease.token, "w1", Step(0, StepState::kSucceeded));
    step.events.push_back(Event("step_succeeded", "server", "s1", "p1", "w1", 1001));
    ASSERT_OK(CommitAndWait(*store_, std::move(step)));

    // Refused groups write none of their events: a duplicate create, a stale token, a missing row.
    WriteGroup dup = Create(lease.token, Workflow("w1", "server.create", 2));
    dup.events.push_back(Event("duplicate", "server", "s1", "p1", "w1"));
    EXPECT_CODE(CommitAndWait(*store_, std::move(dup)), ErrorCode::kAlreadyExists);
    WriteGroup stale = UpdateStep(lease.token + 1000, "w1", Step(1, StepState::kRunning));
    stale.events.push_back(Event("stale", "server", "s1", "p1", "w1"));
    EXPECT_CODE(CommitAndWait(*store_, std::move(stale)), ErrorCode::kFenced);
    WriteGroup missing = UpdateWorkflow(lease.token, "nope", WorkflowState::kSucceeded);
    missing.events.push_back(Event("missing", "server", "s1", "p1", "nope"));
    EXPECT_CODE(CommitAndWait(*store_, std::move(missing)), ErrorCode::kFenced);

    // A group of events alone (a host healed: no workflow behind it).
    WriteGroup alone;
    alone.events.push_back(Event("healed", "host", "h1", "", "", 1002));
    ASSERT_OK(CommitAndWait(*store_, std::move(alone)));

    EventFilter f;
    f.resource_kind = "server";
    f.resource_id = "s1";
    auto got = store_->ListEvents(f);
    ASSERT_TRUE(got) << got.error().ToString();
    ASSERT_EQ(Types(*got), (std::vector<std::string>{"created", "step_succeeded"}));
    const EventRecord& e = (*got)[1];
    EXPECT_GT(e.seq, (*got)[0].seq);
    EXPECT_EQ(e.time_ms, 1001);
    EXPECT_EQ(e.project, "p1");
    EXPECT_EQ(e.resource_kind, "server");
    EXPECT_EQ(e.resource_id, "s1");
    EXPECT_EQ(e.workflow_id, "w1");
    EXPECT_EQ(e.message, "step_succeeded of server s1");
    EXPECT_EQ(e.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

    f = EventFilter{};
    got = store_->ListEvents(f);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(Types(*got), (std::vector<std::string>{"created", "step_succeeded", "healed"}));

    // Durable like the rest of the group.
    Reopen();
    got = store_->ListEvents(f);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(got->size(), 3u);
}

TEST_P(StoreTest, EventsFilterAndPaginateOldestFirst) {
    Lease lease = MustLease("engine");
    // 36 events over three resources in two projects, written by two workflows and none, in groups
    // of one to three.
    std::vector<EventRecord> all;
    for (int i = 0; i < 36; ++i) {
        const char* kinds[] = {"server", "server", "volume"};
        const char* ids[] = {"s1", "s2", "v1"};
        int r = i % 3;
        std::string project = r == 1 ? "p2" : "p1";
        std::string workflow = i % 4 == 0 ? "" : (i % 4 == 1 ? "wa" : "wb");
        all.push_back(Event("e" + std::to_string(i), kinds[r], ids[r], project, workflow, 1000 + i));
    }
    for (size_t i = 0; i < all.size();) {
        WriteGroup g;
        size_t n = std::min<size_t>(1 + i % 3, all.size() - i);
        g.events.assign(all.begin() + static_cast<std::ptrdiff_t>(i),
                        all.begin() + static_cast<std::ptrdiff_t>(i + n));
        ASSERT_OK(CommitAndWait(*store_, std::move(g)));
        i += n;
    }
    auto collect = [&](EventFilter f) {
        std::vector<std::string> types;
        int64_t last = f.after_seq;
        for (int pages = 0; pages < 100; ++pages) {
            auto page = store_->ListEvents(f);
            EXPECT_TRUE(page) << page.error().ToString();
            if (!page || page->empty()) {
                break;
            }
            EXPECT_LE(static_cast<int>(page->size()), f.limit);
            for (const auto& e : *page) {
                EXPECT_GT(e.seq, last);  // oldest first, never repeated
                last = e.seq;
                types.push_back(e.type);
            }
            f.after_seq = page->back().seq;
        }
        return types;
    };
    auto expected = [&](auto pred) {
        std::vector<std::string> types;
        for (const auto& e : all) {
            if (pred(e)) {
                types.push_back(e.type);
            }
        }
        return types;
    };
    auto check = [&](EventFilter f, auto pred) {
        f.limit = 4;
        auto want = expected(pred);
        EXPECT_EQ(collect(f), want);
        return want.size();
    };

    EXPECT_EQ(check({}, [](auto&) { return true; }), 36u);
    EXPECT_EQ(check(Filter("p1"), [](auto& e) { return e.project == "p1"; }), 24u);
    EXPECT_EQ(check(Filter("", "server"), [](auto& e) { return e.resource_kind == "server"; }), 24u);
    EXPECT_EQ(check(Filter("", "server", "s2"), [](auto& e) { return e.resource_id == "s2"; }), 12u);
    EXPECT_EQ(check(Filter("", "", "v1"), [](auto& e) { return e.resource_id == "v1"; }), 12u);
    EXPECT_EQ(check(Filter("p1", "server", "s1"), [](auto& e) { return e.resource_id == "s1"; }), 12u);
    // A resource seen from another project shows nothing.
    EXPECT_EQ(check(Filter("p2", "server", "s1"), [](auto&) { return false; }), 0u);
    EXPECT_EQ(check(Filter("", "", "", "wa"), [](auto& e) { return e.workflow_id == "wa"; }), 9u);
    EXPECT_EQ(
        check(Filter("p1", "", "", "wb"), [](auto& e) { return e.project == "p1" && e.workflow_id == "wb"; }),
        12u);
    EXPECT_EQ(check(Filter("", "server", "s1", "wa"),
                    [](auto& e) { return e.resource_id == "s1" && e.workflow_id == "wa"; }),
              3u);
    EXPECT_EQ(check(Filter("p1", "volume"), [](auto& e) { return e.resource_kind == "volume"; }), 12u);

    // Following: after the last seq there is nothing, until a new event comes.
    auto everything = store_->ListEvents(Filter("", "", "", "", 0, 1000));
    ASSERT_TRUE(everything);
    ASSERT_EQ(everything->size(), 36u);
    EventFilter follow = Filter("", "", "", "", everything->back().seq);
    EXPECT_TRUE(store_->ListEvents(follow)->empty());
    WriteGroup g;
    g.events.push_back(Event("late", "server", "s1"));
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));
    EXPECT_EQ(Types(*store_->ListEvents(follow)), (std::vector<std::string>{"late"}));

    // The limit is clamped to 1..1000.
    auto one = store_->ListEvents(Filter("", "", "", "", 0, 0));
    ASSERT_TRUE(one);
    EXPECT_EQ(Types(*one), (std::vector<std::string>{"e0"}));
}

TEST_P(StoreTest, PruneWorkflowsTakesTheOldestEndedOnesInBatchesAndNeverOneInFlight) {
    const Lease lease = MustLease("engine");
    const auto end = [&](const std::string& id, WorkflowState state, int64_t finished_ms) {
        ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow(id))));
        ASSERT_OK(CommitAndWait(*store_, UpdateStep(lease.token, id, Step(0, StepState::kSucceeded), "log")));
        WriteGroup g = UpdateWorkflow(lease.token, id, state);
        g.workflows[0].finished_ms = finished_ms;
        ASSERT_OK(CommitAndWait(*store_, std::move(g)));
    };
    end("e1", WorkflowState::kSucceeded, 100);
    end("e2", WorkflowState::kRolledBack, 200);
    end("e3", WorkflowState::kSucceeded, 300);
    end("e4", WorkflowState::kSucceeded, 400);
    end("failed", WorkflowState::kFailed, 50);  // waits for an operator: never pruned
    end("compensating", WorkflowState::kCompensating, 0);
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("running"))));
    const auto exists = [&](const std::string& id) { return store_->GetWorkflow(id).has_value(); };

    auto r = store_->PruneWorkflows(Ended::kDone, 250, 1000, 100);  // by age: finished before 250
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->pruned, 2);
    EXPECT_EQ(r->kept, 2);
    EXPECT_FALSE(exists("e1"));
    EXPECT_FALSE(exists("e2"));
    EXPECT_TRUE(exists("e3"));

    r = store_->PruneWorkflows(Ended::kDone, 0, 1, 100);  // by count: the newest one stays
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pruned, 1);
    EXPECT_EQ(r->kept, 1);
    EXPECT_FALSE(exists("e3"));
    EXPECT_TRUE(exists("e4"));

    r = store_->PruneWorkflows(Ended::kDone, 1'000'000, 0,
                               1);  // everything may go; the batch bounds the call
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pruned, 1);
    EXPECT_EQ(r->kept, 0);
    r = store_->PruneWorkflows(Ended::kDone, 1'000'000, 0, 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pruned, 0);
    for (const char* id : {"failed", "compensating", "running"}) {
        EXPECT_TRUE(exists(id)) << id;
    }

    // Failed workflows by their own bounds, apart from the others: only they go, and only by them.
    end("failed2", WorkflowState::kFailed, 60);
    end("failed3", WorkflowState::kFailed, 70);
    r = store_->PruneWorkflows(Ended::kFailed, 55, 1000, 100);  // by age
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->pruned, 1);
    EXPECT_EQ(r->kept, 2);
    EXPECT_FALSE(exists("failed"));
    r = store_->PruneWorkflows(Ended::kFailed, 0, 1, 100);  // by count: the newest stays
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pruned, 1);
    EXPECT_FALSE(exists("failed2"));
    for (const char* id : {"failed3", "compensating", "running"}) {
        EXPECT_TRUE(exists(id)) << id;
    }

    // The steps went with their workflow: an id used again starts with none of the old rows.
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, Workflow("e1"))));
    EXPECT_EQ(MustGet("e1").steps[0].state, StepState::kPending);
    EXPECT_EQ(MustGet("e1").steps[0].log, "");

    EXPECT_CODE(store_->PruneWorkflows(Ended::kDone, 0, -1, 10), ErrorCode::kInvalidArgument);
    EXPECT_CODE(store_->PruneWorkflows(Ended::kDone, 0, 10, 0), ErrorCode::kInvalidArgument);
}

TEST_P(StoreTest, PruneEventsByAgeThenByCount) {
    WriteGroup g;
    for (int i = 0; i < 10; ++i) {
        g.events.push_back(Event("e" + std::to_string(i), "server", "s1", "p1", "", 100 + i));
    }
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));
    auto types = [&] {
        auto got = store_->ListEvents({});
        EXPECT_TRUE(got) << got.error().ToString();
        return got ? Types(*got) : std::vector<std::string>{};
    };
    auto before = store_->ListEvents({});
    ASSERT_TRUE(before);
    const int64_t newest_seq = before->back().seq;

    EXPECT_EQ(store_->PruneEvents(105, 1000).value_or(-1), 5);  // time_ms 100..104 go
    EXPECT_EQ(types(), (std::vector<std::string>{"e5", "e6", "e7", "e8", "e9"}));
    EXPECT_EQ(store_->PruneEvents(0, 3).value_or(-1), 2);  // the newest 3 stay
    EXPECT_EQ(types(), (std::vector<std::string>{"e7", "e8", "e9"}));
    EXPECT_EQ(store_->PruneEvents(0, 3).value_or(-1), 0);
    EXPECT_EQ(store_->PruneEvents(200, 3).value_or(-1), 3);  // age first: all are older
    EXPECT_TRUE(types().empty());
    EXPECT_CODE(store_->PruneEvents(0, -1), ErrorCode::kInvalidArgument);

    // A seq is never reused, even once every event was pruned: a follower misses nothing.
    WriteGroup next;
    next.events.push_back(Event("after", "server", "s1"));
    ASSERT_OK(CommitAndWait(*store_, std::move(next)));
    Reopen();
    auto after = store_->ListEvents(Filter("", "", "", "", newest_seq));
    ASSERT_TRUE(after);
    EXPECT_EQ(Types(*after), (std::vector<std::string>{"after"}));
}

AuditRecord Audit(std::string token, std::string project, std::string resource, int status, int64_t time_ms) {
    AuditRecord a;
    a.time_ms = time_ms;
    a.token_id = std::move(token);
    a.project = std::move(project);
    a.role = "member";
    a.method = "POST";
    a.path = "/v1/servers";
    a.resource_id = std::move(resource);
    a.status = status;
    a.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    a.peer = "10.0.0.1";
    return a;
}

std::vector<int64_t> Times(const std::vector<AuditRecord>& entries) {
    std::vector<int64_t> t;
    for (const auto& a : entries) {
        t.push_back(a.time_ms);
    }
    return t;
}

TEST_P(StoreTest, TheAuditLogListsNewestFirstByEachFilterAndPages) {
    WriteGroup g;
    for (int i = 0; i < 6; ++i) {
        g.audit.push_back(Audit(i % 2 == 0 ? "t1" : "t2", i < 3 ? "p1" : "p2", "r" + std::to_string(i % 3),
                                200 + i, 100 + i));
    }
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));
    auto list = [&](AuditFilter f) {
        auto got = store_->ListAudit(f);
        EXPECT_TRUE(got) << got.error().ToString();
        return got ? *got : std::vector<AuditRecord>{};
    };
    auto all = list({});
    ASSERT_EQ(all.size(), 6u);
    EXPECT_EQ(Times(all), (std::vector<int64_t>{105, 104, 103, 102, 101, 100}));
    const AuditRecord& a = all.back();
    EXPECT_GT(a.seq, 0);
    EXPECT_EQ(a.token_id, "t1");
    EXPECT_EQ(a.project, "p1");
    EXPECT_EQ(a.role, "member");
    EXPECT_EQ(a.method, "POST");
    EXPECT_EQ(a.path, "/v1/servers");
    EXPECT_EQ(a.resource_id, "r0");
    EXPECT_EQ(a.status, 200);
    EXPECT_EQ(a.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(a.peer, "10.0.0.1");
    EXPECT_EQ(Times(list({.token_id = "t1"})), (std::vector<int64_t>{104, 102, 100}));
    EXPECT_EQ(Times(list({.project = "p2"})), (std::vector<int64_t>{105, 104, 103}));
    EXPECT_EQ(Times(list({.resource_id = "r1"})), (std::vector<int64_t>{104, 101}));
    EXPECT_EQ(Times(list({.token_id = "t2", .project = "p2"})), (std::vector<int64_t>{105, 103}));
    EXPECT_EQ(Times(list({.token_id = "t1", .resource_id = "r2"})), (std::vector<int64_t>{102}));
    EXPECT_EQ(Times(list({.since_ms = 103})), (std::vector<int64_t>{105, 104, 103}));
    // Pages: the limit, then before the last seq seen.
    auto page = list({.limit = 4});
    ASSERT_EQ(page.size(), 4u);
    EXPECT_EQ(Times(list({.before_seq = page.back().seq, .limit = 4})), (std::vector<int64_t>{101, 100}));
}

TEST_P(StoreTest, AuditEntriesCommitWithTheirGroupOrNotAtAll) {
    Lease lease = MustLease("engine");
    WorkflowRecord w = Workflow("w1", "t", 1);
    ASSERT_OK(CommitAndWait(*store_, Create(lease.token, w)));
    WriteGroup dup = Create(lease.token, w);  // a duplicate create: the group is refused whole
    dup.audit.push_back(Audit("t1", "p1", "w1", 201, 100));
    EXPECT_CODE(CommitAndWait(*store_, std::move(dup)), ErrorCode::kAlreadyExists);
    WriteGroup alone;
    alone.audit.push_back(Audit("t1", "p1", "r1", 403, 101));
    ASSERT_OK(CommitAndWait(*store_, std::move(alone)));
    Reopen();
    auto got = store_->ListAudit({});
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(Times(*got), (std::vector<int64_t>{101}));
}

TEST_P(StoreTest, PruneAuditByAgeThenByCount) {
    WriteGroup g;
    for (int i = 0; i < 10; ++i) {
        g.audit.push_back(Audit("t", "p", "r", 200, 100 + i));
    }
    ASSERT_OK(CommitAndWait(*store_, std::move(g)));
    auto times = [&] {
        auto got = store_->ListAudit({.limit = 1000});
        EXPECT_TRUE(got) << got.error().ToString();
        return got ? Times(*got) : std::vector<int64_t>{};
    };
    EXPECT_EQ(store_->PruneAudit(105, 1000).value_or(-1), 5);  // time_ms 100..104 go
    EXPECT_EQ(times(), (std::vector<int64_t>{109, 108, 107, 106, 105}));
    EXPECT_EQ(store_->PruneAudit(0, 3).value_or(-1), 2);  // the newest 3 stay
    EXPECT_EQ(times(), (std::vector<int64_t>{109, 108, 107}));
    EXPECT_EQ(store_->PruneAudit(200, 3).value_or(-1), 3);
    EXPECT_TRUE(times().empty());
    EXPECT_CODE(store_->PruneAudit(0, -1), ErrorCode::kInvalidArgument);
}

TEST_P(StoreTest, ClaimReturnsTheResourceOfTheWorkflow) {
    Lease first = MustLease("engine");
    WorkflowRecord w = Workflow("w1", "volume.create", 1);
    w.resource_kind = "volume";
    w.resource_id = "v1";
    ASSERT_OK(CommitAndWait(*store_, Create(first.token, w)));
    Lease second = MustLease("engine");  // supersedes the first: its work is orphaned
    auto claimed = store_->ClaimOrphaned(second, 10);
    ASSERT_TRUE(claimed) << claimed.error().ToString();
    ASSERT_EQ(claimed->size(), 1u);
    EXPECT_EQ((*claimed)[0].resource_kind, "volume");
    EXPECT_EQ((*claimed)[0].resource_id, "v1");
}

Result<std::unique_ptr<Store>> OpenSqlite(const std::string& dir) {
    SqliteOptions o;
    o.path = dir + "/cogs.db";
    return OpenSqliteStore(o);
}

Result<std::unique_ptr<Store>> OpenSqliteInlineSync(const std::string& dir) {
    SqliteOptions o;
    o.path = dir + "/cogs.db";
    o.pipelined_sync = false;  // PRAGMA synchronous=FULL, the fsync inside COMMIT
    return OpenSqliteStore(o);
}

// PostgreSQL: a database per test on the shared private server (test/support/private_pg.h), named
// after the test's directory, so that Reopen finds the same data.
Result<std::unique_ptr<Store>> OpenPostgres(const std::string& dir) {
    PgOptions o;
    o.conninfo = cogs::testing::PrivatePgDatabase(dir);
    return OpenPgStore(o);
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreTest,
                         ::testing::Values(Backend{"sqlite", OpenSqlite},
                                           Backend{"sqlite_inline_sync", OpenSqliteInlineSync}),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Postgres, StoreTest, ::testing::Values(Backend{"postgres", OpenPostgres}),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: a connection lost in the middle of a commit, the server restarting, several
// stores (replicas) on one database. The detector of a group applied twice is a step's log, which
// every update appends to.

class PgStoreTest : public ::testing::Test {
protected:
    Result<std::unique_ptr<Store>> Open(internal::PgFaults faults = {}) {
        PgOptions o;
        o.conninfo = conninfo_;
        o.statement_timeout = std::chrono::seconds(20);  // a loaded machine under ASan is slow, not lost
        return internal::OpenPgStoreWithFaults(o, std::move(faults));
    }
    // Ends every other session on the test's database, as a server restart or a network cut would.
    void TerminateSessions() {
        auto admin = pg::Conn::Connect(conninfo_, std::chrono::seconds(20));
        ASSERT_TRUE(admin) << admin.error().ToString();
        ASSERT_OK(
            (*admin)->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()",
                           SteadyClock::now() + std::chrono::seconds(20)));
    }
    static void WaitNotWritable(Store& store) {
        store.Flush();  // the batch that lost its connection has been handled
        ASSERT_FALSE(store.Writable());
    }

    TempDir dir_;
    std::string conninfo_ = cogs::testing::PrivatePgDatabase(dir_.path());
};

TEST_F(PgStoreTest, ACommitWhoseAnswerWasLostIsAcknowledgedOnceAfterReconnecting) {
    std::atomic<bool> lose{false};
    internal::PgFaults faults;
    faults.lose_commit_reply = [&] { return lose.exchange(false); };
    auto opened = Open(faults);
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto lease = store.AcquireLease("engine", 60'000);
    ASSERT_TRUE(lease);
    ASSERT_OK(CommitAndWait(store, Create(lease->token, Workflow("w", "t", 2))));

    lose = true;
    std::promise<Status> in_doubt_promise;
    auto in_doubt = in_doubt_promise.get_future();
    store.Commit(UpdateStep(lease->token, "w", Step(0, StepState::kRunning), "once\n"),
                 [&](Status st) { in_doubt_promise.set_value(st); });
    WaitNotWritable(store);
    // While the database is out of reach a create is refused (the API can say "try again")...
    EXPECT_CODE(CommitAndWait(store, Create(lease->token, Workflow("new", "t", 1))), ErrorCode::kUnavailable);
    // ...and a change of what exists waits, after the batch in doubt.
    std::promise<Status> held;
    store.Commit(UpdateStep(lease->token, "w", Step(1, StepState::kRunning), "held\n"),
                 [&](Status st) { held.set_value(st); });
    EXPECT_EQ(in_doubt.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout)
        << "acknowledged before anyone knew whether it committed";

    ASSERT_OK(store.ResumeWrites());
    EXPECT_TRUE(store.Writable());
    ASSERT_OK(in_doubt.get());
    ASSERT_OK(held.get_future().get());
    WorkflowRecord w = *store.GetWorkflow("w");
    EXPECT_EQ(w.steps[0].log, "once\n") << "the batch in doubt was committed once, and not sent again";
    EXPECT_EQ(w.steps[1].log, "held\n");
    EXPECT_CODE(store.GetWorkflow("new"), ErrorCode::kNotFound);
}

TEST_F(PgStoreTest, ABatchCutOffBeforeItsCommitIsAppliedOnceAfterReconnecting) {
    auto opened = Open();
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto lease = store.AcquireLease("engine", 60'000);
    ASSERT_TRUE(lease);
    ASSERT_OK(CommitAndWait(store, Create(lease->token, Workflow("w", "t", 1))));

    std::promise<Status> cut;
    {
        WriterGate gate(store);
        store.Commit(UpdateStep(lease->token, "w", Step(0, StepState::kRunning), "once\n"),
                     [&](Status st) { cut.set_value(st); });
        TerminateSessions();  // the writer finds out when it sends the batch
    }
    WaitNotWritable(store);
    ASSERT_OK(store.ResumeWrites());
    ASSERT_OK(cut.get_future().get());
    EXPECT_EQ(store.GetWorkflow("w")->steps[0].log, "once\n");
    EXPECT_EQ(store.Stats().fenced, 0u);
}

// A database at schema version 3 (before the audit log: version 4 only adds its table) is migrated
// at open, its data kept, and the audit log works.
TEST_F(PgStoreTest, MigratesAVersion3DatabaseToTheAuditLog) {
    {
        auto opened = Open();
        ASSERT_TRUE(opened) << opened.error().ToString();
        WriteGroup g;
        g.resources.push_back(ResourceWrite{"server", "s1", "p1", R"({"status":"ACTIVE"})"});
        ASSERT_OK(CommitAndWait(**opened, std::move(g)));
    }
    const auto deadline = [] { return SteadyClock::now() + std::chrono::seconds(20); };
    {
        auto admin = pg::Conn::Connect(conninfo_, std::chrono::seconds(20));
        ASSERT_TRUE(admin) << admin.error().ToString();
        ASSERT_OK(
            (*admin)->Exec("DROP TABLE audit; DELETE FROM schema_version WHERE version = 4", deadline()));
    }
    auto opened = Open();
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto resources = store.LoadResources();
    ASSERT_TRUE(resources);
    EXPECT_EQ(resources->size(), 1u);
    WriteGroup g;
    g.audit.push_back(Audit("t1", "p1", "s1", 204, 100));
    ASSERT_OK(CommitAndWait(store, std::move(g)));
    auto audit = store.ListAudit({});
    ASSERT_TRUE(audit) << audit.error().ToString();
    EXPECT_EQ(Times(*audit), (std::vector<int64_t>{100}));
    auto admin = pg::Conn::Connect(conninfo_, std::chrono::seconds(20));
    ASSERT_TRUE(admin) << admin.error().ToString();
    auto v = (*admin)->Query({"", {}, "SELECT max(version) FROM schema_version"}, deadline());
    ASSERT_TRUE(v) << v.error().ToString();
    EXPECT_EQ(v->Int(0, 0), 4);
}

TEST_F(PgStoreTest, TwoStoresOnOneDatabaseClaimDisjointly) {
    auto a = Open();
    auto b = Open();
    auto c = Open();
    ASSERT_TRUE(a && b && c);
    auto dead = (*a)->AcquireLease("dead", -1);
    ASSERT_TRUE(dead);
    constexpr int kWorkflows = 300;
    for (int i = 0; i < kWorkflows; ++i) {
        (*a)->Commit(Create(dead->token, Workflow("w" + std::to_string(i), "t", 1)),
                     [](Status st) { ASSERT_TRUE(st) << st.error().ToString(); });
    }
    (*a)->Flush();
    auto lb = (*b)->AcquireLease("b", 60'000);
    auto lc = (*c)->AcquireLease("c", 60'000);
    ASSERT_TRUE(lb && lc);
    std::set<std::string> by_b, by_c;
    std::thread tb([&] {
        for (int round = 0; round < 20; ++round) {
            auto got = (*b)->ClaimOrphaned(*lb, 10);
            ASSERT_TRUE(got) << got.error().ToString();
            by_b.merge(Ids(*got));
        }
    });
    std::thread tc([&] {
        for (int round = 0; round < 20; ++round) {
            auto got = (*c)->ClaimOrphaned(*lc, 10);
            ASSERT_TRUE(got) << got.error().ToString();
            by_c.merge(Ids(*got));
        }
    });
    tb.join();
    tc.join();
    for (const std::string& id : by_b) {
        EXPECT_EQ(by_c.count(id), 0u) << id << " claimed by both";
    }
    // Whatever the claims left is still an orphan: one more claim takes all of it.
    auto rest = (*b)->ClaimOrphaned(*lb, 1000);
    ASSERT_TRUE(rest);
    EXPECT_EQ(by_b.size() + by_c.size() + rest->size(), static_cast<size_t>(kWorkflows));
    // The dead owner's writes are fenced, whichever store they go through.
    EXPECT_CODE(CommitAndWait(**a, UpdateStep(dead->token, "w0", Step(0, StepState::kRunning))),
                ErrorCode::kFenced);
}

// The writer guesses, for the workflows it created, whether a step has a row (PgStepRows) and then
// sends the update alone or the insert alone. A wrong guess must cost only time: the group is still
// written once, by the exact path's upsert, and nothing is refused that should not be.
TEST_F(PgStoreTest, AWrongGuessOfAStepRowIsWrittenOnceAndNotRefused) {
    auto a = Open();
    auto b = Open();
    ASSERT_TRUE(a && b);
    auto lease = (*a)->AcquireLease("engine", 60'000);
    ASSERT_TRUE(lease);
    ASSERT_OK(CommitAndWait(**a, Create(lease->token, Workflow("w", "t", 3))));

    // A step's first change and a later one in one batch: the insert alone, then the update alone.
    {
        WriterGate gate(**a);
        (*a)->Commit(UpdateStep(lease->token, "w", Step(2, StepState::kRunning), "1\n"),
                     [](Status st) { ASSERT_TRUE(st) << st.error().ToString(); });
        (*a)->Commit(UpdateStep(lease->token, "w", Step(2, StepState::kSucceeded), "2\n"),
                     [](Status st) { ASSERT_TRUE(st) << st.error().ToString(); });
    }
    (*a)->Flush();
    EXPECT_EQ((*a)->GetWorkflow("w")->steps[2].log, "1\n2\n");

    // Another store gives step 1 its row behind a's back: a guesses "no row" and is wrong.
    ASSERT_OK(CommitAndWait(**b, UpdateStep(lease->token, "w", Step(1, StepState::kRunning), "b\n")));
    ASSERT_OK(CommitAndWait(**a, UpdateStep(lease->token, "w", Step(1, StepState::kSucceeded), "a\n")));
    WorkflowRecord w = *(*a)->GetWorkflow("w");
    EXPECT_EQ(w.steps[1].state, StepState::kSucceeded);
    EXPECT_EQ(w.steps[1].log, "b\na\n");

    // Step 0's row is written by a, then removed behind its back: a guesses "row" and is wrong.
    ASSERT_OK(CommitAndWait(**a, UpdateStep(lease->token, "w", Step(0, StepState::kRunning), "x\n")));
    {
        auto admin = pg::Conn::Connect(conninfo_, std::chrono::seconds(20));
        ASSERT_TRUE(admin) << admin.error().ToString();
        ASSERT_OK((*admin)->Exec("DELETE FROM steps WHERE workflow_id = 'w' AND idx = 0",
                                 SteadyClock::now() + std::chrono::seconds(20)));
    }
    ASSERT_OK(CommitAndWait(**a, UpdateStep(lease->token, "w", Step(0, StepState::kSucceeded), "y\n")));
    w = *(*a)->GetWorkflow("w");
    EXPECT_EQ(w.steps[0].state, StepState::kSucceeded);
    EXPECT_EQ(w.steps[0].log, "y\n");
    EXPECT_EQ((*a)->Stats().fenced, 0u);

    // A stale token is still refused, guess or not.
    auto newer = (*b)->AcquireLease("engine", 60'000);
    ASSERT_TRUE(newer);
    ASSERT_OK(CommitAndWait(**a, Create(lease->token, Workflow("v", "t", 2))));
    {
        auto admin = pg::Conn::Connect(conninfo_, std::chrono::seconds(20));
        ASSERT_TRUE(admin) << admin.error().ToString();
        ASSERT_OK(
            (*admin)->Exec("UPDATE workflows SET fence = " + std::to_string(newer->token) + " WHERE id = 'v'",
                           SteadyClock::now() + std::chrono::seconds(20)));
    }
    EXPECT_CODE(CommitAndWait(**a, UpdateStep(lease->token, "v", Step(1, StepState::kRunning))),
                ErrorCode::kFenced);
    EXPECT_EQ((*a)->GetWorkflow("v")->steps[1].state, StepState::kPending);
}

// ---------------------------------------------------------------------------------------------
// SQLite only: one process owns the file.

class SqliteStoreTest : public ::testing::Test {
protected:
    std::string path() const { return dir_.path() + "/cogs.db"; }
    Result<std::unique_ptr<Store>> Open(bool synchronous_full = true) {
        SqliteOptions o;
        o.path = path();
        o.synchronous_full = synchronous_full;
        return OpenSqliteStore(o);
    }
    TempDir dir_;
};

TEST_F(SqliteStoreTest, SecondOpenFailsWhileTheFirstIsOpen) {
    auto first = Open();
    ASSERT_TRUE(first) << first.error().ToString();
    auto second = Open();
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(second.error().message.find("in use by another process"), std::string::npos)
        << second.error().message;
    first->reset();
    auto third = Open();
    EXPECT_TRUE(third) << third.error().ToString();
}

TEST_F(SqliteStoreTest, ReopenExpiresEveryLease) {
    uint64_t token;
    {
        auto s = Open();
        ASSERT_TRUE(s);
        auto lease = (*s)->AcquireLease("engine-a", 3'600'000);
        ASSERT_TRUE(lease);
        token = lease->token;
        for (auto st : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                        WorkflowState::kFailed}) {
            ASSERT_OK(CommitAndWait(**s, Create(token, Workflow(std::string(ToString(st)), "t", 1, st))));
        }
        auto other = (*s)->AcquireLease("engine-b", 3'600'000);
        ASSERT_TRUE(other);
        auto none = (*s)->ClaimOrphaned(*other, 100);
        ASSERT_TRUE(none);
        EXPECT_TRUE(none->empty()) << "engine-a's lease is live";
    }
    auto s = Open();
    ASSERT_TRUE(s);
    auto lease = (*s)->AcquireLease("engine-b", 60'000);
    ASSERT_TRUE(lease);
    auto claimed = (*s)->ClaimOrphaned(*lease, 100);
    ASSERT_TRUE(claimed) << claimed.error().ToString();
    EXPECT_EQ(Ids(*claimed), (std::set<std::string>{"running", "compensating"}));
    EXPECT_CODE(CommitAndWait(**s, UpdateStep(token, "running", Step(0, StepState::kRunning))),
                ErrorCode::kFenced);
}

// A process that dies without closing the store (no destructor, no checkpoint: the commits are
// only in the WAL) loses nothing that was acknowledged, and leaves the file to the next process.
TEST_F(SqliteStoreTest, AcknowledgedWritesSurviveAProcessThatDies) {
    constexpr int kWorkflows = 200;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto s = Open();
        if (!s) {
            ::_exit(2);
        }
        auto lease = (*s)->AcquireLease("doomed", 3'600'000);
        if (!lease) {
            ::_exit(3);
        }
        std::atomic<int> acked{0};
        for (int i = 0; i < kWorkflows; ++i) {
            (*s)->Commit(Create(lease->token, Workflow("w" + std::to_string(i), "t", 3)), [&](Status st) {
                if (st) {
                    acked.fetch_add(1);
                }
            });
        }
        (*s)->Flush();
        ::_exit(acked.load() == kWorkflows ? 0 : 4);  // dies with the store open
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0) << "the child could not commit";
    ASSERT_TRUE(std::filesystem::exists(path() + "-wal")) << "the child closed the store after all";

    auto s = Open();
    ASSERT_TRUE(s) << s.error().ToString();
    auto counts = (*s)->CountByState();
    ASSERT_TRUE(counts);
    EXPECT_EQ((*counts)[0].second, kWorkflows);
    auto lease = (*s)->AcquireLease("heir", 60'000);
    ASSERT_TRUE(lease);
    auto claimed = (*s)->ClaimOrphaned(*lease, 1000);
    ASSERT_TRUE(claimed) << claimed.error().ToString();
    EXPECT_EQ(claimed->size(), static_cast<size_t>(kWorkflows));
}

TEST_F(SqliteStoreTest, RefusesASchemaNewerThanItKnows) {
    {
        auto s = Open();
        ASSERT_TRUE(s);
    }
    {
        auto db = sqlite::Db::Open(path(), {});
        ASSERT_TRUE(db) << db.error().ToString();
        ASSERT_TRUE((*db)->Exec("PRAGMA user_version = 99"));
    }
    auto s = Open();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(s.error().message.find("schema version 99"), std::string::npos) << s.error().message;
}

TEST_F(SqliteStoreTest, AFailedTransactionFailsEveryGroupInItAndNothingElse) {
    std::atomic<int> failures_left{0};
    internal::SqliteFaults faults;
    faults.before_commit = [&]() -> Status {
        if (failures_left.load() > 0) {
            failures_left.fetch_sub(1);
            return MakeError(ErrorCode::kUnavailable, "injected: disk I/O error");
        }
        return Ok();
    };
    SqliteOptions o;
    o.path = path();
    auto opened = internal::OpenSqliteStoreWithFaults(o, faults);
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto lease = store.AcquireLease("engine", 60'000);
    ASSERT_TRUE(lease);
    ASSERT_OK(CommitAndWait(store, Create(lease->token, Workflow("existing", "t", 1))));

    std::vector<Status> results(3);
    uint64_t commits_before;
    {
        WriterGate gate(store);
        commits_before = store.Stats().commits;
        failures_left = 1;
        WriteGroup with_event = Create(lease->token, Workflow("new", "t", 1));
        with_event.events.push_back(Event("created", "server", "s1"));
        store.Commit(std::move(with_event), [&](Status st) { results[0] = st; });
        store.Commit(UpdateStep(lease->token, "existing", Step(0, StepState::kRunning), "lost\n"),
                     [&](Status st) { results[1] = st; });
        store.Commit(Create(lease->token, Workflow("existing", "t", 1)), [&](Status st) { results[2] = st; });
    }
    store.Flush();
    for (const Status& st : results) {
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().code, ErrorCode::kUnavailable) << st.error().ToString();
        EXPECT_TRUE(st.error().retryable);
    }
    EXPECT_EQ(store.Stats().commits, commits_before);
    EXPECT_CODE(store.GetWorkflow("new"), ErrorCode::kNotFound);
    auto existing = store.GetWorkflow("existing");
    ASSERT_TRUE(existing);
    EXPECT_EQ(existing->steps[0].state, StepState::kPending);
    EXPECT_EQ(existing->steps[0].log, "");
    auto events = store.ListEvents({});
    ASSERT_TRUE(events) << events.error().ToString();
    EXPECT_TRUE(events->empty());

    // The writer carries on with the next batch.
    ASSERT_OK(CommitAndWait(store, Create(lease->token, Workflow("new", "t", 1))));
    ASSERT_OK(
        CommitAndWait(store, UpdateStep(lease->token, "existing", Step(0, StepState::kRunning), "kept\n")));
    EXPECT_EQ(store.GetWorkflow("existing")->steps[0].log, "kept\n");
}

// The schema of version 2, as released: a database written by an older binary.
constexpr const char* kSchemaV2 = R"sql(
    CREATE TABLE workflows(id TEXT PRIMARY KEY, type TEXT NOT NULL, version INTEGER NOT NULL,
        input TEXT NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, trace TEXT NOT NULL,
        fence INTEGER NOT NULL, owner TEXT NOT NULL, step_count INTEGER NOT NULL);
    CREATE INDEX workflows_by_state ON workflows(state, id);
    CREATE INDEX workflows_by_type ON workflows(type, state, id);
    CREATE INDEX workflows_active ON workflows(fence) WHERE state <= 1;
    CREATE TABLE steps(workflow_id TEXT NOT NULL, idx INTEGER NOT NULL, state INTEGER NOT NULL,
        attempts INTEGER NOT NULL, comp_attempts INTEGER NOT NULL, applied INTEGER NOT NULL,
        next_at_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL,
        output TEXT NOT NULL, error TEXT NOT NULL, log TEXT NOT NULL, fence INTEGER NOT NULL,
        PRIMARY KEY(workflow_id, idx)) WITHOUT ROWID;
    CREATE TABLE leases(owner TEXT PRIMARY KEY, token INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
    CREATE UNIQUE INDEX leases_by_token ON leases(token);
    CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters(name, value) VALUES('lease_token', 0);
    CREATE TABLE definitions(type TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY(type, version));
    ALTER TABLE workflows ADD COLUMN project TEXT NOT NULL DEFAULT '';
    CREATE INDEX workflows_by_project ON workflows(project, id);
    CREATE TABLE resources(kind TEXT NOT NULL, id TEXT NOT NULL, project TEXT NOT NULL,
        body TEXT NOT NULL, PRIMARY KEY(kind, id)) WITHOUT ROWID;
    PRAGMA user_version = 2;
)sql";

TEST_F(SqliteStoreTest, MigratesAVersion2DatabaseKeepingItsData) {
    {
        auto db = sqlite::Db::Open(path(), {});
        ASSERT_TRUE(db) << db.error().ToString();
        std::string sql = kSchemaV2;
        sql += R"sql(
            UPDATE counters SET value = 7 WHERE name = 'lease_token';
            INSERT INTO leases VALUES('old-engine', 7, 0);
            INSERT INTO workflows VALUES('w-old', 'server.create', 1, '{"name":"a"}', 0, '', 0, 10, 11, 0, 0,
                '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 7, 'old-engine', 2, 'p1');
            INSERT INTO steps VALUES('w-old', 0, 4, 1, 0, 1, 0, 12, 13, '{"id":"x"}', '', 'log line', 7);
            INSERT INTO resources VALUES('server', 's1', 'p1', '{"status":"BUILD"}');
            INSERT INTO definitions VALUES('server.create', 1, 'steps: []');
        )sql";
        Status written = (*db)->Exec(sql);
        ASSERT_TRUE(written) << written.error().ToString();
    }
    {
        auto opened = Open();
        ASSERT_TRUE(opened) << opened.error().ToString();
        Store& store = **opened;
        auto w = store.GetWorkflow("w-old");
        ASSERT_TRUE(w) << w.error().ToString();
        EXPECT_EQ(w->type, "server.create");
        EXPECT_EQ(w->project, "p1");
        EXPECT_EQ(w->trace, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        EXPECT_EQ(w->resource_kind, "");
        EXPECT_EQ(w->resource_id, "");
        ASSERT_EQ(w->steps.size(), 2u);
        EXPECT_EQ(w->steps[0].state, StepState::kSucceeded);
        EXPECT_EQ(w->steps[0].output, R"({"id":"x"})");
        EXPECT_EQ(w->steps[0].log, "log line");
        EXPECT_EQ(w->steps[1].state, StepState::kPending);
        auto resources = store.LoadResources();
        ASSERT_TRUE(resources);
        ASSERT_EQ(resources->size(), 1u);
        EXPECT_EQ((*resources)[0].body, R"({"status":"BUILD"})");
        auto defs = store.LoadDefinitions();
        ASSERT_TRUE(defs);
        EXPECT_EQ(defs->size(), 1u);

        // The old work is claimable and goes on under a newer token; the new tables work.
        auto lease = store.AcquireLease("engine", 60'000);
        ASSERT_TRUE(lease);
        EXPECT_EQ(lease->token, 8u);
        auto claimed = store.ClaimOrphaned(*lease, 10);
        ASSERT_TRUE(claimed) << claimed.error().ToString();
        ASSERT_EQ(claimed->size(), 1u);
        WriteGroup g = UpdateStep(lease->token, "w-old", Step(1, StepState::kSucceeded));
        g.events.push_back(Event("step_succeeded", "server", "s1", "p1", "w-old"));
        ASSERT_OK(CommitAndWait(store, std::move(g)));
        auto events = store.ListEvents(Filter("", "server", "s1"));
        ASSERT_TRUE(events) << events.error().ToString();
        EXPECT_EQ(Types(*events), (std::vector<std::string>{"step_succeeded"}));
    }
    auto db = sqlite::Db::Open(path(), {});
    ASSERT_TRUE(db) << db.error().ToString();
    EXPECT_EQ((*db)->QueryInt("PRAGMA user_version"), 7);
}

// A database at version 6 (the schema before the audit log: version 7 only adds its table) opens
// with its data, and the audit log works.
TEST_F(SqliteStoreTest, MigratesAVersion6DatabaseToTheAuditLog) {
    {
        auto opened = Open();
        ASSERT_TRUE(opened) << opened.error().ToString();
        WriteGroup g;
        g.resources.push_back(ResourceWrite{"server", "s1", "p1", R"({"status":"ACTIVE"})"});
        g.events.push_back(Event("created", "server", "s1", "p1"));
        ASSERT_OK(CommitAndWait(**opened, std::move(g)));
    }
    {
        auto db = sqlite::Db::Open(path(), {});
        ASSERT_TRUE(db) << db.error().ToString();
        ASSERT_TRUE((*db)->Exec("DROP TABLE audit; PRAGMA user_version = 6;"));
    }
    auto opened = Open();
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto resources = store.LoadResources();
    ASSERT_TRUE(resources);
    ASSERT_EQ(resources->size(), 1u);
    auto events = store.ListEvents({});
    ASSERT_TRUE(events);
    EXPECT_EQ(Types(*events), (std::vector<std::string>{"created"}));
    WriteGroup g;
    g.audit.push_back(Audit("t1", "p1", "s1", 204, 100));
    ASSERT_OK(CommitAndWait(store, std::move(g)));
    auto audit = store.ListAudit({});
    ASSERT_TRUE(audit) << audit.error().ToString();
    EXPECT_EQ(Times(*audit), (std::vector<int64_t>{100}));
    opened->reset();
    auto db = sqlite::Db::Open(path(), {});
    ASSERT_TRUE(db) << db.error().ToString();
    EXPECT_EQ((*db)->QueryInt("PRAGMA user_version"), 7);
}

TEST_F(SqliteStoreTest, OnCommitReportsEachTransactionOnceDurable) {
    for (bool pipelined : {true, false}) {
        SCOPED_TRACE(pipelined ? "pipelined sync" : "sync inside COMMIT");
        TempDir dir;
        std::mutex mu;
        std::vector<CommitReport> reports;
        std::atomic<int> failures_left{0};
        internal::SqliteFaults faults;
        faults.before_commit = [&]() -> Status {
            if (failures_left.load() > 0) {
                failures_left.fetch_sub(1);
                return MakeError(ErrorCode::kUnavailable, "injected");
            }
            return Ok();
        };
        SqliteOptions o;
        o.path = dir.path() + "/cogs.db";
        o.pipelined_sync = pipelined;
        o.on_commit = [&](const CommitReport& r) {
            std::lock_guard lock(mu);
            reports.push_back(r);
        };
        auto opened = internal::OpenSqliteStoreWithFaults(o, faults);
        ASSERT_TRUE(opened) << opened.error().ToString();
        Store& store = **opened;
        auto lease = store.AcquireLease("engine", 60'000);
        ASSERT_TRUE(lease);
        ASSERT_OK(CommitAndWait(store, Create(lease->token, Workflow("w", "t", 1))));
        std::vector<Status> results(3);
        {
            WriterGate gate(store);  // the three groups below go into one transaction
            store.Commit(UpdateStep(lease->token, "w", Step(0, StepState::kRunning)),
                         [&](Status st) { results[0] = st; });
            store.Commit(UpdateStep(lease->token + 5, "w", Step(0, StepState::kFailed)),
                         [&](Status st) { results[1] = st; });
            store.Commit(Create(lease->token, Workflow("w2", "t", 1)), [&](Status st) { results[2] = st; });
        }
        store.Flush();
        EXPECT_TRUE(results[0]);
        EXPECT_FALSE(results[1]);
        EXPECT_TRUE(results[2]);
        failures_left = 1;
        EXPECT_FALSE(CommitAndWait(store, Create(lease->token, Workflow("w3", "t", 1))));

        std::lock_guard lock(mu);
        // The create, the gate's empty group, the batch of three, the failed transaction.
        ASSERT_EQ(reports.size(), 4u);
        EXPECT_TRUE(reports[0].committed);
        EXPECT_EQ(reports[0].groups, 1u);
        EXPECT_GT(reports[0].seconds, 0.0);
        EXPECT_TRUE(reports[2].committed);
        EXPECT_EQ(reports[2].groups, 3u);
        EXPECT_EQ(reports[2].fenced, 1u);
        EXPECT_FALSE(reports[3].committed);
        EXPECT_EQ(reports[3].groups, 1u);
        EXPECT_EQ(store.Stats().fenced, 1u);
    }
}

TEST_F(SqliteStoreTest, UnopenablePathIsAnError) {
    SqliteOptions o;
    o.path = dir_.path() + "/missing/dir/cogs.db";
    auto s = OpenSqliteStore(o);
    ASSERT_FALSE(s);
    o.path = "";
    EXPECT_CODE(OpenSqliteStore(o), ErrorCode::kInvalidArgument);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// CPU seconds used so far by this process's thread named `name` (0 if there is none).
double ThreadCpuSeconds(const std::string& name) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string line;
        if (!std::getline(comm, line) || line != name) {
            continue;
        }
        std::ifstream stat(task.path() / "stat");
        std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
        std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
        std::string field;
        unsigned long long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && fields >> field; ++i) {
            if (i == 14) {
                utime = std::stoull(field);
            } else if (i == 15) {
                stime = std::stoull(field);
            }
        }
        return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    }
    return 0;
}

// A measurement, not a pass/fail check: step updates from several producers that each keep a
// bounded number of groups in flight (as the engine does), one step update per group. Besides the
// wall-clock rate it prints the rate per CPU second of the writer thread, which does not depend on
// what else the machine is running.
TEST_F(SqliteStoreTest, StepUpdateThroughput) {
    for (bool full : {true, false}) {
        TempDir dir;
        SqliteOptions o;
        o.path = dir.path() + "/cogs.db";
        o.synchronous_full = full;
        auto s = OpenSqliteStore(o);
        ASSERT_TRUE(s);
        Store& store = **s;
        auto lease = store.AcquireLease("bench", 600'000);
        ASSERT_TRUE(lease);
        constexpr int kWorkflows = 1000;
        constexpr int kSteps = 10;
        std::vector<std::string> ids;
        for (int i = 0; i < kWorkflows; ++i) {
            ids.push_back("w" + std::to_string(i));
            store.Commit(Create(lease->token, Workflow(ids.back(), "t", kSteps)), nullptr);
        }
        store.Flush();

        constexpr int kProducers = 4;
        constexpr int kWindow = 128;
        constexpr int kPerProducer = kSanitized ? 5'000 : 50'000;
        // Outside the producers: the last callbacks may still be inside release() when a producer
        // has acquired its whole window back.
        std::vector<std::unique_ptr<std::counting_semaphore<kWindow>>> windows;
        for (int p = 0; p < kProducers; ++p) {
            windows.push_back(std::make_unique<std::counting_semaphore<kWindow>>(kWindow));
        }
        StoreStats before = store.Stats();
        double cpu_before = ThreadCpuSeconds("cogs-store");
        std::atomic<int> failures{0};
        auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p) {
            producers.emplace_back([&, p] {
                auto& window = *windows[static_cast<size_t>(p)];
                for (int i = 0; i < kPerProducer; ++i) {
                    window.acquire();
                    StepRecord step = Step((i + p) % kSteps, StepState::kRunning);
                    step.attempts = i;
                    step.started_ms = i;
                    const std::string& id = ids[static_cast<size_t>((i * 7 + p) % kWorkflows)];
                    store.Commit(UpdateStep(lease->token, id, step), [&](Status st) {
                        if (!st) {
                            failures.fetch_add(1);
                        }
                        window.release();
                    });
                }
                for (int i = 0; i < kWindow; ++i) {
                    window.acquire();  // every group of this producer is committed
                }
            });
        }
        for (auto& t : producers) {
            t.join();
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        double cpu = ThreadCpuSeconds("cogs-store") - cpu_before;
        store.Flush();
        StoreStats after = store.Stats();
        EXPECT_EQ(failures.load(), 0);
        double transitions = static_cast<double>(after.transitions - before.transitions);
        double commits = static_cast<double>(after.commits - before.commits);
        std::printf(
            "[ figures  ] synchronous=%s: %.0f step transitions/s, %.1f per commit, %.0f commits/s, "
            "%.0f%% of the time in transactions; %.0f transitions per writer CPU second\n",
            full ? "FULL" : "NORMAL", transitions / seconds, transitions / commits, commits / seconds,
            100.0 * (after.commit_seconds - before.commit_seconds) / seconds,
            cpu > 0 ? transitions / cpu : 0.0);
        RecordProperty(full ? "transitions_per_second_full" : "transitions_per_second_normal",
                       std::to_string(static_cast<int64_t>(transitions / seconds)));
    }
}

}  // namespace
}  // namespace cogs::store
