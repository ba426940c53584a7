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

}  // namespace
}  // namespace cogs
