// Resource kinds declared in configuration (kind_spec.h, resources/kinds.h), in one process: a
// `dns_zone` kind whose create and delete workflows call the simulated "network" service (the sim
// answers any action). What is checked is what a tenant sees through the API: statuses, 400s naming
// the field, tenancy, quotas, Idempotency-Key, events; and what the service was sent.
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

KindSpec DnsZones(int64_t quota = 3) {
    KindSpec k;
    k.kind = "dns_zone";
    k.plural = "dns_zones";
    k.quota = quota;
    k.create_workflow = "dns_zone.create";
    k.delete_workflow = "dns_zone.delete";
    k.origin = "kinds.d/dns.yaml:1";
    FieldSpec name{.name = "name", .required = true, .max_length = 253};
    FieldSpec ttl{.name = "ttl", .type = FieldSpec::Type::kInteger, .minimum = 60, .maximum = 86400};
    ttl.default_value = json::value(3600);
    FieldSpec mode{.name = "mode", .one_of = {"primary", "secondary"}};
    mode.default_value = json::value("primary");
    FieldSpec tags{.name = "tags", .type = FieldSpec::Type::kStrings, .max_length = 16, .max_items = 2};
    k.fields = {name, ttl, mode, tags};
    return k;
}

class CloudKindTest : public CloudTest {
protected:
    void SetUp() override {
        CloudTest::SetUp();
        auto defs = workflow::LoadDefinitionsFromString(R"(workflows:
  - type: dns_zone.create
    steps:
      - name: create
        action: network.create_zone
        input: {id: "${input.id}", name: "${input.dns_zone.name}", ttl: "${input.dns_zone.ttl}"}
        retry: {max_attempts: 2, initial_backoff: 1ms}
        compensation: {action: network.delete_zone, input: {id: "${input.id}"}}
  - type: dns_zone.delete
    steps:
      - {name: delete, action: network.delete_zone, input: {id: "${input.id}"}}
)",
                                                        "zones.yaml");
        ASSERT_TRUE(defs) << defs.error().message;
        ASSERT_TRUE(registry_->RegisterAll(std::move(*defs)));
        ASSERT_TRUE(cloud_->SetKinds({DnsZones()}, true));
        project_ = NewProject("tenant");
        member_ = NewToken(project_, "member");
    }

    Reply Create(const std::string& token, const std::string& body, const Headers& headers = {}) {
        return Call(token, "POST", "/v1/dns_zones", body, headers);
    }
    std::string CreateActive(const std::string& token, const std::string& name) {
        Reply r = Create(token, R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 202) << r.raw.body;
        const std::string id = r.Field("dns_zone", "id");
        WaitFor("/v1/dns_zones/" + id, "dns_zone", "ACTIVE");
        return id;
    }
    int64_t InUse(const std::string& project) {
        Reply q = Call(admin_, "GET", "/v1/projects/" + project + "/quotas");
        const json::value* z = q.Obj("quotas").if_contains("dns_zones");
        return z == nullptr ? -100 : z->as_object().at("in_use").to_number<int64_t>();
    }

    std::string project_, member_;
};

TEST_F(CloudKindTest, AResourceOfADeclaredKindIsCreatedListedShownAndDeleted) {
    Reply r = Create(member_, R"({"name":"example.org","tags":["prod"]})");
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const json::object zone = r.Obj("dns_zone");
    const std::string id = r.Field("dns_zone", "id");
    EXPECT_EQ(r.Field("dns_zone", "status"), "BUILD");
    EXPECT_EQ(r.Field("dns_zone", "project_id"), project_);
    EXPECT_EQ(zone.at("ttl").as_int64(), 3600) << "the default";
    EXPECT_EQ(r.Field("dns_zone", "mode"), "primary");
    EXPECT_FALSE(zone.contains("_quota_as")) << "an internal key is shown";
    EXPECT_EQ(InUse(project_), 1);

    Reply active = WaitFor("/v1/dns_zones/" + id, "dns_zone", "ACTIVE");
    EXPECT_EQ(active.Field("dns_zone", "name"), "example.org");
    Reply list = Call(member_, "GET", "/v1/dns_zones");
    ASSERT_EQ(list.status, 200) << list.raw.body;
    ASSERT_EQ(list.Items("dns_zones").size(), 1u);
    EXPECT_EQ(list.Items("dns_zones")[0].as_object().at("id").as_string(), id);
    // Its workflow was given the record's fields.
    Reply wf = Call(admin_, "GET", "/v1/workflows/" + active.Field("dns_zone", "workflow_id"));
    ASSERT_EQ(wf.status, 200) << wf.raw.body;
    EXPECT_NE(wf.raw.body.find("example.org"), std::string::npos) << wf.raw.body;
    // Its history.
    Reply events = Call(member_, "GET", "/v1/dns_zones/" + id + "/events");
    ASSERT_EQ(events.status, 200) << events.raw.body;
    EXPECT_NE(events.raw.body.find("\"active\""), std::string::npos) << events.raw.body;

    Reply del = Call(member_, "DELETE", "/v1/dns_zones/" + id);
    ASSERT_EQ(del.status, 202) << del.raw.body;
    WaitFor("/v1/dns_zones/" + id, "dns_zone", "");
    EXPECT_EQ(InUse(project_), 0);
}

TEST_F(CloudKindTest, ABadBodyIsRefusedNamingTheFieldAndNothingIsWritten) {
    const std::pair<std::string, std::string> cases[] = {
        {R"({"name":"a.org","colour":"red"})", "colour: unknown field"},
        {R"({"ttl":300})", "name: required"},
        {R"({"name":"a.org","ttl":5})", "ttl"},
        {R"({"name":"a.org","ttl":"soon"})", "ttl"},
        {R"({"name":"a.org","mode":"tertiary"})", "mode: must be one of primary, secondary"},
        {R"({"name":"a.org","tags":["a","b","c"]})", "tags"},
        {R"({"name":42})", "name"},
        {R"(["name"])", "body"},
    };
    for (const auto& [body, names] : cases) {
        Reply r = Create(member_, body);
        EXPECT_EQ(r.status, 400) << body << ": " << r.raw.body;
        EXPECT_NE(r.raw.body.find(names), std::string::npos) << body << ": " << r.raw.body;
    }
    EXPECT_TRUE(Call(member_, "GET", "/v1/dns_zones").Items("dns_zones").empty());
    EXPECT_EQ(InUse(project_), 0);
}

TEST_F(CloudKindTest, AnotherProjectSeesNoneOfItAndAReaderMayNotCreate) {
    const std::string id = CreateActive(member_, "mine.org");
    const std::string other = NewToken(NewProject("other"), "member");
    EXPECT_TRUE(Call(other, "GET", "/v1/dns_zones").Items("dns_zones").empty());
    EXPECT_EQ(Call(other, "GET", "/v1/dns_zones/" + id).status, 404);
    EXPECT_EQ(Call(other, "DELETE", "/v1/dns_zones/" + id).status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/dns_zones").Items("dns_zones").size(), 1u)
        << "an admin sees every project";
    const std::string reader = NewToken(project_, "reader");
    EXPECT_EQ(Create(reader, R"({"name":"r.org"})").status, 403);
    EXPECT_EQ(Call(reader, "GET", "/v1/dns_zones").Items("dns_zones").size(), 1u);
    EXPECT_EQ(Call("", "GET", "/v1/dns_zones").status, 401);
}

TEST_F(CloudKindTest, TheKindsQuotaHoldsAndAProjectMayBeGivenMore) {
    for (int i = 0; i < 3; ++i)
        CreateActive(member_, "z" + std::to_string(i) + ".org");
    Reply over = Create(member_, R"({"name":"z3.org"})");
    EXPECT_EQ(over.status, 403) << over.raw.body;
    EXPECT_NE(over.raw.body.find("quota exceeded: dns_zones limit 3, in use 3"), std::string::npos)
        << over.raw.body;
    Reply set = Call(admin_, "PUT", "/v1/projects/" + project_ + "/quotas", R"({"dns_zones":4})");
    ASSERT_EQ(set.status, 200) << set.raw.body;
    EXPECT_EQ(Create(member_, R"({"name":"z3.org"})").status, 202);
    EXPECT_EQ(InUse(project_), 4);
}

TEST_F(CloudKindTest, AnIdempotencyKeyMakesOneRecord) {
    const Headers key{{"idempotency-key", "zone-once"}};
    Reply a = Create(member_, R"({"name":"once.org"})", key);
    Reply b = Create(member_, R"({"name":"once.org"})", key);
    ASSERT_EQ(a.status, 202) << a.raw.body;
    EXPECT_EQ(b.status, 202) << b.raw.body;
    EXPECT_EQ(a.Field("dns_zone", "id"), b.Field("dns_zone", "id"));
    EXPECT_EQ(Call(member_, "GET", "/v1/dns_zones").Items("dns_zones").size(), 1u);
}

TEST_F(CloudKindTest, ACreateTheServiceRefusesEndsInErrorWithItsQuotaGivenBack) {
    gates_["network"]->Hold("create_zone");
    Reply r = Create(member_, R"({"name":"refused.org"})");
    ASSERT_EQ(r.status, 202) << r.raw.body;
    RunUntil([&] { return gates_["network"]->held() == 1; });
    gates_["network"]->Refuse(Error(ErrorCode::kFailedPrecondition, "zone refused"));
    Reply err = WaitFor("/v1/dns_zones/" + r.Field("dns_zone", "id"), "dns_zone", "ERROR");
    EXPECT_NE(err.raw.body.find("zone refused"), std::string::npos) << err.raw.body;
    EXPECT_EQ(InUse(project_), 0);
}

TEST_F(CloudKindTest, DeclaringIsRefusedForBuiltinNamesAndAKindWithRecordsCannotGo) {
    KindSpec servers = DnsZones();
    servers.plural = "servers";
    auto st = cloud_->SetKinds({servers}, false);
    ASSERT_FALSE(st);
    EXPECT_EQ(
        st.error().message,
        "kinds.d/dns.yaml:1: kind 'dns_zone': plural 'servers' is one of the API's own paths (/v1/servers)");
    KindSpec server = DnsZones();
    server.kind = "server";
    st = cloud_->SetKinds({server}, false);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("'server' is one of cogsd's own kinds"), std::string::npos);

    const std::string id = CreateActive(member_, "kept.org");
    st = cloud_->SetKinds({}, true);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("still has records (dns_zone " + id + ")"), std::string::npos)
        << st.error().message;
    EXPECT_EQ(Call(member_, "GET", "/v1/dns_zones/" + id).status, 200)
        << "a refused change changed something";
    // Once its records are gone it may go; its collection is then no route.
    ASSERT_EQ(Call(member_, "DELETE", "/v1/dns_zones/" + id).status, 202);
    WaitFor("/v1/dns_zones/" + id, "dns_zone", "");
    ASSERT_TRUE(cloud_->SetKinds({}, true));
    Reply gone = Call(member_, "GET", "/v1/dns_zones");
    EXPECT_EQ(gone.status, 404) << gone.raw.body;
    EXPECT_NE(gone.raw.body.find("no route GET /v1/dns_zones"), std::string::npos);
}

}  // namespace
}  // namespace cogs::cloud::testing
