#include "cogs/wire/answer.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace cogs::wire {
namespace {

json::object Body(const http::Response& r) { return ParseObject(r.body); }

TEST(AnswerTest, ApiErrorNamesTheFieldAndTheQuotaNumbers) {
    http::Response r = ApiError(FieldError("size_gb", "must be between 1 and 16384"));
    EXPECT_EQ(r.status, 400);
    json::object b = Body(r);
    EXPECT_EQ(Str(b, "code"), "invalid_argument");
    EXPECT_EQ(Str(b, "message"), "size_gb: must be between 1 and 16384");
    EXPECT_EQ(Str(Obj(b, "details"), "field"), "size_gb");

    Error quota = Error(ErrorCode::kPermissionDenied, "quota exceeded: vcpus limit 4, in use 4, requested 2")
                      .With("resource", "vcpus")
                      .With("limit", 4)
                      .With("in_use", 4)
                      .With("requested", 2);
    quota.reason = "quota_exceeded";
    r = ApiError(quota);
    EXPECT_EQ(r.status, 403);
    b = Body(r);
    EXPECT_EQ(Str(b, "code"), "quota_exceeded");
    EXPECT_EQ(Int(Obj(b, "details"), "limit"), 4);
    EXPECT_EQ(Str(Obj(b, "details"), "resource"), "vcpus");
    EXPECT_EQ(r.Header("retry-after"), "");
}

TEST(AnswerTest, OverloadAndUnavailableCarryRetryAfter) {
    EXPECT_EQ(ApiError(Error(ErrorCode::kResourceExhausted, "busy")).Header("retry-after"), "1");
    EXPECT_EQ(ApiError(Error(ErrorCode::kUnavailable, "down")).Header("retry-after"), "1");
    http::Response r = ApiMethodNotAllowed("PUT", "GET, POST");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.Header("allow"), "GET, POST");
    EXPECT_TRUE(Body(r).contains("details"));
}

TEST(AnswerTest, ServiceErrorRoundTrips) {
    http::Response r = ServiceError(Error(ErrorCode::kFailedPrecondition, "subnet exhausted"));
    EXPECT_EQ(r.status, 422);
    EXPECT_FALSE(Bool(Body(r), "retryable"));
    Error back = ServiceErrorOf(r.status, r.body);
    EXPECT_EQ(back.code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(back.message, "subnet exhausted");
    EXPECT_FALSE(back.retryable);
    // The status decides retries; the code falls back on it.
    back = ServiceErrorOf(503, "<html>");
    EXPECT_EQ(back.code, ErrorCode::kUnavailable);
    EXPECT_EQ(back.message, "HTTP 503");
    EXPECT_TRUE(back.retryable);
    EXPECT_EQ(ServiceMethodNotAllowed("GET", "POST").Header("allow"), "POST");
}

}  // namespace
}  // namespace cogs::wire
