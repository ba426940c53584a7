// The configuration directory (extensions.h) and its application to a catalog, an engine and a
// registry (host.h).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <fstream>

#include "cogs/extend/extensions.h"
#include "cogs/extend/host.h"
#include "cogs/store/store.h"
#include "test/support/temp_dir.h"

namespace cogs::extend {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
}

class NoCalls final : public workflow::ServiceClient {
public:
    void Invoke(workflow::ActionCall, Callback) override { ADD_FAILURE() << "no call expected"; }
    void Status(workflow::ActionCall, Callback) override { ADD_FAILURE() << "no call expected"; }
};

constexpr char kDnsService[] = R"(service: dns
url: http://127.0.0.1:8790
token_file: dns.token
actions: [register, unregister]
timeout: 3s
max_inflight: 8
breaker: {failures: 3, open_for: 500ms}
)";

constexpr char kDnsHook[] = R"(hooks:
  - workflow: server.create
    after: boot
    name: dns_register
    action: dns.register
    input: {server_id: "${input.server_id}"}
    compensation: {action: dns.unregister, input: {server_id: "${input.server_id}"}}
)";

std::string Message(const Result<std::vector<ServiceEntry>>& r) { return r ? "accepted" : r.error().message; }

TEST(ServicesFileTest, AServiceIsReadWithItsCredentialAndLimits) {
    cogs::testing::TempDir dir;
    Write(fs::path(dir.path()) / "dns.token", "s3cret\n");
    auto entries = LoadServicesFromString(kDnsService, "dns.yaml", fs::path(dir.path()).string());
    ASSERT_TRUE(entries.has_value()) << entries.error().message;
    ASSERT_EQ(entries->size(), 1u);
    const ServiceEntry& e = (*entries)[0];
    EXPECT_EQ(e.name, "dns");
    EXPECT_EQ(e.endpoint.port, 8790);
    EXPECT_EQ(e.token, "s3cret");
    EXPECT_EQ(e.token_file, (fs::path(dir.path()) / "dns.token").string());
    EXPECT_EQ(e.actions, (std::vector<std::string>{"register", "unregister"}));
    EXPECT_EQ(e.timeout, std::chrono::seconds(3));
    EXPECT_EQ(e.max_inflight, 8);
    EXPECT_EQ(e.breaker.failure_threshold, 3);
    EXPECT_EQ(e.breaker.open_for, std::chrono::milliseconds(500));
    EXPECT_EQ(e.origin, "dns.yaml:1");
}

TEST(ServicesFileTest, ABadEntryIsRefusedNamingTheLine) {
    cogs::testing::TempDir dir;
    Write(fs::path(dir.path()) / "t", "tok\n");
    const std::string base = fs::path(dir.path()).string();
    const auto load = [&](const std::string& text) {
        return Message(LoadServicesFromString(text, "s.yaml", base));
    };
    EXPECT_EQ(
        load("service: dns\nurl: http://h:1\ntoken_file: t\nactions: [a]\nretries: 3\n"),
        "s.yaml:5: unknown field 'retries' in service 'dns' (known: service, url, token_file, insecure, "
        "actions, timeout, max_inflight, max_connections, breaker)");
    EXPECT_EQ(load("service: dns\nurl: ftp://h:1\ntoken_file: t\nactions: [a]\n"),
              "s.yaml:2: service 'dns': 'url' must be http://HOST:PORT or https://HOST:PORT");
    EXPECT_EQ(
        load("service: dns\nurl: http://h:1\nactions: [a]\n"),
        "s.yaml:1: service 'dns' has no 'token_file' (the credential cogsd presents; 'insecure: true' for "
        "development only)");
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ntoken_file: missing\nactions: [a]\n").substr(0, 45),
              "s.yaml:3: service 'dns': 'token_file': " + base.substr(0, 6));
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ntoken_file: t\nactions: [a, a]\n"),
              "s.yaml:4: service 'dns': action 'a' listed twice");
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ntoken_file: t\nactions: []\n"),
              "s.yaml:4: service 'dns': 'actions' must list the service's actions");
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ntoken_file: t\nactions: [a]\ntimeout: soon\n"),
              "s.yaml:5: service 'dns': 'timeout' must be a duration above 0 (e.g. 250ms, 2s, 5m)");
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ntoken_file: t\nactions: [a]\nmax_inflight: 0\n"),
              "s.yaml:5: service 'dns': 'max_inflight' must be an integer from 1 to 100000");
    EXPECT_EQ(load("service: DNS\nurl: http://h:1\ntoken_file: t\nactions: [a]\n"),
              "s.yaml:1: service 'DNS': the name must be 1-63 of a-z, 0-9, '_', '-'");
    EXPECT_EQ(load("service: dns\nurl: http://h:1\ninsecure: true\nactions: [a]\n"), "accepted");
    // The text yaml-cpp 0.7 would loop forever on is refused (workflow::YamlReader).
    EXPECT_EQ(load(",\n"), "s.yaml:1: unexpected text where a document or a value should start");
    EXPECT_EQ(load("services:\n  - {service: a, url: 'http://h:1', token_file: t, actions: [x]}\n"
                   "  - {service: b, url: 'http://h:2', token_file: t, actions: [y]}\n"),
              "accepted");
}

TEST(ExtensionsDirTest, TheThreeDirectoriesLoadAndAServiceDefinedTwiceIsRefused) {
    cogs::testing::TempDir dir;
    Write(fs::path(dir.path()) / "services.d" / "dns.token", "tok\n");
    Write(fs::path(dir.path()) / "services.d" / "dns.yaml", kDnsService);
    Write(fs::path(dir.path()) / "hooks.d" / "dns.yaml", kDnsHook);
    Write(fs::path(dir.path()) / "workflows.d" / "zones.yaml",
          "workflows:\n  - type: dns_zone.create\n    steps:\n      - {name: create, action: "
          "dns.create_zone}\n");
    auto ext = LoadExtensions(fs::path(dir.path()).string());
    ASSERT_TRUE(ext.has_value()) << ext.error().message;
    EXPECT_EQ(ext->services.size(), 1u);
    EXPECT_EQ(ext->hooks.size(), 1u);
    ASSERT_EQ(ext->workflows.size(), 1u);
    EXPECT_EQ(ext->workflows[0].type, "dns_zone.create");

    Write(fs::path(dir.path()) / "services.d" / "more.yaml", kDnsService);
    ext = LoadExtensions(fs::path(dir.path()).string());
    ASSERT_FALSE(ext.has_value());
    EXPECT_EQ(ext.error().message, (fs::path(dir.path()) / "services.d" / "more.yaml").string() +
                                       ":1: service 'dns' is defined twice (also at " +
                                       (fs::path(dir.path()) / "services.d" / "dns.yaml").string() + ":1)");
    // An empty or missing directory holds nothing.
    auto none = LoadExtensions((fs::path(dir.path()) / "nothing").string());
    ASSERT_TRUE(none.has_value());
    EXPECT_TRUE(none->services.empty() && none->hooks.empty() && none->workflows.empty());
}

TEST(KindsFileTest, AKindIsReadWithItsFieldRules) {
    auto kinds = LoadKindsFromString(R"(kind: dns_zone
plural: dns_zones
quota: 10
create: dns_zone.create
delete: dns_zone.delete
fields:
  name: {type: string, required: true, max_length: 253}
  ttl: {type: integer, minimum: 60, maximum: 86400, default: 3600}
  mode: {type: string, enum: [primary, secondary], default: primary}
  tags: {type: strings, max_items: 4, max_length: 32}
  dnssec: {type: boolean, default: false}
)",
                                     "zones.yaml");
    ASSERT_TRUE(kinds.has_value()) << kinds.error().message;
    ASSERT_EQ(kinds->size(), 1u);
    const cloud::KindSpec& k = (*kinds)[0];
    EXPECT_EQ(k.kind, "dns_zone");
    EXPECT_EQ(k.plural, "dns_zones");
    EXPECT_EQ(k.quota, 10);
    EXPECT_EQ(k.origin, "zones.yaml:1");
    ASSERT_EQ(k.fields.size(), 5u);
    EXPECT_TRUE(k.fields[0].required);
    EXPECT_EQ(k.fields[0].max_length, 253);
    EXPECT_EQ(k.fields[1].type, cloud::FieldSpec::Type::kInteger);
    EXPECT_EQ(k.fields[1].minimum, 60);
    EXPECT_EQ(k.fields[1].default_value->as_int64(), 3600);
    EXPECT_EQ(k.fields[2].one_of, (std::vector<std::string>{"primary", "secondary"}));
    EXPECT_EQ(k.fields[3].type, cloud::FieldSpec::Type::kStrings);
    EXPECT_EQ(k.fields[4].default_value->as_bool(), false);
}

TEST(KindsFileTest, ABadKindIsRefusedNamingTheLine) {
    const auto load = [](const std::string& fields) {
        auto k =
            LoadKindsFromString("kind: z\nplural: zs\ncreate: c\ndelete: d\nfields:\n" + fields, "k.yaml");
        return k ? std::string("accepted") : k.error().message;
    };
    EXPECT_EQ(load("  name: {type: text}\n"),
              "k.yaml:6: kind 'z' field 'name': unknown type 'text' (string, integer, boolean, strings)");
    EXPECT_EQ(load("  id: {type: string}\n").substr(0, 34), "k.yaml:6: kind 'z' field 'id': the");
    EXPECT_EQ(load("  ttl: {type: integer, minimum: 60, default: 5}\n"),
              "k.yaml:6: kind 'z' field 'ttl': 'default' breaks the field's own rules");
    EXPECT_EQ(load("  n: {type: string, minimum: 1}\n"),
              "k.yaml:6: kind 'z' field 'n': 'minimum' does not apply to a string");
    EXPECT_EQ(load("  n: {type: string, required: true, default: x}\n"),
              "k.yaml:6: kind 'z' field 'n': a required field has no default");
    EXPECT_EQ(load("  n: {type: string}\n"), "accepted");
    auto missing =
        LoadKindsFromString("kind: z\nplural: zs\ndelete: d\nfields: {n: {type: string}}\n", "k.yaml");
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().message, "k.yaml:1: kind 'z' has no 'create'");
}

// A control plane's leader, as cogsd builds it, around an ExtensionHost.
class HostTest : public ::testing::Test {
protected:
    void SetUp() override {
        Write(shipped_ / "servers.yaml", R"(workflows:
  - type: server.create
    steps:
      - {name: boot, action: compute.create_instance}
      - {name: attach, action: compute.attach_volumes, depends_on: [boot]}
)");
        store::SqliteOptions so;
        so.path = fs::path(dir_.path()) / "cogs.db";
        auto st = store::OpenSqliteStore(so);
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        registry_ = std::make_unique<workflow::Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        workflow::EngineOptions eo;
        eo.lease_ttl_ms = 60000;
        engine_ = std::make_unique<workflow::Engine>(io_, *store_, *registry_, catalog_, eo);
        catalog_.Add("compute", std::make_shared<NoCalls>(), {"create_instance", "attach_volumes"});
        host_ = std::make_unique<ExtensionHost>(
            io_, HostOptions{shipped_.string(), config_.string(), nullptr}, catalog_, *engine_, *registry_);
        Write(config_ / "services.d" / "dns.token", "tok\n");
    }
    void TearDown() override {
        host_.reset();
        engine_->Shutdown();
        store_->Flush();
        engine_.reset();
    }

    int Version() const { return registry_->Latest("server.create")->version; }
    std::vector<std::string> Steps() const {
        std::vector<std::string> names;
        for (const auto& s : registry_->Latest("server.create")->steps)
            names.push_back(s.name);
        return names;
    }

    cogs::testing::TempDir dir_;
    fs::path shipped_ = fs::path(dir_.path()) / "shipped";
    fs::path config_ = fs::path(dir_.path()) / "config";
    boost::asio::io_context io_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    workflow::ServiceCatalog catalog_;
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<ExtensionHost> host_;
};

TEST_F(HostTest, AServiceAndItsHookAreAppliedAndTakenAwayAgain) {
    {
        auto r = host_->Reload();
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    EXPECT_EQ(Version(), 1);
    EXPECT_EQ(Steps(), (std::vector<std::string>{"boot", "attach"}));
    EXPECT_EQ(catalog_.Find("dns"), nullptr);

    Write(config_ / "services.d" / "dns.yaml", kDnsService);
    Write(config_ / "hooks.d" / "dns.yaml", kDnsHook);
    auto described = host_->Reload();
    ASSERT_TRUE(described.has_value()) << described.error().message;
    EXPECT_EQ(Version(), 2);
    EXPECT_EQ(Steps(), (std::vector<std::string>{"boot", "attach", "dns_register"}));
    EXPECT_NE(catalog_.Find("dns"), nullptr);
    EXPECT_TRUE(catalog_.Has("dns", "unregister"));
    EXPECT_FALSE(catalog_.Has("dns", "create_zone"));
    EXPECT_NE(catalog_.Find("compute"), nullptr);
    // What an operator sees: never the token.
    const json::object d = json::parse(*described).as_object();
    EXPECT_EQ(d.at("reloads").as_int64(), 2);
    const json::object& dns = d.at("services").as_array().at(0).as_object();
    EXPECT_EQ(dns.at("name").as_string(), "dns");
    EXPECT_EQ(dns.at("max_inflight").as_int64(), 8);
    EXPECT_EQ(described->find("tok\""), std::string::npos);
    EXPECT_EQ(d.at("hooks").as_array().at(0).as_object().at("after").as_string(), "boot");

    // The same files again: nothing new, the same client.
    workflow::ServiceClient* before = catalog_.Find("dns");
    {
        auto r = host_->Reload();
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    EXPECT_EQ(Version(), 2);
    EXPECT_EQ(catalog_.Find("dns"), before);

    // Both gone: the workflow as shipped again, as a new version; the service out of the catalog.
    fs::remove(config_ / "hooks.d" / "dns.yaml");
    fs::remove(config_ / "services.d" / "dns.yaml");
    {
        auto r = host_->Reload();
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    EXPECT_EQ(Version(), 3);
    EXPECT_EQ(Steps(), (std::vector<std::string>{"boot", "attach"}));
    EXPECT_EQ(catalog_.Find("dns"), nullptr);
    // The version a running workflow started on is kept.
    ASSERT_NE(registry_->Get("server.create", 2), nullptr);
}

TEST_F(HostTest, ARefusedReloadChangesNothing) {
    Write(config_ / "services.d" / "dns.yaml", kDnsService);
    Write(config_ / "hooks.d" / "dns.yaml", kDnsHook);
    {
        auto r = host_->Reload();
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    workflow::ServiceClient* dns = catalog_.Find("dns");

    // The service taken away while a hook still calls it.
    fs::remove(config_ / "services.d" / "dns.yaml");
    auto r = host_->Reload();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              (config_ / "hooks.d" / "dns.yaml").string() +
                  ":5: workflow 'server.create' step 'dns_register': no service 'dns' (the "
                  "services: compute)");
    EXPECT_EQ(catalog_.Find("dns"), dns);
    EXPECT_EQ(Version(), 1);

    // An action the service does not list.
    Write(config_ / "services.d" / "dns.yaml", kDnsService);
    Write(config_ / "hooks.d" / "more.yaml",
          "{workflow: server.create, before: attach, name: dns_check, action: dns.check}\n");
    r = host_->Reload();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              (config_ / "hooks.d" / "more.yaml").string() +
                  ":1: workflow 'server.create' step 'dns_check': service 'dns' has no action "
                  "'check' (its actions: register, unregister)");
    fs::remove(config_ / "hooks.d" / "more.yaml");

    // A configured service may not take a built-in one's name.
    Write(config_ / "services.d" / "compute.yaml",
          "{service: compute, url: 'http://127.0.0.1:1', insecure: true, actions: [x]}\n");
    r = host_->Reload();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message, (config_ / "services.d" / "compute.yaml").string() +
                                     ":1: service 'compute' is one of cogsd's built-in services");
    EXPECT_EQ(Version(), 1);
    EXPECT_EQ(catalog_.Find("dns"), dns);
}

TEST_F(HostTest, AKindIsHandedToTheCloudOnlyOnceEverythingElseIsChecked) {
    std::vector<std::pair<std::string, bool>> calls;  // (plurals, apply)
    host_.reset();
    HostOptions o{shipped_.string(), config_.string(), nullptr};
    o.kinds = [&calls](const std::vector<cloud::KindSpec>& kinds, bool apply) -> Status {
        std::string plurals;
        for (const auto& k : kinds)
            plurals += k.plural;
        calls.emplace_back(plurals, apply);
        return Ok();
    };
    host_ = std::make_unique<ExtensionHost>(io_, o, catalog_, *engine_, *registry_);
    Write(config_ / "kinds.d" / "zones.yaml",
          "kind: dns_zone\nplural: dns_zones\ncreate: dns_zone.create\ndelete: dns_zone.delete\n"
          "fields: {name: {type: string, required: true}}\n");
    auto r = host_->Reload();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              (config_ / "kinds.d" / "zones.yaml").string() +
                  ":1: kind 'dns_zone': no workflow 'dns_zone.create' (put it in workflows.d)");
    EXPECT_TRUE(calls.empty());

    Write(config_ / "services.d" / "dns.yaml", kDnsService);
    Write(config_ / "workflows.d" / "zones.yaml", R"(workflows:
  - type: dns_zone.create
    steps: [{name: create, action: dns.register}]
  - type: dns_zone.delete
    steps: [{name: delete, action: dns.unregister}]
)");
    r = host_->Reload();
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(calls, (std::vector<std::pair<std::string, bool>>{{"dns_zones", false}, {"dns_zones", true}}));
    EXPECT_NE(registry_->Latest("dns_zone.create"), nullptr);
    EXPECT_NE(r->find("\"path\":\"/v1/dns_zones\""), std::string::npos) << *r;
}

}  // namespace
}  // namespace cogs::extend
