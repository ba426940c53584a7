// Real instances end to end (issue 14's proof): `cogs dev --driver container`, every server a
// container under runc on this machine. What is checked is what an operator sees: the API's server,
// events and console; runc's own state; and, after the delete, a listing of the machine — containers
// (runc list under each agent's root), network namespaces, links, loop devices, mounts, cgroups —
// in which nothing of this cloud is left.
//
// As root with runc, /bin/busybox and ip (skipped otherwise, saying what is missing). Every name on
// the machine comes from this run's ids (server, port and network UUIDs, the data dir) and only
// those are looked for: other clouds on the machine are left alone. A failing test still removes
// what it made (the fixture's TearDown: `cogs dev` stopped, then every container under this cloud's
// runc roots force-deleted, the namespaces and cgroups named by its servers removed).
//
// Timing: the kill → running again figure is measured and reported (RecordProperty
// "kill_to_running_ms", and on stdout), bounded only generously (30 s): the suite runs on a loaded
// machine.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "cogs/base/time.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// What the machine lacks for real instances ("" when nothing).
std::string Missing() {
    std::string missing;
    if (::geteuid() != 0) missing += " root";
    if (::access("/usr/sbin/runc", X_OK) != 0) missing += " runc";
    if (::access("/bin/busybox", X_OK) != 0) missing += " busybox-static";
    if (Shell("command -v ip").first != 0) missing += " iproute2";
    return missing;
}

// A container's state as runc says it: {"status", "pid"}, or null when runc knows no such container.
json::value RuncState(const std::string& root, const std::string& id) {
    auto [rc, out] = Shell("runc --root '" + root + "' state '" + id + "' 2>/dev/null");
    if (rc != 0) return nullptr;
    boost::system::error_code ec;
    json::value v = json::parse(out, ec);
    return ec ? json::value(nullptr) : v;
}

class RealInstancesTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (const std::string missing = Missing(); !missing.empty()) {
            GTEST_SKIP() << "real instances need root, runc, busybox-static and iproute2; missing:"
                         << missing;
        }
    }

    void TearDown() override {
        if (dev_ == nullptr) return;
        if (HasFailure()) {
            std::cerr << "cogs dev data dir: " << dev_->data_dir() << "\n";
            for (const auto& p : dev_->processes()) {
                if (p.name.rfind("cogs-compute", 0) == 0 || p.name == "cogsd") {
                    std::cerr << "---- " << p.name << "\n" << runtime::TailFile(p.log, 20);
                }
            }
        }
        dev_.reset();  // stops `cogs dev`; the containers outlive their agents, so:
        RemoveLeftovers();
    }

    // Whatever of this cloud is still on the machine goes: the containers under its runc roots
    // (force-deleted), then the namespaces and cgroups named by its servers, then the runc roots.
    void RemoveLeftovers() {
        if (run_dir_.empty() || run_dir_.rfind("/run/cogs/dev-", 0) != 0) return;
        std::error_code ec;
        for (const auto& host : fs::directory_iterator(run_dir_, ec)) {
            const std::string root = host.path().string() + "/runc";
            auto [rc, ids] = Shell("runc --root '" + root + "' list -q 2>/dev/null");
            std::istringstream lines(ids);
            for (std::string id; std::getline(lines, id);) {
                if (!id.empty()) {
                    Shell("runc --root '" + root + "' delete -f '" + id + "' 2>&1");
                    servers_.insert(id);
                }
            }
        }
        for (const std::string& id : servers_) {
            Shell("ip netns delete 'cg-" + id + "' 2>/dev/null");
            Shell("find /sys/fs/cgroup -maxdepth 4 -type d \\( -name '" + id + "' -o -name '*." + id +
                  "' \\) -exec rmdir {} + 2>/dev/null");
        }
        fs::remove_all(run_dir_, ec);
    }

    void StartCloud() {
        auto dev = DevCloud::Start(DevOptions{2, 20, {"--driver", "container"}});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
        auto text = runtime::ReadFile(dev_->data_dir() + "/dev.json");
        ASSERT_TRUE(text) << text.error().message;
        run_dir_ = S(json::parse(*text), "run_dir");
        ASSERT_EQ(run_dir_.rfind("/run/cogs/dev-", 0), 0u) << "dev.json: " << *text;
    }

    ApiReply Get(const std::string& path) { return dev_->Admin().Must("GET", path); }
    std::string Status(const std::string& path, std::string_view key) {
        return S(At(Get(path).body, key), "status");
    }
    bool WaitStatus(const std::string& path, std::string_view key, const std::string& want,
                    Duration timeout = 60s) {
        return WaitUntil([&] { return Status(path, key) == want; }, timeout, 50ms);
    }
    std::string RuncRoot(const std::string& host) const { return run_dir_ + "/" + host + "/runc"; }

    // The types of a server's events, oldest first.
    std::vector<std::string> EventTypes(const std::string& id) {
        std::vector<std::string> types;
        const json::value list = At(Get("/v1/servers/" + id + "/events?limit=1000").body, "events");
        if (list.is_array()) {
            for (const auto& e : list.as_array())
                types.push_back(S(e, "type"));
        }
        return types;
    }

    std::unique_ptr<DevCloud> dev_;
    std::string run_dir_;
    std::set<std::string> servers_;  // every server id made (the names of its objects on the machine)
};

int IndexOf(const std::vector<std::string>& v, const std::string& x, int from = 0) {
    for (int i = from; i < static_cast<int>(v.size()); ++i) {
        if (v[i] == x) return i;
    }
    return -1;
}

std::string Join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v)
        out += (out.empty() ? "" : " ") + s;
    return out;
}

TEST_F(RealInstancesTest, AServerRunsShowsItsConsoleComesBackAfterAKillAndLeavesNothingWhenDeleted) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    ApiClient admin = dev_->Admin();

    ApiReply n = admin.Must("POST", "/v1/networks", R"({"name":"real"})");
    ASSERT_EQ(n.status, 202) << n.text;
    const std::string network = S(At(n.body, "network"), "id");
    ASSERT_TRUE(WaitStatus("/v1/networks/" + network, "network", "ACTIVE"));
    ApiReply sn = admin.Must("POST", "/v1/subnets",
                             R"({"network_id":")" + network + R"(","cidr":"10.77.0.0/24","name":"real"})");
    ASSERT_EQ(sn.status, 202) << sn.text;
    const std::string subnet = S(At(sn.body, "subnet"), "id");
    ASSERT_TRUE(WaitStatus("/v1/subnets/" + subnet, "subnet", "ACTIVE"));

    // ---- it boots: ACTIVE in the API, a running container in runc ----
    const auto requested = SteadyClock::now();
    ApiReply s =
        admin.Must("POST", "/v1/servers",
                   R"({"name":"web","flavor":"m1.tiny","image":"busybox","network_id":")" + network + "\"}");
    ASSERT_EQ(s.status, 202) << s.text;
    const std::string id = S(At(s.body, "server"), "id");
    servers_.insert(id);
    ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE")) << Get("/v1/servers/" + id).text;
    std::cout << "request to ACTIVE: "
              << std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - requested).count()
              << " ms\n";
    const json::value server = At(Get("/v1/servers/" + id).body, "server");
    const std::string host = S(server, "host");
    const std::string port = S(server, "port_id");
    const json::value state = RuncState(RuncRoot(host), id);
    ASSERT_EQ(S(state, "status"), "running") << json::serialize(state);
    const int64_t first_pid = I(state, "pid");
    ASSERT_GT(first_pid, 1);

    // ---- its console, through cogsd's API and the CLI ----
    const std::string boot_line = "cogs: web booted";
    std::string output;
    ASSERT_TRUE(WaitUntil(
        [&] {
            output = S(At(Get("/v1/servers/" + id + "/console").body, "console"), "output");
            return output.find(boot_line) != std::string::npos;
        },
        30s, 100ms))
        << "console: " << output;
    ApiReply last = Get("/v1/servers/" + id + "/console?length=1");
    ASSERT_EQ(last.status, 200) << last.text;
    EXPECT_EQ(S(At(last.body, "console"), "host"), host);
    EXPECT_EQ(Get("/v1/servers/" + id + "/console?length=0").status, 400);
    auto [cli_rc, cli_out] = Shell("COGS_URL=" + dev_->api_url() + " COGS_TOKEN=" + dev_->admin_token() +
                                   " '" + runtime::SiblingBinary("cogs") + "' server console web 2>&1");
    EXPECT_EQ(cli_rc, 0) << cli_out;
    EXPECT_NE(cli_out.find(boot_line), std::string::npos) << cli_out;

    // ---- its process killed from outside: CRASHED, restarted by the supervisor ----
    const auto killed_at = SteadyClock::now();
    ASSERT_EQ(::kill(static_cast<pid_t>(first_pid), SIGKILL), 0);
    json::value again;
    ASSERT_TRUE(WaitUntil(
        [&] {
            again = RuncState(RuncRoot(host), id);
            return S(again, "status") == "running" && I(again, "pid") != first_pid;
        },
        30s, 10ms))
        << "not running again: " << json::serialize(again);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - killed_at);
    RecordProperty("kill_to_running_ms", static_cast<int>(took.count()));
    std::cout << "kill -9 of the instance's process to its restarted container running: " << took.count()
              << " ms\n";
    std::vector<std::string> events;
    EXPECT_TRUE(WaitUntil(
        [&] {
            events = EventTypes(id);
            const int crashed = IndexOf(events, "crashed");
            return crashed >= 0 && IndexOf(events, "restarted", crashed) > crashed;
        },
        30s, 100ms))
        << "events: " << Join(events);
    EXPECT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE"));
    ApiClient agent = dev_->Service("compute-" + host.substr(host.rfind('-') + 1));
    json::value instance;
    // The agent sees the new process at its next look (every 200 ms), after runc does.
    EXPECT_TRUE(WaitUntil(
        [&] {
            instance = At(agent.Must("GET", "/v1/instances/" + id).body, "instance");
            return S(instance, "state") == "ACTIVE";
        },
        30s, 50ms))
        << json::serialize(instance);
    EXPECT_EQ(I(instance, "crashes"), 1) << "one crash, one restart: " << json::serialize(instance);

    // ---- deleted: nothing of it is left on the machine ----
    ApiReply del = admin.Must("DELETE", "/v1/servers/" + id);
    ASSERT_EQ(del.status, 202) << del.text;
    ASSERT_TRUE(WaitUntil([&] { return Get("/v1/servers/" + id).status == 404; }, 60s, 50ms));
    ASSERT_EQ(admin.Must("DELETE", "/v1/subnets/" + subnet).status, 202);
    ASSERT_TRUE(WaitUntil([&] { return Get("/v1/subnets/" + subnet).status == 404; }, 60s, 50ms));
    ASSERT_EQ(admin.Must("DELETE", "/v1/networks/" + network).status, 202);
    ASSERT_TRUE(WaitUntil([&] { return Get("/v1/networks/" + network).status == 404; }, 60s, 50ms));

    // The delete is answered once the instance is gone from the agent; its removal (runc state,
    // cgroups, rootfs, namespace) may finish just after: wait for the machine, then list it all.
    const std::vector<std::string> ours = {id, port, network};
    auto leftovers = [&] {
        std::vector<std::string> found;
        std::error_code ec;
        for (const auto& h : fs::directory_iterator(run_dir_, ec)) {
            auto [rc, list] = Shell("runc --root '" + h.path().string() + "/runc' list -q 2>&1");
            if (rc != 0 || !list.empty())
                found.push_back("container under " + h.path().string() + ": " + list);
        }
        auto [nrc, netns] = Shell("ip netns list 2>&1");
        auto [lrc, links] = Shell("ip -o -d link show 2>&1");
        auto [orc, loops] = Shell("losetup -a 2>&1");
        auto [mrc, mounts] = Shell("cat /proc/self/mountinfo");
        auto [crc, cgroups] = Shell("find /sys/fs/cgroup -maxdepth 4 -type d \\( -name '" + id +
                                    "' -o -name '*." + id + "' \\) 2>/dev/null");
        for (const std::string& name : ours) {
            if (netns.find(name) != std::string::npos) found.push_back("network namespace of " + name);
            if (links.find(name) != std::string::npos) found.push_back("link (bridge or veth) of " + name);
            if (mounts.find(name) != std::string::npos) found.push_back("mount of " + name);
        }
        if (loops.find(dev_->data_dir()) != std::string::npos) found.push_back("loop device: " + loops);
        if (mounts.find(dev_->data_dir()) != std::string::npos) found.push_back("mount under the data dir");
        if (!cgroups.empty()) found.push_back("cgroups: " + cgroups);
        for (const auto& h : fs::directory_iterator(dev_->data_dir() + "/instances", ec)) {
            if (fs::exists(h.path() / id)) found.push_back("instance directory " + (h.path() / id).string());
        }
        return found;
    };
    std::vector<std::string> left;
    EXPECT_TRUE(WaitUntil([&] { return (left = leftovers()).empty(); }, 30s, 100ms))
        << "left: " << Join(left);
}

}  // namespace
}  // namespace cogs::testing
