// Real containers under runc, each with its shim (bin/cogs-oci-shim beside this test): as root,
// with runc and busybox-static installed (CI has both; elsewhere every test here skips, saying why).
//
// Each test works under its own directory /tmp/cogs-oci-test/<test pid>-XXXXXX: its runc root, its
// containers' directories and a busybox root filesystem. TearDown force-deletes every container
// under that runc root, kills shims and runc processes left alive and removes the directory, also
// when the test failed half-way; SetUp does the same for directories whose test process is gone (a
// test killed by a timeout). Nothing waits for a fixed time: every wait polls a state with a
// generous deadline.
#include "cogs/oci/container.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cogs/base/secret.h"
#include "cogs/oci/internal/layout.h"
#include "cogs/oci/lease_file.h"
#include "cogs/oci/runc.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"

namespace cogs::oci {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kTestRoot = "/tmp/cogs-oci-test";
constexpr Duration kPatience = 60s;  // for anything a loaded machine may take long to do

// Kills and removes everything under one test directory: containers under its runc root, shims
// and runc processes of its containers, network namespaces it named, then the directory.
void CleanUp(const std::string& base) {
    Runc runc({kRunc, base + "/runc", 30s});
    if (auto states = runc.List()) {
        for (const RuncState& s : *states) {
            (void)runc.Delete(s.id, true);  // best effort: TearDown must go on whatever fails
        }
    }
    std::error_code ec;
    for (fs::directory_iterator it(base + "/containers", ec), end; !ec && it != end; it.increment(ec)) {
        const std::string dir = it->path().string();
        if (auto shim = internal::LiveShim(dir); shim && *shim > 0) {
            ::kill(*shim, SIGKILL);
        }
        if (auto text = runtime::ReadFile(dir + "/runc.pid")) {
            if (auto p = internal::ParseProcessId(*text); p && internal::ProcessAlive(*p)) {
                ::kill(p->pid, SIGKILL);
            }
        }
    }
    if (auto names = runtime::ReadFile(base + "/netns")) {
        std::istringstream in(*names);
        for (std::string name; std::getline(in, name);) {
            (void)runtime::RunCommand({"/usr/sbin/ip", "netns", "delete", name}, SteadyClock::now() + 30s);
        }
    }
    fs::remove_all(base, ec);
}

// Every process whose command line mentions `needle`.
std::vector<std::string> ProcessesMentioning(const std::string& needle) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos || name == std::to_string(::getpid())) {
            continue;
        }
        auto cmdline = runtime::ReadFile(it->path().string() + "/cmdline");
        if (!cmdline) {
            continue;
        }
        std::replace(cmdline->begin(), cmdline->end(), '\0', ' ');
        if (cmdline->find(needle) != std::string::npos) {
            out.push_back(name + ": " + *cmdline);
        }
    }
    return out;
}

class OciContainerTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root: runc makes namespaces, cgroups and mounts (CI runs as root)";
        }
        if (!fs::exists(kRunc)) {
            GTEST_SKIP() << kRunc << " is missing: scripts/install-deps installs Debian's runc";
        }
        if (!fs::exists(kBusybox)) {
            GTEST_SKIP() << kBusybox << " is missing: scripts/install-deps installs busybox-static";
        }
        ASSERT_TRUE(fs::exists(runtime::SiblingBinary("cogs-oci-shim")))
            << "cogs-oci-shim is not built beside this test";
        fs::create_directories(kTestRoot);
        CollectLeftovers();
        std::string tmpl = fmt::format("{}/{}-XXXXXX", kTestRoot, ::getpid());
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        base_ = tmpl;
        rootfs_ = base_ + "/rootfs";
        MakeBusyboxRootfs(rootfs_);
        containers_.emplace(Options());
    }

    void TearDown() override {
        if (!base_.empty()) {
            CleanUp(base_);
        }
    }

    ContainersOptions Options() const {
        return ContainersOptions{.dir = base_ + "/containers",
                                 .runc_root = base_ + "/runc",
                                 .runc_binary = kRunc,
                                 .shim_binary = runtime::SiblingBinary("cogs-oci-shim"),
                                 .console_max_bytes = 1 << 20,
                                 .call_timeout = 30s,
                                 .start_timeout = kPatience};
    }

    // Test directories of test processes that no longer run (killed by a ctest timeout).
    static void CollectLeftovers() {
        std::error_code ec;
        for (fs::directory_iterator it(kTestRoot, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            const pid_t pid = static_cast<pid_t>(std::atoi(name.c_str()));
            if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) {
                CleanUp(it->path().string());
            }
        }
    }

    static void MakeBusyboxRootfs(const std::string& rootfs) {
        fs::create_directories(rootfs + "/bin");
        for (const char* d : {"proc", "sys", "dev", "tmp", "etc", "root"}) {
            fs::create_directories(rootfs + "/" + d);
        }
        fs::copy_file(kBusybox, rootfs + "/bin/busybox");
        auto list = runtime::RunCommand({kBusybox, "--list"}, SteadyClock::now() + kPatience);
        ASSERT_TRUE(list && list->exit_status == 0);
        std::istringstream in(list->output);
        for (std::string applet; std::getline(in, applet);) {
            if (!applet.empty() && applet != "busybox") {
                fs::create_symlink("busybox", rootfs + "/bin/" + applet);
            }
        }
    }

    ContainerSpec Spec(const std::string& script) {
        ContainerSpec spec;
        spec.id = "t" + RandomHex(6);
        spec.rootfs = rootfs_;
        spec.args = {"/bin/sh", "-c", script};
        spec.hostname = "host-" + spec.id;
        spec.memory_mib = 64;
        spec.pids_limit = 64;
        return spec;
    }

    ContainerStatus MustStart(const ContainerSpec& spec) {
        auto started = containers_->Start(spec);
        EXPECT_TRUE(started) << started.error().ToString() << "\nshim.log:\n"
                             << runtime::TailFile(containers_->DirOf(spec.id) + "/shim.log", 20);
        return started ? *started : ContainerStatus{};
    }

    // Polls Status until `done` says so (or the deadline: the last status, for the assertion).
    template <typename F>
    ContainerStatus WaitFor(const std::string& id, F done) {
        const SteadyTime deadline = SteadyClock::now() + kPatience;
        ContainerStatus last;
        while (SteadyClock::now() < deadline) {
            auto status = containers_->Status(id);
            EXPECT_TRUE(status) << status.error().ToString();
            if (!status) {
                return last;
            }
            last = *status;
            if (done(last)) {
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        return last;
    }

    ContainerStatus WaitForExit(const std::string& id) {
        return WaitFor(id, [](const ContainerStatus& s) { return s.state == ContainerState::kExited; });
    }

    // Waits until the console holds `text`; answers the console.
    std::string WaitForConsole(const std::string& id, const std::string& text) {
        const SteadyTime deadline = SteadyClock::now() + kPatience;
        std::string console;
        while (SteadyClock::now() < deadline) {
            console = containers_->Console(id, 1 << 20).value_or("");
            if (console.find(text) != std::string::npos) {
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        return console;
    }

    // Removes the container and checks that nothing of it is left: no runc state, no cgroup, no
    // directory, no process (its shim, its runc, its first process: `pids`).
    void RemoveAndCheckGone(const std::string& id, const std::vector<internal::ProcessId>& pids = {}) {
        const std::string dir = containers_->DirOf(id);
        ASSERT_TRUE(containers_->Remove(id));
        Runc runc({kRunc, base_ + "/runc", 30s});
        auto state = runc.State(id);
        ASSERT_FALSE(state);
        EXPECT_EQ(state.error().code, ErrorCode::kNotFound) << state.error().ToString();
        std::vector<std::string> cgroups;
        std::error_code ec;
        for (fs::directory_iterator it("/sys/fs/cgroup", ec), end; !ec && it != end; it.increment(ec)) {
            if (fs::exists(it->path() / "cogs" / id)) {
                cgroups.push_back((it->path() / "cogs" / id).string());
            }
        }
        if (fs::exists(fs::path("/sys/fs/cgroup/cogs") / id)) {  // cgroup v2 alone
            cgroups.push_back("/sys/fs/cgroup/cogs/" + id);
        }
        EXPECT_EQ(cgroups, std::vector<std::string>{});
        EXPECT_FALSE(fs::exists(dir));
        EXPECT_EQ(ProcessesMentioning(id), std::vector<std::string>{});
        for (const auto& p : pids) {
            EXPECT_FALSE(internal::ProcessAlive(p)) << "pid " << p.pid << " still runs";
        }
        auto status = containers_->Status(id);
        ASSERT_TRUE(status);
        EXPECT_EQ(status->state, ContainerState::kAbsent);
        EXPECT_TRUE(containers_->Remove(id));  // again: nothing to do
    }

    std::string base_;
    std::string rootfs_;
    std::optional<Containers> containers_;
};

TEST_F(OciContainerTest, ExitStatusAndConsole) {
    const ContainerSpec spec = Spec("echo hello from $(hostname); echo to stderr >&2; exit 3");
    const ContainerStatus started = MustStart(spec);
    EXPECT_TRUE(started.state == ContainerState::kRunning || started.state == ContainerState::kExited)
        << ToString(started.state);
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_EQ(ended.state, ContainerState::kExited);
    EXPECT_EQ(ended.exit_status, 3);
    const std::string dir = containers_->DirOf(spec.id);
    EXPECT_EQ(runtime::ReadFile(dir + "/exit").value_or(""), "3\n");
    const std::string console = containers_->Console(spec.id, 1 << 20).value_or("");
    EXPECT_NE(console.find("hello from " + spec.hostname + "\n"), std::string::npos) << console;
    EXPECT_NE(console.find("to stderr\n"), std::string::npos) << console;
    // The shim ends after writing the status.
    EXPECT_FALSE(WaitFor(spec.id, [](const ContainerStatus& s) { return !s.shim_alive; }).shim_alive);
    RemoveAndCheckGone(spec.id);
}

TEST_F(OciContainerTest, RunsWithItsHostnameAndLimitsAndAKillFromOutsideIsAnExit) {
    ContainerSpec spec = Spec(
        "hostname; "
        "if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then "
        "  echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
        "  echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
        "else "
        "  echo mem=$(cat /sys/fs/cgroup/memory.max); echo cpu=$(cut -d' ' -f1 /sys/fs/cgroup/cpu.max); "
        "fi; "
        "echo ready; exec sleep 100000");
    spec.vcpus = 2;
    spec.memory_mib = 64;
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    ASSERT_GT(started.pid, 0);
    EXPECT_TRUE(started.shim_alive);
    const std::string console = WaitForConsole(spec.id, "ready\n");
    EXPECT_NE(console.find(spec.hostname + "\n"), std::string::npos) << console;
    EXPECT_NE(console.find("mem=67108864\n"), std::string::npos) << console;
    EXPECT_NE(console.find("cpu=200000\n"), std::string::npos) << console;
    // The host sees it in its cgroup.
    const std::string cgroup = runtime::ReadFile(fmt::format("/proc/{}/cgroup", started.pid)).value_or("");
    EXPECT_NE(cgroup.find(":/cogs/" + spec.id + "\n"), std::string::npos) << cgroup;

    const auto status = containers_->Status(spec.id);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->state, ContainerState::kRunning);
    EXPECT_EQ(status->pid, started.pid);

    const auto init = internal::IdentifyProcess(started.pid);
    ASSERT_TRUE(init);
    ASSERT_EQ(::kill(started.pid, SIGKILL), 0);
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_EQ(ended.state, ContainerState::kExited);
    EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
    RemoveAndCheckGone(spec.id, {*init});
}

TEST_F(OciContainerTest, TheContainerOutlivesItsShimAndIsAdopted) {
    const ContainerSpec spec = Spec("echo ready; exec sleep 100000");
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    const std::string dir = containers_->DirOf(spec.id);
    const auto shim_pid = internal::LiveShim(dir);
    ASSERT_TRUE(shim_pid && *shim_pid > 0);
    const auto shim = internal::IdentifyProcess(*shim_pid);
    ASSERT_TRUE(shim);
    const auto runc_pid = internal::ParseProcessId(runtime::ReadFile(dir + "/runc.pid").value_or(""));
    ASSERT_TRUE(runc_pid);
    const auto init = internal::IdentifyProcess(started.pid);
    ASSERT_TRUE(init);

    // SIGTERM (an agent's group stopping, a stray kill): ignored, the container runs on.
    ASSERT_EQ(::kill(*shim_pid, SIGTERM), 0);
    const SteadyTime deadline = SteadyClock::now() + kPatience;
    while (runtime::ReadFile(dir + "/shim.log").value_or("").find("ignored signal 15") == std::string::npos &&
           SteadyClock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    auto status = containers_->Status(spec.id);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->state, ContainerState::kRunning);
    EXPECT_TRUE(status->shim_alive);

    // SIGKILL: the shim is gone, the container is not.
    ASSERT_EQ(::kill(*shim_pid, SIGKILL), 0);
    const ContainerStatus orphan = WaitFor(spec.id, [](const ContainerStatus& s) { return !s.shim_alive; });
    EXPECT_FALSE(orphan.shim_alive);
    EXPECT_EQ(orphan.state, ContainerState::kRunning);
    EXPECT_EQ(orphan.pid, started.pid);
    EXPECT_TRUE(internal::ProcessAlive(*init));

    // A new Containers on the same directories (an agent after its restart) finds it running.
    Containers adopted(Options());
    auto all = adopted.List();
    ASSERT_TRUE(all) << all.error().ToString();
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ((*all)[0].id, spec.id);
    EXPECT_TRUE((*all)[0].has_dir);
    EXPECT_TRUE((*all)[0].in_runc);
    EXPECT_EQ((*all)[0].status.state, ContainerState::kRunning);
    EXPECT_EQ((*all)[0].status.pid, started.pid);

    // Stopped without a shim: it ends, its status unknown (nobody was there to see it).
    auto stopped = adopted.Stop(spec.id, 100ms);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(stopped->state, ContainerState::kExited);
    EXPECT_EQ(stopped->exit_status, -1);
    RemoveAndCheckGone(spec.id, {*shim, *runc_pid, *init});
}

TEST_F(OciContainerTest, WhenRuncDiesTheShimStillSeesTheContainersEnd) {
    const ContainerSpec spec = Spec("trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done");
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    const std::string dir = containers_->DirOf(spec.id);
    const auto runc = internal::ParseProcessId(runtime::ReadFile(dir + "/runc.pid").value_or(""));
    ASSERT_TRUE(runc);
    ASSERT_EQ(::kill(runc->pid, SIGKILL), 0);
    // The container's process is the shim's child now (a subreaper), so its own status is known.
    const SteadyTime deadline = SteadyClock::now() + kPatience;
    while (runtime::ReadFile(dir + "/shim.log").value_or("").find("runs on without runc") ==
               std::string::npos &&
           SteadyClock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    auto status = containers_->Status(spec.id);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->state, ContainerState::kRunning);
    EXPECT_EQ(status->pid, started.pid);
    auto stopped = containers_->Stop(spec.id, kPatience);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(stopped->exit_status, 5);  // the process's, not runc's 137
    RemoveAndCheckGone(spec.id);         // including the state runc could not clean up
}

TEST_F(OciContainerTest, StopKillsAProcessThatIgnoresSigtermAfterTheGrace) {
    const ContainerSpec spec = Spec("trap '' TERM; echo ready; while :; do sleep 1; done");
    ASSERT_EQ(MustStart(spec).state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    auto stopped = containers_->Stop(spec.id, 200ms);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(stopped->state, ContainerState::kExited);
    EXPECT_EQ(stopped->exit_status, 128 + SIGKILL);
    // Stopping what has ended answers its status again.
    auto again = containers_->Stop(spec.id, 200ms);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->exit_status, 128 + SIGKILL);
    RemoveAndCheckGone(spec.id);
    auto absent = containers_->Stop(spec.id, 200ms);
    ASSERT_FALSE(absent);
    EXPECT_EQ(absent.error().code, ErrorCode::kNotFound);
}

TEST_F(OciContainerTest, StopEndsAProcessThatHandlesSigterm) {
    const ContainerSpec spec = Spec("trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    ASSERT_EQ(MustStart(spec).state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    auto stopped = containers_->Stop(spec.id, kPatience);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(stopped->exit_status, 7);
    EXPECT_NE(containers_->Console(spec.id, 1 << 20).value_or("").find("bye\n"), std::string::npos);
    RemoveAndCheckGone(spec.id);
}

TEST_F(OciContainerTest, TheConsoleStaysBoundedUnderAFlood) {
    constexpr int64_t kMax = 16 * 1024;
    ContainersOptions options = Options();
    options.console_max_bytes = kMax;
    containers_.emplace(options);
    // ~3 MB of output, two hundred times the bound.
    const ContainerSpec spec =
        Spec("yes flood-0123456789-0123456789 | head -c 3000000; echo; echo done-flooding");
    MustStart(spec);
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_EQ(ended.exit_status, 0);
    const std::string dir = containers_->DirOf(spec.id);
    const auto size = [](const std::string& p) {
        std::error_code ec;
        const auto s = fs::file_size(p, ec);
        return ec ? 0 : static_cast<int64_t>(s);
    };
    EXPECT_LE(size(dir + "/console.log"), kMax);
    EXPECT_LE(size(dir + "/console.log.1"), kMax);
    EXPECT_LE(size(dir + "/console.log") + size(dir + "/console.log.1"), 2 * kMax);
    EXPECT_GT(size(dir + "/console.log.1"), 0);  // it did rotate
    EXPECT_FALSE(fs::exists(dir + "/console.log.2"));
    const std::string console = containers_->Console(spec.id, 2 * kMax).value_or("");
    EXPECT_TRUE(console.ends_with("\ndone-flooding\n"))
        << console.substr(console.size() > 200 ? console.size() - 200 : 0);
    RemoveAndCheckGone(spec.id);
}

TEST_F(OciContainerTest, RemoveStopsARunningContainerAndLeavesNothing) {
    const ContainerSpec spec = Spec("echo ready; exec sleep 100000");
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    const std::string dir = containers_->DirOf(spec.id);
    const auto shim = internal::IdentifyProcess(internal::LiveShim(dir).value_or(0));
    ASSERT_TRUE(shim);
    const auto init = internal::IdentifyProcess(started.pid);
    ASSERT_TRUE(init);
    RemoveAndCheckGone(spec.id, {*shim, *init});
}

TEST_F(OciContainerTest, StartsAgainAfterAnExitKeepingTheConsole) {
    ContainerSpec spec = Spec("echo run-one; exit 1");
    MustStart(spec);
    EXPECT_EQ(WaitForExit(spec.id).exit_status, 1);
    spec.args = {"/bin/sh", "-c", "echo run-two; exec sleep 100000"};
    const ContainerStatus second = MustStart(spec);
    EXPECT_EQ(second.state, ContainerState::kRunning);
    const std::string console = WaitForConsole(spec.id, "run-two\n");
    EXPECT_NE(console.find("run-one\nrun-two\n"), std::string::npos) << console;

    auto again = containers_->Start(spec);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists) << again.error().ToString();
    RemoveAndCheckGone(spec.id);
}

TEST_F(OciContainerTest, StartErrors) {
    // runc cannot create it: runc's words, nothing left running.
    ContainerSpec missing = Spec("");
    missing.args = {"/bin/no-such-program"};
    auto started = containers_->Start(missing);
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().code, ErrorCode::kFailedPrecondition) << started.error().ToString();
    EXPECT_NE(started.error().message.find("no-such-program"), std::string::npos)
        << started.error().ToString();
    RemoveAndCheckGone(missing.id);

    ContainerSpec bad = Spec("true");
    bad.memory_mib = 0;
    started = containers_->Start(bad);
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().field(), "memory_mib");

    ContainerSpec no_source = Spec("true");
    no_source.mounts = {{base_ + "/no-such-dir", "/run/cogs", true}};
    started = containers_->Start(no_source);
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().field(), "mounts[0].source");
    EXPECT_FALSE(fs::exists(containers_->DirOf(no_source.id)));  // nothing written
}

TEST_F(OciContainerTest, BindMountsAndAJoinedNetworkNamespace) {
    const std::string meta = base_ + "/meta";
    fs::create_directories(meta);
    std::ofstream(meta + "/meta.json") << R"({"name": "web1"})";
    const std::string volume = base_ + "/volume";
    fs::create_directories(volume);

    ContainerSpec spec = Spec(
        "cat /run/cogs/meta.json; echo; "
        "if echo x > /run/cogs/meta.json; then echo meta-writable; else echo meta-read-only; fi; "
        "echo data > /volumes/v1/file && echo volume-written; "
        "echo ready; exec sleep 100000");
    spec.mounts = {{meta, "/run/cogs", true}, {volume, "/volumes/v1", false}};

    const bool have_ip = fs::exists("/usr/sbin/ip");
    const std::string netns = "cogs-oci-" + spec.id;
    if (have_ip) {
        std::ofstream(base_ + "/netns") << netns << "\n";  // for CleanUp
        auto added =
            runtime::RunCommand({"/usr/sbin/ip", "netns", "add", netns}, SteadyClock::now() + kPatience);
        ASSERT_TRUE(added && added->exit_status == 0) << (added ? added->output : added.error().ToString());
        spec.netns_path = "/run/netns/" + netns;
    }
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    const std::string console = WaitForConsole(spec.id, "ready\n");
    EXPECT_NE(console.find(R"({"name": "web1"})"), std::string::npos) << console;
    EXPECT_NE(console.find("meta-read-only\n"), std::string::npos) << console;
    EXPECT_NE(console.find("volume-written\n"), std::string::npos) << console;
    EXPECT_EQ(runtime::ReadFile(volume + "/file").value_or(""), "data\n");
    if (have_ip) {
        struct stat joined {
        }, inside{};
        ASSERT_EQ(::stat(spec.netns_path.c_str(), &joined), 0);
        ASSERT_EQ(::stat(fmt::format("/proc/{}/ns/net", started.pid).c_str(), &inside), 0);
        EXPECT_EQ(joined.st_ino, inside.st_ino);
    } else {
        std::cout << "[ NOTE ] /usr/sbin/ip is missing (iproute2): the joined namespace is not checked\n";
    }
    RemoveAndCheckGone(spec.id);
    EXPECT_TRUE(fs::exists(volume + "/file"));  // a bind mount's source is the caller's
}

TEST_F(OciContainerTest, StopWithoutAGraceKillsAtOnceWithoutSigterm) {
    // A process that would end at SIGTERM with 7: a power-off (fencing) never lets it.
    const ContainerSpec spec = Spec("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    ASSERT_EQ(MustStart(spec).state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    auto stopped = containers_->Stop(spec.id, Duration::zero());
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(stopped->state, ContainerState::kExited);
    EXPECT_EQ(stopped->exit_status, 128 + SIGKILL);
    RemoveAndCheckGone(spec.id);
}

// ---- the watchdog: the shim kills its container once the host's lease has ended ----

class OciWatchdogTest : public OciContainerTest {
protected:
    void SetUp() override {
        OciContainerTest::SetUp();
        if (!IsSkipped() && !HasFatalFailure()) {
            lease_file_ = base_ + "/lease";
        }
    }

    // The lease ends `left` from now; answers that end.
    Duration Pet(Duration left) {
        const Duration end = BootTimeNow() + left;
        EXPECT_TRUE(WriteLeaseFile(lease_file_, end));
        return end;
    }

    // A container whose first process is a shell with a second process beside it (`sleep <marker>`),
    // so that the end of the whole pid namespace shows.
    ContainerSpec WatchedSpec() {
        marker_ = std::to_string(100000 + std::stoi(RandomHex(2), nullptr, 16));
        // $((N+0)): the shell's own command line does not show "sleep N".
        ContainerSpec spec = Spec("sleep $((" + marker_ + "+0)) & echo ready; wait");
        spec.lease_file = lease_file_;
        return spec;
    }

    std::vector<std::string> Sleepers() { return ProcessesMentioning("sleep " + marker_); }

    // Waits until the container's second process runs (it execs `sleep` an instant after the shell
    // forked it, perhaps after "ready").
    bool SleeperRuns() {
        for (const SteadyTime deadline = SteadyClock::now() + kPatience; SteadyClock::now() < deadline;) {
            if (Sleepers().size() == 1) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

    std::string lease_file_;
    std::string marker_;
};

TEST_F(OciWatchdogTest, ARenewedLeaseKeepsTheContainerAndAnEndedOneKillsIt) {
    Duration end = Pet(3s);
    const ContainerSpec spec = WatchedSpec();
    const ContainerStatus started = MustStart(spec);
    ASSERT_EQ(started.state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    ASSERT_TRUE(SleeperRuns()) << "its second process did not start";

    // Renewed (as an agent does at every heartbeat) past the first end: it runs on.
    const Duration first_end = end;
    while (BootTimeNow() < first_end + 1s) {
        end = Pet(3s);
        std::this_thread::sleep_for(100ms);
    }
    auto status = containers_->Status(spec.id);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->state, ContainerState::kRunning) << "killed while its lease was renewed";
    EXPECT_EQ(status->pid, started.pid);

    // No more renewals (the agent died): killed once the last end has passed, every process of it.
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_GE(BootTimeNow(), end) << "killed before its lease ended";
    EXPECT_EQ(ended.state, ContainerState::kExited);
    EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
    EXPECT_EQ(::kill(started.pid, 0), -1) << "its first process still runs";
    EXPECT_EQ(Sleepers(), std::vector<std::string>{});
    EXPECT_NE(
        runtime::ReadFile(containers_->DirOf(spec.id) + "/shim.log").value_or("").find("lease has ended"),
        std::string::npos);
    RemoveAndCheckGone(spec.id);
}

TEST_F(OciWatchdogTest, AContainerDoesNotStartWithoutALease) {
    struct Case {
        std::string name;
        std::function<void()> prepare;
    };
    const std::vector<Case> cases{
        {"no lease file", [&] { fs::remove(lease_file_); }},
        {"an ended lease", [&] { Pet(-1s); }},
        {"a garbled file", [&] { ASSERT_TRUE(runtime::WriteFileAtomic(lease_file_, "9999999999999\n")); }},
        {"an earlier boot's file",
         [&] {
             ASSERT_TRUE(runtime::WriteFileAtomic(
                 lease_file_, "cogs-lease 00000000-0000-0000-0000-000000000000 999999999999999999\n"));
         }},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        c.prepare();
        const ContainerSpec spec = WatchedSpec();
        auto started = containers_->Start(spec);
        ASSERT_FALSE(started) << ToString(started->state);
        EXPECT_EQ(started.error().code, ErrorCode::kUnavailable);
        EXPECT_NE(started.error().message.find("holds no lease"), std::string::npos)
            << started.error().message;
        EXPECT_EQ(Sleepers(), std::vector<std::string>{});
        RemoveAndCheckGone(spec.id);
    }
}

TEST_F(OciWatchdogTest, ALeaseFileRemovedWhileTheContainerRunsKillsIt) {
    Pet(std::chrono::hours(1));
    const ContainerSpec spec = WatchedSpec();
    ASSERT_EQ(MustStart(spec).state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    ASSERT_TRUE(SleeperRuns()) << "its second process did not start";
    ASSERT_TRUE(fs::remove(lease_file_));
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
    EXPECT_EQ(Sleepers(), std::vector<std::string>{});
    RemoveAndCheckGone(spec.id);
}

// The watchdog signals only the container's own process: a pid file that names another process (a
// pid reused, a runc that makes containers differently) makes it go through `runc kill` instead.
TEST_F(OciWatchdogTest, TheWatchdogNeverKillsAProcessThatIsNotTheContainers) {
    Pet(std::chrono::hours(1));
    const ContainerSpec spec = WatchedSpec();
    ASSERT_EQ(MustStart(spec).state, ContainerState::kRunning);
    WaitForConsole(spec.id, "ready\n");
    ASSERT_TRUE(SleeperRuns()) << "its second process did not start";
    auto bystander = runtime::Child::Spawn({kBusybox, "sleep", "99999"});  // not a Sleeper
    ASSERT_TRUE(bystander) << bystander.error().ToString();
    ASSERT_TRUE(runtime::WriteFileAtomic(containers_->DirOf(spec.id) + "/container.pid",
                                         std::to_string(bystander->pid())));
    ASSERT_TRUE(fs::remove(lease_file_));
    const ContainerStatus ended = WaitForExit(spec.id);
    EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
    EXPECT_EQ(Sleepers(), std::vector<std::string>{});
    EXPECT_TRUE(bystander->Running()) << "the watchdog killed a process that was not the container's";
    RemoveAndCheckGone(spec.id);
}

}  // namespace
}  // namespace cogs::oci
