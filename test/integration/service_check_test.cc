// `cogs service check` (cogs/cli/internal/service_check.h) on real processes: the built `cogs` binary
// against cogs-network, cogs-volume (also over mutual TLS), cogs-compute (long actions) and cogs-sim
// (also with long actions) started with a token file, each passing every check and left as the checker found
// it; against a service written here with one protocol bug at a time, each failing exactly the check that
// names it (and a service that never answers failing without hanging the checker); and against the Python
// example service examples/dns/cogs_dns.py, which passes, and fails `replay` when started with
// --break-replays.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "cogs/http/server.h"
#include "cogs/pki/pki.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"
#include "test/support/temp_dir.h"
#include "test/support/threaded_server.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "token-of-the-service-check-test";

// What one run of `cogs service check ... -o json` said.
struct CheckRun {
    int exit_status = -1;
    std::string output;                         // stdout (the JSON), for messages
    std::string errors;                         // stderr
    std::map<std::string, std::string> result;  // check name -> "pass", "fail", "skip"
    std::map<std::string, std::string> detail;  // check name -> its detail

    std::string ResultOf(const std::string& name) const {
        return result.contains(name) ? result.at(name) : "";
    }
    std::string DetailOf(const std::string& name) const {
        return detail.contains(name) ? detail.at(name) : "";
    }

    // The checks whose result is `r`.
    std::set<std::string> With(const std::string& r) const {
        std::set<std::string> names;
        for (const auto& [name, got] : result) {
            if (got == r) {
                names.insert(name);
            }
        }
        return names;
    }
};

// Runs the built `cogs service check URL --token-file F <args> -o json` to its end.
CheckRun RunCheck(const std::string& url, const std::string& token_file, std::vector<std::string> args) {
    std::vector<std::string> argv{
        runtime::SiblingBinary("cogs"), "service", "check", url, "--token-file", token_file, "-o", "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    CheckRun run;
    auto done =
        runtime::RunCommand(argv, SteadyClock::now() + 240s, runtime::RunOptions{.separate_stderr = true});
    EXPECT_TRUE(done) << done.error().ToString();
    if (!done) {
        return run;
    }
    run.exit_status = done->exit_status;
    run.output = done->output;
    run.errors = done->errors;
    if (run.exit_status == 2) {
        return run;  // a usage error: nothing on stdout
    }
    boost::system::error_code ec;
    const json::value v = json::parse(run.output, ec);
    EXPECT_FALSE(ec) << run.output << run.errors;
    if (ec || !v.is_object()) {
        return run;
    }
    for (const json::value& c : v.at("checks").as_array()) {
        const std::string name(c.at("name").as_string());
        run.result[name] = std::string(c.at("result").as_string());
        run.detail[name] = std::string(c.at("detail").as_string());
    }
    return run;
}

std::string Describe(const CheckRun& run) { return run.output + run.errors; }

const std::set<std::string> kAllChecks{
    "health",   "inventory",         "auth",   "bad_requests",  "do",
    "replay",   "replay_other_body", "status", "undo_after_do", "undo_before_do",
    "deadline", "error_classes"};

// A service process on 127.0.0.1, port 0, with the test's token; stopped with the fixture.
class ServiceCheckTest : public ::testing::Test {
protected:
    void SetUp() override { token_file_ = dir_.Write("service.token", std::string(kToken) + "\n"); }

    // Starts `argv` + --listen/--port-file/--token-file (argv[0] a path); its URL.
    std::string Start(const std::string& name, std::vector<std::string> argv,
                      const std::string& scheme = "http") {
        const std::string port_file = dir_ / (name + ".port");
        argv.insert(argv.end(),
                    {"--listen", "127.0.0.1:0", "--port-file", port_file, "--token-file", token_file_});
        auto child = runtime::Child::Spawn(argv, {.log_path = dir_ / (name + ".log")});
        EXPECT_TRUE(child) << child.error().ToString();
        if (!child) {
            return "";
        }
        children_.push_back(std::move(*child));
        auto port = runtime::WaitForPortFile(port_file, SteadyClock::now() + 60s, &children_.back());
        EXPECT_TRUE(port) << port.error().ToString() << "\n"
                          << runtime::ReadFile(dir_ / (name + ".log")).value_or("");
        return port ? scheme + "://127.0.0.1:" + std::to_string(*port) : "";
    }

    std::string Inventory(const std::string& url) {
        ApiReply r = ApiClient(url, kToken).Must("GET", "/v1/inventory");
        EXPECT_EQ(r.status, 200) << r.text;
        return r.text;
    }

    // Every check passed, and the service holds what it held before.
    void ExpectConformant(const std::string& url, const std::vector<std::string>& args) {
        const std::string before = Inventory(url);
        const CheckRun run = RunCheck(url, token_file_, args);
        EXPECT_EQ(run.exit_status, 0) << Describe(run);
        EXPECT_EQ(run.With("pass"), kAllChecks) << Describe(run);
        EXPECT_EQ(Inventory(url), before) << "every check undoes what it made";
    }

    TempDir dir_{"cogs-service-check-test"};
    std::string token_file_;
    std::vector<runtime::Child> children_;  // killed when the test ends
};

TEST_F(ServiceCheckTest, TheNetworkServicePasses) {
    const std::string url = Start("cogs-network", {runtime::SiblingBinary("cogs-network")});
    ASSERT_FALSE(url.empty());
    ExpectConformant(url, {"--action", "create_network", "--input", R"({"id":"${unique}","name":"checked"})",
                           "--undo-action", "delete_network", "--undo-input", R"({"id":"${unique}"})"});
}

TEST_F(ServiceCheckTest, TheVolumeServicePassesAlsoOverMutualTls) {
    const std::vector<std::string> check{
        "--action",      "create_volume", "--input",      R"({"id":"${unique}","size_gb":1})",
        "--undo-action", "delete_volume", "--undo-input", R"({"id":"${output.id}"})"};
    const std::string url = Start("cogs-volume", {runtime::SiblingBinary("cogs-volume")});
    ASSERT_FALSE(url.empty());
    ExpectConformant(url, check);

    // Over TLS, where the service takes cogsd's certificate only.
    const pki::CaFiles ca{dir_ / "ca.crt", dir_ / "ca.key"};
    ASSERT_TRUE(pki::MakeCa(ca.cert_file, ca.key_file, "test-ca", 24h));
    ASSERT_TRUE(
        pki::Issue(ca, dir_ / "volume.crt", dir_ / "volume.key", "cogs-volume", {}, {"127.0.0.1"}, 24h));
    ASSERT_TRUE(pki::Issue(ca, dir_ / "cogsd.crt", dir_ / "cogsd.key", "cogsd", {}, {}, 24h));
    const std::string tls_url =
        Start("cogs-volume-tls",
              {runtime::SiblingBinary("cogs-volume"), "--tls-cert", dir_ / "volume.crt", "--tls-key",
               dir_ / "volume.key", "--tls-client-ca", ca.cert_file},
              "https");
    ASSERT_FALSE(tls_url.empty());
    std::vector<std::string> tls_check = check;
    tls_check.insert(tls_check.end(), {"--ca-file", ca.cert_file, "--client-cert", dir_ / "cogsd.crt",
                                       "--client-key", dir_ / "cogsd.key"});
    const CheckRun run = RunCheck(tls_url, token_file_, tls_check);
    EXPECT_EQ(run.exit_status, 0) << Describe(run);
    EXPECT_EQ(run.With("pass"), kAllChecks) << Describe(run);

    // Without the CA: a usage error, nothing sent.
    const CheckRun no_ca = RunCheck(tls_url, token_file_, check);
    EXPECT_EQ(no_ca.exit_status, 2) << Describe(no_ca);
    EXPECT_NE(no_ca.errors.find("--ca-file"), std::string::npos) << no_ca.errors;
}

TEST_F(ServiceCheckTest, TheSimulatedServicePassesWithItsActionsNamed) {
    // With its actions named, so that another name is 404 as in a real service; the undo gets the
    // engine's default compensation body.
    const std::string url = Start("cogs-sim", {runtime::SiblingBinary("cogs-sim"), "--action", "create_thing",
                                               "--action", "delete_thing"});
    ASSERT_FALSE(url.empty());
    ExpectConformant(url, {"--action", "create_thing", "--input", R"({"id":"${unique}"})", "--undo-action",
                           "delete_thing"});

    // Long actions: 202, then their status polled until done.
    const std::string slow =
        Start("cogs-sim-long",
              {runtime::SiblingBinary("cogs-sim"), "--action", "create_thing", "--action", "delete_thing",
               "--long-action", "create_thing", "--long-action", "delete_thing", "--accept-ms", "200"});
    ASSERT_FALSE(slow.empty());
    ExpectConformant(slow, {"--action", "create_thing", "--input", R"({"id":"${unique}"})", "--undo-action",
                            "delete_thing"});

    // Without its actions named it performs any name: bad_requests says so.
    const std::string any = Start("cogs-sim-any", {runtime::SiblingBinary("cogs-sim")});
    ASSERT_FALSE(any.empty());
    const CheckRun run = RunCheck(any, token_file_, {"--action", "create_thing", "--input", "{}"});
    EXPECT_EQ(run.exit_status, 1) << Describe(run);
    EXPECT_EQ(run.With("fail"), std::set<std::string>{"bad_requests"}) << Describe(run);
    EXPECT_NE(run.DetailOf("bad_requests").find("404 not_found for an action the service does not have"),
              std::string::npos)
        << Describe(run);
    EXPECT_EQ(run.With("skip"), (std::set<std::string>{"undo_after_do", "undo_before_do"})) << Describe(run);
}

TEST_F(ServiceCheckTest, TheComputeAgentPasses) {
    // create_instance is a long action: 202 for the boot, then its status.
    const std::string url = Start(
        "cogs-compute", {runtime::SiblingBinary("cogs-compute"), "--host", "host-1", "--boot-ms", "100"});
    ASSERT_FALSE(url.empty());
    ExpectConformant(
        url, {"--action", "create_instance", "--input",
              R"({"id":"${unique}","host":"host-1","vcpus":1,"ram_mb":64,"disk_gb":0,"image":"img"})",
              "--undo-action", "delete_instance", "--undo-input", R"({"id":"${unique}","host":"host-1"})"});
}

TEST_F(ServiceCheckTest, UsageErrorsExit2) {
    const std::string url = "http://127.0.0.1:1";
    EXPECT_EQ(RunCheck(url, token_file_, {"--action", "a", "--input", "[1]"}).exit_status, 2);
    EXPECT_EQ(RunCheck(url, token_file_, {"--action", "a", "--input", "{}", "--undo-input", "x"}).exit_status,
              2);
    EXPECT_EQ(RunCheck(url, dir_ / "missing.token", {"--action", "a", "--input", "{}"}).exit_status, 2);
    EXPECT_EQ(RunCheck("ftp://x", token_file_, {"--action", "a", "--input", "{}"}).exit_status, 2);
    // Nothing listening: health fails, the rest is skipped, at once.
    const CheckRun run = RunCheck(url, token_file_, {"--action", "a", "--input", "{}"});
    EXPECT_EQ(run.exit_status, 1) << Describe(run);
    EXPECT_EQ(run.With("fail"), std::set<std::string>{"health"}) << Describe(run);
}

// ---- a service with one protocol bug at a time --------------------------------------------------

enum class Bug {
    kNone,
    kNoAuth,              // serves callers without the token
    kReplayApplies,       // a recorded key is performed again (and answered as the first time)
    kIgnoresTombstone,    // a do after its undo is performed
    kIgnoresDeadline,     // a spent budget is performed anyway
    kRefusesWith500,      // a malformed request gets 500 {"code": "invalid_argument"}
    kUnknownActionIs400,  // an action it does not have is 400
    kHangs,               // never answers an action
};

// A small service speaking the protocol, right but for its Bug: actions "create" {"id"} and
// "delete" {"id"}, inventory {"things": [ids]} (an id created twice is there twice). Its handler runs
// on the server's thread.
class BuggyService {
public:
    explicit BuggyService(Bug bug) : bug_(bug) {}
    std::string url() const { return server_.url(); }

private:
    struct Answer {
        int status;
        std::string body;
    };

    static http::Response Reply(const Answer& a) {
        http::Response r;
        r.status = a.status;
        r.body = a.body;
        return r;
    }

    static Answer Error(int status, const std::string& code, const std::string& message) {
        return {status, json::serialize(json::object{
                            {"code", code}, {"message", message}, {"retryable", status >= 500}})};
    }

    // A refusal of a malformed request: right, or with the kRefusesWith500 bug.
    Answer BadRequest(const std::string& message) const {
        return bug_ == Bug::kRefusesWith500 ? Error(500, "invalid_argument", message)
                                            : Error(400, "invalid_argument", message);
    }

    void Handle(const http::Request& req, const http::Respond& respond) {
        std::lock_guard lock(mu_);
        const std::string path = req.Path();
        if (path == "/healthz") {
            respond(Reply({200, R"({"status":"ok"})"}));
            return;
        }
        if (bug_ != Bug::kNoAuth && req.Header("authorization") != std::string("Bearer ") + kToken) {
            http::Response r = Reply(Error(401, "unauthenticated", "missing or wrong bearer token"));
            r.headers.emplace_back("www-authenticate", "Bearer");
            respond(std::move(r));
            return;
        }
        if (path == "/v1/inventory") {
            json::array ids;
            for (const std::string& id : things_) {
                ids.push_back(json::value(id));
            }
            respond(Reply({200, json::serialize(json::object{{"things", std::move(ids)}})}));
        } else if (path == "/v1/actions/status") {
            auto it = ledger_.find(req.Query("key"));
            respond(Reply(it != ledger_.end() ? it->second : Error(404, "not_found", "key never recorded")));
        } else if (path.starts_with("/v1/actions/") && req.method == "POST") {
            if (bug_ == Bug::kHangs) {
                return;  // `respond` dropped uncalled: no answer, the client's deadline ends the exchange
            }
            respond(Reply(Action(path.substr(12), req)));
        } else {
            respond(Reply(Error(404, "not_found", "no route")));
        }
    }

    Answer Action(const std::string& action, const http::Request& req) {
        if (action != "create" && action != "delete") {
            return bug_ == Bug::kUnknownActionIs400 ? BadRequest("no such action")
                                                    : Error(404, "not_found", "no action");
        }
        const std::string key = req.Header("idempotency-key");
        if (key.empty()) {
            return BadRequest("missing header Idempotency-Key");
        }
        if (req.Header("x-cogs-deadline-ms") == "0" && bug_ != Bug::kIgnoresDeadline) {
            return Error(504, "deadline_exceeded", "the call's deadline passed before it arrived");
        }
        boost::system::error_code ec;
        const json::value input = json::parse(req.body, ec);
        if (ec) {
            return BadRequest("body: not JSON");
        }
        if (!input.is_object()) {
            return BadRequest("body: must be a JSON object");
        }
        if (auto it = ledger_.find(key); it != ledger_.end()) {
            if (bug_ == Bug::kReplayApplies) {
                (void)Perform(key, input);
            }
            return it->second;
        }
        Answer a = Perform(key, input);
        ledger_[key] = a;
        return a;
    }

    // What the action with `key` does with `input`, and its answer.
    Answer Perform(const std::string& key, const json::value& input) {
        const json::value* id = input.as_object().if_contains("id");
        const std::string base = key.substr(0, key.rfind('/'));
        Answer a{200, ""};
        if (key.ends_with("/undo")) {
            const bool applied = ledger_.contains(base + "/do") && ledger_[base + "/do"].status == 200;
            if (applied && id != nullptr && id->is_string()) {
                things_.erase(std::string(id->as_string()));
            }
            a.body = json::serialize(json::object{{"output", json::object{{"compensated", applied}}}});
        } else if (ledger_.contains(base + "/undo") && bug_ != Bug::kIgnoresTombstone) {
            a = Error(422, "failed_precondition", "compensated before applied");
        } else if (id == nullptr || !id->is_string()) {
            a = BadRequest("id: required");
        } else {
            things_.insert(std::string(id->as_string()));
            a.body = json::serialize(json::object{{"output", json::object{{"id", *id}}}});
        }
        return a;
    }

    const Bug bug_;
    std::mutex mu_;
    std::multiset<std::string> things_;
    std::map<std::string, Answer> ledger_;
    ThreadedServer server_{[this](http::Request req, http::Respond respond) { Handle(req, respond); }};
};

// The checks that fail against `bug`. `timeout_s`: what an unanswered request costs.
std::set<std::string> Failing(Bug bug, int timeout_s = 30) {
    BuggyService service(bug);
    TempDir dir("cogs-service-check-bug");
    const CheckRun run =
        RunCheck(service.url(), dir.Write("token", kToken),
                 {"--action", "create", "--input", R"({"id":"${unique}"})", "--undo-action", "delete",
                  "--undo-input", R"({"id":"${unique}"})", "--timeout-s", std::to_string(timeout_s)});
    EXPECT_EQ(run.exit_status, run.With("fail").empty() ? 0 : 1) << Describe(run);
    for (const std::string& name : run.With("fail")) {
        EXPECT_FALSE(run.detail.at(name).empty()) << name;
    }
    return run.With("fail");
}

TEST(ServiceCheckBugsTest, EachProtocolBugFailsTheCheckThatNamesIt) {
    EXPECT_EQ(Failing(Bug::kNone), std::set<std::string>{}) << "the test's service without a bug";
    EXPECT_EQ(Failing(Bug::kNoAuth), std::set<std::string>{"auth"});
    // A replay answered as the first time but performed again: only the inventory tells.
    EXPECT_EQ(Failing(Bug::kReplayApplies), (std::set<std::string>{"replay", "replay_other_body"}));
    EXPECT_EQ(Failing(Bug::kIgnoresTombstone), std::set<std::string>{"undo_before_do"});
    EXPECT_EQ(Failing(Bug::kIgnoresDeadline), std::set<std::string>{"deadline"});
    EXPECT_EQ(Failing(Bug::kRefusesWith500), (std::set<std::string>{"bad_requests", "error_classes"}));
    EXPECT_EQ(Failing(Bug::kUnknownActionIs400), std::set<std::string>{"bad_requests"});
}

TEST(ServiceCheckBugsTest, AServiceThatNeverAnswersFailsWithoutHangingTheChecker) {
    const SteadyTime start = SteadyClock::now();
    // Its refusals of callers without the token, its status and inventory answer; its actions never.
    EXPECT_EQ(Failing(Bug::kHangs, 5),
              (std::set<std::string>{"bad_requests", "do", "undo_before_do", "deadline"}));
    // Each of the four unanswered requests costs its 5 s deadline and no more (a bound, not a
    // measurement: the answered ones take milliseconds).
    EXPECT_LT(SteadyClock::now() - start, 200s);
}

// ---- the Python example service ----------------------------------------------------------------

TEST_F(ServiceCheckTest, ThePythonExampleServicePassesAndFailsWithBrokenReplays) {
    const std::string python = "/usr/bin/python3";
    const std::string example = std::string(COGS_SOURCE_DIR) + "/examples/dns/cogs_dns.py";
    ASSERT_TRUE(std::filesystem::exists(python)) << "python3 is a dependency (scripts/install-deps)";
    ASSERT_TRUE(std::filesystem::exists(example)) << example;
    const std::vector<std::string> check{
        "--action",      "register",
        "--input",       R"({"server_id":"${unique}","name":"${unique}","address":"10.0.0.7"})",
        "--undo-action", "unregister",
        "--undo-input",  R"({"server_id":"${unique}"})"};

    const std::string url = Start("dns", {python, example, "--state", dir_ / "dns.json"});
    ASSERT_FALSE(url.empty());
    ExpectConformant(url, check);

    const std::string broken =
        Start("dns-broken", {python, example, "--state", dir_ / "dns-broken.json", "--break-replays"});
    ASSERT_FALSE(broken.empty());
    const CheckRun run = RunCheck(broken, token_file_, check);
    EXPECT_EQ(run.exit_status, 1) << Describe(run);
    EXPECT_EQ(run.ResultOf("replay"), "fail") << Describe(run);
    EXPECT_NE(run.DetailOf("replay").find("key check-"), std::string::npos)
        << "names the key: " << Describe(run);
}

}  // namespace
}  // namespace cogs::testing
