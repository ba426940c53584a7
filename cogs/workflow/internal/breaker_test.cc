#include "cogs/workflow/internal/breaker.h"

#include <gtest/gtest.h>

namespace cogs::workflow::internal {
namespace {

using namespace std::chrono_literals;
using State = Breaker::State;
using Change = Breaker::Change;

Breaker::Config Config(int threshold = 3, Duration open_for = 100ms, Duration max_open_for = 350ms,
                       int probes = 1) {
    return {threshold, open_for, max_open_for, probes};
}

// Sends a call and answers it at once.
Change Call(Breaker& b, bool failed, SteadyTime now) {
    EXPECT_TRUE(b.CanSend());
    const bool probe = b.OnSend();
    return b.OnAnswer(probe, failed, now);
}

TEST(BreakerTest, OpensAfterThresholdConsecutiveFailures) {
    Breaker b(Config());
    const SteadyTime t0{};
    EXPECT_EQ(Call(b, true, t0), Change::kNone);
    EXPECT_EQ(Call(b, true, t0), Change::kNone);
    EXPECT_EQ(b.consecutive_failures(), 2);
    EXPECT_EQ(Call(b, true, t0 + 5ms), Change::kOpened);
    EXPECT_EQ(b.state(), State::kOpen);
    EXPECT_FALSE(b.CanSend());
    EXPECT_EQ(b.open_until(), t0 + 105ms);
    EXPECT_EQ(b.epoch(), 1u);
}

TEST(BreakerTest, ASuccessResetsTheCount) {
    Breaker b(Config());
    const SteadyTime t0{};
    Call(b, true, t0);
    Call(b, true, t0);
    Call(b, false, t0);  // the endpoint answered (even a definitive refusal is an answer)
    EXPECT_EQ(b.consecutive_failures(), 0);
    Call(b, true, t0);
    Call(b, true, t0);
    EXPECT_EQ(b.state(), State::kClosed);
}

TEST(BreakerTest, HalfOpensOnlyWhenDueAndLetsOneProbeThrough) {
    Breaker b(Config(1));
    const SteadyTime t0{};
    ASSERT_EQ(Call(b, true, t0), Change::kOpened);
    EXPECT_FALSE(b.HalfOpenIfDue(t0 + 99ms));
    EXPECT_EQ(b.state(), State::kOpen);
    EXPECT_TRUE(b.HalfOpenIfDue(t0 + 100ms));
    EXPECT_EQ(b.state(), State::kHalfOpen);
    EXPECT_FALSE(b.HalfOpenIfDue(t0 + 100ms)) << "only from open";
    ASSERT_TRUE(b.CanSend());
    EXPECT_TRUE(b.OnSend()) << "a call sent half-open is a probe";
    EXPECT_FALSE(b.CanSend()) << "one probe at a time";
    EXPECT_EQ(b.OnAnswer(true, false, t0 + 110ms), Change::kClosed);
    EXPECT_EQ(b.state(), State::kClosed);
    EXPECT_EQ(b.probes_out(), 0);
    EXPECT_FALSE(b.OnSend()) << "closed: not a probe";
}

TEST(BreakerTest, AFailedProbeReopensForLongerUpToTheMaximum) {
    Breaker b(Config(1));
    SteadyTime now{};
    ASSERT_EQ(Call(b, true, now), Change::kOpened);
    EXPECT_EQ(b.open_for(), 100ms);
    for (Duration expected : {200ms, 350ms, 350ms}) {
        now = b.open_until();
        ASSERT_TRUE(b.HalfOpenIfDue(now));
        EXPECT_EQ(Call(b, true, now), Change::kOpened);
        EXPECT_EQ(b.open_for(), expected);
        EXPECT_EQ(b.open_until(), now + expected);
    }
    // A success closes it and the next opening is short again.
    now = b.open_until();
    ASSERT_TRUE(b.HalfOpenIfDue(now));
    EXPECT_EQ(Call(b, false, now), Change::kClosed);
    EXPECT_EQ(Call(b, true, now), Change::kOpened);
    EXPECT_EQ(b.open_for(), 100ms);
}

TEST(BreakerTest, LateAnswersOfCallsSentBeforeItOpenedAreIgnored) {
    Breaker b(Config(2));
    const SteadyTime t0{};
    // Three calls out while closed.
    EXPECT_FALSE(b.OnSend());
    EXPECT_FALSE(b.OnSend());
    EXPECT_FALSE(b.OnSend());
    EXPECT_EQ(b.OnAnswer(false, true, t0), Change::kNone);
    EXPECT_EQ(b.OnAnswer(false, true, t0), Change::kOpened);
    EXPECT_EQ(b.OnAnswer(false, false, t0), Change::kNone) << "a late success does not close it";
    EXPECT_EQ(b.state(), State::kOpen);
    ASSERT_TRUE(b.HalfOpenIfDue(b.open_until()));
    EXPECT_EQ(b.OnAnswer(false, false, t0), Change::kNone) << "only a probe decides half-open";
    EXPECT_EQ(b.state(), State::kHalfOpen);
}

TEST(BreakerTest, SeveralProbesTheFirstAnswerDecides) {
    Breaker b(Config(1, 100ms, 1s, 2));
    const SteadyTime t0{};
    ASSERT_EQ(Call(b, true, t0), Change::kOpened);
    ASSERT_TRUE(b.HalfOpenIfDue(b.open_until()));
    EXPECT_TRUE(b.OnSend());
    ASSERT_TRUE(b.CanSend());
    EXPECT_TRUE(b.OnSend());
    EXPECT_FALSE(b.CanSend());
    EXPECT_EQ(b.OnAnswer(true, true, t0 + 200ms), Change::kOpened);
    EXPECT_EQ(b.OnAnswer(true, false, t0 + 201ms), Change::kNone) << "decided already";
    EXPECT_EQ(b.state(), State::kOpen);
    EXPECT_EQ(b.probes_out(), 0);
}

TEST(BreakerTest, ADroppedProbeFreesItsPlace) {
    Breaker b(Config(1));
    ASSERT_EQ(Call(b, true, SteadyTime{}), Change::kOpened);
    ASSERT_TRUE(b.HalfOpenIfDue(b.open_until()));
    EXPECT_TRUE(b.OnSend());
    EXPECT_FALSE(b.CanSend());
    b.ProbeDropped();
    EXPECT_TRUE(b.CanSend());
    EXPECT_EQ(b.state(), State::kHalfOpen);
}

TEST(BreakerTest, NonsenseConfigIsRaisedToTheMinimum) {
    Breaker b(Config(0, 0ms, 0ms, 0));
    EXPECT_EQ(Call(b, true, SteadyTime{}), Change::kOpened) << "threshold 1";
    EXPECT_EQ(b.open_for(), 1ms);
    ASSERT_TRUE(b.HalfOpenIfDue(b.open_until()));
    EXPECT_TRUE(b.CanSend()) << "one probe";
}

}  // namespace
}  // namespace cogs::workflow::internal
