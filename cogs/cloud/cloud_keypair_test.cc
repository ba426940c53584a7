// SSH key pairs (docs/api.md "Key pairs"): a project's public keys by name, checked as OpenSSH keys
// and fingerprinted as Nova does; a server created with `key_name` shows it and its instance is
// given the key (create_instance's public_keys, as the compute service is sent it). The same
// through the OpenStack face's os-keypairs and `server create --key-name`.
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

// `ssh-keygen -t ed25519 -C alice@example`, and its `ssh-keygen -l -E md5`.
constexpr std::string_view kEd25519 =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGguULy347WKWqmwmV595NnA55k27ohDWaeBh955ASNm alice@example";
constexpr std::string_view kEd25519Md5 = "01:f3:3a:29:36:64:1f:e7:b2:e7:d0:fc:0e:dc:cc:dc";
// `ssh-keygen -t ecdsa -b 256 -C ''`.
constexpr std::string_view kEcdsa =
    "ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA1+dWtv63gOyDyTVCdlf0gZtCknjJmBj/"
    "7JRGzEBjsok2MKqdgBMkrUUCSibbI7JfnfolYbB9rfz3dYT1aEM2M=";
constexpr std::string_view kEcdsaMd5 = "c5:a8:59:53:ad:3f:32:d8:95:e4:40:d0:da:1e:ff:84";

std::string Body(std::string_view name, std::string_view key) {
    return json::serialize(json::object{{"name", name}, {"public_key", key}});
}

class KeypairTest : public CloudTest {
protected:
    void SetUp() override {
        CloudTest::SetUp();
        Seed();
        project_ = NewProject("p1");
        member_ = NewToken(project_, "member");
    }

    Reply Create(const std::string& token, std::string_view name, std::string_view key) {
        return Call(token, "POST", "/v1/keypairs", Body(name, key));
    }

    std::string project_, member_;
};

TEST_F(KeypairTest, AKeypairIsCreatedListedShownByIdOrNameAndDeleted) {
    // A .pub file's text: its trailing newline is no part of the key.
    Reply made = Create(member_, "laptop", std::string(kEd25519) + "\n");
    ASSERT_EQ(made.status, 201) << made.raw.body;
    const std::string id = made.Field("keypair", "id");
    EXPECT_EQ(made.Field("keypair", "name"), "laptop");
    EXPECT_EQ(made.Field("keypair", "public_key"), kEd25519);
    EXPECT_EQ(made.Field("keypair", "fingerprint"), kEd25519Md5) << "ssh-keygen -l -E md5's";
    EXPECT_EQ(made.Field("keypair", "type"), "ssh");
    EXPECT_EQ(made.Field("keypair", "project_id"), project_);
    Reply ec = Create(member_, "ci", kEcdsa);
    ASSERT_EQ(ec.status, 201) << ec.raw.body;
    EXPECT_EQ(ec.Field("keypair", "fingerprint"), kEcdsaMd5);

    const json::array listed = Call(member_, "GET", "/v1/keypairs").Items("keypairs");
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(Call(member_, "GET", "/v1/keypairs?name=ci").Items("keypairs").size(), 1u);
    EXPECT_EQ(Call(member_, "GET", "/v1/keypairs/" + id).Field("keypair", "name"), "laptop");
    EXPECT_EQ(Call(member_, "GET", "/v1/keypairs/laptop").Field("keypair", "id"), id) << "by name";
    EXPECT_EQ(Call(member_, "POST", "/v1/keypairs/" + id + "/rotate", "{}").status, 404);

    // A reader reads; only a member (or an admin) writes.
    const std::string reader = NewToken(project_, "reader");
    EXPECT_EQ(Call(reader, "GET", "/v1/keypairs").Items("keypairs").size(), 2u);
    EXPECT_EQ(Call(reader, "GET", "/v1/keypairs/laptop").status, 200);
    EXPECT_EQ(Create(reader, "other", kEd25519).status, 403);
    EXPECT_EQ(Call(reader, "DELETE", "/v1/keypairs/laptop").status, 403);

    // A name is the project's once: 409, nothing written.
    Reply again = Create(member_, "laptop", kEcdsa);
    EXPECT_EQ(again.status, 409) << again.raw.body;
    EXPECT_EQ(Count(member_, "keypairs"), 2u);

    // A project that still holds key pairs is not deleted.
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/projects/" + project_).status, 409);

    // Deleted by name or id: 204, then 404.
    EXPECT_EQ(Call(member_, "DELETE", "/v1/keypairs/laptop").status, 204);
    EXPECT_EQ(Call(member_, "GET", "/v1/keypairs/" + id).status, 404);
    EXPECT_EQ(Call(member_, "DELETE", "/v1/keypairs/laptop").status, 404);
    EXPECT_EQ(Call(member_, "DELETE", "/v1/keypairs/" + ec.Field("keypair", "id")).status, 204);
    EXPECT_EQ(Count(member_, "keypairs"), 0u);
}

TEST_F(KeypairTest, AnotherProjectsKeypairIsNotFoundAndItsNameIsFreeElsewhere) {
    Reply mine = Create(member_, "laptop", kEd25519);
    ASSERT_EQ(mine.status, 201) << mine.raw.body;
    const std::string id = mine.Field("keypair", "id");
    const std::string other = NewToken(NewProject("p2"), "member");
    EXPECT_TRUE(Call(other, "GET", "/v1/keypairs").Items("keypairs").empty());
    EXPECT_EQ(Call(other, "GET", "/v1/keypairs/" + id).status, 404);
    EXPECT_EQ(Call(other, "GET", "/v1/keypairs/laptop").status, 404);
    EXPECT_EQ(Call(other, "DELETE", "/v1/keypairs/" + id).status, 404);
    EXPECT_EQ(Call(other, "DELETE", "/v1/keypairs/laptop").status, 404);
    EXPECT_EQ(Call(other, "POST", "/v1/keypairs/" + id + "/x", "{}").status, 404);
    // Names are unique in a project only.
    Reply theirs = Create(other, "laptop", kEcdsa);
    ASSERT_EQ(theirs.status, 201) << theirs.raw.body;
    EXPECT_EQ(Call(other, "GET", "/v1/keypairs/laptop").Field("keypair", "fingerprint"), kEcdsaMd5);
    EXPECT_EQ(Call(member_, "GET", "/v1/keypairs/laptop").Field("keypair", "fingerprint"), kEd25519Md5);
    EXPECT_EQ(Call(admin_, "GET", "/v1/keypairs").Items("keypairs").size(), 2u) << "an admin sees all";
}

TEST_F(KeypairTest, BadInputIsA400NamingTheFieldAndWritesNothing) {
    const std::string ed(kEd25519);
    const std::string blob = ed.substr(12, ed.find(' ', 12) - 12);
    struct Case {
        std::string body, field;
    };
    const Case cases[] = {
        {R"({"name":"k"})", "public_key"},
        {Body("k", ""), "public_key"},
        {R"({"name":"k","public_key":42})", "public_key"},
        {Body("k", "not a key"), "public_key"},
        {Body("k", "ssh-dss " + blob), "public_key"},                       // a type cogs does not take
        {Body("k", "ssh-rsa " + blob + " x"), "public_key"},                // an ed25519 blob said to be RSA
        {Body("k", "ssh-ed25519 !!notbase64!!"), "public_key"},             // not base64
        {Body("k", "ssh-ed25519"), "public_key"},                           // no key
        {Body("k", "ssh-ed25519 AAAA"), "public_key"},                      // too short a blob
        {Body("k", ed + "\n" + ed), "public_key"},                          // two lines
        {Body("k", ed + " " + std::string(16 * 1024, 'x')), "public_key"},  // over 16 KiB
        {Body("", ed), "name"},
        {Body(std::string(65, 'k'), ed), "name"},
        {Body("a/b", ed), "name"},
        {R"({"public_key":")" + ed + R"("})", "name"},
        {R"({"name":"k","public_key":")" + ed + R"(","type":"x509"})", "type"},
        {R"({"name":"k","public_key":")" + ed + R"(","project_id":"nope"})", "project_id"},
    };
    for (const Case& c : cases) {
        Reply r = Call(member_, "POST", "/v1/keypairs", c.body);
        EXPECT_EQ(r.status, 400) << c.body << ": " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.body << ": " << r.raw.body;
    }
    EXPECT_EQ(Count(admin_, "keypairs"), 0u);
}

TEST_F(KeypairTest, AServerWithAKeyNameShowsItAndItsInstanceIsGivenTheKey) {
    ASSERT_EQ(Create(member_, "laptop", kEd25519).status, 201);
    const std::string net = ActiveNetwork(member_);
    gates_["compute"]->Hold("create_instance");
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net, R"(,"key_name":"laptop")"));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    EXPECT_EQ(r.Field("server", "key_name"), "laptop");
    EXPECT_FALSE(r.Obj("server").contains("_public_key")) << "internal: never shown";
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    EXPECT_EQ(gates_["compute"]->HeldInput(0).at("public_keys"), json::array{json::value(kEd25519)})
        << "what the compute service is sent";
    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_EQ(Server(id).Field("server", "key_name"), "laptop");

    // The key pair's delete leaves the server as it is (as Nova's): the key was given at its create.
    EXPECT_EQ(Call(member_, "DELETE", "/v1/keypairs/laptop").status, 204);
    EXPECT_EQ(Server(id).Field("server", "key_name"), "laptop");

    // Without key_name: none, and an empty list to the compute service.
    gates_["compute"]->Hold("create_instance");
    Reply plain = Call(member_, "POST", "/v1/servers", ServerBody(net, "", "plain"));
    ASSERT_EQ(plain.status, 202) << plain.raw.body;
    EXPECT_EQ(plain.Field("server", "key_name"), "");
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    EXPECT_EQ(gates_["compute"]->HeldInput(0).at("public_keys"), json::array());
    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + plain.Field("server", "id"), "server", "ACTIVE");
}

TEST_F(KeypairTest, AServerWithAnUnknownKeyNameIsA400AndNothingIsMade) {
    const std::string net = ActiveNetwork(member_);
    const std::string other = NewToken(NewProject("p2"), "member");
    ASSERT_EQ(Create(other, "theirs", kEd25519).status, 201);
    for (const std::string name : {"nope", "theirs"}) {  // another project's is not the caller's
        Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net, R"(,"key_name":")" + name + "\""));
        EXPECT_EQ(r.status, 400) << r.raw.body;
        EXPECT_EQ(r.ErrorField(), "key_name") << r.raw.body;
    }
    EXPECT_EQ(Count(member_, "servers"), 0u);
    EXPECT_EQ(InUse(project_, "servers"), 0);
}

// The face's os-keypairs, and `openstack server create --key-name`.
class KeypairOpenStackTest : public KeypairTest {
protected:
    // A call of the face as the OpenStack clients make it (cloud_openstack_test.cc's Os()).
    Reply Os(const std::string& token, const std::string& method, const std::string& target,
             const std::string& body = "") {
        Headers headers{{"host", "cloud.example:8780"}, {"x-auth-token", token}};
        return Call("", method, target, body, headers);
    }
    // The message of a Nova error body ({"badRequest": {"message"}}).
    static std::string Message(const Reply& r) {
        return r.body.size() == 1 ? StrOf(r.body.begin()->value(), "message") : "";
    }
};

TEST_F(KeypairOpenStackTest, NovaKeypairsAreImportedListedShownUsedAndDeleted) {
    const std::string keypairs = "/compute/v2.1/os-keypairs";
    // As `openstack keypair create --public-key k.pub` sends it: the key first, with the file's newline.
    Reply made = Os(member_, "POST", keypairs,
                    R"({"keypair":{"public_key":")" + std::string(kEd25519) + R"(\n","name":"mykey"}})");
    ASSERT_EQ(made.status, 200) << made.raw.body;
    const json::object& k = made.Obj("keypair");
    EXPECT_EQ(StrOf(k, "name"), "mykey");
    EXPECT_EQ(StrOf(k, "public_key"), kEd25519);
    EXPECT_EQ(StrOf(k, "fingerprint"), kEd25519Md5);
    EXPECT_EQ(StrOf(k, "type"), "ssh");
    EXPECT_EQ(StrOf(k, "user_id"), "");

    // Nova's list wraps each entry.
    Reply list = Os(member_, "GET", keypairs);
    ASSERT_EQ(list.status, 200) << list.raw.body;
    ASSERT_EQ(list.Items("keypairs").size(), 1u);
    const json::value& entry = list.Items("keypairs").at(0).at("keypair");
    EXPECT_EQ(StrOf(entry, "name"), "mykey");
    EXPECT_EQ(StrOf(entry, "fingerprint"), kEd25519Md5);

    Reply shown = Os(member_, "GET", keypairs + "/mykey");
    ASSERT_EQ(shown.status, 200) << shown.raw.body;
    EXPECT_EQ(shown.Field("keypair", "id"),
              Call(member_, "GET", "/v1/keypairs/mykey").Field("keypair", "id"));
    EXPECT_EQ(shown.Obj("keypair").at("deleted"), false);
    EXPECT_FALSE(shown.Field("keypair", "created_at").empty());

    // No generation: a create without a public key names it; and what cogs does not do is refused.
    Reply gen = Os(member_, "POST", keypairs, R"({"keypair":{"name":"gen"}})");
    EXPECT_EQ(gen.status, 400) << gen.raw.body;
    EXPECT_NE(Message(gen).find("keypair.public_key"), std::string::npos) << gen.raw.body;
    EXPECT_NE(Message(gen).find("cogs does not generate keys"), std::string::npos) << gen.raw.body;
    Reply x509 =
        Os(member_, "POST", keypairs,
           R"({"keypair":{"name":"x","type":"x509","public_key":")" + std::string(kEcdsa) + R"("}})");
    EXPECT_EQ(x509.status, 400) << x509.raw.body;
    EXPECT_EQ(Count(member_, "keypairs"), 1u);

    // A server with it: /v1 and Nova show its key_name; a server without shows null.
    const std::string net = ActiveNetwork(member_);
    Reply bad = Os(member_, "POST", "/compute/v2.1/servers",
                   R"({"server":{"name":"vm","flavorRef":"small","imageRef":"debian","key_name":"nope",)"
                   R"("networks":[{"uuid":")" +
                       net + R"("}]}})");
    EXPECT_EQ(bad.status, 400) << bad.raw.body;
    EXPECT_NE(Message(bad).find("server.key_name"), std::string::npos) << bad.raw.body;
    gates_["compute"]->Hold("create_instance");
    Reply vm = Os(member_, "POST", "/compute/v2.1/servers",
                  R"({"server":{"name":"vm","flavorRef":"small","imageRef":"debian","key_name":"mykey",)"
                  R"("networks":[{"uuid":")" +
                      net + R"("}]}})");
    ASSERT_EQ(vm.status, 202) << vm.raw.body;
    const std::string id = vm.Field("server", "id");
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    EXPECT_EQ(gates_["compute"]->HeldInput(0).at("public_keys"), json::array{json::value(kEd25519)});
    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_EQ(Server(id).Field("server", "key_name"), "mykey");
    EXPECT_EQ(Os(member_, "GET", "/compute/v2.1/servers/" + id).Field("server", "key_name"), "mykey");
    const std::string plain = ActiveServer(member_, net);
    EXPECT_TRUE(Os(member_, "GET", "/compute/v2.1/servers/" + plain).Obj("server").at("key_name").is_null());

    // Delete: 202 (Nova 2.1's), then 404.
    EXPECT_EQ(Os(member_, "DELETE", keypairs + "/mykey").status, 202);
    EXPECT_EQ(Os(member_, "GET", keypairs + "/mykey").status, 404);
    EXPECT_TRUE(Os(member_, "GET", keypairs).Items("keypairs").empty());
}

}  // namespace
}  // namespace cogs::cloud::testing
