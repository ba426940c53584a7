// What runc prints, read without runc: its state and list JSON among its JSON log lines (samples
// as runc 1.1.5 prints them), and the files of a container's directory.
#include <gtest/gtest.h>

#include "cogs/oci/internal/layout.h"
#include "cogs/oci/internal/runc_output.h"
#include "cogs/oci/runc.h"
#include "test/support/temp_dir.h"

namespace cogs::oci::internal {
namespace {

constexpr const char* kState = R"({
  "ociVersion": "1.0.2-dev",
  "id": "t2",
  "pid": 17783,
  "status": "running",
  "bundle": "/tmp/specx",
  "rootfs": "/tmp/specx/rootfs",
  "created": "2026-12-05T20:18:22.335022814Z",
  "owner": ""
})";

TEST(OciRuncOutputTest, StateAmongLogLines) {
    const std::string out =
        std::string(R"({"level":"warning","msg":"something odd","time":"2026-12-05T20:18:21Z"})") + "\n" +
        kState + "\n";
    auto state = ParseState(out);
    ASSERT_TRUE(state) << state.error().ToString();
    EXPECT_EQ(state->id, "t2");
    EXPECT_EQ(state->status, RuncStatus::kRunning);
    EXPECT_EQ(state->pid, 17783);
    EXPECT_EQ(state->bundle, "/tmp/specx");
    EXPECT_EQ(RuncErrorMessage(out), "");  // a warning is not an error
}

TEST(OciRuncOutputTest, List) {
    auto empty = ParseList("null\n");
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->empty());
    auto two = ParseList(
        R"([{"ociVersion":"1.0.2-dev","id":"a","pid":0,"status":"stopped","bundle":"/b/a","rootfs":"/r","created":"x","owner":"root"},)"
        R"({"ociVersion":"1.0.2-dev","id":"b","pid":42,"status":"paused","bundle":"/b/b","rootfs":"/r","created":"x","owner":"root"}])");
    ASSERT_TRUE(two) << two.error().ToString();
    ASSERT_EQ(two->size(), 2u);
    EXPECT_EQ((*two)[0].status, RuncStatus::kStopped);
    EXPECT_EQ((*two)[1].id, "b");
    EXPECT_EQ((*two)[1].pid, 42);
    EXPECT_EQ((*two)[1].status, RuncStatus::kPaused);
}

TEST(OciRuncOutputTest, ErrorsInRuncsWords) {
    EXPECT_EQ(RuncErrorMessage(
                  R"({"level":"error","msg":"container does not exist","time":"2026-12-05T20:18:21Z"})"),
              "container does not exist");
    EXPECT_EQ(
        RuncErrorMessage("{\"level\":\"error\",\"msg\":\"one\"}\n{\"level\":\"fatal\",\"msg\":\"two\"}\n"),
        "one; two");
    // Not JSON (an older runc's text log, a panic): the text itself.
    EXPECT_EQ(RuncErrorMessage("time=\"x\" level=error msg=\"container does not exist\"\n"),
              "time=\"x\" level=error msg=\"container does not exist\"");
    EXPECT_EQ(RuncErrorMessage(""), "");
    EXPECT_EQ(RuncErrorMessage(std::string(2000, 'x')).size(), 503u);  // shortened
}

TEST(OciRuncOutputTest, MalformedOutputIsAnError) {
    for (const char* bad :
         {"", "garbage", "{\"level\":\"error\",\"msg\":\"x\"}", "{\"id\":\"a\"}",
          "{\"id\":\"a\",\"status\":\"exploded\"}", "[1,2]", "{\"id\": \"a\", \"status\""}) {
        auto state = ParseState(bad);
        EXPECT_FALSE(state) << bad;
        if (!state) {
            EXPECT_EQ(state.error().code, ErrorCode::kUnavailable) << bad;
        }
    }
    EXPECT_FALSE(ParseList("{}"));
    EXPECT_FALSE(ParseList("[{\"id\":\"a\"}]"));
    EXPECT_FALSE(ParseRuncStatus("exploded"));
}

TEST(OciLayoutTest, ExitStatusAndProcessIds) {
    const cogs::testing::TempDir dir("cogs-oci-layout-test");
    EXPECT_EQ(ReadExitStatus(dir.path()), std::nullopt);
    dir.Write("exit", "137\n");
    EXPECT_EQ(ReadExitStatus(dir.path()), 137);
    dir.Write("exit", "what\n");
    EXPECT_EQ(ReadExitStatus(dir.path()), -1);

    // No shim.pid, or one nobody locks: no live shim.
    EXPECT_EQ(LiveShim(dir.path()), std::nullopt);
    dir.Write("shim.pid", "12345\n");
    EXPECT_EQ(LiveShim(dir.path()), std::nullopt);

    auto self = IdentifyProcess(::getpid());
    ASSERT_TRUE(self);
    EXPECT_TRUE(ProcessAlive(*self));
    EXPECT_FALSE(ProcessAlive({self->pid, self->start_ticks + 1}));  // the pid, reused by another
    auto parsed = ParseProcessId(FormatProcessId(*self));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->pid, self->pid);
    EXPECT_EQ(parsed->start_ticks, self->start_ticks);
    EXPECT_FALSE(ParseProcessId("12"));
    EXPECT_FALSE(ParseProcessId("-3 4"));
    EXPECT_FALSE(IdentifyProcess(0));
}

TEST(OciLayoutTest, MountTable) {
    // Every Linux machine mounts /proc; nothing is mounted under a fresh directory.
    const auto proc = MountsUnder("/proc");
    ASSERT_FALSE(proc.empty());
    EXPECT_EQ(proc.back(), "/proc");  // deepest first, so /proc itself comes last
    const cogs::testing::TempDir dir("cogs-oci-layout-test");
    EXPECT_TRUE(MountsUnder(dir.path()).empty());
    EXPECT_TRUE(CgroupDirs("/cogs-oci-test-no-such-cgroup").empty());
}

}  // namespace
}  // namespace cogs::oci::internal
