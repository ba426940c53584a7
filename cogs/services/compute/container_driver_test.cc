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
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/oci/container.h"
#include "cogs/oci/runc.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/service.h"

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

// Kills and removes everything under one test directory, and the namespaces of its prefix (kept in
// <base>/prefix).
void CleanUp(const std::string& base) {
    oci::Runc runc({kRunc, base + "/runc", 30s});
    if (auto states = runc.List()) {
        for (const oci::RuncState& s : *states) {
            (void)runc.Delete(s.id, true);  // best effort: TearDown must go on whatever fails
        }
    }
    oci::Containers containers({.dir = base + "/instances",
                                .runc_root = base + "/runc",
                                .runc_binary = kRunc,
                                .shim_binary = runtime::SiblingBinary("cogs-oci-shim")});
    std::error_code ec;
    for (fs::directory_iterator it(base + "/instances", ec), end; !ec && it != end; it.increment(ec)) {
        (void)containers.Remove(it->path().filename().string());
    }
    if (auto prefix = runtime::ReadFile(base + "/prefix"); prefix && !prefix->empty()) {
        for (const std::string& name : Namespaces(*prefix)) {
            (void)runtime::RunCommand({kIp, "netns", "delete", name}, SteadyClock::now() + 30s);
        }
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
        containers_.emplace(oci::ContainersOptions{.dir = base_ + "/instances",
                                                   .runc_root = base_ + "/runc",
                                                   .runc_binary = kRunc,
                                                   .shim_binary = runtime::SiblingBinary("cogs-oci-shim")});
        StartService();
    }

    void TearDown() override {
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
        d.control_urls = control_urls_;
        d.images_dir = base_ + "/images";
        auto driver = MakeComputeDriver("container", d);
        ASSERT_TRUE(driver) << driver.error().ToString();
        ComputeOptions options;
        options.hosts = {HostSpec{.name = "h1"}};
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
        auto r = runtime::RunCommand({kIp, "netns", "exec", prefix_ + "-" + id, kBusybox, "wget", "-q", "-O",
                                      "-", "http://127.0.0.1:80/"},
                                     SteadyClock::now() + kPatience);
        return r && r->exit_status == 0 ? r->output : "";
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
        std::error_code ec;
        for (fs::directory_iterator it("/sys/fs/cgroup", ec), end; !ec && it != end; it.increment(ec)) {
            if (fs::exists(it->path() / "cogs" / id)) {
                out.push_back((it->path() / "cogs" / id).string());
            }
        }
        if (fs::exists(fs::path("/sys/fs/cgroup/cogs") / id)) {
            out.push_back("/sys/fs/cgroup/cogs/" + id);
        }
        for (const std::string& ns : Namespaces(prefix_)) {
            out.push_back("/run/netns/" + ns);
        }
        return out;
    }

    std::string base_;
    std::string prefix_;
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

}  // namespace
}  // namespace cogs::services::compute
