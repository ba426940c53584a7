// Host credentials from the attacker's side (docs/api.md "Hosts and their credentials"): what a
// host token may do (register and renew its own host, read images, whoami) and everything it may
// not (every tenant and admin route, another host), enrollment (admin only; enrolling again revokes
// the earlier host token), and the agent token cogsd presents (its own per host and enrollment).
#include "cogs/base/secret.h"
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/core/credentials.h"

namespace cogs::cloud::testing {
namespace {

const std::string kHostBody = R"({"url":"http://127.0.0.1:7","vcpus":8,"ram_mb":16384,"disk_gb":100})";

struct Enrollment {
    int status = 0;
    std::string token_id, host_token, agent_token;
    json::array revoked;
};

class HostCredentialTest : public CloudTest {
protected:
    Enrollment Enroll(const std::string& host, const std::string& token = "",
                      const CloudTest::Headers& h = {}) {
        Reply r = Call(token.empty() ? admin_ : token, "POST", "/v1/hosts/" + host + "/enroll", "", h);
        Enrollment e;
        e.status = r.status;
        e.token_id = r.Field("enrollment", "token_id");
        e.host_token = r.Field("enrollment", "host_token");
        e.agent_token = r.Field("enrollment", "agent_token");
        if (const json::value* v = r.Obj("enrollment").if_contains("revoked_token_ids"); v && v->is_array()) {
            e.revoked = v->get_array();
        }
        return e;
    }
};

TEST_F(HostCredentialTest, AHostTokenRegistersAndRenewsItsOwnHostAndReadsImagesOnly) {
    Seed(2);
    const Enrollment h1 = Enroll("h1");
    ASSERT_EQ(h1.status, 201);
    ASSERT_FALSE(h1.host_token.empty());
    ASSERT_FALSE(h1.agent_token.empty());
    EXPECT_NE(h1.host_token, h1.agent_token);

    Reply who = Call(h1.host_token, "GET", "/v1/whoami");
    ASSERT_EQ(who.status, 200) << who.raw.body;
    EXPECT_EQ(who.Str("role"), "host");
    EXPECT_EQ(who.Str("host"), "h1");
    EXPECT_EQ(Call(h1.host_token, "PUT", "/v1/hosts/h1", kHostBody).status, 200);
    EXPECT_EQ(Call(h1.host_token, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);
    EXPECT_EQ(Call(h1.host_token, "GET", "/v1/images/debian").status, 200) << "the images it boots";
    EXPECT_EQ(Call(h1.host_token, "GET", "/v1/images/debian/file").status, 409)
        << "the download route is its to call (this image has no content yet)";

    // A tenant's network and server exist, for the host to try its hand on.
    const std::string member = NewToken(NewProject("t"), "member");
    const std::string net = ActiveNetwork(member);
    const std::string server = ActiveServer(member, net);
    const std::string h2_before = Call(admin_, "GET", "/v1/hosts/h2").raw.body;

    const std::vector<std::tuple<std::string, std::string, std::string>> refused = {
        // another host: registered under the attacker's URL, renewed, or its events read
        {"PUT", "/v1/hosts/h2", kHostBody},
        {"PUT", "/v1/hosts/h3", kHostBody},
        {"POST", "/v1/hosts/h2/heartbeat", "{}"},
        // its own host, but as an operator
        {"GET", "/v1/hosts", ""},
        {"GET", "/v1/hosts/h1", ""},
        {"GET", "/v1/hosts/h1/events", ""},
        {"POST", "/v1/hosts/h1/drain", "{}"},
        {"POST", "/v1/hosts/h1/disable", "{}"},
        {"POST", "/v1/hosts/h1/enroll", ""},
        {"POST", "/v1/hosts/h2/enroll", ""},
        // the tenants' resources, read or changed
        {"GET", "/v1/servers", ""},
        {"GET", "/v1/servers/" + server, ""},
        {"GET", "/v1/servers/" + server + "/console", ""},
        {"POST", "/v1/servers/" + server + "/stop", "{}"},
        {"DELETE", "/v1/servers/" + server, ""},
        {"GET", "/v1/networks", ""},
        {"POST", "/v1/networks", R"({"name":"evil"})"},
        {"DELETE", "/v1/networks/" + net, ""},
        {"GET", "/v1/volumes", ""},
        {"POST", "/v1/volumes", R"({"name":"v","size_gb":1})"},
        {"GET", "/v1/events", ""},
        {"GET", "/v1/workflows", ""},
        // the admin's
        {"GET", "/v1/projects", ""},
        {"POST", "/v1/projects", R"({"name":"evil"})"},
        {"GET", "/v1/tokens", ""},
        {"POST", "/v1/tokens", R"({"project_id":"admin","role":"admin"})"},
        {"DELETE", "/v1/tokens/" + h1.token_id, ""},
        {"GET", "/v1/flavors", ""},
        {"POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":0})"},
        {"POST", "/v1/images", R"({"name":"evil"})"},
        {"DELETE", "/v1/images/debian", ""},
        {"PUT", "/v1/images/debian/file", "x"},
        {"GET", "/v1/replicas", ""},
        {"GET", "/v1/log-levels", ""},
        {"PUT", "/v1/log-levels", R"({"api":"off"})"},
    };
    for (const auto& [method, path, body] : refused) {
        EXPECT_EQ(Call(h1.host_token, method, path, body).status, 403) << method << " " << path;
    }
    // Nothing changed: h2 as it was, no h3, the tenant's server and network there, one network.
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h2").raw.body, h2_before);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h3").status, 404);
    EXPECT_EQ(Server(server).Field("server", "status"), "ACTIVE");
    EXPECT_EQ(Count(admin_, "networks"), 1u);
    EXPECT_EQ(Count(admin_, "projects"), 2u);
    EXPECT_EQ(Call(h1.host_token, "GET", "/v1/whoami").status, 200) << "its token is still there";
}

TEST_F(HostCredentialTest, OnlyAnAdminEnrollsAndAHostTokenIsNeverMadeAsAPlainToken) {
    Seed(1);
    const std::string p = NewProject("t");
    for (const std::string role : {"member", "reader"}) {
        EXPECT_EQ(Enroll("h1", NewToken(p, role)).status, 403) << role;
    }
    EXPECT_EQ(Enroll("h1", "cogs_wrong").status, 401);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens?project_id=" + p).Items("tokens").size(), 2u)
        << "none enrolled";
    Reply bad = Call(admin_, "POST", "/v1/hosts/bad%20name/enroll");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "name");
    bad = Call(admin_, "POST", "/v1/hosts/h1/enroll", R"({"role":"admin"})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "role");
    bad = Call(admin_, "POST", "/v1/tokens", R"({"project_id":")" + p + R"(","role":"host"})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "role");
}

TEST_F(HostCredentialTest, EnrollingAgainRevokesTheEarlierHostTokenAndChangesTheAgentToken) {
    Seed(1);
    const Enrollment first = Enroll("h1", "", {{"idempotency-key", "enroll-1"}});
    ASSERT_EQ(first.status, 201);
    EXPECT_TRUE(first.revoked.empty());
    EXPECT_EQ(Call(first.host_token, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);

    // A replay of the same request answers the same enrollment, without its secrets.
    const Enrollment replay = Enroll("h1", "", {{"idempotency-key", "enroll-1"}});
    EXPECT_EQ(replay.status, 201);
    EXPECT_EQ(replay.token_id, first.token_id);
    EXPECT_TRUE(replay.host_token.empty());
    EXPECT_TRUE(replay.agent_token.empty());
    EXPECT_EQ(Call(first.host_token, "GET", "/v1/whoami").status, 200) << "a replay revokes nothing";

    const Enrollment second = Enroll("h1");
    ASSERT_EQ(second.status, 201);
    ASSERT_EQ(second.revoked.size(), 1u);
    EXPECT_EQ(second.revoked[0], json::value(first.token_id));
    EXPECT_EQ(Call(first.host_token, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 401);
    EXPECT_EQ(Call(first.host_token, "GET", "/v1/whoami").status, 401);
    EXPECT_EQ(Call(second.host_token, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);
    EXPECT_NE(second.agent_token, first.agent_token);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + first.token_id).status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + second.token_id).Field("token", "role"), "host");
    EXPECT_EQ(EventTypes("/v1/hosts/h1").back(), "enrolled");

    // Revoked like any token: DELETE /v1/tokens/{id}.
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/tokens/" + second.token_id).status, 204);
    EXPECT_EQ(Call(second.host_token, "GET", "/v1/whoami").status, 401);
}

TEST_F(HostCredentialTest, EachHostsAgentTokenIsItsOwnAndSurvivesARestart) {
    Seed(2);
    const Enrollment h1 = Enroll("h1");
    const Enrollment h2 = Enroll("h2");
    EXPECT_NE(h1.agent_token, h2.agent_token);
    EXPECT_EQ(h1.agent_token, AgentToken(options_.agent_key, "h1", h1.token_id));
    EXPECT_NE(h1.agent_token, AgentToken("another-key", "h1", h1.token_id));
    // Neither secret nor its hash is anywhere the host or its token is shown.
    for (const std::string& path :
         std::vector<std::string>{"/v1/hosts/h1", "/v1/tokens/" + h1.token_id, "/v1/hosts/h1/events"}) {
        const std::string body = Call(admin_, "GET", path).raw.body;
        EXPECT_EQ(body.find(h1.host_token), std::string::npos) << path;
        EXPECT_EQ(body.find(Sha256Hex(h1.host_token)), std::string::npos) << path;
        EXPECT_EQ(body.find(h1.agent_token), std::string::npos) << path;
    }
    Close();
    Open();
    Reply who = Call(h1.host_token, "GET", "/v1/whoami");
    EXPECT_EQ(who.Str("host"), "h1") << "the host token is durable";
    EXPECT_EQ(Call(h1.host_token, "PUT", "/v1/hosts/h2", kHostBody).status, 403);
}

TEST_F(HostCredentialTest, AHostIsDeletedOnlyOnceItHoldsNoServerAndGoesWithItsCredentials) {
    Seed(2);
    const Enrollment h1 = Enroll("h1");
    const Enrollment h2 = Enroll("h2");
    ASSERT_EQ(h1.status, 201);
    ASSERT_EQ(h2.status, 201);
    const std::string member = NewToken(NewProject("t"), "member");
    const std::string net = ActiveNetwork(member);
    const std::string server = ActiveServer(member, net);
    const std::string used = Server(server).Field("server", "host");
    ASSERT_TRUE(used == "h1" || used == "h2") << used;
    const std::string other = used == "h1" ? "h2" : "h1";
    const Enrollment& used_creds = used == "h1" ? h1 : h2;
    const Enrollment& other_creds = used == "h1" ? h2 : h1;

    // In use: refused, and nothing changed.
    const std::string before = Call(admin_, "GET", "/v1/hosts/" + used).raw.body;
    Reply busy = Call(admin_, "DELETE", "/v1/hosts/" + used);
    EXPECT_EQ(busy.status, 409) << busy.raw.body;
    EXPECT_NE(busy.raw.body.find(server), std::string::npos) << busy.raw.body;
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/" + used).raw.body, before);
    EXPECT_EQ(Call(used_creds.host_token, "POST", "/v1/hosts/" + used + "/heartbeat", "{}").status, 200);
    // Only an admin deletes a host, and only one that exists.
    EXPECT_EQ(Call(member, "DELETE", "/v1/hosts/" + other).status, 403);
    EXPECT_EQ(Call(used_creds.host_token, "DELETE", "/v1/hosts/" + used).status, 403);
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/hosts/h9").status, 404);
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/hosts/" + other, R"({"force":true})").status, 400);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts").Items("hosts").size(), 2u);

    // Once its server is gone it goes, with its host token: its agent can no longer renew it.
    ASSERT_EQ(Call(member, "DELETE", "/v1/servers/" + server).status, 202);
    WaitFor("/v1/servers/" + server, "server", "");
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/hosts/" + used).status, 204);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/" + used).status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts").Items("hosts").size(), 1u);
    EXPECT_EQ(EventTypes("/v1/hosts/" + used).back(), "deleted") << "its history stays";
    EXPECT_EQ(Call(used_creds.host_token, "POST", "/v1/hosts/" + used + "/heartbeat", "{}").status, 401);
    EXPECT_EQ(Call(used_creds.host_token, "PUT", "/v1/hosts/" + used, kHostBody).status, 401);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + used_creds.token_id).status, 404);
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/hosts/" + used).status, 404) << "deleted once";
    // The other host's credentials are untouched, and new servers go there.
    EXPECT_EQ(Call(other_creds.host_token, "POST", "/v1/hosts/" + other + "/heartbeat", "{}").status, 200);
    const std::string next = ActiveServer(member, net);
    EXPECT_EQ(Server(next).Field("server", "host"), other);

    // A build on its way to a host holds it too: claimed, its instance not yet booted.
    ASSERT_EQ(Call(member, "DELETE", "/v1/servers/" + next).status, 202);
    WaitFor("/v1/servers/" + next, "server", "");
    gates_["compute"]->Hold("create_instance");
    Reply building = Call(member, "POST", "/v1/servers", ServerBody(net));
    ASSERT_EQ(building.status, 202) << building.raw.body;
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    Reply claimed = Call(admin_, "DELETE", "/v1/hosts/" + other);
    EXPECT_EQ(claimed.status, 409) << claimed.raw.body;
    EXPECT_NE(claimed.raw.body.find("claimed by 1 server"), std::string::npos) << claimed.raw.body;
    gates_["compute"]->Release();
    const std::string built = building.Field("server", "id");
    WaitFor("/v1/servers/" + built, "server", "ACTIVE");
    EXPECT_EQ(Server(built).Field("server", "host"), other);

    // Durable: a restart loads neither the host nor its token.
    Close();
    Open();
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/" + used).status, 404);
    EXPECT_EQ(Call(used_creds.host_token, "GET", "/v1/whoami").status, 401);
    // The name may be enrolled and registered again, as a new host.
    const Enrollment again = Enroll(used);
    ASSERT_EQ(again.status, 201);
    EXPECT_TRUE(again.revoked.empty());
    EXPECT_EQ(Call(again.host_token, "PUT", "/v1/hosts/" + used, kHostBody).status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts").Items("hosts").size(), 2u);
}

TEST_F(HostCredentialTest, WithoutAnAgentKeyNoHostIsEnrolled) {
    Close();
    options_.agent_key = "";  // (SetUp's default is past: Open takes options_ as they are)
    Open();
    Seed(1);
    Reply r = Call(admin_, "POST", "/v1/hosts/h1/enroll");
    EXPECT_EQ(r.status, 422) << r.raw.body;
    EXPECT_EQ(r.Str("code"), "failed_precondition");
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens").Items("tokens").size(), 1u) << "the admin's alone";
}

}  // namespace
}  // namespace cogs::cloud::testing
