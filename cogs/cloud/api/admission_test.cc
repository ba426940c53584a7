// Admission (admission.h) on a fake clock: the token buckets' refill and Retry-After, the project's
// cap, the system lane beside a full tenant lane, and the bound on the bucket table.
#include "cogs/cloud/api/admission.h"

#include <gtest/gtest.h>

#include <vector>

namespace cogs::cloud {
namespace {

using namespace std::chrono_literals;

AdmissionOptions Limits() {
    AdmissionOptions o;
    o.max_inflight = 8;
    o.max_inflight_system = 4;
    o.max_inflight_per_project = 3;
    o.rate = 10;  // one request per 100 ms
    o.burst = 5;
    o.admin_rate = 100;
    o.admin_burst = 50;
    return o;
}

TEST(LaneTest, OnlyTheAgentsRegistrationsAndHeartbeatsAreSystem) {
    EXPECT_EQ(LaneOf("POST", "/v1/hosts/host-1/heartbeat"), Lane::kSystem);
    EXPECT_EQ(LaneOf("PUT", "/v1/hosts/host-1"), Lane::kSystem);
    EXPECT_EQ(LaneOf("PUT", "/v1/hosts/a%20b"), Lane::kSystem);
    EXPECT_EQ(LaneOf("GET", "/v1/hosts/host-1"), Lane::kTenant);
    EXPECT_EQ(LaneOf("GET", "/v1/hosts"), Lane::kTenant);
    EXPECT_EQ(LaneOf("POST", "/v1/hosts/host-1/drain"), Lane::kTenant);
    EXPECT_EQ(LaneOf("GET", "/v1/hosts/host-1/heartbeat"), Lane::kTenant);
    EXPECT_EQ(LaneOf("POST", "/v1/hosts/host-1/heartbeat/x"), Lane::kTenant);
    EXPECT_EQ(LaneOf("POST", "/v1/servers/x/heartbeat"), Lane::kTenant);
    EXPECT_EQ(LaneOf("GET", "/v1/servers"), Lane::kTenant);
}

TEST(AdmissionTest, ABucketAdmitsItsBurstThenRefillsAtItsRate) {
    runtime::FakeClock clock;
    Admission a(Limits(), clock);
    std::vector<Admission::Ticket> held;
    for (int i = 0; i < 5; ++i) {
        auto t = a.AdmitTenant("tok", "p", false);
        ASSERT_TRUE(t) << "request " << i << " of the burst";
        t->Release();
    }
    auto refused = a.AdmitTenant("tok", "p", false);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().reason, "rate_limited");
    EXPECT_EQ(refused.error().error.code, ErrorCode::kResourceExhausted);
    EXPECT_EQ(refused.error().retry_after, 100ms) << "one request at 10/s";
    EXPECT_EQ(refused.error().error.NumberDetail("retry_after_ms"), 100);
    EXPECT_EQ(refused.error().error.Detail("limit"), "rate_per_token");

    clock.Advance(99ms);
    ASSERT_FALSE(a.AdmitTenant("tok", "p", false)) << "not yet a whole request";
    clock.Advance(1ms);
    EXPECT_TRUE(a.AdmitTenant("tok", "p", false)) << "a whole request after 100 ms";
    EXPECT_FALSE(a.AdmitTenant("tok", "p", false));

    // Idle for long: full again, but never more than the burst.
    clock.Advance(1h);
    for (int i = 0; i < 5; ++i) {
        EXPECT_TRUE(a.AdmitTenant("tok", "p", false)) << i;
    }
    EXPECT_FALSE(a.AdmitTenant("tok", "p", false));
    // Another token has its own bucket; an admin token a larger one.
    EXPECT_TRUE(a.AdmitTenant("other", "p", false));
    for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE(a.AdmitTenant("admin", "admin", true)) << i;
    }
    auto admin = a.AdmitTenant("admin", "admin", true);
    ASSERT_FALSE(admin);
    EXPECT_EQ(admin.error().retry_after, 10ms);
    EXPECT_EQ(admin.error().error.Detail("limit"), "admin_rate_per_token");
}

TEST(AdmissionTest, RetryAfterIsTheBucketsWaitInWholeSecondsRoundedUp) {
    runtime::FakeClock clock;
    AdmissionOptions o = Limits();
    o.rate = 0.4;  // one request per 2.5 s
    o.burst = 1;
    Admission a(o, clock);
    ASSERT_TRUE(a.AdmitTenant("tok", "p", false));
    auto refused = a.AdmitTenant("tok", "p", false);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().retry_after, 2500ms);
    http::Response answer = RefusalAnswer(refused.error());
    EXPECT_EQ(answer.status, 429);
    EXPECT_EQ(answer.Header("retry-after"), "3");
    EXPECT_NE(answer.body.find(R"("code":"resource_exhausted")"), std::string::npos) << answer.body;
    EXPECT_NE(answer.body.find(R"("retry_after_ms":2500)"), std::string::npos) << answer.body;
    size_t retry_afters = 0;
    for (const auto& h : answer.headers)
        retry_afters += h.first == "retry-after";
    EXPECT_EQ(retry_afters, 1u);

    // A refusal did not take from the bucket: 2.5 s after the last admitted one, one more.
    clock.Advance(2500ms);
    EXPECT_TRUE(a.AdmitTenant("tok", "p", false));
    // Under a second still says 1 (delay-seconds are whole).
    o.rate = 10;
    Admission fast(o, clock);
    ASSERT_TRUE(fast.AdmitTenant("tok", "p", false));
    auto soon = fast.AdmitTenant("tok", "p", false);
    ASSERT_FALSE(soon);
    EXPECT_EQ(RefusalAnswer(soon.error()).Header("retry-after"), "1");
}

TEST(AdmissionTest, AProjectCannotHoldMoreThanItsShareInFlight) {
    runtime::FakeClock clock;
    AdmissionOptions o = Limits();
    o.rate = 0;  // no rate limit here
    Admission a(o, clock);
    std::vector<Admission::Ticket> held;
    for (int i = 0; i < 3; ++i) {
        auto t = a.AdmitTenant("tok-" + std::to_string(i), "greedy", false);
        ASSERT_TRUE(t) << i;
        held.push_back(std::move(*t));
    }
    auto refused = a.AdmitTenant("tok-9", "greedy", false);
    ASSERT_FALSE(refused) << "a fourth token of the same project shares its cap";
    EXPECT_EQ(refused.error().reason, "project_overload");
    EXPECT_EQ(refused.error().retry_after, 1s);
    EXPECT_EQ(a.inflight_of_project("greedy"), 3u);
    // Another project is not affected.
    auto other = a.AdmitTenant("tok-x", "modest", false);
    ASSERT_TRUE(other);
    EXPECT_EQ(a.inflight(Lane::kTenant), 4u);
    // An answer gives a place back.
    held.front().Release();
    held.front().Release();  // once only
    EXPECT_EQ(a.inflight_of_project("greedy"), 2u);
    EXPECT_TRUE(a.AdmitTenant("tok-9", "greedy", false));  // (released again at once: a temporary)
    held.clear();
    other->Release();
    EXPECT_EQ(a.inflight(Lane::kTenant), 0u);
    EXPECT_EQ(a.inflight_of_project("greedy"), 0u);
}

TEST(AdmissionTest, TheSystemLaneIsOpenWhileTheTenantLaneIsFull) {
    runtime::FakeClock clock;
    AdmissionOptions o = Limits();
    o.max_inflight_per_project = 0;
    o.rate = 0;
    Admission a(o, clock);
    std::vector<Admission::Ticket> held;
    for (int i = 0; i < 8; ++i) {
        ASSERT_FALSE(a.CheckLane(Lane::kTenant));
        auto t = a.AdmitTenant("flood", "p", false);
        ASSERT_TRUE(t);
        held.push_back(std::move(*t));
    }
    auto full = a.CheckLane(Lane::kTenant);
    ASSERT_TRUE(full);
    EXPECT_EQ(full->reason, "overload");
    EXPECT_EQ(RefusalAnswer(*full).status, 429);
    // Heartbeats go on, up to their own cap, which tenant tickets never take.
    std::vector<Admission::Ticket> beats;
    for (int i = 0; i < 4; ++i) {
        ASSERT_FALSE(a.CheckLane(Lane::kSystem)) << i;
        beats.push_back(a.AdmitSystem());
    }
    auto system_full = a.CheckLane(Lane::kSystem);
    ASSERT_TRUE(system_full);
    EXPECT_EQ(system_full->reason, "system_overload");
    EXPECT_TRUE(a.CheckLane(Lane::kTenant)) << "and a full system lane does not open the tenant lane";
    beats.pop_back();
    EXPECT_FALSE(a.CheckLane(Lane::kSystem));
    EXPECT_EQ(a.inflight(Lane::kSystem), 3u);
    EXPECT_EQ(a.inflight(Lane::kTenant), 8u);
}

TEST(AdmissionTest, TheBucketTableIsBounded) {
    runtime::FakeClock clock;
    AdmissionOptions o = Limits();
    o.max_buckets = 100;
    Admission a(o, clock);
    // A bucket used up is kept (forgetting it would hand a fresh burst)...
    for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(a.AdmitTenant("busy", "p", false));
    }
    // ...while many tokens pass, the table never holds more than its bound.
    for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(a.AdmitTenant("t" + std::to_string(i), "p", false)) << i;
        ASSERT_LE(a.buckets(), 100u);
        if (i % 10 == 0) {
            EXPECT_FALSE(a.AdmitTenant("busy", "p", false)) << "the busy token stays recently used";
        }
    }
    EXPECT_EQ(a.buckets(), 100u);
    // Buckets idle long enough to be full again go first: after a pause one token leaves one bucket.
    clock.Advance(1s);
    ASSERT_TRUE(a.AdmitTenant("late", "p", false));
    EXPECT_LE(a.buckets(), 2u) << "full again, the others are forgotten: it changes nothing";
}

}  // namespace
}  // namespace cogs::cloud
