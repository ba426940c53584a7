// cloud_benchmark: what the requests that used to walk every tenant's records cost cogsd's io
// thread in a large cloud — a tenant's list, a network delete's dependency check, a /metrics
// scrape — through the API as cogsd serves it (Cloud::Handler(), token and all).
//
// The cloud: --projects projects (default 1,000), each with one network, one subnet and
// --servers / --projects servers (default 100,000 in all), each with its port, spread over 100
// hosts; written to a store in a temp dir and loaded as cogsd starts (Cloud::Load). One project
// (in the middle) also has a second network whose only dependent is a port with the last id of all,
// so that its delete's check is refused (409, nothing changes: it can be repeated) only after
// looking at everything a check that walks subnets and ports would.
//
//   tenant_list       GET /v1/servers as a member: its project's 100 servers (one page)
//   tenant_list_10    GET /v1/servers?limit=10 as a member: a first page of 10
//   admin_list        GET /v1/servers as an admin: the first 100 servers of all projects
//   network_delete    DELETE /v1/networks/{id} as a member, refused 409 by the dependency check
//   metrics_scrape    Metrics::Render(): every sampler, cogs_resources among them
//
// Prints Google Benchmark's table (--runs repetitions of each), then, as its last line, one JSON
// object: the median, min and max time per request of each in µs, the setup, the resident set
// after the load, and the machine (nproc, 1-minute load average before and after). Reports; never
// fails on a timing.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cogs/base/paths.h"
#include "cogs/base/secret.h"
#include "cogs/cloud/cloud.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/store/store.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"
#include "test/support/bench_report.h"
#include "test/support/temp_dir.h"

namespace cogs::cloud {
namespace {

using cogs::testing::LoadAverage;
using cogs::testing::Median;

namespace json = boost::json;

struct Options {
    int servers = 100000;
    int projects = 1000;
    int runs = 5;
};

long RssKib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    }
    return -1;
}

constexpr const char* kCreatedAt = "2026-01-01T00:00:00Z";  // every record's: read by nobody here

// The large cloud, loaded, and a way to ask its API.
class Bench {
public:
    Status Open(const Options& o) {
        store::SqliteOptions so;
        so.path = dir_ / "cogsd.db";
        COGS_ASSIGN_OR_RETURN(store_, store::OpenSqliteStore(so));
        COGS_TRY(Seed(o));
        registry_ = std::make_unique<workflow::Registry>(store_.get());
        COGS_TRY(registry_->LoadFromStore());
        COGS_ASSIGN_OR_RETURN(
            auto defs, workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud")));
        COGS_TRY(registry_->RegisterAll(std::move(defs)));
        workflow::EngineOptions eo;
        eo.owner = "cloud_benchmark";
        engine_ = std::make_unique<workflow::Engine>(io_, *store_, *registry_, catalog_, eo);
        CloudOptions co;
        co.metrics = &metrics_;
        cloud_ = std::make_unique<Cloud>(io_, *store_, *engine_, *registry_, co);
        COGS_TRY(engine_->Recover());
        const auto started = std::chrono::steady_clock::now();
        COGS_TRY(cloud_->Load());
        load_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        COGS_ASSIGN_OR_RETURN(admin_, cloud_->Bootstrap());
        handler_ = cloud_->Handler();
        io_.poll();
        rss_kib_ = RssKib();
        // A member of the project in the middle.
        const auto token =
            Ask(admin_, "POST", "/v1/tokens", R"({"project_id":")" + tenant_ + R"(","role":"member"})");
        if (token.status != 201) return MakeError(ErrorCode::kInternal, "token: " + token.body);
        member_ = json::parse(token.body).at("token").at("secret").as_string().c_str();
        return Ok();
    }

    void Close() {
        handler_ = nullptr;
        cloud_.reset();
        engine_->Shutdown();
        store_->Flush();
        engine_.reset();
        registry_.reset();
        store_.reset();
    }

    // One request, answered.
    http::Response Ask(const std::string& token, const std::string& method, const std::string& target,
                       const std::string& body = "") {
        http::Request req;
        req.method = method;
        req.target = target;
        req.body = body;
        req.headers.emplace_back("authorization", "Bearer " + token);
        std::optional<http::Response> got;
        handler_(std::move(req), [&got](http::Response r) { got = std::move(r); });
        while (!got) {
            io_.restart();
            io_.run_one_for(std::chrono::seconds(5));
        }
        io_.poll();  // what the request left for later (none but the model's end of turn)
        return std::move(*got);
    }

    std::string Render() { return metrics_.Render(); }

    const std::string& member() const { return member_; }
    const std::string& admin() const { return admin_; }
    const std::string& blocked_network() const { return blocked_network_; }
    double load_s() const { return load_s_; }
    long rss_kib() const { return rss_kib_; }

private:
    // Straight into the store, as a cloud that grew to this size would have left it.
    Status Seed(const Options& o) {
        std::vector<store::ResourceWrite> writes;
        auto write = [&writes](std::string kind, const std::string& id, const std::string& project,
                               json::object body) {
            body["id"] = id;
            if (!project.empty()) body["project_id"] = project;
            body["created_at"] = kCreatedAt;
            body["updated_at"] = kCreatedAt;
            writes.push_back({std::move(kind), id, project, json::serialize(body), false});
        };
        constexpr int kHosts = 100;
        for (int h = 0; h < kHosts; ++h) {
            write(
                "host", "bench-h" + std::to_string(h), "",
                {{"url", "http://127.0.0.1:1"}, {"vcpus", 4096}, {"ram_mb", 1 << 22}, {"disk_gb", 1 << 20}});
        }
        const std::string flavor = NewUuid(), image = NewUuid();
        write("flavor", flavor, "", {{"name", "bench.tiny"}, {"vcpus", 1}, {"ram_mb", 256}, {"disk_gb", 1}});
        write("image", image, "", {{"name", "debian"}});
        const int per_project = std::max(1, o.servers / o.projects);
        int host = 0;
        for (int p = 0; p < o.projects; ++p) {
            const std::string project = NewUuid(), net = NewUuid(), subnet = NewUuid();
            if (p == o.projects / 2) tenant_ = project;
            write("project", project, project, {{"name", "p" + std::to_string(p)}, {"description", ""}});
            write("network", net, project, {{"name", "net"}, {"status", "ACTIVE"}, {"_quota", true}});
            write("subnet", subnet, project,
                  {{"name", ""},
                   {"network_id", net},
                   {"cidr", "10.0.0.0/16"},
                   {"gateway_ip", "10.0.0.1"},
                   {"allocation_pools",
                    json::array{json::object{{"start", "10.0.0.2"}, {"end", "10.0.255.254"}}}},
                   {"status", "ACTIVE"},
                   {"_quota", true}});
            for (int s = 0; s < per_project; ++s) {
                const std::string server = NewUuid(), port = NewUuid();
                const std::string ip = "10.0." + std::to_string(s / 250) + "." + std::to_string(s % 250 + 2);
                const std::string on = "bench-h" + std::to_string(host++ % kHosts);
                write("port", port, project,
                      {{"name", ""},
                       {"network_id", net},
                       {"subnet_id", subnet},
                       {"mac_address", "fa:16:3e:00:00:01"},
                       {"fixed_ip", ip},
                       {"device_id", server},
                       {"status", "ACTIVE"},
                       {"_quota", true}});
                write("server", server, project,
                      {{"name", "s" + std::to_string(s)},
                       {"status", "ACTIVE"},
                       {"flavor_id", flavor},
                       {"flavor", "bench.tiny"},
                       {"image_id", image},
                       {"network_id", net},
                       {"host", on},
                       {"availability_zone", ""},
                       {"port_id", port},
                       {"ip_address", ip},
                       {"mac_address", "fa:16:3e:00:00:01"},
                       {"volume_ids", json::array()},
                       {"server_group_id", ""},
                       {"workflow_id", NewUuid()},
                       {"_vcpus", 1},
                       {"_ram_mb", 256},
                       {"_disk_gb", 1},
                       {"_quota", true},
                       {"_changed_ms", 0}});
            }
        }
        // The tenant's second network: its one port has the last id of all.
        blocked_network_ = NewUuid();
        write("network", blocked_network_, tenant_,
              {{"name", "blocked"}, {"status", "ACTIVE"}, {"_quota", true}});
        write("port", "ffffffff-ffff-4fff-bfff-ffffffffffff", tenant_,
              {{"name", "last"},
               {"network_id", blocked_network_},
               {"subnet_id", ""},
               {"mac_address", ""},
               {"fixed_ip", ""},
               {"device_id", ""},
               {"status", "ACTIVE"},
               {"_quota", true}});
        store::WriteGroup g;
        g.resources = std::move(writes);
        std::promise<Status> done;
        auto f = done.get_future();
        store_->Commit(std::move(g), [&done](Status st) { done.set_value(std::move(st)); });
        return f.get();
    }

    const cogs::testing::TempDir dir_{"cogs-cloud-bench"};
    boost::asio::io_context io_{1};
    observe::Metrics metrics_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    workflow::ServiceCatalog catalog_;  // nothing runs a workflow here
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<Cloud> cloud_;
    http::Handler handler_;
    std::string admin_, member_, tenant_, blocked_network_;
    double load_s_ = 0;
    long rss_kib_ = 0;
};

Bench* g_bench = nullptr;

void Expect(benchmark::State& state, const http::Response& r, int status) {
    if (r.status != status) state.SkipWithError(("unexpected answer: " + r.body.substr(0, 200)).c_str());
}

void TenantList(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_bench->Ask(g_bench->member(), "GET", "/v1/servers");
        Expect(state, r, 200);
    }
}

void TenantList10(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_bench->Ask(g_bench->member(), "GET", "/v1/servers?limit=10");
        Expect(state, r, 200);
    }
}

void AdminList(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_bench->Ask(g_bench->admin(), "GET", "/v1/servers");
        Expect(state, r, 200);
    }
}

void NetworkDelete(benchmark::State& state) {
    const std::string target = "/v1/networks/" + g_bench->blocked_network();
    for (auto _ : state) {
        auto r = g_bench->Ask(g_bench->member(), "DELETE", target);
        Expect(state, r, 409);
    }
}

void MetricsScrape(benchmark::State& state) {
    size_t bytes = 0;
    for (auto _ : state) {
        bytes = g_bench->Render().size();
    }
    state.counters["bytes"] = static_cast<double>(bytes);
}

}  // namespace
}  // namespace cogs::cloud

int main(int argc, char** argv) {
    using namespace cogs::cloud;
    benchmark::Initialize(&argc, argv);
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&a](std::string_view flag) { return std::stoi(a.substr(flag.size())); };
        if (a.starts_with("--servers=")) {
            o.servers = value("--servers=");
        } else if (a.starts_with("--projects=")) {
            o.projects = value("--projects=");
        } else if (a.starts_with("--runs=")) {
            o.runs = value("--runs=");
        } else {
            std::fprintf(stderr, "usage: %s [--servers=N] [--projects=N] [--runs=N] [--benchmark_...]\n",
                         argv[0]);
            return 2;
        }
    }
    (void)cogs::observe::SetLevel("*", "warn");  // an info line per request would be what is measured
    const double load_before = LoadAverage();
    std::fprintf(stderr, "seeding %d servers in %d projects and loading them ...\n", o.servers, o.projects);
    Bench bench;
    if (auto st = bench.Open(o); !st) {
        std::fprintf(stderr, "setup failed: %s\n", st.error().ToString().c_str());
        return 1;
    }
    g_bench = &bench;
    for (const auto& [name, fn] : std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
             {"tenant_list", TenantList},
             {"tenant_list_10", TenantList10},
             {"admin_list", AdminList},
             {"network_delete", NetworkDelete},
             {"metrics_scrape", MetricsScrape}}) {
        benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond)->Repetitions(o.runs);
    }
    cogs::testing::TimesReporter collector;
    benchmark::RunSpecifiedBenchmarks(&collector);
    const double load_after = LoadAverage();

    bench.Close();
    // Numbers as people write them (Boost.JSON would print 397.8 as 3.978E2).
    std::string line =
        fmt::format(R"({{"servers":{},"projects":{},"runs":{},"load_s":{:.2f},"rss_kib_after_load":{})",
                    o.servers, o.projects, o.runs, bench.load_s(), bench.rss_kib());
    for (const auto& [name, times] : collector.times) {
        line += fmt::format(R"(,"{}_us":{:.1f},"{}_us_min_max":[{:.1f},{:.1f}])", name, Median(times), name,
                            *std::min_element(times.begin(), times.end()),
                            *std::max_element(times.begin(), times.end()));
    }
    line += fmt::format(R"(,"machine":{{"nproc":{},"loadavg_1m_before":{:.2f},"loadavg_1m_after":{:.2f}}}}})",
                        std::thread::hardware_concurrency(), load_before, load_after);
    std::printf("%s\n", line.c_str());
    return 0;
}
