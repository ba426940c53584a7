#include "cogs/runtime/process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "cogs/base/secret.h"
#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class RuntimeTest : public ::testing::Test {
protected:
    std::string Path(const std::string& name) const { return dir_ / name; }

    const cogs::testing::TempDir dir_{"cogs-runtime-test"};
};

Child MustSpawn(const std::vector<std::string>& argv, const SpawnOptions& options = {}) {
    auto c = Child::Spawn(argv, options);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : Child();
}

TEST_F(RuntimeTest, ExitStatusAndLogAppended) {
    SpawnOptions o{.log_path = Path("child.log")};
    Child a = MustSpawn({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, o);
    EXPECT_EQ(a.Wait(), 3);
    EXPECT_EQ(a.exit_status(), 3);
    EXPECT_EQ(a.pid(), -1);
    EXPECT_FALSE(a.Running());
    Child b = MustSpawn({"/bin/sh", "-c", "echo second"}, o);
    EXPECT_EQ(b.Wait(5s), 0);
    EXPECT_EQ(*ReadFile(Path("child.log")), "out\nerr\nsecond\n");
    EXPECT_EQ(TailFile(Path("child.log"), 2), "err\nsecond\n");
    EXPECT_EQ(TailFile(Path("missing.log"), 2), "");
}

TEST_F(RuntimeTest, SignalWaitTimeoutAndStop) {
    Child c = MustSpawn({"/bin/sleep", "30"});
    EXPECT_TRUE(c.Running());
    const auto t0 = SteadyClock::now();
    EXPECT_EQ(c.Wait(50ms), std::nullopt);
    EXPECT_GE(SteadyClock::now() - t0, 50ms);
    EXPECT_TRUE(c.Running());
    c.Signal(SIGTERM);
    EXPECT_EQ(c.Wait(5s), 128 + SIGTERM);

    // A child that ignores SIGTERM is killed after the grace period.
    const std::string ready = Path("ready");
    Child stubborn = MustSpawn({"/bin/sh", "-c",
                                "trap '' TERM; echo 1 > " + ready + ".tmp; mv " + ready + ".tmp " + ready +
                                    "; while :; do :; done"});
    ASSERT_TRUE(WaitForPortFile(ready, SteadyClock::now() + 10s, &stubborn));  // the trap is installed
    EXPECT_EQ(stubborn.Stop(200ms), 128 + SIGKILL);
}

TEST_F(RuntimeTest, DestructorKillsAndReaps) {
    pid_t pid;
    {
        Child c = MustSpawn({"/bin/sleep", "30"});
        pid = c.pid();
        ASSERT_GT(pid, 0);
    }
    // Reaped by the destructor: the pid no longer exists (not even as a zombie of this process).
    EXPECT_EQ(::kill(pid, 0), -1);
}

TEST_F(RuntimeTest, OwnProcessGroupByDefault) {
    Child own = MustSpawn({"/bin/sleep", "30"});
    EXPECT_EQ(::getpgid(own.pid()), own.pid());
    Child shared = MustSpawn({"/bin/sleep", "30"}, {.new_process_group = false});
    EXPECT_EQ(::getpgid(shared.pid()), ::getpgid(0));
}

TEST_F(RuntimeTest, ChildGetsDefaultSignalsAndExtraEnvironment) {
    // A supervisor that ignores SIGTERM must still be able to stop its children with it.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGTERM, &ignore, &old);
    Child c = MustSpawn({"/bin/sleep", "30"});
    ::sigaction(SIGTERM, &old, nullptr);
    c.Signal(SIGTERM);
    EXPECT_EQ(c.Wait(5s), 128 + SIGTERM);

    Child e = MustSpawn({"/bin/sh", "-c", "echo \"$COGS_RUNTIME_TEST\""},
                        {.log_path = Path("env.log"), .env = {"COGS_RUNTIME_TEST=yes"}});
    EXPECT_EQ(e.Wait(), 0);
    EXPECT_EQ(*ReadFile(Path("env.log")), "yes\n");
}

TEST_F(RuntimeTest, SpawnErrors) {
    auto missing = Child::Spawn({Path("no-such-binary")});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    auto empty = Child::Spawn({});
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
    auto bad_log = Child::Spawn({"/bin/true"}, {.log_path = Path("no/such/dir/x.log")});
    ASSERT_FALSE(bad_log);
    EXPECT_EQ(bad_log.error().code, ErrorCode::kUnavailable);
}

TEST_F(RuntimeTest, SiblingBinaryIsBesideThisOne) {
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    EXPECT_EQ(SiblingBinary("cogs"), (fs::path(self).parent_path() / "cogs").string());
}

TEST_F(RuntimeTest, RunCommandCapturesOutputAndExitStatus) {
    auto ok = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, SteadyClock::now() + 30s);
    ASSERT_TRUE(ok) << ok.error().ToString();
    EXPECT_EQ(ok->exit_status, 3);
    EXPECT_EQ(ok->output, "out\nerr\n");

    auto env = RunCommand({"/bin/sh", "-c", "echo $COGS_X"}, SteadyClock::now() + 30s, {.env = {"COGS_X=y"}});
    ASSERT_TRUE(env);
    EXPECT_EQ(env->output, "y\n");

    // Only the last 64 KiB are kept.
    auto big = RunCommand({"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo end"},
                          SteadyClock::now() + 30s);
    ASSERT_TRUE(big);
    EXPECT_EQ(big->output.size(), 64u * 1024);
    EXPECT_TRUE(big->output.ends_with("aend\n"));
    auto whole = RunCommand({"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo end"},
                            SteadyClock::now() + 30s, {.max_output = 1 << 20});
    ASSERT_TRUE(whole);
    EXPECT_EQ(whole->output.size(), 100004u);

    // Apart: stdout alone is the data, whatever the tool warned of.
    auto apart = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; echo out2"}, SteadyClock::now() + 30s,
                            {.separate_stderr = true});
    ASSERT_TRUE(apart) << apart.error().ToString();
    EXPECT_EQ(apart->output, "out\nout2\n");
    EXPECT_EQ(apart->errors, "err\n");
    EXPECT_EQ(ok->errors, "") << "interleaved in output without separate_stderr";

    auto missing = RunCommand({"/nonexistent/tool"}, SteadyClock::now() + 30s);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(RuntimeTest, RunCommandKillsWhatOutlivesItsDeadline) {
    const auto start = SteadyClock::now();
    auto r = RunCommand({"/bin/sh", "-c", "echo started; exec sleep 60"}, start + 200ms);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_NE(r.error().message.find("started"), std::string::npos) << r.error().message;
    EXPECT_LT(SteadyClock::now() - start, 30s);  // killed, not waited for
}

TEST_F(RuntimeTest, WaitForPortFile) {
    // Written later, atomically, by another process.
    const std::string f = Path("svc.port");
    Child writer =
        MustSpawn({"/bin/sh", "-c", "sleep 0.1; echo 4242 > " + f + ".tmp; mv " + f + ".tmp " + f});
    auto port = WaitForPortFile(f, SteadyClock::now() + 10s, &writer);
    ASSERT_TRUE(port) << port.error().ToString();
    EXPECT_EQ(*port, 4242);

    // Nobody writes it: the deadline.
    const auto t0 = SteadyClock::now();
    auto late = WaitForPortFile(Path("never.port"), t0 + 100ms);
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_GE(SteadyClock::now() - t0, 100ms);
    EXPECT_LT(SteadyClock::now() - t0, 5s);

    // The watched child dies first: fails at once, long before the deadline.
    Child dies = MustSpawn({"/bin/sh", "-c", "exit 7"});
    const auto t1 = SteadyClock::now();
    auto dead = WaitForPortFile(Path("never.port"), t1 + 60s, &dies);
    ASSERT_FALSE(dead);
    EXPECT_EQ(dead.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(dead.error().message.find("status 7"), std::string::npos) << dead.error().message;
    EXPECT_LT(SteadyClock::now() - t1, 10s);

    ASSERT_TRUE(WriteFileAtomic(Path("bad.port"), "http\n"));
    auto bad = WaitForPortFile(Path("bad.port"), SteadyClock::now() + 1s);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(RuntimeTest, WriteFileAtomicSetsModeAndReplaces) {
    const std::string f = Path("secret.token");
    ASSERT_TRUE(WriteFileAtomic(f, "one", 0600));
    ASSERT_TRUE(WriteFileAtomic(f, "two", 0600));
    EXPECT_EQ(*ReadFile(f), "two");
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    // No temporary files left behind.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 1);
    EXPECT_EQ(ReadFile(Path("none")).error().code, ErrorCode::kNotFound);
    EXPECT_FALSE(WriteFileAtomic(Path("no/dir/x"), "x"));
}

}  // namespace
}  // namespace cogs::runtime
