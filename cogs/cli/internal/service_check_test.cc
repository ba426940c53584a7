// The pure parts of `cogs service check` (service_check_wire.h): the placeholders of its inputs and
// the differences its findings name. The checks themselves run against real services in
// integration.service_check (test/integration/service_check_test.cc).
#include "cogs/cli/internal/service_check_wire.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace cogs::cli::service_check {
namespace {

json::value J(const char* text) { return json::parse(text); }

TEST(ServiceCheckPartsTest, UniqueIsReplacedEverywhereInStrings) {
    EXPECT_EQ(Expand(J(R"({"id":"${unique}","name":"web-${unique}","n":1,"tags":["${unique}",null]})"),
                     "chk-1", nullptr),
              J(R"({"id":"chk-1","name":"web-chk-1","n":1,"tags":["chk-1",null]})"));
    EXPECT_EQ(Expand(J(R"({"${unique}":"x"})"), "chk-1", nullptr), J(R"({"${unique}":"x"})")) << "keys kept";
}

TEST(ServiceCheckPartsTest, OutputReferencesTakeTheValueOrItsText) {
    const json::value output = J(R"({"id":"v-1","size":2,"nested":{"ip":"10.0.0.1"}})");
    EXPECT_EQ(Expand(J(R"({"id":"${output.id}","size":"${output.size}","ip":"${output.nested.ip}"})"), "u",
                     &output),
              J(R"({"id":"v-1","size":2,"ip":"10.0.0.1"})"));
    EXPECT_EQ(Expand(J(R"({"path":"/v/${output.id}/${output.size}/${unique}"})"), "u", &output),
              J(R"({"path":"/v/v-1/2/u"})"));
    // No output (an undo before its do), or no such field: null, or "" inside a string.
    EXPECT_EQ(Expand(J(R"({"id":"${output.id}","p":"x${output.id}"})"), "u", nullptr),
              J(R"({"id":null,"p":"x"})"));
    EXPECT_EQ(Expand(J(R"({"id":"${output.missing}"})"), "u", &output), J(R"({"id":null})"));
}

TEST(ServiceCheckPartsTest, FirstDifferenceNamesThePath) {
    EXPECT_EQ(FirstDifference(J(R"({"a":1,"b":[1,2]})"), J(R"({"b":[1,2],"a":1})")), "") << "member order";
    EXPECT_EQ(FirstDifference(J(R"({"n":[{"id":"a"}]})"), J(R"({"n":[{"id":"b"}]})")),
              R"(n[0].id: "a" vs "b")");
    EXPECT_EQ(FirstDifference(J(R"({"n":[1]})"), J(R"({"n":[1,2]})")), "n: 1 items vs 2");
    EXPECT_EQ(FirstDifference(J(R"({})"), J(R"({"x":true})")), "x: absent vs true");
    EXPECT_EQ(FirstDifference(J("1"), J("2"), "output"), "output: 1 vs 2");
}

TEST(ServiceCheckPartsTest, SnippetsAreShortAndEscaped) {
    EXPECT_EQ(Snippet("a\x1b[2Jb"), "a\\x1b[2Jb");
    EXPECT_EQ(Snippet(std::string(500, 'x')), std::string(160, 'x') + "...");
}

}  // namespace
}  // namespace cogs::cli::service_check
