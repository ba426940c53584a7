// Trust boundaries from the attacker's side, on real processes (docs/api.md "Hosts and their
// credentials", docs/service-protocol.md "Credentials"): what a compromised host's credentials
// reach in a `cogs dev` cloud (its own host, nothing else: no tenant route, no other host, no
// service), services that refuse every call without their token, a service or cogsd without a
// credential that refuses to start, and test routes that do not exist without --test-routes.
#include <gtest/gtest.h>

#include <filesystem>

#include "cogs/base/paths.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"
#include "test/support/temp_dir.h"

namespace cogs::testing {
namespace {

using namespace std::chrono_literals;

std::string Read(const std::string& file) {
    auto t = runtime::ReadTokenFile(file);
    EXPECT_TRUE(t) << file;
    return t ? *t : "";
}

TEST(TrustTest, AHostsCredentialsReachItsOwnHostAndNothingElse) {
    auto started = DevCloud::Start(DevOptions{2, 20, {}});
    ASSERT_TRUE(started) << started.error().ToString();
    DevCloud& dev = **started;
    const std::string dir = dev.data_dir();
    // What an attacker with root on host-1 holds: its host token and its agent token.
    const std::string host_token = Read(dir + "/hosts/host-1/host.token");
    const std::string agent_token = Read(dir + "/hosts/host-1/agent.token");
    ASSERT_FALSE(host_token.empty());
    ASSERT_NE(host_token, dev.admin_token()) << "no agent holds the admin token";
    for (const std::string file : {"/hosts/host-1/host.token", "/hosts/host-1/agent.token", "/network.token",
                                   "/volume.token", "/agent.key"}) {
        EXPECT_EQ(std::filesystem::status(dir + file).permissions(),
                  std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
            << file;
    }
    ApiClient admin = dev.Admin();
    ApiClient host(dev.api_url(), host_token);
    ApiReply who = host.Must("GET", "/v1/whoami");
    ASSERT_EQ(who.status, 200) << who.text;
    EXPECT_EQ(S(who.body, "role"), "host");
    EXPECT_EQ(S(who.body, "host"), "host-1");

    // Its own host: registered again as it is (the agent's own registration), renewed.
    ApiReply mine = admin.Must("GET", "/v1/hosts/host-1");
    ASSERT_EQ(mine.status, 200) << mine.text;
    const std::string h1 = At(mine.body, "host").as_object().at("url").as_string().c_str();
    const std::string same = R"({"url":")" + h1 + R"(","vcpus":16,"ram_mb":65536,"disk_gb":1000})";
    EXPECT_EQ(host.Must("POST", "/v1/hosts/host-1/heartbeat", "{}").status, 200);

    // Another host's: neither taken over nor renewed; no tenant or admin route.
    const std::string evil = R"({"url":"http://127.0.0.1:9","vcpus":99,"ram_mb":1,"disk_gb":0})";
    for (const auto& [method, path, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"PUT", "/v1/hosts/host-2", evil},
             {"POST", "/v1/hosts/host-2/heartbeat", "{}"},
             {"PUT", "/v1/hosts/host-3", evil},
             {"POST", "/v1/hosts/host-2/enroll", ""},
             {"POST", "/v1/hosts/host-1/drain", "{}"},
             {"GET", "/v1/hosts", ""},
             {"GET", "/v1/servers", ""},
             {"GET", "/v1/projects", ""},
             {"POST", "/v1/networks", R"({"name":"evil"})"},
             {"POST", "/v1/projects", R"({"name":"evil"})"},
             {"POST", "/v1/tokens", R"({"project_id":"admin","role":"admin"})"},
             {"DELETE", "/v1/flavors/m1.tiny", ""},
             {"PUT", "/v1/log-levels", R"({"api":"off"})"},
         }) {
        EXPECT_EQ(host.Must(method, path, body).status, 403) << method << " " << path;
    }
    EXPECT_EQ(admin.Must("GET", "/v1/hosts/host-2").text.find("127.0.0.1:9"), std::string::npos);
    EXPECT_EQ(admin.Must("GET", "/v1/hosts/host-3").status, 404);
    EXPECT_EQ(admin.Must("GET", "/v1/flavors/m1.tiny").status, 200);

    // The services: neither the host's token nor its agent token opens them; nor none, nor a wrong one.
    for (const std::string part : {"cogs-network", "cogs-volume", "cogs-compute-2"}) {
        for (const std::string& token : {host_token, agent_token, std::string(), std::string("wrong")}) {
            ApiClient svc(dev.ServiceUrl(part), token);
            EXPECT_EQ(svc.Must("GET", "/v1/inventory").status, 401) << part;
            EXPECT_EQ(svc.Must("PUT", "/v1/faults", R"({"hang_all":true})").status, 401) << part;
        }
        EXPECT_EQ(dev.Service(part).Must("GET", "/v1/inventory").status, 200)
            << part << " with its own token";
        EXPECT_EQ(ApiClient(dev.ServiceUrl(part), "").Must("GET", "/healthz").status, 200) << part;
    }
    // Its own agent answers its own token only.
    EXPECT_EQ(ApiClient(dev.ServiceUrl("cogs-compute-1"), agent_token).Must("GET", "/v1/inventory").status,
              200);
    EXPECT_EQ(ApiClient(dev.ServiceUrl("cogs-compute-1"), host_token).Must("GET", "/v1/inventory").status,
              401);

    // Enrollment: an admin's alone; enrolling again revokes the earlier host token.
    ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":"t"})");
    ASSERT_EQ(p.status, 201) << p.text;
    ApiReply m = admin.Must("POST", "/v1/tokens",
                            R"({"project_id":")" + S(At(p.body, "project"), "id") + R"(","role":"member"})");
    ASSERT_EQ(m.status, 201) << m.text;
    ApiClient member(dev.api_url(), S(At(m.body, "token"), "secret"));
    EXPECT_EQ(member.Must("POST", "/v1/hosts/host-9/enroll", "").status, 403);
    ApiReply first = admin.Must("POST", "/v1/hosts/host-9/enroll", "");
    ASSERT_EQ(first.status, 201) << first.text;
    ApiClient old(dev.api_url(), S(At(first.body, "enrollment"), "host_token"));
    EXPECT_EQ(old.Must("GET", "/v1/whoami").status, 200);
    ApiReply second = admin.Must("POST", "/v1/hosts/host-9/enroll", "");
    ASSERT_EQ(second.status, 201) << second.text;
    EXPECT_EQ(old.Must("GET", "/v1/whoami").status, 401);
    EXPECT_EQ(old.Must("PUT", "/v1/hosts/host-9", same).status, 401);
    EXPECT_EQ(ApiClient(dev.api_url(), S(At(second.body, "enrollment"), "host_token"))
                  .Must("GET", "/v1/whoami")
                  .status,
              200);

    // The cloud still works: both hosts up (host-1's agent renews with its own token).
    ApiReply hosts = admin.Must("GET", "/v1/hosts");
    ASSERT_EQ(hosts.status, 200);
    const boost::json::value list = At(hosts.body, "hosts");  // (a temporary's array would dangle)
    for (const auto& h : list.as_array()) {
        if (S(h, "name") == "host-1" || S(h, "name") == "host-2") {
            EXPECT_EQ(S(h, "state"), "up") << S(h, "name");
        }
    }
    EXPECT_EQ(dev.Stop(), std::optional<int>(0));
}

// A service started as given, in `dir`: its port, or nullopt when it exited (its status in `status`).
std::optional<uint16_t> Start(const std::string& binary, std::vector<std::string> args, const TempDir& dir,
                              std::optional<runtime::Child>& child, int* status) {
    const std::string port_file = (dir / (binary + ".port"));
    std::filesystem::remove(port_file);  // an earlier start's
    std::vector<std::string> argv{runtime::SiblingBinary(binary), "--listen", "127.0.0.1:0", "--port-file",
                                  port_file};
    argv.insert(argv.end(), args.begin(), args.end());
    auto spawned = runtime::Child::Spawn(argv, {.log_path = (dir / (binary + ".log"))});
    EXPECT_TRUE(spawned) << spawned.error().ToString();
    if (!spawned) return std::nullopt;
    child.emplace(std::move(*spawned));
    auto port = runtime::WaitForPortFile(port_file, SteadyClock::now() + 30s, &*child);
    if (!port) {
        *status = child->Wait();
        return std::nullopt;
    }
    return *port;
}

// A workflow file that names a service cogsd does not have (a typo, or a service not configured)
// keeps cogsd from starting, and its log names the file and line; without that file it starts.
TEST(TrustTest, AWorkflowNamingAnUnknownServiceKeepsCogsdFromStarting) {
    const TempDir dir("cogs-workflows-test");
    namespace fs = std::filesystem;
    const fs::path workflows = dir / "workflows";
    fs::create_directories(workflows);
    for (const auto& f : fs::directory_iterator(base::FindProjectPath("workflows/cloud"))) {
        fs::copy_file(f.path(), workflows / f.path().filename());
    }
    ASSERT_TRUE(runtime::WriteFileAtomic((workflows / "zz-dns.yaml").string(),
                                         "workflows:\n"
                                         "  - type: dns.refresh\n"
                                         "    steps:\n"
                                         "      - name: refresh\n"
                                         "        action: dsn.refresh\n",
                                         0644));
    for (const char* f : {"network.token", "volume.token", "agent.key"}) {
        ASSERT_TRUE(runtime::WriteFileAtomic((dir / f), "secret-of-the-test\n", 0600));
    }
    const std::vector<std::string> args{
        "--data-dir",          (dir / "cogsd"),        "--network-url",        "http://127.0.0.1:1",
        "--volume-url",        "http://127.0.0.1:1",   "--network-token-file", (dir / "network.token"),
        "--volume-token-file", (dir / "volume.token"), "--agent-key-file",     (dir / "agent.key"),
        "--workflows",         workflows.string()};
    {
        std::optional<runtime::Child> child;
        int status = -1;
        EXPECT_FALSE(Start("cogsd", args, dir, child, &status));
        EXPECT_NE(status, 0);
        const std::string log = runtime::ReadFile((dir / "cogsd.log")).value_or("");
        EXPECT_NE(log.find("zz-dns.yaml:5: workflow 'dns.refresh' step 'refresh': no service 'dsn'"),
                  std::string::npos)
            << log;
    }
    fs::remove(workflows / "zz-dns.yaml");
    std::optional<runtime::Child> child;
    int status = -1;
    EXPECT_TRUE(Start("cogsd", args, dir, child, &status))
        << runtime::ReadFile((dir / "cogsd.log")).value_or("");
    if (child) {
        child->Signal(SIGTERM);
        child->Wait();
    }
}

TEST(TrustTest, NoCredentialNoStartAndNoTestRoutesWithoutTheFlag) {
    const TempDir dir("cogs-trust-test");
    // Without a token file nor --insecure: refused, saying why.
    for (const std::string binary : {"cogs-network", "cogs-volume", "cogs-compute"}) {
        std::optional<runtime::Child> child;
        int status = -1;
        EXPECT_FALSE(Start(binary, {}, dir, child, &status)) << binary << " started without a credential";
        EXPECT_EQ(status, 2) << binary;
        EXPECT_NE(runtime::ReadFile((dir / (binary + ".log"))).value_or("").find("no credential"),
                  std::string::npos)
            << binary;
    }
    {
        std::optional<runtime::Child> child;
        int status = -1;
        EXPECT_FALSE(Start("cogsd",
                           {"--data-dir", (dir / "cogsd"), "--network-url", "http://127.0.0.1:1",
                            "--volume-url", "http://127.0.0.1:1"},
                           dir, child, &status));
        EXPECT_NE(status, 0);
        EXPECT_NE(runtime::ReadFile((dir / "cogsd.log")).value_or("").find("--network-token-file"),
                  std::string::npos);
    }
    ASSERT_TRUE(runtime::WriteFileAtomic((dir / "token"), "the-token\n", 0600));
    const std::vector<std::pair<std::string, std::string>> test_routes = {{"PUT", "/v1/faults"},
                                                                          {"GET", "/v1/faults"},
                                                                          {"GET", "/v1/ledger"},
                                                                          {"POST", "/v1/instances/i1/crash"}};
    for (const bool flag : {false, true}) {
        std::optional<runtime::Child> child;
        int status = -1;
        std::vector<std::string> args{"--token-file", (dir / "token"), "--host", "h1"};
        if (flag) args.push_back("--test-routes");
        auto port = Start("cogs-compute", args, dir, child, &status);
        ASSERT_TRUE(port) << "status " << status;
        ApiClient svc("http://127.0.0.1:" + std::to_string(*port), "the-token");
        for (const auto& [method, path] : test_routes) {
            ApiReply r = svc.Must(method, path, method == "PUT" ? "{}" : "");
            if (!flag) {
                EXPECT_EQ(r.status, 404) << method << " " << path;
                EXPECT_NE(r.text.find("no route"), std::string::npos) << r.text;
            } else if (path.ends_with("/crash")) {
                EXPECT_EQ(r.status, 404) << r.text;
                EXPECT_NE(r.text.find("no instance"), std::string::npos) << "the route exists: " << r.text;
            } else {
                EXPECT_EQ(r.status, 200) << method << " " << path << ": " << r.text;
            }
        }
        EXPECT_EQ(svc.Must("GET", "/v1/inventory").status, 200);
        EXPECT_EQ(ApiClient("http://127.0.0.1:" + std::to_string(*port), "nope")
                      .Must("GET", "/v1/inventory")
                      .status,
                  401);
        EXPECT_EQ(child->Stop(5s), 0);
    }
    // --insecure: served without a token (development only).
    std::optional<runtime::Child> child;
    int status = -1;
    auto port = Start("cogs-network", {"--insecure"}, dir, child, &status);
    ASSERT_TRUE(port) << "status " << status;
    EXPECT_EQ(ApiClient("http://127.0.0.1:" + std::to_string(*port), "").Must("GET", "/v1/inventory").status,
              200);
    EXPECT_NE(runtime::ReadFile((dir / "cogs-network.log")).value_or("").find("--insecure"),
              std::string::npos)
        << "a warning says so";
    EXPECT_EQ(child->Stop(5s), 0);
}

}  // namespace
}  // namespace cogs::testing
