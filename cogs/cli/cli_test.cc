// The CLI against a fake cogsd: an in-memory API on cogs/http's server (port 0) on its own thread.
// Each test runs `cogs ...` through RunCli and checks what a user sees: stdout, stderr, the exit
// code, and what reached the API.
#include "cogs/cli/cli.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/config.h"
#include "cogs/cli/internal/dev.h"
#include "cogs/cli/internal/kind_commands.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"
#include "test/support/threaded_server.h"

namespace cogs::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

json::value Parse(const std::string& s) { return json::parse(s); }

std::string Uuid(int n) { return fmt::format("00000000-0000-4000-8000-{:012}", n); }

std::string Singular(std::string plural) {
    plural.pop_back();
    std::replace(plural.begin(), plural.end(), '-', '_');
    return plural;
}

// An in-memory cogsd: generic create/list/show/delete of every kind, paginated lists by id, bearer
// tokens "admin-token" (all) and "reader-token" (GET only), scripted answers for chosen paths.
class FakeApi {
public:
    struct Seen {
        std::string method, target, authorization, idempotency_key, body, traceparent;
    };

    std::string url() const { return server_.url(); }

    // Adds a stored item of `plural` with the given fields; returns its id.
    std::string Add(const std::string& plural, json::object fields) {
        std::lock_guard lock(mu_);
        const std::string id =
            fields.contains("id") ? std::string(fields["id"].as_string()) : Uuid(++next_id_);
        fields["id"] = id;
        items_[plural][id] = std::move(fields);
        return id;
    }
    // GETs of `path` answer these in turn (the last one repeats). {"__status": 404} answers not found.
    void Script(const std::string& path, std::vector<json::value> answers) {
        std::lock_guard lock(mu_);
        scripts_[path] = {std::move(answers), 0};
    }
    // The next `count` requests to `method path` get `status` with `body` (status 0: the connection
    // is closed without an answer, a lost reply).
    void Fail(const std::string& method, const std::string& path, int status, std::string body,
              int count = 1000) {
        std::lock_guard lock(mu_);
        failures_[method + " " + path] = {status, std::move(body), count};
    }
    void set_page_cap(size_t n) { page_cap_ = n; }
    // GET /metrics (no token) answers these texts in turn; the last one repeats.
    void ScriptMetrics(std::vector<std::string> texts) {
        std::lock_guard lock(mu_);
        metrics_ = {std::move(texts), 0};
    }
    // Records an event (GET /v1/events, /v1/<plural>/<id>/events); returns its seq.
    int64_t AddEvent(json::object e) {
        std::lock_guard lock(mu_);
        e["seq"] = static_cast<int64_t>(events_.size() + 1);
        events_.push_back(std::move(e));
        return static_cast<int64_t>(events_.size());
    }

    std::vector<Seen> seen() {
        std::lock_guard lock(mu_);
        return seen_;
    }
    std::vector<Seen> seen(const std::string& method, const std::string& path_prefix) {
        std::vector<Seen> out;
        for (auto& s : seen()) {
            if (s.method == method && s.target.rfind(path_prefix, 0) == 0) {
                out.push_back(s);
            }
        }
        return out;
    }

private:
    static http::Response Json(int status, const json::value& v) {
        http::Response r;
        r.status = status;
        r.body = json::serialize(v);
        return r;
    }
    static http::Response Error(int status, const std::string& code, const std::string& message) {
        return Json(status, json::object{{"code", code}, {"message", message}});
    }

    http::Response Handle(const http::Request& req) {
        std::lock_guard lock(mu_);
        seen_.push_back({req.method, req.target, req.Header("authorization"), req.Header("idempotency-key"),
                         req.body, req.Header("traceparent")});
        const std::string path = req.Path();
        if (path == "/metrics" && req.method == "GET" && !metrics_.first.empty()) {
            http::Response r;
            r.status = 200;
            r.body = metrics_.first[std::min(metrics_.second++, metrics_.first.size() - 1)];
            r.headers.emplace_back("content-type", "text/plain; version=0.0.4; charset=utf-8");
            return r;
        }
        if (auto f = failures_.find(req.method + " " + path); f != failures_.end() && f->second.count > 0) {
            --f->second.count;
            http::Response r;
            r.drop = f->second.status == 0;
            r.status = f->second.status;
            r.body = f->second.body;
            if (r.status == 429 || r.status == 503) {
                r.headers.emplace_back("Retry-After", "0");
            }
            return r;
        }
        const std::string auth = req.Header("authorization");
        if (auth != "Bearer admin-token" && auth != "Bearer reader-token") {
            return Error(401, "unauthenticated", "missing or unknown token");
        }
        if (auth == "Bearer reader-token" && req.method != "GET") {
            return Error(403, "permission_denied", "a reader token cannot change anything");
        }
        if (req.method == "GET") {
            if (auto s = scripts_.find(path); s != scripts_.end()) {
                auto& [answers, next] = s->second;
                const json::value& a = answers[std::min(next, answers.size() - 1)];
                ++next;
                if (a.is_object() && a.as_object().contains("__status")) {
                    return Error(static_cast<int>(a.at("__status").as_int64()), "not_found", "no such thing");
                }
                return Json(200, a);
            }
        }
        if (req.method == "POST" && path.starts_with("/v1/hosts/") && path.ends_with("/enroll")) {
            const std::string host = path.substr(10, path.size() - 10 - 7);
            return Json(
                201, json::object{{"enrollment", json::object{{"host", host},
                                                              {"token_id", "tok-" + host},
                                                              {"host_token", "cogs_host_secret"},
                                                              {"agent_token", "agent_secret"},
                                                              {"revoked_token_ids", json::array{"tok-old"}},
                                                              {"enrolled_at", "2026-01-01T00:00:00Z"}}}});
        }
        if (path == "/v1/log-levels") {
            if (req.method == "PUT") {
                const json::value changes = Parse(req.body);
                for (const auto& [k, v] : changes.as_object()) {
                    const std::string level(v.as_string());
                    if (level != "debug" && level != "info" && level != "warn" && level != "error") {
                        return Error(400, "invalid_argument", fmt::format("'{}' is not a log level", level));
                    }
                    levels_[k] = level;
                }
            }
            return Json(200, levels_);
        }
        if (path == "/v1/whoami") {
            return Json(200, json::object{{"project_id", Uuid(999)},
                                          {"project_name", "admin"},
                                          {"role", "admin"},
                                          {"token_id", Uuid(998)}});
        }
        // /v1/<plural>[/<id>[/<verb>]]
        std::vector<std::string> parts;
        for (size_t i = 1; i <= path.size();) {
            const size_t j = std::min(path.find('/', i), path.size());
            parts.push_back(path.substr(i, j - i));
            i = j + 1;
        }
        if (parts.size() < 2 || parts[0] != "v1") {
            return Error(404, "not_found", "no such path");
        }
        const std::string plural = parts[1];
        if (req.method == "GET" && (plural == "events" || (parts.size() == 4 && parts[3] == "events"))) {
            // A resource's history outlives it: no check that the resource exists.
            const std::string kind = plural == "events" ? req.Query("resource_kind") : Singular(plural);
            const std::string id = plural == "events" ? req.Query("resource_id") : parts[2];
            const int64_t after = req.Query("after").empty() ? 0 : std::stoll(req.Query("after"));
            const size_t limit = std::min<size_t>(
                req.Query("limit").empty() ? 100 : std::stoul(req.Query("limit")), page_cap_);
            json::array page;
            int64_t next = after;
            for (const auto& e : events_) {
                if (e.at("seq").as_int64() <= after || (!kind.empty() && Cell(e, "resource_kind") != kind) ||
                    (!id.empty() && Cell(e, "resource_id") != id) ||
                    (!req.Query("workflow_id").empty() &&
                     Cell(e, "workflow_id") != req.Query("workflow_id"))) {
                    continue;
                }
                if (page.size() == limit) {
                    break;
                }
                page.push_back(e);
                next = e.at("seq").as_int64();
            }
            return Json(200, json::object{{"events", std::move(page)}, {"next_after", next}});
        }
        auto& items = items_[plural];
        const bool async = plural == "servers" || plural == "networks" || plural == "subnets" ||
                           plural == "ports" || plural == "volumes";
        if (parts.size() == 2 && req.method == "GET") {
            const size_t limit = std::min<size_t>(
                req.Query("limit").empty() ? 100 : std::stoul(req.Query("limit")), page_cap_);
            const std::string marker = req.Query("marker");
            json::array page;
            std::string last;
            bool more = false;
            for (auto it = marker.empty() ? items.begin() : items.upper_bound(marker); it != items.end();
                 ++it) {
                const auto& o = it->second;
                if (!req.Query("name").empty() && Cell(o, "name") != req.Query("name")) {
                    continue;
                }
                if (!req.Query("status").empty() && Cell(o, "status") != req.Query("status")) {
                    continue;
                }
                if (page.size() == limit) {
                    more = true;
                    break;
                }
                page.push_back(o);
                last = it->first;
            }
            json::object reply{{ListKey(plural), std::move(page)}};
            if (more) {
                reply["next_marker"] = last;
            }
            return Json(200, reply);
        }
        if (parts.size() == 2 && req.method == "POST") {
            json::object o = Parse(req.body).as_object();
            if (plural == "networks" && Cell(o, "name") == "taken") {
                return Error(409, "already_exists", "a network named 'taken' exists");
            }
            const std::string id = Uuid(++next_id_);
            o["id"] = id;
            if (async) {
                o["status"] = plural == "volumes" ? "creating" : "BUILD";
                o["workflow_id"] = Uuid(500 + next_id_);
            }
            items[id] = o;
            return Json(async ? 202 : 201, json::object{{Singular(plural), o}});
        }
        if (parts.size() >= 3) {
            auto it = items.find(parts[2]);
            if (it == items.end()) {
                return Error(404, "not_found", fmt::format("no such {}", Singular(plural)));
            }
            if (req.method == "GET") {
                return Json(200, json::object{{Singular(plural), it->second}});
            }
            if (req.method == "DELETE") {
                if (!async) {
                    items.erase(it);
                    http::Response r;
                    r.status = 204;
                    return r;
                }
                it->second["status"] = plural == "volumes" ? "deleting" : "DELETING";
                it->second["workflow_id"] = Uuid(700 + next_id_++);
                return Json(202, json::object{{Singular(plural), it->second}});
            }
            if (req.method == "POST" && parts.size() == 4) {
                it->second["last_action"] = parts[3];
                return Json(202, json::object{{Singular(plural), it->second}});
            }
            if (req.method == "PUT" && parts.size() == 4) {
                json::object q;
                const json::value body = Parse(req.body);
                for (const auto& [k, v] : body.as_object()) {
                    q[k] = json::object{{"limit", v}, {"in_use", 0}};
                }
                return Json(200, json::object{{"quotas", q}});
            }
        }
        return Error(405, "invalid_argument", "unsupported");
    }

    static std::string ListKey(std::string plural) {
        std::replace(plural.begin(), plural.end(), '-', '_');
        return plural;
    }

    std::mutex mu_;
    int next_id_ = 0;
    size_t page_cap_ = 1000;
    std::map<std::string, std::map<std::string, json::object>> items_;
    std::map<std::string, std::pair<std::vector<json::value>, size_t>> scripts_;
    struct Failure {
        int status;
        std::string body;
        int count;
    };
    std::map<std::string, Failure> failures_;
    std::vector<Seen> seen_;
    std::pair<std::vector<std::string>, size_t> metrics_;
    std::vector<json::object> events_;
    json::object levels_{{"*", "info"}, {"engine", "info"}};
    cogs::testing::ThreadedServer server_{
        [this](http::Request req, http::Respond respond) { respond(Handle(req)); }};
};

struct Outcome {
    int rc = -1;
    std::string out, err;
};

class CliTest : public ::testing::Test {
protected:
    void SetUp() override {
        env_["HOME"] = home_.string();
        env_["COGS_URL"] = api_.url();
        env_["COGS_TOKEN"] = "admin-token";
    }

    // `stop`: asked after each refresh of top and each poll of events --follow.
    Outcome Cogs(std::vector<std::string> args, std::function<bool()> stop = {}) {
        args.insert(args.begin(), "cogs");
        std::ostringstream out, err;
        CliIo io{&out, &err,
                 [this](const std::string& name) -> std::optional<std::string> {
                     auto it = env_.find(name);
                     return it == env_.end() ? std::nullopt : std::optional<std::string>(it->second);
                 },
                 std::move(stop)};
        std::istringstream in(stdin_);
        io.in = &in;
        Outcome r;
        r.rc = RunCli(args, io);
        r.out = out.str();
        r.err = err.str();
        return r;
    }

    FakeApi api_;
    std::string stdin_;  // what the next commands read from standard input
    const cogs::testing::TempDir home_dir_{"cogs-cli-test"};
    const fs::path home_{home_dir_.path()};
    std::map<std::string, std::string> env_;
};

// ---- configuration ------------------------------------------------------------------------------

TEST_F(CliTest, HostEnrollPrintsTheCredentialsOnceOrWritesThemToPrivateFiles) {
    Outcome r = Cogs({"host", "enroll", "host-7"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("POST", "/v1/hosts/host-7/enroll").size(), 1u);
    EXPECT_NE(r.out.find("cogs_host_secret"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("agent_secret"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("revoked: tok-old"), std::string::npos) << r.out;

    const std::string out = home_dir_ / "creds/host-7";
    r = Cogs({"host", "enroll", "host-7", "--out", out});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out.find("cogs_host_secret"), std::string::npos) << "written, not printed: " << r.out;
    EXPECT_EQ(runtime::ReadTokenFile(out + "/host.token").value_or(""), "cogs_host_secret");
    EXPECT_EQ(runtime::ReadTokenFile(out + "/agent.token").value_or(""), "agent_secret");
    for (const std::string f : {"/host.token", "/agent.token"}) {
        EXPECT_EQ(std::filesystem::status(out + f).permissions(),
                  std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
            << f;
    }
    EXPECT_NE(r.out.find("--control-token-file " + out + "/host.token"), std::string::npos) << r.out;
}

TEST_F(CliTest, SettingsPrecedenceFlagsThenEnvThenFile) {
    const fs::path cfg_dir = home_ / ".config" / "cogs";
    fs::create_directories(cfg_dir);
    std::ofstream(cfg_dir / "config.yaml") << "url: http://file.example:1\ntoken: file-token\n";
    auto getenv = [&](const std::string& n) -> std::optional<std::string> {
        auto it = env_.find(n);
        return it == env_.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    env_.erase("COGS_URL");
    env_.erase("COGS_TOKEN");
    auto file = ResolveSettings("", "", "", getenv);
    ASSERT_TRUE(file) << file.error();
    EXPECT_EQ(file->url, "http://file.example:1");
    EXPECT_EQ(file->token, "file-token");
    EXPECT_EQ(file->config_path, (cfg_dir / "config.yaml").string());

    env_["COGS_URL"] = "http://env.example:2";
    env_["COGS_TOKEN"] = "env-token";
    auto env = ResolveSettings("", "", "", getenv);
    EXPECT_EQ(env->url, "http://env.example:2");
    EXPECT_EQ(env->token, "env-token");

    auto flags = ResolveSettings("http://flag.example:3", "flag-token", "", getenv);
    EXPECT_EQ(flags->url, "http://flag.example:3");
    EXPECT_EQ(flags->token, "flag-token");

    // XDG_CONFIG_HOME moves the default file; nothing anywhere gives the cogs dev default URL.
    env_.clear();
    env_["XDG_CONFIG_HOME"] = (home_ / "xdg").string();
    auto none = ResolveSettings("", "", "", getenv);
    EXPECT_EQ(none->url, kDefaultUrl);
    EXPECT_EQ(none->token, "");
    EXPECT_EQ(DefaultConfigPath(getenv), (home_ / "xdg" / "cogs" / "config.yaml").string());

    // A named config file must exist and be a map of url/token.
    EXPECT_THAT(ResolveSettings("", "", (home_ / "nope.yaml").string(), getenv).error(),
                HasSubstr("no such config"));
    std::ofstream(home_ / "bad.yaml") << "url: x\ntokn: y\n";
    EXPECT_THAT(ResolveSettings("", "", (home_ / "bad.yaml").string(), getenv).error(),
                HasSubstr("unknown key 'tokn'"));
}

TEST_F(CliTest, TheChosenSettingsReachTheApi) {
    // The config file names the fake API and a token; the environment overrides only the token.
    const fs::path cfg = home_ / "cogs.yaml";
    std::ofstream(cfg) << fmt::format("url: {}\ntoken: reader-token\n", api_.url());
    env_.erase("COGS_URL");
    env_.erase("COGS_TOKEN");
    Outcome r = Cogs({"--config", cfg.string(), "whoami"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen().back().authorization, "Bearer reader-token");

    env_["COGS_TOKEN"] = "admin-token";
    r = Cogs({"whoami", "--config", cfg.string()});  // global options may follow the subcommand
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen().back().authorization, "Bearer admin-token");

    r = Cogs({"--config", cfg.string(), "--token", "reader-token", "whoami"});
    EXPECT_EQ(api_.seen().back().authorization, "Bearer reader-token");

    // A --url flag beats the file: nothing listens there.
    r = Cogs({"--config", cfg.string(), "--url", "http://127.0.0.1:1", "--timeout", "2s", "whoami"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("error: cannot reach http://127.0.0.1:1"));
    EXPECT_THAT(r.err, HasSubstr("(unavailable)"));
    EXPECT_THAT(r.err, HasSubstr("hint: is cogsd running?"));
}

// ---- output -------------------------------------------------------------------------------------

TEST_F(CliTest, TablesAreAlignedAndJsonIsTheApisObject) {
    api_.Add("flavors", {{"name", "m1.tiny"}, {"vcpus", 1}, {"ram_mb", 512}, {"disk_gb", 1}});
    api_.Add("flavors", {{"name", "m1.large-ish"}, {"vcpus", 16}, {"ram_mb", 65536}, {"disk_gb", 160}});
    Outcome r = Cogs({"flavor", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out,
              "ID                                    NAME          VCPUS  RAM_MB  DISK_GB\n"
              "00000000-0000-4000-8000-000000000001  m1.tiny       1      512     1\n"
              "00000000-0000-4000-8000-000000000002  m1.large-ish  16     65536   160\n");

    r = Cogs({"flavor", "list", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json::value v = Parse(r.out);
    ASSERT_EQ(v.at("flavors").as_array().size(), 2u);
    EXPECT_EQ(v.at("flavors").at(1).at("ram_mb").as_int64(), 65536);

    r = Cogs({"-o", "json", "flavor", "show", Uuid(1)});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(r.out).at("flavor").at("name").as_string(), "m1.tiny");

    r = Cogs({"flavor", "show", Uuid(2)});
    EXPECT_THAT(r.out, HasSubstr("FIELD    VALUE\n"));
    EXPECT_THAT(r.out, HasSubstr("\nname     m1.large-ish\n"));

    r = Cogs({"-o", "yaml", "flavor", "list"});
    EXPECT_EQ(r.rc, 2);
}

// A name from the API holding ESC, NUL, BEL, a newline and a C1 CSI never reaches the terminal raw:
// tables, FIELD/VALUE views and error lines show them escaped (and columns still line up).
TEST_F(CliTest, ControlCharactersFromTheApiArePrintedEscaped) {
    const std::string evil = std::string("a\x1b[2J") + '\0' + "b\x07\nc\xc2\x9b" + "1m";
    const std::string shown = "a\\x1b[2J\\x00b\\x07\\x0ac\\u009b1m";
    api_.Add("servers", {{"name", evil}, {"status", "ACTIVE"}});
    Outcome r = Cogs({"server", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(shown));
    for (char c : r.out) {
        const auto u = static_cast<unsigned char>(c);
        EXPECT_TRUE(c == '\n' || (u >= 0x20 && u != 0x7f && u < 0x80)) << "raw byte " << int{u} << " in\n"
                                                                       << r.out;
    }
    // One header line and one row: the newline in the name did not start another.
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2);

    r = Cogs({"server", "show", Uuid(1)});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("\nname    " + shown + "\n"));
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);

    api_.Fail("POST", "/v1/networks", 409,
              json::serialize(json::object{{"code", "conflict"}, {"message", "name " + evil + " taken"}}));
    r = Cogs({"network", "create", "n"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "error: name " + shown + " taken (conflict)\n");

    EXPECT_EQ(Printable("plain caf\xc3\xa9"), "plain caf\xc3\xa9");
    EXPECT_EQ(Printable(std::string("\x7f\t", 2)), "\\x7f\\x09");
}

TEST_F(CliTest, ServerConsolePrintsTheOutputByNameWithLengthAndEscapesControlCharacters) {
    const std::string srv = api_.Add("servers", {{"name", "web"}, {"status", "ACTIVE"}});
    const std::string output = std::string("booted\n\tindented\x1b[2J\nlast line");
    api_.Script(
        "/v1/servers/" + srv + "/console",
        {json::object{{"console", json::object{{"server_id", srv}, {"host", "h1"}, {"output", output}}}}});
    Outcome r = Cogs({"server", "console", "web"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "booted\n\tindented\\x1b[2J\nlast line\n") << "lines and tabs kept, ESC escaped";
    auto gets = api_.seen("GET", "/v1/servers/" + srv + "/console");
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_EQ(gets[0].target, "/v1/servers/" + srv + "/console") << "no length: all of it";

    r = Cogs({"server", "console", "web", "--length", "5"});
    ASSERT_EQ(r.rc, 0) << r.err;
    gets = api_.seen("GET", "/v1/servers/" + srv + "/console");
    ASSERT_EQ(gets.size(), 2u);
    EXPECT_EQ(gets[1].target, "/v1/servers/" + srv + "/console?length=5");

    r = Cogs({"server", "console", "web", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(r.out).at("console").at("output").as_string(), output);

    api_.Fail(
        "GET", "/v1/servers/" + srv + "/console", 400,
        json::serialize(json::object{{"code", "invalid_argument"},
                                     {"message", "length: must be an integer from 1 to 10000 (lines)"}}));
    r = Cogs({"server", "console", "web", "--length", "0"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("length: must be an integer from 1 to 10000"));
    EXPECT_EQ(api_.seen("GET", "/v1/servers/" + srv + "/console").back().target,
              "/v1/servers/" + srv + "/console?length=0")
        << "the API checks the value";
    EXPECT_EQ(Cogs({"server", "console"}).rc, 2) << "REF is required";
}

TEST_F(CliTest, ImageCreateWithAFileUploadsItWithItsSha256) {
    const std::string archive = home_dir_.Write("rootfs.tar.gz", std::string("\x1f\x8b\0binary\0bytes", 15));
    const std::string sha = Sha256Hex(std::string("\x1f\x8b\0binary\0bytes", 15));
    api_.Fail("PUT", "/v1/images/" + Uuid(1) + "/file", 200,
              json::serialize(json::object{
                  {"image", {{"id", Uuid(1)}, {"name", "alpine"}, {"status", "active"}, {"sha256", sha}}}}));
    Outcome r = Cogs({"image", "create", "alpine", "--file", archive});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(sha));
    EXPECT_THAT(r.out, HasSubstr("active"));
    auto puts = api_.seen("PUT", "/v1/images/" + Uuid(1) + "/file");
    ASSERT_EQ(puts.size(), 1u);
    EXPECT_EQ(puts[0].target, "/v1/images/" + Uuid(1) + "/file?sha256=" + sha);
    EXPECT_EQ(puts[0].body, std::string("\x1f\x8b\0binary\0bytes", 15)) << "the file's bytes, as they are";
}

TEST_F(CliTest, ImageCreateWhoseUploadIsRefusedDeletesTheImageAgain) {
    const std::string archive = home_dir_.Write("notes.txt", "not an archive");
    api_.Fail("PUT", "/v1/images/" + Uuid(1) + "/file", 400,
              R"({"code":"invalid_argument","message":"file: the body is not a gzip-compressed tar archive",)"
              R"("details":{"field":"file"}})");
    Outcome r = Cogs({"image", "create", "junk", "--file", archive});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("not a gzip-compressed tar archive"));
    EXPECT_EQ(api_.seen("DELETE", "/v1/images/" + Uuid(1)).size(), 1u);

    // A file that cannot be read: nothing is created.
    r = Cogs({"image", "create", "ghost", "--file", home_dir_ / "missing.tar.gz"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("missing.tar.gz"));
    EXPECT_EQ(api_.seen("POST", "/v1/images").size(), 1u) << "only the first image was created";
}

TEST_F(CliTest, ListsFollowNextMarkerAndLimitCapsThem) {
    api_.set_page_cap(7);  // the API pages at 7 whatever the CLI asks
    for (int i = 0; i < 23; ++i) {
        api_.Add("images", {{"name", fmt::format("img-{:02}", i)}});
    }
    Outcome r = Cogs({"image", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1 + 23);
    EXPECT_THAT(r.out, HasSubstr("img-00"));
    EXPECT_THAT(r.out, HasSubstr("img-22"));
    EXPECT_EQ(api_.seen("GET", "/v1/images").size(), 4u);  // 7 + 7 + 7 + 2

    for (int i = 0; i < 23; ++i) {
        api_.Add("workflows", {{"type", "server.create"}, {"state", "succeeded"}});
    }
    r = Cogs({"workflow", "list", "--limit", "10", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(r.out).at("workflows").as_array().size(), 10u);
}

TEST_F(CliTest, WorkflowRetryAndCancelPostToTheWorkflow) {
    const std::string id = api_.Add("workflows", {{"type", "server.create"}, {"state", "failed"}});
    Outcome r = Cogs({"workflow", "retry", id});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("POST", "/v1/workflows/" + id + "/retry").size(), 1u);
    EXPECT_THAT(r.out, HasSubstr("retried"));
    r = Cogs({"workflow", "cancel", id});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("POST", "/v1/workflows/" + id + "/cancel").size(), 1u);
}

TEST_F(CliTest, ServerCreateSendsTheUserDataFileBase64Encoded) {
    api_.Add("networks", {{"name", "net1"}, {"status", "ACTIVE"}});
    const std::string script = std::string("#!/bin/sh\necho hi\0\xff", 19);
    const std::string file = home_dir_.Write("boot.sh", script);
    Outcome r = Cogs({"server", "create", "web-1", "--flavor", "m1.tiny", "--image", "cirros", "--network",
                      "net1", "--user-data", file});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/servers");
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(Parse(posts[0].body).at("user_data").as_string(), "IyEvYmluL3NoCmVjaG8gaGkA/w==");

    r = Cogs({"server", "create", "web-2", "--flavor", "m1.tiny", "--image", "cirros", "--network", "net1",
              "--user-data", home_dir_.path() + "/missing.sh"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("--user-data"));
    EXPECT_EQ(api_.seen("POST", "/v1/servers").size(), 1u) << "nothing sent";
}

// ---- names ----------------------------------------------------------------------------------------

TEST_F(CliTest, ServerCreateOnAPortSendsThePortsIdAndNoNetwork) {
    const std::string port = api_.Add("ports", {{"name", "mine"}, {"status", "ACTIVE"}});
    Outcome r =
        Cogs({"server", "create", "web-1", "--flavor", "m1.tiny", "--image", "cirros", "--port", "mine"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/servers");
    ASSERT_EQ(posts.size(), 1u);
    const json::value body = Parse(posts[0].body);
    EXPECT_EQ(body.at("port_id").as_string(), port);
    EXPECT_FALSE(body.as_object().contains("network_id")) << posts[0].body;
}

TEST_F(CliTest, NamesAreResolvedToIdsWhereTheApiWantsIds) {
    const std::string net = api_.Add("networks", {{"name", "net1"}, {"status", "ACTIVE"}});
    api_.Add("networks", {{"name", "other"}, {"status", "ACTIVE"}});
    const std::string vol = api_.Add("volumes", {{"name", "data"}, {"status", "available"}});
    const std::string grp = api_.Add("server-groups", {{"name", "web"}, {"policy", "anti-affinity"}});
    Outcome r = Cogs({"server", "create", "web-1", "--flavor", "m1.tiny", "--image", "cirros", "--network",
                      "net1", "--volume", "data", "--group", "web", "--weigher", "pack"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/servers");
    ASSERT_EQ(posts.size(), 1u);
    const json::value body = Parse(posts[0].body);
    EXPECT_EQ(body.at("network_id").as_string(), net);
    EXPECT_EQ(body.at("volume_ids").at(0).as_string(), vol);
    EXPECT_EQ(body.at("server_group_id").as_string(), grp);
    EXPECT_EQ(body.at("flavor").as_string(), "m1.tiny");  // flavors and images: names as they are
    EXPECT_EQ(body.at("image").as_string(), "cirros");
    EXPECT_EQ(body.at("weigher").as_string(), "pack");
    EXPECT_FALSE(posts[0].idempotency_key.empty());
    EXPECT_THAT(r.out, HasSubstr("\nstatus           BUILD\n"));

    // An id is used as it is, without a lookup.
    const size_t lookups = api_.seen("GET", "/v1/networks?").size();
    r = Cogs({"network", "show", net});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("GET", "/v1/networks?").size(), lookups);
    EXPECT_EQ(api_.seen().back().target, "/v1/networks/" + net);

    r = Cogs({"network", "show", "nope"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "error: no network named 'nope' (not_found)\n");

    api_.Add("networks", {{"name", "net1"}, {"status", "ACTIVE"}});
    r = Cogs({"network", "delete", "net1"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "error: 2 networks are named 'net1'; use an id (conflict)\n");
}

// ---- errors ---------------------------------------------------------------------------------------

TEST_F(CliTest, ApiErrorsArePrintedWithTheirCodeAndHints) {
    Outcome r = Cogs({"network", "create", "taken"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "error: a network named 'taken' exists (already_exists)\n");

    env_["COGS_TOKEN"] = "wrong";
    r = Cogs({"server", "list"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("error: missing or unknown token (unauthenticated)\n"));
    EXPECT_THAT(r.err, HasSubstr("hint: the API did not accept the token"));

    env_["COGS_TOKEN"] = "reader-token";
    r = Cogs({"network", "create", "n"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("(permission_denied)"));
    EXPECT_THAT(r.err, HasSubstr("hint: this token's role"));

    env_["COGS_TOKEN"] = "admin-token";
    api_.Fail("POST", "/v1/servers", 403,
              R"({"code":"quota_exceeded","message":"quota exceeded for vcpus",)"
              R"("details":{"resource":"vcpus","limit":20,"in_use":18,"requested":4}})");
    api_.Add("networks", {{"name", "n1"}});
    r = Cogs({"server", "create", "s", "--flavor", "f", "--image", "i", "--network", "n1"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(
        r.err,
        "error: quota exceeded for vcpus (quota_exceeded)\nquota: vcpus limit 20, in use 18, requested 4\n");

    // Usage errors are not API errors.
    r = Cogs({"server", "create", "s"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("--flavor is required"));
    r = Cogs({});
    EXPECT_EQ(r.rc, 2);
}

TEST_F(CliTest, OverloadIsRetriedWithTheSameIdempotencyKey) {
    api_.Fail("POST", "/v1/flavors", 503, R"({"code":"unavailable","message":"busy"})", 2);
    Outcome r = Cogs({"flavor", "create", "m1.x", "--vcpus", "2", "--ram-mb", "1024", "--disk-gb", "10"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/flavors");
    ASSERT_EQ(posts.size(), 3u);
    EXPECT_EQ(posts[0].idempotency_key, posts[2].idempotency_key);
    EXPECT_EQ(Parse(posts[2].body), Parse(R"({"name":"m1.x","vcpus":2,"ram_mb":1024,"disk_gb":10})"));
}

TEST_F(CliTest, AnActionResentAfterALostReplyCarriesTheSameIdempotencyKey) {
    const std::string srv = api_.Add("servers", {{"name", "web-1"}, {"status", "ACTIVE"}});
    const std::string vol = api_.Add("volumes", {{"name", "data"}, {"status", "available"}});
    const std::vector<std::pair<std::vector<std::string>, std::string>> actions = {
        {{"server", "stop", srv}, "/v1/servers/" + srv + "/stop"},
        {{"server", "reboot", srv}, "/v1/servers/" + srv + "/reboot"},
        {{"volume", "attach", vol, "--server", srv}, "/v1/volumes/" + vol + "/attach"},
        {{"volume", "detach", vol}, "/v1/volumes/" + vol + "/detach"},
    };
    for (const auto& [args, path] : actions) {
        api_.Fail("POST", path, 0, "", 1);
        Outcome r = Cogs(args);
        ASSERT_EQ(r.rc, 0) << path << ": " << r.err;
        auto posts = api_.seen("POST", path);
        ASSERT_EQ(posts.size(), 2u) << path;
        EXPECT_FALSE(posts[0].idempotency_key.empty()) << path;
        EXPECT_EQ(posts[0].idempotency_key, posts[1].idempotency_key) << path;
        EXPECT_EQ(posts[0].body, posts[1].body) << path;
    }
}

// ---- --wait ---------------------------------------------------------------------------------------

json::object Workflow(const std::string& state, std::vector<std::pair<std::string, std::string>> steps,
                      const std::string& reason = "") {
    json::array a;
    for (auto& [name, st] : steps) {
        a.push_back(json::object{{"name", name}, {"state", st}, {"attempts", st == "pending" ? 0 : 1}});
    }
    return json::object{{"workflow", json::object{{"state", state}, {"reason", reason}, {"steps", a}}}};
}

json::object Server(const std::string& id, const std::string& status, const std::string& fault = "") {
    json::object s{{"id", id}, {"name", "web-1"}, {"status", status}, {"workflow_id", Uuid(77)}};
    if (!fault.empty()) {
        s["fault"] = json::object{{"message", fault}};
    }
    return json::object{{"server", s}};
}

TEST_F(CliTest, WaitFollowsACreateToActiveWithProgress) {
    api_.Add("networks", {{"name", "n1"}});
    // The created server gets the next id (2); its workflow is scripted too.
    const std::string id = Uuid(2);
    api_.Script("/v1/servers/" + id, {Server(id, "BUILD"), Server(id, "BUILD"), Server(id, "ACTIVE")});
    const std::string wf = Uuid(502);
    api_.Script(
        "/v1/workflows/" + wf,
        {Workflow("running", {{"allocate_ip", "succeeded"}, {"create_port", "running"}, {"boot", "pending"}}),
         Workflow("running",
                  {{"allocate_ip", "succeeded"}, {"create_port", "succeeded"}, {"boot", "running"}}),
         Workflow("succeeded",
                  {{"allocate_ip", "succeeded"}, {"create_port", "succeeded"}, {"boot", "succeeded"}})});
    Outcome r = Cogs({"server", "create", "web-1", "--flavor", "m1.tiny", "--image", "cirros", "--network",
                      "n1", "--wait"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.err,
              "allocate_ip done (1/3)\n"
              "server web-1: BUILD\n"
              "create_port done (2/3)\n"
              "boot done (3/3)\n"
              "server web-1: ACTIVE\n");
    EXPECT_THAT(r.out, HasSubstr("status       ACTIVE"));
}

// A bulk create (--min-count/--max-count): one request, its reservation and the servers it made
// printed as a table; with --wait each is followed to ACTIVE, and one that fails fails the command.
TEST_F(CliTest, ServerCreateWithCountsPrintsTheReservationAndEveryServer) {
    api_.Add("networks", {{"name", "n1"}});
    json::array made;
    for (int i = 1; i <= 3; ++i) {
        made.push_back(json::object{{"id", Uuid(600 + i)},
                                    {"name", "web-" + std::to_string(i)},
                                    {"status", "BUILD"},
                                    {"workflow_id", Uuid(77)}});
    }
    const std::string answer = json::serialize(json::object{{"reservation_id", "r-42"}, {"servers", made}});
    api_.Fail("POST", "/v1/servers", 202, answer, 1);
    Outcome r = Cogs({"server", "create", "web", "--flavor", "m1.tiny", "--image", "cirros", "--network",
                      "n1", "--min-count", "3", "--max-count", "5"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/servers");
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(Parse(posts[0].body).at("min_count").as_int64(), 3);
    EXPECT_EQ(Parse(posts[0].body).at("max_count").as_int64(), 5);
    EXPECT_THAT(r.out, HasSubstr("reservation r-42: 3 servers\n"));
    for (int i = 1; i <= 3; ++i) {
        EXPECT_THAT(r.out, HasSubstr(Uuid(600 + i)));
        EXPECT_THAT(r.out, HasSubstr("web-" + std::to_string(i)));
    }

    // --wait: each followed to ACTIVE; the third fails, and so does the command (after the table).
    api_.Fail("POST", "/v1/servers", 202, answer, 1);
    api_.Script("/v1/servers/" + Uuid(601), {Server(Uuid(601), "ACTIVE")});
    api_.Script("/v1/servers/" + Uuid(602), {Server(Uuid(602), "ACTIVE")});
    api_.Script("/v1/servers/" + Uuid(603), {Server(Uuid(603), "ERROR", "no valid host")});
    api_.Script("/v1/workflows/" + Uuid(77), {Workflow("succeeded", {{"boot", "succeeded"}})});
    r = Cogs({"server", "create", "web", "--flavor", "m1.tiny", "--image", "cirros", "--network", "n1",
              "--min-count", "3", "--wait", "-o", "json"});
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("no valid host"));
    const json::value out = Parse(r.out);
    EXPECT_EQ(out.at("reservation_id").as_string(), "r-42");
    ASSERT_EQ(out.at("servers").as_array().size(), 3u);
    EXPECT_EQ(out.at("servers").at(0).at("status").as_string(), "ACTIVE");
    EXPECT_EQ(out.at("servers").at(2).at("status").as_string(), "BUILD") << "the last state known";

    // Without counts, none is sent.
    api_.Fail("POST", "/v1/servers", 202, json::serialize(Server(Uuid(601), "BUILD")), 1);
    r = Cogs({"server", "create", "web", "--flavor", "m1.tiny", "--image", "cirros", "--network", "n1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    posts = api_.seen("POST", "/v1/servers");
    EXPECT_FALSE(Parse(posts.back().body).as_object().contains("min_count"));
    EXPECT_FALSE(Parse(posts.back().body).as_object().contains("max_count"));
}

TEST_F(CliTest, WaitFailsWithTheFaultWhenTheCreateRollsBack) {
    api_.Add("networks", {{"name", "n1"}});
    const std::string id = Uuid(2);
    const std::string fault = "no valid host: 3 hosts; enabled: 3 passed; ram: 0 passed (3 eliminated)";
    api_.Script("/v1/servers/" + id, {Server(id, "BUILD"), Server(id, "ERROR", fault)});
    api_.Script("/v1/workflows/" + Uuid(502),
                {Workflow("running", {{"allocate_ip", "succeeded"}, {"schedule", "running"}}),
                 Workflow("rolled_back", {{"allocate_ip", "compensated"}, {"schedule", "failed"}}, fault)});
    Outcome r = Cogs({"server", "create", "web-1", "--flavor", "m1.huge", "--image", "cirros", "--network",
                      "n1", "--wait"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr("allocate_ip done (1/2)\n"));
    EXPECT_THAT(r.err, HasSubstr("workflow rolled_back: " + fault + "\n"));
    EXPECT_THAT(r.err, HasSubstr("allocate_ip undone\n"));
    EXPECT_THAT(r.err, HasSubstr("schedule failed\n"));
    EXPECT_THAT(r.err, HasSubstr("error: server web-1 is ERROR: " + fault + " (rolled_back)\n"));
}

TEST_F(CliTest, WaitForADeleteEndsWhenTheResourceIsGone) {
    const std::string id = api_.Add("volumes", {{"name", "data"}, {"status", "available"}, {"size_gb", 1}});
    json::object deleting{{"volume", json::object{{"id", id}, {"name", "data"}, {"status", "deleting"}}}};
    api_.Script("/v1/volumes/" + id, {deleting, deleting, json::object{{"__status", 404}}});
    Outcome r = Cogs({"volume", "delete", "data", "--wait"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "volume data deleted\n");
    EXPECT_THAT(r.err, HasSubstr("volume data: deleted\n"));
    EXPECT_EQ(api_.seen("DELETE", "/v1/volumes/").size(), 1u);

    // A delete that ends in ERROR fails.
    const std::string id2 = api_.Add("networks", {{"name", "busy"}, {"status", "ACTIVE"}});
    json::object err{
        {"network", json::object{{"id", id2}, {"status", "ERROR"}, {"fault", {{"message", "in use"}}}}}};
    api_.Script("/v1/networks/" + id2, {err});
    r = Cogs({"network", "delete", "busy", "--wait"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("error: network busy is ERROR: in use (error)\n"));
}

TEST_F(CliTest, WaitForAnActionExpectsItsStatus) {
    const std::string vol = api_.Add("volumes", {{"name", "data"}, {"status", "available"}});
    const std::string srv =
        api_.Add("servers", {{"name", "web-1"}, {"status", "ACTIVE"}, {"workflow_id", Uuid(77)}});
    json::object attaching{{"volume", json::object{{"id", vol}, {"status", "attaching"}}}};
    json::object in_use{{"volume", json::object{{"id", vol}, {"status", "in-use"}, {"server_id", srv}}}};
    api_.Script("/v1/volumes/" + vol, {attaching, in_use});
    Outcome r = Cogs({"volume", "attach", "data", "--server", "web-1", "--wait"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/volumes/" + vol + "/attach");
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(Parse(posts[0].body).at("server_id").as_string(), srv);
    EXPECT_THAT(r.out, HasSubstr("in-use"));

    // stop --wait on a server that comes back ACTIVE (the workflow rolled back) fails.
    api_.Script("/v1/servers/" + srv, {Server(srv, "STOPPING"), Server(srv, "ACTIVE")});
    api_.Script("/v1/workflows/" + Uuid(77),
                {Workflow("rolled_back", {{"stop", "failed"}}, "hypervisor said no")});
    r = Cogs({"server", "stop", "web-1", "--wait"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("error: server web-1 was rolled back: hypervisor said no (rolled_back)"));
}

// ---- the rest ------------------------------------------------------------------------------------

TEST_F(CliTest, WorkflowShowPrintsTheStepTimeline) {
    json::array steps{json::object{{"name", "allocate_ip"},
                                   {"state", "succeeded"},
                                   {"attempts", 1},
                                   {"started_at", "2026-11-26T10:00:00.005Z"},
                                   {"finished_at", "2026-11-26T10:00:00.017Z"}},
                      json::object{{"name", "boot"},
                                   {"state", "failed"},
                                   {"attempts", 3},
                                   {"started_at", "2026-11-26T10:00:00.020Z"},
                                   {"finished_at", "2026-11-26T10:00:02.520Z"},
                                   {"error", "unavailable: hypervisor down"}},
                      json::object{{"name", "attach_volume"}, {"state", "skipped"}, {"attempts", 0}}};
    api_.Script("/v1/workflows/" + Uuid(5),
                {json::object{{"workflow", json::object{{"id", Uuid(5)},
                                                        {"type", "server.create"},
                                                        {"state", "rolled_back"},
                                                        {"reason", "boot failed"},
                                                        {"created_at", "2026-11-26T10:00:00Z"},
                                                        {"finished_at", "2026-11-26T10:00:03.100Z"},
                                                        {"steps", steps}}}}});
    Outcome r = Cogs({"workflow", "show", Uuid(5)});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "workflow " + Uuid(5) +
                         "  server.create  rolled_back\n"
                         "reason: boot failed\n"
                         "created: 2026-11-26T10:00:00Z  took 3.1s\n"
                         "\n"
                         "STEP           STATE      ATTEMPTS  START  DURATION  ERROR\n"
                         "allocate_ip    succeeded  1         +5ms   12ms\n"
                         "boot           failed     3         +20ms  2.5s      unavailable: hypervisor down\n"
                         "attach_volume  skipped    0\n");
}

TEST_F(CliTest, TokenRotateSendsTheGraceAndSaysTheSecretIsShownOnce) {
    const std::string id = api_.Add("tokens", {{"project_id", Uuid(999)}, {"role", "member"}});
    Outcome r = Cogs({"token", "rotate", id, "--grace", "30"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto posts = api_.seen("POST", "/v1/tokens/" + id + "/rotate");
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(Parse(posts[0].body), Parse(R"({"grace_s":30})"));
    EXPECT_THAT(r.err, HasSubstr("shown only this once"));
    ASSERT_EQ(Cogs({"token", "rotate", id}).rc, 0);
    // Without --grace: 0, the API's default (the old secret stops at once).
    EXPECT_EQ(Parse(api_.seen("POST", "/v1/tokens/" + id + "/rotate").back().body),
              Parse(R"({"grace_s":0})"));
}

TEST_F(CliTest, UserCreateReadsThePasswordFromAFileOrStandardInputNeverFromTheCommandLine) {
    const std::string demo = api_.Add("projects", {{"name", "demo"}});
    auto sent = [&] { return Parse(api_.seen("POST", "/v1/users").back().body); };
    auto expected = [&](const std::string& name, const std::string& password) {
        return json::value(
            json::object{{"name", name}, {"project_id", demo}, {"role", "member"}, {"password", password}});
    };
    // The first line of the file, without its line end (CRLF too); the rest is not read.
    const std::string file = home_dir_.Write("alice.pw", "s3cret pass word\nsecond line\n");
    Outcome r =
        Cogs({"user", "create", "alice", "--project", "demo", "--role", "member", "--password-file", file});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(sent(), expected("alice", "s3cret pass word"));
    r = Cogs({"user", "create", "bob", "--project", "demo", "--role", "member", "--password-file",
              home_dir_.Write("bob.pw", "bob's password\r\n")});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(sent(), expected("bob", "bob's password"));
    // "-": standard input (a pipe from a secret store), with or without a line end.
    stdin_ = "from a pipe";
    r = Cogs({"user", "create", "carol", "--project", demo, "--role", "member", "--password-file", "-"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(sent(), expected("carol", "from a pipe"));
    ASSERT_EQ(api_.seen("POST", "/v1/users").size(), 3u);

    // Usage errors name the flag and the file, never what it holds, and send nothing.
    r = Cogs({"user", "create", "dave", "--project", "demo", "--role", "member", "--password-file",
              home_dir_.path() + "/missing.pw"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("--password-file"));
    EXPECT_THAT(r.err, HasSubstr("missing.pw"));
    r = Cogs({"user", "create", "dave", "--project", "demo", "--role", "member", "--password-file",
              home_dir_.Write("empty.pw", "\nnot the first line\n")});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("empty"));
    EXPECT_THAT(r.err, Not(HasSubstr("not the first line")));
    stdin_.clear();
    EXPECT_EQ(
        Cogs({"user", "create", "dave", "--project", "demo", "--role", "member", "--password-file", "-"}).rc,
        2);
    EXPECT_EQ(Cogs({"user", "create", "dave", "--project", "demo", "--role", "member"}).rc, 2);
    EXPECT_EQ(
        Cogs({"user", "create", "dave", "--project", "demo", "--role", "host", "--password-file", file}).rc,
        2);
    // A password on the command line would be in `ps` and the shell's history: there is no such flag.
    EXPECT_EQ(Cogs({"user", "create", "dave", "--project", "demo", "--role", "member", "--password", "x"}).rc,
              2);
    EXPECT_EQ(api_.seen("POST", "/v1/users").size(), 3u);

    // list, show and delete by name.
    r = Cogs({"user", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("ID"));
    EXPECT_THAT(r.out, HasSubstr("ROLE"));
    EXPECT_THAT(r.out, HasSubstr("carol"));
    std::string alice;
    const json::value listed = Parse(Cogs({"user", "list", "-o", "json"}).out);
    for (const auto& item : listed.at("users").as_array()) {
        if (item.at("name") == "alice") alice = item.at("id").as_string();
    }
    ASSERT_FALSE(alice.empty());
    r = Cogs({"user", "show", "alice"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen().back().target, "/v1/users/" + alice);
    r = Cogs({"user", "delete", "alice"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("DELETE", "/v1/users/" + alice).size(), 1u);
    EXPECT_THAT(r.out, HasSubstr("user alice deleted"));
}

TEST_F(CliTest, AuditPagesNewestFirstWithItsFilters) {
    auto entry = [](int64_t seq, int status, const std::string& method, const std::string& path) {
        return json::object{{"seq", seq},
                            {"time_ms", 1767225600000 + seq},
                            {"time", fmt::format("2026-01-01T00:00:00.{:03}Z", seq)},
                            {"token_id", "tok-1"},
                            {"project", "p1"},
                            {"role", "member"},
                            {"method", method},
                            {"path", path},
                            {"resource_id", "r" + std::to_string(seq)},
                            {"status", status},
                            {"trace_id", "t" + std::to_string(seq)},
                            {"peer", "10.0.0.1"}};
    };
    api_.Script("/v1/audit", {json::object{{"audit", json::array{entry(9, 202, "POST", "/v1/servers"),
                                                                 entry(8, 403, "DELETE", "/v1/servers/r8")}},
                                           {"next_before", 8}},
                              json::object{{"audit", json::array{entry(5, 401, "POST", "/v1/networks")}},
                                           {"next_before", 0}}});
    Outcome r = Cogs({"audit", "--token", "tok-1", "--project", "demo", "--since", "2h", "--limit", "5"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto gets = api_.seen("GET", "/v1/audit");
    ASSERT_EQ(gets.size(), 2u);
    EXPECT_THAT(gets[0].target, HasSubstr("token=tok-1&project=demo&since="));
    EXPECT_THAT(gets[0].target, HasSubstr("limit=5"));
    EXPECT_THAT(gets[1].target, HasSubstr("before=8&limit=3"));
    EXPECT_THAT(r.out, HasSubstr("TIME"));
    EXPECT_THAT(r.out, HasSubstr("403     DELETE  /v1/servers/r8"));
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 4);  // the header and three entries
    EXPECT_EQ(Cogs({"audit", "--since", "yesterday"}).rc, 2);
    r = Cogs({"audit", "--limit", "1", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(r.out).at("audit").as_array().size(), 1u);
}

TEST_F(CliTest, QuotasTokensAndHosts) {
    const std::string demo = api_.Add("projects", {{"name", "demo"}});
    Outcome r = Cogs({"project", "quota", "set", "demo", "--vcpus", "8", "--servers", "-1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto puts = api_.seen("PUT", "/v1/projects/" + demo + "/quotas");
    ASSERT_EQ(puts.size(), 1u);
    EXPECT_EQ(Parse(puts[0].body), Parse(R"({"servers":-1,"vcpus":8})"));
    EXPECT_EQ(Cogs({"project", "quota", "set", "demo"}).rc, 2);
    // A value that is not a number is a usage error, not a crash; nothing is sent.
    EXPECT_EQ(Cogs({"project", "quota", "set", "demo", "--servers", "x"}).rc, 2);
    EXPECT_EQ(Cogs({"project", "quota", "set", "demo", "--servers", "-2"}).rc, 2);
    EXPECT_EQ(api_.seen("PUT", "/v1/projects/" + demo + "/quotas").size(), 1u);

    r = Cogs({"token", "create", "--project", "demo", "--role", "member", "--name", "ci"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(api_.seen("POST", "/v1/tokens").back().body),
              Parse(fmt::format(R"({{"project_id":"{}","role":"member","name":"ci"}})", demo)));
    EXPECT_THAT(r.err, HasSubstr("shown only this once"));
    EXPECT_EQ(Cogs({"token", "create", "--project", "demo", "--role", "owner"}).rc, 2);

    api_.Add("hosts", {{"id", "host-1"},
                       {"name", "host-1"},
                       {"state", "suspect"},
                       {"enabled", true},
                       {"draining", false},
                       {"availability_zone", "nova"},
                       {"vcpus", 8},
                       {"ram_mb", 16384},
                       {"disk_gb", 100},
                       {"used", {{"vcpus", 2}, {"ram_mb", 1024}, {"disk_gb", 2}}},
                       {"servers", 2}});
    r = Cogs({"host", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out,
              "NAME    STATE    ENABLED  DRAINING  AZ    VCPUS  RAM_MB      DISK_GB  SERVERS\n"
              "host-1  suspect  true     false     nova  2/8    1024/16384  2/100    2\n");
    r = Cogs({"host", "disable", "host-1", "--reason", "maintenance"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("POST", "/v1/hosts/host-1/disable").at(0).body, R"({"reason":"maintenance"})");
    r = Cogs({"host", "drain", "host-1", "--reason", "new disks"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("POST", "/v1/hosts/host-1/drain").at(0).body, R"({"reason":"new disks"})");
    r = Cogs({"host", "delete", "host-1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(api_.seen("DELETE", "/v1/hosts/host-1").size(), 1u);

    api_.Add("replicas", {{"id", "cogsd-1"},
                          {"role", "leader"},
                          {"address", "http://10.0.0.1:8780"},
                          {"version", "dev"},
                          {"lease_age_ms", 120}});
    api_.Add("replicas", {{"id", "cogsd-2"},
                          {"role", "follower"},
                          {"address", "http://10.0.0.2:8780"},
                          {"version", "dev"},
                          {"lease_age_ms", 310}});
    r = Cogs({"replica", "list"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out,
              "ID       ROLE      ADDRESS               VERSION  LEASE_AGE_MS\n"
              "cogsd-1  leader    http://10.0.0.1:8780  dev      120\n"
              "cogsd-2  follower  http://10.0.0.2:8780  dev      310\n");
}

// ---- observability: top, events, log levels ---------------------------------------------------------

// A cogsd's /metrics, `n` seconds of a steady load into its life: 5 server.create started and 4
// finished per second (one in four rolled back, all in 0.1–1 s), 10 API requests per second.
std::string CogsdMetrics(int n) {
    std::string t =
        "# HELP cogs_workflows_in_flight Workflows not terminal.\n"
        "# TYPE cogs_workflows_in_flight gauge\n";
    t += fmt::format("cogs_workflows_in_flight {}\n", 3 + n);
    t += "# TYPE cogs_workflows_started_total counter\n";
    t += fmt::format("cogs_workflows_started_total{{type=\"server.create\"}} {}\n", 5 * n);
    t += "# TYPE cogs_workflows_finished_total counter\n";
    t += fmt::format("cogs_workflows_finished_total{{type=\"server.create\",outcome=\"succeeded\"}} {}\n",
                     3 * n);
    t += fmt::format("cogs_workflows_finished_total{{type=\"server.create\",outcome=\"rolled_back\"}} {}\n",
                     n);
    t += "# TYPE cogs_workflow_duration_seconds histogram\n";
    for (const char* le : {"0.01", "0.1"}) {
        t += fmt::format("cogs_workflow_duration_seconds_bucket{{type=\"server.create\",le=\"{}\"}} 0\n", le);
    }
    for (const char* le : {"1", "+Inf"}) {
        t += fmt::format("cogs_workflow_duration_seconds_bucket{{type=\"server.create\",le=\"{}\"}} {}\n", le,
                         4 * n);
    }
    t += fmt::format("cogs_workflow_duration_seconds_sum{{type=\"server.create\"}} {}\n", 2 * n);
    t += fmt::format("cogs_workflow_duration_seconds_count{{type=\"server.create\"}} {}\n", 4 * n);
    t += fmt::format("cogs_http_requests_total{{route=\"/v1/servers\",method=\"POST\",code=\"202\"}} {}\n",
                     10 * n);
    t += "cogs_bulkhead_in_use{service=\"compute\"} 2\ncogs_bulkhead_limit{service=\"compute\"} 16\n";
    t += "cogs_hosts{state=\"up\"} 1\ncogs_hosts{state=\"down\"} 1\n";
    return t;
}

void AddHosts(FakeApi& api) {
    api.Add("hosts", {{"id", "host-1"}, {"name", "host-1"}, {"state", "up"}, {"enabled", true}});
    api.Add("hosts", {{"id", "host-2"}, {"name", "host-2"}, {"state", "down"}, {"enabled", true}});
}

TEST_F(CliTest, TopOnceComputesTheFiguresOfTwoScrapes) {
    AddHosts(api_);
    api_.ScriptMetrics({CogsdMetrics(10), CogsdMetrics(20)});
    Outcome r = Cogs({"top", "--once", "--interval", "0.05"});
    ASSERT_EQ(r.rc, 0) << r.err;
    // The figures that do not depend on the exact time between the scrapes.
    EXPECT_THAT(r.out, HasSubstr("WORKFLOWS  in flight 23  started "));
    EXPECT_THAT(r.out, HasSubstr("errors 25.0%  p50 550ms  p99 991ms\n"));
    EXPECT_THAT(r.out, HasSubstr("2/16 (0 waiting)"));
    EXPECT_THAT(r.out, HasSubstr("HOSTS  down 1 up 1  (host-2 down)\n"));
    EXPECT_THAT(r.out, Not(HasSubstr("\x1b[2J")));  // --once does not clear the screen
    auto scrapes = api_.seen("GET", "/metrics");
    ASSERT_EQ(scrapes.size(), 2u);
    EXPECT_EQ(scrapes[0].authorization, "");  // /metrics needs no token
    EXPECT_EQ(api_.seen("GET", "/v1/hosts").at(0).authorization, "Bearer admin-token");

    api_.ScriptMetrics({CogsdMetrics(10), CogsdMetrics(20)});
    r = Cogs({"top", "--once", "--interval", "50ms", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const json::value j = Parse(r.out);
    EXPECT_EQ(j.at("workflows").at("in_flight").as_double(), 23);
    EXPECT_DOUBLE_EQ(j.at("workflows").at("error_rate").as_double(), 0.25);
    EXPECT_GT(j.at("workflows").at("started_per_s").as_double(), 0);
    EXPECT_DOUBLE_EQ(j.at("workflows").at("by_type").at(0).at("p99_s").as_double(), 0.1 + 0.9 * 0.99);
    EXPECT_GT(j.at("api").at("requests_per_s").as_double(), 0);
    EXPECT_TRUE(j.at("store").at("commit_p99_s").is_null());  // nothing committed: no figure
    EXPECT_EQ(j.at("hosts").at("list").at(1).at("state").as_string(), "down");

    // Without a token the figures still come; the host list says why it is missing.
    env_.erase("COGS_TOKEN");
    api_.ScriptMetrics({CogsdMetrics(10), CogsdMetrics(20)});
    r = Cogs({"top", "--once", "--interval", "0.01"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("errors 25.0%"));
    EXPECT_THAT(r.out, HasSubstr("(no host list: missing or unknown token (unauthenticated))"));

    // -o json is for one frame; something that is not Prometheus text is an error.
    EXPECT_EQ(Cogs({"top", "-o", "json"}).rc, 2);
    EXPECT_EQ(Cogs({"top", "--once", "--interval", "soon"}).rc, 2);
    api_.ScriptMetrics({"<html>not metrics</html>"});
    r = Cogs({"top", "--once", "--interval", "0.01"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("/metrics is not Prometheus text: line 1: a metric name expected"));
}

TEST_F(CliTest, TopRedrawsAFrameAtEveryRefreshUntilStopped) {
    AddHosts(api_);
    // A /metrics that refuses (here: the fake wants a token for it) is shown, and retried, until it answers.
    int rounds = 0;
    Outcome down = Cogs({"top", "--interval", "0.01"}, [&] { return ++rounds == 2; });
    ASSERT_EQ(down.rc, 0) << down.err;
    EXPECT_THAT(
        down.out,
        HasSubstr("cannot scrape: missing or unknown token (unauthenticated); retrying every 10ms\n"));
    EXPECT_EQ(api_.seen("GET", "/metrics").size(), 2u);

    api_.ScriptMetrics({CogsdMetrics(1), CogsdMetrics(2), CogsdMetrics(3), CogsdMetrics(4)});
    Outcome r = Cogs({"top", "--interval", "0.02"}, [&] { return api_.seen("GET", "/metrics").size() >= 6; });
    ASSERT_EQ(r.rc, 0) << r.err;
    // Four more scrapes, three frames: each clears the screen and shows the in-flight count of its scrape.
    size_t frames = 0;
    for (size_t at = r.out.find("\x1b[2J\x1b[H"); at != std::string::npos;
         at = r.out.find("\x1b[2J\x1b[H", at + 1)) {
        ++frames;
    }
    EXPECT_EQ(frames, 3u);
    EXPECT_THAT(r.out, HasSubstr("in flight 5 "));
    EXPECT_THAT(r.out, HasSubstr("in flight 7 "));
    EXPECT_LT(r.out.find("in flight 5 "), r.out.find("in flight 7 "));
}

// An event as cogsd answers it.
json::object Event(const std::string& kind, const std::string& id, const std::string& type,
                   const std::string& message, int64_t time_ms = 1'795'000'000'000) {
    return json::object{{"time_ms", time_ms},      {"project", Uuid(999)},
                        {"resource_kind", kind},   {"resource_id", id},
                        {"workflow_id", Uuid(77)}, {"type", type},
                        {"message", message},      {"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"}};
}

TEST_F(CliTest, EventsListsTheHistoryPageByPageWithFilters) {
    const std::string srv = api_.Add("servers", {{"name", "web-1"}, {"status", "ACTIVE"}});
    api_.AddEvent(Event("server", srv, "created", "server web-1 requested", 1'795'000'000'123));
    api_.AddEvent(Event("volume", Uuid(50), "created", "volume data requested"));
    api_.AddEvent(Event("server", srv, "step_retried", "boot (compute.boot) attempt 1 failed: busy"));
    api_.AddEvent(Event("server", srv, "step_succeeded", "boot (compute.boot) done"));
    api_.AddEvent(Event("server", srv, "active", "server web-1 is ACTIVE"));
    api_.set_page_cap(2);  // the API pages at 2: the CLI follows next_after

    Outcome r = Cogs({"events", "--resource-kind", "server", "--resource-id", srv});
    ASSERT_EQ(r.rc, 0) << r.err;
    const std::string pad(36 - srv.size(), ' ');
    EXPECT_EQ(
        r.out,
        "TIME                      KIND     RESOURCE                              TYPE                  TRACE"
        "                             MESSAGE\n"
        "2026-11-18T11:06:40.123Z  server   " +
            srv + pad +
            "  created               "
            "4bf92f3577b34da6a3ce929d0e0e4736  server web-1 requested\n"
            "2026-11-18T11:06:40.000Z  server   " +
            srv + pad +
            "  step_retried          "
            "4bf92f3577b34da6a3ce929d0e0e4736  boot (compute.boot) attempt 1 failed: busy\n"
            "2026-11-18T11:06:40.000Z  server   " +
            srv + pad +
            "  step_succeeded        "
            "4bf92f3577b34da6a3ce929d0e0e4736  boot (compute.boot) done\n"
            "2026-11-18T11:06:40.000Z  server   " +
            srv + pad +
            "  active                "
            "4bf92f3577b34da6a3ce929d0e0e4736  server web-1 is ACTIVE\n");
    auto gets = api_.seen("GET", "/v1/events");
    ASSERT_EQ(gets.size(), 3u);  // 2 + 2 + an empty page
    EXPECT_EQ(gets[0].target, "/v1/events?resource_kind=server&resource_id=" + srv + "&after=0&limit=1000");
    EXPECT_THAT(gets[1].target, HasSubstr("&after=3&"));
    EXPECT_THAT(gets[2].target, HasSubstr("&after=5&"));

    r = Cogs({"events", "--workflow", Uuid(77), "--limit", "3", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const json::value j = Parse(r.out);
    ASSERT_EQ(j.at("events").as_array().size(), 3u);
    EXPECT_EQ(j.at("events").at(1).at("resource_kind").as_string(), "volume");
    EXPECT_EQ(j.at("events").at(2).at("seq").as_int64(), 3);
    EXPECT_THAT(api_.seen().back().target, HasSubstr("workflow_id=" + Uuid(77)));

    // A server's history by name, through its own path; by id once it is deleted (no lookup).
    r = Cogs({"server", "events", "web-1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("TIME                      TYPE                  TRACE"));
    EXPECT_THAT(r.out,
                HasSubstr("step_retried          4bf92f3577b34da6a3ce929d0e0e4736  boot (compute.boot) "
                          "attempt 1 failed: busy\n"));
    EXPECT_THAT(r.out, Not(HasSubstr("volume data")));
    EXPECT_EQ(api_.seen("GET", "/v1/servers/" + srv + "/events").size(), 3u);
    const std::string gone = Uuid(60);
    api_.AddEvent(Event("volume", gone, "deleted", "volume old deleted"));
    r = Cogs({"volume", "events", gone, "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(Parse(r.out).at("events").at(0).at("type").as_string(), "deleted");
    EXPECT_EQ(api_.seen("GET", "/v1/volumes?").size(), 0u);

    // Hosts are named: no lookup.
    api_.AddEvent(Event("host", "host-2", "down", "host-2 missed its heartbeats"));
    r = Cogs({"host", "events", "host-2"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_THAT(
        r.out,
        HasSubstr("down                  4bf92f3577b34da6a3ce929d0e0e4736  host-2 missed its heartbeats"));
    EXPECT_EQ(api_.seen("GET", "/v1/hosts/").at(0).target, "/v1/hosts/host-2/events?after=0&limit=1000");

    EXPECT_EQ(Cogs({"events", "--follow", "--limit", "3"}).rc, 2);
}

TEST_F(CliTest, EventsFollowPrintsWhatComesAfterTheHistory) {
    const std::string srv = Uuid(40);
    api_.AddEvent(Event("server", srv, "created", "server web-1 requested"));
    api_.AddEvent(Event("server", srv, "step_succeeded", "allocate_ip (network.allocate_ip) done"));
    int polls = 0;
    Outcome r = Cogs({"server", "events", srv, "--follow", "--interval", "0.01"}, [&] {
        // After the history: one new event, then stop after the poll that brings it.
        if (++polls == 1) {
            api_.AddEvent(Event("server", srv, "active", "server web-1 is ACTIVE"));
            return false;
        }
        return true;
    });
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 4);  // the header once, three events once each
    EXPECT_THAT(r.out, HasSubstr("server web-1 is ACTIVE\n"));
    auto gets = api_.seen("GET", "/v1/servers/" + srv + "/events");
    EXPECT_THAT(gets.back().target, HasSubstr("after=3"));

    // With -o json, --follow prints one JSON object per line.
    polls = 0;
    r = Cogs({"-o", "json", "events", "--follow", "--interval", "0.01"}, [&] { return ++polls >= 1; });
    ASSERT_EQ(r.rc, 0) << r.err;
    std::istringstream lines(r.out);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        EXPECT_EQ(Parse(line).at("seq").as_int64(), ++n);
    }
    EXPECT_EQ(n, 3);
}

TEST_F(CliTest, LogLevelShowsAndSetsCogsdsLevels) {
    Outcome r = Cogs({"log-level"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "COMPONENT  LEVEL\n*          info\nengine     info\n");
    EXPECT_EQ(Cogs({"log-level", "get"}).out, r.out);

    r = Cogs({"log-level", "set", "engine", "debug"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "COMPONENT  LEVEL\n*          info\nengine     debug\n");
    auto puts = api_.seen("PUT", "/v1/log-levels");
    ASSERT_EQ(puts.size(), 1u);
    EXPECT_EQ(Parse(puts[0].body), Parse(R"({"engine":"debug"})"));
    EXPECT_EQ(Parse(Cogs({"log-level", "-o", "json"}).out).at("engine").as_string(), "debug");

    r = Cogs({"log-level", "set", "engine", "loud"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "error: 'loud' is not a log level (invalid_argument)\n");
    EXPECT_EQ(Cogs({"log-level", "set", "engine"}).rc, 2);
    env_["COGS_TOKEN"] = "reader-token";
    r = Cogs({"log-level", "set", "*", "warn"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("hint: this token's role"));
}

TEST_F(CliTest, OneCommandIsOneTraceAndTraceShowsItsId) {
    api_.Add("networks", {{"name", "n1"}, {"status", "ACTIVE"}});
    Outcome r = Cogs({"--trace", "port", "create", "--network", "n1", "--name", "p1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    ASSERT_THAT(r.err, ::testing::MatchesRegex("trace: [0-9a-f]{32}\n"));
    const std::string trace = r.err.substr(7, 32);
    auto seen = api_.seen();
    ASSERT_EQ(seen.size(), 2u);  // the network's lookup and the create
    std::set<std::string> spans;
    for (const auto& s : seen) {
        ASSERT_THAT(s.traceparent, ::testing::MatchesRegex("00-[0-9a-f]{32}-[0-9a-f]{16}-01"));
        EXPECT_EQ(s.traceparent.substr(3, 32), trace);
        spans.insert(s.traceparent.substr(36, 16));
    }
    EXPECT_EQ(spans.size(), 2u);  // a span per request
    // The next command is another trace; without --trace nothing is printed.
    r = Cogs({"port", "list"});
    EXPECT_EQ(r.err, "");
    EXPECT_NE(api_.seen().back().traceparent.substr(3, 32), trace);
}

TEST_F(CliTest, WorkflowShowPrintsItsResourceAndTraceId) {
    api_.Script("/v1/workflows/" + Uuid(6),
                {json::object{{"workflow", json::object{{"id", Uuid(6)},
                                                        {"type", "server.create"},
                                                        {"state", "succeeded"},
                                                        {"resource_kind", "server"},
                                                        {"resource_id", Uuid(40)},
                                                        {"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"},
                                                        {"created_at", "2026-11-26T10:00:00Z"},
                                                        {"steps", json::array{}}}}}});
    Outcome r = Cogs({"workflow", "show", Uuid(6)});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "workflow " + Uuid(6) +
                         "  server.create  succeeded\n"
                         "resource: server " +
                         Uuid(40) +
                         "\n"
                         "trace: 4bf92f3577b34da6a3ce929d0e0e4736\n"
                         "created: 2026-11-26T10:00:00Z\n"
                         "\n"
                         "STEP  STATE  ATTEMPTS  START  DURATION  ERROR\n");
}

TEST(ApiTest, ParseUrl) {
    auto e = ParseUrl("http://127.0.0.1:8780/");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "127.0.0.1");
    EXPECT_EQ(e->port, 8780);
    EXPECT_EQ(e->prefix, "");
    EXPECT_EQ(e->url, "http://127.0.0.1:8780");
    e = ParseUrl("localhost/cloud");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "127.0.0.1");
    EXPECT_EQ(e->port, 80);
    EXPECT_EQ(e->prefix, "/cloud");
    e = ParseUrl("http://[::1]:9000");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "::1");
    EXPECT_EQ(e->port, 9000);
    e = ParseUrl("https://cloud.example:8443/");
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->tls);
    EXPECT_EQ(e->host, "cloud.example");
    EXPECT_EQ(e->port, 8443);
    EXPECT_EQ(e->url, "https://cloud.example:8443");
    e = ParseUrl("https://localhost");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "localhost");  // kept: the certificate names it
    EXPECT_EQ(e->port, 443);
    EXPECT_THAT(ParseUrl("ftp://x").error(), HasSubstr("not an http:// or https:// URL"));
    EXPECT_THAT(ParseUrl("http://x:99999").error(), HasSubstr("bad port"));
    EXPECT_THAT(ParseUrl("http://:80").error(), HasSubstr("no host"));
    EXPECT_TRUE(LooksLikeUuid("00000000-0000-4000-8000-000000000001"));
    EXPECT_FALSE(LooksLikeUuid("net1"));
}

// `cogs dev`'s flags are checked before anything starts: replicas need PostgreSQL.
TEST_F(CliTest, DevRefusesReplicasWithoutPostgres) {
    const std::string dir = (home_ / "dev").string();
    Outcome r = Cogs({"dev", "--data-dir", dir, "--replicas", "3"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_EQ(r.err,
              "cogs dev: --replicas 3 needs --store postgres (replicas share one PostgreSQL database; SQLite "
              "serves a single cogsd)\n");
    EXPECT_FALSE(fs::exists(dir)) << "nothing made, nothing started";
    r = Cogs({"dev", "--data-dir", dir, "--store", "mysql"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("--store"));
    r = Cogs({"dev", "--data-dir", dir, "--store", "postgres", "--replicas", "0"});
    EXPECT_EQ(r.rc, 2) << "at least one replica";
    EXPECT_FALSE(fs::exists(dir));
}

// --driver: sim or container; a machine that cannot run containers is told what it lacks, before
// anything is made.
TEST_F(CliTest, DevChecksItsDriverBeforeAnythingStarts) {
    const std::string dir = (home_ / "dev").string();
    Outcome r = Cogs({"dev", "--data-dir", dir, "--driver", "kvm"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_THAT(r.err, HasSubstr("--driver"));
    EXPECT_FALSE(fs::exists(dir));
    const std::vector<std::string> missing = MissingForContainers();
    if (missing.empty()) {
        GTEST_SKIP() << "this machine runs containers (root, runc, busybox, ip): `cogs dev --driver "
                        "container` would start a cloud";
    }
    r = Cogs({"dev", "--data-dir", dir, "--driver", "container"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("--driver container cannot run on this machine"));
    for (const std::string& m : missing) {
        EXPECT_THAT(r.err, HasSubstr(m));
    }
    EXPECT_FALSE(fs::exists(dir)) << "nothing made, nothing started";
}

TEST(OutputTest, Durations) {
    EXPECT_EQ(FormatDurationMs(850), "850ms");
    EXPECT_EQ(FormatDurationMs(3200), "3.2s");
    EXPECT_EQ(FormatDurationMs(245'000), "4m05s");
}

// `cogs create COLLECTION -f FILE`: the file's YAML becomes the request's JSON as workflow inputs do.
TEST(KindCommandsTest, AResourceFileBecomesItsJsonBody) {
    auto body = YamlBodyToJson(
        "name: example.org\nttl: 300\nweight: 1.5\ndnssec: true\nserial: '42'\ntags: [a, b]\n", "zone.yaml");
    ASSERT_TRUE(body.has_value()) << body.error().message;
    EXPECT_EQ(
        boost::json::parse(*body),
        boost::json::parse(
            R"({"name":"example.org","ttl":300,"weight":1.5,"dnssec":true,"serial":"42","tags":["a","b"]})"));
    auto list = YamlBodyToJson("# a zone\n- name: a.org\n", "zone.yaml");
    ASSERT_FALSE(list.has_value());
    EXPECT_EQ(list.error().message, "zone.yaml:2: the body must be a mapping of the resource's fields");
    auto two = YamlBodyToJson("name: a.org\n---\nname: b.org\n", "zone.yaml");
    ASSERT_FALSE(two.has_value());
    EXPECT_EQ(two.error().message, "zone.yaml:3: one resource a file: a second document");
    EXPECT_FALSE(YamlBodyToJson("", "zone.yaml").has_value());
    EXPECT_FALSE(YamlBodyToJson("name: [unclosed\n", "zone.yaml").has_value());
}

}  // namespace
}  // namespace cogs::cli
