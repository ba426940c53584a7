#include "cogs/base/result.h"

#include <gtest/gtest.h>

namespace cogs {
namespace {

TEST(ResultTest, RetryableFollowsCode) {
    EXPECT_TRUE(Error(ErrorCode::kUnavailable, "x").retryable);
    EXPECT_TRUE(Error(ErrorCode::kDeadlineExceeded, "x").retryable);
    EXPECT_FALSE(Error(ErrorCode::kFailedPrecondition, "x").retryable);
    EXPECT_FALSE(Error(ErrorCode::kInvalidArgument, "x").retryable);
}

TEST(ResultTest, HttpMappingRoundTrips) {
    for (auto c : {ErrorCode::kInvalidArgument, ErrorCode::kNotFound, ErrorCode::kResourceExhausted,
                   ErrorCode::kUnavailable, ErrorCode::kDeadlineExceeded, ErrorCode::kUnauthenticated}) {
        EXPECT_EQ(FromHttpStatus(HttpStatus(c)), c) << ToString(c);
    }
    EXPECT_EQ(FromHttpStatus(502), ErrorCode::kUnavailable);
}

TEST(ResultTest, ErrorString) {
    Result<int> r = MakeError(ErrorCode::kNotFound, "no such workflow");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().ToString(), "not_found: no such workflow");
}

TEST(ResultTest, FieldErrorCarriesTheField) {
    Error e = FieldError("request.fixed_ip", "not an address");
    EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.field(), "request.fixed_ip");
    EXPECT_EQ(e.message, "request.fixed_ip: not an address");
    EXPECT_FALSE(e.retryable);
}

TEST(ResultTest, DetailsChainAndReplace) {
    Error e =
        Error(ErrorCode::kPermissionDenied, "quota exceeded").With("resource", "vcpus").With("limit", 10);
    e.reason = "quota_exceeded";
    e.With("limit", int64_t{12});
    ASSERT_EQ(e.details.size(), 2u);
    EXPECT_EQ(e.Detail("resource"), "vcpus");
    EXPECT_EQ(e.NumberDetail("limit"), 12);
    EXPECT_EQ(e.Detail("limit"), "");  // a number, not a string
    EXPECT_EQ(e.WireCode(), "quota_exceeded");
    EXPECT_EQ(Error(ErrorCode::kNotFound, "x").WireCode(), "not_found");
}

Result<int> Half(int n) {
    if (n % 2 != 0) {
        return MakeError(FieldError("n", "odd"));
    }
    return n / 2;
}

Status Check(int n) {
    COGS_TRY(Half(n));
    return Ok();
}

Result<int> Quarter(int n) {
    COGS_ASSIGN_OR_RETURN(int half, Half(n));
    COGS_ASSIGN_OR_RETURN(auto quarter, Half(half));
    return quarter;
}

TEST(ResultTest, TryAndAssignOrReturnPropagateTheError) {
    EXPECT_TRUE(Check(4));
    ASSERT_FALSE(Check(3));
    EXPECT_EQ(Check(3).error().field(), "n");
    EXPECT_EQ(Quarter(8).value(), 2);
    ASSERT_FALSE(Quarter(6));  // 6 -> 3 is odd at the second step
    EXPECT_EQ(Quarter(6).error().message, "n: odd");
}

TEST(ResultTest, ConvertsFromTheCombinatorsOfTlExpected) {
    Result<int> r = Half(8).map([](int v) { return v + 1; });
    EXPECT_EQ(r.value(), 5);
}

}  // namespace
}  // namespace cogs
