#include "cogs/cloud/health/liveness.h"

#include <gtest/gtest.h>

namespace cogs::cloud::health {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const SteadyTime t0 = SteadyTime{} + std::chrono::hours(1);

LivenessOptions Options() {
    LivenessOptions o;
    o.ttl = seconds(3);
    o.fence_window = seconds(1);
    o.restart_grace = seconds(0);
    o.max_down_fraction = 0.5;
    return o;
}

TEST(LivenessTest, UpSuspectDownExactlyAtTheirDeadlines) {
    Liveness l(Options(), t0);
    l.Renewed("a", t0);
    EXPECT_TRUE(l.Tick(t0 + milliseconds(2999)).empty());
    EXPECT_EQ(l.NextDeadline(), t0 + seconds(3));
    auto c = l.Tick(t0 + seconds(3));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].host, "a");
    EXPECT_EQ(c[0].from, HostState::kUp);
    EXPECT_EQ(c[0].to, HostState::kSuspect);
    EXPECT_EQ(c[0].last_renewal, t0);
    EXPECT_EQ(l.NextDeadline(), t0 + seconds(4));
    EXPECT_TRUE(l.Tick(t0 + milliseconds(3999)).empty());
    c = l.Tick(t0 + seconds(4));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].to, HostState::kDown);
    EXPECT_EQ(l.StateOf("a"), HostState::kDown);
    EXPECT_FALSE(l.NextDeadline().has_value());
    EXPECT_TRUE(l.Tick(t0 + seconds(100)).empty()) << "a down host stays down without a renewal";
}

TEST(LivenessTest, ALateTickGoesStraightToDownOnce) {
    Liveness l(Options(), t0);
    l.Renewed("a", t0);
    auto c = l.Tick(t0 + seconds(10));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].from, HostState::kUp);
    EXPECT_EQ(c[0].to, HostState::kDown);
}

TEST(LivenessTest, RenewalBringsItBackAndRestartsTheLease) {
    Liveness l(Options(), t0);
    l.Renewed("a", t0);
    l.Tick(t0 + seconds(5));
    auto back = l.Renewed("a", t0 + seconds(6));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->from, HostState::kDown);
    EXPECT_EQ(back->to, HostState::kUp);
    EXPECT_EQ(back->last_renewal, t0);
    EXPECT_FALSE(l.Renewed("a", t0 + seconds(7)).has_value()) << "an up host renewing is no change";
    EXPECT_TRUE(l.Tick(t0 + milliseconds(9999)).empty());
    EXPECT_EQ(l.Tick(t0 + seconds(10)).size(), 1u);
}

TEST(LivenessTest, NoHostIsDownDuringTheRestartGrace) {
    LivenessOptions o = Options();
    o.restart_grace = seconds(10);
    Liveness l(o, t0);
    l.Renewed("a", t0);
    auto c = l.Tick(t0 + seconds(5));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].to, HostState::kSuspect) << "lapsed, but the control plane just started";
    EXPECT_EQ(l.NextDeadline(), t0 + seconds(10));
    EXPECT_TRUE(l.Tick(t0 + milliseconds(9999)).empty());
    c = l.Tick(t0 + seconds(10));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].to, HostState::kDown);
}

TEST(LivenessTest, MostHostsLapsedAtOncePausesEvacuation) {
    Liveness l(Options(), t0);
    for (const char* h : {"a", "b", "c", "d"})
        l.Renewed(h, t0);
    l.Renewed("c", t0 + seconds(4));
    l.Renewed("d", t0 + seconds(4));
    l.Tick(t0 + seconds(5));
    EXPECT_EQ(l.Count(HostState::kDown), 2u);
    EXPECT_FALSE(l.EvacuationPaused(t0 + seconds(5))) << "half down is not most";
    l.Tick(t0 + seconds(7) + milliseconds(1));    // c lapses too
    EXPECT_EQ(l.Count(HostState::kSuspect), 2u);  // c and d
    EXPECT_TRUE(l.EvacuationPaused(t0 + seconds(7) + milliseconds(1)));
    l.Renewed("c", t0 + seconds(8));
    l.Renewed("d", t0 + seconds(8));
    EXPECT_FALSE(l.EvacuationPaused(t0 + seconds(8)));
}

TEST(LivenessTest, AHostThatMissedARenewalCountsTowardsTheMassFailureGuard) {
    // One outage takes a and b, whose last renewals were 2 s apart. When a is suspect, b is not
    // yet, but it is late (no renewal for 1.9 s, more than half the TTL): 2 of 3 lapsing.
    Liveness l(Options(), t0);
    l.Renewed("a", t0);
    l.Renewed("b", t0 + milliseconds(2000));
    l.Renewed("c", t0 + seconds(3) + milliseconds(900));
    const SteadyTime now = t0 + seconds(3) + milliseconds(900);
    l.Tick(now);
    EXPECT_EQ(l.StateOf("a"), HostState::kSuspect);
    EXPECT_EQ(l.StateOf("b"), HostState::kUp);
    EXPECT_TRUE(l.EvacuationPaused(now));
    // b renews: only a is lapsing, 1 of 3.
    l.Renewed("b", now);
    EXPECT_FALSE(l.EvacuationPaused(now));
    // A renewal 1.4 s ago is on time (agents renew at least every TTL / 3 = 1 s, plus the trip).
    l.Renewed("b", now - milliseconds(1400));
    EXPECT_FALSE(l.EvacuationPaused(now));
}

TEST(LivenessTest, UnknownHostsAreDownAndForgottenOnesGone) {
    Liveness l(Options(), t0);
    EXPECT_EQ(l.StateOf("x"), HostState::kDown);
    l.Renewed("x", t0);
    EXPECT_EQ(l.StateOf("x"), HostState::kUp);
    l.Forget("x");
    EXPECT_FALSE(l.Known("x"));
    EXPECT_EQ(ToString(HostState::kSuspect), "suspect");
}

// The TTL grows with the number of hosts (host_monitor.h); a lease is the one its last renewal
// granted, so that a TTL that shrinks never cuts short a lease an agent already holds.
TEST(LivenessTest, EachHostHoldsTheLeaseItsLastRenewalGranted) {
    Liveness l(Options(), t0);
    l.Renewed("long", t0, seconds(15));
    l.Renewed("short", t0);  // the options' 3 s
    auto c = l.Tick(t0 + seconds(3));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].host, "short");
    EXPECT_EQ(l.StateOf("long"), HostState::kUp);
    EXPECT_EQ(*l.NextDeadline(), t0 + seconds(4)) << "short's fencing deadline comes first";
    // long renews at 10 s with a TTL that shrank to 5 s: from then on its lease is 5 s.
    l.Renewed("long", t0 + seconds(10), seconds(5));
    EXPECT_EQ(l.Tick(t0 + seconds(4)).size(), 1u) << "short is down";
    EXPECT_TRUE(l.Tick(t0 + milliseconds(14999)).empty());
    EXPECT_EQ(l.StateOf("long"), HostState::kUp);
    l.Tick(t0 + seconds(15));
    EXPECT_EQ(l.StateOf("long"), HostState::kSuspect);
    // Late (half its own TTL without a renewal) counts per host for the mass-failure guard.
    Liveness m(Options(), t0);
    m.Renewed("a", t0, seconds(20));
    m.Renewed("b", t0, seconds(20));
    EXPECT_FALSE(m.EvacuationPaused(t0 + seconds(9))) << "9 s is not late for a 20 s lease";
    EXPECT_TRUE(m.EvacuationPaused(t0 + seconds(10)));
}

}  // namespace
}  // namespace cogs::cloud::health
