// The leader election of replicas on one PostgreSQL database (leadership.h), and the fencing of a
// deposed leader's store: two candidates, one leader; a leader that stops gives its lease up; a
// leader that was paused (its lease expired, another replica took over) writes nothing when it
// resumes, and learns it was deposed.
#include "cogs/store/leadership.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "cogs/pg/conn.h"
#include "cogs/store/store.h"
#include "test/support/private_pg.h"
#include "test/support/temp_dir.h"

namespace cogs::store {
namespace {

using namespace std::chrono_literals;

class LeadershipTest : public ::testing::Test {
protected:
    ElectorOptions Options(const std::string& id) {
        ElectorOptions o;
        o.conninfo = conninfo_;
        o.replica_id = id;
        o.address = "http://" + id + ":8780";
        o.version = "test";
        o.ttl = 2s;
        o.renew_every = 50ms;
        o.statement_timeout = 20s;
        return o;
    }
    std::unique_ptr<Elector> MustStart(ElectorOptions o) {
        auto e = Elector::Start(std::move(o));
        EXPECT_TRUE(e) << e.error().ToString();
        return e ? std::move(*e) : nullptr;
    }
    // Waits (bounded by a generous deadline, not by the machine's speed) until `pred` holds.
    template <typename Pred>
    static bool Eventually(Pred pred, Duration limit = 60s) {
        const auto end = SteadyClock::now() + limit;
        while (SteadyClock::now() < end) {
            if (pred()) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return pred();
    }
    // What a pause does to a leader, seen from the database: its lease runs out.
    void ExpireTheLease() {
        auto admin = pg::Conn::Connect(conninfo_, 20s);
        ASSERT_TRUE(admin) << admin.error().ToString();
        ASSERT_TRUE((*admin)->Exec("UPDATE leader SET expires_ms = 0", SteadyClock::now() + 20s));
    }

    testing::TempDir dir_;
    std::string conninfo_ = testing::PrivatePgDatabase(dir_.path());
};

TEST_F(LeadershipTest, OfTwoCandidatesOneLeadsAndTheOtherKnowsWhere) {
    std::atomic<int> elected{0};
    ElectorOptions oa = Options("a");
    oa.on_elected = [&](uint64_t) { elected.fetch_add(1); };
    auto a = MustStart(oa);
    ElectorOptions ob = Options("b");
    ob.on_elected = [&](uint64_t) { elected.fetch_add(1); };
    auto b = MustStart(ob);
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(a->IsLeader());
    EXPECT_TRUE(a->LeaseValid());
    const uint64_t rounds = b->rounds();
    ASSERT_TRUE(Eventually([&] { return b->rounds() > rounds + 5; }));
    EXPECT_FALSE(b->IsLeader());
    EXPECT_FALSE(b->LeaseValid());
    EXPECT_EQ(elected.load(), 1);
    auto leader = b->Leader();
    ASSERT_TRUE(leader);
    EXPECT_EQ(leader->id, "a");
    EXPECT_EQ(leader->address, "http://a:8780");
    EXPECT_EQ(leader->token, a->token());
    EXPECT_TRUE(leader->alive);

    auto replicas = b->Replicas();
    ASSERT_TRUE(replicas) << replicas.error().ToString();
    ASSERT_EQ(replicas->size(), 2u);
    EXPECT_EQ((*replicas)[0].id, "a");
    EXPECT_TRUE((*replicas)[0].leader);
    EXPECT_EQ((*replicas)[1].id, "b");
    EXPECT_FALSE((*replicas)[1].leader);
    EXPECT_LT((*replicas)[1].age_ms, 60'000);
}

TEST_F(LeadershipTest, ALeaderThatStopsGivesItsLeaseUpAndAFollowerTakesOverWithAGreaterToken) {
    auto a = MustStart(Options("a"));
    auto b = MustStart(Options("b"));
    ASSERT_TRUE(a && b && a->IsLeader());
    const uint64_t first = a->token();
    a.reset();
    // Given up, not expired: the follower's next round takes it (well before the 2 s TTL would
    // matter on a quiet machine; the bound here is only against a hang).
    ASSERT_TRUE(Eventually([&] { return b->IsLeader(); }));
    EXPECT_GT(b->token(), first);
    EXPECT_EQ(b->Leader()->id, "b");
}

TEST_F(LeadershipTest, APausedLeaderWritesNothingAfterAnotherTookOverAndLearnsItWasDeposed) {
    std::promise<std::string> deposed;
    ElectorOptions oa = Options("a");
    oa.on_deposed = [&](const std::string& why) { deposed.set_value(why); };
    oa.renew_every = 600s;  // paused: it renews only when poked
    auto a = MustStart(oa);
    ASSERT_TRUE(a && a->IsLeader());

    std::atomic<int> store_deposed{0};
    PgOptions so;
    so.conninfo = conninfo_;
    so.leader_token = a->token();
    so.on_deposed = [&](const Error&) { store_deposed.fetch_add(1); };
    auto store = OpenPgStore(so);
    ASSERT_TRUE(store) << store.error().ToString();
    auto lease = (*store)->AcquireLease("engine-a", 60'000);
    ASSERT_TRUE(lease) << lease.error().ToString();
    WriteGroup before;
    before.resources.push_back({"server", "s1", "p", R"({"name":"before"})"});
    std::promise<Status> ok;
    (*store)->Commit(std::move(before), [&](Status st) { ok.set_value(st); });
    ASSERT_TRUE(ok.get_future().get());

    // "a" is paused: its lease runs out and "b" takes over.
    ExpireTheLease();
    auto b = MustStart(Options("b"));
    ASSERT_TRUE(b && b->IsLeader());
    EXPECT_GT(b->token(), a->token());

    // "a" resumes and writes: refused whole, nothing of it lands.
    WriteGroup after;
    after.resources.push_back({"server", "s1", "p", R"({"name":"after"})"});
    after.resources.push_back({"server", "s2", "p", R"({"name":"new"})"});
    std::promise<Status> fenced;
    (*store)->Commit(std::move(after), [&](Status st) { fenced.set_value(st); });
    Status st = fenced.get_future().get();
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::kFenced) << st.error().ToString();
    EXPECT_EQ(store_deposed.load(), 1);
    auto lease_write = (*store)->AcquireLease("engine-a", 60'000);
    ASSERT_FALSE(lease_write);
    EXPECT_EQ(lease_write.error().code, ErrorCode::kFenced);
    auto resources = (*store)->LoadResources();
    ASSERT_TRUE(resources) << resources.error().ToString();
    ASSERT_EQ(resources->size(), 1u);
    EXPECT_EQ((*resources)[0].body, R"({"name":"before"})");

    // Its elector finds out at its next renewal.
    a->Poke();
    auto why = deposed.get_future();
    ASSERT_EQ(why.wait_for(60s), std::future_status::ready);
    EXPECT_NE(why.get().find("superseded"), std::string::npos);
    EXPECT_FALSE(a->IsLeader());
    EXPECT_TRUE(b->IsLeader());
}

}  // namespace
}  // namespace cogs::store
