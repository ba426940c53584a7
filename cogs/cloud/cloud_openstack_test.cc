// The OpenStack-compatible face (openstack/face.h), in one process: each request in the shape the
// OpenStack clients send, each answer checked for what they read — and, behind it, what /v1 and the
// services hold (the translation is one way onto the same records). Bad input is 400 in the
// service's own error shape naming the field, another project's resource 404, and nothing written.
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/openstack/face.h"
#include "cogs/cloud/resources/catalog.h"

namespace cogs::cloud::testing {
namespace {

// The message of an error body of any OpenStack shape ({"itemNotFound": {"message"}}, ...).
std::string Message(const Reply& r) {
    for (const auto& kv : r.body) {
        if (kv.value().is_object()) {
            if (const auto* m = kv.value().as_object().if_contains("message"); m && m->is_string()) {
                return std::string(m->as_string());
            }
        }
    }
    return "";
}

// The one key of an error body ("itemNotFound", "NeutronError", "error").
std::string ErrorKey(const Reply& r) { return r.body.size() == 1 ? std::string(r.body.begin()->key()) : ""; }

class OpenStackTest : public CloudTest {
protected:
    void SetUp() override {
        real_volume_ = true;  // attachments checked in the volume service's own inventory
        CloudTest::SetUp();
        Seed();
        project_ = NewProject("p1");
        token_ = NewToken(project_, "member");
        Reply u = Call(admin_, "POST", "/v1/users",
                       R"({"name":"alice","project_id":"p1","role":"member","password":"correct horse"})");
        ASSERT_EQ(u.status, 201) << u.raw.body;
        user_ = u.Field("user", "id");
    }

    // A call of the face as the OpenStack clients make it: X-Auth-Token, Host.
    Reply Os(const std::string& token, const std::string& method, const std::string& target,
             const std::string& body = "", Headers headers = {}) {
        headers.emplace_back("host", "cloud.example:8780");
        if (!token.empty()) headers.emplace_back("x-auth-token", token);
        return Call("", method, target, body, headers);
    }

    Reply Login(const std::string& user, const std::string& password,
                const std::string& scope = R"("name":"p1")") {
        return Os("", "POST", "/v3/auth/tokens",
                  R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":")" + user +
                      R"(","password":")" + password +
                      R"(","domain":{"name":"Default"}}}},"scope":{"project":{)" + scope +
                      R"(,"domain":{"name":"Default"}}}}})");
    }

    std::string NetworkId(const std::string& token, const std::string& name = "net") {
        Reply r = Os(token, "POST", "/network/v2.0/networks", R"({"network":{"name":")" + name + R"("}})");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        EXPECT_EQ(r.Field("network", "status"), "ACTIVE") << "Neutron answers once the network exists";
        return r.Field("network", "id");
    }
    std::string SubnetId(const std::string& token, const std::string& net,
                         const std::string& cidr = "10.0.0.0/24") {
        Reply r = Os(token, "POST", "/network/v2.0/subnets",
                     R"({"subnet":{"name":"sub","network_id":")" + net + R"(","cidr":")" + cidr +
                         R"(","ip_version":4}})");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        return r.Field("subnet", "id");
    }
    std::string NovaServer(const std::string& token, const std::string& net, const std::string& extra = "") {
        Reply r =
            Os(token, "POST", "/compute/v2.1/servers",
               R"({"server":{"name":"vm","flavorRef":"small","imageRef":"debian","networks":[{"uuid":")" +
                   net + R"("}])" + extra + "}}");
        EXPECT_EQ(r.status, 202) << r.raw.body;
        return r.Field("server", "id");
    }
    Reply WaitNova(const std::string& token, const std::string& id, const std::string& status) {
        Reply r;
        RunUntil([&] {
            r = Os(token, "GET", "/compute/v2.1/servers/" + id);
            return r.Field("server", "status") == status &&
                   r.Obj("server").at("OS-EXT-STS:task_state").is_null();
        });
        return r;
    }

    std::string project_, token_, user_;
};

TEST_F(OpenStackTest, VersionDocumentsAreServedWithoutATokenAndAdvertiseOnlyWhatIsImplemented) {
    Reply root = Os("", "GET", "/");
    EXPECT_EQ(root.status, 300);
    const auto& v3 = root.Obj("versions").at("values").as_array().at(0).as_object();
    EXPECT_EQ(StrOf(v3, "id"), "v3.14");
    EXPECT_EQ(StrOf(v3.at("links").as_array().at(0), "href"), "http://cloud.example:8780/v3/")
        << "links name the host the client asked";
    EXPECT_EQ(Os("", "GET", "/v3").status, 200);
    Reply compute = Os("", "GET", "/compute/v2.1");
    ASSERT_EQ(compute.status, 200);
    EXPECT_EQ(StrOf(compute.Obj("version"), "version"), "2.1");
    EXPECT_EQ(StrOf(compute.Obj("version"), "min_version"), "2.1");
    EXPECT_EQ(Os("", "GET", "/image").status, 300);
    EXPECT_EQ(Os("", "GET", "/volume/v3/").status, 200);
    EXPECT_EQ(Os("", "GET", "/network").status, 200);
    // Everything else needs a token, answered in Keystone's or the service's shape.
    Reply servers = Os("", "GET", "/compute/v2.1/servers");
    EXPECT_EQ(servers.status, 401);
    EXPECT_EQ(ErrorKey(servers), "unauthorized");
    EXPECT_EQ(Os("bogus", "GET", "/network/v2.0/networks").status, 401);
}

TEST_F(OpenStackTest, APasswordLoginMintsAnExpiringCogsTokenWithACatalogOfThisCloud) {
    Reply r = Login("alice", "correct horse");
    ASSERT_EQ(r.status, 201) << r.raw.body;
    const std::string token = r.raw.Header("x-subject-token");
    ASSERT_FALSE(token.empty());
    const json::object& t = r.Obj("token");
    EXPECT_EQ(StrOf(t.at("project"), "id"), project_);
    EXPECT_EQ(StrOf(t.at("user"), "id"), user_);
    EXPECT_EQ(StrOf(t.at("roles").as_array().at(0), "name"), "member");
    const auto expires = ParseRfc3339(StrOf(t, "expires_at"));
    ASSERT_TRUE(expires);
    EXPECT_EQ(*expires - clock_.WallMs(), 3600 * 1000) << "Keystone's default lifetime, one hour";
    std::map<std::string, std::string> catalog;
    for (const auto& s : t.at("catalog").as_array()) {
        for (const auto& e : s.at("endpoints").as_array()) {
            if (StrOf(e, "interface") == "public") catalog[StrOf(s, "type")] = StrOf(e, "url");
        }
    }
    EXPECT_EQ(catalog["compute"], "http://cloud.example:8780/compute/v2.1");
    EXPECT_EQ(catalog["network"], "http://cloud.example:8780/network");
    EXPECT_EQ(catalog["volumev3"], "http://cloud.example:8780/volume/v3/" + project_);
    EXPECT_EQ(catalog["block-storage"], catalog["volumev3"]);
    EXPECT_EQ(catalog["image"], "http://cloud.example:8780/image");
    EXPECT_EQ(catalog["identity"], "http://cloud.example:8780/v3");

    // The token works on both faces, as the user's project and role.
    EXPECT_EQ(Os(token, "GET", "/compute/v2.1/servers").status, 200);
    Reply who = Call(token, "GET", "/v1/whoami");
    EXPECT_EQ(who.status, 200);
    // It is an ordinary token record: hashed, expiring, carrying the user.
    Reply tokens = Call(admin_, "GET", "/v1/tokens?project_id=" + project_);
    int of_alice = 0;
    for (const auto& tk : tokens.Items("tokens")) {
        if (StrOf(tk, "user_id") == user_) ++of_alice;
        EXPECT_EQ(tk.as_object().find("_hash"), tk.as_object().end());
    }
    EXPECT_EQ(of_alice, 1);
    // An hour later it is refused.
    clock_.Advance(std::chrono::hours(1) + 1s);
    EXPECT_EQ(Os(token, "GET", "/compute/v2.1/servers").status, 401);
}

TEST_F(OpenStackTest, AWrongPasswordAnUnknownUserAndAForeignScopeAreRefusedAlike) {
    Reply wrong = Login("alice", "wrong password");
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(ErrorKey(wrong), "error");
    EXPECT_TRUE(wrong.raw.Header("x-subject-token").empty());
    Reply unknown = Login("mallory", "correct horse");
    EXPECT_EQ(unknown.status, 401);
    EXPECT_EQ(Message(unknown), Message(wrong)) << "the answer does not tell which names exist";
    NewProject("p2");
    EXPECT_EQ(Login("alice", "correct horse", R"("name":"p2")").status, 401);
    Reply other_domain =
        Os("", "POST", "/v3/auth/tokens",
           R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice",)"
           R"("password":"correct horse","domain":{"name":"Other"}}}}}})");
    EXPECT_EQ(other_domain.status, 401);
    Reply malformed = Os("", "POST", "/v3/auth/tokens", R"({"auth":{}})");
    EXPECT_EQ(malformed.status, 400);
    EXPECT_NE(Message(malformed).find("auth.identity"), std::string::npos) << malformed.raw.body;
}

TEST_F(OpenStackTest, ABurstOfLoginsBeyondTheHashingBoundIsRefused429NeverQueued) {
    const int asked = static_cast<int>(Catalog::kMaxPasswordWork) + 8;
    std::vector<std::optional<http::Response>> got(asked);
    for (int i = 0; i < asked; ++i) {
        handler_(Request("", "POST", "/v3/auth/tokens",
                         R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice",)"
                         R"("password":"correct horse","domain":{"name":"Default"}}}}}})",
                         {{"host", "c"}}),
                 [&got, i](http::Response r) { got[i] = std::move(r); });
    }
    RunUntil(
        [&] { return std::all_of(got.begin(), got.end(), [](const auto& r) { return r.has_value(); }); });
    int ok = 0, refused = 0;
    for (const auto& r : got) {
        if (r->status == 201) ++ok;
        if (r->status == 429) {
            ++refused;
            EXPECT_FALSE(r->Header("retry-after").empty());
            EXPECT_EQ(ErrorKey(ReplyOf(*r)), "error") << "in Keystone's shape";
        }
    }
    EXPECT_EQ(ok, static_cast<int>(Catalog::kMaxPasswordWork));
    EXPECT_EQ(refused, 8);
    EXPECT_EQ(Login("alice", "correct horse").status, 201) << "and logins go on once the burst is done";
}

TEST_F(OpenStackTest, TheTokenMethodValidationAndRevocation) {
    // A cogs token re-scoped to its own project answers itself.
    Reply r = Os("", "POST", "/v3/auth/tokens",
                 R"({"auth":{"identity":{"methods":["token"],"token":{"id":")" + token_ +
                     R"("}},"scope":{"project":{"id":")" + project_ + R"("}}}})");
    ASSERT_EQ(r.status, 201) << r.raw.body;
    EXPECT_EQ(r.raw.Header("x-subject-token"), token_);
    EXPECT_EQ(StrOf(r.Obj("token").at("project"), "id"), project_);
    // Another project's scope is refused.
    const std::string p2 = NewProject("p2");
    EXPECT_EQ(Os("", "POST", "/v3/auth/tokens",
                 R"({"auth":{"identity":{"methods":["token"],"token":{"id":")" + token_ +
                     R"("}},"scope":{"project":{"id":")" + p2 + R"("}}}})")
                  .status,
              401);
    // Validation: a token itself, or an admin; an invalid subject is 404.
    const std::string login = Login("alice", "correct horse").raw.Header("x-subject-token");
    EXPECT_EQ(Os(login, "GET", "/v3/auth/tokens", "", {{"x-subject-token", login}}).status, 200);
    EXPECT_EQ(Os(token_, "GET", "/v3/auth/tokens", "", {{"x-subject-token", login}}).status, 403);
    EXPECT_EQ(Os(admin_, "GET", "/v3/auth/tokens", "", {{"x-subject-token", login}}).status, 200);
    EXPECT_EQ(Os(admin_, "GET", "/v3/auth/tokens", "", {{"x-subject-token", "cogs_nothing"}}).status, 404);
    // Revocation: then refused everywhere.
    EXPECT_EQ(Os(login, "DELETE", "/v3/auth/tokens", "", {{"x-subject-token", login}}).status, 204);
    EXPECT_EQ(Call(login, "GET", "/v1/whoami").status, 401);
}

TEST_F(OpenStackTest, LoginsKeepABoundedNumberOfTokensPerUserAndDeletingTheUserRevokesThem) {
    std::string first;
    for (int i = 0; i < OpenStackFace::kTokensPerUser + 5; ++i) {
        Reply r = Login("alice", "correct horse");
        ASSERT_EQ(r.status, 201);
        if (i == 0) first = r.raw.Header("x-subject-token");
    }
    int count = 0;
    for (const auto& t :
         Call(admin_, "GET", "/v1/tokens?project_id=" + project_ + "&limit=1000").Items("tokens")) {
        count += StrOf(t, "user_id") == user_ ? 1 : 0;
    }
    EXPECT_EQ(count, OpenStackFace::kTokensPerUser);
    EXPECT_EQ(Call(first, "GET", "/v1/whoami").status, 401) << "the oldest went first";
    const std::string last = Login("alice", "correct horse").raw.Header("x-subject-token");
    ASSERT_EQ(Call(admin_, "DELETE", "/v1/users/" + user_).status, 204);
    EXPECT_EQ(Call(last, "GET", "/v1/whoami").status, 401);
    EXPECT_EQ(Login("alice", "correct horse").status, 401);
}

TEST_F(OpenStackTest, NeutronCreatesAnswerOnceDoneListsFilterAndDeletesAreGoneWhenAnswered) {
    const std::string net = NetworkId(token_, "blue");
    const std::string subnet = SubnetId(token_, net, "10.1.0.0/24");
    Reply s = Os(token_, "GET", "/network/v2.0/subnets/" + subnet);
    EXPECT_EQ(s.Field("subnet", "cidr"), "10.1.0.0/24");
    EXPECT_EQ(s.Field("subnet", "gateway_ip"), "10.1.0.1");
    EXPECT_EQ(s.Obj("subnet").at("allocation_pools").as_array().size(), 1u);
    EXPECT_TRUE(s.Obj("subnet").at("host_routes").is_array());
    Reply n = Os(token_, "GET", "/network/v2.0/networks?name=blue");
    ASSERT_EQ(n.Items("networks").size(), 1u);
    EXPECT_EQ(std::string(n.Items("networks")[0].at("subnets").as_array().at(0).as_string()), subnet);
    EXPECT_TRUE(Os(token_, "GET", "/network/v2.0/networks?name=green").Items("networks").empty());
    EXPECT_EQ(Os(token_, "GET", "/network/v2.0/networks?id=" + net).Items("networks").size(), 1u);

    Reply port =
        Os(token_, "POST", "/network/v2.0/ports",
           R"({"port":{"network_id":")" + net + R"(","name":"p","fixed_ips":[{"ip_address":"10.1.0.9"}]}})");
    ASSERT_EQ(port.status, 201) << port.raw.body;
    const json::object& p = port.Obj("port");
    EXPECT_EQ(StrOf(p.at("fixed_ips").as_array().at(0), "ip_address"), "10.1.0.9");
    EXPECT_EQ(StrOf(p.at("fixed_ips").as_array().at(0), "subnet_id"), subnet);
    EXPECT_EQ(Os(token_, "GET", "/network/v2.0/ports?network_id=" + net).Items("ports").size(), 1u);
    // What /v1 holds is the same record.
    EXPECT_EQ(Call(token_, "GET", "/v1/ports/" + StrOf(p, "id")).Field("port", "fixed_ip"), "10.1.0.9");

    // A delete answers when the record is gone. A network with a port is refused (409), and one
    // with subnets only takes them with it, as Neutron's does.
    Reply busy = Os(token_, "DELETE", "/network/v2.0/networks/" + net);
    EXPECT_EQ(busy.status, 409);
    EXPECT_EQ(ErrorKey(busy), "NeutronError");
    EXPECT_EQ(Call(token_, "GET", "/v1/subnets/" + subnet).Field("subnet", "status"), "ACTIVE")
        << "untouched";
    EXPECT_EQ(Os(token_, "DELETE", "/network/v2.0/ports/" + StrOf(p, "id")).status, 204);
    EXPECT_EQ(Os(token_, "DELETE", "/network/v2.0/networks/" + net).status, 204);
    EXPECT_EQ(Call(token_, "GET", "/v1/networks/" + net).status, 404);
    EXPECT_EQ(Call(token_, "GET", "/v1/subnets/" + subnet).status, 404);
}

TEST_F(OpenStackTest, NeutronBadInputIsA400NamingTheFieldAndWritesNothing) {
    const std::string net = NetworkId(token_);
    struct Case {
        std::string body, field;
    };
    const Case cases[] = {
        {R"({"subnet":{"network_id":")" + net + R"(","cidr":"10.0.0.0/33","ip_version":4}})", "subnet.cidr:"},
        {R"({"subnet":{"network_id":")" + net + R"(","cidr":"fd00::/64","ip_version":6}})",
         "subnet.ip_version"},
        {R"({"subnet":{"network_id":")" + net + R"(","cidr":"10.0.0.0/24","dns_nameservers":["8.8.8.8"]}})",
         "subnet.dns_nameservers"},
        {R"({"subnet":{"network_id":")" + net + R"(","cidr":"10.0.0.0/24","color":"red"}})", "subnet.color"},
        {R"({"subnet":{"network_id":")" + net + R"(","cidr":"10.0.0.0/24","gateway_ip":null}})",
         "subnet.gateway_ip"},
        {R"({"network":{}})", "subnet"},
    };
    for (const Case& c : cases) {
        Reply r = Os(token_, "POST", "/network/v2.0/subnets", c.body);
        EXPECT_EQ(r.status, 400) << c.body;
        EXPECT_EQ(ErrorKey(r), "NeutronError") << r.raw.body;
        EXPECT_NE(Message(r).find(c.field), std::string::npos) << c.field << ": " << r.raw.body;
    }
    EXPECT_EQ(Call(admin_, "GET", "/v1/subnets").Items("subnets").size(), 0u);
    Reply unknown_filter = Os(token_, "GET", "/network/v2.0/networks?colour=red");
    EXPECT_EQ(unknown_filter.status, 400);
    EXPECT_NE(Message(unknown_filter).find("colour"), std::string::npos);
}

TEST_F(OpenStackTest, NovaServersThroughTheirLivesWithVolumesActionsAndTheFieldsClientsRead) {
    const std::string net = NetworkId(token_, "blue");
    SubnetId(token_, net);
    const std::string vol = ActiveVolume(token_, "data");
    const std::string id =
        NovaServer(token_, net,
                   R"(,"block_device_mapping_v2":[{"uuid":")" + vol +
                       R"(","source_type":"volume","destination_type":"volume","boot_index":-1}])");
    Reply s = WaitNova(token_, id, "ACTIVE");
    const json::object& v = s.Obj("server");
    EXPECT_EQ(StrOf(v, "tenant_id"), project_);
    EXPECT_TRUE(v.at("metadata").is_object());
    EXPECT_EQ(v.at("OS-EXT-STS:power_state").as_int64(), 1);
    EXPECT_EQ(StrOf(v, "OS-EXT-STS:vm_state"), "active");
    // (The simulated network service gives no address: addresses are views_test's and
    // integration.openstack's, on the real cogs-network.)
    EXPECT_EQ(StrOf(v.at("flavor"), "id"), Server(id).Field("server", "flavor_id"));
    EXPECT_EQ(StrOf(v.at("image"), "id"), Server(id).Field("server", "image_id"));
    EXPECT_EQ(StrOf(v.at("os-extended-volumes:volumes_attached").as_array().at(0), "id"), vol);
    EXPECT_EQ(v.find("OS-EXT-SRV-ATTR:host"), v.end()) << "the host is an admin's to see";
    EXPECT_FALSE(StrOf(Os(admin_, "GET", "/compute/v2.1/servers/" + id).Obj("server"), "OS-EXT-SRV-ATTR:host")
                     .empty());

    // Lists: brief with links, detail, filters.
    EXPECT_EQ(Os(token_, "GET", "/compute/v2.1/servers?name=vm").Items("servers").size(), 1u);
    EXPECT_TRUE(Os(token_, "GET", "/compute/v2.1/servers?name=other").Items("servers").empty());
    EXPECT_EQ(Os(token_, "GET", "/compute/v2.1/servers/detail?status=ACTIVE").Items("servers").size(), 1u);

    // Actions.
    EXPECT_EQ(Os(token_, "POST", "/compute/v2.1/servers/" + id + "/action", R"({"os-stop":null})").status,
              202);
    Reply off = WaitNova(token_, id, "SHUTOFF");
    EXPECT_EQ(off.Obj("server").at("OS-EXT-STS:power_state").as_int64(), 4);
    EXPECT_EQ(Os(token_, "POST", "/compute/v2.1/servers/" + id + "/action", R"({"os-start":null})").status,
              202);
    WaitNova(token_, id, "ACTIVE");
    EXPECT_EQ(
        Os(token_, "POST", "/compute/v2.1/servers/" + id + "/action", R"({"reboot":{"type":"SOFT"}})").status,
        202);
    WaitNova(token_, id, "ACTIVE");
    Reply resize =
        Os(token_, "POST", "/compute/v2.1/servers/" + id + "/action", R"({"resize":{"flavorRef":"x"}})");
    EXPECT_EQ(resize.status, 501);
    EXPECT_EQ(ErrorKey(resize), "notImplemented");

    // Volume attachments: detach, attach again, through Nova's API; the volume service agrees.
    const std::string att = "/compute/v2.1/servers/" + id + "/os-volume_attachments";
    EXPECT_EQ(Os(token_, "GET", att).Items("volumeAttachments").size(), 1u);
    EXPECT_EQ(Os(token_, "DELETE", att + "/" + vol).status, 202);
    WaitFor("/v1/volumes/" + vol, "volume", "available");
    EXPECT_EQ(VolumeAttachments()[vol], "");
    Reply attach = Os(token_, "POST", att, R"({"volumeAttachment":{"volumeId":")" + vol + R"("}})");
    ASSERT_EQ(attach.status, 200) << attach.raw.body;
    EXPECT_EQ(attach.Field("volumeAttachment", "serverId"), id);
    WaitFor("/v1/volumes/" + vol, "volume", "in-use");
    EXPECT_EQ(VolumeAttachments()[vol], id);
    Reply cinder = Os(token_, "GET", "/volume/v3/" + project_ + "/volumes/" + vol);
    EXPECT_EQ(StrOf(cinder.Obj("volume").at("attachments").as_array().at(0), "server_id"), id);
    EXPECT_EQ(Os(token_, "DELETE", att + "/" + vol).status, 202);
    WaitFor("/v1/volumes/" + vol, "volume", "available");

    // Delete: 204, then 404 in Nova's shape (what `server delete --wait` waits for).
    EXPECT_EQ(Os(token_, "DELETE", "/compute/v2.1/servers/" + id).status, 204);
    Reply gone;
    RunUntil([&] { return (gone = Os(token_, "GET", "/compute/v2.1/servers/" + id)).status == 404; });
    EXPECT_EQ(ErrorKey(gone), "itemNotFound");
}

TEST_F(OpenStackTest, NovaBadInputIsA400NamingTheFieldAndWritesNothing) {
    const std::string net = NetworkId(token_);
    SubnetId(token_, net);
    const std::string uuid = R"("networks":[{"uuid":")" + net + R"("}])";
    struct Case {
        std::string server, field;
    };
    const Case cases[] = {
        {R"("name":"vm","imageRef":"debian",)" + uuid, "server.flavorRef"},
        {R"("name":"vm","flavorRef":"small",)" + uuid, "server.imageRef"},
        {R"("name":"vm","flavorRef":"nope","imageRef":"debian",)" + uuid, "flavor"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","networks":[{"port":"p"}])",
         "server.networks[0].port"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","networks":"none")", "server.networks"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","key_name":"k",)" + uuid, "server.key_name"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","colour":"red",)" + uuid, "server.colour"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","user_data":"!!",)" + uuid, "user_data"},
        {R"("name":"vm","flavorRef":"small","imageRef":"debian","block_device_mapping_v2":[{"uuid":"x","source_type":"image","destination_type":"volume"}],)" +
             uuid,
         "server.block_device_mapping_v2[0].source_type"},
    };
    for (const Case& c : cases) {
        Reply r = Os(token_, "POST", "/compute/v2.1/servers", "{\"server\":{" + c.server + "}}");
        EXPECT_EQ(r.status, 400) << c.server << ": " << r.raw.body;
        EXPECT_EQ(ErrorKey(r), "badRequest") << r.raw.body;
        EXPECT_NE(Message(r).find(c.field), std::string::npos) << c.field << ": " << r.raw.body;
    }
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers").Items("servers").size(), 0u);
    EXPECT_EQ(InUse(project_, "servers"), 0);
    // A microversion cogs does not implement is 406, as Nova answers.
    Reply mv = Os(token_, "GET", "/compute/v2.1/servers", "", {{"x-openstack-nova-api-version", "2.60"}});
    EXPECT_EQ(mv.status, 406);
    EXPECT_EQ(
        Os(token_, "GET", "/compute/v2.1/servers", "", {{"openstack-api-version", "compute 2.1"}}).status,
        200);
}

TEST_F(OpenStackTest, NovaBootsOnANeutronPortAndItsDeleteLeavesThePortToTheTenant) {
    const std::string net = NetworkId(token_);
    SubnetId(token_, net);
    Reply made = Os(token_, "POST", "/network/v2.0/ports",
                    R"({"port":{"network_id":")" + net + R"(","name":"mine"}})");
    ASSERT_EQ(made.status, 201) << made.raw.body;
    const std::string port = made.Field("port", "id");
    const std::string on_port =
        R"({"server":{"name":"vm","flavorRef":"small","imageRef":"debian","networks":[{"port":")" + port +
        R"("}]}})";

    // Another project's member: not its port, named as the request wrote it.
    Reply foreign = Os(NewToken(NewProject("p2"), "member"), "POST", "/compute/v2.1/servers", on_port);
    EXPECT_EQ(foreign.status, 400) << foreign.raw.body;
    EXPECT_NE(Message(foreign).find("server.networks[0].port"), std::string::npos) << foreign.raw.body;

    Reply r = Os(token_, "POST", "/compute/v2.1/servers", on_port);
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    Reply taken = Os(token_, "POST", "/compute/v2.1/servers", on_port);
    EXPECT_EQ(taken.status, 409) << taken.raw.body;
    EXPECT_EQ(ErrorKey(taken), "conflictingRequest") << taken.raw.body;
    WaitNova(token_, id, "ACTIVE");
    EXPECT_EQ(Server(id).Field("server", "port_id"), port);
    Reply bound = Os(token_, "GET", "/network/v2.0/ports/" + port);
    EXPECT_EQ(bound.Field("port", "device_id"), id);
    EXPECT_EQ(bound.Field("port", "device_owner"), "compute:nova");
    EXPECT_EQ(bound.Field("port", "status"), "ACTIVE");

    EXPECT_EQ(Os(token_, "DELETE", "/compute/v2.1/servers/" + id).status, 204);
    RunUntil([&] { return Os(token_, "GET", "/compute/v2.1/servers/" + id).status == 404; });
    Reply kept = Os(token_, "GET", "/network/v2.0/ports/" + port);
    ASSERT_EQ(kept.status, 200) << "Nova leaves a port it did not make: " << kept.raw.body;
    EXPECT_EQ(kept.Field("port", "device_id"), "");
    EXPECT_EQ(kept.Field("port", "device_owner"), "");
    EXPECT_EQ(kept.Field("port", "status"), "DOWN") << "Neutron's word for a port on no server";
    EXPECT_EQ(Os(token_, "DELETE", "/network/v2.0/ports/" + port).status, 204);
}

TEST_F(OpenStackTest, AnotherProjectsResourcesAre404InEveryServicesShapeAndUntouched) {
    const std::string net = NetworkId(token_);
    SubnetId(token_, net);
    const std::string server = NovaServer(token_, net);
    WaitNova(token_, server, "ACTIVE");
    const std::string vol = ActiveVolume(token_);
    const std::string p2 = NewProject("p2");
    const std::string other = NewToken(p2, "member");

    EXPECT_TRUE(Os(other, "GET", "/compute/v2.1/servers/detail").Items("servers").empty());
    EXPECT_TRUE(Os(other, "GET", "/network/v2.0/networks").Items("networks").empty());
    EXPECT_TRUE(
        Os(other, "GET", "/volume/v3/" + p2 + "/volumes/detail?all_tenants=1").Items("volumes").empty());
    for (auto [method, path, key] : {
             std::tuple{"GET", "/compute/v2.1/servers/" + server, "itemNotFound"},
             std::tuple{"DELETE", "/compute/v2.1/servers/" + server, "itemNotFound"},
             std::tuple{"POST", "/compute/v2.1/servers/" + server + "/action", "itemNotFound"},
             std::tuple{"GET", "/network/v2.0/networks/" + net, "NeutronError"},
             std::tuple{"DELETE", "/network/v2.0/networks/" + net, "NeutronError"},
             std::tuple{"GET", "/volume/v3/" + p2 + "/volumes/" + vol, "itemNotFound"},
             std::tuple{"DELETE", "/volume/v3/" + p2 + "/volumes/" + vol, "itemNotFound"},
             // Another project's path is no path of this caller's.
             std::tuple{"GET", "/volume/v3/" + project_ + "/volumes/detail", "itemNotFound"},
         }) {
        Reply r = Os(other, method, path, std::string(method) == "POST" ? R"({"os-stop":null})" : "");
        EXPECT_EQ(r.status, 404) << method << " " << path << ": " << r.raw.body;
        EXPECT_EQ(ErrorKey(r), key) << r.raw.body;
    }
    EXPECT_EQ(Server(server).Field("server", "status"), "ACTIVE");
    EXPECT_EQ(Call(admin_, "GET", "/v1/networks/" + net).Field("network", "status"), "ACTIVE");
    EXPECT_EQ(Call(admin_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "available");
    // A host's token reaches none of it.
    Reply enroll = Call(admin_, "POST", "/v1/hosts/h1/enroll");
    ASSERT_EQ(enroll.status, 201) << enroll.raw.body;
    EXPECT_EQ(Os(enroll.Field("enrollment", "host_token"), "GET", "/compute/v2.1/servers").status, 403);
}

TEST_F(OpenStackTest, CinderVolumesGlanceImagesFlavorsLimitsAndZones) {
    Reply v = Os(
        token_, "POST", "/volume/v3/" + project_ + "/volumes",
        R"({"volume":{"size":2,"name":"data","description":null,"volume_type":null,"metadata":{},)"
        R"("imageRef":null,"snapshot_id":null,"source_volid":null,"consistencygroup_id":null,"backup_id":null}})");
    ASSERT_EQ(v.status, 202) << v.raw.body;
    EXPECT_EQ(v.Field("volume", "status"), "creating");
    EXPECT_TRUE(v.Obj("volume").at("metadata").is_object());
    EXPECT_EQ(v.Field("volume", "volume_type"), "__DEFAULT__");
    const std::string vol = v.Field("volume", "id");
    WaitFor("/v1/volumes/" + vol, "volume", "available");
    EXPECT_EQ(Call(token_, "GET", "/v1/volumes/" + vol).Obj("volume").at("size_gb").as_int64(), 2);
    EXPECT_EQ(Os(token_, "GET", "/volume/v3/" + project_ + "/volumes?name=data").Items("volumes").size(), 1u);
    Reply bad = Os(token_, "POST", "/volume/v3/" + project_ + "/volumes",
                   R"({"volume":{"size":1,"snapshot_id":"s"}})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(ErrorKey(bad), "badRequest");
    EXPECT_NE(Message(bad).find("volume.snapshot_id"), std::string::npos);
    Reply zero = Os(token_, "POST", "/volume/v3/" + project_ + "/volumes", R"({"volume":{"size":0}})");
    EXPECT_EQ(zero.status, 400);
    EXPECT_NE(Message(zero).find("volume.size:"), std::string::npos)
        << "the request's name for it: " << zero.raw.body;
    EXPECT_EQ(Os(token_, "DELETE", "/volume/v3/" + project_ + "/volumes/" + vol).status, 202);
    WaitFor("/v1/volumes/" + vol, "volume", "");

    Reply images = Os(token_, "GET", "/image/v2/images");
    ASSERT_EQ(images.Items("images").size(), 1u);
    EXPECT_EQ(StrOf(images.Items("images")[0], "name"), "debian");
    const std::string image = StrOf(images.Items("images")[0], "id");
    EXPECT_EQ(StrOf(Os(token_, "GET", "/image/v2/images/" + image).body, "id"), image);
    EXPECT_EQ(Os(token_, "GET", "/image/v2/images/0000").status, 404);

    Reply flavors = Os(token_, "GET", "/compute/v2.1/flavors/detail?is_public=None");
    ASSERT_EQ(flavors.Items("flavors").size(), 1u);
    EXPECT_EQ(flavors.Items("flavors")[0].at("vcpus").as_int64(), 2);
    EXPECT_EQ(flavors.Items("flavors")[0].at("ram").as_int64(), 2048);
    Reply missing = Os(token_, "GET", "/compute/v2.1/flavors/none");
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(ErrorKey(missing), "itemNotFound");

    Reply limits = Os(token_, "GET", "/compute/v2.1/limits");
    ASSERT_EQ(limits.status, 200) << limits.raw.body;
    const json::object& abs = limits.Obj("limits").at("absolute").as_object();
    EXPECT_EQ(abs.at("totalInstancesUsed").as_int64(), 0);
    EXPECT_EQ(abs.at("maxTotalCores").as_int64(), Call(admin_, "GET", "/v1/projects/" + project_ + "/quotas")
                                                      .Obj("quotas")
                                                      .at("vcpus")
                                                      .at("limit")
                                                      .as_int64());
    Reply zones = Os(token_, "GET", "/compute/v2.1/os-availability-zone");
    EXPECT_EQ(zones.Items("availabilityZoneInfo").size(), 1u);
}

TEST_F(OpenStackTest, ServerGroupsAndAHintPlaceServersByThePolicy) {
    const std::string net = NetworkId(token_);
    SubnetId(token_, net);
    Reply g = Os(token_, "POST", "/compute/v2.1/os-server-groups",
                 R"({"server_group":{"name":"apart","policies":["anti-affinity"]}})");
    ASSERT_EQ(g.status, 200) << g.raw.body;
    const std::string group = g.Field("server_group", "id");
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) {
        Reply r =
            Os(token_, "POST", "/compute/v2.1/servers",
               R"({"server":{"name":"vm","flavorRef":"small","imageRef":"debian","networks":[{"uuid":")" +
                   net + R"("}]},"os:scheduler_hints":{"group":")" + group + R"("}})");
        ASSERT_EQ(r.status, 202) << r.raw.body;
        ids.push_back(r.Field("server", "id"));
    }
    for (const auto& id : ids)
        WaitNova(token_, id, "ACTIVE");
    EXPECT_NE(Server(ids[0]).Field("server", "host"), Server(ids[1]).Field("server", "host"));
    // A page and the link to the next, as novaclient follows it.
    Reply first = Os(token_, "GET", "/compute/v2.1/servers/detail?limit=1");
    ASSERT_EQ(first.Items("servers").size(), 1u);
    const std::string next = StrOf(first.Items("servers_links").at(0), "href");
    const std::string base = "http://cloud.example:8780";
    ASSERT_TRUE(next.starts_with(base)) << next;
    Reply second = Os(token_, "GET", next.substr(base.size()));
    ASSERT_EQ(second.Items("servers").size(), 1u) << second.raw.body;
    EXPECT_NE(StrOf(second.Items("servers")[0], "id"), StrOf(first.Items("servers")[0], "id"));
    Reply shown = Os(token_, "GET", "/compute/v2.1/os-server-groups/" + group);
    EXPECT_EQ(shown.Obj("server_group").at("members").as_array().size(), 2u);
    EXPECT_EQ(Os(token_, "POST", "/compute/v2.1/os-server-groups",
                 R"({"server_group":{"name":"x","policies":["soft-affinity"]}})")
                  .status,
              400);
}

TEST_F(OpenStackTest, TheFacesChangesAndLoginsAreInTheAuditLogWithoutBodiesOrSecrets) {
    ASSERT_EQ(Login("alice", "wrong password").status, 401);
    const std::string login = Login("alice", "correct horse").raw.Header("x-subject-token");
    ASSERT_EQ(Os(login, "POST", "/network/v2.0/networks", R"({"network":{"name":"blue"}})").status, 201);
    store_->Flush();
    Reply audit = Call(admin_, "GET", "/v1/audit");
    std::vector<std::string> seen;
    for (const auto& e : audit.Items("audit")) {
        seen.push_back(StrOf(e, "method") + " " + StrOf(e, "path") + " " +
                       std::to_string(e.at("status").as_int64()));
        EXPECT_EQ(json::serialize(e).find("correct horse"), std::string::npos);
        EXPECT_EQ(json::serialize(e).find(login), std::string::npos);
        if (StrOf(e, "path") == "/network/v2.0/networks") {
            EXPECT_EQ(StrOf(e, "project"), project_) << "who asked: the login's token, of alice's project";
            EXPECT_FALSE(StrOf(e, "token_id").empty());
        }
    }
    EXPECT_TRUE(Has(seen, "POST /v3/auth/tokens 401")) << Join(seen);
    EXPECT_TRUE(Has(seen, "POST /v3/auth/tokens 201")) << Join(seen);
    EXPECT_TRUE(Has(seen, "POST /network/v2.0/networks 201")) << Join(seen);
}

}  // namespace
}  // namespace cogs::cloud::testing
