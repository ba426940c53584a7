// Real instances end to end (issue 14's proof): `cogs dev --driver container`, every server a
// container under runc on this machine. What is checked is what an operator sees: the API's servers,
// volumes, events and consoles; runc's own state; and, after the deletes, a listing of the machine —
// containers (runc list under each agent's root), network namespaces, bridges and veths, loop
// devices backed by the cloud's volume files, mounts, cgroups — in which nothing of this cloud is
// left. Each test runs its own cloud (about a second to start):
//
//   AServerRuns...LeavesNothingWhenDeleted   boot, console, kill -9 of its process → restarted,
//                                            answering again on its address
//   ServersOnOneNetworkReachEachOther...     b's user_data fetches a's page; c on another network
//                                            (same CIDR) cannot, though it reaches its neighbour
//   AnAgentKilled...RunsEachServerOnceElsewhere  SIGKILL of an agent (`cogs dev` paused so that it
//                                            does not restart it): its servers rebuilt elsewhere
//                                            with the same addresses, answering, never two copies;
//                                            a volume's data comes along
//   AVolumeWrittenByOneServerIsReadByAnother write, detach, attach elsewhere, read: through the
//                                            instances' own consoles
//   BadUserDataIsRefusedAndNothingIsMade     400 naming user_data; no server, port or container
//
// As root with runc, /bin/busybox and ip (skipped otherwise, saying what is missing). Every name on
// the machine comes from this run's ids (server, port, network and volume UUIDs, the data dir) and
// only those are looked for: other clouds on the machine are left alone. A failing test still removes
// what it made (the fixture's TearDown: `cogs dev` stopped, then every container under this cloud's
// runc roots force-deleted, the mounts under its data dir unmounted, the loop devices of its volume
// files detached, the namespaces, links and cgroups named by its ids removed).
//
// Timing: figures are measured and printed (and recorded with RecordProperty), bounded only
// generously: the suite runs under ASan on a loaded machine.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cogs/base/time.h"
#include "cogs/linuxnet/names.h"
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

// The ids of the containers runc runs ("running", not "stopped" or "created") under `root`.
std::vector<std::string> RunningUnder(const std::string& root) {
    std::vector<std::string> ids;
    auto [rc, out] = Shell("runc --root '" + root + "' list --format json 2>/dev/null");
    boost::system::error_code ec;
    const json::value v = json::parse(out, ec);
    if (rc != 0 || ec || !v.is_array()) return ids;
    for (const auto& c : v.as_array()) {
        if (S(c, "status") == "running") ids.push_back(S(c, "id"));
    }
    return ids;
}

// RFC 4648 base64, as the API takes user_data.
std::string Base64(std::string_view in) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        for (int shift : {18, 12, 6, 0})
            out.push_back(kAlphabet[(n >> shift) & 63]);
    }
    if (i + 1 == in.size()) {
        const uint32_t n = uint8_t(in[i]) << 16;
        out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], kAlphabet[(n >> 6) & 63], '='};
    }
    return out;
}

// A user_data script that fetches http://<ip>/ with busybox nc (its static wget has crashed on some
// machines) until the page names the server `id` (at most `tries` times, a second apart), then
// prints "<tag> fetched <id>: <the page>", or "<tag>: no answer from <ip>".
std::string FetchScript(const std::string& tag, const std::string& ip, const std::string& id, int tries) {
    return "i=0\n"
           "while [ $i -lt " +
           std::to_string(tries) +
           " ]; do\n"
           "  out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " +
           ip +
           " 80)\n"
           "  case \"$out\" in *\"(" +
           id + ")\"*) echo \"" + tag + " fetched " + id +
           ": $out\"; exit 0;; esac\n"
           "  i=$((i+1)); sleep 1\n"
           "done\n"
           "echo '" +
           tag + ": no answer from " + ip + "'\n";
}

// A user_data script that waits (up to 120 s) until volume `volume` is mounted at /volumes/<id>
// inside the instance, then runs `then`.
std::string OnVolumeScript(const std::string& volume, const std::string& then) {
    return "v=/volumes/" + volume +
           "\n"
           "i=0\n"
           "until grep -q \" $v \" /proc/mounts; do\n"
           "  i=$((i+1)); [ $i -gt 600 ] && { echo \"no volume at $v\"; exit 1; }\n"
           "  sleep 0.2\n"
           "done\n" +
           then;
}

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

int64_t MsSince(SteadyTime t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t).count();
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
        dev_->Stop();  // the containers outlive their agents, so:
        RemoveLeftovers();
        dev_.reset();  // removes the data dir (nothing is mounted under it any more)
    }

    // Whatever of this cloud is still on the machine goes: the containers under its runc roots
    // (force-deleted), the mounts under its data dir (deepest first) and the loop devices of its
    // volume files, then the namespaces, links and cgroups named by its ids, then the runc roots.
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
        const std::string data = dev_->data_dir();
        std::vector<std::string> mounts;
        std::istringstream info(Shell("cat /proc/self/mountinfo").second);
        for (std::string line; std::getline(info, line);) {
            std::istringstream fields(line);
            std::string skip, point;
            fields >> skip >> skip >> skip >> skip >> point;
            if (point.rfind(data + "/", 0) == 0) mounts.push_back(point);
        }
        std::sort(mounts.begin(), mounts.end(),
                  [](const auto& a, const auto& b) { return a.size() > b.size(); });
        for (const std::string& m : mounts) {
            if (Shell("umount '" + m + "'").first != 0) Shell("umount -l '" + m + "'");
        }
        for (const std::string& v : volumes_) {
            Shell("losetup -j '" + data + "/volumes/" + v + ".img' -O NAME -n | xargs -r -n1 losetup -d");
        }
        const linuxnet::Names names;
        for (const std::string& id : servers_) {
            Shell("ip netns list | awk '{print $1}' | grep -F -- '." + id +
                  "' | xargs -r -n1 ip netns delete");
            Shell("find /sys/fs/cgroup -maxdepth 4 -type d \\( -name '" + id + "' -o -name '*." + id +
                  "' \\) -exec rmdir {} + 2>/dev/null");
        }
        for (const std::string& port : ports_)
            Shell("ip link delete '" + names.Port(port) + "' 2>/dev/null");
        for (const std::string& network : networks_)
            Shell("ip link delete '" + names.Bridge(network) + "' 2>/dev/null");
        fs::remove_all(run_dir_, ec);
    }

    void StartCloud(int hosts = 2, std::vector<std::string> args = {}) {
        const auto started = SteadyClock::now();
        args.insert(args.begin(), {"--driver", "container"});
        auto dev = DevCloud::Start(DevOptions{hosts, 20, args});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
        auto text = runtime::ReadFile(dev_->data_dir() + "/dev.json");
        ASSERT_TRUE(text) << text.error().message;
        run_dir_ = S(json::parse(*text), "run_dir");
        ASSERT_EQ(run_dir_.rfind("/run/cogs/dev-", 0), 0u) << "dev.json: " << *text;
        std::cout << "cogs dev --driver container with " << hosts << " hosts up in " << MsSince(started)
                  << " ms\n";
    }

    ApiReply Get(const std::string& path) { return dev_->Admin().Must("GET", path); }
    ApiReply Post(const std::string& path, const std::string& body) {
        return dev_->Admin().Must("POST", path, body);
    }
    std::string Status(const std::string& path, std::string_view key) {
        return S(At(Get(path).body, key), "status");
    }
    bool WaitStatus(const std::string& path, std::string_view key, const std::string& want,
                    Duration timeout = 60s) {
        return WaitUntil([&] { return Status(path, key) == want; }, timeout, 50ms);
    }
    std::string RuncRoot(const std::string& host) const { return run_dir_ + "/" + host + "/runc"; }
    json::value Server(const std::string& id) { return At(Get("/v1/servers/" + id).body, "server"); }
    std::string Console(const std::string& id) {
        return S(At(Get("/v1/servers/" + id + "/console").body, "console"), "output");
    }
    // Waits (60 s) until the server's console holds `text`; false (and the console in the failure's
    // message) otherwise.
    ::testing::AssertionResult ConsoleShows(const std::string& id, const std::string& text,
                                            Duration timeout = 60s) {
        std::string output;
        if (WaitUntil([&] { return (output = Console(id)).find(text) != std::string::npos; }, timeout,
                      200ms)) {
            return ::testing::AssertionSuccess();
        }
        return ::testing::AssertionFailure() << "no \"" << text << "\" on the console of " << id << ":\n"
                                             << output;
    }

    // A network with one subnet of `cidr` (its allocation pool from `pool_start` to `pool_end`, or
    // the default), both ACTIVE; the network's id, "" on failure (reported).
    std::string MakeNetwork(const std::string& name, const std::string& cidr,
                            const std::string& pool_start = "", const std::string& pool_end = "") {
        ApiReply n = Post("/v1/networks", R"({"name":")" + name + "\"}");
        EXPECT_EQ(n.status, 202) << n.text;
        const std::string network = S(At(n.body, "network"), "id");
        if (network.empty()) return "";
        networks_.insert(network);
        EXPECT_TRUE(WaitStatus("/v1/networks/" + network, "network", "ACTIVE"));
        json::object body{{"network_id", network}, {"cidr", cidr}, {"name", name}};
        if (!pool_start.empty()) {
            body["allocation_pools"] = json::array{json::object{{"start", pool_start}, {"end", pool_end}}};
        }
        ApiReply sn = Post("/v1/subnets", json::serialize(body));
        EXPECT_EQ(sn.status, 202) << sn.text;
        const std::string subnet = S(At(sn.body, "subnet"), "id");
        if (subnet.empty()) return "";
        subnets_.insert(subnet);
        if (!WaitStatus("/v1/subnets/" + subnet, "subnet", "ACTIVE")) {
            ADD_FAILURE() << "subnet " << subnet << " not ACTIVE: " << Get("/v1/subnets/" + subnet).text;
            return "";
        }
        return network;
    }

    // Creates a server on `network` (its user_data the script, if any) and waits until it is ACTIVE;
    // its id, "" on failure (reported).
    std::string MakeServer(const std::string& name, const std::string& network,
                           const std::string& script = "", json::object extra = {}) {
        extra["name"] = name;
        extra["flavor"] = "m1.tiny";
        extra["image"] = "busybox";
        extra["network_id"] = network;
        if (!script.empty()) extra["user_data"] = Base64(script);
        ApiReply s = Post("/v1/servers", json::serialize(extra));
        EXPECT_EQ(s.status, 202) << s.text;
        const std::string id = S(At(s.body, "server"), "id");
        if (id.empty()) return "";
        servers_.insert(id);
        const bool active = WaitStatus("/v1/servers/" + id, "server", "ACTIVE");
        if (const std::string port = S(Server(id), "port_id"); !port.empty()) ports_.insert(port);
        if (!active) {
            ADD_FAILURE() << "server " << name << " not ACTIVE: " << Get("/v1/servers/" + id).text;
            return "";
        }
        return id;
    }

    // A volume of 1 GB, available; its id, "" on failure (reported).
    std::string MakeVolume(const std::string& name) {
        ApiReply v = Post("/v1/volumes", R"({"name":")" + name + R"(","size_gb":1})");
        EXPECT_EQ(v.status, 202) << v.text;
        const std::string id = S(At(v.body, "volume"), "id");
        if (id.empty()) return "";
        volumes_.insert(id);
        if (!WaitStatus("/v1/volumes/" + id, "volume", "available")) {
            ADD_FAILURE() << "volume " << name << " not available: " << Get("/v1/volumes/" + id).text;
            return "";
        }
        return id;
    }

    // Deletes every server, volume, subnet and network this test made, each waited for (404).
    void DeleteEverything() {
        ApiClient admin = dev_->Admin();
        const auto gone = [&](const std::string& path) {
            return WaitUntil([&] { return Get(path).status == 404; }, 60s, 50ms);
        };
        for (const auto& [kind, ids] : {std::pair{"servers", &servers_}, std::pair{"volumes", &volumes_},
                                        std::pair{"subnets", &subnets_}, std::pair{"networks", &networks_}}) {
            for (const std::string& id : *ids) {
                const std::string path = std::string("/v1/") + kind + "/" + id;
                if (Get(path).status == 404) continue;
                ApiReply del = admin.Must("DELETE", path);
                EXPECT_EQ(del.status, 202) << path << ": " << del.text;
            }
            for (const std::string& id : *ids) {
                const std::string path = std::string("/v1/") + kind + "/" + id;
                EXPECT_TRUE(gone(path)) << path << " still there: " << Get(path).text;
            }
        }
    }

    // What of this test's cloud is still on the machine, one line per object: containers under its
    // runc roots, network namespaces, bridges and veths (by name and by alias), loop devices backed by
    // its volume files, mounts under its data dir or of its ids, cgroups of its servers, instance
    // directories, volume files.
    std::vector<std::string> Leftovers() {
        std::vector<std::string> found;
        std::error_code ec;
        for (const auto& h : fs::directory_iterator(run_dir_, ec)) {
            auto [rc, list] = Shell("runc --root '" + h.path().string() + "/runc' list -q 2>&1");
            if (rc != 0 || !list.empty())
                found.push_back("container under " + h.path().string() + ": " + list);
        }
        const std::string data = dev_->data_dir();
        auto [nrc, netns] = Shell("ip netns list 2>&1");
        auto [lrc, links] = Shell("ip -o -d link show 2>&1");
        auto [orc, loops] = Shell("losetup -l -n -O NAME,BACK-FILE 2>&1");
        auto [mrc, mounts] = Shell("cat /proc/self/mountinfo");
        std::set<std::string> ours;
        for (const auto* ids : {&servers_, &ports_, &networks_, &subnets_, &volumes_})
            ours.insert(ids->begin(), ids->end());
        for (const std::string& id : ours) {
            if (netns.find(id) != std::string::npos) found.push_back("network namespace of " + id);
            if (links.find(id) != std::string::npos) found.push_back("link (bridge or veth) aliased " + id);
            if (mounts.find(id) != std::string::npos) found.push_back("mount of " + id);
        }
        const linuxnet::Names names;
        for (const std::string& network : networks_) {
            if (links.find(names.Bridge(network) + ":") != std::string::npos)
                found.push_back("bridge " + names.Bridge(network) + " of network " + network);
        }
        for (const std::string& port : ports_) {
            if (links.find(names.Port(port) + "@") != std::string::npos ||
                links.find(names.Port(port) + ":") != std::string::npos)
                found.push_back("veth " + names.Port(port) + " of port " + port);
        }
        if (loops.find(data) != std::string::npos) found.push_back("loop device: " + loops);
        if (mounts.find(data) != std::string::npos) found.push_back("mount under the data dir");
        for (const std::string& id : servers_) {
            auto [crc, cgroups] = Shell("find /sys/fs/cgroup -maxdepth 4 -type d \\( -name '" + id +
                                        "' -o -name '*." + id + "' \\) 2>/dev/null");
            if (!cgroups.empty()) found.push_back("cgroups: " + cgroups);
            for (const auto& h : fs::directory_iterator(data + "/instances", ec)) {
                if (fs::exists(h.path() / id))
                    found.push_back("instance directory " + (h.path() / id).string());
            }
        }
        for (const std::string& v : volumes_) {
            if (fs::exists(data + "/volumes/" + v + ".img")) found.push_back("volume file of " + v);
        }
        return found;
    }

    // Deletes everything and waits (30 s: a removal may finish just after the API's 404) until the
    // machine holds nothing of it.
    void ExpectNothingLeftAfterDeletingEverything() {
        // The listing sees each object before the delete, so that its silence afterwards means
        // something: a server's namespace and cgroups, a port's veth, a network's bridge, a volume's
        // file (a subnet has nothing of its own on the machine).
        const std::vector<std::string> before = Leftovers();
        const auto listed = [&](const std::string& line) {
            return std::find(before.begin(), before.end(), line) != before.end();
        };
        const linuxnet::Names names;
        std::vector<std::string> expected;
        for (const std::string& id : servers_) {
            expected.push_back("network namespace of " + id);
            if (std::none_of(before.begin(), before.end(), [&](const std::string& l) {
                    return l.rfind("cgroups: ", 0) == 0 && l.find("." + id) != std::string::npos;
                })) {
                ADD_FAILURE() << "the listing misses the cgroups of " << id << " before the delete";
            }
        }
        for (const std::string& id : ports_)
            expected.push_back("veth " + names.Port(id) + " of port " + id);
        for (const std::string& id : networks_)
            expected.push_back("bridge " + names.Bridge(id) + " of network " + id);
        for (const std::string& id : volumes_)
            expected.push_back("volume file of " + id);
        for (const std::string& line : expected)
            EXPECT_TRUE(listed(line))
                << "the listing misses \"" << line << "\" before the delete: " << Join(before);
        DeleteEverything();
        std::vector<std::string> left;
        const auto deleted = SteadyClock::now();
        EXPECT_TRUE(WaitUntil([&] { return (left = Leftovers()).empty(); }, 30s, 100ms))
            << "left: " << Join(left);
        std::cout << "everything deleted; the machine clean " << MsSince(deleted)
                  << " ms after the last 404 (" << servers_.size() << " servers, " << volumes_.size()
                  << " volumes, " << networks_.size() << " networks)\n";
    }

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
    // Every id this test made (the names of its objects on the machine).
    std::set<std::string> servers_, ports_, networks_, subnets_, volumes_;
};

TEST_F(RealInstancesTest, AServerRunsShowsItsConsoleComesBackAfterAKillAndLeavesNothingWhenDeleted) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    ApiClient admin = dev_->Admin();

    const std::string network = MakeNetwork("real", "10.77.0.0/24");
    ASSERT_FALSE(network.empty());

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
    ports_.insert(S(server, "port_id"));
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
                                   " COGS_CACERT=" + dev_->ca_file() + " '" + runtime::SiblingBinary("cogs") +
                                   "' server console web 2>&1");
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
    // It answers again on the same address: a server on the network fetches its page.
    const std::string ip = S(Server(id), "ip_address");
    EXPECT_EQ(ip, S(server, "ip_address"));
    const std::string probe = MakeServer("probe", network, FetchScript("probe", ip, id, 60));
    ASSERT_FALSE(probe.empty());
    EXPECT_TRUE(ConsoleShows(probe, "probe fetched " + id + ":"));

    // ---- deleted: nothing of it is left on the machine ----
    ASSERT_NO_FATAL_FAILURE(ExpectNothingLeftAfterDeletingEverything());
}

TEST_F(RealInstancesTest, ServersOnOneNetworkReachEachOtherAndNotAServerOnAnotherNetwork) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    const std::string net1 = MakeNetwork("one", "10.77.0.0/24");
    ASSERT_FALSE(net1.empty());
    // The other network has the same block; its pool starts higher, so that its server's address is
    // not a's: a's address is then only a's, on a's bridge.
    const std::string net2 = MakeNetwork("two", "10.77.0.0/24", "10.77.0.100", "10.77.0.200");
    ASSERT_FALSE(net2.empty());

    // a serves its page (no user_data); b's user_data fetches it from a's address.
    const std::string a = MakeServer("web", net1);
    ASSERT_FALSE(a.empty());
    const std::string a_ip = S(Server(a), "ip_address");
    ASSERT_FALSE(a_ip.empty()) << Get("/v1/servers/" + a).text;
    const auto b_requested = SteadyClock::now();
    const std::string b = MakeServer("client", net1, FetchScript("b", a_ip, a, 60));
    ASSERT_FALSE(b.empty());
    ASSERT_TRUE(ConsoleShows(b, "b fetched " + a + ":"));
    std::cout << "b requested to a's page on b's console: " << MsSince(b_requested) << " ms\n";
    const std::string b_console = Console(b);
    EXPECT_NE(b_console.find("<h1>web</h1>"), std::string::npos) << b_console;
    EXPECT_NE(b_console.find("server web (" + a + ")"), std::string::npos) << b_console;
    EXPECT_TRUE(ConsoleShows(b, "cogs: user_data exited with status 0"));
    EXPECT_EQ(Status("/v1/servers/" + b, "server"), "ACTIVE");

    // c, on the other network, tries a's address three times (once a is known to answer), then the
    // page of e, a server of its own network: c's network works, it only does not reach a's.
    const std::string e = MakeServer("neighbour", net2);
    ASSERT_FALSE(e.empty());
    const std::string e_ip = S(Server(e), "ip_address");
    const std::string c =
        MakeServer("outsider", net2, FetchScript("c", a_ip, a, 3) + FetchScript("c", e_ip, e, 60));
    ASSERT_FALSE(c.empty());
    const std::string c_ip = S(Server(c), "ip_address");
    EXPECT_NE(c_ip, a_ip);
    EXPECT_NE(e_ip, a_ip);
    ASSERT_TRUE(ConsoleShows(c, "c: no answer from " + a_ip)) << "c's address: " << c_ip;
    EXPECT_TRUE(ConsoleShows(c, "c fetched " + e + ":"));
    EXPECT_EQ(Console(c).find("c fetched " + a), std::string::npos) << Console(c);
    // a still answers on its own network at that time: c's silence is the networks' separation.
    const std::string d = MakeServer("client2", net1, FetchScript("d", a_ip, a, 60));
    ASSERT_FALSE(d.empty());
    EXPECT_TRUE(ConsoleShows(d, "d fetched " + a + ":"));

    ASSERT_NO_FATAL_FAILURE(ExpectNothingLeftAfterDeletingEverything());
}

// Samples, on its own thread until stopped, how many containers of each watched server runc runs
// under all of a cloud's runc roots at once: the largest count seen per server and the number of
// samples. Only runc is asked (Shell), never the cloud.
class RunningCopies {
public:
    RunningCopies(std::vector<std::string> roots, std::set<std::string> ids)
        : roots_(std::move(roots)), ids_(std::move(ids)), thread_([this] { Run(); }) {}
    ~RunningCopies() { Stop(); }
    void Stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    // The running copies of each watched server now (one sample, on the caller's thread).
    std::map<std::string, int> Count() const {
        std::map<std::string, int> n;
        for (const std::string& id : ids_)
            n[id] = 0;
        for (const std::string& root : roots_) {
            for (const std::string& id : RunningUnder(root)) {
                if (ids_.count(id) != 0) ++n[id];
            }
        }
        return n;
    }
    std::map<std::string, int> most() const {
        std::lock_guard<std::mutex> lock(mu_);
        return most_;
    }
    int samples() const { return samples_; }

private:
    void Run() {
        while (!stop_) {
            const std::map<std::string, int> n = Count();
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (const auto& [id, k] : n)
                    most_[id] = std::max(most_[id], k);
            }
            ++samples_;
            std::this_thread::sleep_for(5ms);
        }
    }
    const std::vector<std::string> roots_;
    const std::set<std::string> ids_;
    mutable std::mutex mu_;
    std::map<std::string, int> most_;
    std::atomic<int> samples_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

TEST_F(RealInstancesTest, AnAgentKilledWithInstancesRunningIsReplacedAndEachServerRunsOnceElsewhere) {
    // cogsd declares no host down for its restart grace (10 s) after it starts: shortened, so that
    // the figures below are the lease's (suspect 3 s after the last renewal, down 1 s later).
    ASSERT_NO_FATAL_FAILURE(StartCloud(3, {"--cogsd-arg=--restart-grace-ms=500"}));
    const std::string network = MakeNetwork("evac", "10.78.0.0/24");
    ASSERT_FALSE(network.empty());
    // Two page servers and a keeper of a volume, packed on one host: that host's agent is killed.
    // The keeper's user_data (run at every boot) writes its volume's file, or prints what it finds
    // there: after the evacuation, its new instance prints what the old one wrote.
    const std::string volume = MakeVolume("kept");
    ASSERT_FALSE(volume.empty());
    const std::string words = "kept-by-keeper-" + volume.substr(0, 8);
    std::vector<std::string> ids;
    for (const char* name : {"evac1", "evac2"}) {
        ids.push_back(MakeServer(name, network, "", json::object{{"weigher", "pack"}}));
        ASSERT_FALSE(ids.back().empty());
    }
    const std::string keeper = MakeServer(
        "keeper", network,
        OnVolumeScript(volume, "if [ -f $v/file ]; then echo \"keeper found $(cat $v/file)\"; else echo " +
                                   words +
                                   " > $v/file && sync && echo \"keeper wrote $(cat $v/file)\"; fi\n"),
        json::object{{"weigher", "pack"}, {"volume_ids", json::array{json::value(volume)}}});
    ASSERT_FALSE(keeper.empty());
    ASSERT_TRUE(WaitStatus("/v1/volumes/" + volume, "volume", "in-use")) << Get("/v1/volumes/" + volume).text;
    ASSERT_TRUE(ConsoleShows(keeper, "keeper wrote " + words));
    const std::string dead_host = S(Server(ids[0]), "host");
    struct Before {
        std::string ip, mac, port;
    };
    std::map<std::string, Before> victims;
    for (const std::string& id : {ids[0], ids[1], keeper}) {
        const json::value s = Server(id);
        EXPECT_EQ(S(s, "host"), dead_host) << "packed: " << json::serialize(s);
        if (S(s, "host") == dead_host)
            victims[id] = {S(s, "ip_address"), S(s, "mac_address"), S(s, "port_id")};
    }
    ASSERT_EQ(victims.count(keeper), 1u) << "the keeper is not on " << dead_host;
    std::set<std::string> victim_ids;
    for (const auto& [id, b] : victims) {
        victim_ids.insert(id);
        ASSERT_EQ(S(RuncState(RuncRoot(dead_host), id), "status"), "running");
    }
    std::vector<std::string> roots;
    for (int i = 1; i <= 3; ++i)
        roots.push_back(RuncRoot("host-" + std::to_string(i)));
    const std::string agent_name = "cogs-compute-" + dead_host.substr(dead_host.rfind('-') + 1);
    int agent_pid = 0;
    for (const auto& p : dev_->processes()) {
        if (p.name == agent_name) agent_pid = p.pid;
    }
    ASSERT_GT(agent_pid, 0) << "no process " << agent_name;

    RunningCopies copies(roots, victim_ids);
    SteadyTime killed_at;
    {
        // `cogs dev` would restart the agent at once (and it would adopt its containers): it is paused
        // until the servers run elsewhere, SIGCONTed however the block ends.
        Paused paused(dev_->pid());
        ASSERT_TRUE(paused.stopped());
        ASSERT_EQ(::kill(agent_pid, SIGKILL), 0);
        killed_at = SteadyClock::now();
        std::cout << "SIGKILLed " << agent_name << " (pid " << agent_pid << ") with " << victims.size()
                  << " servers running on " << dead_host << "\n";

        // The watchdog: the dead agent's containers are killed by their shims at its lease's end.
        ASSERT_TRUE(WaitUntil(
            [&] {
                for (const auto& [id, b] : victims) {
                    if (S(RuncState(RuncRoot(dead_host), id), "status") == "running") return false;
                }
                return true;
            },
            60s, 10ms))
            << "the dead agent's containers still run";
        const int64_t fenced_ms = MsSince(killed_at);
        std::cout << "kill → the dead agent's containers stopped (watchdog): " << fenced_ms << " ms\n";
        RecordProperty("kill_to_watchdog_ms", static_cast<int>(fenced_ms));

        // Rebuilt elsewhere: ACTIVE on another host, with the same port, MAC and address.
        int64_t down_ms = -1;
        ASSERT_TRUE(WaitUntil(
            [&] {
                if (down_ms < 0 && S(At(Get("/v1/hosts/" + dead_host).body, "host"), "state") == "down") {
                    down_ms = MsSince(killed_at);
                }
                for (const auto& [id, b] : victims) {
                    const json::value s = Server(id);
                    if (S(s, "status") != "ACTIVE" || S(s, "host") == dead_host) return false;
                }
                return true;
            },
            120s, 50ms))
            << Get("/v1/servers/" + ids[0]).text << "\n"
            << Get("/v1/hosts/" + dead_host).text;
        const int64_t rebuilt_ms = MsSince(killed_at);
        std::cout << "kill → host down in the API: " << down_ms
                  << " ms; kill → rebuilt ACTIVE elsewhere: " << rebuilt_ms << " ms\n";
        RecordProperty("kill_to_rebuilt_active_ms", static_cast<int>(rebuilt_ms));
        EXPECT_EQ(S(At(Get("/v1/hosts/" + dead_host).body, "host"), "state"), "down");
        for (const auto& [id, b] : victims) {
            const json::value s = Server(id);
            const std::string host = S(s, "host");
            EXPECT_EQ(S(s, "ip_address"), b.ip);
            EXPECT_EQ(S(s, "mac_address"), b.mac);
            EXPECT_EQ(S(s, "port_id"), b.port);
            EXPECT_EQ(S(RuncState(RuncRoot(host), id), "status"), "running") << id << " on " << host;
            // Its new namespace carries the same port.
            const std::string ns = "cg-" + host + "." + id;
            auto [arc, addr] = Shell("ip -n '" + ns + "' -o addr show dev eth0");
            EXPECT_NE(addr.find("inet " + b.ip + "/24"), std::string::npos) << ns << ": " << addr;
            auto [lrc, link] = Shell("ip -n '" + ns + "' -o link show dev eth0");
            EXPECT_NE(link.find(b.mac), std::string::npos) << ns << ": " << link;
            const std::vector<std::string> events = EventTypes(id);
            EXPECT_GE(IndexOf(events, "evacuated"), 0) << Join(events);
        }

        // They answer there: a new server on the network fetches each one's page from its address.
        std::string script;
        for (const auto& [id, b] : victims) {
            if (id != keeper) script += "(\n" + FetchScript("probe", b.ip, id, 60) + ")\n";
        }
        const std::string probe = MakeServer("probe", network, script);
        ASSERT_FALSE(probe.empty());
        for (const auto& [id, b] : victims) {
            if (id != keeper) EXPECT_TRUE(ConsoleShows(probe, "probe fetched " + id + ":"));
        }
        // The keeper's volume came along: its new instance found the file the old one wrote.
        EXPECT_TRUE(ConsoleShows(keeper, "keeper found " + words));
        EXPECT_EQ(Status("/v1/volumes/" + volume, "volume"), "in-use");
        std::cout << "kill → the rebuilt servers answered a probe on their addresses: " << MsSince(killed_at)
                  << " ms\n";
    }

    // `cogs dev`, resumed, restarts the agent: the host comes back, its stopped stale copies are
    // removed, and it never starts them again.
    const auto resumed = SteadyClock::now();
    ASSERT_TRUE(WaitUntil(
        [&] {
            if (S(At(Get("/v1/hosts/" + dead_host).body, "host"), "state") != "up") return false;
            auto [rc, list] = Shell("runc --root '" + RuncRoot(dead_host) + "' list -q 2>/dev/null");
            for (const std::string& id : victim_ids) {
                if (list.find(id) != std::string::npos) return false;
            }
            return true;
        },
        120s, 100ms))
        << Get("/v1/hosts/" + dead_host).text;
    std::cout << "agent restarted → its host up and its stale copies removed: " << MsSince(resumed)
              << " ms\n";
    // The stale copy's delete unmounted only its own mount: the keeper's volume is still mounted for
    // its new instance, with the data (read on the host, where the instance's mounts live).
    const std::string keeper_host = S(Server(keeper), "host");
    auto kept = runtime::ReadFile(dev_->data_dir() + "/instances/" + keeper_host + "/" + keeper +
                                  "/volumes/" + volume + "/file");
    ASSERT_TRUE(kept) << kept.error().message;
    EXPECT_EQ(*kept, words + "\n");
    // The host's agent has reconciled it; a little more sampling lets a wrong start show up.
    const int seen = copies.samples();
    WaitUntil([&] { return copies.samples() >= seen + 50; }, 30s, 20ms);
    copies.Stop();
    std::cout << "running copies sampled " << copies.samples() << " times across the three runc roots\n";
    EXPECT_GT(copies.samples(), 10);
    for (const auto& [id, most] : copies.most())
        EXPECT_EQ(most, 1) << "at some moment " << most << " copies of " << id << " ran";
    for (const auto& [id, n] : copies.Count())
        EXPECT_EQ(n, 1) << "copies of " << id << " running at the end";
    for (const auto& [id, b] : victims)
        EXPECT_EQ(Status("/v1/servers/" + id, "server"), "ACTIVE");

    ASSERT_NO_FATAL_FAILURE(ExpectNothingLeftAfterDeletingEverything());
}

TEST_F(RealInstancesTest, AVolumeWrittenByOneServerDetachedAndAttachedToAnotherHoldsItsData) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    const std::string network = MakeNetwork("vol", "10.79.0.0/24");
    ASSERT_FALSE(network.empty());
    const std::string volume = MakeVolume("data");
    ASSERT_FALSE(volume.empty());
    const std::string words = "written-by-writer-" + volume.substr(0, 8);

    // The writer waits for the volume inside itself, writes a file, flushes it.
    const std::string writer = MakeServer(
        "writer", network,
        OnVolumeScript(volume,
                       "echo " + words + " > $v/file && sync && echo \"writer wrote $(cat $v/file)\"\n"));
    ASSERT_FALSE(writer.empty());
    ApiReply at = Post("/v1/volumes/" + volume + "/attach", R"({"server_id":")" + writer + "\"}");
    ASSERT_EQ(at.status, 202) << at.text;
    ASSERT_TRUE(WaitStatus("/v1/volumes/" + volume, "volume", "in-use")) << Get("/v1/volumes/" + volume).text;
    ASSERT_TRUE(ConsoleShows(writer, "writer wrote " + words));

    ApiReply de = Post("/v1/volumes/" + volume + "/detach", "{}");
    ASSERT_EQ(de.status, 202) << de.text;
    ASSERT_TRUE(WaitStatus("/v1/volumes/" + volume, "volume", "available"))
        << Get("/v1/volumes/" + volume).text;
    // Gone from inside the writer (its init's view of the mounts).
    const std::string writer_host = S(Server(writer), "host");
    const int64_t writer_pid = I(RuncState(RuncRoot(writer_host), writer), "pid");
    ASSERT_GT(writer_pid, 1);
    std::string inside;
    EXPECT_TRUE(WaitUntil(
        [&] {
            auto text = runtime::ReadFile("/proc/" + std::to_string(writer_pid) + "/mounts");
            inside = text ? *text : "";
            return text && inside.find(" /volumes/" + volume + " ") == std::string::npos;
        },
        30s, 100ms))
        << inside;

    // The reader waits for it, then prints what it finds.
    const std::string reader =
        MakeServer("reader", network, OnVolumeScript(volume, "echo \"reader read $(cat $v/file)\"\n"));
    ASSERT_FALSE(reader.empty());
    ApiReply at2 = Post("/v1/volumes/" + volume + "/attach", R"({"server_id":")" + reader + "\"}");
    ASSERT_EQ(at2.status, 202) << at2.text;
    ASSERT_TRUE(WaitStatus("/v1/volumes/" + volume, "volume", "in-use")) << Get("/v1/volumes/" + volume).text;
    EXPECT_TRUE(ConsoleShows(reader, "reader read " + words));
    std::cout << "writer on " << writer_host << ", reader on " << S(Server(reader), "host") << "\n";

    ASSERT_NO_FATAL_FAILURE(ExpectNothingLeftAfterDeletingEverything());
}

TEST_F(RealInstancesTest, BadUserDataIsRefusedNamingItAndNothingIsMade) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    const std::string network = MakeNetwork("bad", "10.80.0.0/24");
    ASSERT_FALSE(network.empty());
    const auto create = [&](const std::string& user_data) {
        return Post("/v1/servers", json::serialize(json::object{{"name", "bad"},
                                                                {"flavor", "m1.tiny"},
                                                                {"image", "busybox"},
                                                                {"network_id", network},
                                                                {"user_data", user_data}}));
    };
    for (const auto& [what, user_data] :
         {std::pair<std::string, std::string>{"64 KiB + 1 byte once decoded",
                                              Base64(std::string(65537, '#'))},
          {"not base64", "echo hello; not base64!"}}) {
        ApiReply r = create(user_data);
        EXPECT_EQ(r.status, 400) << what << ": " << r.text;
        EXPECT_NE(r.text.find("user_data"), std::string::npos) << what << ": " << r.text;
    }
    // Nothing was made: no server, no port, no container.
    const json::value servers = At(Get("/v1/servers").body, "servers");
    ASSERT_TRUE(servers.is_array()) << Get("/v1/servers").text;
    EXPECT_TRUE(servers.as_array().empty()) << json::serialize(servers);
    const json::value ports = At(Get("/v1/ports").body, "ports");
    ASSERT_TRUE(ports.is_array()) << Get("/v1/ports").text;
    EXPECT_TRUE(ports.as_array().empty()) << json::serialize(ports);
    for (int i = 1; i <= 2; ++i)
        EXPECT_EQ(RunningUnder(RuncRoot("host-" + std::to_string(i))), std::vector<std::string>{});

    ASSERT_NO_FATAL_FAILURE(ExpectNothingLeftAfterDeletingEverything());
}

}  // namespace
}  // namespace cogs::testing
