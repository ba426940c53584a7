// The network domain served by the kit's DomainService over real HTTP on port 0, with its state in a
// SQLite file: what cogsd's workflows see.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <optional>

#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/service.h"
#include "cogs/services/network/network.h"
#include "test/support/temp_dir.h"

namespace cogs::services::network {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class NetworkHttpTest : public ::testing::Test {
protected:
    void SetUp() override { Start(); }
    void TearDown() override { Stop(); }

    void Start() {
        kit::ServiceOptions options;
        options.state_path = dir_ / "network.db";
        auto service = kit::DomainService::Create(io_, MakeNetworkDomain(), options);
        ASSERT_TRUE(service) << service.error().ToString();
        service_ = std::move(*service);
        auto server =
            http::StartServer(io_, http::ServerOptions{}, kit::MakeActionHttpHandler(*service_, {}));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = http::MakeClient(io_, http::ClientOptions{"127.0.0.1", server_->port(), 4});
    }
    // Like a process exit: the client and server go, then the service (its last commit finishes).
    void Stop() {
        client_.reset();
        if (server_) {
            server_->Stop();
        }
        io_.restart();
        io_.poll();
        server_.reset();
        service_.reset();
        io_.restart();
        io_.poll();
    }

    http::Response Send(std::string method, std::string target, std::string body = "", std::string key = "") {
        std::vector<std::pair<std::string, std::string>> headers;
        if (!key.empty()) {
            headers.emplace_back("idempotency-key", std::move(key));
        }
        return kit::test_service::Send(io_, *client_, std::move(method), std::move(target), std::move(body),
                                       std::move(headers));
    }

    // POST /v1/actions/{action}; returns (status, parsed body).
    std::pair<int, json::value> Action(std::string action, std::string input, std::string key) {
        auto r = Send("POST", "/v1/actions/" + action, std::move(input), std::move(key));
        return {r.status, json::parse(r.body)};
    }

    const cogs::testing::TempDir dir_{"cogs-network-http-test"};
    boost::asio::io_context io_;
    std::unique_ptr<kit::DomainService> service_;
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> client_;
};

TEST_F(NetworkHttpTest, ActionsOverHttpSurviveARestart) {
    auto [s1, net] = Action("create_network", R"({"id":"n1","name":"web"})", "w1/net/do");
    ASSERT_EQ(s1, 200) << net;
    EXPECT_EQ(net.at("output"), json::parse(R"({"id":"n1","name":"web","project_id":""})"));
    ASSERT_EQ(
        Action("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/29"})", "w1/sub/do").first,
        200);
    auto [s2, port] = Action("create_port", R"({"id":"p1","network_id":"n1"})", "w2/port/do");
    ASSERT_EQ(s2, 200) << port;
    EXPECT_EQ(port.at("output").at("fixed_ip"), "10.0.0.2");
    // The same key again: the recorded answer, not a second port.
    EXPECT_EQ(Action("create_port", R"({"id":"p1","network_id":"n1"})", "w2/port/do").second, port);

    // Refusals carry the protocol's error object and status.
    auto [s3, bad] =
        Action("create_port", R"({"id":"p2","network_id":"n1","fixed_ip":"10.0.0.2"})", "w3/port/do");
    EXPECT_EQ(s3, 409);
    EXPECT_EQ(bad.at("code"), "conflict");
    EXPECT_EQ(bad.at("message"), "fixed_ip: address 10.0.0.2 in use by port p1");
    auto [s4, unknown] = Action("create_port", R"({"id":"p2","network_id":"n1","typo":1})", "w4/port/do");
    EXPECT_EQ(s4, 400);
    EXPECT_EQ(unknown.at("message"), "typo: unknown field");
    EXPECT_EQ(Action("create_port", R"({"id":"p2","network_id":"n9"})", "w5/port/do").first, 404);

    // A workflow rolling back: the undo performs delete_port and frees the address.
    auto [s5, p3] = Action("create_port", R"({"id":"p3","network_id":"n1"})", "w6/port/do");
    ASSERT_EQ(s5, 200);
    EXPECT_EQ(p3.at("output").at("fixed_ip"), "10.0.0.3");
    EXPECT_EQ(Action("delete_port", R"({"id":"p3"})", "w6/port/undo").first, 200);

    auto r = Send("GET", "/v1/ports/p1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json::parse(r.body).at("port"), port.at("output"));
    EXPECT_EQ(Send("GET", "/v1/ports/p3").status, 404);
    const std::string inventory = Send("GET", "/v1/inventory").body;
    EXPECT_EQ(json::parse(inventory).at("addresses"),
              json::parse(R"([{"ip":"10.0.0.2","subnet_id":"s1","port_id":"p1"}])"));

    // Restart on the same state file: the same inventory, and allocation goes on after .3 (next-fit).
    Stop();
    Start();
    EXPECT_EQ(Send("GET", "/v1/inventory").body, inventory);
    auto [s6, p4] = Action("create_port", R"({"id":"p4","network_id":"n1"})", "w7/port/do");
    ASSERT_EQ(s6, 200) << p4;
    EXPECT_EQ(p4.at("output").at("fixed_ip"), "10.0.0.4");
    // Keys answered before the restart are answered the same after it.
    EXPECT_EQ(Action("create_port", R"({"id":"p1","network_id":"n1"})", "w2/port/do").second, port);
    EXPECT_EQ(Send("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace cogs::services::network
