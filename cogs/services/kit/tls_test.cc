#include "cogs/services/kit/tls.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <optional>

#include "cogs/http/client.h"
#include "cogs/pki/pki.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST(TlsOptionsTest, FilesThatDoNotHoldTogetherAreRefusedNamingTheFlag) {
    const auto refused = [](TlsOptions o) {
        auto st = CheckTlsOptions(o);
        return st ? std::string() : st.error().message;
    };
    EXPECT_EQ(refused({}), "");
    EXPECT_NE(refused({.cert_file = "c"}).find("--tls-key"), std::string::npos);
    EXPECT_NE(refused({.key_file = "k"}).find("--tls-cert"), std::string::npos);
    EXPECT_NE(refused({.client_ca_file = "ca"}).find("--tls-client-ca needs --tls-cert"), std::string::npos);
    EXPECT_NE(refused({.ca_file = "ca", .client_cert_file = "c"}).find("--tls-client-key"),
              std::string::npos);
    EXPECT_NE(refused({.client_cert_file = "c", .client_key_file = "k"}).find("needs --tls-ca"),
              std::string::npos);
    EXPECT_EQ(refused({.cert_file = "c", .key_file = "k", .client_ca_file = "ca", .ca_file = "ca"}), "");
    // Nothing asked for: no context, plain HTTP.
    EXPECT_EQ(*MakeServerTlsFrom({}), nullptr);
    EXPECT_EQ(*MakeClientTlsFrom({}), nullptr);
    EXPECT_FALSE(MakeServerTlsFrom({.cert_file = "/nonexistent.crt", .key_file = "/nonexistent.key"}));
}

http::Response Answer(const http::Handler& h, std::string method, std::string target, std::string peer) {
    http::Request req;
    req.method = std::move(method);
    req.target = std::move(target);
    req.peer_name = std::move(peer);
    std::optional<http::Response> got;
    h(std::move(req), [&](http::Response r) { got = std::move(r); });
    return got.value_or(http::Response{.status = 0});
}

TEST(AllowClientsTest, ActionsForTheNamedClientsOnlyHealthAndMetricsForAny) {
    int served = 0;
    const http::Handler inner = [&](http::Request, http::Respond respond) {
        ++served;
        respond(http::Response{});
    };
    const http::Handler h = AllowClients(inner, {"cogsd"});
    EXPECT_EQ(Answer(h, "POST", "/v1/actions/delete_port", "cogsd").status, 200);
    EXPECT_EQ(Answer(h, "GET", "/v1/inventory?x=1", "cogsd").status, 200);
    const http::Response refused = Answer(h, "POST", "/v1/actions/delete_port", "host-2");
    EXPECT_EQ(refused.status, 403);
    EXPECT_EQ(wire::ServiceErrorOf(refused.status, refused.body).code, ErrorCode::kPermissionDenied);
    EXPECT_NE(refused.body.find("'host-2'"), std::string::npos) << refused.body;
    EXPECT_EQ(Answer(h, "PUT", "/v1/faults", "host-2").status, 403);
    EXPECT_EQ(Answer(h, "GET", "/v1/ledger", "").status, 403);
    EXPECT_EQ(Answer(h, "POST", "/healthz", "host-2").status, 403);  // only the reads are open
    EXPECT_EQ(served, 2);
    EXPECT_EQ(Answer(h, "GET", "/healthz", "host-2").status, 200);
    EXPECT_EQ(Answer(h, "GET", "/metrics", "prometheus").status, 200);
    EXPECT_EQ(served, 4);
    EXPECT_EQ(Answer(AllowClients(inner, {}), "POST", "/v1/actions/x", "anyone").status, 200);
}

// A service behind mutual TLS, as Serve sets it up, called by certificates of one CA.
class TlsServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("cogs-kit-tls-" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        ca_ = pki::CaFiles{P("ca.crt"), P("ca.key")};
        ASSERT_TRUE(pki::MakeCa(ca_.cert_file, ca_.key_file, "test CA", 24h));
        for (const std::string name : {"server", "cogsd", "host-1"}) {
            ASSERT_TRUE(
                pki::Issue(ca_, P(name + ".crt"), P(name + ".key"), name, {"localhost"}, {"127.0.0.1"}, 24h));
        }
        TlsOptions o{
            .cert_file = P("server.crt"), .key_file = P("server.key"), .client_ca_file = ca_.cert_file};
        auto tls = MakeServerTlsFrom(o);
        ASSERT_TRUE(tls) << tls.error().ToString();
        server_tls_ = *tls;
        http::ServerOptions so;
        so.tls = server_tls_;
        auto server = http::StartServer(
            io_, so, AllowClients([](http::Request, http::Respond r) { r({}); }, {"cogsd"}));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
    }
    void TearDown() override {
        if (server_) server_->Stop();
        io_.restart();
        io_.poll();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string P(const std::string& f) const { return (dir_ / f).string(); }

    // The status of GET `target` as `client` ("" : no certificate), the server required to be named
    // `server_name`; 0 when no answer came (the handshake failed).
    int Status(const std::string& client, const std::string& target, const std::string& server_name = "") {
        TlsOptions o{.ca_file = ca_.cert_file};
        if (!client.empty()) {
            o.client_cert_file = P(client + ".crt");
            o.client_key_file = P(client + ".key");
        }
        auto tls = MakeClientTlsFrom(o);
        EXPECT_TRUE(tls) << tls.error().ToString();
        if (!tls) return -1;
        auto c = http::MakeClient(io_, http::ClientOptions{.host = "127.0.0.1",
                                                           .port = server_->port(),
                                                           .max_connections = 1,
                                                           .tls = *tls,
                                                           .server_name = server_name});
        http::Request req;
        req.method = "GET";
        req.target = target;
        std::optional<Result<http::Response>> got;
        c->Send(req, SteadyClock::now() + 10s, [&](Result<http::Response> r) { got = std::move(r); });
        io_.restart();
        while (!got && io_.run_one() > 0) {
        }
        return got && *got ? (*got)->status : 0;
    }

    fs::path dir_;
    pki::CaFiles ca_;
    boost::asio::io_context io_;
    std::shared_ptr<http::TlsContext> server_tls_;
    std::unique_ptr<http::Server> server_;
};

TEST_F(TlsServiceTest, OnlyCogsdsCertificateCallsTheActions) {
    EXPECT_EQ(Status("cogsd", "/v1/inventory"), 200);
    EXPECT_EQ(Status("host-1", "/v1/inventory"), 403);
    EXPECT_EQ(Status("host-1", "/healthz"), 200);
    EXPECT_EQ(Status("", "/healthz"), 0) << "a client without a certificate was served";
}

TEST_F(TlsServiceTest, ARotatedCertificateIsServedAfterSighup) {
    EXPECT_EQ(Status("cogsd", "/healthz", "rotated.test"), 0);
    ASSERT_TRUE(pki::Issue(ca_, P("server.crt"), P("server.key"), "server", {"localhost", "rotated.test"},
                           {"127.0.0.1"}, 24h));
    auto reloader = StartTlsReloader(io_, {{"server", server_tls_}}, std::chrono::hours(1));
    ASSERT_NE(reloader, nullptr);
    ASSERT_EQ(::raise(SIGHUP), 0);
    // The signal is delivered through the io_context: run it until a new connection sees the name.
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
        io_.restart();
        io_.run_for(20ms);
        seen = Status("cogsd", "/healthz", "rotated.test") == 200;
    }
    EXPECT_TRUE(seen) << "the certificate issued before SIGHUP is not served";
    EXPECT_EQ(reloader->ReloadAll(), 1);
}

}  // namespace
}  // namespace cogs::services::kit
