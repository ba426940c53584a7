// TLS on every link of `cogs dev`, from the attacker's side (issue 15): plain HTTP and clients that
// do not trust the cloud's CA get nowhere; an agent's certificate names its host and nothing else;
// a service serves its actions to cogsd's certificate only; a certificate rotated on disk is served
// to new connections without a restart (SIGHUP, or the file change alone).
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>

#include "cogs/http/client.h"
#include "cogs/pki/pki.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TlsTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto dev = DevCloud::Start(DevOptions{2, 20, {}});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev).release();
    }
    static void TearDownTestSuite() {
        if (dev_ != nullptr) {
            EXPECT_EQ(dev_->Stop(), std::optional<int>(0)) << "cogs dev did not stop cleanly on SIGINT";
            delete dev_;
            dev_ = nullptr;
        }
    }
    void SetUp() override {
        ASSERT_NE(dev_, nullptr);
        ASSERT_FALSE(dev_->ca_file().empty()) << "cogs dev runs without TLS by default";
    }

    static std::string Pki(const std::string& file) { return fs::path(dev_->ca_file()).parent_path() / file; }
    // A client presenting `name`'s certificate of the dev CA ("" : none).
    static TestTls As(const std::string& name) {
        if (name.empty()) return TestTls{dev_->ca_file(), "", ""};
        return TestTls{dev_->ca_file(), Pki(name + ".crt"), Pki(name + ".key")};
    }
    static std::string Plain(const std::string& url) {
        EXPECT_TRUE(url.starts_with("https://")) << url;
        return "http://" + url.substr(8);
    }

    static DevCloud* dev_;
};

DevCloud* TlsTest::dev_ = nullptr;

// GET /healthz over a new connection that requires the server's certificate to name `server_name`,
// presenting tls's client certificate: the HTTP status, or the transport's error.
Result<int> HealthzNamed(const std::string& url, const TestTls& client, const std::string& server_name) {
    auto ep = http::ParseHttpUrl(url);
    if (!ep) return MakeError(ErrorCode::kInvalidArgument, "not a URL: " + url);
    auto tls = http::MakeClientTls(http::TlsFiles{client.cert_file, client.key_file, client.ca_file});
    if (!tls) return MakeError(tls.error());
    boost::asio::io_context io;
    http::ClientOptions o;
    o.host = ep->host;
    o.port = ep->port;
    o.max_connections = 1;
    o.tls = *tls;
    o.server_name = server_name;
    auto http_client = http::MakeClient(io, o);
    http::Request req;
    req.method = "GET";
    req.target = "/healthz";
    std::optional<Result<http::Response>> got;
    http_client->Send(req, SteadyClock::now() + 10s, [&](Result<http::Response> r) { got = std::move(r); });
    while (!got && io.run_one() > 0) {
    }
    http_client.reset();
    io.poll();
    if (!got) return MakeError(ErrorCode::kInternal, "no callback");
    if (!*got) return MakeError(got->error());
    return (*got)->status;
}

TEST_F(TlsTest, EveryUrlIsHttpsAndTheCliTrustsTheDevCa) {
    EXPECT_TRUE(dev_->api_url().starts_with("https://")) << dev_->api_url();
    for (const DevProcess& p : dev_->processes()) {
        EXPECT_TRUE(p.url.starts_with("https://")) << p.name << " " << p.url;
    }
    for (const char* key : {"ca.key", "cogsd.key", "network.key", "volume.key", "host-1.key", "host-2.key"}) {
        EXPECT_EQ(fs::status(Pki(key)).permissions() & fs::perms::all,
                  fs::perms::owner_read | fs::perms::owner_write)
            << key;
    }
    // A tenant needs no certificate, only the CA.
    EXPECT_EQ(ApiClient(dev_->api_url(), dev_->admin_token(), As("")).Must("GET", "/v1/hosts").status, 200);
}

TEST_F(TlsTest, PlainHttpIsRefusedByCogsdAndEveryService) {
    for (const DevProcess& p : dev_->processes()) {
        auto r = ApiClient(Plain(p.url), dev_->admin_token()).Call("GET", "/healthz", "", {}, 5s);
        EXPECT_FALSE(r) << p.name << " answered plain HTTP with " << r->status;
    }
}

TEST_F(TlsTest, AClientThatDoesNotTrustTheCloudsCaCannotTalk) {
    // Another CA, and a certificate of it for cogsd's names: neither verifies against the cloud.
    const std::string dir = dev_->data_dir() + "/rogue";
    fs::create_directories(dir);
    ASSERT_TRUE(pki::MakeCa(dir + "/ca.crt", dir + "/ca.key", "rogue CA", 24h));
    ASSERT_TRUE(pki::Issue(pki::CaFiles{dir + "/ca.crt", dir + "/ca.key"}, dir + "/cogsd.crt",
                           dir + "/cogsd.key", "cogsd", {"localhost"}, {"127.0.0.1"}, 24h));
    auto r = ApiClient(dev_->api_url(), dev_->admin_token(), TestTls{dir + "/ca.crt", "", ""})
                 .Call("GET", "/v1/hosts", "", {}, 5s);
    EXPECT_FALSE(r) << "cogsd's certificate verified against a CA that did not sign it: " << r->status;
    // A client certificate of another CA is refused by cogsd and by the services.
    for (const std::string& url : {dev_->api_url(), dev_->ServiceUrl("cogs-network")}) {
        auto forged = ApiClient(url, dev_->admin_token(),
                                TestTls{dev_->ca_file(), dir + "/cogsd.crt", dir + "/cogsd.key"})
                          .Call("GET", "/healthz", "", {}, 5s);
        EXPECT_FALSE(forged) << url << " took a client certificate of another CA: " << forged->status;
    }
}

TEST_F(TlsTest, AnAgentsCertificateNamesItsHostAndNoOther) {
    const std::string url = dev_->ServiceUrl("cogs-compute-1");
    ApiReply before = dev_->Admin().Must("GET", "/v1/hosts/host-1");
    ASSERT_EQ(before.status, 200) << before.text;
    const std::string registered = S(At(before.body, "host"), "url");
    EXPECT_TRUE(registered.starts_with("https://")) << registered;

    ApiClient host2(dev_->api_url(), dev_->admin_token(), As("host-2"));
    ApiReply beat = host2.Must("POST", "/v1/hosts/host-1/heartbeat", "{}");
    EXPECT_EQ(beat.status, 403) << beat.text;
    ApiReply hijack = host2.Must("PUT", "/v1/hosts/host-1",
                                 R"({"url":"https://127.0.0.1:1","vcpus":1,"ram_mb":1,"disk_gb":0})");
    EXPECT_EQ(hijack.status, 403) << hijack.text;
    EXPECT_EQ(S(At(dev_->Admin().Must("GET", "/v1/hosts/host-1").body, "host"), "url"), registered)
        << "host-2's certificate re-registered host-1";
    // Its own host: accepted.
    EXPECT_EQ(host2.Must("POST", "/v1/hosts/host-2/heartbeat", "{}").status, 200);
    EXPECT_EQ(ApiClient(dev_->api_url(), dev_->admin_token(), As("host-1"))
                  .Must("POST", "/v1/hosts/host-1/heartbeat", "{}")
                  .status,
              200);
    // cogsd verifies an agent by its host's name: host-2's certificate does not pass for host-1.
    auto as_host1 = HealthzNamed(url, As("cogsd"), "host-1");
    ASSERT_TRUE(as_host1) << as_host1.error().ToString();
    EXPECT_EQ(*as_host1, 200);
    EXPECT_FALSE(HealthzNamed(url, As("cogsd"), "host-2")) << "host-1's agent passed for host-2";
}

TEST_F(TlsTest, AServiceServesItsActionsToCogsdsCertificateOnly) {
    for (const std::string name : {"cogs-network", "cogs-volume", "cogs-compute-1"}) {
        const std::string url = dev_->ServiceUrl(name);
        ApiClient agent(url, dev_->ServiceToken(name), As("host-2"));
        EXPECT_EQ(agent.Must("GET", "/v1/inventory").status, 403) << name;
        EXPECT_EQ(agent.Must("POST", "/v1/actions/delete_port", R"({"id":"x"})").status, 403) << name;
        EXPECT_EQ(agent.Must("GET", "/healthz").status, 200) << name;  // any certificate of the CA
        EXPECT_EQ(agent.Must("GET", "/metrics").status, 200) << name;
        auto anonymous = ApiClient(url, dev_->ServiceToken(name), As("")).Call("GET", "/healthz", "", {}, 5s);
        EXPECT_FALSE(anonymous) << name << " served a client without a certificate: " << anonymous->status;
        EXPECT_EQ(ApiClient(url, dev_->ServiceToken(name), As("cogsd")).Must("GET", "/v1/inventory").status,
                  200)
            << name;
    }
}

// An operator rotates cogsd's certificate (docs/runbook.md): new files, then SIGHUP — or nothing, the
// change on disk is seen within seconds. New connections get the new certificate; no process restarts,
// every link keeps working.
TEST_F(TlsTest, ARotatedCertificateIsServedWithoutARestart) {
    const DevProcess cogsd = dev_->replicas().front();
    const pki::CaFiles ca{dev_->ca_file(), Pki("ca.key")};
    auto issue = [&](const std::string& extra) {
        return pki::Issue(ca, Pki("cogsd.crt"), Pki("cogsd.key"), "cogsd", {"localhost", extra},
                          {"127.0.0.1"}, 24h * 365);
    };
    ASSERT_FALSE(HealthzNamed(dev_->api_url(), As(""), "rotated-1.test"));

    ASSERT_TRUE(issue("rotated-1.test"));
    ASSERT_EQ(::kill(cogsd.pid, SIGHUP), 0);
    EXPECT_TRUE(
        WaitUntil([&] { return HealthzNamed(dev_->api_url(), As(""), "rotated-1.test") == 200; }, 10s, 100ms))
        << "the certificate issued before SIGHUP is not served";

    ASSERT_TRUE(issue("rotated-2.test"));  // no signal: the file change alone
    EXPECT_TRUE(
        WaitUntil([&] { return HealthzNamed(dev_->api_url(), As(""), "rotated-2.test") == 200; }, 30s, 200ms))
        << "the certificate changed on disk is not served";

    ASSERT_TRUE(dev_->Reload());
    EXPECT_EQ(dev_->replicas().front().pid, cogsd.pid) << "cogsd was restarted";
    // Every link still works with the new certificate: cogsd -> network (a workflow), the agents ->
    // cogsd (their heartbeats keep the hosts up).
    ApiClient admin = dev_->Admin();
    ApiReply net = admin.Must("POST", "/v1/networks", R"({"name":"after-rotation"})");
    ASSERT_EQ(net.status, 202) << net.text;
    const std::string id = S(At(net.body, "network"), "id");
    EXPECT_TRUE(WaitUntil(
        [&] { return S(At(admin.Must("GET", "/v1/networks/" + id).body, "network"), "status") == "ACTIVE"; },
        30s));
    const json::value hosts = At(admin.Must("GET", "/v1/hosts").body, "hosts");
    ASSERT_TRUE(hosts.is_array());
    for (const auto& h : hosts.as_array()) {
        EXPECT_EQ(S(h, "state"), "up") << S(h, "name");
    }
}

}  // namespace
}  // namespace cogs::testing
