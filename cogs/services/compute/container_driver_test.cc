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
#include "cogs/oci/container.h"
#include "cogs/oci/runc.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/service.h"
#include "cogs/wire/base64.h"

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
        for (const std::string& name : Links(*prefix)) {  // bridges (and a veth a failure left)
            (void)runtime::RunCommand({kIp, "link", "delete", "dev", name}, SteadyClock::now() + 30s);
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
        auto r = runtime::RunCommand({kIp, "netns", "exec", prefix_ + "-h1." + id, kBusybox, "wget", "-q",
                                      "-O", "-", "http://127.0.0.1:80/"},
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

// A server on a network: its port plugged into the network's bridge, its user_data run at boot.
struct Server {
    std::string id, network_id, ip, mac, user_data;
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
    return json::serialize(o);
}

TEST_F(ComputeContainerTest, InstancesOnOneNetworkReachEachOtherAndNotThoseOnAnother) {
    const std::string net1 = "net1-" + RandomHex(3);
    const std::string net2 = "net2-" + RandomHex(3);  // the same subnet, another network
    const Server a{"a" + RandomHex(4), net1, "10.77.0.10", "fa:16:3e:77:00:0a", ""};
    // b's user_data fetches a's page (busybox nc: its static wget has crashed on some machines)
    // until it answers, and prints it on b's console.
    const std::string fetch = "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 10.77.0.10 80";
    const Server b{"b" + RandomHex(4), net1, "10.77.0.11", "fa:16:3e:77:00:0b",
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
                       "echo 'b: no answer'\n"};
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
