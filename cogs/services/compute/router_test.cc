// The compute router against a real HTTP server standing in for one agent process that serves several
// hosts at one URL: each host's calls carry its own token over the agent's one pool, and over TLS a
// call goes only to a certificate that names its host.
#include "cogs/services/compute/router.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <optional>
#include <vector>

#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/pki/pki.h"
#include "test/support/temp_dir.h"

namespace cogs::services::compute {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

class RouterTest : public ::testing::Test {
protected:
    // The agent: answers every action 200 and keeps the token each call presented.
    void StartAgent(std::shared_ptr<http::TlsContext> tls) {
        http::ServerOptions options;
        options.tls = std::move(tls);
        auto server = http::StartServer(io_, options, [this](http::Request req, http::Respond respond) {
            tokens_.push_back(req.Header("authorization"));
            http::Response r;
            r.body = R"({"output":{"id":"s1","state":"ACTIVE"}})";
            respond(std::move(r));
        });
        ASSERT_TRUE(server) << server.error().ToString();
        agent_ = std::move(*server);
        url_ = std::string(options.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(agent_->port());
    }

    // h1, h2 and h3 all at the agent's URL, each with its own token.
    std::shared_ptr<workflow::ServiceClient> Router(std::shared_ptr<http::TlsContext> tls = nullptr) {
        auto lookup = [this](const std::string& host) -> std::optional<HostRoute> {
            if (host != "h1" && host != "h2" && host != "h3") return std::nullopt;
            return HostRoute{.url = url_, .token = "token-of-" + host};
        };
        return MakeComputeRouter(io_, lookup, 4, std::move(tls));
    }

    Result<workflow::ActionReply> Call(workflow::ServiceClient& router, const std::string& host) {
        workflow::ActionCall call;
        call.action = "create_instance";
        call.idempotency_key = "wf/" + host + "/do";
        call.input = R"({"id":"s1","host":")" + host + R"("})";
        call.deadline = SteadyClock::now() + 5s;
        std::optional<Result<workflow::ActionReply>> got;
        router.Invoke(call, [&](Result<workflow::ActionReply> r) { got = std::move(r); });
        const auto end = SteadyClock::now() + 10s;
        while (!got && SteadyClock::now() < end)
            io_.run_one_for(10ms);
        if (!got) return MakeError(ErrorCode::kInternal, "the call never ended");
        return std::move(*got);
    }

    testing::TempDir dir_{"router-test"};
    asio::io_context io_;
    std::unique_ptr<http::Server> agent_;
    std::string url_;
    std::vector<std::string> tokens_;
};

TEST_F(RouterTest, TheHostsOfOneAgentShareItsPoolEachPresentingItsOwnToken) {
    StartAgent(nullptr);
    auto router = Router();
    for (const char* host : {"h1", "h2", "h3", "h1", "h2", "h3"}) {
        auto got = Call(*router, host);
        ASSERT_TRUE(got) << host << ": " << got.error().ToString();
    }
    EXPECT_EQ(tokens_,
              (std::vector<std::string>{"Bearer token-of-h1", "Bearer token-of-h2", "Bearer token-of-h3",
                                        "Bearer token-of-h1", "Bearer token-of-h2", "Bearer token-of-h3"}));
    EXPECT_EQ(agent_->connections_accepted(), 1u);  // was one connection (and one pool) per host
    auto unknown = Call(*router, "h9");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(RouterTest, OverTlsACallGoesOnlyToACertificateThatNamesItsHost) {
    const pki::CaFiles ca{dir_ / "ca.crt", dir_ / "ca.key"};
    ASSERT_TRUE(pki::MakeCa(ca.cert_file, ca.key_file, "test CA", 24h));
    // The agent's certificate names h1 and h2, not h3 (registered at the same URL by someone else).
    ASSERT_TRUE(pki::Issue(ca, dir_ / "agent.crt", dir_ / "agent.key", "agent", {"h1", "h2"}, {}, 24h));
    ASSERT_TRUE(pki::Issue(ca, dir_ / "cogsd.crt", dir_ / "cogsd.key", "cogsd", {}, {}, 24h));
    auto server_tls = http::MakeServerTls({dir_ / "agent.crt", dir_ / "agent.key", ca.cert_file, true});
    ASSERT_TRUE(server_tls) << server_tls.error().ToString();
    StartAgent(*server_tls);
    auto client_tls = http::MakeClientTls({dir_ / "cogsd.crt", dir_ / "cogsd.key", ca.cert_file});
    ASSERT_TRUE(client_tls) << client_tls.error().ToString();
    auto router = Router(*client_tls);

    for (const char* host : {"h1", "h2", "h1", "h2"}) {
        auto got = Call(*router, host);
        ASSERT_TRUE(got) << host << ": " << got.error().ToString();
    }
    EXPECT_EQ(agent_->connections_accepted(), 1u);  // one handshake for both hosts
    auto h3 = Call(*router, "h3");
    ASSERT_FALSE(h3);
    EXPECT_EQ(h3.error().code, ErrorCode::kUnavailable);  // retryable: a certificate may be renewed
    EXPECT_NE(h3.error().message.find("does not name h3"), std::string::npos) << h3.error().ToString();
    // h3's token never left cogsd.
    EXPECT_EQ(tokens_, (std::vector<std::string>{"Bearer token-of-h1", "Bearer token-of-h2",
                                                 "Bearer token-of-h1", "Bearer token-of-h2"}));
}

}  // namespace
}  // namespace cogs::services::compute
