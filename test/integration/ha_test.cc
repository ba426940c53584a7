// Replicas of cogsd on one PostgreSQL database, with real processes (docs/ha.md): `cogs dev --store
// postgres --replicas 3` (cogs/cli/internal/dev.h). The leader is SIGKILLed: a follower takes over,
// `cogs dev` restarts the killed replica, which comes back as a follower, and the compute agents,
// which know every replica's URL (cogs/services/compute/agent.h), keep their hosts' leases through
// the failover: no host goes suspect or down, no agent fences, no server moves, and creates through
// any replica work again.
//
// Timings: `cogs dev` gives the replicas a 1 s leader lease (renewed every 200 ms); the hosts keep
// cogsd's 3 s lease. `cogs dev` itself is paused (SIGSTOP) while the leader dies, so that a follower,
// not the restarted replica, takes over: a replica restarted before its lease ran out would take its
// own lease back at once (cogs/store/leadership.h), which is right, but not what this test is about.
// Every wait is a deadline on a state the cloud reaches by itself, far longer than it needs.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <set>

#include "cogs/base/time.h"
#include "cogs/runtime/files.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class HaTest : public ::testing::Test {
protected:
    void SetUp() override {
        DevOptions o;
        o.hosts = 3;
        o.boot_ms = 20;
        o.store = "postgres";
        o.replicas = 3;
        o.postgres_fsync = false;
        auto dev = DevCloud::Start(o);
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
    }

    void TearDown() override {
        if (dev_ == nullptr) return;
        if (HasFailure()) {
            std::cerr << "cogs dev data dir: " << dev_->data_dir() << "\n";
            for (const auto& r : dev_->replicas()) {
                std::cerr << "---- " << r.log << "\n" << runtime::TailFile(r.log, 20);
            }
        }
        const std::string pg_data = dev_->postgres() ? dev_->postgres()->data_dir : "";
        EXPECT_EQ(dev_->Stop(), 0) << "cogs dev exits 0 on SIGINT";
        if (!pg_data.empty()) {
            EXPECT_FALSE(std::filesystem::exists(pg_data + "/postmaster.pid"))
                << "cogs dev stopped its PostgreSQL (a clean shutdown removes postmaster.pid)";
        }
        dev_.reset();
    }

    ApiClient Via(const DevProcess& replica) const { return ApiClient(replica.url, dev_->admin_token()); }

    DevProcess Replica(const std::string& name) {
        for (const auto& r : dev_->replicas()) {
            if (r.name == name) return r;
        }
        ADD_FAILURE() << "no replica " << name;
        return {};
    }

    // The replicas as GET /v1/replicas answers through `via` (empty if it did not answer 200).
    std::vector<json::value> ReplicasVia(const DevProcess& via) {
        auto r = Via(via).Call("GET", "/v1/replicas", "", {}, 3s);
        const json::value list = r && r->status == 200 ? At(r->body, "replicas") : json::value();
        if (!list.is_array()) return {};
        return std::vector<json::value>(list.as_array().begin(), list.as_array().end());
    }
    // The id of the replica that leads, as answered through `via` ("" if none).
    std::string LeaderVia(const DevProcess& via) {
        for (const auto& r : ReplicasVia(via)) {
            if (S(r, "role") == "leader") return S(r, "id");
        }
        return "";
    }

    bool WaitStatus(const DevProcess& via, const std::string& path, std::string_view key,
                    const std::string& want, Duration timeout = 30s) {
        ApiClient api = Via(via);
        return WaitUntil([&] { return S(At(api.Must("GET", path).body, key), "status") == want; }, timeout);
    }

    // Creates a server through `via` and waits (through the same replica) until it is ACTIVE.
    std::string CreateServer(const DevProcess& via, const std::string& name) {
        ApiReply r = Via(via).Must("POST", "/v1/servers",
                                   R"({"name":")" + name +
                                       R"(","flavor":"m1.tiny","image":"cirros",)"
                                       R"("network_id":")" +
                                       network_ + R"("})");
        EXPECT_EQ(r.status, 202) << name << " through " << via.name << ": " << r.text;
        const std::string id = S(At(r.body, "server"), "id");
        EXPECT_TRUE(WaitStatus(via, "/v1/servers/" + id, "server", "ACTIVE"))
            << name << " (through " << via.name << ") never became ACTIVE";
        return id;
    }

    json::value Server(const DevProcess& via, const std::string& id) {
        return At(Via(via).Must("GET", "/v1/servers/" + id).body, "server");
    }

    // The types of every event of `kind` (all pages).
    std::multiset<std::string> EventTypes(const DevProcess& via, const std::string& kind) {
        std::multiset<std::string> out;
        ApiClient api = Via(via);
        int64_t after = 0;
        for (;;) {
            ApiReply r = api.Must(
                "GET", "/v1/events?resource_kind=" + kind + "&limit=1000&after=" + std::to_string(after));
            EXPECT_EQ(r.status, 200) << r.text;
            const json::value list = At(r.body, "events");
            if (r.status != 200 || !list.is_array() || list.as_array().empty()) break;
            for (const auto& e : list.as_array())
                out.insert(S(e, "type"));
            after = I(r.body, "next_after");
        }
        return out;
    }

    // An unlabelled counter on a process's /metrics (-1 if absent).
    double Metric(const DevProcess& p, const std::string& name) {
        ApiClient c(p.url, dev_->ServiceToken(p.name));
        const std::string text = c.Must("GET", "/metrics").text;
        const std::string key = "\n" + name + " ";
        auto at = text.find(key);
        if (at == std::string::npos) return -1;
        return std::stod(text.substr(at + key.size(), text.find('\n', at + key.size()) - at - key.size()));
    }

    std::unique_ptr<DevCloud> dev_;
    std::string network_;
};

TEST_F(HaTest, LeaderKilledFollowerTakesOverAndTheAgentsFollow) {
    // ---- the cloud as `cogs dev` describes it ----
    std::vector<DevProcess> replicas = dev_->replicas();
    ASSERT_EQ(replicas.size(), 3u);
    EXPECT_EQ(dev_->api_url(), replicas[0].url) << "the API URL is the first replica's";
    ASSERT_NE(dev_->postgres(), nullptr);
    const DevPostgres pg = *dev_->postgres();
    EXPECT_GT(pg.port, 0);
    EXPECT_EQ(pg.data_dir, dev_->data_dir() + "/postgres/data");
    {
        std::ifstream pid_file(pg.data_dir + "/postmaster.pid");
        int postmaster = 0;
        ASSERT_TRUE(pid_file >> postmaster);
        EXPECT_EQ(postmaster, pg.pid) << "the postmaster's pid, as chaos tools find it";
        EXPECT_EQ(::kill(postmaster, 0), 0);
    }
    std::vector<DevProcess> agents;
    for (const auto& p : dev_->processes()) {
        if (p.name.starts_with("cogs-compute-")) agents.push_back(p);
    }
    ASSERT_EQ(agents.size(), 3u);

    std::string leader;
    ASSERT_TRUE(WaitUntil([&] { return !(leader = LeaderVia(replicas[1])).empty(); }, 20s));
    EXPECT_EQ(ReplicasVia(replicas[2]).size(), 3u) << "every replica is listed, through any of them";
    for (const auto& r : replicas) {
        ApiReply h = ApiClient(r.url, "").Must("GET", "/healthz");
        EXPECT_EQ(h.status, 200) << r.name << ": " << h.text;
        if (r.name != leader) {
            EXPECT_EQ(S(h.body, "role"), "follower") << r.name;
            EXPECT_EQ(S(h.body, "leader"), leader) << r.name;
        }
    }

    // ---- a network, a subnet and servers, each through another replica ----
    ApiReply n = Via(replicas[1]).Must("POST", "/v1/networks", R"({"name":"ha"})");
    ASSERT_EQ(n.status, 202) << n.text;
    network_ = S(At(n.body, "network"), "id");
    ASSERT_TRUE(WaitStatus(replicas[2], "/v1/networks/" + network_, "network", "ACTIVE"));
    ApiReply s = Via(replicas[2])
                     .Must("POST", "/v1/subnets",
                           R"({"network_id":")" + network_ + R"(","cidr":"10.70.0.0/24","name":"ha"})");
    ASSERT_EQ(s.status, 202) << s.text;
    ASSERT_TRUE(WaitStatus(replicas[0], "/v1/subnets/" + S(At(s.body, "subnet"), "id"), "subnet", "ACTIVE"));
    std::map<std::string, std::string> placed;  // server id -> host
    for (int i = 0; i < 6; ++i) {
        const DevProcess& via = replicas[i % 3];
        const std::string id = CreateServer(via, "before-" + std::to_string(i));
        ASSERT_FALSE(id.empty());
        placed[id] = S(Server(via, id), "host");
        ASSERT_FALSE(placed[id].empty());
    }

    // ---- the leader dies; `cogs dev` is paused meanwhile (see the top) ----
    const DevProcess killed = Replica(leader);
    ASSERT_GT(killed.pid, 0);
    std::vector<DevProcess> survivors;
    for (const auto& r : replicas) {
        if (r.name != leader) survivors.push_back(r);
    }
    std::string next;
    SteadyTime killed_at;
    {
        Paused paused(dev_->pid());  // SIGCONTed however the block ends
        ASSERT_TRUE(paused.stopped());
        ASSERT_EQ(::kill(killed.pid, SIGKILL), 0);
        killed_at = SteadyClock::now();
        ASSERT_TRUE(WaitUntil(
            [&] {
                next = LeaderVia(survivors[0]);
                return !next.empty() && next != leader;
            },
            30s))
            << "no follower took over from " << leader;
        const auto took = std::chrono::duration_cast<Millis>(SteadyClock::now() - killed_at).count();
        std::cerr << "[ha] " << next << " leads " << took << " ms after " << leader << " was killed\n";
        EXPECT_EQ(LeaderVia(survivors[1]), next) << "both survivors agree";
    }

    // ---- `cogs dev` restarts the killed replica on its port; it comes back as a follower ----
    DevProcess back;
    ASSERT_TRUE(WaitUntil(
        [&] {
            if (!dev_->Reload()) return false;
            back = Replica(leader);
            if (back.pid <= 0 || back.pid == killed.pid) return false;
            ApiReply h = ApiClient(back.url, "").Must("GET", "/healthz");
            return h.status == 200 && S(h.body, "role") == "follower" && S(h.body, "leader") == next;
        },
        30s))
        << leader << " did not come back as a follower of " << next;
    EXPECT_EQ(back.url, killed.url) << "restarted on the same port";
    std::vector<json::value> listed = ReplicasVia(back);
    EXPECT_EQ(listed.size(), 3u);
    int leaders = 0;
    for (const auto& r : listed)
        leaders += S(r, "role") == "leader" ? 1 : 0;
    EXPECT_EQ(leaders, 1);
    EXPECT_EQ(LeaderVia(back), next);

    // ---- every host is up: its agent's heartbeats followed the failover ----
    std::string states;
    EXPECT_TRUE(WaitUntil(
        [&] {
            const json::value hosts = At(Via(back).Must("GET", "/v1/hosts").body, "hosts");
            if (!hosts.is_array()) return false;
            states.clear();
            int up = 0;
            for (const auto& h : hosts.as_array()) {
                states += S(h, "name") + "=" + S(h, "state") + " ";
                up += S(h, "state") == "up" ? 1 : 0;
            }
            return up == 3;
        },
        20s))
        << states;

    // ---- creates through every replica, the restarted one included ----
    replicas = dev_->replicas();
    for (int i = 0; i < 3; ++i) {
        const std::string id = CreateServer(replicas[i], "after-" + std::to_string(i));
        EXPECT_FALSE(id.empty()) << "through " << replicas[i].name;
    }

    // ---- nothing of before moved or stopped ----
    for (const auto& [id, host] : placed) {
        const json::value now = Server(replicas[0], id);
        EXPECT_EQ(S(now, "status"), "ACTIVE") << id << ": " << json::serialize(now);
        EXPECT_EQ(S(now, "host"), host) << id << " moved";
    }
    const std::multiset<std::string> host_events = EventTypes(replicas[1], "host");
    EXPECT_EQ(host_events.count("suspect"), 0u) << "a host went suspect during the failover";
    EXPECT_EQ(host_events.count("down"), 0u) << "a host went down during the failover";
    const std::multiset<std::string> server_events = EventTypes(replicas[2], "server");
    EXPECT_EQ(server_events.count("evacuated"), 0u);
    EXPECT_EQ(server_events.count("evacuate_requested"), 0u);
    EXPECT_EQ(EventTypes(replicas[0], "replica").count("leader_elected"), 2u)
        << "the first leader, then " << next;
    for (const auto& a : agents) {
        EXPECT_EQ(Metric(a, "cogs_compute_fences_total"), 0) << a.name << " fenced a host";
    }
}

}  // namespace
}  // namespace cogs::testing
