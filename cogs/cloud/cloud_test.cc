// The control plane's API rules, in one process (the fixture: cloud_test_fixture.h): validation,
// quotas, tenancy, roles, idempotency, the router, the catalog, lists and workflows.
//
// What a user would check: the HTTP status and the error body's field, the resources as the API
// lists them afterwards (nothing written by a refused request), the quota in use, the events.
#include <cmath>

#include "cogs/base/secret.h"
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/kit/internal/test_observe.h"

namespace cogs::cloud::testing {
namespace {

TEST_F(CloudTest, BadInputIsRefusedNamingTheFieldAndWritesNothing) {
    Seed();
    const std::string net = ActiveNetwork(admin_);
    struct Case {
        std::string body, field;
    };
    const Case cases[] = {
        {R"({"flavor":"small","image":"debian","network_id":")" + net + R"("})", "name"},
        {R"({"name":"s","flavor":"nope","image":"debian","network_id":")" + net + R"("})", "flavor"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":"nope"})", "network_id"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","weigher":"x"})",
         "weigher"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","typo":1})", "typo"},
        {R"({"name":7,"flavor":"small","image":"debian","network_id":")" + net + R"("})", "name"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net +
             R"(","volume_ids":["v","v"]})",
         "volume_ids"},
        {"[1]", "body"},
        // user_data: base64 (strict, one line), at most 64 KiB once decoded.
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net +
             R"(","user_data":"echo hi"})",
         "user_data"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","user_data":")" +
             std::string((64 * 1024 / 3 + 1) * 4, 'A') + R"("})",
         "user_data"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","user_data":5})",
         "user_data"},
    };
    for (const auto& c : cases) {
        Reply r = Call(admin_, "POST", "/v1/servers", c.body);
        EXPECT_EQ(r.status, 400) << c.body;
        EXPECT_EQ(r.Str("code"), "invalid_argument") << c.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.body << " -> " << r.raw.body;
    }
    EXPECT_EQ(Count(admin_, "servers"), 0u);
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    Reply volume = Call(admin_, "POST", "/v1/volumes", R"({"name":"v","size_gb":0})");
    EXPECT_EQ(volume.status, 400);
    EXPECT_EQ(volume.ErrorField(), "size_gb");
    EXPECT_EQ(Count(admin_, "volumes"), 0u);
}

// The network service's rules (cogs/netaddr) are checked by cogsd before it writes anything: a
// subnet or port it would refuse is never made, no workflow starts, the service is never called.
TEST_F(CloudTest, AnUnchangedReadNamedByItsEntityTagIs304WithNoBody) {
    Seed();
    const std::string project = NewProject("t");
    const std::string member = NewToken(project, "member");
    Reply first = Call(member, "GET", "/v1/networks");
    ASSERT_EQ(first.status, 200);
    const std::string tag = first.raw.Header("etag");
    ASSERT_FALSE(tag.empty());
    EXPECT_EQ(first.raw.Header("cache-control"), "private, no-cache");

    Reply same = Call(member, "GET", "/v1/networks", "", {{"if-none-match", tag}});
    EXPECT_EQ(same.status, 304);
    EXPECT_EQ(same.raw.body, "");
    EXPECT_EQ(same.raw.Header("etag"), tag);
    EXPECT_EQ(Call(member, "GET", "/v1/networks", "", {{"if-none-match", "W/" + tag}}).status, 304);
    EXPECT_EQ(Call(member, "GET", "/v1/networks", "", {{"if-none-match", "\"other\""}}).status, 200);

    // A change: the old tag gets the new list, with its own tag.
    ActiveNetwork(member);
    Reply changed = Call(member, "GET", "/v1/networks", "", {{"if-none-match", tag}});
    EXPECT_EQ(changed.status, 200);
    EXPECT_EQ(changed.Items("networks").size(), 1u);
    EXPECT_NE(changed.raw.Header("etag"), tag);
    // Refusals carry no tag and are never 304.
    Reply missing = Call(member, "GET", "/v1/networks/nope", "", {{"if-none-match", "*"}});
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(missing.raw.Header("etag"), "");
}

TEST_F(CloudTest, ASubnetTheNetworkServiceWouldRefuseIsRefusedBeforeAnythingIsWritten) {
    const std::string net = ActiveNetwork(admin_);
    const std::string other_net = ActiveNetwork(admin_, "other");
    Reply first = Call(admin_, "POST", "/v1/subnets",
                       R"({"network_id":")" + net + R"(","cidr":"10.0.0.0/24","name":"first"})");
    ASSERT_EQ(first.status, 202) << first.raw.body;
    // What cogsd will allocate from is known at once.
    EXPECT_EQ(first.Field("subnet", "gateway_ip"), "10.0.0.1");
    EXPECT_EQ(json::serialize(first.Obj("subnet").at("allocation_pools")),
              R"([{"start":"10.0.0.2","end":"10.0.0.254"}])");
    WaitFor("/v1/subnets/" + first.Field("subnet", "id"), "subnet", "ACTIVE");
    struct Case {
        std::string fields;  // after network_id
        int status;
        std::string field;
    };
    const Case cases[] = {
        {R"("cidr":"10.0.0.0/33")", 400, "cidr"},
        {R"("cidr":"300.1.1.1/24")", 400, "cidr"},
        {R"("cidr":"::/0")", 400, "cidr"},
        {R"("cidr":"10.0.0.0/31")", 400, "cidr"},
        {R"("cidr":"10.1.0.0/32")", 400, "cidr"},
        {R"("cidr":"10.1.0.1/24")", 400, "cidr"},
        {R"("cidr":"garbage")", 400, "cidr"},
        {R"("cidr":"10.1.0.0/24","gateway_ip":"10.2.0.1")", 400, "gateway_ip"},
        {R"("cidr":"10.1.0.0/24","gateway_ip":"10.1.0.255")", 400, "gateway_ip"},
        {R"("cidr":"10.1.0.0/24","gateway_ip":"gw")", 400, "gateway_ip"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.2","end":"10.1.1.9"}])", 400,
         "allocation_pools[0]"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.1","end":"10.1.0.9"}])", 400,
         "allocation_pools[0]"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.9","end":"10.1.0.2"}])", 400,
         "allocation_pools[0]"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.2","end":"10.1.0.9"},
                                                     {"start":"10.1.0.5","end":"10.1.0.20"}])",
         400, "allocation_pools"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.2"}])", 400, "allocation_pools[0].end"},
        {R"("cidr":"10.1.0.0/24","allocation_pools":[])", 400, "allocation_pools"},
        // Overlaps another subnet of the same network, either way round.
        {R"("cidr":"10.0.0.128/25")", 409, "cidr"},
        {R"("cidr":"10.0.0.0/16")", 409, "cidr"},
        {R"("cidr":"10.0.0.0/24")", 409, "cidr"},
    };
    for (const auto& c : cases) {
        const std::string body = R"({"network_id":")" + net + R"(",)" + c.fields + "}";
        Reply r = Call(admin_, "POST", "/v1/subnets", body);
        EXPECT_EQ(r.status, c.status) << body << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), c.field) << body << " -> " << r.raw.body;
        EXPECT_EQ(r.Str("code"), c.status == 400 ? "invalid_argument" : "conflict") << body;
    }
    Reply overlap =
        Call(admin_, "POST", "/v1/subnets", R"({"network_id":")" + net + R"(","cidr":"10.0.0.0/16"})");
    EXPECT_EQ(overlap.Str("message"), "cidr: 10.0.0.0/16 overlaps subnet " + first.Field("subnet", "id") +
                                          " (10.0.0.0/24) of network " + net);
    // Nothing written, nothing asked of the service: one subnet, one create_subnet.
    EXPECT_EQ(Count(admin_, "subnets"), 1u);
    EXPECT_EQ(sims_["network"]->Counts().applied, 3u) << "two networks and one subnet";
    // Another network may reuse the block.
    Reply reuse =
        Call(admin_, "POST", "/v1/subnets", R"({"network_id":")" + other_net + R"(","cidr":"10.0.0.0/24"})");
    EXPECT_EQ(reuse.status, 202) << reuse.raw.body;
}

TEST_F(CloudTest, APortWhoseFixedIpTheNetworkServiceWouldRefuseIsRefusedBeforeAnythingIsWritten) {
    const std::string net = ActiveNetwork(admin_);
    Reply subnet = Call(admin_, "POST", "/v1/subnets", R"({"network_id":")" + net + R"(","cidr":"10.0.0.0/24",
                            "allocation_pools":[{"start":"10.0.0.10","end":"10.0.0.20"}]})");
    ASSERT_EQ(subnet.status, 202) << subnet.raw.body;
    const std::string subnet_id = subnet.Field("subnet", "id");
    WaitFor("/v1/subnets/" + subnet_id, "subnet", "ACTIVE");
    auto port = [&](const std::string& fixed_ip) {
        return Call(admin_, "POST", "/v1/ports",
                    R"({"network_id":")" + net + R"(","fixed_ip":")" + fixed_ip + R"("})");
    };
    Reply held = port("10.0.0.15");
    ASSERT_EQ(held.status, 202) << held.raw.body;
    EXPECT_EQ(held.Field("port", "fixed_ip"), "10.0.0.15");
    EXPECT_EQ(held.Field("port", "subnet_id"), subnet_id);
    const std::string holder = held.Field("port", "id");
    struct Case {
        std::string ip;
        int status;
        std::string what;
    };
    const Case cases[] = {
        {"10.0.0.x", 400, "must be an IPv4 address"},
        {"10.0.0.256", 400, "must be an IPv4 address"},
        {"::1", 400, "must be an IPv4 address"},
        {"10.9.0.5", 400, "in no subnet of network " + net},
        {"10.0.0.1", 400, "outside the allocation pools"},    // the gateway
        {"10.0.0.5", 400, "outside the allocation pools"},    // in the block, not in a pool
        {"10.0.0.255", 400, "outside the allocation pools"},  // the broadcast address
        {"10.0.0.15", 409, "address 10.0.0.15 in use by port " + holder},
    };
    for (const auto& c : cases) {
        Reply r = port(c.ip);
        EXPECT_EQ(r.status, c.status) << c.ip << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), "fixed_ip") << c.ip << " -> " << r.raw.body;
        EXPECT_NE(r.Str("message").find(c.what), std::string::npos) << c.ip << " -> " << r.raw.body;
    }
    // One port, one port of quota, one create_port asked of the service.
    WaitFor("/v1/ports/" + holder, "port", "ACTIVE");
    EXPECT_EQ(Count(admin_, "ports"), 1u);
    EXPECT_EQ(InUse(Call(admin_, "GET", "/v1/whoami").Str("project_id"), "ports"), 1);
    size_t create_ports = 0;
    for (const auto& e : sims_["network"]->Ledger()) {
        create_ports += e.action == "create_port" ? 1 : 0;
    }
    EXPECT_EQ(create_ports, 1u);
    // A free address of the pool is taken.
    EXPECT_EQ(port("10.0.0.16").status, 202);
}

// A name or any other text the API takes may not hold control characters: one shown in an
// operator's terminal (`cogs server list`) could clear or rewrite it.
TEST_F(CloudTest, ControlCharactersInNamesAndTextAreRefusedNamingTheFieldAndWriteNothing) {
    Seed(1);
    const std::string net = ActiveNetwork(admin_);
    const std::string project = NewProject("p");
    struct Case {
        std::string method, path, body, field, collection;
    };
    const std::string esc = R"(\u001b[2J)";
    const std::vector<Case> cases = {
        {"POST", "/v1/servers", ServerBody(net, "", "evil" + esc), "name", "servers"},
        {"POST", "/v1/servers", ServerBody(net, R"(,"availability_zone":"az\u0007")"), "availability_zone",
         "servers"},
        {"POST", "/v1/networks", R"({"name":"n\u0000x"})", "name", "networks"},
        {"POST", "/v1/subnets", R"({"network_id":")" + net + R"(","cidr":"10.0.0.0/24","name":"a\nb"})",
         "name", "subnets"},
        {"POST", "/v1/ports", R"({"network_id":")" + net + R"(","name":"p\u009b2J"})", "name", "ports"},
        {"POST", "/v1/volumes", R"({"name":"v\u007f","size_gb":1})", "name", "volumes"},
        {"POST", "/v1/server-groups", R"({"name":"g\tx","policy":"affinity"})", "name", "server-groups"},
        {"POST", "/v1/projects", R"({"name":"x)" + esc + R"("})", "name", "projects"},
        {"POST", "/v1/projects", R"({"name":"x","description":"line\u0085"})", "description", "projects"},
        {"POST", "/v1/tokens",
         R"({"project_id":")" + project + R"(","role":"member","name":"t)" + esc + R"("})", "name", "tokens"},
        {"POST", "/v1/flavors", R"({"name":"f)" + esc + R"(","vcpus":1,"ram_mb":1,"disk_gb":1})", "name",
         "flavors"},
        {"POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":1,"traits":["ssd\r"]})",
         "traits", "flavors"},
        {"POST", "/v1/images", R"({"name":"i","os":"linux\u001b"})", "os", "images"},
    };
    std::map<std::string, size_t> before;
    for (const auto& c : cases) {
        before[c.collection] = Count(admin_, c.collection);
    }
    for (const auto& c : cases) {
        Reply r = Call(admin_, c.method, c.path, c.body);
        EXPECT_EQ(r.status, 400) << c.path << " " << c.body << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.path << " " << c.body << " -> " << r.raw.body;
        EXPECT_NE(r.Str("message").find("must not contain control characters"), std::string::npos)
            << r.raw.body;
    }
    for (const auto& [collection, n] : before) {
        EXPECT_EQ(Count(admin_, collection), n) << collection;
    }
    // The host an agent registers, and an operator's reasons.
    EXPECT_EQ(
        Call(
            admin_, "PUT", "/v1/hosts/h1",
            R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,"disk_gb":100,"availability_zone":"a\u001bz"})")
            .ErrorField(),
        "availability_zone");
    Reply disable = Call(admin_, "POST", "/v1/hosts/h1/disable", R"({"reason":"x\u001b]0;pwned\u0007"})");
    EXPECT_EQ(disable.status, 400);
    EXPECT_EQ(disable.ErrorField(), "reason");
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h1").Obj("host").at("enabled"), json::value(true));
    // Nothing reached a service: one network made, nothing else.
    EXPECT_EQ(sims_["network"]->Counts().applied, 1u);
    EXPECT_EQ(sims_["volume"]->Counts().applied, 0u);
    EXPECT_EQ(sims_["compute"]->Counts().applied, 0u);
}

TEST_F(CloudTest, QuotaIsReservedAtTheRequestAndGivenBackWhenTheServerGoes) {
    Seed();
    const std::string p = NewProject("tenant");
    const std::string member = NewToken(p, "member");
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + p + "/quotas", R"({"servers":1})").status, 200);
    const std::string net = ActiveNetwork(member);
    const std::string body =
        R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"("})";
    Reply first = Call(member, "POST", "/v1/servers", body);
    ASSERT_EQ(first.status, 202) << first.raw.body;
    EXPECT_EQ(InUse(p, "servers"), 1);
    EXPECT_EQ(InUse(p, "vcpus"), 2);
    Reply second = Call(member, "POST", "/v1/servers", body);
    EXPECT_EQ(second.status, 403);
    EXPECT_EQ(second.Str("code"), "quota_exceeded");
    const json::object& d = second.body.at("details").as_object();
    EXPECT_EQ(d.at("resource").as_string(), "servers");
    EXPECT_EQ(d.at("limit").as_int64(), 1);
    EXPECT_EQ(d.at("in_use").as_int64(), 1);
    EXPECT_EQ(d.at("requested").as_int64(), 1);
    EXPECT_EQ(Count(member, "servers"), 1u);

    const std::string id = first.Field("server", "id");
    Reply active = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_FALSE(active.Field("server", "host").empty());
    ASSERT_EQ(Call(member, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
    EXPECT_EQ(InUse(p, "servers"), 0);
    EXPECT_EQ(InUse(p, "vcpus"), 0);
    EXPECT_EQ(InUse(p, "ports"), 0);
    EXPECT_EQ(Count(admin_, "ports"), 0u) << "the server's port goes with it";
}

TEST_F(CloudTest, EveryKindATenantCreatesHasAQuotaTakenAtTheRequestAndGivenBackByTheDelete) {
    Seed();
    const std::string p = NewProject("tenant");
    const std::string member = NewToken(p, "member");
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + p + "/quotas",
                   R"({"networks":1,"subnets":1,"server_groups":1})")
                  .status,
              200);
    auto refused = [&](const Reply& r, const std::string& resource) {
        EXPECT_EQ(r.status, 403) << r.raw.body;
        EXPECT_EQ(r.Str("code"), "quota_exceeded") << r.raw.body;
        ASSERT_TRUE(r.body.contains("details")) << r.raw.body;
        EXPECT_EQ(r.body.at("details").at("resource").as_string(), resource);
        EXPECT_EQ(r.body.at("details").at("limit").as_int64(), 1);
        EXPECT_EQ(r.body.at("details").at("in_use").as_int64(), 1);
    };

    const std::string net = ActiveNetwork(member);
    EXPECT_EQ(InUse(p, "networks"), 1);
    refused(Call(member, "POST", "/v1/networks", R"({"name":"second"})"), "networks");
    EXPECT_EQ(Count(member, "networks"), 1u);

    const std::string subnet_body = R"({"network_id":")" + net + R"(","cidr":"10.1.0.0/24"})";
    Reply subnet = Call(member, "POST", "/v1/subnets", subnet_body);
    ASSERT_EQ(subnet.status, 202) << subnet.raw.body;
    const std::string subnet_id = subnet.Field("subnet", "id");
    WaitFor("/v1/subnets/" + subnet_id, "subnet", "ACTIVE");
    EXPECT_EQ(InUse(p, "subnets"), 1);
    refused(Call(member, "POST", "/v1/subnets", R"({"network_id":")" + net + R"(","cidr":"10.2.0.0/24"})"),
            "subnets");
    EXPECT_EQ(Count(member, "subnets"), 1u);

    Reply group = Call(member, "POST", "/v1/server-groups", R"({"name":"g","policy":"affinity"})");
    ASSERT_EQ(group.status, 201) << group.raw.body;
    EXPECT_EQ(InUse(p, "server_groups"), 1);
    refused(Call(member, "POST", "/v1/server-groups", R"({"name":"h","policy":"affinity"})"),
            "server_groups");
    EXPECT_EQ(Call(member, "GET", "/v1/server-groups").Items("server_groups").size(), 1u);

    // Deletes give the quota back, and the next create passes.
    ASSERT_EQ(Call(member, "DELETE", "/v1/server-groups/" + group.Field("server_group", "id")).status, 204);
    EXPECT_EQ(InUse(p, "server_groups"), 0);
    ASSERT_EQ(Call(member, "DELETE", "/v1/subnets/" + subnet_id).status, 202);
    WaitFor("/v1/subnets/" + subnet_id, "subnet", "");
    EXPECT_EQ(InUse(p, "subnets"), 0);
    ASSERT_EQ(Call(member, "DELETE", "/v1/networks/" + net).status, 202);
    WaitFor("/v1/networks/" + net, "network", "");
    EXPECT_EQ(InUse(p, "networks"), 0);
    ActiveNetwork(member, "again");
    EXPECT_EQ(Call(member, "POST", "/v1/server-groups", R"({"name":"h","policy":"affinity"})").status, 201);
}

TEST_F(CloudTest, ATenantNeverSeesNorTouchesAnotherTenantsResources) {
    Seed();
    const std::string a = NewToken(NewProject("a"), "member");
    const std::string b = NewToken(NewProject("b"), "member");
    const std::string net = ActiveNetwork(a);
    EXPECT_EQ(Call(b, "GET", "/v1/networks/" + net).status, 404);
    EXPECT_EQ(Call(b, "DELETE", "/v1/networks/" + net).status, 404);
    EXPECT_EQ(Call(b, "GET", "/v1/networks/" + net + "/events").status, 404);
    EXPECT_EQ(Count(b, "networks"), 0u);
    EXPECT_EQ(Count(a, "networks"), 1u);
    Reply port = Call(b, "POST", "/v1/ports", R"({"network_id":")" + net + R"("})");
    EXPECT_EQ(port.status, 400);
    EXPECT_EQ(port.ErrorField(), "network_id");
    Reply server = Call(b, "POST", "/v1/servers",
                        R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"("})");
    EXPECT_EQ(server.status, 400);
    EXPECT_EQ(server.ErrorField(), "network_id");
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    // Events of a's network are a's: b's event list does not show them.
    Reply events = Call(b, "GET", "/v1/events");
    EXPECT_TRUE(events.body.at("events").as_array().empty());
}

TEST_F(CloudTest, RolesLimitWhatATokenMayDo) {
    Seed();
    const std::string p = NewProject("t");
    const std::string reader = NewToken(p, "reader");
    const std::string member = NewToken(p, "member");
    EXPECT_EQ(Call(reader, "POST", "/v1/networks", R"({"name":"n"})").status, 403);
    EXPECT_EQ(Count(admin_, "networks"), 0u);
    EXPECT_EQ(Call(member, "POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":0})").status,
              403);
    EXPECT_EQ(Call(member, "GET", "/v1/hosts").status, 403);
    EXPECT_EQ(Call(member, "GET", "/v1/tokens").status, 403);
    EXPECT_EQ(Call(member, "PUT", "/v1/projects/" + p + "/quotas", R"({"servers":9})").status, 403);
    EXPECT_EQ(Call(member, "GET", "/v1/log-levels").status, 403);
    EXPECT_EQ(Call("", "GET", "/v1/servers").status, 401);
    EXPECT_EQ(Call("cogs_wrong", "GET", "/v1/servers").status, 401);
    Reply who = Call(reader, "GET", "/v1/whoami");
    EXPECT_EQ(who.Str("role"), "reader");
    EXPECT_EQ(who.Str("project_id"), p);
    EXPECT_EQ(Count(reader, "flavors"), 1u) << "the shared catalog is everyone's to read";
}

TEST_F(CloudTest, ReplicasAreAnAdminsToListAndOneProcessListsItselfAsTheLeader) {
    const std::string member = NewToken(NewProject("p"), "member");
    EXPECT_EQ(Call(member, "GET", "/v1/replicas").status, 403);
    Reply r = Call(admin_, "GET", "/v1/replicas");
    ASSERT_EQ(r.status, 200);
    const json::array replicas = r.Items("replicas");
    ASSERT_EQ(replicas.size(), 1u);
    EXPECT_EQ(replicas[0].as_object().at("role").as_string(), "leader");
    EXPECT_EQ(replicas[0].as_object().at("id").as_string(), "cogsd");
}

TEST_F(CloudTest, IdempotencyKeyAnswersTheFirstAnswerAndRefusesAnotherBody) {
    const std::string a = Call(admin_, "POST", "/v1/networks", R"({"name":"n"})", {{"idempotency-key", "k1"}})
                              .Field("network", "id");
    ASSERT_FALSE(a.empty());
    Reply again = Call(admin_, "POST", "/v1/networks", R"({"name":"n"})", {{"idempotency-key", "k1"}});
    EXPECT_EQ(again.status, 202);
    EXPECT_EQ(again.Field("network", "id"), a);
    EXPECT_EQ(Call(admin_, "POST", "/v1/networks", R"({"name":"other"})", {{"idempotency-key", "k1"}}).status,
              409);
    EXPECT_EQ(Count(admin_, "networks"), 1u);
}

TEST_F(CloudTest, TheRouterAnswers404And405WithAllow) {
    Reply r = Call(admin_, "PUT", "/v1/servers");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.raw.Header("allow"), "GET, POST");
    r = Call(admin_, "POST", "/v1/projects/x/quotas");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.raw.Header("allow"), "GET, PUT");
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/x/start").raw.Header("allow"), "POST");
    EXPECT_EQ(Call(admin_, "GET", "/v1/nothing").status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/a/b/c").status, 404);
    r = Call(admin_, "GET", "/v1/servers?colour=red");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.ErrorField(), "colour");
    EXPECT_EQ(Call("", "GET", "/healthz").status, 200);
}

TEST_F(CloudTest, ATokensSecretIsShownOnceAndNeverAgain) {
    const std::string p = NewProject("t");
    const std::string body = R"({"project_id":")" + p + R"(","role":"member","name":"ci"})";
    Reply made = Call(admin_, "POST", "/v1/tokens", body, {{"idempotency-key", "token-key"}});
    ASSERT_EQ(made.status, 201) << made.raw.body;
    const std::string id = made.Field("token", "id");
    const std::string secret = made.Field("token", "secret");
    ASSERT_FALSE(secret.empty());
    EXPECT_EQ(made.Field("token", "role"), "member");
    EXPECT_EQ(Call(secret, "GET", "/v1/whoami").Str("token_id"), id);

    // Neither the secret nor its hash, anywhere the token is shown again.
    const std::string hash = Sha256Hex(secret);
    const Reply again[] = {Call(admin_, "GET", "/v1/tokens/" + id), Call(admin_, "GET", "/v1/tokens"),
                           Call(admin_, "GET", "/v1/tokens?project_id=" + p),
                           Call(admin_, "POST", "/v1/tokens", body, {{"idempotency-key", "token-key"}})};
    for (const Reply& r : again) {
        EXPECT_EQ(r.status / 100, 2) << r.raw.body;
        EXPECT_EQ(r.raw.body.find(secret), std::string::npos) << r.raw.body;
        EXPECT_EQ(r.raw.body.find(hash), std::string::npos) << r.raw.body;
    }
    EXPECT_EQ(again[0].Field("token", "id"), id);
    EXPECT_EQ(again[3].status, 201) << "a replay answers the first answer";
    EXPECT_EQ(again[3].Field("token", "id"), id) << "a replay makes no second token";
    EXPECT_EQ(again[2].Items("tokens").size(), 1u);
}

TEST_F(CloudTest, ADeletedTokenStopsWorkingAtOnce) {
    const std::string p = NewProject("t");
    Reply made = Call(admin_, "POST", "/v1/tokens", R"({"project_id":")" + p + R"(","role":"member"})");
    const std::string secret = made.Field("token", "secret");
    EXPECT_EQ(Call(secret, "GET", "/v1/servers").status, 200);
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/tokens/" + made.Field("token", "id")).status, 204);
    EXPECT_EQ(Call(secret, "GET", "/v1/servers").status, 401);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + made.Field("token", "id")).status, 404);
}

// Mutual TLS (issue 15): the HTTP layer names the client certificate's subject (Request::peer_name);
// an agent's names its host. A certificate naming h2 registers and renews h2 only, whatever the token;
// another replica's ("cogsd") vouches for the certificate its forwarded client showed.
TEST_F(CloudTest, AClientCertificateRegistersAndRenewsOnlyTheHostItNames) {
    Seed(2);
    auto as = [&](const std::string& peer, const std::string& method, const std::string& target,
                  const std::string& body, const Headers& headers = {}) {
        http::Request req = Request(admin_, method, target, body, headers);
        req.peer_name = peer;
        std::optional<http::Response> got;
        handler_(std::move(req), [&](http::Response r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        return got ? ReplyOf(std::move(*got)) : Reply{};
    };
    const std::string moved = R"({"url":"https://10.9.9.9:1","vcpus":8,"ram_mb":16384,"disk_gb":100})";
    EXPECT_EQ(as("h2", "POST", "/v1/hosts/h1/heartbeat", "{}").status, 403);
    Reply hijack = as("h2", "PUT", "/v1/hosts/h1", moved);
    EXPECT_EQ(hijack.status, 403);
    EXPECT_NE(hijack.raw.body.find("names 'h2'"), std::string::npos) << hijack.raw.body;
    // Forwarded by a replica for a client whose certificate named h2: the same refusal.
    EXPECT_EQ(as("cogsd", "POST", "/v1/hosts/h1/heartbeat", "{}", {{"x-cogs-peer-name", "h2"}}).status, 403);
    // The header alone, from anyone but a replica, is not believed (it names nothing then).
    EXPECT_EQ(as("h1", "POST", "/v1/hosts/h1/heartbeat", "{}", {{"x-cogs-peer-name", "h2"}}).status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h1").Field("host", "url"), "http://127.0.0.1:1");
    // Its own host; a replica's own request; no certificate at all (the token decides): accepted.
    EXPECT_EQ(as("h2", "POST", "/v1/hosts/h2/heartbeat", "{}").status, 200);
    EXPECT_EQ(as("h2", "PUT", "/v1/hosts/h2", moved).status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h2").Field("host", "url"), "https://10.9.9.9:1");
    EXPECT_EQ(as("cogsd", "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);
    EXPECT_EQ(as("", "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);
}

TEST_F(CloudTest, TokensAndHostsAreForAdminsOnly) {
    Seed(1);
    const std::string p = NewProject("t");
    const std::string token_id =
        Call(admin_, "POST", "/v1/tokens", R"({"project_id":")" + p + R"(","role":"reader"})")
            .Field("token", "id");
    const std::string host = R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,"disk_gb":100})";
    for (const std::string role : {"member", "reader"}) {
        const std::string token = NewToken(p, role);
        const std::vector<std::tuple<std::string, std::string, std::string>> calls = {
            {"GET", "/v1/tokens", ""},
            {"POST", "/v1/tokens", R"({"project_id":")" + p + R"(","role":"admin"})"},
            {"GET", "/v1/hosts", ""},
            {"GET", "/v1/hosts/h1", ""},
            {"PUT", "/v1/hosts/h1", host},
            {"PUT", "/v1/hosts/h9", host},
            {"POST", "/v1/hosts/h1/heartbeat", "{}"},
            {"POST", "/v1/hosts/h1/disable", "{}"},
            {"POST", "/v1/hosts/h1/drain", "{}"},
            {"GET", "/v1/hosts/h1/events", ""},
        };
        for (const auto& [method, path, body] : calls) {
            EXPECT_EQ(Call(token, method, path, body).status, 403) << role << " " << method << " " << path;
        }
        // A token, even of its own project, is not its to see, nor to revoke: 403 like every
        // admin-only route, whether the token exists or not.
        for (const std::string& id : {token_id, std::string("no-such-token")}) {
            EXPECT_EQ(Call(token, "GET", "/v1/tokens/" + id).status, 403) << role << " " << id;
            EXPECT_EQ(Call(token, "DELETE", "/v1/tokens/" + id).status, 403) << role << " " << id;
        }
    }
    // Nothing changed: one host, enabled and not draining; the reader's token still exists.
    Reply hosts = Call(admin_, "GET", "/v1/hosts");
    ASSERT_EQ(hosts.Items("hosts").size(), 1u);
    EXPECT_EQ(hosts.Items("hosts")[0].at("enabled"), json::value(true));
    EXPECT_EQ(hosts.Items("hosts")[0].at("draining"), json::value(false));
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + token_id).status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens?project_id=" + p).Items("tokens").size(), 3u);
}

TEST_F(CloudTest, FlavorsAndImagesAreFoundByTheirIdOrTheirName) {
    Seed(1);
    const std::string member = NewToken(NewProject("t"), "member");
    Reply flavor = Call(member, "GET", "/v1/flavors/small");
    ASSERT_EQ(flavor.status, 200) << flavor.raw.body;
    EXPECT_EQ(flavor.Field("flavor", "name"), "small");
    const std::string flavor_id = flavor.Field("flavor", "id");
    EXPECT_EQ(Call(member, "GET", "/v1/flavors/" + flavor_id).Field("flavor", "name"), "small");
    Reply image = Call(member, "GET", "/v1/images/debian");
    ASSERT_EQ(image.status, 200) << image.raw.body;
    EXPECT_EQ(Call(member, "GET", "/v1/flavors/large").status, 404);
    // A server names them either way.
    const std::string net = ActiveNetwork(member);
    Reply server = Call(member, "POST", "/v1/servers",
                        R"({"name":"s","flavor":")" + flavor_id + R"(","image":")" +
                            image.Field("image", "id") + R"(","network_id":")" + net + R"("})");
    ASSERT_EQ(server.status, 202) << server.raw.body;
    EXPECT_EQ(server.Field("server", "flavor_id"), flavor_id);
    EXPECT_EQ(server.Field("server", "image_id"), image.Field("image", "id"));
}

TEST_F(CloudTest, ANameTakenInTheCatalogIsRefusedWith409) {
    Seed(1);
    NewProject("t");
    const std::pair<std::string, std::string> twice[] = {
        {"/v1/flavors", R"({"name":"small","vcpus":1,"ram_mb":1,"disk_gb":0})"},
        {"/v1/images", R"({"name":"debian"})"},
        {"/v1/projects", R"({"name":"t"})"},
    };
    for (const auto& [path, body] : twice) {
        Reply r = Call(admin_, "POST", path, body);
        EXPECT_EQ(r.status, 409) << path << ": " << r.raw.body;
        EXPECT_EQ(r.Str("code"), "already_exists") << path;
    }
    EXPECT_EQ(Count(admin_, "flavors"), 1u);
    EXPECT_EQ(Count(admin_, "images"), 1u);
    EXPECT_EQ(Count(admin_, "projects"), 2u);  // admin's and t
}

TEST_F(CloudTest, QuotasAreReadAndSetAndABadValueNamesItsFieldAndChangesNothing) {
    const std::string p = NewProject("t");
    const std::string member = NewToken(p, "member");
    Reply q = Call(member, "GET", "/v1/projects/" + p + "/quotas");
    ASSERT_EQ(q.status, 200) << q.raw.body;
    const std::map<std::string, int64_t> defaults = {
        {"servers", 50}, {"vcpus", 200},    {"ram_mb", 409600}, {"volumes", 100},     {"volume_gb", 5000},
        {"ports", 100},  {"networks", 100}, {"subnets", 100},   {"server_groups", 10}};
    for (const auto& [name, limit] : defaults) {
        EXPECT_EQ(q.Obj("quotas").at(name).at("limit").as_int64(), limit) << name;
        EXPECT_EQ(q.Obj("quotas").at(name).at("in_use").as_int64(), 0) << name;
    }
    EXPECT_EQ(Call(member, "GET", "/v1/projects/" + NewProject("other") + "/quotas").status, 404);

    const std::pair<std::string, std::string> bad[] = {
        {R"({"servers":-2})", "servers"},
        {R"({"vcpus":"many"})", "vcpus"},
        {R"({"ram_mb":1.5})", "ram_mb"},
        {R"({"volumes":1,"cores":4})", "cores"},
        {"[]", "body"},
    };
    for (const auto& [body, field] : bad) {
        Reply r = Call(admin_, "PUT", "/v1/projects/" + p + "/quotas", body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(r.ErrorField(), field) << body << " -> " << r.raw.body;
    }
    EXPECT_EQ(Call(admin_, "GET", "/v1/projects/" + p + "/quotas").raw.body, q.raw.body)
        << "a refused PUT changed it";

    Reply set = Call(admin_, "PUT", "/v1/projects/" + p + "/quotas", R"({"servers":-1,"volumes":0})");
    ASSERT_EQ(set.status, 200) << set.raw.body;
    EXPECT_EQ(set.Obj("quotas").at("servers").at("limit").as_int64(), -1);
    EXPECT_EQ(set.Obj("quotas").at("volumes").at("limit").as_int64(), 0);
    EXPECT_EQ(set.Obj("quotas").at("vcpus").at("limit").as_int64(), 200) << "what the PUT did not name stays";
    Reply volume = Call(member, "POST", "/v1/volumes", R"({"name":"v","size_gb":1})");
    EXPECT_EQ(volume.status, 403);
    EXPECT_EQ(volume.Str("code"), "quota_exceeded");
    EXPECT_EQ(Count(member, "volumes"), 0u);
}

TEST_F(CloudTest, ListsPageInIdOrderWithMarkers) {
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(Call(admin_, "POST", "/v1/flavors",
                       R"({"name":"f)" + std::to_string(i) + R"(","vcpus":1,"ram_mb":1,"disk_gb":0})")
                      .status,
                  201);
    }
    std::vector<std::string> all;
    for (const auto& f : Call(admin_, "GET", "/v1/flavors").Items("flavors"))
        all.push_back(StrOf(f, "id"));
    ASSERT_EQ(all.size(), 5u);
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));

    std::vector<std::string> paged;
    std::string marker;
    int pages = 0;
    for (;;) {
        Reply page = Call(admin_, "GET", "/v1/flavors?limit=2" + (marker.empty() ? "" : "&marker=" + marker));
        ASSERT_EQ(page.status, 200) << page.raw.body;
        ASSERT_LE(page.Items("flavors").size(), 2u);
        for (const auto& f : page.Items("flavors"))
            paged.push_back(StrOf(f, "id"));
        ++pages;
        marker = page.Str("next_marker");
        if (marker.empty()) break;
        EXPECT_EQ(marker, paged.back());
    }
    EXPECT_EQ(pages, 3);
    EXPECT_EQ(paged, all);
    EXPECT_FALSE(Call(admin_, "GET", "/v1/flavors?limit=5").body.contains("next_marker"));
    EXPECT_TRUE(Call(admin_, "GET", "/v1/flavors?marker=" + all.back()).Items("flavors").empty());
}

TEST_F(CloudTest, ListsFilterByNameStatusAndForAdminsProject) {
    const std::string a = NewProject("a");
    const std::string member = NewToken(a, "member");
    const std::string mine = ActiveNetwork(member, "blue");
    ActiveNetwork(member, "green");
    const std::string admins = ActiveNetwork(admin_, "blue");
    services::sim::FaultConfig f;
    f.fail_actions = {"create_network"};
    sims_["network"]->SetFaults(f);
    Reply failed = Call(member, "POST", "/v1/networks", R"({"name":"red"})");
    WaitFor("/v1/networks/" + failed.Field("network", "id"), "network", "ERROR");

    auto ids = [&](const std::string& token, const std::string& query) {
        std::set<std::string> out;
        for (const auto& n : Call(token, "GET", "/v1/networks?" + query).Items("networks"))
            out.insert(StrOf(n, "id"));
        return out;
    };
    EXPECT_EQ(ids(member, "name=blue"), std::set<std::string>{mine}) << "a member's list is its project's";
    EXPECT_EQ(ids(admin_, "name=blue"), (std::set<std::string>{mine, admins}));
    EXPECT_EQ(ids(member, "status=ERROR"), std::set<std::string>{failed.Field("network", "id")});
    EXPECT_EQ(ids(member, "status=ACTIVE").size(), 2u);
    EXPECT_EQ(ids(admin_, "project_id=" + a).size(), 3u);
    EXPECT_EQ(ids(admin_, "project_id=" + a + "&name=blue&status=ACTIVE"), std::set<std::string>{mine});
    EXPECT_TRUE(ids(member, "name=nothing").empty());
}

// Among many other tenants' records, their ids interleaved with its own, a tenant's list pages
// through its own only (the model's per-project index), in id order, with the markers it was
// given; an admin's project filter pages the same, and an admin's list without one sees them all.
TEST_F(CloudTest, ATenantsListPagesThroughItsOwnRecordsAmongManyOtherTenants) {
    constexpr int kProjects = 9, kEach = 30, kMine = 23;
    std::vector<std::string> members;
    for (int i = 0; i < kProjects; ++i) {
        const std::string p = NewProject("p" + std::to_string(i));
        ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + p + "/quotas", R"({"server_groups":100})").status,
                  200);
        members.push_back(NewToken(p, "member"));
    }
    const std::string project = Call(members.back(), "GET", "/v1/whoami").Str("project_id");
    const std::string reader = NewToken(project, "reader");
    std::vector<std::string> mine;
    for (int n = 0; n < kEach; ++n) {  // round robin: the creation order tells nothing
        for (int i = 0; i < kProjects; ++i) {
            if (i == kProjects - 1 && n >= kMine) continue;
            Reply r = Call(members[i], "POST", "/v1/server-groups",
                           R"({"name":"g)" + std::to_string(n) + R"(","policy":"anti-affinity"})");
            ASSERT_EQ(r.status, 201) << r.raw.body;
            if (i == kProjects - 1) mine.push_back(r.Field("server_group", "id"));
        }
    }
    std::sort(mine.begin(), mine.end());

    // Every page of `query` (limit 5) from `marker` on, each checked; the ids in order.
    auto paged = [&](const std::string& token, const std::string& query, std::string marker = "") {
        std::vector<std::string> ids;
        for (int pages = 0; pages < 100; ++pages) {
            Reply page =
                Call(token, "GET",
                     "/v1/server-groups?limit=5" + query + (marker.empty() ? "" : "&marker=" + marker));
            EXPECT_EQ(page.status, 200) << page.raw.body;
            const json::array& items = page.Items("server_groups");
            EXPECT_LE(items.size(), 5u);
            for (const auto& g : items) {
                ids.push_back(StrOf(g, "id"));
            }
            marker = page.Str("next_marker");
            if (marker.empty()) break;
            EXPECT_EQ(items.size(), 5u) << "a page before the last is full";
            EXPECT_EQ(marker, ids.back());
        }
        return ids;
    };
    EXPECT_EQ(paged(members.back(), ""), mine);
    EXPECT_EQ(paged(reader, ""), mine);
    EXPECT_EQ(paged(admin_, "&project_id=" + project), mine);
    EXPECT_EQ(Call(admin_, "GET", "/v1/server-groups?limit=1000").Items("server_groups").size(),
              static_cast<size_t>((kProjects - 1) * kEach + kMine));
    // A marker from another tenant's list (or a deleted id) is a place in the id order.
    const std::string others =
        StrOf(Call(members[0], "GET", "/v1/server-groups").Items("server_groups")[7], "id");
    EXPECT_EQ(paged(members.back(), "", others),
              std::vector<std::string>(std::upper_bound(mine.begin(), mine.end(), others), mine.end()));
    // Filters apply within the tenant's own: every project has a "g7".
    const json::array named = Call(members.back(), "GET", "/v1/server-groups?name=g7").Items("server_groups");
    ASSERT_EQ(named.size(), 1u);
    EXPECT_EQ(StrOf(named[0], "project_id"), project);

    // Deleted records leave the list; a deleted one's id still works as a marker.
    for (const std::string& gone : {mine[0], mine[11]}) {
        ASSERT_EQ(Call(members.back(), "DELETE", "/v1/server-groups/" + gone).status, 204);
    }
    std::vector<std::string> left = mine;
    std::erase(left, mine[0]);
    std::erase(left, mine[11]);
    EXPECT_EQ(paged(members.back(), ""), left);
    EXPECT_EQ(paged(members.back(), "", mine[11]), std::vector<std::string>(mine.begin() + 12, mine.end()));
}

// What changes in place as servers live — a build's host, a stop's status, a delete — is what the
// lists by host, the cogs_resources gauge and a drain count at once.
TEST_F(CloudTest, ListsByHostResourceGaugesAndADrainFollowServersThroughTheirLives) {
    observe::Metrics metrics;  // outlives the cloud (closed at the end)
    Close();
    options_.metrics = &metrics;
    ASSERT_NO_FATAL_FAILURE(Open());
    Seed(1);
    const std::string member = NewToken(NewProject("t"), "member");
    const std::string net = ActiveNetwork(member);
    const std::string a = ActiveServer(member, net);
    const std::string b = ActiveServer(member, net);
    auto gauge = [&](const std::string& kind, const std::string& status) {
        const double v = services::kit::test_observe::SampleOf(metrics.Render(), "cogs_resources",
                                                               {{"kind", kind}, {"status", status}});
        return std::isnan(v) ? -1 : static_cast<int>(v);
    };
    auto on_h1 = [&](const std::string& query = "") {
        std::set<std::string> ids;
        for (const auto& s : Call(admin_, "GET", "/v1/servers?host=h1" + query).Items("servers")) {
            ids.insert(StrOf(s, "id"));
        }
        return ids;
    };
    EXPECT_EQ(gauge("server", "ACTIVE"), 2);
    EXPECT_EQ(gauge("port", "ACTIVE"), 2);
    EXPECT_EQ(gauge("network", "ACTIVE"), 1);
    EXPECT_EQ(on_h1(), (std::set<std::string>{a, b}));

    ASSERT_EQ(Call(member, "POST", "/v1/servers/" + a + "/stop", "{}").status, 202);
    WaitFor("/v1/servers/" + a, "server", "SHUTOFF");
    EXPECT_EQ(gauge("server", "ACTIVE"), 1);
    EXPECT_EQ(gauge("server", "SHUTOFF"), 1);
    EXPECT_EQ(on_h1("&status=SHUTOFF"), std::set<std::string>{a});
    // By status alone (the model's status index, which follows each change of a server's status).
    auto with_status = [&](const std::string& status) {
        std::set<std::string> ids;
        for (const auto& s : Call(admin_, "GET", "/v1/servers?status=" + status).Items("servers")) {
            ids.insert(StrOf(s, "id"));
        }
        return ids;
    };
    EXPECT_EQ(with_status("SHUTOFF"), std::set<std::string>{a});
    EXPECT_EQ(with_status("ACTIVE"), std::set<std::string>{b});
    EXPECT_TRUE(with_status("BUILD").empty());

    ASSERT_EQ(Call(member, "DELETE", "/v1/servers/" + b).status, 202);
    WaitFor("/v1/servers/" + b, "server", "");
    EXPECT_EQ(gauge("server", "ACTIVE"), 0) << "a status that emptied shows 0";
    EXPECT_EQ(gauge("server", "SHUTOFF"), 1);
    EXPECT_EQ(gauge("port", "ACTIVE"), 1);
    EXPECT_EQ(on_h1(), std::set<std::string>{a});

    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h1/drain", "{}").status, 200);
    std::string message;
    for (const auto& e : Call(admin_, "GET", "/v1/hosts/h1/events").Items("events")) {
        if (StrOf(e, "type") == "draining") message = StrOf(e, "message");
    }
    EXPECT_NE(message.find("1 servers are migrated off it"), std::string::npos) << message;
    Close();
}

TEST_F(CloudTest, ALimitOutOfRangeIsRefusedNamingIt) {
    for (const std::string path : {"/v1/servers", "/v1/flavors", "/v1/workflows", "/v1/events"}) {
        for (const std::string limit : {"0", "1001", "-1", "ten", ""}) {
            Reply r = Call(admin_, "GET", path + "?limit=" + limit);
            EXPECT_EQ(r.status, 400) << path << "?limit=" << limit;
            EXPECT_EQ(r.ErrorField(), "limit") << path << "?limit=" << limit << " -> " << r.raw.body;
        }
        EXPECT_EQ(Call(admin_, "GET", path + "?limit=1000").status, 200) << path;
        EXPECT_EQ(Call(admin_, "GET", path + "?limit=1").status, 200) << path;
    }
}

TEST_F(CloudTest, AMemberSeesOnlyItsProjectsWorkflows) {
    const std::string a = NewProject("a");
    const std::string member = NewToken(a, "member");
    const std::string mine = ActiveNetwork(member);
    const std::string theirs = ActiveNetwork(admin_);
    const std::string my_wf = Call(member, "GET", "/v1/networks/" + mine).Field("network", "workflow_id");
    const std::string their_wf =
        Call(admin_, "GET", "/v1/networks/" + theirs).Field("network", "workflow_id");

    Reply listed = Call(member, "GET", "/v1/workflows");
    ASSERT_EQ(listed.status, 200) << listed.raw.body;
    ASSERT_EQ(listed.Items("workflows").size(), 1u) << listed.raw.body;
    const json::value& w = listed.Items("workflows")[0];
    EXPECT_EQ(StrOf(w, "id"), my_wf);
    EXPECT_EQ(StrOf(w, "type"), "network.create");
    EXPECT_EQ(StrOf(w, "state"), "succeeded");
    EXPECT_EQ(StrOf(w, "resource_kind"), "network");
    EXPECT_EQ(StrOf(w, "resource_id"), mine);
    EXPECT_EQ(Call(member, "GET", "/v1/workflows?project_id=" + a).status, 400) << "not a member's filter";
    EXPECT_EQ(Call(member, "GET", "/v1/workflows/" + their_wf).status, 404);
    EXPECT_EQ(Call(member, "POST", "/v1/workflows/" + their_wf + "/cancel", "{}").status, 404);

    EXPECT_EQ(Call(admin_, "GET", "/v1/workflows").Items("workflows").size(), 2u);
    EXPECT_EQ(Call(admin_, "GET", "/v1/workflows?project_id=" + a).Items("workflows").size(), 1u);
    EXPECT_EQ(
        Call(admin_, "GET", "/v1/workflows?type=network.create&state=succeeded").Items("workflows").size(),
        2u);
    EXPECT_TRUE(Call(admin_, "GET", "/v1/workflows?state=failed").Items("workflows").empty());
    Reply bad_state = Call(admin_, "GET", "/v1/workflows?state=sleeping");
    EXPECT_EQ(bad_state.status, 400);
    EXPECT_EQ(bad_state.ErrorField(), "state");
}

TEST_F(CloudTest, AWorkflowShowsEachOfItsSteps) {
    Seed();
    const std::string net = ActiveNetwork(admin_);
    const std::string id = ActiveServer(admin_, net);
    const std::string wf = Server(id).Field("server", "workflow_id");
    Reply r = Call(admin_, "GET", "/v1/workflows/" + wf);
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(r.Field("workflow", "type"), "server.create");
    EXPECT_EQ(r.Field("workflow", "state"), "succeeded");
    EXPECT_EQ(r.Field("workflow", "resource_id"), id);
    EXPECT_EQ(r.Obj("workflow").at("input").at("server_id").as_string(), id);
    std::vector<std::string> steps;
    for (const auto& s : r.Obj("workflow").at("steps").as_array()) {
        steps.push_back(StrOf(s, "name"));
        EXPECT_EQ(StrOf(s, "state"), "succeeded") << StrOf(s, "name");
        EXPECT_EQ(s.at("attempts").as_int64(), 1) << StrOf(s, "name");
        EXPECT_FALSE(StrOf(s, "finished_at").empty()) << StrOf(s, "name");
    }
    EXPECT_EQ(steps,
              (std::vector<std::string>{"create_port", "claim", "boot", "attach_volumes", "mount_volumes"}));
    EXPECT_EQ(r.Obj("workflow").at("steps").at(1).at("output").at("host"),
              Server(id).Obj("server").at("host"))
        << "the claim's output is where the server is";
}

TEST_F(CloudTest, TooManyRequestsAtOnceAreRefusedWith429) {
    options_.admission.max_inflight = 1;
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    // Two requests arrive before the first is answered.
    std::optional<http::Response> first, second;
    handler_(Request(admin_, "POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":0})"),
             [&](http::Response r) { first = std::move(r); });
    handler_(Request(admin_, "POST", "/v1/images", R"({"name":"i"})"),
             [&](http::Response r) { second = std::move(r); });
    RunUntil([&] { return first && second; });
    EXPECT_EQ(first->status, 201);
    const Reply refused = ReplyOf(*second);
    EXPECT_EQ(refused.status, 429);
    EXPECT_EQ(refused.Str("code"), "resource_exhausted");
    EXPECT_EQ(refused.raw.Header("retry-after"), "1");
    EXPECT_EQ(Count(admin_, "images"), 0u) << "a refused request writes nothing";
    EXPECT_EQ(Count(admin_, "flavors"), 1u);
}

TEST_F(CloudTest, ARequestsTraceIsKeptByItsWorkflowAndItsEvents) {
    const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    Reply r = Call(admin_, "POST", "/v1/networks", R"({"name":"n"})",
                   {{"traceparent", "00-" + trace_id + "-00f067aa0ba902b7-01"}});
    ASSERT_EQ(r.status, 202) << r.raw.body;
    EXPECT_TRUE(r.raw.Header("traceparent").starts_with("00-" + trace_id + "-"))
        << r.raw.Header("traceparent");
    const std::string id = r.Field("network", "id");
    WaitFor("/v1/networks/" + id, "network", "ACTIVE");
    Reply wf = Call(admin_, "GET", "/v1/workflows/" + r.Field("network", "workflow_id"));
    EXPECT_EQ(wf.Field("workflow", "trace_id"), trace_id);
    WaitForEvent("/v1/networks/" + id, "active");
    const Reply events = Call(admin_, "GET", "/v1/networks/" + id + "/events");
    for (const auto& e : events.Items("events")) {
        EXPECT_EQ(StrOf(e, "trace_id"), trace_id) << json::serialize(e);
        EXPECT_EQ(StrOf(e, "workflow_id"), r.Field("network", "workflow_id")) << json::serialize(e);
    }
    // A malformed one starts a new trace.
    Reply fresh = Call(admin_, "GET", "/v1/networks", "", {{"traceparent", "00-nonsense"}});
    const std::string answered = fresh.raw.Header("traceparent");
    EXPECT_EQ(answered.size(), 55u) << answered;
    EXPECT_EQ(answered.find(trace_id), std::string::npos);
}

TEST_F(CloudTest, AHistoryIsReadInPagesAfterASeq) {
    const std::string id = ActiveNetwork(admin_);
    ASSERT_EQ(Call(admin_, "DELETE", "/v1/networks/" + id).status, 202);
    WaitFor("/v1/networks/" + id, "network", "");
    const std::string path = "/v1/networks/" + id + "/events";
    WaitForEvent("/v1/networks/" + id, "deleted");
    const Reply all = Call(admin_, "GET", path);
    std::vector<int64_t> seqs;
    for (const auto& e : all.Items("events"))
        seqs.push_back(e.at("seq").as_int64());
    ASSERT_GE(seqs.size(), 4u);
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(all.body.at("next_after").as_int64(), seqs.back());

    std::vector<int64_t> paged;
    int64_t after = 0;
    for (;;) {
        const Reply page = Call(admin_, "GET", path + "?limit=3&after=" + std::to_string(after));
        ASSERT_EQ(page.status, 200) << page.raw.body;
        if (page.Items("events").empty()) {
            EXPECT_EQ(page.body.at("next_after").as_int64(), after) << "nothing newer: where it was";
            break;
        }
        ASSERT_LE(page.Items("events").size(), 3u);
        for (const auto& e : page.Items("events"))
            paged.push_back(e.at("seq").as_int64());
        after = page.body.at("next_after").as_int64();
        EXPECT_EQ(after, paged.back());
    }
    EXPECT_EQ(paged, seqs);
    Reply bad = Call(admin_, "GET", path + "?after=-1");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "after");
}

}  // namespace
}  // namespace cogs::cloud::testing
