// The compute domain on the container driver, with real containers under runc: as root, with runc
// and busybox-static installed (CI has both; elsewhere every test here skips, saying why), and
// cogs-oci-shim beside this test.
//
// Each test works under /tmp/cogs-compute-test/<test pid>-XXXXXX (the service's state, the
// instances' directories, runc's root) with a network-namespace prefix of its own. TearDown destroys
// the service, then force-deletes every container under that runc root, kills the shims and runc
// processes left, removes the namespaces of its prefix and the directory, also when the test failed
// half-way; SetUp does the same for directories whose test process is gone. Nothing waits for a
// fixed time: every wait polls a state with a generous deadline. The domain runs on the system
// clock with a restart backoff of 0: no timing of the domain is under test here (compute_test's
// fake clock covers it).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/linuxnet/host.h"
#include "cogs/oci/container.h"
#include "cogs/oci/lease_file.h"
#include "cogs/oci/runc.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/service.h"
#include "cogs/services/volume/volume.h"
#include "cogs/wire/base64.h"
#include "test/support/threaded_server.h"

namespace cogs::services::compute {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using kit::test_service::Call;
using kit::test_service::GetJson;
using kit::test_service::RunUntil;
using kit::test_service::StatusOf;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kIp = "/usr/sbin/ip";
constexpr const char* kLosetup = "/usr/sbin/losetup";
constexpr const char* kTestRoot = "/tmp/cogs-compute-test";
constexpr Duration kPatience = 60s;  // for anything a loaded machine may take long to do

// The network namespaces of `prefix` ("<prefix>-<instance id>").
std::vector<std::string> Namespaces(const std::string& prefix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it("/run/netns", ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.starts_with(prefix + "-")) {
            out.push_back(name);
        }
    }
    return out;
}

// The links of `prefix` in the host's namespace: bridges "<prefix>-b...", ports' veths "<prefix>-p...".
std::vector<std::string> Links(const std::string& prefix) {
    std::vector<std::string> out;
    auto r = runtime::RunCommand({kIp, "-o", "link", "show"}, SteadyClock::now() + 30s);
    std::istringstream in(r ? r->output : "");
    for (std::string line; std::getline(in, line);) {
        // "7: zz1-b0123456789@if6: <...>" (the "@peer" on a veth)
        const size_t colon = line.find(": ");
        if (colon == std::string::npos) {
            continue;
        }
        std::string name = line.substr(colon + 2, line.find_first_of(":@", colon + 2) - colon - 2);
        if (name.starts_with(prefix + "-")) {
            out.push_back(name);
        }
    }
    return out;
}

// The mount points at or under `dir` in this mount namespace, deepest first.
std::vector<std::string> MountsUnder(const std::string& dir) {
    std::vector<std::string> out;
    auto info = runtime::ReadFile("/proc/self/mountinfo");
    std::istringstream lines(info ? *info : "");
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, point;
        if (fields >> id >> parent >> dev >> root >> point &&
            (point == dir || point.starts_with(dir + "/"))) {
            out.push_back(point);
        }
    }
    std::reverse(out.begin(), out.end());
    std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
        return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
    });
    return out;
}

// The loop devices backed by `file` (losetup -j): "" when none.
std::string LoopsOf(const std::string& file) {
    auto r = runtime::RunCommand({kLosetup, "-j", file}, SteadyClock::now() + 30s);
    return r ? r->output : "losetup failed: " + r.error().ToString();
}

// Kills and removes everything under one test directory, and the namespaces of its prefix (kept in
// <base>/prefix).
void CleanUp(const std::string& base) {
    // "": the test's own host (and the first agent process); "2": a second agent process's.
    for (const std::string suffix : {"", "2"}) {
        oci::Runc runc({kRunc, base + "/runc" + suffix, 30s});
        if (auto states = runc.List()) {
            for (const oci::RuncState& s : *states) {
                (void)runc.Delete(s.id, true);  // best effort: TearDown must go on whatever fails
            }
        }
        oci::Containers containers({.dir = base + "/instances" + suffix,
                                    .runc_root = base + "/runc" + suffix,
                                    .runc_binary = kRunc,
                                    .shim_binary = runtime::SiblingBinary("cogs-oci-shim")});
        std::error_code ec;
        for (fs::directory_iterator it(base + "/instances" + suffix, ec), end; !ec && it != end;
             it.increment(ec)) {
            (void)containers.Remove(it->path().filename().string());
        }
        if (auto prefix = runtime::ReadFile(base + "/prefix" + suffix); prefix && !prefix->empty()) {
            for (const std::string& name : Namespaces(*prefix)) {
                (void)runtime::RunCommand({kIp, "netns", "delete", name}, SteadyClock::now() + 30s);
            }
            for (const std::string& name : Links(*prefix)) {  // bridges (and a veth a failure left)
                (void)runtime::RunCommand({kIp, "link", "delete", "dev", name}, SteadyClock::now() + 30s);
            }
        }
    }
    std::error_code ec;
    // Volumes a failed test left mounted (Remove unmounts those under an instance's directory):
    // unmounted before their files go, which frees their loop devices.
    for (const std::string& mount : MountsUnder(base)) {
        (void)::umount2(mount.c_str(), MNT_DETACH);
    }
    fs::remove_all(base, ec);
}

class ComputeContainerTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root: runc makes namespaces, cgroups and mounts (CI runs as root)";
        }
        for (const char* path : {kRunc, kBusybox, kIp}) {
            if (!fs::exists(path)) {
                GTEST_SKIP() << path
                             << " is missing: scripts/install-deps installs runc, busybox-static and "
                                "iproute2";
            }
        }
        ASSERT_TRUE(fs::exists(runtime::SiblingBinary("cogs-oci-shim")))
            << "cogs-oci-shim is not built beside this test";
        fs::create_directories(kTestRoot);
        CollectLeftovers();
        std::string tmpl = std::string(kTestRoot) + "/" + std::to_string(::getpid()) + "-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        base_ = tmpl;
        // A prefix of this test's own (linuxnet: 1-5 of [a-z0-9]).
        prefix_ = "ct" + RandomHex(2).substr(0, 3);
        ASSERT_TRUE(runtime::WriteFileAtomic(base_ + "/prefix", prefix_));
        prefix2_ = "cu" + prefix_.substr(2);  // a second agent process's
        ASSERT_TRUE(runtime::WriteFileAtomic(base_ + "/prefix2", prefix2_));
        containers_.emplace(oci::ContainersOptions{.dir = base_ + "/instances",
                                                   .runc_root = base_ + "/runc",
                                                   .runc_binary = kRunc,
                                                   .shim_binary = runtime::SiblingBinary("cogs-oci-shim")});
        StartService();
    }

    void TearDown() override {
        agent_process_.reset();  // SIGKILLed, reaped
        agent_process2_.reset();
        service_.reset();  // its driver waits for the calls under way
        if (!base_.empty()) {
            CleanUp(base_);
        }
    }

    // Test directories of test processes that no longer run (killed by a ctest timeout).
    static void CollectLeftovers() {
        std::error_code ec;
        for (fs::directory_iterator it(kTestRoot, ec), end; !ec && it != end; it.increment(ec)) {
            const pid_t pid = static_cast<pid_t>(std::atoi(it->path().filename().string().c_str()));
            if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) {
                CleanUp(it->path().string());
            }
        }
    }

    // The service (agent) on this test's state: a new process's, when one ran before.
    void StartService() {
        service_.reset();
        ComputeDriverOptions d;
        d.instances_dir = base_ + "/instances";
        d.runc_root = base_ + "/runc";
        d.stop_grace = 5s;  // the instances' shell stops at SIGTERM: the grace is never waited out
        d.netns_prefix = prefix_;
        d.poll_interval = 50ms;
        d.lease_dir = lease_dir_;
        d.control_urls = control_urls_;
        d.images_dir = base_ + "/images";
        auto driver = MakeComputeDriver("container", d);
        ASSERT_TRUE(driver) << driver.error().ToString();
        ComputeOptions options;
        options.hosts = {HostSpec{.name = "h1"}};
        options.leased = leased_;
        options.supervisor.restart_backoff = Millis(0);
        auto domain = MakeComputeDomain(std::move(options), std::move(*driver));
        ASSERT_TRUE(domain) << domain.error().ToString();
        domain_ = domain->get();
        kit::ServiceOptions so;
        so.state_path = base_ + "/compute.db";
        auto service = kit::DomainService::Create(io_, std::move(*domain), so);
        ASSERT_TRUE(service) << service.error().ToString();
        service_ = std::move(*service);
    }

    Result<workflow::ActionReply> Do(std::string action, std::string key, std::string input) {
        return Call(io_, *service_, std::move(action), std::move(key), std::move(input));
    }

    std::string CreateInput(const std::string& id, const std::string& image = "busybox") {
        return json::serialize(json::object{{"id", id},
                                            {"host", "h1"},
                                            {"vcpus", 1},
                                            {"ram_mb", 64},
                                            {"disk_gb", 0},
                                            {"image", image},
                                            {"name", "web " + id},
                                            {"project_id", "p1"}});
    }

    json::object Instance(const std::string& id) {
        json::value v = GetJson(*service_, "/v1/instances/" + id);
        return v.is_object() && v.as_object().contains("instance") ? v.at("instance").as_object()
                                                                   : json::object{};
    }

    std::string StateOf(const std::string& id) {
        json::object i = Instance(id);
        return i.contains("state") ? std::string(i.at("state").as_string()) : "";
    }

    // Runs the service until `done` holds (the io thread does its work meanwhile).
    template <typename Pred>
    bool Await(Pred done) {
        return RunUntil(io_, done, kPatience);
    }

    oci::ContainerStatus Container(const std::string& id) {
        auto s = containers_->Status(id);
        EXPECT_TRUE(s) << s.error().ToString();
        return s.value_or(oci::ContainerStatus{});
    }

    // The page the instance serves on port 80, fetched inside its network namespace.
    std::string Page(const std::string& id) {
        auto r = runtime::RunCommand({kIp, "netns", "exec", prefix_ + "-h1." + id, kBusybox, "wget", "-q",
                                      "-O", "-", "http://127.0.0.1:80/"},
                                     SteadyClock::now() + kPatience);
        return r && r->exit_status == 0 ? r->output : "";
    }

    // Runs `script` in instance `id` (runc exec): its output and "status=N".
    std::string Exec(const std::string& id, const std::string& script) {
        auto r = runtime::RunCommand({kRunc, "--root", base_ + "/runc", "exec", id, "/bin/sh", "-c", script},
                                     SteadyClock::now() + kPatience);
        return r ? r->output + "status=" + std::to_string(r->exit_status) : r.error().ToString();
    }

    // Runs an action to its end (a volume action is long while the host mounts).
    Result<workflow::ActionReply> RunToEnd(const std::string& action, const std::string& key,
                                           const json::object& input) {
        auto r = Do(action, key, json::serialize(input));
        if (r && r->accepted) {
            EXPECT_TRUE(Await([&] {
                r = StatusOf(io_, *service_, key);
                return !r || !r->accepted;
            }));
        }
        return r;
    }

    // A volume of cogs-volume's file driver (an ext4 file) in this test's directory: its path.
    std::string MakeVolume(const std::string& id) {
        auto volumes = volume::MakeVolumeDriver("file", base_ + "/volumes");
        EXPECT_TRUE(volumes) << volumes.error().ToString();
        auto file = volumes ? (*volumes)->Create(id, 1) : Result<std::string>(std::string());
        EXPECT_TRUE(file) << file.error().ToString();
        return file.value_or("");
    }

    // What is left of instance `id` on the machine: its directory, runc state, cgroups, namespace.
    std::vector<std::string> Leftovers(const std::string& id) {
        std::vector<std::string> out;
        if (fs::exists(containers_->DirOf(id))) {
            out.push_back(containers_->DirOf(id));
        }
        oci::Runc runc({kRunc, base_ + "/runc", 30s});
        if (auto state = runc.State(id); state || state.error().code != ErrorCode::kNotFound) {
            out.push_back("runc state of " + id);
        }
        // Its cgroups: /cogs/<host>.<id> in every hierarchy (v1: one per controller; v2: one).
        std::error_code ec;
        std::vector<fs::path> parents{"/sys/fs/cgroup/cogs"};
        for (fs::directory_iterator it("/sys/fs/cgroup", ec), end; !ec && it != end; it.increment(ec)) {
            parents.push_back(it->path() / "cogs");
        }
        for (const fs::path& parent : parents) {
            std::error_code ec2;
            for (fs::directory_iterator it(parent, ec2), end; !ec2 && it != end; it.increment(ec2)) {
                const std::string name = it->path().filename().string();
                if (name == id || name.ends_with("." + id)) {
                    out.push_back(it->path().string());
                }
            }
        }
        for (const std::string& ns : Namespaces(prefix_)) {
            out.push_back("/run/netns/" + ns);
        }
        return out;
    }

    // As an agent that holds h1's lease does (agent.h, the watchdog): its end, `left` from now, in
    // the lease file its containers' shims read. Answers that end (CLOCK_BOOTTIME).
    Duration Pet(Duration left) {
        const Duration end = oci::BootTimeNow() + left;
        EXPECT_TRUE(oci::WriteLeaseFile(lease_dir_ + "/h1", end));
        return end;
    }

    // The service as cogs-compute runs it with --control-url: h1's containers watch its lease file,
    // and the host starts fenced. The lease is held (`Pet`), then the host unfenced, as the agent does.
    void StartLeased() {
        lease_dir_ = base_ + "/instances/.leases";
        leased_ = true;
        StartService();
        Pet(std::chrono::hours(1));
        domain_->SetFenced("h1", false);
    }

    std::optional<runtime::Child> agent_process_;  // cogs-compute children (killed first by TearDown)
    std::optional<runtime::Child> agent_process2_;
    std::string base_;
    std::string prefix_;
    std::string prefix2_;
    std::string lease_dir_;  // "": no watchdog
    bool leased_ = false;
    std::vector<std::string> control_urls_;      // where images other than busybox come from
    std::optional<oci::Containers> containers_;  // the test's own view of the driver's containers
    boost::asio::io_context io_;
    ComputeDomain* domain_ = nullptr;  // owned by service_
    std::unique_ptr<kit::DomainService> service_;
};

TEST_F(ComputeContainerTest, BootsServesCrashesRestartsStopsAndDeletes) {
    const std::string id = "i" + RandomHex(4);
    auto created = Do("create_instance", "wf1/boot/do", CreateInput(id));
    ASSERT_TRUE(created) << created.error().ToString();
    EXPECT_TRUE(created->accepted) << "BUILD until its process runs";
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << StateOf(id);
    auto done = StatusOf(io_, *service_, "wf1/boot/do");
    ASSERT_TRUE(done) << done.error().ToString();
    EXPECT_FALSE(done->accepted);
    EXPECT_EQ(json::parse(done->output),
              json::parse(R"({"id":")" + id + R"(","host":"h1","state":"ACTIVE"})"));

    // It runs, serves the page naming the server, and knows itself.
    const oci::ContainerStatus running = Container(id);
    ASSERT_EQ(running.state, oci::ContainerState::kRunning);
    std::string page;
    ASSERT_TRUE(Await([&] { return !(page = Page(id)).empty(); })) << "nothing on port 80";
    EXPECT_NE(page.find("web " + id), std::string::npos) << page;
    EXPECT_NE(page.find("(" + id + ")"), std::string::npos) << page;
    auto meta = runtime::ReadFile(containers_->DirOf(id) + "/rootfs/run/cogs/meta.json");
    ASSERT_TRUE(meta);
    const json::value m = json::parse(*meta);
    EXPECT_EQ(m.at("id"), json::value(id));
    EXPECT_EQ(m.at("name"), json::value("web " + id));
    EXPECT_EQ(m.at("project_id"), "p1");
    // Its hostname is the server's name; its limits are the flavor's (1 vCPU, 64 MiB).
    auto inside =
        runtime::RunCommand({kRunc, "--root", base_ + "/runc", "exec", id, "/bin/sh", "-c",
                             "hostname; if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then "
                             "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
                             "echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
                             "else echo mem=$(cat /sys/fs/cgroup/memory.max); echo cpu=$(cut -d' ' -f1 "
                             "/sys/fs/cgroup/cpu.max); fi"},
                            SteadyClock::now() + kPatience);
    ASSERT_TRUE(inside) << inside.error().ToString();
    EXPECT_EQ(inside->output, "web-" + id + "\nmem=67108864\ncpu=100000\n");
    EXPECT_EQ(GetJson(*service_, "/v1/instances/" + id + "/console").at("id"), json::value(id));
    EXPECT_EQ(GetJson(*service_, "/v1/instances/nope/console", 404).at("code"), "not_found");

    // Killed from outside: CRASHED, restarted by the supervisor, serving again.
    ASSERT_EQ(::kill(running.pid, SIGKILL), 0);
    ASSERT_TRUE(Await([&] {
        return StateOf(id) == "ACTIVE" && Instance(id).at("crashes") == 1 && Container(id).pid != running.pid;
    })) << StateOf(id);
    const std::string beat = domain_->HeartbeatBody("h1");
    EXPECT_NE(beat.find(R"("type":"crashed")"), std::string::npos) << beat;
    EXPECT_NE(beat.find(R"("type":"restarted")"), std::string::npos) << beat;
    ASSERT_TRUE(Await([&] { return Page(id).find("web " + id) != std::string::npos; }));

    // Stopped: SHUTOFF, and no process.
    const pid_t second = Container(id).pid;
    auto stopped = Do("stop_instance", "wf2/stop/do", R"({"id":")" + id + R"(","host":"h1"})");
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_EQ(json::parse(stopped->output).at("state"), "SHUTOFF");
    ASSERT_TRUE(Await([&] { return Container(id).state == oci::ContainerState::kExited; }));
    EXPECT_NE(::kill(second, 0), 0) << "pid " << second << " still runs";
    EXPECT_EQ(StateOf(id), "SHUTOFF");

    // Started again, then deleted: nothing of it is left.
    auto started = Do("start_instance", "wf3/start/do", R"({"id":")" + id + R"(","host":"h1"})");
    ASSERT_TRUE(started) << started.error().ToString();
    EXPECT_TRUE(started->accepted);
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << StateOf(id);
    ASSERT_TRUE(Do("delete_instance", "wf4/delete/do", R"({"id":")" + id + R"(","host":"h1"})"));
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] { return (left = Leftovers(id)).empty(); }));
    EXPECT_EQ(left, std::vector<std::string>{});
}

TEST_F(ComputeContainerTest, AnUnknownImageFailsTheBootForGoodAndItsUndoLeavesNothing) {
    const std::string id = "i" + RandomHex(4);
    auto created = Do("create_instance", "wf1/boot/do", CreateInput(id, "ubuntu-24.04"));
    ASSERT_TRUE(created) << created.error().ToString();
    EXPECT_TRUE(created->accepted);
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ERROR"; })) << StateOf(id);
    auto failed = StatusOf(io_, *service_, "wf1/boot/do");
    ASSERT_FALSE(failed);
    EXPECT_FALSE(failed.error().retryable);
    EXPECT_NE(failed.error().message.find("'ubuntu-24.04'"), std::string::npos) << failed.error().ToString();
    auto undone = Do("delete_instance", "wf1/boot/undo", R"({"id":")" + id + R"(","host":"h1"})");
    ASSERT_TRUE(undone) << undone.error().ToString();
    EXPECT_EQ(json::parse(undone->output).at("deleted"), true) << "the undo still compensates";
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] { return (left = Leftovers(id)).empty(); }));
    EXPECT_EQ(left, std::vector<std::string>{});
}

// A cogsd that has two images (on the test's io thread, which runs while the test waits): "tiny", a
// root filesystem of busybox with the applets the instance's first process uses, and "corrupt",
// whose record's sha256 is not its content's.
TEST_F(ComputeContainerTest, ADownloadedImageBootsServesAndIsDownloadedOncePerHost) {
    const std::string root = base_ + "/tiny";
    fs::create_directories(root + "/bin");
    fs::copy_file(kBusybox, root + "/bin/busybox");
    for (const char* applet : {"sh", "httpd", "cat"}) {
        fs::create_symlink("busybox", root + "/bin/" + applet);
    }
    const std::string archive = base_ + "/tiny.tar.gz";
    auto tar =
        runtime::RunCommand({"/usr/bin/tar", "-czf", archive, "-C", root, "."}, SteadyClock::now() + 60s);
    ASSERT_TRUE(tar && tar->exit_status == 0);
    const std::string content = runtime::ReadFile(archive).value_or("");
    int downloads = 0;
    auto cogsd = http::StartServer(io_, {}, [&](http::Request req, http::Respond respond) {
        http::Response r;
        const std::string path = req.Path();
        if (path == "/v1/images/tiny" || path == "/v1/images/corrupt") {
            const bool corrupt = path.ends_with("corrupt");
            r.body = json::serialize(
                json::object{{"image",
                              {{"id", corrupt ? "img-corrupt" : "img-tiny"},
                               {"status", "active"},
                               {"sha256", corrupt ? std::string(64, 'f') : Sha256Hex(content)}}}});
        } else if (path == "/v1/images/img-tiny/file" || path == "/v1/images/img-corrupt/file") {
            ++downloads;
            r.content_type = "application/octet-stream";
            r.body = content;
        } else {
            r.status = 404;
        }
        respond(std::move(r));
    });
    ASSERT_TRUE(cogsd);
    control_urls_ = {"http://127.0.0.1:" + std::to_string((*cogsd)->port())};
    ASSERT_NO_FATAL_FAILURE(StartService());

    const std::string a = "a" + RandomHex(4);
    const std::string b = "b" + RandomHex(4);
    for (const std::string& id : {a, b}) {
        auto created = Do("create_instance", "wf-" + id + "/boot/do", CreateInput(id, "tiny"));
        ASSERT_TRUE(created) << created.error().ToString();
    }
    for (const std::string& id : {a, b}) {
        ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << id << ": " << StateOf(id);
        std::string page;
        EXPECT_TRUE(Await([&] { return (page = Page(id)).find("web " + id) != std::string::npos; })) << page;
    }
    EXPECT_EQ(downloads, 1) << "two boots of one image, one download";
    EXPECT_TRUE(fs::exists(base_ + "/images/img-tiny/rootfs/bin/busybox"));

    const std::string c = "c" + RandomHex(4);
    ASSERT_TRUE(Do("create_instance", "wf-" + c + "/boot/do", CreateInput(c, "corrupt")));
    ASSERT_TRUE(Await([&] { return StateOf(c) == "ERROR"; })) << StateOf(c);
    auto failed = StatusOf(io_, *service_, "wf-" + c + "/boot/do");
    ASSERT_FALSE(failed);
    EXPECT_FALSE(failed.error().retryable) << "a checksum mismatch fails the boot for good";
    EXPECT_NE(failed.error().message.find("checksum mismatch"), std::string::npos)
        << failed.error().ToString();

    for (const std::string& id : {a, b, c}) {
        ASSERT_TRUE(
            Do("delete_instance", "wf-" + id + "/delete/do", R"({"id":")" + id + R"(","host":"h1"})"));
    }
    for (const std::string& id : {a, b, c}) {
        std::vector<std::string> left;
        EXPECT_TRUE(Await([&] { return (left = Leftovers(id)).empty(); }));
        EXPECT_EQ(left, std::vector<std::string>{});
    }
    service_.reset();  // before the fake cogsd, which its workers may still ask
}

TEST_F(ComputeContainerTest, ARestartedAgentAdoptsWhatRunsAndRestartsWhatEndedMeanwhile) {
    const std::string a = "a" + RandomHex(4);
    const std::string b = "b" + RandomHex(4);
    for (const std::string& id : {a, b}) {
        ASSERT_TRUE(Do("create_instance", "wf-" + id + "/boot/do", CreateInput(id)));
    }
    ASSERT_TRUE(Await([&] { return StateOf(a) == "ACTIVE" && StateOf(b) == "ACTIVE"; }));
    const pid_t pid_a = Container(a).pid;
    const pid_t pid_b = Container(b).pid;

    // The agent goes away; its instances run on. b's process dies meanwhile.
    service_.reset();
    EXPECT_EQ(Container(a).state, oci::ContainerState::kRunning);
    ASSERT_EQ(::kill(pid_b, SIGKILL), 0);
    ASSERT_TRUE(Await([&] { return Container(b).state == oci::ContainerState::kExited; }));

    StartService();
    // b: a crash that happened meanwhile, restarted; a: adopted, the same process.
    ASSERT_TRUE(Await([&] {
        return StateOf(b) == "ACTIVE" && Instance(b).at("crashes") == 1 && Container(b).pid != pid_b;
    })) << StateOf(b);
    EXPECT_EQ(StateOf(a), "ACTIVE");
    EXPECT_EQ(Instance(a).at("crashes"), 0);
    EXPECT_EQ(Container(a).pid, pid_a) << "adopted, not restarted";
    EXPECT_EQ(domain_->HeartbeatBody("h1").find(R"("instance":")" + a), std::string::npos)
        << "no report about a";
    ASSERT_TRUE(Await([&] { return Page(a).find("web " + a) != std::string::npos; }));
}

// A container of this agent's without a record (its delete was answered, then the agent stopped
// before its removal ran) is removed when the agent starts again; what has a record is kept.
TEST_F(ComputeContainerTest, AStartingAgentRemovesContainersThatHaveNoRecord) {
    const std::string a = "a" + RandomHex(4);
    ASSERT_TRUE(Do("create_instance", "wf-" + a + "/boot/do", CreateInput(a)));
    ASSERT_TRUE(Await([&] { return StateOf(a) == "ACTIVE"; })) << StateOf(a);
    const pid_t pid_a = Container(a).pid;
    service_.reset();

    // The stray: a container in the agent's directory and runc root, with a namespace named as the
    // driver names one, that no record knows of.
    const std::string stray = "s" + RandomHex(4);
    std::error_code ec;
    fs::copy(containers_->DirOf(a) + "/rootfs", base_ + "/stray-rootfs", fs::copy_options::recursive, ec);
    ASSERT_FALSE(ec) << ec.message();
    auto net = linuxnet::Host::Make({.prefix = prefix_, .ip = kIp});
    ASSERT_TRUE(net) << net.error().ToString();
    auto netns = net->EnsureNamespace("h1." + stray, SteadyClock::now() + kPatience);
    ASSERT_TRUE(netns) << netns.error().ToString();
    oci::ContainerSpec spec;
    spec.id = stray;
    spec.rootfs = base_ + "/stray-rootfs";
    spec.args = {"/bin/sh", "-c", "sleep 1000"};
    spec.hostname = stray;
    spec.memory_mib = 32;
    spec.netns_path = *netns;
    auto started = containers_->Start(spec);
    ASSERT_TRUE(started) << started.error().ToString();
    ASSERT_EQ(Container(stray).state, oci::ContainerState::kRunning);

    StartService();
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] {
        left.clear();
        for (const std::string& thing : Leftovers(stray)) {  // (a's namespace is listed too: a runs)
            if (thing.find(a) == std::string::npos) {
                left.push_back(thing);
            }
        }
        return left.empty();
    })) << ::testing::PrintToString(left);
    EXPECT_EQ(StateOf(a), "ACTIVE");
    EXPECT_EQ(Container(a).pid, pid_a) << "adopted, not restarted";
}

TEST_F(ComputeContainerTest, FencingPowersTheInstancesOffAtOnce) {
    StartLeased();
    const std::string id = "i" + RandomHex(4);
    ASSERT_TRUE(Do("create_instance", "wf1/boot/do", CreateInput(id)));
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << StateOf(id);
    ASSERT_TRUE(Await([&] { return Page(id).find("web " + id) != std::string::npos; }));

    // The lease ran out (the agent's timer): FENCED, and the process killed, not asked to end. Its
    // shell would end at SIGTERM with 143 (after a grace of up to 5 s): a power-off is SIGKILL, 137.
    EXPECT_EQ(domain_->SetFenced("h1", true), 1u);
    EXPECT_EQ(StateOf(id), "FENCED");
    ASSERT_TRUE(Await([&] { return Container(id).state == oci::ContainerState::kExited; }));
    EXPECT_EQ(Container(id).exit_status, 128 + SIGKILL);
    EXPECT_EQ(StateOf(id), "FENCED");
}

// The agent dies (its process is gone: no more renewals, no fence of its own) while its instances
// run: their shims kill them when the host's lease ends, well inside the fence window (1 s) after
// which the control plane would declare the host down and rebuild them elsewhere.
TEST_F(ComputeContainerTest, ADeadAgentsInstancesAreKilledWhenItsLeaseEnds) {
    StartLeased();
    const std::string a = "a" + RandomHex(4);
    const std::string b = "b" + RandomHex(4);
    for (const std::string& id : {a, b}) {
        ASSERT_TRUE(Do("create_instance", "wf-" + id + "/boot/do", CreateInput(id)));
    }
    ASSERT_TRUE(Await([&] { return StateOf(a) == "ACTIVE" && StateOf(b) == "ACTIVE"; }));
    const pid_t pid_a = Container(a).pid;
    const pid_t pid_b = Container(b).pid;

    // The agent's last renewal, then its death: the domain and driver go without stopping anything.
    service_.reset();
    const int64_t wall_before = WallNowMs();
    const Duration end = Pet(2s);
    const int64_t end_wall_ms = wall_before + 2000;  // the same moment on the wall clock (or later)
    for (const std::string& id : {a, b}) {
        const oci::ContainerStatus now = Container(id);
        if (oci::BootTimeNow() < end) {  // read before the end: it must still run
            EXPECT_EQ(now.state, oci::ContainerState::kRunning) << id << " killed before its lease ended";
        }
    }

    for (const std::string& id : {a, b}) {
        SCOPED_TRACE(id);
        oci::ContainerStatus ended;
        ASSERT_TRUE(Await([&] { return (ended = Container(id)).state == oci::ContainerState::kExited; }));
        EXPECT_GE(oci::BootTimeNow(), end);
        EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
        // Its exit was recorded (the container and every process of it ended) less than a second
        // after the lease's end.
        const std::string exit_file = containers_->DirOf(id) + "/exit";
        struct stat st {};
        ASSERT_EQ(::stat(exit_file.c_str(), &st), 0);
        const int64_t exit_ms = int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000;
        EXPECT_LT(exit_ms, end_wall_ms + 1000) << "ended " << exit_ms - end_wall_ms << " ms after the lease";
        const std::string log = runtime::ReadFile(containers_->DirOf(id) + "/shim.log").value_or("");
        EXPECT_NE(log.find("lease has ended"), std::string::npos) << log;
    }
    EXPECT_NE(::kill(pid_a, 0), 0) << "pid " << pid_a << " still runs";
    EXPECT_NE(::kill(pid_b, 0), 0) << "pid " << pid_b << " still runs";

    // The agent comes back later: what ended meanwhile is FENCED (on a host without a lease), and
    // nothing starts there until the control plane says so.
    StartService();
    ASSERT_TRUE(Await([&] { return StateOf(a) == "FENCED" && StateOf(b) == "FENCED"; }))
        << StateOf(a) << " " << StateOf(b);
    EXPECT_EQ(Container(a).state, oci::ContainerState::kExited);
}

// An agent that restarts within its lease keeps its guests: its first renewal extends the lease.
TEST_F(ComputeContainerTest, AnAgentThatRestartsWithinItsLeaseKeepsItsInstances) {
    StartLeased();
    const std::string id = "i" + RandomHex(4);
    ASSERT_TRUE(Do("create_instance", "wf1/boot/do", CreateInput(id)));
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << StateOf(id);
    const pid_t pid = Container(id).pid;

    const Duration old_end = Pet(5s);  // the old agent's last renewal
    service_.reset();
    StartService();  // the new agent: it leaves the lease file as it is, and adopts what runs
    ASSERT_TRUE(Await([&] { return StateOf(id) == "ACTIVE"; })) << StateOf(id);
    const Duration renewed_at = oci::BootTimeNow();
    Pet(std::chrono::hours(1));  // its first lease
    domain_->SetFenced("h1", false);
    if (renewed_at >= old_end) {
        GTEST_SKIP() << "the machine took more than 5 s to restart the service: the old lease ended first";
    }
    while (oci::BootTimeNow() < old_end + 500ms) {
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(Container(id).state, oci::ContainerState::kRunning);
    EXPECT_EQ(Container(id).pid, pid) << "adopted, not restarted";
    EXPECT_EQ(StateOf(id), "ACTIVE");
}

// A control plane that gives every host a lease of `ttl_ms` at each renewal, on a thread of its own
// (the test waits on other things meanwhile).
class LeasingControlPlane {
public:
    explicit LeasingControlPlane(int64_t ttl_ms) : ttl_ms_(ttl_ms) {}
    std::string url() const { return server_.url(); }
    // When the last renewal of `host` came (wall ms; 0: none).
    int64_t LastRenewalWallMs(const std::string& host) {
        std::lock_guard lock(mu_);
        return last_renewal_wall_ms_[host];
    }

private:
    const int64_t ttl_ms_;
    std::mutex mu_;
    std::map<std::string, int64_t> last_renewal_wall_ms_;
    cogs::testing::ThreadedServer server_{[this](http::Request req, http::Respond respond) {
        // The moment cogsd counts a host's lease from: the receipt of its last renewal.
        std::string host = req.Path().substr(std::string_view("/v1/hosts/").size());
        host = host.substr(0, host.find('/'));
        {
            std::lock_guard lock(mu_);
            last_renewal_wall_ms_[host] = WallNowMs();
        }
        http::Response r;
        r.status = 200;
        r.body = req.method == "POST"
                     ? R"({"lease_ttl_ms":)" + std::to_string(ttl_ms_) + R"(,"lease_epoch":1,"acked_seq":0})"
                     : "{}";
        respond(std::move(r));
    }};
};

// cogs-compute as it runs, in child processes, talked to with curl.
class ComputeAgentProcessTest : public ComputeContainerTest {
protected:
    void SetUp() override {
        ComputeContainerTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) {
            return;
        }
        if (!fs::exists(kCurl)) {
            GTEST_SKIP() << kCurl << " is missing (the test talks to cogs-compute with it)";
        }
        ASSERT_TRUE(fs::exists(runtime::SiblingBinary("cogs-compute")))
            << "cogs-compute is not built beside this test";
        service_.reset();  // the agent processes take the instances' directories
    }

    static constexpr const char* kCurl = "/usr/bin/curl";

    // Polls `done` every 50 ms for up to kPatience.
    template <typename F>
    static bool WaitFor(F done) {
        for (const SteadyTime deadline = SteadyClock::now() + kPatience; SteadyClock::now() < deadline;) {
            if (done()) {
                return true;
            }
            std::this_thread::sleep_for(50ms);
        }
        return done();
    }

    // Starts `cogs-compute --driver container` serving `host` (its files under <base>/*<suffix>),
    // leased by `control` (2 s leases), and waits until its host holds a lease. Answers its URL.
    std::string StartAgentProcess(std::optional<runtime::Child>& process, const std::string& host,
                                  const std::string& suffix, const std::string& prefix,
                                  const LeasingControlPlane& control) {
        const std::string port_file = base_ + "/port" + suffix;
        const std::string log = base_ + "/agent" + suffix + ".log";
        auto child = runtime::Child::Spawn({runtime::SiblingBinary("cogs-compute"),
                                            "--listen",
                                            "127.0.0.1:0",
                                            "--port-file",
                                            port_file,
                                            "--state",
                                            base_ + "/agent" + suffix + ".db",
                                            "--insecure",  // the test's calls carry no token
                                            "--host",
                                            host,
                                            "--driver",
                                            "container",
                                            "--instances-dir",
                                            base_ + "/instances" + suffix,
                                            "--runc-root",
                                            base_ + "/runc" + suffix,
                                            "--netns-prefix",
                                            prefix,
                                            "--stop-grace-ms",
                                            "5000",
                                            "--control-url",
                                            control.url(),
                                            "--heartbeat-ms",
                                            "200",
                                            "--lease-ttl-ms",
                                            "2000"},
                                           {.log_path = log});
        EXPECT_TRUE(child) << child.error().ToString();
        if (!child) {
            return "";
        }
        process.emplace(std::move(*child));
        std::string port;
        EXPECT_TRUE(WaitFor([&] { return !(port = runtime::ReadFile(port_file).value_or("")).empty(); }))
            << runtime::TailFile(log, 20);
        while (!port.empty() && std::isspace(static_cast<unsigned char>(port.back()))) {
            port.pop_back();
        }
        const std::string url = "http://127.0.0.1:" + port;
        EXPECT_TRUE(WaitFor([&] {
            return Get(url, "/v1/inventory").find(R"("fenced":false)") != std::string::npos;
        })) << host
            << " got no lease: " << runtime::TailFile(log, 20);
        return url;
    }

    static std::string Get(const std::string& url, const std::string& path) {
        auto r = runtime::RunCommand({kCurl, "-sf", url + path}, SteadyClock::now() + kPatience);
        return r && r->exit_status == 0 ? r->output : "";
    }

    // create_instance `id` on `host` through the agent at `url` (202: it boots).
    void Create(const std::string& url, const std::string& key, const std::string& id,
                const std::string& host) {
        json::object input = json::parse(CreateInput(id)).as_object();
        input["host"] = host;
        auto created =
            runtime::RunCommand({kCurl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                                 "Idempotency-Key: " + key, "-H", "Content-Type: application/json", "--data",
                                 json::serialize(input), url + "/v1/actions/create_instance"},
                                SteadyClock::now() + kPatience);
        ASSERT_TRUE(created) << created.error().ToString();
        EXPECT_EQ(created->output, "202") << id << " on " << host;
    }

    // When the container's exit was recorded (its exit file's time, wall ms).
    static int64_t ExitWallMs(const oci::Containers& containers, const std::string& id) {
        struct stat st {};
        EXPECT_EQ(::stat((containers.DirOf(id) + "/exit").c_str(), &st), 0) << id << " has no exit file";
        return int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
};

// SIGKILLed with an instance running: the instance's shim kills it within a second of the last lease
// the agent wrote (cogsd would declare the host down a fence window after its own lease end).
TEST_F(ComputeAgentProcessTest, AKilledAgentLeavesNothingRunningPastItsLease) {
    LeasingControlPlane control(2000);
    const std::string url = StartAgentProcess(agent_process_, "h1", "", prefix_, control);
    ASSERT_FALSE(HasFailure());
    const std::string id = "i" + RandomHex(4);
    Create(url, "wf1/boot/do", id, "h1");
    ASSERT_TRUE(WaitFor([&] { return Container(id).state == oci::ContainerState::kRunning; }))
        << runtime::TailFile(base_ + "/agent.log", 20);
    const pid_t pid = Container(id).pid;

    agent_process_->Signal(SIGKILL);
    ASSERT_TRUE(agent_process_->Wait(kPatience).has_value());
    // The last lease the agent wrote, and the same moment on the wall clock.
    auto end = oci::ReadLeaseFile(base_ + "/instances/.leases/h1");
    ASSERT_TRUE(end) << end.error().ToString();
    const int64_t end_wall_ms =
        WallNowMs() + std::chrono::duration_cast<Millis>(*end - oci::BootTimeNow()).count();

    oci::ContainerStatus ended;
    ASSERT_TRUE(WaitFor([&] { return (ended = Container(id)).state == oci::ContainerState::kExited; }));
    EXPECT_GE(oci::BootTimeNow(), *end) << "killed before its lease ended";
    EXPECT_EQ(ended.exit_status, 128 + SIGKILL);
    EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " still runs";
    const int64_t exit_ms = ExitWallMs(*containers_, id);
    EXPECT_LT(exit_ms, end_wall_ms + 1000) << "ended " << exit_ms - end_wall_ms << " ms after the lease";
}

// Issue 14 point 2, as the control plane sees it: the agent of h1 is SIGKILLed with a server running;
// at the moment cogsd would declare h1 down (its last renewal's receipt + the lease TTL + a fence
// window of 1 s) the server is rebuilt on h2 (same id, as an evacuation does). h1's copy ended
// before that moment, and from then on exactly one copy runs.
TEST_F(ComputeAgentProcessTest, AServerRebuiltElsewhereAfterItsAgentWasKilledRunsOnce) {
    constexpr int64_t kTtlMs = 2000;
    constexpr int64_t kFenceWindowMs = 1000;
    LeasingControlPlane control(kTtlMs);
    const std::string url1 = StartAgentProcess(agent_process_, "h1", "", prefix_, control);
    const std::string url2 = StartAgentProcess(agent_process2_, "h2", "2", prefix2_, control);
    ASSERT_FALSE(HasFailure());
    const oci::Containers on_h2({.dir = base_ + "/instances2",
                                 .runc_root = base_ + "/runc2",
                                 .runc_binary = kRunc,
                                 .shim_binary = runtime::SiblingBinary("cogs-oci-shim")});
    const std::string id = "s" + RandomHex(4);
    Create(url1, "wf1/boot/do", id, "h1");
    ASSERT_TRUE(WaitFor([&] { return Container(id).state == oci::ContainerState::kRunning; }))
        << runtime::TailFile(base_ + "/agent.log", 20);
    const pid_t first = Container(id).pid;

    agent_process_->Signal(SIGKILL);
    ASSERT_TRUE(agent_process_->Wait(kPatience).has_value());
    const int64_t down_wall_ms = control.LastRenewalWallMs("h1") + kTtlMs + kFenceWindowMs;
    while (WallNowMs() < down_wall_ms) {
        std::this_thread::sleep_for(20ms);
    }
    // cogsd declares h1 down: its copy has ended already.
    const oci::ContainerStatus old_copy = Container(id);
    ASSERT_EQ(old_copy.state, oci::ContainerState::kExited)
        << "h1's copy still runs when h1 is declared down";
    EXPECT_LT(ExitWallMs(*containers_, id), down_wall_ms);
    EXPECT_NE(::kill(first, 0), 0);

    // The evacuation: the same server on h2.
    Create(url2, "wf2/evacuate/do", id, "h2");
    oci::ContainerStatus new_copy;
    ASSERT_TRUE(WaitFor([&] {
        return (new_copy = on_h2.Status(id).value_or(oci::ContainerStatus{})).state ==
               oci::ContainerState::kRunning;
    })) << runtime::TailFile(base_ + "/agent2.log", 20);
    // Exactly one copy runs on the machine: h2's.
    int running = 0;
    for (const oci::Containers* host : {static_cast<const oci::Containers*>(&*containers_), &on_h2}) {
        auto all = host->List();
        ASSERT_TRUE(all) << all.error().ToString();
        for (const oci::ContainerInfo& c : *all) {
            running += c.id == id && c.status.state == oci::ContainerState::kRunning ? 1 : 0;
        }
    }
    EXPECT_EQ(running, 1);
    EXPECT_EQ(::kill(new_copy.pid, 0), 0);
    EXPECT_NE(new_copy.pid, first);
}

// Point 5 of issue 14: a volume of the volume service's file driver (an ext4 file), attached to a
// running instance, appears inside at /volumes/<id> without a restart; data written there survives
// its detach and shows in another instance; detach and delete leave no mount and no loop device.
TEST_F(ComputeContainerTest, AVolumeAttachedToARunningInstanceKeepsItsDataForTheNextOne) {
    for (const char* tool : {"/usr/sbin/mkfs.ext4", kLosetup}) {
        if (!fs::exists(tool)) {
            GTEST_SKIP() << tool << " is missing: scripts/install-deps installs e2fsprogs and util-linux";
        }
    }
    const std::string vid = "v" + RandomHex(4);
    const std::string file = MakeVolume(vid);
    ASSERT_FALSE(file.empty());

    const std::string a = "a" + RandomHex(4);
    const std::string b = "b" + RandomHex(4);
    for (const std::string& id : {a, b}) {
        ASSERT_TRUE(Do("create_instance", "wf-" + id + "/boot/do", CreateInput(id)));
    }
    ASSERT_TRUE(Await([&] { return StateOf(a) == "ACTIVE" && StateOf(b) == "ACTIVE"; }));
    const pid_t pid_a = Container(a).pid;

    const json::array attachments{{{"volume_id", vid}, {"device", "/dev/vdb"}, {"path", file}}};
    const std::string data = "written by " + a + " " + RandomHex(8);
    const std::string mounted_inside = "grep -c ' /volumes/" + vid + " ' /proc/self/mountinfo; ";

    // Attached to a running instance: mounted inside, no restart.
    auto attached =
        RunToEnd("attach_volumes", "wf-va/mount/do", {{"id", a}, {"host", "h1"}, {"volumes", attachments}});
    ASSERT_TRUE(attached) << attached.error().ToString();
    EXPECT_EQ(json::parse(attached->output),
              json::parse(R"({"id":")" + a + R"(","host":"h1","volume_ids":[")" + vid + R"("]})"));
    EXPECT_EQ(Exec(a, mounted_inside + "echo '" + data + "' > /volumes/" + vid +
                          "/hello && sync && cat /volumes/" + vid + "/hello"),
              "1\n" + data + "\nstatus=0");
    EXPECT_EQ(Container(a).pid, pid_a) << "not restarted";
    EXPECT_NE(LoopsOf(file), "") << "a loop device backs it";
    EXPECT_EQ(Instance(a).at("volumes"),
              json::parse(R"([{"volume_id":")" + vid + R"(","path":")" + file + R"("}])"));

    // Busy inside (a process works in it): the detach fails, and nothing is unmounted lazily.
    const std::string busy_script = "cd /volumes/" + vid + " && exec sleep 1000";
    std::optional<runtime::Child> busy;
    {
        auto child = runtime::Child::Spawn(
            {kRunc, "--root", base_ + "/runc", "exec", a, "/bin/sh", "-c", busy_script});
        ASSERT_TRUE(child) << child.error().ToString();
        busy.emplace(std::move(*child));
    }
    ASSERT_TRUE(Await([&] { return Exec(a, "pidof sleep >/dev/null && echo yes") == "yes\nstatus=0"; }));
    auto refused = RunToEnd("detach_volumes", "wf-va/busy/do",
                            {{"id", a}, {"host", "h1"}, {"volume_ids", json::array{json::value(vid)}}});
    ASSERT_FALSE(refused) << refused->output;
    EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition) << refused.error().ToString();
    EXPECT_NE(refused.error().message.find("busy"), std::string::npos) << refused.error().ToString();
    EXPECT_EQ(Exec(a, mounted_inside + "cat /volumes/" + vid + "/hello"), "1\n" + data + "\nstatus=0");
    EXPECT_EQ(Exec(a, "kill $(pidof sleep) && echo done"), "done\nstatus=0");
    (void)busy->Wait(kPatience);

    // Detached: gone from inside, no mount and no loop device left on the host.
    auto detached = RunToEnd("detach_volumes", "wf-va/mount/undo",
                             {{"id", a}, {"host", "h1"}, {"volume_ids", json::array{json::value(vid)}}});
    ASSERT_TRUE(detached) << detached.error().ToString();
    EXPECT_EQ(json::parse(detached->output).at("volume_ids"), json::array{json::value(vid)});
    EXPECT_EQ(Exec(a, mounted_inside), "0\nstatus=1");
    EXPECT_EQ(MountsUnder(containers_->DirOf(a) + "/volumes"),
              std::vector<std::string>{containers_->DirOf(a) + "/volumes"})
        << "only the instance's own shared volumes directory";
    std::string loops;
    EXPECT_TRUE(Await([&] { return (loops = LoopsOf(file)).empty(); })) << loops;

    // Attached to another instance: the data is there; and after its reboot too.
    auto moved =
        RunToEnd("attach_volumes", "wf-vb/mount/do", {{"id", b}, {"host", "h1"}, {"volumes", attachments}});
    ASSERT_TRUE(moved) << moved.error().ToString();
    EXPECT_EQ(Exec(b, "cat /volumes/" + vid + "/hello"), data + "\nstatus=0");
    const pid_t pid_b = Container(b).pid;
    auto rebooted = RunToEnd("reboot_instance", "wf-vb/reboot/do", {{"id", b}, {"host", "h1"}});
    ASSERT_TRUE(rebooted) << rebooted.error().ToString();
    ASSERT_TRUE(Await([&] { return StateOf(b) == "ACTIVE" && Container(b).pid != pid_b; }));
    EXPECT_EQ(Exec(b, "cat /volumes/" + vid + "/hello"), data + "\nstatus=0");

    // The agent restarts: b is adopted (the same process) with its volume still mounted inside.
    const pid_t adopted = Container(b).pid;
    StartService();
    ASSERT_TRUE(Await([&] { return StateOf(b) == "ACTIVE"; }));
    EXPECT_EQ(Container(b).pid, adopted);
    EXPECT_EQ(Exec(b, "cat /volumes/" + vid + "/hello"), data + "\nstatus=0");
    EXPECT_EQ(Instance(b).at("volumes"),
              json::parse(R"([{"volume_id":")" + vid + R"(","path":")" + file + R"("}])"));
    EXPECT_EQ(Instance(a).at("volumes"), json::array());

    // Deleted with the volume attached: nothing of it is left, the volume's file and data are.
    for (const std::string& id : {a, b}) {
        ASSERT_TRUE(
            Do("delete_instance", "wf-" + id + "/delete/do", R"({"id":")" + id + R"(","host":"h1"})"));
    }
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] {
        left = Leftovers(a);
        for (const std::string& l : Leftovers(b)) {
            left.push_back(l);
        }
        for (const std::string& m : MountsUnder(base_)) {
            left.push_back("mount " + m);
        }
        if (std::string loop = LoopsOf(file); !loop.empty()) {
            left.push_back(loop);
        }
        return left.empty();
    }));
    EXPECT_EQ(left, std::vector<std::string>{});
    auto check = runtime::RunCommand({"/usr/sbin/e2fsck", "-n", "-f", file}, SteadyClock::now() + kPatience);
    ASSERT_TRUE(check) << check.error().ToString();
    EXPECT_EQ(check->exit_status, 0) << "the file system is clean after its unmounts: " << check->output;
}

// The evacuation of a server with a volume, as one machine sees it: the server's old instance is
// stopped (its host fenced itself; nobody unmounts there, its agent is gone), the volume service
// forgets the attachment (a forced detach), and the instance rebuilt on another host mounts the
// volume while the old mount lingers. Both mounts share the file's one loop device (one file
// system, never two on one file), the data written before is there, and once the old instance is
// deleted (its host came back) the new one keeps the volume, and its data.
TEST_F(ComputeContainerTest, AnEvacuatedServersVolumeKeepsItsDataWhileTheOldHostsMountLingers) {
    for (const char* tool : {"/usr/sbin/mkfs.ext4", kLosetup}) {
        if (!fs::exists(tool)) {
            GTEST_SKIP() << tool << " is missing: scripts/install-deps installs e2fsprogs and util-linux";
        }
    }
    const std::string vid = "v" + RandomHex(4);
    const std::string file = MakeVolume(vid);
    ASSERT_FALSE(file.empty());
    const std::string old_one = "o" + RandomHex(4);
    const std::string new_one = "n" + RandomHex(4);
    const json::array attachments{{{"volume_id", vid}, {"path", file}}};

    ASSERT_TRUE(Do("create_instance", "wf-old/boot/do", CreateInput(old_one)));
    ASSERT_TRUE(Await([&] { return StateOf(old_one) == "ACTIVE"; }));
    ASSERT_TRUE(RunToEnd("attach_volumes", "wf-old/mount/do",
                         {{"id", old_one}, {"host", "h1"}, {"volumes", attachments}}));
    const std::string data = "before the evacuation " + RandomHex(8);
    ASSERT_EQ(Exec(old_one, "echo '" + data + "' > /volumes/" + vid + "/hello && sync && echo ok"),
              "ok\nstatus=0");
    ASSERT_TRUE(Do("stop_instance", "wf-old/stop/do", R"({"id":")" + old_one + R"(","host":"h1"})"));
    ASSERT_TRUE(Await([&] { return Container(old_one).state == oci::ContainerState::kExited; }));
    ASSERT_EQ(MountsUnder(containers_->DirOf(old_one) + "/volumes").size(), 2u) << "the old mount lingers";

    ASSERT_TRUE(Do("create_instance", "wf-new/boot/do", CreateInput(new_one)));
    ASSERT_TRUE(Await([&] { return StateOf(new_one) == "ACTIVE"; }));
    auto mounted = RunToEnd("attach_volumes", "wf-new/mount/do",
                            {{"id", new_one}, {"host", "h1"}, {"volumes", attachments}});
    ASSERT_TRUE(mounted) << mounted.error().ToString();
    EXPECT_EQ(Exec(new_one, "cat /volumes/" + vid + "/hello"), data + "\nstatus=0");
    const std::string loops = LoopsOf(file);
    EXPECT_EQ(std::count(loops.begin(), loops.end(), '\n'), 1)
        << "one loop device for both mounts: " << loops;

    // The old host comes back and its instance is deleted: the new one keeps the volume.
    ASSERT_TRUE(Do("delete_instance", "wf-old/delete/do", R"({"id":")" + old_one + R"(","host":"h1"})"));
    ASSERT_TRUE(Await([&] { return Leftovers(old_one).size() <= 1; }));  // the namespaces of both remain
    EXPECT_EQ(Exec(new_one, "echo after >> /volumes/" + vid + "/hello && cat /volumes/" + vid + "/hello"),
              data + "\nafter\nstatus=0");

    ASSERT_TRUE(Do("delete_instance", "wf-new/delete/do", R"({"id":")" + new_one + R"(","host":"h1"})"));
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] {
        left = Leftovers(new_one);
        for (const std::string& m : MountsUnder(base_)) {
            left.push_back("mount " + m);
        }
        if (std::string loop = LoopsOf(file); !loop.empty()) {
            left.push_back(loop);
        }
        return left.empty();
    }));
    EXPECT_EQ(left, std::vector<std::string>{});
}

// A server on a network: its port plugged into the network's bridge, its user_data run at boot, its
// SSH public keys in /run/cogs.
struct Server {
    std::string id, network_id, ip, mac, user_data;
    std::vector<std::string> public_keys{};
};

std::string NetworkedInput(const Server& s) {
    json::object o{{"id", s.id},
                   {"host", "h1"},
                   {"vcpus", 1},
                   {"ram_mb", 64},
                   {"disk_gb", 0},
                   {"image", "busybox"},
                   {"name", "web " + s.id},
                   {"project_id", "p1"},
                   {"port_id", "port-" + s.id},
                   {"mac_address", s.mac},
                   {"ip_address", s.ip},
                   {"network_id", s.network_id},
                   {"cidr", "10.77.0.0/24"},
                   {"gateway_ip", "10.77.0.1"}};
    if (!s.user_data.empty()) {
        o["user_data"] = wire::EncodeBase64(s.user_data);
    }
    if (!s.public_keys.empty()) {
        o["public_keys"] = wire::ToArray(s.public_keys);
    }
    return json::serialize(o);
}

TEST_F(ComputeContainerTest, InstancesOnOneNetworkReachEachOtherAndNotThoseOnAnother) {
    const std::string net1 = "net1-" + RandomHex(3);
    const std::string net2 = "net2-" + RandomHex(3);  // the same subnet, another network
    const Server a{"a" + RandomHex(4), net1, "10.77.0.10", "fa:16:3e:77:00:0a", ""};
    // b's user_data fetches a's page (busybox nc: its static wget has crashed on some machines)
    // until it answers, and prints it on b's console.
    const std::string fetch = "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 10.77.0.10 80";
    const Server b{"b" + RandomHex(4),
                   net1,
                   "10.77.0.11",
                   "fa:16:3e:77:00:0b",
                   "i=0\n"
                   "while [ $i -lt 60 ]; do\n"
                   "  out=$(" +
                       fetch +
                       ")\n"
                       "  case \"$out\" in *\"web " +
                       a.id +
                       "\"*) echo \"b fetched: $out\"; exit 0;; esac\n"
                       "  i=$((i+1)); sleep 1\n"
                       "done\n"
                       "echo 'b: no answer'\n",
                   {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeys b@test"}};
    for (const Server& s : {a, b}) {
        auto created = Do("create_instance", "wf-" + s.id + "/boot/do", NetworkedInput(s));
        ASSERT_TRUE(created) << created.error().ToString();
    }
    ASSERT_TRUE(Await([&] { return StateOf(a.id) == "ACTIVE" && StateOf(b.id) == "ACTIVE"; }));

    // a's port inside its namespace: the MAC, the address with the subnet's prefix, the route.
    const std::string ns = prefix_ + "-h1." + a.id;  // <prefix>-<host>.<instance id>
    auto addr = runtime::RunCommand({kIp, "-n", ns, "-o", "addr", "show", "dev", "eth0"},
                                    SteadyClock::now() + kPatience);
    ASSERT_TRUE(addr);
    EXPECT_NE(addr->output.find("inet 10.77.0.10/24"), std::string::npos) << addr->output;
    auto link = runtime::RunCommand({kIp, "-n", ns, "-o", "link", "show", "dev", "eth0"},
                                    SteadyClock::now() + kPatience);
    ASSERT_TRUE(link);
    EXPECT_NE(link->output.find("fa:16:3e:77:00:0a"), std::string::npos) << link->output;
    auto route =
        runtime::RunCommand({kIp, "-n", ns, "route", "show", "default"}, SteadyClock::now() + kPatience);
    ASSERT_TRUE(route);
    EXPECT_NE(route->output.find("default via 10.77.0.1 dev eth0"), std::string::npos) << route->output;
    // What it knows of itself.
    auto meta = runtime::ReadFile(containers_->DirOf(b.id) + "/rootfs/run/cogs/meta.json");
    ASSERT_TRUE(meta);
    const json::value m = json::parse(*meta);
    EXPECT_EQ(m.at("user_data"), json::value(b.user_data));
    EXPECT_EQ(m.at("public_keys"), json::parse(R"(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeys b@test"])"));
    EXPECT_EQ(runtime::ReadFile(containers_->DirOf(b.id) + "/rootfs/run/cogs/authorized_keys").value_or(""),
              "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeys b@test\n");
    // a has no keys: none in its meta.json, no authorized_keys.
    auto meta_a = runtime::ReadFile(containers_->DirOf(a.id) + "/rootfs/run/cogs/meta.json");
    ASSERT_TRUE(meta_a);
    EXPECT_EQ(json::parse(*meta_a).at("public_keys"), json::array());
    EXPECT_FALSE(fs::exists(containers_->DirOf(a.id) + "/rootfs/run/cogs/authorized_keys"));
    EXPECT_EQ(m.at("addresses"),
              json::parse(R"([{"port_id":"port-)" + b.id +
                          R"(","mac_address":"fa:16:3e:77:00:0b",)"
                          R"("ip_address":"10.77.0.11","network_id":")" +
                          net1 + R"(","cidr":"10.77.0.0/24","gateway_ip":"10.77.0.1","prefix_len":24}])"));

    // b's script reached a: a's page is on b's console. And b is still ACTIVE once its script ended.
    const auto console = [&](const std::string& id) {
        json::value c = GetJson(*service_, "/v1/instances/" + id + "/console");
        return c.is_object() ? std::string(c.at("output").as_string()) : std::string();
    };
    ASSERT_TRUE(Await([&] { return console(b.id).find("b fetched:") != std::string::npos; }))
        << console(b.id);
    EXPECT_NE(console(b.id).find("(" + a.id + ")"), std::string::npos) << console(b.id);
    ASSERT_TRUE(Await([&] {
        return console(b.id).find("user_data exited with status 0") != std::string::npos;
    })) << console(b.id);
    EXPECT_EQ(StateOf(b.id), "ACTIVE");
    EXPECT_EQ(Instance(b.id).at("crashes"), 0);

    // c, on the other network (same subnet), tries the same once a has been seen answering: nothing.
    const Server c{"c" + RandomHex(4), net2, "10.77.0.12", "fa:16:3e:77:00:0c",
                   "n=0\n"
                   "for i in 1 2 3; do\n"
                   "  out=$(" +
                       fetch +
                       ")\n"
                       "  case \"$out\" in *web*) echo \"c reached a: $out\";; *) n=$((n+1));; esac\n"
                       "done\n"
                       "echo \"c: $n of 3 fetches got no answer\"\n"};
    ASSERT_TRUE(Do("create_instance", "wf-" + c.id + "/boot/do", NetworkedInput(c)));
    ASSERT_TRUE(Await([&] { return console(c.id).find("fetches got no answer") != std::string::npos; }))
        << console(c.id);
    EXPECT_NE(console(c.id).find("c: 3 of 3 fetches got no answer"), std::string::npos) << console(c.id);
    EXPECT_EQ(console(c.id).find("reached"), std::string::npos) << console(c.id);

    // Deleted: no namespace and no port's veth is left (the bridges are cogs-network's).
    for (const Server& s : {a, b, c}) {
        ASSERT_TRUE(
            Do("delete_instance", "wf-" + s.id + "/delete/do", R"({"id":")" + s.id + R"(","host":"h1"})"));
    }
    std::vector<std::string> left;
    EXPECT_TRUE(Await([&] {
        left = Namespaces(prefix_);
        for (const std::string& l : Links(prefix_)) {
            if (l.starts_with(prefix_ + "-p")) {
                left.push_back(l);
            }
        }
        return left.empty();
    }));
    EXPECT_EQ(left, std::vector<std::string>{});
}

TEST_F(ComputeContainerTest, CreateInstanceRefusesBadPortFieldsAndUserDataNamingTheField) {
    const auto refused = [&](json::object extra) {
        json::object o =
            json::parse(NetworkedInput({"x" + RandomHex(4), "n1", "10.77.0.10", "fa:16:3e:77:00:0a", ""}))
                .as_object();
        for (auto& [k, v] : extra) {
            o[k] = v;
        }
        auto r = Do("create_instance", "wf-x" + RandomHex(4) + "/boot/do", json::serialize(o));
        return r ? std::string("accepted") : r.error().message;
    };
    EXPECT_EQ(refused({{"cidr", "10.77.0.0/33"}}).rfind("cidr: ", 0), 0u);
    EXPECT_EQ(
        refused({{"gateway_ip", "10.78.0.1"}}).rfind("gateway_ip: must be a host address of 10.77.0.0/24", 0),
        0u);
    EXPECT_EQ(refused({{"ip_address", "10.77.1.5"}}).rfind("ip_address: must be a host address", 0), 0u);
    EXPECT_EQ(refused({{"user_data", "not base64!"}}), "user_data: must be base64 (RFC 4648, one line)");
    EXPECT_EQ(refused({{"user_data", wire::EncodeBase64(std::string(64 * 1024 + 1, 'x'))}}),
              "user_data: must be at most 65536 bytes once decoded");
    EXPECT_TRUE(Namespaces(prefix_).empty()) << "nothing was made";
}

}  // namespace
}  // namespace cogs::services::compute
