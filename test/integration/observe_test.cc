// Observability of the local cloud, checked with the operator's own tools: promtool on every
// process's /metrics, a real Prometheus server scraping `cogs dev` and queried with PromQL, and one
// request followed by its trace id through the API, the workflow and every process's log.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "cogs/http/server.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// A free TCP port on 127.0.0.1 (Prometheus cannot report the port it bound, so it gets one).
int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

class ObserveTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto dev = DevCloud::Start(DevOptions{3, 20, {}});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev).release();
        // A project and a network with a subnet, for the servers the tests create.
        ApiClient admin = dev_->Admin();
        ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":"observe"})");
        ASSERT_EQ(p.status, 201) << p.text;
        const std::string project = S(At(p.body, "project"), "id");
        ApiReply t =
            admin.Must("POST", "/v1/tokens", R"({"project_id":")" + project + R"(","role":"member"})");
        ASSERT_EQ(t.status, 201) << t.text;
        token_ = S(At(t.body, "token"), "secret");
        ApiClient api(dev_->api_url(), token_);
        ApiReply n = api.Must("POST", "/v1/networks", R"({"name":"obs"})");
        ASSERT_EQ(n.status, 202) << n.text;
        network_ = S(At(n.body, "network"), "id");
        ASSERT_TRUE(WaitFor(api, "/v1/networks/" + network_, "network", "ACTIVE"));
        ApiReply s = api.Must("POST", "/v1/subnets",
                              R"({"network_id":")" + network_ + R"(","cidr":"10.50.0.0/24","name":"obs"})");
        ASSERT_EQ(s.status, 202) << s.text;
        ASSERT_TRUE(WaitFor(api, "/v1/subnets/" + S(At(s.body, "subnet"), "id"), "subnet", "ACTIVE"));
    }
    static void TearDownTestSuite() {
        if (dev_ != nullptr) {
            EXPECT_EQ(dev_->Stop(), std::optional<int>(0));
            delete dev_;
            dev_ = nullptr;
        }
    }
    void SetUp() override { ASSERT_NE(dev_, nullptr); }

    static bool WaitFor(ApiClient& api, const std::string& path, std::string_view key,
                        const std::string& want) {
        return WaitUntil([&] { return S(At(api.Must("GET", path).body, key), "status") == want; }, 30s);
    }

    ApiClient Api() { return ApiClient(dev_->api_url(), token_); }

    // Creates a server (optionally with extra headers) and waits for `want`; returns its id and
    // the create's answer.
    std::pair<std::string, ApiReply> Server(
        const std::string& name, const std::string& want = "ACTIVE",
        const std::vector<std::pair<std::string, std::string>>& headers = {}, const std::string& extra = "") {
        ApiClient api = Api();
        auto r = api.Call("POST", "/v1/servers",
                          R"({"name":")" + name + R"(","flavor":"m1.tiny","image":"cirros","network_id":")" +
                              network_ + "\"" + extra + "}",
                          headers);
        EXPECT_TRUE(r) << r.error().ToString();
        if (!r) return {"", {}};
        EXPECT_EQ(r->status, 202) << r->text;
        const std::string id = S(At(r->body, "server"), "id");
        EXPECT_TRUE(WaitFor(api, "/v1/servers/" + id, "server", want)) << name << " never became " << want;
        return {id, *r};
    }

    static std::string Scrape(const std::string& url) {
        ApiClient anonymous(url, "");
        ApiReply r = anonymous.Must("GET", "/metrics");
        EXPECT_EQ(r.status, 200) << url;
        return r.text;
    }

    static inline DevCloud* dev_ = nullptr;
    static inline std::string token_;
    static inline std::string network_;
};

// promtool (Debian's prometheus package) accepts every process's /metrics, lint included, and each
// process exports the series docs/metrics.md promises for it.
TEST_F(ObserveTest, PromtoolAcceptsEveryProcess) {
    // Work that makes every kind of series appear: a server, a retried step, a rollback.
    Server("promtool-ok");
    ApiClient network = dev_->Service("network");
    ASSERT_EQ(network.Must("PUT", "/v1/faults", R"({"error_rate":0.5})").status, 200);
    Server("promtool-retried");
    ASSERT_EQ(network.Must("PUT", "/v1/faults", "{}").status, 200);
    auto compute_faults = [](const std::string& body) {  // on every agent: the server may land on any
        for (const auto& p : dev_->processes()) {
            if (p.name.rfind("cogs-compute", 0) != 0) continue;
            ApiClient agent(p.url, dev_->ServiceToken(p.name));
            ASSERT_EQ(agent.Must("PUT", "/v1/faults", body).status, 200) << p.name;
        }
    };
    compute_faults(R"({"fail_actions":["create_instance"]})");
    Server("promtool-rolled-back", "ERROR");
    compute_faults("{}");

    const std::map<std::string, std::vector<std::string>> expected = {
        {"cogsd",
         {"cogs_http_requests_total", "cogs_http_request_duration_seconds_bucket",
          "cogs_workflows_started_total", "cogs_workflows_finished_total",
          "cogs_workflow_duration_seconds_bucket", "cogs_step_duration_seconds_bucket",
          "cogs_step_schedule_to_start_seconds_bucket", "cogs_service_calls_total", "cogs_step_retries_total",
          "cogs_compensations_total", "cogs_workflows_in_flight", "cogs_bulkhead_in_use",
          "cogs_store_commit_duration_seconds_bucket", "cogs_store_commit_groups_bucket", "cogs_hosts",
          "cogs_placement_duration_seconds_bucket", "cogs_placements_total",
          "process_resident_memory_bytes"}},
        {"cogs-network",
         {"cogs_http_requests_total", "cogs_service_actions_total",
          "cogs_service_action_duration_seconds_bucket", "cogs_service_faults_injected_total"}},
        {"cogs-volume", {"cogs_http_requests_total", "cogs_service_actions_total"}},
        {"cogs-compute",
         {"cogs_http_requests_total", "cogs_service_actions_total", "cogs_compute_instances"}},
    };
    std::map<std::string, std::string> by_kind;  // every process's text, joined per kind
    for (const auto& p : dev_->processes()) {
        const std::string text = Scrape(p.url);
        const std::string file = dev_->data_dir() + "/" + p.name + ".metrics";
        ASSERT_TRUE(runtime::WriteFileAtomic(file, text));
        auto [code, out] = Shell("promtool check metrics < " + file);
        EXPECT_EQ(code, 0) << p.name << ": promtool check metrics:\n" << out;
        EXPECT_EQ(out, "") << p.name;
        for (const auto& [prefix, series] : expected) {
            if (p.name.rfind(prefix, 0) == 0) by_kind[prefix] += "\n" + text;
        }
    }
    std::set<std::string> checked;
    for (const auto& [kind, series] : expected) {
        const std::string& text = by_kind[kind];
        if (!text.empty()) checked.insert(kind);
        for (const auto& s : series) {  // a labelled series or one without labels
            const bool found = text.find("\n" + s + "{") != std::string::npos ||
                               text.find("\n" + s + " ") != std::string::npos;
            EXPECT_TRUE(found) << "no " << kind << " process exports " << s;
        }
    }
    EXPECT_EQ(checked.size(), expected.size()) << "a process kind was not found in dev.json";
}

// A real Prometheus server scrapes the running cloud through the file-discovery config `cogs dev`
// writes; PromQL over its HTTP API sees every target up and the series move as servers are built.
TEST_F(ObserveTest, PrometheusScrapesTheCloud) {
    const std::string dir = dev_->data_dir() + "/prometheus";
    ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
    ASSERT_TRUE(runtime::ReadFile(dev_->data_dir() + "/prometheus-targets.json"))
        << "cogs dev wrote no prometheus-targets.json";
    // The same discovery file an operator points Prometheus at, scraped every second for the test,
    // over TLS as `cogs dev`'s prometheus.yml does: the dev CA, and a certificate of it (the services
    // require one; their /metrics takes any).
    const std::string pki = dev_->data_dir() + "/pki";
    const std::string tls = dev_->ca_file().empty()
                                ? ""
                                : "    scheme: https\n    tls_config:\n      ca_file: " + dev_->ca_file() +
                                      "\n      cert_file: " + pki +
                                      "/prometheus.crt\n      key_file: " + pki + "/prometheus.key\n";
    const std::string config =
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: cogs\n" +
        tls + "    file_sd_configs:\n      - files: ['" + dev_->data_dir() + "/prometheus-targets.json']\n";
    ASSERT_TRUE(runtime::WriteFileAtomic(dir + "/prometheus.yml", config));
    auto [check, check_out] = Shell("promtool check config " + dir + "/prometheus.yml");
    ASSERT_EQ(check, 0) << check_out;
    auto [own, own_out] = Shell("promtool check config " + dev_->data_dir() + "/prometheus.yml");
    EXPECT_EQ(own, 0) << "cogs dev's own prometheus.yml: " << own_out;

    runtime::Child prometheus;
    std::string url;
    for (int attempt = 0; attempt < 3 && url.empty(); ++attempt) {
        const int port = FreePort();
        auto child = runtime::Child::Spawn(
            {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
             "--storage.tsdb.path=" + dir + "/data", "--web.listen-address=127.0.0.1:" + std::to_string(port),
             "--log.level=warn"},
            runtime::SpawnOptions{dir + "/prometheus.log"});
        ASSERT_TRUE(child) << child.error().ToString();
        prometheus = std::move(*child);
        const std::string candidate = "http://127.0.0.1:" + std::to_string(port);
        ApiClient probe(candidate, "");
        if (WaitUntil([&] { return !prometheus.Running() || probe.Must("GET", "/-/ready").status == 200; },
                      60s, 100ms) &&
            prometheus.Running()) {
            url = candidate;
        }
    }
    ASSERT_FALSE(url.empty()) << "prometheus did not start:\n"
                              << runtime::TailFile(dir + "/prometheus.log", 30);
    ApiClient prom(url, "");

    // The value of an instant PromQL query that returns one sample, or nullopt.
    auto query = [&](const std::string& promql) -> std::optional<double> {
        ApiReply r = prom.Must("GET", "/api/v1/query?query=" + http::UrlEncode(promql));
        if (r.status != 200 || S(r.body, "status") != "success") return std::nullopt;
        const json::value result = At(At(r.body, "data"), "result");
        if (!result.is_array() || result.as_array().size() != 1) return std::nullopt;
        const json::value value = At(result.as_array()[0], "value");
        return std::stod(std::string(value.as_array()[1].as_string()));
    };
    const double targets = static_cast<double>(dev_->processes().size());
    ASSERT_TRUE(WaitUntil([&] { return query("sum(up)") == targets; }, 30s, 250ms))
        << "not every process is up in Prometheus: sum(up) = " << query("sum(up)").value_or(-1) << " of "
        << targets << "\n"
        << prom.Must("GET", "/api/v1/targets").text;
    EXPECT_EQ(query("count(up{job=\"cogs-compute\"})"), 3.0);  // one agent process per host

    // Baselines, then work, then the same queries must have moved.
    const std::string succeeded =
        R"(sum(cogs_workflows_finished_total{type="server.create",outcome="succeeded"}))";
    const double before = query(succeeded).value_or(0);
    const double creates_before =
        query(
            R"(sum(cogs_service_actions_total{job="cogs-compute",action="create_instance",outcome=~"ok|accepted"}))")
            .value_or(0);
    for (int i = 0; i < 3; ++i)
        Server("prom-" + std::to_string(i));
    EXPECT_TRUE(WaitUntil([&] { return query(succeeded).value_or(0) >= before + 3; }, 30s, 250ms))
        << succeeded << " = " << query(succeeded).value_or(-1) << ", before " << before;
    EXPECT_TRUE(WaitUntil(
        [&] {
            return query(
                       R"(sum(cogs_service_actions_total{job="cogs-compute",action="create_instance",outcome=~"ok|accepted"}))")
                       .value_or(0) >= creates_before + 3;
        },
        30s, 250ms));
    EXPECT_EQ(query(R"(sum(cogs_hosts{state="up"}))"), 3.0);
    EXPECT_TRUE(WaitUntil([&] { return query("sum(cogs_workflows_in_flight)") == 0.0; }, 30s, 250ms));
    // Rates and quantiles over what was scraped: the request rate is positive and the p99 of server
    // creates is a real duration.
    EXPECT_GT(query(R"(sum(rate(cogs_http_requests_total{job="cogsd"}[1m])))").value_or(0), 0);
    auto p99 = query(
        R"(histogram_quantile(0.99, sum by (le) (rate(cogs_workflow_duration_seconds_bucket{type="server.create"}[1m]))))");
    ASSERT_TRUE(p99);
    EXPECT_GT(*p99, 0);
    EXPECT_LT(*p99, 30);
    EXPECT_GT(query(R"(sum(cogs_store_commit_groups_count))").value_or(0), 0);
    // The Grafana dashboard's every query runs on this Prometheus (names and labels checked against
    // docs/metrics.md, each expression accepted by Prometheus itself).
    auto [dash, dash_out] =
        Shell("python3 " COGS_SOURCE_DIR "/scripts/check-dashboard.py --prometheus " + url);
    EXPECT_EQ(dash, 0) << dash_out;
    prometheus.Stop(5s);
}

// `cogs top --once -o json` reads the same figures from cogsd's /metrics while servers are built.
TEST_F(ObserveTest, TopShowsTheCloud) {
    std::atomic<bool> watching{true};
    std::thread work([&] {  // servers built one after another for as long as top watches
        for (int i = 0; watching && i < 50; ++i)
            Server("top-" + std::to_string(i));
    });
    auto [code, out] = Shell("COGS_URL=" + dev_->api_url() + " COGS_TOKEN=" + dev_->admin_token() +
                             " COGS_CACERT=" + dev_->ca_file() + " " + runtime::SiblingBinary("cogs") +
                             " top --once --interval 1 -o json");
    watching = false;
    work.join();
    ASSERT_EQ(code, 0) << out;
    boost::system::error_code ec;
    const json::value top = json::parse(out.substr(out.find('{')), ec);
    ASSERT_FALSE(ec) << out;
    EXPECT_EQ(At(At(At(top, "hosts"), "by_state"), "up"), json::value(3.0)) << out;
    EXPECT_GT(At(At(top, "workflows"), "started_per_s").to_number<double>(), 0) << out;
    EXPECT_GT(At(At(top, "api"), "requests_per_s").to_number<double>(), 0) << out;
    EXPECT_GT(At(At(top, "store"), "commits_per_s").to_number<double>(), 0) << out;
}

// One request followed across every process by its trace id.
TEST_F(ObserveTest, OneTraceAcrossProcesses) {
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    ApiClient api = Api();
    ApiReply v = api.Must("POST", "/v1/volumes", R"({"name":"traced","size_gb":1})");
    ASSERT_EQ(v.status, 202) << v.text;
    const std::string volume = S(At(v.body, "volume"), "id");
    ASSERT_TRUE(WaitFor(api, "/v1/volumes/" + volume, "volume", "available"));

    auto [id, created] = Server("traced", "ACTIVE", {{"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"}},
                                R"(,"volume_ids":[")" + volume + R"("])");
    ASSERT_FALSE(id.empty());
    // The answer names the trace (the caller's span is the parent of the API's).
    EXPECT_EQ(created.header_traceparent.substr(0, 36), "00-" + trace + "-") << created.header_traceparent;
    // The workflow shows it.
    const std::string workflow = S(At(created.body, "server"), "workflow_id");
    ApiReply wf = api.Must("GET", "/v1/workflows/" + workflow);
    ASSERT_EQ(wf.status, 200) << wf.text;
    EXPECT_EQ(S(At(wf.body, "workflow"), "trace_id"), trace) << wf.text;
    // Every process the request went through logged it: cogsd, the network service (port and
    // address), the volume service (attach) and the compute agent (boot). Each such line is JSON
    // with the trace id and the workflow id.
    for (const std::string kind : {"cogsd", "cogs-network", "cogs-volume", "cogs-compute"}) {
        std::vector<std::string> logs;  // the compute agents: the server is on one of them
        for (const auto& p : dev_->processes()) {
            if (p.name.rfind(kind, 0) == 0) logs.push_back(p.log);
        }
        ASSERT_FALSE(logs.empty()) << kind;
        int traced = 0;
        bool with_workflow = false;
        std::string all;
        for (const auto& log : logs)
            all += runtime::ReadFile(log).value_or("");
        std::istringstream in(all);
        for (std::string line; std::getline(in, line);) {
            if (line.find(trace) == std::string::npos) continue;
            boost::system::error_code ec;
            json::value v = json::parse(line, ec);
            ASSERT_FALSE(ec) << kind << " wrote a line that is not JSON: " << line;
            EXPECT_EQ(S(v, "trace_id"), trace) << line;
            EXPECT_FALSE(S(v, "ts").empty()) << line;
            EXPECT_FALSE(S(v, "level").empty()) << line;
            EXPECT_FALSE(S(v, "component").empty()) << line;
            with_workflow = with_workflow || S(v, "workflow_id") == workflow;
            ++traced;
        }
        EXPECT_GT(traced, 0) << kind << " logged nothing with trace " << trace << ":\n"
                             << runtime::TailFile(logs[0], 10);
        EXPECT_TRUE(with_workflow) << kind << " never logged the workflow id " << workflow;
    }

    // A request without a traceparent starts a new trace, answered in the header and kept.
    auto [other, fresh] = Server("untraced");
    const std::string new_trace =
        fresh.header_traceparent.size() == 55 ? fresh.header_traceparent.substr(3, 32) : "";
    ASSERT_FALSE(new_trace.empty()) << "no traceparent in the answer: '" << fresh.header_traceparent << "'";
    EXPECT_NE(new_trace, trace);
    ApiReply wf2 = api.Must("GET", "/v1/workflows/" + S(At(fresh.body, "server"), "workflow_id"));
    EXPECT_EQ(S(At(wf2.body, "workflow"), "trace_id"), new_trace);
    // A malformed traceparent is not an error: a new trace starts (the W3C rule).
    auto [third, garbled] = Server("garbled", "ACTIVE", {{"traceparent", "not-a-trace"}});
    EXPECT_EQ(garbled.header_traceparent.size(), 55u) << garbled.header_traceparent;
}

}  // namespace
}  // namespace cogs::testing
