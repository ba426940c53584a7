// The local cloud end to end: `cogs dev` with the real cogsd, cogs-network, cogs-volume and
// compute agents on 127.0.0.1. Every assertion is what an operator could check: the API's answer
// and status, and each service's own inventory.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;

class CloudTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto dev = DevCloud::Start(DevOptions{3, 20, {}});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev).release();
    }
    static void TearDownTestSuite() {
        if (dev_ != nullptr) {
            auto status = dev_->Stop();
            EXPECT_EQ(status, std::optional<int>(0)) << "cogs dev did not stop cleanly on SIGINT";
            delete dev_;
            dev_ = nullptr;
        }
    }
    void SetUp() override { ASSERT_NE(dev_, nullptr); }

    // A fresh project with a member token; returns {project id, member token}.
    std::pair<std::string, std::string> NewProject(const std::string& name,
                                                   const std::string& role = "member") {
        ApiClient admin = dev_->Admin();
        ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":")" + name + R"("})");
        EXPECT_EQ(p.status, 201) << p.text;
        std::string id = S(At(p.body, "project"), "id");
        return {id, Token(id, role)};
    }

    std::string Token(const std::string& project, const std::string& role) {
        ApiReply t = dev_->Admin().Must("POST", "/v1/tokens",
                                        R"({"project_id":")" + project + R"(","role":")" + role + R"("})");
        EXPECT_EQ(t.status, 201) << t.text;
        return S(At(t.body, "token"), "secret");
    }

    // Waits until GET path shows `field` == want; returns the last body.
    json::value WaitFor(ApiClient& api, const std::string& path, std::string_view key,
                        const std::string& want, Duration timeout = std::chrono::seconds(30)) {
        json::value last;
        bool ok = WaitUntil(
            [&] {
                ApiReply r = api.Must("GET", path);
                last = At(r.body, key);
                return r.status == 200 && S(last, "status") == want;
            },
            timeout);
        EXPECT_TRUE(ok) << path << " never became " << want << "; last: " << json::serialize(last);
        return last;
    }

    void WaitGone(ApiClient& api, const std::string& path) {
        EXPECT_TRUE(WaitUntil([&] { return api.Must("GET", path).status == 404; }, std::chrono::seconds(30)))
            << path << " still exists";
    }

    // Deletes every server of `ids` (each accepted), then waits until none is left.
    void DeleteServers(ApiClient& api, const std::vector<std::string>& ids) {
        for (const auto& id : ids) {
            EXPECT_EQ(api.Must("DELETE", "/v1/servers/" + id).status, 202);
        }
        for (const auto& id : ids) {
            WaitGone(api, "/v1/servers/" + id);
        }
    }

    // A network with a subnet, ACTIVE; returns the network id.
    std::string Network(ApiClient& api, const std::string& name, const std::string& cidr) {
        ApiReply n = api.Must("POST", "/v1/networks", R"({"name":")" + name + R"("})");
        EXPECT_EQ(n.status, 202) << n.text;
        std::string id = S(At(n.body, "network"), "id");
        WaitFor(api, "/v1/networks/" + id, "network", "ACTIVE");
        ApiReply s =
            api.Must("POST", "/v1/subnets",
                     R"({"network_id":")" + id + R"(","cidr":")" + cidr + R"(","name":")" + name + R"("})");
        EXPECT_EQ(s.status, 202) << s.text;
        WaitFor(api, "/v1/subnets/" + S(At(s.body, "subnet"), "id"), "subnet", "ACTIVE");
        return id;
    }

    // A 1 GB volume, available; returns its id.
    std::string Volume(ApiClient& api, const std::string& name) {
        ApiReply v = api.Must("POST", "/v1/volumes", R"({"name":")" + name + R"(","size_gb":1})");
        EXPECT_EQ(v.status, 202) << v.text;
        std::string id = S(At(v.body, "volume"), "id");
        WaitFor(api, "/v1/volumes/" + id, "volume", "available");
        return id;
    }

    json::value Inventory(const std::string& service) {
        ApiClient svc = dev_->Service(service);
        ApiReply r = svc.Must("GET", "/v1/inventory");
        EXPECT_EQ(r.status, 200) << service << ": " << r.text;
        return r.body;
    }

    // Every item of `list` (an inventory array) whose `field` equals `value`.
    static std::vector<json::value> Where(const json::value& list, std::string_view field,
                                          const std::string& value) {
        std::vector<json::value> out;
        if (list.is_array()) {
            for (const auto& item : list.as_array()) {
                if (S(item, field) == value) out.push_back(item);
            }
        }
        return out;
    }

    std::vector<json::value> InstancesOf(const std::string& server_id) {
        std::vector<json::value> out;
        for (const auto& p : dev_->processes()) {
            if (p.name.find("compute") == std::string::npos) continue;
            ApiClient svc(p.url, dev_->ServiceToken(p.name));
            ApiReply r = svc.Must("GET", "/v1/inventory");
            for (auto& i : Where(At(r.body, "instances"), "id", server_id))
                out.push_back(i);
        }
        return out;
    }

    // Claims on all hosts, as cogsd's placement counts them.
    int64_t HostServers() {
        ApiReply hosts = dev_->Admin().Must("GET", "/v1/hosts");
        const json::value host_list = At(hosts.body, "hosts");
        int64_t n = 0;
        for (const auto& h : host_list.as_array()) {
            n += At(h, "servers").to_number<int64_t>();
        }
        return n;
    }

    static DevCloud* dev_;
};

DevCloud* CloudTest::dev_ = nullptr;

TEST_F(CloudTest, ServerLifecycleEndToEnd) {
    auto [project, token] = NewProject("lifecycle");
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "life-net", "10.31.0.0/24");

    const std::string vol = Volume(api, "life-vol");

    ApiReply s = api.Must("POST", "/v1/servers",
                          R"({"name":"life","flavor":"m1.tiny","image":"cirros","network_id":")" + net +
                              R"(","volume_ids":[")" + vol + R"("]})");
    ASSERT_EQ(s.status, 202) << s.text;
    EXPECT_EQ(S(At(s.body, "server"), "status"), "BUILD");
    EXPECT_FALSE(S(At(s.body, "server"), "workflow_id").empty());
    const std::string id = S(At(s.body, "server"), "id");
    json::value server = WaitFor(api, "/v1/servers/" + id, "server", "ACTIVE");
    const std::string ip = S(server, "ip_address");
    const std::string host = S(server, "host");
    EXPECT_TRUE(ip.starts_with("10.31.0.")) << ip;
    EXPECT_TRUE(host.starts_with("host-")) << host;

    // What the services hold, not what the API says.
    auto instances = InstancesOf(id);
    ASSERT_EQ(instances.size(), 1u);
    EXPECT_EQ(S(instances[0], "host"), host);
    EXPECT_EQ(S(instances[0], "state"), "ACTIVE");
    json::value net_inv = Inventory("network");
    auto ports = Where(At(net_inv, "ports"), "device_id", id);
    ASSERT_EQ(ports.size(), 1u);
    EXPECT_EQ(S(ports[0], "fixed_ip"), ip);
    auto vols = Where(At(Inventory("volume"), "volumes"), "id", vol);
    ASSERT_EQ(vols.size(), 1u);
    EXPECT_EQ(S(vols[0], "server_id"), id);
    EXPECT_EQ(S(WaitFor(api, "/v1/volumes/" + vol, "volume", "in-use"), "server_id"), id);

    // Power actions, seen by the compute agent too.
    ASSERT_EQ(api.Must("POST", "/v1/servers/" + id + "/stop", "{}").status, 202);
    WaitFor(api, "/v1/servers/" + id, "server", "SHUTOFF");
    EXPECT_EQ(S(InstancesOf(id).at(0), "state"), "SHUTOFF");
    EXPECT_EQ(api.Must("POST", "/v1/servers/" + id + "/reboot", "{}").status, 409);  // not ACTIVE
    ASSERT_EQ(api.Must("POST", "/v1/servers/" + id + "/start", "{}").status, 202);
    WaitFor(api, "/v1/servers/" + id, "server", "ACTIVE");
    ASSERT_EQ(api.Must("POST", "/v1/servers/" + id + "/reboot", "{}").status, 202);
    WaitFor(api, "/v1/servers/" + id, "server", "ACTIVE");

    // The workflow's step timeline.
    ApiReply wf = api.Must("GET", "/v1/workflows/" + S(server, "workflow_id"));
    ASSERT_EQ(wf.status, 200) << wf.text;

    // Delete: instance, port and address go; the volume is detached and stays.
    ApiReply d = api.Must("DELETE", "/v1/servers/" + id);
    ASSERT_EQ(d.status, 202) << d.text;
    EXPECT_EQ(S(At(d.body, "server"), "status"), "DELETING");
    WaitGone(api, "/v1/servers/" + id);
    EXPECT_TRUE(InstancesOf(id).empty());
    net_inv = Inventory("network");
    EXPECT_TRUE(Where(At(net_inv, "ports"), "device_id", id).empty());
    EXPECT_TRUE(Where(At(net_inv, "addresses"), "ip", ip).empty());
    WaitFor(api, "/v1/volumes/" + vol, "volume", "available");
    EXPECT_EQ(S(Where(At(Inventory("volume"), "volumes"), "id", vol).at(0), "server_id"), "");

    ASSERT_EQ(api.Must("DELETE", "/v1/volumes/" + vol).status, 202);
    WaitGone(api, "/v1/volumes/" + vol);
    EXPECT_TRUE(Where(At(Inventory("volume"), "volumes"), "id", vol).empty());
    // A network with a subnet cannot go; without, it can.
    EXPECT_EQ(api.Must("DELETE", "/v1/networks/" + net).status, 409);
    ApiReply subnets = api.Must("GET", "/v1/subnets?network_id=" + net);
    const json::value subnet_list = At(subnets.body, "subnets");
    for (const auto& sn : subnet_list.as_array()) {
        ASSERT_EQ(api.Must("DELETE", "/v1/subnets/" + S(sn, "id")).status, 202);
        WaitGone(api, "/v1/subnets/" + S(sn, "id"));
    }
    ASSERT_EQ(api.Must("DELETE", "/v1/networks/" + net).status, 202);
    WaitGone(api, "/v1/networks/" + net);
    EXPECT_TRUE(Where(At(Inventory("network"), "networks"), "id", net).empty());
    ApiReply q = api.Must("GET", "/v1/projects/" + project + "/quotas");
    EXPECT_EQ(At(At(At(q.body, "quotas"), "servers"), "in_use").to_number<int64_t>(), 0) << q.text;
    EXPECT_EQ(At(At(At(q.body, "quotas"), "ports"), "in_use").to_number<int64_t>(), 0) << q.text;
}

TEST_F(CloudTest, TenancyAndRolesOnEveryEndpoint) {
    auto [a, a_member] = NewProject("tenant-a");
    const std::string a_reader = Token(a, "reader");
    auto [b, b_member] = NewProject("tenant-b");
    ApiClient owner(dev_->api_url(), a_member);
    const std::string net = Network(owner, "a-net", "10.32.0.0/24");
    ApiReply v = owner.Must("POST", "/v1/volumes", R"({"name":"a-vol","size_gb":1})");
    const std::string vol = S(At(v.body, "volume"), "id");
    WaitFor(owner, "/v1/volumes/" + vol, "volume", "available");
    ApiReply s =
        owner.Must("POST", "/v1/servers",
                   R"({"name":"a-srv","flavor":"m1.tiny","image":"cirros","network_id":")" + net + R"("})");
    const std::string srv = S(At(s.body, "server"), "id");
    json::value server = WaitFor(owner, "/v1/servers/" + srv, "server", "ACTIVE");
    ApiReply g = owner.Must("POST", "/v1/server-groups", R"({"name":"a-grp","policy":"anti-affinity"})");
    ASSERT_EQ(g.status, 201) << g.text;
    const std::string grp = S(At(g.body, "server_group"), "id");
    const std::string port = S(server, "port_id");
    const std::string subnet =
        S(At(owner.Must("GET", "/v1/subnets?network_id=" + net).body, "subnets").as_array().at(0), "id");
    const std::string wf = S(server, "workflow_id");

    // Another project's token: every one of A's resources is "not found", for reads and writes.
    ApiClient other(dev_->api_url(), b_member);
    const std::vector<std::pair<std::string, std::string>> reads = {{"GET", "/v1/networks/" + net},
                                                                    {"GET", "/v1/subnets/" + subnet},
                                                                    {"GET", "/v1/ports/" + port},
                                                                    {"GET", "/v1/volumes/" + vol},
                                                                    {"GET", "/v1/servers/" + srv},
                                                                    {"GET", "/v1/server-groups/" + grp},
                                                                    {"GET", "/v1/workflows/" + wf},
                                                                    {"GET", "/v1/projects/" + a},
                                                                    {"GET", "/v1/projects/" + a + "/quotas"}};
    const std::vector<std::tuple<std::string, std::string, std::string>> writes = {
        {"DELETE", "/v1/networks/" + net, ""},
        {"DELETE", "/v1/subnets/" + subnet, ""},
        {"DELETE", "/v1/ports/" + port, ""},
        {"DELETE", "/v1/volumes/" + vol, ""},
        {"DELETE", "/v1/servers/" + srv, ""},
        {"DELETE", "/v1/server-groups/" + grp, ""},
        {"POST", "/v1/servers/" + srv + "/stop", "{}"},
        {"POST", "/v1/servers/" + srv + "/reboot", "{}"},
        {"POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + srv + R"("})"},
        {"POST", "/v1/workflows/" + wf + "/cancel", "{}"}};
    for (const auto& [m, path] : reads) {
        EXPECT_EQ(other.Must(m, path).status, 404) << m << " " << path;
    }
    for (const auto& [m, path, body] : writes) {
        EXPECT_EQ(other.Must(m, path, body).status, 404) << m << " " << path;
    }
    // Using A's resources from B's own requests is refused, naming the field.
    ApiReply cross =
        other.Must("POST", "/v1/servers",
                   R"({"name":"x","flavor":"m1.tiny","image":"cirros","network_id":")" + net + R"("})");
    EXPECT_EQ(cross.status, 400);
    EXPECT_EQ(S(At(cross.body, "details"), "field"), "network_id");
    EXPECT_EQ(
        other.Must("POST", "/v1/subnets", R"({"network_id":")" + net + R"(","cidr":"10.9.0.0/24"})").status,
        400);
    // Lists show none of A's.
    for (const std::string c :
         {"networks", "subnets", "ports", "volumes", "servers", "server-groups", "workflows"}) {
        ApiReply l = other.Must("GET", "/v1/" + c);
        EXPECT_EQ(l.status, 200) << c;
        EXPECT_EQ(l.text.find(a), std::string::npos) << c << " shows project A: " << l.text;
    }

    // A reader of A sees A's resources and can change nothing.
    ApiClient reader(dev_->api_url(), a_reader);
    for (const auto& [m, path] : reads) {
        EXPECT_EQ(reader.Must(m, path).status, 200) << m << " " << path;
    }
    for (const auto& [m, path, body] : writes) {
        EXPECT_EQ(reader.Must(m, path, body).status, 403) << m << " " << path;
    }
    for (const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
             {"/v1/networks", R"({"name":"r"})"},
             {"/v1/volumes", R"({"name":"r","size_gb":1})"},
             {"/v1/servers",
              R"({"name":"r","flavor":"m1.tiny","image":"cirros","network_id":")" + net + R"("})"}}) {
        EXPECT_EQ(reader.Must("POST", path, body).status, 403) << path;
    }
    // Members and readers cannot manage projects, tokens, flavors, images or hosts.
    for (ApiClient* c : {&owner, &reader}) {
        EXPECT_EQ(c->Must("POST", "/v1/projects", R"({"name":"nope"})").status, 403);
        EXPECT_EQ(c->Must("POST", "/v1/tokens", R"({"project_id":")" + a + R"(","role":"admin"})").status,
                  403);
        EXPECT_EQ(c->Must("GET", "/v1/tokens").status, 403);
        EXPECT_EQ(c->Must("POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":1})").status,
                  403);
        EXPECT_EQ(c->Must("POST", "/v1/images", R"({"name":"i"})").status, 403);
        EXPECT_EQ(c->Must("GET", "/v1/hosts").status, 403);
        EXPECT_EQ(c->Must("POST", "/v1/hosts/host-1/disable", "{}").status, 403);
        EXPECT_EQ(c->Must("PUT", "/v1/projects/" + a + "/quotas", R"({"servers":1000})").status, 403);
        EXPECT_EQ(c->Must("DELETE", "/v1/projects/" + a).status, 403);
        EXPECT_EQ(c->Must("GET", "/v1/flavors").status, 200);  // everyone reads the catalog
    }
    // No token, a wrong token.
    ApiClient anonymous(dev_->api_url(), "");
    EXPECT_EQ(anonymous.Must("GET", "/v1/servers").status, 401);
    ApiClient forged(dev_->api_url(), "cogs_0000");
    EXPECT_EQ(forged.Must("GET", "/v1/servers").status, 401);
    EXPECT_EQ(anonymous.Must("GET", "/healthz").status, 200);

    // A revoked token stops at once.
    ApiReply made =
        dev_->Admin().Must("POST", "/v1/tokens", R"({"project_id":")" + a + R"(","role":"member"})");
    ApiClient temp(dev_->api_url(), S(At(made.body, "token"), "secret"));
    EXPECT_EQ(temp.Must("GET", "/v1/servers").status, 200);
    EXPECT_EQ(dev_->Admin().Must("DELETE", "/v1/tokens/" + S(At(made.body, "token"), "id")).status, 204);
    EXPECT_EQ(temp.Must("GET", "/v1/servers").status, 401);

    ASSERT_EQ(owner.Must("DELETE", "/v1/servers/" + srv).status, 202);
    WaitGone(owner, "/v1/servers/" + srv);
}

TEST_F(CloudTest, BadInputNamesTheFieldAndWritesNothing) {
    auto [p, token] = NewProject("validation");
    ApiClient api(dev_->api_url(), token);
    auto field_of = [&](const std::string& path, const std::string& body) {
        ApiReply r = api.Must("POST", path, body);
        EXPECT_EQ(r.status, 400) << path << " " << body << " -> " << r.text;
        return S(At(r.body, "details"), "field");
    };
    EXPECT_EQ(field_of("/v1/networks", R"({"name":"n","typo":1})"), "typo");
    EXPECT_EQ(field_of("/v1/networks", R"({})"), "name");
    EXPECT_EQ(field_of("/v1/volumes", R"({"name":"v","size_gb":0})"), "size_gb");
    EXPECT_EQ(field_of("/v1/volumes", R"({"name":"v","size_gb":"ten"})"), "size_gb");
    EXPECT_EQ(field_of("/v1/servers", R"({"name":"s","flavor":"nope","image":"cirros","network_id":"x"})"),
              "flavor");
    EXPECT_EQ(field_of("/v1/servers", R"({"name":"s","flavor":"m1.tiny","image":"cirros","network_id":"x"})"),
              "network_id");
    EXPECT_EQ(field_of("/v1/networks", "not json"), "body");
    EXPECT_EQ(api.Must("GET", "/v1/servers?limit=0").status, 400);
    EXPECT_EQ(api.Must("GET", "/v1/servers?bogus=1").status, 400);
    EXPECT_EQ(api.Must("PATCH", "/v1/servers").status, 405);
    for (const std::string c : {"networks", "volumes", "servers"}) {
        ApiReply l = api.Must("GET", "/v1/" + c);
        EXPECT_EQ(At(l.body, c).as_array().size(), 0u) << c << ": " << l.text;
    }
    // Idempotency-Key: the same request twice makes one network; another body with it is 409.
    auto post = [&](const std::string& body) {
        auto r = api.Call("POST", "/v1/networks", body, {{"idempotency-key", "k-1"}});
        return r ? *r : ApiReply{};
    };
    ApiReply first = post(R"({"name":"idem"})");
    ApiReply again = post(R"({"name":"idem"})");
    EXPECT_EQ(first.status, 202);
    EXPECT_EQ(again.status, 202);
    EXPECT_EQ(S(At(first.body, "network"), "id"), S(At(again.body, "network"), "id"));
    EXPECT_EQ(post(R"({"name":"other"})").status, 409);
    EXPECT_EQ(At(api.Must("GET", "/v1/networks").body, "networks").as_array().size(), 1u);
}

// What cogsd's HTTP layer refuses before any route sees it answers in the API's error shape
// ({code, message, details}, docs/api.md), as every other refusal does; and nothing is written.
TEST_F(CloudTest, RequestsTooLargeForTheHttpLayerGetTheApiErrorShape) {
    auto [p, token] = NewProject("http-limits");
    ApiClient api(dev_->api_url(), token);
    auto expect_api_error = [](const ApiReply& r, int status, std::string_view what) {
        EXPECT_EQ(r.status, status) << what << ": " << r.text;
        ASSERT_TRUE(r.body.is_object()) << what << ": " << r.text;
        const auto& o = r.body.as_object();
        EXPECT_TRUE(o.contains("code") && o.at("code").is_string()) << what << ": " << r.text;
        EXPECT_TRUE(o.contains("message") && o.at("message").is_string()) << what << ": " << r.text;
        EXPECT_TRUE(o.contains("details") && o.at("details").is_object()) << what << ": " << r.text;
        EXPECT_FALSE(o.contains("retryable")) << what << ": the service protocol's shape, not the API's";
    };
    auto call = [&](const std::string& method, const std::string& target, const std::string& body,
                    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
        auto r = api.Call(method, target, body, headers);
        EXPECT_TRUE(r.has_value()) << target.substr(0, 40) << ": " << (r ? "" : r.error().message);
        return r ? *r : ApiReply{};
    };
    // 413: a body over --max-body-bytes (1 MiB).
    const std::string huge = R"({"name":")" + std::string((1 << 20) + 16, 'a') + R"("})";
    expect_api_error(call("POST", "/v1/networks", huge), 413, "body");
    // 414: a request target over 8 KiB.
    expect_api_error(call("GET", "/v1/networks?name=" + std::string(9000, 'b'), ""), 414, "target");
    // 431: header fields over 16 KiB.
    std::vector<std::pair<std::string, std::string>> headers;
    for (int i = 0; i < 20; ++i) {
        headers.emplace_back("x-filler-" + std::to_string(i), std::string(1000, 'c'));
    }
    expect_api_error(call("POST", "/v1/networks", R"({"name":"n"})", headers), 431, "headers");

    EXPECT_EQ(At(api.Must("GET", "/v1/networks").body, "networks").as_array().size(), 0u);
}

TEST_F(CloudTest, QuotasAreEnforcedAndReleased) {
    auto [p, token] = NewProject("quota");
    ASSERT_EQ(
        dev_->Admin().Must("PUT", "/v1/projects/" + p + "/quotas", R"({"servers":2,"volume_gb":3})").status,
        200);
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "q-net", "10.35.0.0/24");
    const std::string body = R"({"flavor":"m1.tiny","image":"cirros","network_id":")" + net + R"(","name":")";
    ApiReply a = api.Must("POST", "/v1/servers", body + R"(a"})");
    ApiReply b = api.Must("POST", "/v1/servers", body + R"(b"})");
    ApiReply c = api.Must("POST", "/v1/servers", body + R"(c"})");
    ASSERT_EQ(a.status, 202);
    ASSERT_EQ(b.status, 202);
    EXPECT_EQ(c.status, 403) << c.text;
    EXPECT_EQ(S(c.body, "code"), "quota_exceeded");
    EXPECT_EQ(S(At(c.body, "details"), "resource"), "servers") << c.text;
    EXPECT_EQ(At(At(c.body, "details"), "limit").to_number<int64_t>(), 2) << c.text;
    EXPECT_EQ(At(At(c.body, "details"), "requested").to_number<int64_t>(), 1) << c.text;
    EXPECT_EQ(api.Must("POST", "/v1/volumes", R"({"name":"big","size_gb":4})").status, 403);
    ApiReply v = api.Must("POST", "/v1/volumes", R"({"name":"ok","size_gb":3})");
    EXPECT_EQ(v.status, 202);
    ApiReply q = api.Must("GET", "/v1/projects/" + p + "/quotas");
    EXPECT_EQ(At(At(At(q.body, "quotas"), "servers"), "in_use").to_number<int64_t>(), 2) << q.text;
    EXPECT_EQ(At(At(At(q.body, "quotas"), "servers"), "limit").to_number<int64_t>(), 2) << q.text;
    // Deleting a server gives its share back.
    const std::string first = S(At(a.body, "server"), "id");
    WaitFor(api, "/v1/servers/" + first, "server", "ACTIVE");
    ASSERT_EQ(api.Must("DELETE", "/v1/servers/" + first).status, 202);
    WaitGone(api, "/v1/servers/" + first);
    EXPECT_EQ(api.Must("POST", "/v1/servers", body + R"(d"})").status, 202);
    // Lists paginate in id order.
    ApiReply page1 = api.Must("GET", "/v1/servers?limit=1");
    ASSERT_EQ(At(page1.body, "servers").as_array().size(), 1u);
    const std::string marker = S(page1.body, "next_marker");
    ASSERT_FALSE(marker.empty()) << page1.text;
    ApiReply page2 = api.Must("GET", "/v1/servers?limit=1&marker=" + marker);
    ASSERT_EQ(At(page2.body, "servers").as_array().size(), 1u);
    EXPECT_GT(S(At(page2.body, "servers").as_array().at(0), "id"), marker);
    EXPECT_EQ(S(page2.body, "next_marker"), "");
    // Leave the hosts empty for the tests after.
    ApiReply all = api.Must("GET", "/v1/servers");
    const json::value servers = At(all.body, "servers");
    for (const auto& srv : servers.as_array()) {
        WaitUntil(
            [&] {
                return S(At(api.Must("GET", "/v1/servers/" + S(srv, "id")).body, "server"), "status") !=
                       "BUILD";
            },
            std::chrono::seconds(30));
        EXPECT_EQ(api.Must("DELETE", "/v1/servers/" + S(srv, "id")).status, 202);
        WaitGone(api, "/v1/servers/" + S(srv, "id"));
    }
}

TEST_F(CloudTest, FailureMidCreateRollsBackEverythingInEveryService) {
    auto [p, token] = NewProject("rollback");
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "rb-net", "10.33.0.0/24");
    const std::string vol = Volume(api, "rb-vol");

    const int64_t servers_before = HostServers();
    // The volume service refuses attach_volumes for good: the last step fails after the port, the
    // address, the claim and the instance exist.
    ApiClient volume_svc = dev_->Service("volume");
    ASSERT_EQ(volume_svc.Must("PUT", "/v1/faults", R"({"fail_actions":["attach_volumes"]})").status, 200);
    ApiReply s = api.Must("POST", "/v1/servers",
                          R"({"name":"rb","flavor":"m1.tiny","image":"cirros","network_id":")" + net +
                              R"(","volume_ids":[")" + vol + R"("]})");
    ASSERT_EQ(s.status, 202) << s.text;
    const std::string id = S(At(s.body, "server"), "id");
    json::value server = WaitFor(api, "/v1/servers/" + id, "server", "ERROR");
    ASSERT_EQ(volume_svc.Must("PUT", "/v1/faults", "{}").status, 200);
    EXPECT_NE(S(At(server, "fault"), "message").find("attach_volumes"), std::string::npos)
        << json::serialize(server);

    EXPECT_TRUE(InstancesOf(id).empty()) << "an instance was left behind";
    json::value net_inv = Inventory("network");
    EXPECT_TRUE(Where(At(net_inv, "ports"), "device_id", id).empty()) << "a port was left behind";
    EXPECT_TRUE(Where(At(net_inv, "ports"), "id", S(server, "port_id")).empty());
    EXPECT_TRUE(Where(At(net_inv, "addresses"), "port_id", S(server, "port_id")).empty())
        << "an address leaked";
    auto vols = Where(At(Inventory("volume"), "volumes"), "id", vol);
    ASSERT_EQ(vols.size(), 1u);
    EXPECT_EQ(S(vols[0], "server_id"), "");
    EXPECT_EQ(S(WaitFor(api, "/v1/volumes/" + vol, "volume", "available"), "server_id"), "");
    EXPECT_EQ(HostServers(), servers_before) << "a host claim was left behind";
    ApiReply q = api.Must("GET", "/v1/projects/" + p + "/quotas");
    EXPECT_EQ(At(At(At(q.body, "quotas"), "vcpus"), "in_use").to_number<int64_t>(), 0) << q.text;
    EXPECT_EQ(api.Must("GET", "/v1/ports/" + S(server, "port_id")).status, 404);

    // The ERROR server goes on delete.
    ASSERT_EQ(api.Must("DELETE", "/v1/servers/" + id).status, 202);
    WaitGone(api, "/v1/servers/" + id);
}

TEST_F(CloudTest, ServerGroupsPlaceByPolicyAndDisabledHostsTakeNothing) {
    auto [p, token] = NewProject("groups");
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "g-net", "10.36.0.0/24");
    auto group = [&](const std::string& name, const std::string& policy) {
        ApiReply g = api.Must("POST", "/v1/server-groups",
                              R"({"name":")" + name + R"(","policy":")" + policy + R"("})");
        EXPECT_EQ(g.status, 201) << g.text;
        return S(At(g.body, "server_group"), "id");
    };
    auto create = [&](const std::string& name, const std::string& group_id) {
        ApiReply r =
            api.Must("POST", "/v1/servers",
                     R"({"name":")" + name + R"(","flavor":"m1.tiny","image":"cirros","network_id":")" + net +
                         (group_id.empty() ? R"("})" : R"(","server_group_id":")" + group_id + R"("})"));
        EXPECT_EQ(r.status, 202) << r.text;
        const std::string id = S(At(r.body, "server"), "id");
        json::value s;
        EXPECT_TRUE(WaitUntil(
            [&] {
                s = At(api.Must("GET", "/v1/servers/" + id).body, "server");
                return S(s, "status") == "ACTIVE" || S(s, "status") == "ERROR";
            },
            std::chrono::seconds(30)));
        return s;
    };
    std::vector<std::string> made;
    // Anti-affinity: one server per host, the fourth finds none and says why.
    const std::string anti = group("spread-out", "anti-affinity");
    std::set<std::string> hosts;
    for (int i = 0; i < 3; ++i) {
        json::value s = create("anti-" + std::to_string(i), anti);
        EXPECT_EQ(S(s, "status"), "ACTIVE");
        hosts.insert(S(s, "host"));
        made.push_back(S(s, "id"));
    }
    EXPECT_EQ(hosts.size(), 3u);
    json::value fourth = create("anti-3", anti);
    made.push_back(S(fourth, "id"));
    EXPECT_EQ(S(fourth, "status"), "ERROR");
    const std::string why = S(At(fourth, "fault"), "message");
    EXPECT_NE(why.find("no valid host"), std::string::npos) << why;
    EXPECT_NE(why.find("anti-affinity: 3 eliminated"), std::string::npos) << why;
    // Affinity: every member on the first member's host.
    const std::string together = group("together", "affinity");
    std::set<std::string> affinity_hosts;
    for (int i = 0; i < 3; ++i) {
        json::value s = create("aff-" + std::to_string(i), together);
        EXPECT_EQ(S(s, "status"), "ACTIVE");
        affinity_hosts.insert(S(s, "host"));
        made.push_back(S(s, "id"));
    }
    EXPECT_EQ(affinity_hosts.size(), 1u);
    // A disabled host gets no new server.
    ApiClient admin = dev_->Admin();
    ASSERT_EQ(admin.Must("POST", "/v1/hosts/host-1/disable", R"({"reason":"maintenance"})").status, 200);
    for (int i = 0; i < 4; ++i) {
        json::value s = create("dis-" + std::to_string(i), "");
        EXPECT_EQ(S(s, "status"), "ACTIVE");
        EXPECT_NE(S(s, "host"), "host-1");
        made.push_back(S(s, "id"));
    }
    ASSERT_EQ(admin.Must("POST", "/v1/hosts/host-1/enable", "{}").status, 200);
    DeleteServers(api, made);
}

TEST_F(CloudTest, ConcurrentCreateStormNeverOvercommitsOrDuplicatesAddresses) {
    auto [p, token] = NewProject("storm");
    ApiClient admin = dev_->Admin();
    ASSERT_EQ(admin
                  .Must("PUT", "/v1/projects/" + p + "/quotas",
                        R"({"servers":-1,"vcpus":-1,"ram_mb":-1,"ports":-1})")
                  .status,
              200);
    // A flavor that fills a host quickly: hosts have 16 vCPUs x 4.0 overcommit = 64 vCPUs.
    ApiReply f =
        admin.Must("POST", "/v1/flavors", R"({"name":"storm.big","vcpus":16,"ram_mb":1024,"disk_gb":1})");
    ASSERT_EQ(f.status, 201) << f.text;
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "storm-net", "10.34.0.0/22");

    // 3 hosts x 4 servers fit; ask for 20 at once from several threads.
    constexpr int kServers = 20;
    std::vector<std::string> ids(kServers);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            ApiClient c(dev_->api_url(), token);
            for (int i = t; i < kServers; i += 4) {
                ApiReply r =
                    c.Must("POST", "/v1/servers",
                           R"({"name":"s)" + std::to_string(i) +
                               R"(","flavor":"storm.big","image":"cirros","network_id":")" + net + R"("})");
                if (r.status == 202) ids[i] = S(At(r.body, "server"), "id");
            }
        });
    }
    for (auto& t : threads)
        t.join();
    int active = 0, error = 0;
    std::set<std::string> ips;
    for (const auto& id : ids) {
        ASSERT_FALSE(id.empty());
        json::value s;
        ASSERT_TRUE(WaitUntil(
            [&] {
                s = At(api.Must("GET", "/v1/servers/" + id).body, "server");
                return S(s, "status") == "ACTIVE" || S(s, "status") == "ERROR";
            },
            std::chrono::seconds(60)));
        if (S(s, "status") == "ACTIVE") {
            ++active;
            EXPECT_TRUE(ips.insert(S(s, "ip_address")).second) << "duplicate address " << S(s, "ip_address");
        } else {
            ++error;
            EXPECT_NE(S(At(s, "fault"), "message").find("no valid host"), std::string::npos)
                << json::serialize(s);
        }
    }
    EXPECT_EQ(active, 12);
    EXPECT_EQ(error, kServers - 12);
    // Every compute agent holds at most what its host can take.
    for (const auto& proc : dev_->processes()) {
        if (proc.name.find("compute") == std::string::npos) continue;
        ApiClient svc(proc.url, dev_->ServiceToken(proc.name));
        json::value inv = svc.Must("GET", "/v1/inventory").body;
        std::map<std::string, int64_t> vcpus;
        const json::value instances = At(inv, "instances");
        for (const auto& i : instances.as_array()) {
            vcpus[S(i, "host")] += At(i, "vcpus").to_number<int64_t>();
        }
        for (const auto& [h, used] : vcpus) {
            EXPECT_LE(used, 64) << h << " overcommitted";
        }
    }
    // Addresses in the network service's own ledger are unique, too.
    std::set<std::string> held;
    const json::value addresses = At(Inventory("network"), "addresses");
    for (const auto& a : addresses.as_array()) {
        EXPECT_TRUE(held.insert(S(a, "ip")).second) << "address held twice: " << S(a, "ip");
    }
    DeleteServers(api, ids);
}

// A bulk create (min_count/max_count) through the real services: each server of the one request
// gets its own port and address from cogs-network and its own workflow, and the network's ledger
// holds each address once.
TEST_F(CloudTest, ABulkCreateGivesEachServerItsOwnPortAndAddress) {
    auto [p, token] = NewProject("bulk");
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "bulk-net", "10.35.0.0/24");
    ApiReply r = api.Must("POST", "/v1/servers",
                          R"({"name":"bulk","flavor":"m1.tiny","image":"cirros","network_id":")" + net +
                              R"(","min_count":6,"max_count":8})");
    ASSERT_EQ(r.status, 202) << r.text;
    const std::string reservation = S(r.body, "reservation_id");
    const json::value servers = At(r.body, "servers");
    ASSERT_TRUE(servers.is_array()) << r.text;
    ASSERT_EQ(servers.as_array().size(), 8u) << r.text;
    std::vector<std::string> ids;
    std::set<std::string> ips, ports, workflows;
    for (const auto& item : servers.as_array()) {
        ids.push_back(S(item, "id"));
        workflows.insert(S(item, "workflow_id"));
        json::value s = WaitFor(api, "/v1/servers/" + S(item, "id"), "server", "ACTIVE");
        EXPECT_EQ(S(s, "reservation_id"), reservation);
        EXPECT_TRUE(S(s, "ip_address").starts_with("10.35.0.")) << S(s, "ip_address");
        ips.insert(S(s, "ip_address"));
        ports.insert(S(s, "port_id"));
    }
    EXPECT_EQ(ips.size(), 8u) << "an address each";
    EXPECT_EQ(ports.size(), 8u) << "a port each";
    EXPECT_EQ(workflows.size(), 8u) << "a workflow each";
    std::set<std::string> held;
    const json::value addresses = At(Inventory("network"), "addresses");
    for (const auto& a : addresses.as_array()) {
        EXPECT_TRUE(held.insert(S(a, "ip")).second) << "address held twice: " << S(a, "ip");
    }
    for (const auto& ip : ips) {
        EXPECT_TRUE(held.contains(ip)) << ip << " is not in cogs-network's ledger";
    }
    DeleteServers(api, ids);
}

// A resource's event history through the API: a server whose volume attach first fails retryably
// and then for good shows, in order, its creation, the steps done, the retry, the failure, the
// compensations, the rollback and its ERROR, all under the trace the request came with; another
// project sees none of it; the history outlives the server.
TEST_F(CloudTest, Events) {
    auto [p, token] = NewProject("events");
    ApiClient api(dev_->api_url(), token);
    const std::string net = Network(api, "ev-net", "10.34.0.0/24");
    const std::string vol = Volume(api, "ev-vol");

    // Every volume call fails retryably (503) until the engine has retried attach_volumes once.
    ApiClient volume_svc = dev_->Service("volume");
    ASSERT_EQ(volume_svc.Must("PUT", "/v1/faults", R"({"error_rate":1.0})").status, 200);
    const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    auto created = api.Call("POST", "/v1/servers",
                            R"({"name":"ev","flavor":"m1.tiny","image":"cirros","network_id":")" + net +
                                R"(","volume_ids":[")" + vol + R"("]})",
                            {{"traceparent", "00-" + trace_id + "-00f067aa0ba902b7-01"}});
    ASSERT_TRUE(created) << created.error().ToString();
    ASSERT_EQ(created->status, 202) << created->text;
    const std::string id = S(At(created->body, "server"), "id");
    const std::string wf = S(At(created->body, "server"), "workflow_id");
    const std::string events_path = "/v1/servers/" + id + "/events";

    auto types_of = [](const json::value& reply) {
        std::vector<std::string> types;
        const json::value events = At(reply, "events");
        if (events.is_array()) {
            for (const auto& e : events.as_array())
                types.push_back(S(e, "type"));
        }
        return types;
    };
    auto has = [](const std::vector<std::string>& types, const std::string& t) {
        return std::find(types.begin(), types.end(), t) != types.end();
    };
    const bool retried =
        WaitUntil([&] { return has(types_of(api.Must("GET", events_path).body), "step_retried"); },
                  std::chrono::seconds(30));
    // Then for good: the step fails and the workflow compensates what it made.
    ASSERT_EQ(volume_svc.Must("PUT", "/v1/faults", R"({"fail_actions":["attach_volumes"]})").status, 200);
    ASSERT_TRUE(retried) << api.Must("GET", events_path).text;
    WaitFor(api, "/v1/servers/" + id, "server", "ERROR");
    ASSERT_EQ(volume_svc.Must("PUT", "/v1/faults", "{}").status, 200);
    json::value history;
    ASSERT_TRUE(WaitUntil(
        [&] {
            history = api.Must("GET", events_path).body;
            return has(types_of(history), "error");
        },
        std::chrono::seconds(30)))
        << json::serialize(history);

    // Oldest first, in the order things happened.
    const std::vector<std::string> types = types_of(history);
    auto first = [&](const std::string& t) {
        return static_cast<size_t>(std::find(types.begin(), types.end(), t) - types.begin());
    };
    ASSERT_FALSE(types.empty());
    EXPECT_EQ(types.front(), "created");
    EXPECT_EQ(types.back(), "error");
    for (const char* t :
         {"step_succeeded", "step_retried", "step_failed", "step_compensated", "workflow_rolled_back"}) {
        EXPECT_TRUE(has(types, t)) << "no " << t << " in " << json::serialize(history);
    }
    EXPECT_LT(first("created"), first("step_succeeded"));
    EXPECT_LT(first("step_succeeded"), first("step_retried"));
    EXPECT_LT(first("step_retried"), first("step_failed"));
    EXPECT_LT(first("step_failed"), first("step_compensated"));
    EXPECT_LT(first("step_compensated"), first("workflow_rolled_back"));
    EXPECT_LT(first("workflow_rolled_back"), first("error"));
    int64_t last_seq = 0;
    const json::value history_events = At(history, "events");
    for (const auto& e : history_events.as_array()) {
        EXPECT_GT(At(e, "seq").to_number<int64_t>(), last_seq);
        last_seq = At(e, "seq").to_number<int64_t>();
        EXPECT_EQ(S(e, "resource_kind"), "server");
        EXPECT_EQ(S(e, "resource_id"), id);
        EXPECT_EQ(S(e, "project"), p);
        EXPECT_EQ(S(e, "workflow_id"), wf) << json::serialize(e);
        EXPECT_EQ(S(e, "trace_id"), trace_id) << json::serialize(e);
        EXPECT_FALSE(S(e, "message").empty());
        if (S(e, "type") == "step_retried" || S(e, "type") == "step_failed") {
            EXPECT_NE(S(e, "message").find("attach_volumes"), std::string::npos) << json::serialize(e);
        }
    }
    EXPECT_EQ(At(history, "next_after").to_number<int64_t>(), last_seq);
    // The workflow shows the trace and its resource.
    ApiReply w = api.Must("GET", "/v1/workflows/" + wf);
    EXPECT_EQ(S(At(w.body, "workflow"), "trace_id"), trace_id) << w.text;
    EXPECT_EQ(S(At(w.body, "workflow"), "resource_kind"), "server");
    EXPECT_EQ(S(At(w.body, "workflow"), "resource_id"), id);

    // Pages: after a seq, at most `limit`; the same events by workflow through /v1/events.
    const json::value all = At(history, "events");
    const int64_t second_seq = At(all.as_array().at(1), "seq").to_number<int64_t>();
    ApiReply page = api.Must("GET", events_path + "?after=" + std::to_string(second_seq) + "&limit=2");
    ASSERT_EQ(page.status, 200) << page.text;
    ASSERT_EQ(At(page.body, "events").as_array().size(), 2u) << page.text;
    EXPECT_EQ(At(At(page.body, "events").as_array()[0], "seq"), all.as_array().at(2).as_object().at("seq"));
    EXPECT_EQ(At(page.body, "next_after"), all.as_array().at(3).as_object().at("seq"));
    // By workflow: the server's events, and what the rollback did to the port and the volume.
    ApiReply by_wf = api.Must("GET", "/v1/events?workflow_id=" + wf + "&limit=1000");
    ASSERT_EQ(by_wf.status, 200) << by_wf.text;
    std::vector<std::string> server_types;
    std::set<std::string> others;
    const json::value wf_events = At(by_wf.body, "events");
    for (const auto& e : wf_events.as_array()) {
        if (S(e, "resource_id") == id) {
            server_types.push_back(S(e, "type"));
        } else {
            others.insert(S(e, "resource_kind") + " " + S(e, "resource_id") + " " + S(e, "type"));
        }
    }
    EXPECT_EQ(server_types, types);
    EXPECT_EQ(others, (std::set<std::string>{"port " + S(At(created->body, "server"), "port_id") + " deleted",
                                             "volume " + vol + " available"}))
        << by_wf.text;
    EXPECT_EQ(api.Must("GET", events_path + "?limit=0").status, 400);
    EXPECT_EQ(api.Must("GET", events_path + "?colour=red").status, 400);

    // Tenancy: another project finds nothing; an admin finds it all.
    auto [other, other_token] = NewProject("events-other");
    ApiClient stranger(dev_->api_url(), other_token);
    EXPECT_EQ(stranger.Must("GET", events_path).status, 404);
    ApiReply peek = stranger.Must("GET", "/v1/events?resource_id=" + id);
    ASSERT_EQ(peek.status, 200) << peek.text;
    EXPECT_TRUE(At(peek.body, "events").as_array().empty()) << peek.text;
    EXPECT_TRUE(At(stranger.Must("GET", "/v1/events?workflow_id=" + wf).body, "events").as_array().empty());
    EXPECT_EQ(types_of(dev_->Admin().Must("GET", "/v1/events?resource_kind=server&resource_id=" + id).body),
              types);

    // The history outlives the server.
    ASSERT_EQ(api.Must("DELETE", "/v1/servers/" + id).status, 202);
    WaitGone(api, "/v1/servers/" + id);
    std::vector<std::string> after_delete;
    EXPECT_TRUE(WaitUntil(
        [&] {
            ApiReply r = api.Must("GET", events_path);
            after_delete = types_of(r.body);
            return r.status == 200 && !after_delete.empty() && after_delete.back() == "deleted";
        },
        std::chrono::seconds(30)));
    ASSERT_GT(after_delete.size(), types.size());
    EXPECT_TRUE(std::equal(types.begin(), types.end(), after_delete.begin()));
    EXPECT_TRUE(has(after_delete, "delete_requested"));
    EXPECT_EQ(stranger.Must("GET", events_path).status, 404);
    EXPECT_EQ(api.Must("GET", "/v1/servers/00000000-0000-0000-0000-000000000000/events").status, 404);
}

}  // namespace
}  // namespace cogs::testing
