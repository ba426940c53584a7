// Extensions from configuration, end to end (docs/extending.md): the example DNS service (Python,
// examples/dns) added to a running `cogs dev` by dropping files into its configuration directory
// and reloading. Every assertion is what an operator would check: the DNS service's own inventory
// and ledger, cogs-network's ports, the agents' instances, the hosts' usage, the API's answers.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

#ifndef COGS_SOURCE_DIR
#error "COGS_SOURCE_DIR must be defined"
#endif

namespace cogs::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
}

// The example's files (examples/dns/config), as an operator copies them into the configuration
// directory; only the service's url is the test's.
std::string Example(const std::string& relative) {
    auto text = runtime::ReadFile(std::string(COGS_SOURCE_DIR) + "/examples/dns/config/" + relative);
    EXPECT_TRUE(text) << relative;
    return text ? *text : "";
}

class ExtendTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto dev = DevCloud::Start(DevOptions{2, 20, {}});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
        config_ = fs::path(dev_->data_dir()) / "config";
        for (const char* sub : {"services.d", "workflows.d", "hooks.d", "kinds.d"}) {
            ASSERT_TRUE(fs::is_directory(config_ / sub)) << "cogs dev made no config/" << sub;
        }

        // The DNS service, started as an operator would, with its own credential.
        const fs::path dns_dir = fs::path(dev_->data_dir()) / "dns";
        fs::create_directories(dns_dir);
        dns_token_ = "dns-secret-for-the-test";
        ASSERT_TRUE(runtime::WriteFileAtomic((dns_dir / "token").string(), dns_token_ + "\n", 0600));
        auto child = runtime::Child::Spawn(
            {"/usr/bin/python3", std::string(COGS_SOURCE_DIR) + "/examples/dns/cogs_dns.py", "--listen",
             "127.0.0.1:0", "--port-file", (dns_dir / "port").string(), "--token-file",
             (dns_dir / "token").string(), "--state", (dns_dir / "dns.db").string(), "--test-routes"},
            runtime::SpawnOptions{(dns_dir / "dns.log").string()});
        ASSERT_TRUE(child) << child.error().ToString();
        dns_ = std::move(*child);
        std::string port;
        ASSERT_TRUE(WaitUntil(
            [&] {
                auto p = runtime::ReadFile((dns_dir / "port").string());
                if (p) port = *p;
                return p.has_value();
            },
            20s))
            << "the DNS service did not start: " << runtime::TailFile((dns_dir / "dns.log").string(), 20);
        while (!port.empty() && (port.back() == '\n'))
            port.pop_back();
        dns_url_ = "http://127.0.0.1:" + port;

        ApiClient admin = dev_->Admin();
        ApiReply n = admin.Must("POST", "/v1/networks", R"({"name":"ext"})");
        ASSERT_EQ(n.status, 202) << n.text;
        network_ = S(At(n.body, "network"), "id");
        ASSERT_TRUE(WaitStatus("/v1/networks/" + network_, "network", "ACTIVE"));
        ApiReply s = admin.Must("POST", "/v1/subnets",
                                R"({"network_id":")" + network_ + R"(","cidr":"10.70.0.0/24","name":"ext"})");
        ASSERT_EQ(s.status, 202) << s.text;
        ASSERT_TRUE(WaitStatus("/v1/subnets/" + S(At(s.body, "subnet"), "id"), "subnet", "ACTIVE"));
    }

    void TearDown() override {
        if (dev_ != nullptr && HasFailure()) {
            std::cerr << "cogs dev data dir: " << dev_->data_dir() << "\n"
                      << runtime::TailFile(dev_->data_dir() + "/logs/cogsd.log", 30);
        }
        dev_.reset();
        if (dns_.Running()) dns_.Stop(5s);
    }

    // Drops the example's catalog entry (with this test's url) and hooks into the configuration
    // directory.
    void DropFiles() {
        Write(config_ / "services.d" / "dns.token", dns_token_ + "\n");
        std::string entry = Example("services.d/dns.yaml");
        const std::string url = "http://127.0.0.1:8790";
        ASSERT_NE(entry.find(url), std::string::npos);
        entry.replace(entry.find(url), url.size(), dns_url_);
        Write(config_ / "services.d" / "dns.yaml", entry);
        Write(config_ / "hooks.d" / "dns.yaml", Example("hooks.d/dns.yaml"));
    }

    ApiReply Reload() { return dev_->Admin().Must("POST", "/v1/extensions/reload", "{}"); }

    bool WaitStatus(const std::string& path, std::string_view key, const std::string& want,
                    Duration timeout = 60s) {
        ApiClient admin = dev_->Admin();
        return WaitUntil([&] { return S(At(admin.Must("GET", path).body, key), "status") == want; }, timeout);
    }

    std::string StartServer(const std::string& name) {
        ApiReply r = dev_->Admin().Must("POST", "/v1/servers",
                                        R"({"name":")" + name +
                                            R"(","flavor":"m1.tiny","image":"cirros","network_id":")" +
                                            network_ + R"("})");
        EXPECT_EQ(r.status, 202) << r.text;
        return S(At(r.body, "server"), "id");
    }
    json::value Server(const std::string& id) {
        return At(dev_->Admin().Must("GET", "/v1/servers/" + id).body, "server");
    }

    ApiClient Dns() const { return ApiClient(dns_url_, dns_token_); }
    // The DNS service's records of `server_id`, from its own inventory.
    std::vector<json::value> Records(const std::string& server_id) {
        std::vector<json::value> out;
        ApiReply inv = Dns().Must("GET", "/v1/inventory");
        EXPECT_EQ(inv.status, 200) << inv.text;
        const json::value list = At(inv.body, "records");
        if (!list.is_array()) return out;
        for (const auto& r : list.as_array()) {
            if (S(r, "server_id") == server_id) out.push_back(r);
        }
        return out;
    }
    // Its ledger entries for `key`.
    std::vector<json::value> Ledger(const std::string& key) {
        std::vector<json::value> out;
        ApiReply l = Dns().Must("GET", "/v1/ledger");
        EXPECT_EQ(l.status, 200) << l.text;
        if (!l.body.is_array()) return out;
        for (const auto& e : l.body.as_array()) {
            if (S(e, "key") == key) out.push_back(e);
        }
        return out;
    }

    // Where anything of server `id` is left: its port in cogs-network, its instance on an agent,
    // a claim on a host, a DNS record. Empty: nothing.
    std::vector<std::string> Leftovers(const std::string& id, const std::string& port_id) {
        std::vector<std::string> left;
        ApiReply net = dev_->Service("network").Must("GET", "/v1/inventory");
        EXPECT_EQ(net.status, 200) << net.text;
        const json::value ports = At(net.body, "ports");
        for (const auto& p : ports.as_array()) {
            if (S(p, "id") == port_id || S(p, "device_id") == id) left.push_back("port " + S(p, "id"));
        }
        for (const DevProcess& proc : dev_->processes()) {
            if (proc.name.find("compute") == std::string::npos) continue;
            ApiReply inv = dev_->Service(proc.name).Must("GET", "/v1/inventory");
            EXPECT_EQ(inv.status, 200) << proc.name << ": " << inv.text;
            const json::value instances = At(inv.body, "instances");
            for (const auto& i : instances.as_array()) {
                if (S(i, "id") == id) left.push_back("instance on " + proc.name);
            }
        }
        const json::value hosts = At(dev_->Admin().Must("GET", "/v1/hosts").body, "hosts");
        for (const auto& h : hosts.as_array()) {
            if (I(At(h, "used"), "vcpus") != 0) left.push_back("claim on " + S(h, "name"));
        }
        if (!Records(id).empty()) left.push_back("dns record");
        return left;
    }

    std::unique_ptr<DevCloud> dev_;
    fs::path config_;
    runtime::Child dns_;
    std::string dns_url_, dns_token_, network_;
};

TEST_F(ExtendTest, ServersGetADnsRecordOnceTheFilesAreDroppedInAndReloaded) {
    // Before: no hook, a server gets no record.
    const std::string before = StartServer("before");
    ASSERT_TRUE(WaitStatus("/v1/servers/" + before, "server", "ACTIVE"));
    EXPECT_TRUE(Records(before).empty());

    DropFiles();
    ApiReply r = Reload();
    ASSERT_EQ(r.status, 200) << r.text;
    ASSERT_EQ(At(r.body, "services").as_array().size(), 1u) << r.text;
    EXPECT_EQ(S(At(r.body, "services").as_array()[0], "name"), "dns");
    EXPECT_EQ(r.text.find(dns_token_), std::string::npos) << "the token is shown";
    EXPECT_EQ(At(r.body, "hooks").as_array().size(), 2u);

    const std::string id = StartServer("web-1");
    ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE")) << json::serialize(Server(id));
    const json::value server = Server(id);
    std::vector<json::value> records = Records(id);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(S(records[0], "fqdn"), "web-1.cogs.internal");
    EXPECT_EQ(S(records[0], "address"), S(server, "ip_address"));
    // Its workflow ran the hook as a step of its own, with the engine's key.
    const std::string wf = S(server, "workflow_id");
    EXPECT_EQ(Ledger(wf + "/dns_register/do").size(), 1u);
    ApiReply steps = dev_->Admin().Must("GET", "/v1/workflows/" + wf);
    EXPECT_NE(steps.text.find("dns_register"), std::string::npos) << steps.text;

    ApiReply del = dev_->Admin().Must("DELETE", "/v1/servers/" + id);
    ASSERT_EQ(del.status, 202) << del.text;
    ASSERT_TRUE(WaitUntil([&] { return dev_->Admin().Must("GET", "/v1/servers/" + id).status == 404; }, 60s));
    EXPECT_TRUE(Records(id).empty()) << "the deleted server kept its record";
}

TEST_F(ExtendTest, ARefusedReloadNamesTheFileAndLineAndChangesNothing) {
    DropFiles();
    Write(config_ / "hooks.d" / "typo.yaml",
          "{workflow: server.create, after: boot, name: cmdb, action: dns.regster}\n");
    ApiReply r = Reload();
    EXPECT_EQ(r.status, 400) << r.text;
    EXPECT_NE(r.text.find("typo.yaml:1"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("has no action 'regster'"), std::string::npos) << r.text;
    ApiReply shown = dev_->Admin().Must("GET", "/v1/extensions");
    ASSERT_EQ(shown.status, 200) << shown.text;
    EXPECT_TRUE(At(shown.body, "services").as_array().empty()) << shown.text;
    // A server made meanwhile runs the shipped workflow.
    const std::string id = StartServer("plain");
    ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE"));
    EXPECT_TRUE(Records(id).empty());
    // A member may not reload.
    ApiReply p = dev_->Admin().Must("POST", "/v1/projects", R"({"name":"tenant"})");
    ASSERT_EQ(p.status, 201) << p.text;
    ApiReply t =
        dev_->Admin().Must("POST", "/v1/tokens",
                           R"({"project_id":")" + S(At(p.body, "project"), "id") + R"(","role":"member"})");
    ASSERT_EQ(t.status, 201) << t.text;
    ApiClient member(dev_->api_url(), S(At(t.body, "token"), "secret"));
    EXPECT_EQ(member.Must("POST", "/v1/extensions/reload", "{}").status, 403);
    EXPECT_EQ(member.Must("GET", "/v1/extensions").status, 403);
}

TEST_F(ExtendTest, AHookThatFailsForGoodRollsTheWholeCreateBack) {
    DropFiles();
    ASSERT_EQ(Reload().status, 200);
    ApiReply f = Dns().Must("PUT", "/v1/faults", R"({"fail_actions":["register"]})");
    ASSERT_EQ(f.status, 200) << f.text;
    const std::string id = StartServer("doomed");
    ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ERROR")) << json::serialize(Server(id));
    const json::value server = Server(id);
    EXPECT_NE(json::serialize(server).find("dns"), std::string::npos) << "the fault does not name the hook";
    std::vector<std::string> left;
    EXPECT_TRUE(WaitUntil(
        [&] {
            left = Leftovers(id, S(server, "port_id"));
            return left.empty();
        },
        30s))
        << "left behind: " << left.size() << " " << (left.empty() ? "" : left.front());
}

TEST_F(ExtendTest, CogsdKilledInTheMiddleOfAHookResumesItWithTheSameKey) {
    DropFiles();
    ASSERT_EQ(Reload().status, 200);
    // The register is a long action: accepted at once, done 4 s later; cogsd polls it meanwhile.
    ApiReply f =
        Dns().Must("PUT", "/v1/faults", R"({"long_actions":["register"],"accept_duration_ms":4000})");
    ASSERT_EQ(f.status, 200) << f.text;
    const std::string id = StartServer("survivor");
    std::string wf;
    ASSERT_TRUE(WaitUntil(
        [&] {
            wf = S(Server(id), "workflow_id");
            return !wf.empty() && !Ledger(wf + "/dns_register/do").empty();
        },
        60s))
        << "the hook never reached the DNS service";
    DevProcess cogsd;
    for (const DevProcess& p : dev_->processes()) {
        if (p.name == "cogsd") cogsd = p;
    }
    ASSERT_GT(cogsd.pid, 0);
    ASSERT_EQ(::kill(cogsd.pid, SIGKILL), 0);
    ASSERT_TRUE(WaitUntil(
        [&] {
            if (!dev_->Reload()) return false;
            for (const DevProcess& p : dev_->processes()) {
                if (p.name == "cogsd" && p.pid != cogsd.pid && p.pid > 0) return true;
            }
            return false;
        },
        30s))
        << "cogs dev did not restart cogsd";
    // The restarted cogsd loads the same configuration and resumes the workflow where it was.
    ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE", 90s)) << json::serialize(Server(id));
    EXPECT_EQ(Ledger(wf + "/dns_register/do").size(), 1u) << "the hook was applied under another key";
    EXPECT_EQ(Records(id).size(), 1u);
}

// The kind an operator declares (kinds.d) with the workflows that are its controllers (workflows.d),
// on the same DNS service: dns_zones through the API and the CLI, as a tenant uses them.
TEST_F(ExtendTest, ACustomKindIsServedThroughTheApiAndTheCli) {
    DropFiles();
    Write(config_ / "workflows.d" / "dns_zones.yaml", Example("workflows.d/dns_zones.yaml"));
    Write(config_ / "kinds.d" / "dns_zones.yaml", Example("kinds.d/dns_zones.yaml"));
    ApiReply r = Reload();
    ASSERT_EQ(r.status, 200) << r.text;
    ASSERT_EQ(At(r.body, "kinds").as_array().size(), 1u) << r.text;

    ApiClient admin = dev_->Admin();
    const auto member_of = [&](const std::string& name) {
        ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":")" + name + R"("})");
        EXPECT_EQ(p.status, 201) << p.text;
        ApiReply t =
            admin.Must("POST", "/v1/tokens",
                       R"({"project_id":")" + S(At(p.body, "project"), "id") + R"(","role":"member"})");
        EXPECT_EQ(t.status, 201) << t.text;
        return S(At(t.body, "token"), "secret");
    };
    const std::string alice = member_of("alice");
    const std::string bob = member_of("bob");
    const auto cogs = [&](const std::string& token, const std::string& args) {
        return Shell("COGS_URL=" + dev_->api_url() + " COGS_TOKEN=" + token +
                     " COGS_CACERT=" + dev_->ca_file() + " timeout 120 " + runtime::SiblingBinary("cogs") +
                     " " + args + " 2>&1");
    };

    // Created through the CLI from a YAML file, to ACTIVE; the zone is in the DNS service.
    const std::string file = dev_->data_dir() + "/zone.yaml";
    Write(file, "name: example.org\nttl: 300\n");
    auto [created, out] = cogs(alice, "create dns_zones -f " + file + " --wait -o json");
    ASSERT_EQ(created, 0) << out;
    const std::string json_text = out.substr(out.find('{'));
    const json::value zone = At(json::parse(json_text), "dns_zone");
    const std::string id = S(zone, "id");
    EXPECT_EQ(S(zone, "status"), "ACTIVE") << out;
    EXPECT_EQ(I(zone, "ttl"), 300);
    ApiReply inv = Dns().Must("GET", "/v1/inventory");
    EXPECT_NE(inv.text.find(id), std::string::npos) << inv.text;

    // Listed through the CLI and the API, for its project only.
    auto [listed, table] = cogs(alice, "get dns_zones");
    EXPECT_EQ(listed, 0) << table;
    EXPECT_NE(table.find(id), std::string::npos) << table;
    EXPECT_NE(table.find("ACTIVE"), std::string::npos) << table;
    ApiClient as_bob(dev_->api_url(), bob);
    EXPECT_TRUE(At(as_bob.Must("GET", "/v1/dns_zones").body, "dns_zones").as_array().empty());
    EXPECT_EQ(as_bob.Must("GET", "/v1/dns_zones/" + id).status, 404);
    auto [bob_shows, bob_out] = cogs(bob, "get dns_zones " + id);
    EXPECT_EQ(bob_shows, 1) << bob_out;
    EXPECT_NE(bob_out.find("not found"), std::string::npos) << bob_out;

    // Bad input is refused naming the field, and nothing is made.
    ApiClient as_alice(dev_->api_url(), alice);
    ApiReply bad = as_alice.Must("POST", "/v1/dns_zones", R"({"name":"b.org","ttl":5})");
    EXPECT_EQ(bad.status, 400) << bad.text;
    EXPECT_NE(bad.text.find("ttl"), std::string::npos) << bad.text;
    Write(file, "name: c.org\ncolour: red\n");
    auto [refused, refused_out] = cogs(alice, "create dns_zones -f " + file);
    EXPECT_EQ(refused, 1) << refused_out;
    EXPECT_NE(refused_out.find("colour: unknown field"), std::string::npos) << refused_out;
    EXPECT_EQ(At(as_alice.Must("GET", "/v1/dns_zones").body, "dns_zones").as_array().size(), 1u);

    // Deleted through the CLI: gone from cogs and from the DNS service.
    auto [deleted, deleted_out] = cogs(alice, "delete dns_zones " + id + " --wait");
    EXPECT_EQ(deleted, 0) << deleted_out;
    EXPECT_EQ(as_alice.Must("GET", "/v1/dns_zones/" + id).status, 404);
    inv = Dns().Must("GET", "/v1/inventory");
    EXPECT_EQ(inv.text.find(id), std::string::npos) << inv.text;
}

}  // namespace
}  // namespace cogs::testing
