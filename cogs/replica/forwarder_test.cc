// The follower's forwarding when the leader does not answer (a frozen or dead leader): a heartbeat
// is given up after heartbeat_timeout, not the long timeout of other requests, and answered
// no_leader once the leader's lease has run out meanwhile (what an agent may count as a renewal),
// leader_unreachable while it has not.
#include "cogs/replica/forwarder.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "test/support/temp_dir.h"

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

    std::unique_ptr<Forwarder> Make(Duration heartbeat_timeout, std::string download_dir = "",
                                    size_t max_connections = 256) {
        ForwarderOptions o;
        o.max_connections = max_connections;
        o.download_dir = std::move(download_dir);
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

// With TLS the leader learns the name of the client certificate the follower saw (an agent's host)
// from x-cogs-peer-name; a client cannot set it itself: whatever it sent is dropped.
TEST_F(ForwarderTest, TheClientsCertificateNameTravelsToTheLeaderAndNoClientCanForgeIt) {
    std::vector<http::Request> seen;
    auto answering = http::StartServer(io_, http::ServerOptions{}, [&](http::Request req, http::Respond r) {
        seen.push_back(std::move(req));
        r(http::Response{});
    });
    ASSERT_TRUE(answering) << answering.error().ToString();
    ForwarderOptions o;
    o.replica_id = "follower";
    o.leader = [&] {
        return store::LeaderInfo{"leader", "http://127.0.0.1:" + std::to_string((*answering)->port()),
                                 7,        0,
                                 true,     SteadyClock::now()};
    };
    Forwarder f(io_, o);
    const auto forward = [&](const std::string& peer, const std::string& forged) {
        http::Request req = Req("POST", "/v1/hosts/host-1/heartbeat");
        req.peer_name = peer;
        if (!forged.empty()) req.headers.emplace_back("x-cogs-peer-name", forged);
        std::optional<http::Response> got;
        f.Handler()(std::move(req), [&](http::Response r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        return seen.empty() ? std::string("(nothing forwarded)") : seen.back().Header("x-cogs-peer-name");
    };
    EXPECT_EQ(forward("host-2", ""), "host-2");
    EXPECT_EQ(forward("host-2", "host-1"), "host-2");
    EXPECT_EQ(forward("", "host-1"), "") << "a client without a certificate named one";
    EXPECT_EQ(seen.size(), 3u);
}

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

// Tenant requests that take every connection of their pool (they wait on the leader) do not hold a
// heartbeat or a registration back: those have a pool of their own and reach the leader at once.
TEST_F(ForwarderTest, RegistrationsAndHeartbeatsDoNotWaitBehindTenantRequests) {
    auto forwarder = Make(10s, "", 1);
    http::Handler handler = forwarder->Handler();
    std::optional<http::Response> first, second;
    handler(Req("GET", "/v1/servers"), [&](http::Response r) { first = std::move(r); });
    handler(Req("GET", "/v1/networks"), [&](http::Response r) { second = std::move(r); });
    RunUntil([&] { return held_.size() == 1; });  // the second waits for the one tenant connection
    handler(Req("POST", "/v1/hosts/h1/heartbeat"), [](http::Response) {});
    handler(Req("PUT", "/v1/hosts/h2"), [](http::Response) {});
    RunUntil([&] { return held_.size() == 3; });
    EXPECT_FALSE(first || second) << "the tenant requests still wait";
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

TEST_F(ForwarderTest, AnImageDownloadPassesThroughAFileNotMemory) {
    cogs::testing::TempDir dir;
    auto forwarder = Make(100ms, dir.path());
    std::string content;
    for (int i = 0; i < 3'000'000; ++i) {
        content.push_back(static_cast<char>(i * 13 % 256));
    }
    std::optional<http::Response> got, missing;
    forwarder->Handler()(Req("GET", "/v1/images/img-1/file"), [&](http::Response r) { got = std::move(r); });
    forwarder->Handler()(Req("GET", "/v1/images/img-2/file"),
                         [&](http::Response r) { missing = std::move(r); });
    RunUntil([&] { return held_.size() == 2; });
    http::Response ok;
    ok.content_type = "application/octet-stream";
    ok.body = content;
    held_[0](std::move(ok));
    http::Response not_found;
    not_found.status = 404;
    not_found.body = R"({"code":"not_found"})";
    held_[1](std::move(not_found));
    RunUntil([&] { return got.has_value() && missing.has_value(); });

    ASSERT_EQ(got->status, 200);
    EXPECT_TRUE(got->body.empty()) << "the content is not held in memory";
    ASSERT_NE(got->body_file, nullptr);
    std::ifstream in(got->body_file->path, std::ios::binary);
    EXPECT_TRUE(std::string(std::istreambuf_iterator<char>(in), {}) == content);
    const std::string path = got->body_file->path;
    got.reset();
    EXPECT_FALSE(std::filesystem::exists(path)) << "the file goes with the answer";

    EXPECT_EQ(missing->status, 404);
    EXPECT_EQ(Code(*missing), "not_found") << "an error's body comes back as it is";
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 0);
}

}  // namespace
}  // namespace cogs::replica
