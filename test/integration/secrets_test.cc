// No secret in any log line at any level (issue 15, "secrets hygiene"): `cogs dev --log-level trace`
// (every process at its most verbose), the API exercised the way an operator and a tenant would —
// tokens of every role, one rotated, a server created and deleted, a wrong token — then every file
// under the data dir's logs/ is read and searched for every secret the test knows:
//   - every token secret the API answered (and its SHA-256, the stored hash: never shown either),
//     the old secret of the rotated token, the wrong token sent;
//   - the content of every secret file in the data dir: a file of mode 0600 or named *.token or
//     *.key (admin.token, network.token, volume.token, agent.key, and whatever later parts add — host
//     credentials, TLS keys — without a change here), line by line for multi-line files (PEM).
// `cogs dev`'s own terminal output (the admin token for the export line) is the user's terminal
// (here <data dir>/cogs-dev.log, outside logs/), not a log; dev.json must not carry a secret.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cogs/base/secret.h"
#include "cogs/runtime/files.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// A secret and where it came from (the failure message names the origin, never the secret).
using Secrets = std::map<std::string, std::string>;

// The secret files of `dir`: mode 0600 (no access for group or others) or named *.token / *.key,
// text (no NUL byte: a database's reserve file is not a secret), under 1 MiB. Each line of 16
// characters or more that is not a PEM armour line is a secret.
void AddSecretFiles(const fs::path& dir, Secrets& secrets) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec || !it->is_regular_file(ec)) continue;
        const fs::path& p = it->path();
        if (p.parent_path().filename() == "logs") continue;
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0 || st.st_size > (1 << 20)) continue;
        const bool named = p.extension() == ".token" || p.extension() == ".key";
        if (!named && (st.st_mode & 077) != 0) continue;
        auto text = runtime::ReadFile(p.string());
        if (!text || text->find('\0') != std::string::npos) continue;
        size_t start = 0;
        while (start < text->size()) {
            size_t end = text->find('\n', start);
            if (end == std::string::npos) end = text->size();
            std::string line = text->substr(start, end - start);
            while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
                line.pop_back();
            if (line.size() >= 16 && !line.starts_with("-----")) {
                secrets[line] = "the file " + p.string();
            }
            start = end + 1;
        }
    }
}

TEST(SecretsTest, NoSecretInAnyLogAtAnyLevel) {
    auto started =
        DevCloud::Start(DevOptions{.hosts = 2, .boot_ms = 20, .extra_args = {"--log-level", "trace"}});
    ASSERT_TRUE(started) << started.error().ToString();
    DevCloud& dev = **started;
    Secrets secrets;
    auto keep = [&secrets](const std::string& secret, const std::string& origin) {
        ASSERT_FALSE(secret.empty()) << origin;
        secrets[secret] = origin;
        secrets[Sha256Hex(secret)] = "the hash of " + origin;
    };
    keep(dev.admin_token(), "the bootstrap admin token");

    ApiClient admin = dev.Admin();
    ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":"secrets"})");
    ASSERT_EQ(p.status, 201) << p.text;
    const std::string project = S(At(p.body, "project"), "id");
    std::map<std::string, std::pair<std::string, std::string>> tokens;  // role -> {id, secret}
    for (const std::string role : {"admin", "member", "reader"}) {
        ApiReply t = admin.Must("POST", "/v1/tokens",
                                R"({"project_id":")" + project + R"(","role":")" + role + R"("})");
        ASSERT_EQ(t.status, 201) << t.text;
        tokens[role] = {S(At(t.body, "token"), "id"), S(At(t.body, "token"), "secret")};
        keep(tokens[role].second, "the " + role + " token");
    }
    // A rotation: the new secret once, the old one refused.
    ApiReply rotated = admin.Must("POST", "/v1/tokens/" + tokens["member"].first + "/rotate", "");
    ASSERT_EQ(rotated.status, 200) << rotated.text;
    const std::string member = S(At(rotated.body, "token"), "secret");
    keep(member, "the member token's rotated secret");
    ASSERT_EQ(ApiClient(dev.api_url(), tokens["member"].second).Must("GET", "/v1/whoami").status, 401);
    ApiClient other_admin(dev.api_url(), tokens["admin"].second);
    ASSERT_EQ(other_admin.Must("GET", "/v1/audit?limit=5").status, 200);
    ASSERT_EQ(ApiClient(dev.api_url(), tokens["reader"].second).Must("GET", "/v1/audit").status, 403);

    // A tenant's server, created and deleted; a change with a wrong token.
    ApiClient api(dev.api_url(), member);
    ApiReply n = api.Must("POST", "/v1/networks", R"({"name":"s"})");
    ASSERT_EQ(n.status, 202) << n.text;
    const std::string network = S(At(n.body, "network"), "id");
    auto status_of = [&api](const std::string& path, std::string_view key) {
        ApiReply r = api.Must("GET", path);
        return r.status == 404 ? std::string("gone") : S(At(r.body, key), "status");
    };
    ASSERT_TRUE(WaitUntil([&] { return status_of("/v1/networks/" + network, "network") == "ACTIVE"; }, 30s));
    ApiReply sn = api.Must("POST", "/v1/subnets",
                           R"({"network_id":")" + network + R"(","cidr":"10.60.0.0/24","name":"s"})");
    ASSERT_EQ(sn.status, 202) << sn.text;
    const std::string subnet = S(At(sn.body, "subnet"), "id");
    ASSERT_TRUE(WaitUntil([&] { return status_of("/v1/subnets/" + subnet, "subnet") == "ACTIVE"; }, 30s));
    ApiReply s =
        api.Must("POST", "/v1/servers",
                 R"({"name":"s1","flavor":"m1.tiny","image":"cirros","network_id":")" + network + "\"}");
    ASSERT_EQ(s.status, 202) << s.text;
    const std::string server = S(At(s.body, "server"), "id");
    ASSERT_TRUE(WaitUntil([&] { return status_of("/v1/servers/" + server, "server") == "ACTIVE"; }, 60s));
    ASSERT_EQ(api.Must("DELETE", "/v1/servers/" + server).status, 202);
    ASSERT_TRUE(WaitUntil([&] { return status_of("/v1/servers/" + server, "server") == "gone"; }, 60s));
    const std::string wrong = "cogs_" + std::string(48, 'f');
    keep(wrong, "a wrong token");
    ASSERT_EQ(ApiClient(dev.api_url(), wrong).Must("DELETE", "/v1/networks/" + network).status, 401);

    // The audit log has the refused change, without a who and without the token it carried. (An
    // entry is committed as the answer goes out, not before: a read right after may not see it yet.)
    ApiReply audit;
    bool refused = false;
    EXPECT_TRUE(WaitUntil(
        [&] {
            audit = admin.Must("GET", "/v1/audit?resource=" + network);
            const json::value entries = At(audit.body, "audit");
            if (audit.status != 200 || !entries.is_array()) return false;
            for (const auto& e : entries.as_array()) {
                refused = refused ||
                          (I(e, "status") == 401 && S(e, "method") == "DELETE" && S(e, "token_id").empty());
            }
            return refused;
        },
        10s))
        << audit.text;

    ASSERT_EQ(dev.Stop(), std::optional<int>(0));  // every log written out
    AddSecretFiles(dev.data_dir(), secrets);
    for (const std::string part : {"network", "volume", "compute-1"}) {
        EXPECT_TRUE(secrets.count(dev.ServiceToken(part)))
            << part << "'s token was not taken as a secret file";
    }

    // Every log of every process, at trace level, and what `cogs dev` writes for tools.
    std::vector<fs::path> logs;
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(dev.data_dir()) / "logs")) {
        if (entry.is_regular_file()) logs.push_back(entry.path());
    }
    logs.push_back(fs::path(dev.data_dir()) / "dev.json");
    ASSERT_GE(logs.size(), 6u);  // network, volume, cogsd, two agents, dev.json
    bool verbose = false;
    for (const fs::path& log : logs) {
        auto text = runtime::ReadFile(log.string());
        if (!text) continue;  // dev.json is removed at the stop
        verbose = verbose || text->find("\"level\":\"debug\"") != std::string::npos ||
                  text->find("\"level\":\"trace\"") != std::string::npos;
        for (const auto& [secret, origin] : secrets) {
            EXPECT_EQ(text->find(secret), std::string::npos) << log.string() << " contains " << origin;
        }
    }
    EXPECT_TRUE(verbose) << "no debug or trace line in any log: was --log-level trace passed on?";
}

}  // namespace
}  // namespace cogs::testing
