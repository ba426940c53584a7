// cloud_benchmark: what the requests that used to walk every tenant's records cost cogsd's io
// thread in a large cloud — a tenant's list, a network delete's dependency check, a /metrics
// scrape — through the API as cogsd serves it (Cloud::Handler(), token and all).
//
// The cloud: --projects projects (default 1,000), each with one network, one subnet and
// --servers / --projects servers (default 100,000 in all), each with its port, spread over 100
// hosts; written to a store in a temp dir and loaded as cogsd starts (Cloud::Load; test/support/
// bench_cloud.h). One project
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
#include <boost/json.hpp>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cogs/base/secret.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "test/support/bench_cloud.h"
#include "test/support/bench_report.h"

namespace cogs::cloud {
namespace {

using cogs::testing::BenchCloud;
using cogs::testing::LoadAverage;
using cogs::testing::Median;

namespace json = boost::json;

struct Options {
    int servers = 100000;
    int projects = 1000;
    int runs = 5;
};

// What the requests name: ids from the seed, and the member's token.
struct Named {
    std::string tenant, blocked_network, member;
};
Named g_named;

// The large cloud, straight into the store, as a cloud that grew to this size would have left it.
void Seed(const Options& o, BenchCloud& cloud, Named& named) {
    constexpr int kHosts = 100;
    for (int h = 0; h < kHosts; ++h) {
        cloud.Seed(
            "host", "bench-h" + std::to_string(h), "",
            {{"url", "http://127.0.0.1:1"}, {"vcpus", 4096}, {"ram_mb", 1 << 22}, {"disk_gb", 1 << 20}});
    }
    const std::string flavor = NewUuid(), image = NewUuid();
    cloud.Seed("flavor", flavor, "", {{"name", "bench.tiny"}, {"vcpus", 1}, {"ram_mb", 256}, {"disk_gb", 1}});
    cloud.Seed("image", image, "", {{"name", "debian"}});
    const int per_project = std::max(1, o.servers / o.projects);
    int host = 0;
    for (int p = 0; p < o.projects; ++p) {
        const std::string project = NewUuid(), net = NewUuid(), subnet = NewUuid();
        if (p == o.projects / 2) named.tenant = project;
        cloud.Seed("project", project, project, {{"name", "p" + std::to_string(p)}, {"description", ""}});
        cloud.Seed("network", net, project, {{"name", "net"}, {"status", "ACTIVE"}, {"_quota", true}});
        cloud.Seed(
            "subnet", subnet, project,
            {{"name", ""},
             {"network_id", net},
             {"cidr", "10.0.0.0/16"},
             {"gateway_ip", "10.0.0.1"},
             {"allocation_pools", json::array{json::object{{"start", "10.0.0.2"}, {"end", "10.0.255.254"}}}},
             {"status", "ACTIVE"},
             {"_quota", true}});
        for (int s = 0; s < per_project; ++s) {
            const std::string server = NewUuid(), port = NewUuid();
            const std::string ip = "10.0." + std::to_string(s / 250) + "." + std::to_string(s % 250 + 2);
            const std::string on = "bench-h" + std::to_string(host++ % kHosts);
            cloud.Seed("port", port, project,
                       {{"name", ""},
                        {"network_id", net},
                        {"subnet_id", subnet},
                        {"mac_address", "fa:16:3e:00:00:01"},
                        {"fixed_ip", ip},
                        {"device_id", server},
                        {"status", "ACTIVE"},
                        {"_quota", true}});
            cloud.Seed("server", server, project,
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
    named.blocked_network = NewUuid();
    cloud.Seed("network", named.blocked_network, named.tenant,
               {{"name", "blocked"}, {"status", "ACTIVE"}, {"_quota", true}});
    cloud.Seed("port", "ffffffff-ffff-4fff-bfff-ffffffffffff", named.tenant,
               {{"name", "last"},
                {"network_id", named.blocked_network},
                {"subnet_id", ""},
                {"mac_address", ""},
                {"fixed_ip", ""},
                {"device_id", ""},
                {"status", "ACTIVE"},
                {"_quota", true}});
}

// Seeds `cloud`, opens it, and mints the member's token.
Status Open(const Options& o, BenchCloud& cloud) {
    Seed(o, cloud, g_named);
    COGS_TRY(cloud.Open());
    COGS_ASSIGN_OR_RETURN(g_named.member,
                          cloud.Token(g_named.tenant, "member"));  // of the project in the middle
    return Ok();
}

BenchCloud* g_cloud = nullptr;
observe::Metrics* g_metrics = nullptr;

void Expect(benchmark::State& state, const http::Response& r, int status) {
    if (r.status != status) state.SkipWithError(("unexpected answer: " + r.body.substr(0, 200)).c_str());
}

void TenantList(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_cloud->Ask(g_named.member, "GET", "/v1/servers");
        Expect(state, r, 200);
    }
}

void TenantList10(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_cloud->Ask(g_named.member, "GET", "/v1/servers?limit=10");
        Expect(state, r, 200);
    }
}

void AdminList(benchmark::State& state) {
    for (auto _ : state) {
        auto r = g_cloud->Ask(g_cloud->admin(), "GET", "/v1/servers");
        Expect(state, r, 200);
    }
}

void NetworkDelete(benchmark::State& state) {
    const std::string target = "/v1/networks/" + g_named.blocked_network;
    for (auto _ : state) {
        auto r = g_cloud->Ask(g_named.member, "DELETE", target);
        Expect(state, r, 409);
    }
}

void MetricsScrape(benchmark::State& state) {
    size_t bytes = 0;
    for (auto _ : state) {
        bytes = g_metrics->Render().size();
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
    cogs::observe::Metrics metrics;  // the cloud's: outlives it
    cogs::testing::BenchCloudOptions bo;
    bo.name = "cloud_benchmark";
    bo.cloud.metrics = &metrics;
    BenchCloud cloud(std::move(bo));
    if (auto st = Open(o, cloud); !st) {
        std::fprintf(stderr, "setup failed: %s\n", st.error().ToString().c_str());
        return 1;
    }
    g_cloud = &cloud;
    g_metrics = &metrics;
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

    cloud.Close();
    // Numbers as people write them (Boost.JSON would print 397.8 as 3.978E2).
    std::string line =
        fmt::format(R"({{"servers":{},"projects":{},"runs":{},"load_s":{:.2f},"rss_kib_after_load":{})",
                    o.servers, o.projects, o.runs, cloud.load_s(), cloud.rss_kib());
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
