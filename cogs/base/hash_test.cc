#include "cogs/base/hash.h"

#include <gtest/gtest.h>

namespace cogs::base {
namespace {

TEST(HashTest, Fnv1a64IsTheStandardFunction) {
    // The reference values of FNV-1a 64 (draft-eastlake-fnv).
    EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
    EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
    EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(HashTest, TheFirstBasisStillDerivesWhatEarlierVersionsPersisted) {
    // A port's MAC and a local cloud's runc directory were derived with this basis: an upgrade that
    // changed it would give a port another MAC and lose the instances of a running local cloud.
    EXPECT_EQ(Fnv1a64("", kFnv1aFirstBasis), 1469598103934665603ull);
    EXPECT_EQ(Fnv1a64("a", kFnv1aFirstBasis), (1469598103934665603ull ^ 'a') * 1099511628211ull);
    EXPECT_NE(Fnv1a64("port-1", kFnv1aFirstBasis), Fnv1a64("port-1"));
}

}  // namespace
}  // namespace cogs::base
