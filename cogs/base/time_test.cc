#include "cogs/base/time.h"

#include <gtest/gtest.h>

namespace cogs {
namespace {

TEST(TimeTest, Rfc3339ShowsUtcWithMillisecondsBeforeAndAfterTheEpoch) {
    EXPECT_EQ(Rfc3339(1'795'000'000'123), "2026-11-18T11:06:40.123Z");
    EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(Rfc3339(-1), "1969-12-31T23:59:59.999Z");
}

TEST(TimeTest, ParseRfc3339ReadsFractionsOffsetsAndWhatRfc3339Writes) {
    EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:01Z"), 1000);
    EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:01.5Z"), 1500);
    EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:01.123456Z"), 1123);
    EXPECT_EQ(ParseRfc3339("1970-01-01T01:00:00+01:00"), 0);
    EXPECT_EQ(ParseRfc3339("1970-01-01 00:00:02"), 2000);
    EXPECT_EQ(ParseRfc3339(Rfc3339(1'795'000'000'123)), 1'795'000'000'123);
    EXPECT_EQ(ParseRfc3339("yesterday"), std::nullopt);
    EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00+1"), std::nullopt);
}

}  // namespace
}  // namespace cogs
