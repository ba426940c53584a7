// GET /v1/servers/{id}/console (resources/consoles.h), in one process: the hosts' agent is a small
// HTTP server of the test on the fixture's io_context, answering GET /v1/instances/{id}/console as
// cogs-compute does; what cogsd asked it and what the API answers are checked.
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/core/credentials.h"
#include "cogs/cloud/resources/consoles.h"

namespace cogs::cloud::testing {
namespace {

class CloudConsoleTest : public CloudTest {
protected:
    void SetUp() override {
        options_.agent_key = "the-agent-key";
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed());
        project_ = NewProject("t");
        member_ = NewToken(project_, "member");
        net_ = ActiveNetwork(member_);
    }
    void TearDown() override {
        agent_.reset();
        CloudTest::TearDown();
    }

    // Serves the agent of hosts h1 and h2 (registered again with its URL): answers `status` with
    // `body` to every request, and keeps each request's target and authorization.
    void StartAgent() {
        http::ServerOptions so;
        so.port = 0;
        auto server = http::StartServer(*io_, so, [this](http::Request req, http::Respond respond) {
            asked_.push_back(req.target);
            authorization_ = req.Header("authorization");
            http::Response r;
            r.status = agent_status_;
            r.body = agent_body_;
            respond(std::move(r));
        });
        ASSERT_TRUE(server.has_value()) << server.error().message;
        agent_ = std::move(*server);
        SetHostsUrl("http://127.0.0.1:" + std::to_string(agent_->port()));
    }
    void SetHostsUrl(const std::string& url) {
        for (const std::string h : {"h1", "h2"}) {
            Reply r = Call(admin_, "PUT", "/v1/hosts/" + h,
                           R"({"url":")" + url + R"(","vcpus":8,"ram_mb":16384,"disk_gb":100})");
            ASSERT_EQ(r.status, 200) << r.raw.body;
        }
    }
    Reply Console(const std::string& id, const std::string& query = "", const std::string& token = "") {
        return Call(token.empty() ? member_ : token, "GET", "/v1/servers/" + id + "/console" + query);
    }

    std::string project_, member_, net_;
    std::unique_ptr<http::Server> agent_;
    int agent_status_ = 200;
    std::string agent_body_;
    std::vector<std::string> asked_;
    std::string authorization_;
};

TEST_F(CloudConsoleTest, TheOutputComesFromTheAgentOfTheServersHostAndLengthKeepsTheLastLines) {
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    const std::string id = ActiveServer(member_, net_);
    const std::string host = Server(id).Field("server", "host");
    agent_body_ = R"({"id":")" + id + R"(","output":"booting\nserver s up\nserving on :80\n"})";

    Reply all = Console(id);
    ASSERT_EQ(all.status, 200) << all.raw.body;
    EXPECT_EQ(all.Field("console", "output"), "booting\nserver s up\nserving on :80\n");
    EXPECT_EQ(all.Field("console", "server_id"), id);
    EXPECT_EQ(all.Field("console", "host"), host);
    ASSERT_FALSE(asked_.empty());
    EXPECT_EQ(asked_.back(), "/v1/instances/" + id + "/console");
    EXPECT_EQ(authorization_, "Bearer " + AgentToken(options_.agent_key, host, ""))
        << "a host never enrolled: the token of its name alone";
    // Enrolled: the agent token its enrollment gave, which is that host's alone.
    Reply enrolled = Call(admin_, "POST", "/v1/hosts/" + host + "/enroll");
    ASSERT_EQ(enrolled.status, 201) << enrolled.raw.body;
    ASSERT_EQ(Console(id).status, 200);
    EXPECT_EQ(authorization_, "Bearer " + enrolled.Field("enrollment", "agent_token"));

    Reply last = Console(id, "?length=2");
    ASSERT_EQ(last.status, 200) << last.raw.body;
    EXPECT_EQ(last.Field("console", "output"), "server s up\nserving on :80\n");
    EXPECT_EQ(Console(id, "?length=10000").Field("console", "output"),
              "booting\nserver s up\nserving on :80\n");
}

TEST_F(CloudConsoleTest, AnInstanceTheAgentDoesNotHoldHasAnEmptyConsole) {
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    const std::string id = ActiveServer(member_, net_);
    agent_status_ = 404;
    agent_body_ = R"({"code":"not_found","message":"no instance","retryable":false})";
    Reply r = Console(id);
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(r.Field("console", "output"), "");
}

TEST_F(CloudConsoleTest, AnUnreachableOrFailingAgentIs503WithRetryAfterNamingTheHost) {
    // Seed's hosts are at http://127.0.0.1:1, where nothing listens.
    const std::string id = ActiveServer(member_, net_);
    const std::string host = Server(id).Field("server", "host");
    Reply r = Console(id);
    EXPECT_EQ(r.status, 503) << r.raw.body;
    EXPECT_EQ(r.Str("code"), "unavailable");
    EXPECT_EQ(r.raw.Header("retry-after"), "1") << "the API says when to try again";
    EXPECT_NE(r.Str("message").find("host " + host), std::string::npos) << r.Str("message");

    ASSERT_NO_FATAL_FAILURE(StartAgent());
    agent_status_ = 500;
    agent_body_ = R"({"code":"internal","message":"runc failed","retryable":false})";
    Reply failing = Console(id);
    EXPECT_EQ(failing.status, 503) << failing.raw.body;
    EXPECT_NE(failing.Str("message").find("runc failed"), std::string::npos) << failing.Str("message");
}

TEST_F(CloudConsoleTest, BadParametersAre400NamingThemAndAnotherProjectsServerIs404) {
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    agent_body_ = R"({"output":""})";
    const std::string id = ActiveServer(member_, net_);
    for (const std::string q : {"?length=0", "?length=-1", "?length=10001", "?length=ten", "?length="}) {
        Reply r = Console(id, q);
        EXPECT_EQ(r.status, 400) << q << ": " << r.raw.body;
        EXPECT_NE(r.Str("message").find("length"), std::string::npos) << q << ": " << r.Str("message");
    }
    Reply unknown = Console(id, "?lines=3");
    EXPECT_EQ(unknown.status, 400) << unknown.raw.body;
    EXPECT_NE(unknown.Str("message").find("lines"), std::string::npos) << unknown.Str("message");
    const size_t asked = asked_.size();

    const std::string other = NewToken(NewProject("u"), "member");
    EXPECT_EQ(Console(id, "", other).status, 404) << "another project's server is not found";
    EXPECT_EQ(Console("no-such-server").status, 404);
    EXPECT_EQ(asked_.size(), asked) << "nothing refused reaches the agent";
    EXPECT_EQ(Console(id, "", NewToken(project_, "reader")).status, 200) << "a reader reads the console";
}

TEST(ConsolesLastLines, KeepsTheLastLinesCountingALastLineWithoutItsNewline) {
    EXPECT_EQ(Consoles::LastLines("a\nb\nc\n", 2), "b\nc\n");
    EXPECT_EQ(Consoles::LastLines("a\nb\nc", 2), "b\nc");
    EXPECT_EQ(Consoles::LastLines("a\nb\nc\n", 3), "a\nb\nc\n");
    EXPECT_EQ(Consoles::LastLines("a\nb\nc\n", 9), "a\nb\nc\n");
    EXPECT_EQ(Consoles::LastLines("a\n\n\n", 2), "\n\n");
    EXPECT_EQ(Consoles::LastLines("", 5), "");
}

}  // namespace
}  // namespace cogs::cloud::testing
