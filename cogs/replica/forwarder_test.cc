// The follower's forwarding when the leader does not answer (a frozen or dead leader): a heartbeat
// is given up after heartbeat_timeout, not the long timeout of other requests, and answered
// no_leader once the leader's lease has run out meanwhile (what an agent may count as a renewal),
// leader_unreachable while it has not.
#include "cogs/replica/forwarder.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <optional>
#include <vector>

namespace cogs::replica {
namespace {

using namespace std::chrono_literals;

class ForwarderTest : public ::testing::Test {
protected:
    void SetUp() override {
        // A leader that takes every request and never answers (as a SIGSTOPped process's kernel
        // accepts connections its process never serves).
        auto server = http::StartServer(io_, http::ServerOptions{}, [this](http::Request, http::Respond r) {
            held_.push_back(std::move(r));
        });
        ASSERT_TRUE(server) << server.error().ToString();
        leader_ = std::move(*server);
    }

    std::unique_ptr<Forwarder> Make(Duration heartbeat_timeout) {
        ForwarderOptions o;
        o.replica_id = "follower";
        o.leader = [this] {
            return store::LeaderInfo{"leader", "http://127.0.0.1:" + std::to_string(leader_->port()),
                                     7,        0,
                                     alive_,   SteadyClock::now()};
        };
        o.timeout = 60s;
        o.heartbeat_timeout = heartbeat_timeout;
        return std::make_unique<Forwarder>(io_, o);
    }

    static http::Request Req(std::string method, std::string target) {
        http::Request r;
        r.method = std::move(method);
        r.target = std::move(target);
        return r;
    }

    // Runs the io_context until `done` (or a generous deadline: the test then fails, not hangs).
    void RunUntil(const std::function<bool()>& done) {
        const auto deadline = SteadyClock::now() + 30s;
        while (!done() && SteadyClock::now() < deadline) {
            io_.run_one_for(std::chrono::milliseconds(50));
        }
        ASSERT_TRUE(done());
    }

    static std::string Code(const http::Response& r) {
        const auto v = boost::json::parse(r.body);
        return std::string(v.at("code").as_string());
    }

    boost::asio::io_context io_;
    std::unique_ptr<http::Server> leader_;
    std::vector<http::Respond> held_;
    bool alive_ = true;
};

TEST_F(ForwarderTest, HeartbeatToASilentLeaderIsGivenUpSoonWhileOtherRequestsWait) {
    auto forwarder = Make(100ms);
    http::Handler handler = forwarder->Handler();
    std::optional<http::Response> heartbeat, list;
    handler(Req("GET", "/v1/servers"), [&](http::Response r) { list = std::move(r); });
    handler(Req("POST", "/v1/hosts/host-1/heartbeat"), [&](http::Response r) { heartbeat = std::move(r); });
    RunUntil([&] { return heartbeat.has_value(); });
    // The leader's lease still holds: it may be alive and may declare this host down.
    EXPECT_EQ(heartbeat->status, 503);
    EXPECT_EQ(Code(*heartbeat), "leader_unreachable") << heartbeat->body;
    EXPECT_FALSE(list.has_value()) << "a request other than a heartbeat keeps the long deadline";
    RunUntil([&] { return held_.size() == 2; });  // both reached the leader

    leader_->Stop();  // the leader goes: the waiting request fails with its connection
    RunUntil([&] { return list.has_value(); });
    EXPECT_EQ(list->status, 503);
    EXPECT_EQ(forwarder->stats().unreachable, 2u);
}

TEST_F(ForwarderTest, ALeaderWhoseLeaseRanOutWhileItWasAskedMeansNoLeader) {
    auto forwarder = Make(100ms);
    std::optional<http::Response> heartbeat;
    forwarder->Handler()(Req("POST", "/v1/hosts/host-1/heartbeat"),
                         [&](http::Response r) { heartbeat = std::move(r); });
    RunUntil([&] { return !held_.empty(); });
    alive_ = false;  // the frozen leader's lease runs out while the request waits on it
    RunUntil([&] { return heartbeat.has_value(); });
    EXPECT_EQ(heartbeat->status, 503);
    EXPECT_EQ(Code(*heartbeat), "no_leader") << heartbeat->body;
    EXPECT_EQ(forwarder->stats().no_leader, 1u);

    // And a request that comes after that is not forwarded at all.
    std::optional<http::Response> next;
    forwarder->Handler()(Req("POST", "/v1/hosts/host-1/heartbeat"),
                         [&](http::Response r) { next = std::move(r); });
    RunUntil([&] { return next.has_value(); });
    EXPECT_EQ(Code(*next), "no_leader");
    EXPECT_EQ(held_.size(), 1u);
}

}  // namespace
}  // namespace cogs::replica
