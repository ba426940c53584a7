#include <climits>
#include <random>

#include <gtest/gtest.h>

#include "cogs/workflow/definition.h"

namespace cogs::workflow {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

RetryPolicy Policy() {
    RetryPolicy p;
    p.max_attempts = 5;
    p.initial_backoff = milliseconds(50);
    p.max_backoff = seconds(1);
    p.multiplier = 2.0;
    return p;
}

TEST(RetryPolicyTest, CapGrowsExponentiallyThenIsCapped) {
    RetryPolicy p = Policy();
    EXPECT_EQ(p.BackoffCap(1), Duration(0));  // no wait before the first attempt
    EXPECT_EQ(p.BackoffCap(0), Duration(0));
    EXPECT_EQ(p.BackoffCap(2), milliseconds(50));
    EXPECT_EQ(p.BackoffCap(3), milliseconds(100));
    EXPECT_EQ(p.BackoffCap(4), milliseconds(200));
    EXPECT_EQ(p.BackoffCap(5), milliseconds(400));
    EXPECT_EQ(p.BackoffCap(6), milliseconds(800));
    EXPECT_EQ(p.BackoffCap(7), seconds(1));  // 1600ms, capped
    EXPECT_EQ(p.BackoffCap(100), seconds(1));
    EXPECT_EQ(p.BackoffCap(INT_MAX), seconds(1));  // 2^huge is inf: still the cap, no overflow

    p.multiplier = 1.0;
    EXPECT_EQ(p.BackoffCap(2), milliseconds(50));
    EXPECT_EQ(p.BackoffCap(50), milliseconds(50));

    p.multiplier = 1.5;
    EXPECT_EQ(p.BackoffCap(4), milliseconds(112) + std::chrono::microseconds(500));
}

TEST(RetryPolicyTest, CapSaturatesAtTheLargestDurations) {
    RetryPolicy p = Policy();
    p.max_backoff = Duration::max();
    p.multiplier = 100;
    EXPECT_EQ(p.BackoffCap(INT_MAX), Duration::max());
    // In double arithmetic the cap is 2^63, one past the largest Duration; the wait must stay in
    // range (UBSan checks the conversion).
    EXPECT_GE(p.Backoff(INT_MAX, 0.9999999999999999), Duration::max() - Duration(2048));
    EXPECT_GT(p.Backoff(INT_MAX, 0.999), Duration::max() / 1000 * 998);
    EXPECT_NEAR(static_cast<double>(p.Backoff(INT_MAX, 0.5).count()),
                static_cast<double>(Duration::max().count()) / 2, 1e3);
}

TEST(RetryPolicyTest, UnvalidatedPolicyStaysInRange) {
    RetryPolicy p = Policy();
    p.initial_backoff = milliseconds(-5);
    EXPECT_EQ(p.BackoffCap(3), Duration(0));
    p = Policy();
    p.multiplier = 0.1;  // treated as 1: the wait never shrinks
    EXPECT_EQ(p.BackoffCap(5), milliseconds(50));
    p = Policy();
    p.max_backoff = milliseconds(-1);
    EXPECT_EQ(p.BackoffCap(3), Duration(0));
}

TEST(RetryPolicyTest, JitterStaysWithinTheCap) {
    RetryPolicy p = Policy();
    EXPECT_EQ(p.Backoff(3, 0.0), Duration(0));
    EXPECT_EQ(p.Backoff(3, 0.5), milliseconds(50));
    EXPECT_LT(p.Backoff(3, 0.9999999), milliseconds(100));
    EXPECT_EQ(p.Backoff(3, 1.0), milliseconds(100));  // out of contract: clamped
    EXPECT_EQ(p.Backoff(3, -1.0), Duration(0));       // out of contract: clamped
    EXPECT_EQ(p.Backoff(1, 0.7), Duration(0));

    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (int attempt : {2, 4, 7}) {
        const Duration cap = p.BackoffCap(attempt);
        const int draws = 20000;
        double sum = 0;
        Duration lo = Duration::max();
        Duration hi = Duration::min();
        for (int i = 0; i < draws; ++i) {
            Duration b = p.Backoff(attempt, unit(rng));
            ASSERT_GE(b, Duration(0));
            ASSERT_LE(b, cap);
            lo = std::min(lo, b);
            hi = std::max(hi, b);
            sum += static_cast<double>(b.count());
        }
        const double mean = sum / draws;
        const double half = static_cast<double>(cap.count()) / 2;
        // The mean of U(0, cap) has a standard error of cap/sqrt(12 * draws) ~ 0.2% of cap.
        EXPECT_NEAR(mean, half, 0.02 * half) << "attempt " << attempt;
        // Full jitter spreads over the whole range, not a band near the cap.
        EXPECT_LT(lo, cap / 100);
        EXPECT_GT(hi, cap * 99 / 100);
    }
}

TEST(RetryPolicyTest, ShouldRetryFollowsErrorRetryableByDefault) {
    RetryPolicy p = Policy();
    Error unavailable(ErrorCode::kUnavailable, "down");
    Error refused(ErrorCode::kFailedPrecondition, "no");
    Error forced(ErrorCode::kFailedPrecondition, "try again", /*retry=*/true);
    EXPECT_TRUE(p.ShouldRetry(unavailable, 1));
    EXPECT_TRUE(p.ShouldRetry(unavailable, 4));
    EXPECT_FALSE(p.ShouldRetry(unavailable, 5));  // 5 attempts made: that was the last
    EXPECT_FALSE(p.ShouldRetry(unavailable, 6));
    EXPECT_FALSE(p.ShouldRetry(refused, 1));
    EXPECT_TRUE(p.ShouldRetry(forced, 1));

    p.max_attempts = 1;
    EXPECT_FALSE(p.ShouldRetry(unavailable, 1));
}

TEST(RetryPolicyTest, RetryOnListDecidesByCode) {
    RetryPolicy p = Policy();
    p.retry_on = {ErrorCode::kUnavailable, ErrorCode::kFailedPrecondition};
    EXPECT_TRUE(p.ShouldRetry(Error(ErrorCode::kUnavailable, "down"), 1));
    // Listed although not retryable by default.
    EXPECT_TRUE(p.ShouldRetry(Error(ErrorCode::kFailedPrecondition, "busy"), 2));
    // Retryable by default, but not listed.
    EXPECT_FALSE(p.ShouldRetry(Error(ErrorCode::kDeadlineExceeded, "slow"), 1));
    EXPECT_FALSE(p.ShouldRetry(Error(ErrorCode::kResourceExhausted, "full", /*retry=*/true), 1));
    // The attempt limit still applies.
    EXPECT_FALSE(p.ShouldRetry(Error(ErrorCode::kUnavailable, "down"), 5));
}

}  // namespace
}  // namespace cogs::workflow
