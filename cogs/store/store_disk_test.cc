// The store on a full disk (store.h, Store::Writable): a tmpfs of a few MiB that the test fills
// with a file, then frees. Needs root to mount (CI runs as root); skipped otherwise.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cogs/store/store.h"
#include "test/support/small_disk.h"

namespace cogs::store {
namespace {

using cogs::testing::SmallDisk;

WorkflowRecord Workflow(const std::string& id) {
    WorkflowRecord w;
    w.id = id;
    w.type = "t";
    w.version = 1;
    w.input = R"({"name":")" + id + R"("})";
    w.state = WorkflowState::kRunning;
    w.created_ms = w.updated_ms = 1000;
    w.steps.resize(2);
    w.steps[1].index = 1;
    return w;
}

WriteGroup Create(uint64_t fence, const std::string& id) {
    WriteGroup g;
    g.fence = fence;
    g.creates.push_back(Workflow(id));
    return g;
}

// A step update with a log large enough that no WAL page already allocated can take it.
WriteGroup UpdateStep(uint64_t fence, const std::string& id, int index, StepState state) {
    WriteGroup g;
    g.fence = fence;
    StepRecord s;
    s.index = index;
    s.state = state;
    g.steps.push_back(StepUpdate{id, s, std::string(64 << 10, 'l') + "\n"});
    return g;
}

class StoreDiskTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (std::string why = disk_.Mount(8); !why.empty()) {
            GTEST_SKIP() << why;
        }
    }

    Result<std::unique_ptr<Store>> Open(const std::function<void(SqliteOptions&)>& tweak = {}) {
        SqliteOptions o;
        o.path = disk_ / "store.db";
        o.on_writable = [this](bool writable, const Error& why) {
            std::lock_guard lock(mu_);
            episodes_.push_back({writable, why.code});
        };
        if (tweak) {
            tweak(o);
        }
        return OpenSqliteStore(o);
    }

    // Commits `g`; its status once the callback ran, or nothing (held) when the store answers it
    // neither before `Flush` returns.
    static std::shared_ptr<std::promise<Status>> Start(Store& store, WriteGroup g) {
        auto p = std::make_shared<std::promise<Status>>();
        store.Commit(std::move(g), [p](Status st) { p->set_value(std::move(st)); });
        return p;
    }

    std::vector<std::pair<bool, ErrorCode>> Episodes() {
        std::lock_guard lock(mu_);
        return episodes_;
    }

    SmallDisk disk_;
    std::mutex mu_;
    std::vector<std::pair<bool, ErrorCode>> episodes_;
};

TEST_F(StoreDiskTest, AFullDiskRefusesCreatesHoldsTheRestAndResumesInOrder) {
    auto opened = Open();
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto lease = store.AcquireLease("me", 60000);
    ASSERT_TRUE(lease);
    {
        auto created = Start(store, Create(lease->token, "before"));
        ASSERT_TRUE(created->get_future().get());
    }
    ASSERT_GT(disk_.Fill(), 0);

    // The first write that finds no space ends the episode's first transaction: the update is
    // held, the create refused; from then on the same without trying.
    auto held1 = Start(store, UpdateStep(lease->token, "before", 0, StepState::kRunning));
    auto refused = Start(store, Create(lease->token, "during"));
    auto held2 = Start(store, UpdateStep(lease->token, "before", 0, StepState::kSucceeded));
    auto f1 = held1->get_future();
    auto f2 = held2->get_future();
    auto fr = refused->get_future();
    Status refusal = fr.get();
    ASSERT_FALSE(refusal);
    EXPECT_EQ(refusal.error().code, ErrorCode::kNoSpace) << refusal.error().ToString();
    EXPECT_FALSE(store.Writable());
    store.Flush();
    EXPECT_EQ(f1.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
        << "a held group was answered";
    EXPECT_EQ(f2.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
    EXPECT_EQ(Episodes(), (std::vector<std::pair<bool, ErrorCode>>{{false, ErrorCode::kNoSpace}}))
        << "one report per episode";

    // Reads go on; blocking writes fail at once; nothing was half-written.
    auto before = store.GetWorkflow("before");
    ASSERT_TRUE(before) << before.error().ToString();
    EXPECT_EQ(before->steps[0].state, StepState::kPending);
    EXPECT_EQ(store.GetWorkflow("during").error().code, ErrorCode::kNotFound);
    EXPECT_EQ(store.AcquireLease("other", 1000).error().code, ErrorCode::kNoSpace);
    EXPECT_EQ(store.ResumeWrites().error().code, ErrorCode::kNoSpace) << "still full";
    EXPECT_GE(store.Stats().no_space, 3u);

    disk_.Free();
    ASSERT_TRUE(store.ResumeWrites());
    EXPECT_TRUE(store.Writable());
    ASSERT_TRUE(f1.get());
    ASSERT_TRUE(f2.get());
    before = store.GetWorkflow("before");
    ASSERT_TRUE(before);
    EXPECT_EQ(before->steps[0].state, StepState::kSucceeded) << "the held groups applied in their order";
    EXPECT_EQ(before->steps[0].log.size(), 2 * ((64 << 10) + 1)) << "each held log appended once";
    auto after = Start(store, Create(lease->token, "after"));
    EXPECT_TRUE(after->get_future().get());
    EXPECT_EQ(Episodes(), (std::vector<std::pair<bool, ErrorCode>>{{false, ErrorCode::kNoSpace},
                                                                   {true, ErrorCode::kNoSpace}}));
}

// The held groups are bounded: up to max_held_groups they wait (the gauge's report says how many);
// one more ends the process rather than let memory grow for as long as the disk stays full.
TEST_F(StoreDiskTest, HeldGroupsAreBoundedAndOneMoreEndsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");  // the store runs threads
    std::atomic<size_t> held{0};
    auto opened = Open([&held](SqliteOptions& o) {
        o.max_held_groups = 2;
        o.on_commit = [&held](const CommitReport& r) { held = r.held; };
    });
    ASSERT_TRUE(opened) << opened.error().ToString();
    Store& store = **opened;
    auto lease = store.AcquireLease("me", 60000);
    ASSERT_TRUE(lease);
    ASSERT_TRUE(Start(store, Create(lease->token, "wf"))->get_future().get());
    ASSERT_GT(disk_.Fill(), 0);

    auto first = Start(store, UpdateStep(lease->token, "wf", 0, StepState::kRunning));
    auto second = Start(store, UpdateStep(lease->token, "wf", 0, StepState::kSucceeded));
    store.Flush();
    EXPECT_FALSE(store.Writable());
    EXPECT_EQ(held.load(), 2u) << "both wait, within the bound";
    EXPECT_DEATH(
        {
            (void)Start(store, UpdateStep(lease->token, "wf", 0, StepState::kSucceeded));
            store.Flush();
        },
        "max_held_groups");

    // Below the bound nothing was lost: both apply once space returns.
    disk_.Free();
    ASSERT_TRUE(store.ResumeWrites());
    ASSERT_TRUE(first->get_future().get());
    ASSERT_TRUE(second->get_future().get());
    EXPECT_EQ(held.load(), 0u);
    EXPECT_EQ(store.GetWorkflow("wf")->steps[0].state, StepState::kSucceeded);
}

// A store closed cleanly leaves no WAL and no shared-memory index: opening it on a full disk needs
// room for the index (the reserve gives it), then serves reads and waits for space to write.
TEST_F(StoreDiskTest, OpensReadOnlyOnAFullDiskAndBecomesWritableWhenSpaceReturns) {
    {
        auto opened = Open();
        ASSERT_TRUE(opened) << opened.error().ToString();
        auto lease = (*opened)->AcquireLease("me", 60000);
        ASSERT_TRUE(lease);
        auto created = Start(**opened, Create(lease->token, "w"));
        ASSERT_TRUE(created->get_future().get());
    }
    ASSERT_GT(disk_.Fill(), 0);
    auto opened = Open();
    ASSERT_TRUE(opened) << "a full disk must not stop the store from opening: " << opened.error().ToString();
    Store& store = **opened;
    EXPECT_FALSE(store.Writable());
    auto w = store.GetWorkflow("w");
    ASSERT_TRUE(w) << w.error().ToString();
    EXPECT_EQ(store.AcquireLease("me", 60000).error().code, ErrorCode::kNoSpace);

    disk_.Free();
    ASSERT_TRUE(store.ResumeWrites());
    auto lease = store.AcquireLease("me", 60000);
    ASSERT_TRUE(lease) << lease.error().ToString();
    auto claimed = store.ClaimOrphaned(*lease, 10);
    ASSERT_TRUE(claimed);
    EXPECT_EQ(claimed->size(), 1u) << "the earlier owner's lease was expired once writable";
    auto updated = Start(store, UpdateStep(lease->token, "w", 0, StepState::kRunning));
    EXPECT_TRUE(updated->get_future().get());
}

}  // namespace
}  // namespace cogs::store
