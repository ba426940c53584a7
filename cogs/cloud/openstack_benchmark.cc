// openstack_benchmark: what the OpenStack face (openstack/face.h) adds to a request — the same read
// through /v1 and through the face, as the same member token, through the API as cogsd serves it
// (Cloud::Handler(): admission, authentication, the router, the audit log), in one process.
//
// The cloud (seeded into a store in a temp dir and loaded as cogsd starts, test/support/bench_cloud.h):
// the tenant, one project with one network, one subnet, --servers servers (default 100) each with
// its port, and --volumes volumes (default 2); --others other projects (default 4) alike with their
// own servers; 5 flavors, one image, 3 hosts. The face's requests carry Host (it writes absolute
// URLs) and X-Auth-Token; /v1's Authorization: Bearer.
//
//   pair            /v1                       the face                                /v1 calls it makes
//   servers_list    GET /v1/servers           GET /compute/v2.1/servers/detail        1 (limit=1000)
//   server_show     GET /v1/servers/{id}      GET /compute/v2.1/servers/{id}          1
//   networks_list   GET /v1/networks          GET /network/v2.0/networks              2 (+ subnets)
//   volumes_list    GET /v1/volumes           GET /volume/v3/{project}/volumes/detail 1
//   flavors_list    GET /v1/flavors           GET /compute/v2.1/flavors/detail        1
//
// and a Keystone password login, POST /v3/auth/tokens (hash check off the io thread, then a token
// minted and committed): `login` for a user made through POST /v1/users with the default
// CloudOptions::password_iterations (600,000: the real cost), `login_1iter` for one whose stored hash
// has 1 iteration (the login without the hash; what remains is mostly the commit of its token).
//
// Prints Google Benchmark's table (--runs repetitions of each), then, as its last line, one JSON
// object: for each pair the median µs per request (wall clock) of /v1 and of the face, the overhead
// (difference, ratio) and the answers' sizes; the logins; the setup; the machine (nproc, 1-minute load
// average before and after). Reports; never fails on a timing.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "cogs/base/password.h"
#include "cogs/base/secret.h"
#include "cogs/observe/log.h"
#include "test/support/bench_cloud.h"
#include "test/support/bench_report.h"

namespace cogs::cloud {
namespace {

using cogs::testing::BenchCloud;
using cogs::testing::LoadAverage;
using cogs::testing::Median;

namespace json = boost::json;

struct Options {
    int servers = 100;  // the tenant's
    int others = 4;     // other projects, with as many servers each
    int volumes = 2;    // the tenant's
    int runs = 3;
};

constexpr const char* kHost = "cloud.example:8780";
constexpr const char* kPassword = "correct horse battery";

// What the requests name: ids from the seed, and the member's token.
struct Named {
    std::string tenant, server, member;
};

BenchCloud* g_cloud = nullptr;
Named g_named;

// The cloud, straight into the store, as a cloud of this size would have left it.
void Seed(const Options& o, BenchCloud& cloud, Named& named) {
    constexpr int kHosts = 3;
    for (int h = 0; h < kHosts; ++h) {
        cloud.Seed(
            "host", "bench-h" + std::to_string(h), "",
            {{"url", "http://127.0.0.1:1"}, {"vcpus", 4096}, {"ram_mb", 1 << 22}, {"disk_gb", 1 << 20}});
    }
    std::string flavor;
    const std::vector<std::tuple<const char*, int, int, int>> flavors = {{"m1.tiny", 1, 512, 1},
                                                                         {"m1.small", 1, 2048, 20},
                                                                         {"m1.medium", 2, 4096, 40},
                                                                         {"m1.large", 4, 8192, 80},
                                                                         {"m1.xlarge", 8, 16384, 160}};
    for (const auto& [name, vcpus, ram, disk] : flavors) {
        const std::string id = NewUuid();
        if (flavor.empty()) flavor = id;
        cloud.Seed("flavor", id, "", {{"name", name}, {"vcpus", vcpus}, {"ram_mb", ram}, {"disk_gb", disk}});
    }
    const std::string image = NewUuid();
    cloud.Seed("image", image, "", {{"name", "busybox"}});
    int host = 0;
    for (int p = 0; p <= o.others; ++p) {
        const std::string project = NewUuid(), net = NewUuid(), subnet = NewUuid();
        const bool tenant = p == 0;
        if (tenant) named.tenant = project;
        cloud.Seed("project", project, project, {{"name", "p" + std::to_string(p)}, {"description", ""}});
        cloud.Seed("network", net, project, {{"name", "net"}, {"status", "ACTIVE"}, {"_quota", true}});
        cloud.Seed(
            "subnet", subnet, project,
            {{"name", "sub"},
             {"network_id", net},
             {"cidr", "10.0.0.0/16"},
             {"gateway_ip", "10.0.0.1"},
             {"allocation_pools", json::array{json::object{{"start", "10.0.0.2"}, {"end", "10.0.255.254"}}}},
             {"status", "ACTIVE"},
             {"_quota", true}});
        for (int s = 0; s < o.servers; ++s) {
            const std::string server = NewUuid(), port = NewUuid();
            if (tenant && s == o.servers / 2) named.server = server;
            const std::string ip = "10.0." + std::to_string(s / 250) + "." + std::to_string(s % 250 + 2);
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
                        {"flavor", "m1.tiny"},
                        {"image_id", image},
                        {"network_id", net},
                        {"host", "bench-h" + std::to_string(host++ % kHosts)},
                        {"availability_zone", ""},
                        {"port_id", port},
                        {"ip_address", ip},
                        {"mac_address", "fa:16:3e:00:00:01"},
                        {"volume_ids", json::array()},
                        {"server_group_id", ""},
                        {"workflow_id", NewUuid()},
                        {"_vcpus", 1},
                        {"_ram_mb", 512},
                        {"_disk_gb", 1},
                        {"_quota", true},
                        {"_changed_ms", 0}});
        }
        for (int v = 0; v < (tenant ? o.volumes : 1); ++v) {
            cloud.Seed("volume", NewUuid(), project,
                       {{"name", "vol" + std::to_string(v)},
                        {"size_gb", 1},
                        {"status", "available"},
                        {"server_id", ""},
                        {"device", ""},
                        {"_quota", true}});
        }
    }
    // The user whose login is the face's work alone: a stored hash of 1 iteration (a stored
    // hash keeps the count it was made with).
    cloud.Seed("user", NewUuid(), named.tenant,
               {{"name", "bob"}, {"role", "member"}, {"_password_hash", HashPassword(kPassword, 1)}});
}

// One request of the face, as the OpenStack clients make it (Host, X-Auth-Token unless `token` is
// empty, Content-Type with a body), answered. /v1's: g_cloud->Ask (Host, Authorization: Bearer).
http::Response Os(const std::string& token, const std::string& method, const std::string& target,
                  const std::string& body = "") {
    BenchCloud::Headers headers = {{"host", kHost}};
    if (!token.empty()) headers.emplace_back("x-auth-token", token);
    if (!body.empty()) headers.emplace_back("content-type", "application/json");
    return g_cloud->Send(method, target, body, std::move(headers));
}

// A Keystone password login of `user` (alice, bob) scoped to the tenant.
http::Response Login(const std::string& user) {
    return Os("", "POST", "/v3/auth/tokens",
              R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":")" + user +
                  R"(","password":")" + kPassword +
                  R"(","domain":{"name":"Default"}}}},"scope":{"project":{"id":")" + g_named.tenant +
                  R"("}}}})");
}

// Seeds `cloud`, opens it, mints the member's token, makes alice (POST /v1/users: her hash made by
// cogsd at the default count), and checks that both logins work.
Status Open(const Options& o, BenchCloud& cloud) {
    Seed(o, cloud, g_named);
    COGS_TRY(cloud.Open());
    g_cloud = &cloud;
    COGS_ASSIGN_OR_RETURN(g_named.member, cloud.Token(g_named.tenant, "member"));
    const auto user = cloud.Ask(cloud.admin(), "POST", "/v1/users",
                                R"({"name":"alice","project_id":")" + g_named.tenant +
                                    R"(","role":"member","password":")" + kPassword + R"("})");
    if (user.status != 201) return MakeError(ErrorCode::kInternal, "user: " + user.body);
    for (const char* name : {"alice", "bob"}) {
        const auto r = Login(name);
        if (r.status != 201) return MakeError(ErrorCode::kInternal, std::string("login: ") + r.body);
    }
    return Ok();
}

// One GET, through /v1 (`face` false) or the face, answered 200 each time; counts its bytes.
void Get(benchmark::State& state, bool face, std::string target) {
    size_t bytes = 0;
    for (auto _ : state) {
        auto r = face ? Os(g_named.member, "GET", target) : g_cloud->Ask(g_named.member, "GET", target);
        if (r.status != 200) {
            state.SkipWithError(("unexpected answer: " + r.body.substr(0, 200)).c_str());
            break;
        }
        bytes = r.body.size();
    }
    state.counters["bytes"] = static_cast<double>(bytes);
}

void LoginAs(benchmark::State& state, std::string user) {
    for (auto _ : state) {
        auto r = Login(user);
        if (r.status != 201) {
            state.SkipWithError(("unexpected answer: " + r.body.substr(0, 200)).c_str());
            break;
        }
    }
}

struct Pair {
    const char* name;
    std::string v1, face;
};

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
        } else if (a.starts_with("--others=")) {
            o.others = value("--others=");
        } else if (a.starts_with("--volumes=")) {
            o.volumes = value("--volumes=");
        } else if (a.starts_with("--runs=")) {
            o.runs = value("--runs=");
        } else {
            std::fprintf(stderr,
                         "usage: %s [--servers=N] [--others=N] [--volumes=N] [--runs=N] [--benchmark_...]\n",
                         argv[0]);
            return 2;
        }
    }
    (void)cogs::observe::SetLevel("*", "warn");  // an info line per request would be what is measured
    const double load_before = LoadAverage();
    std::fprintf(stderr, "seeding %d projects of %d servers and loading them ...\n", o.others + 1, o.servers);
    const auto started = std::chrono::steady_clock::now();
    cogs::testing::BenchCloudOptions bo;
    bo.name = "openstack_benchmark";
    bo.headers = {{"host", kHost}};
    const int password_iterations = bo.cloud.password_iterations;  // the default (600,000)
    BenchCloud cloud(std::move(bo));
    if (auto st = Open(o, cloud); !st) {
        std::fprintf(stderr, "setup failed: %s\n", st.error().ToString().c_str());
        return 1;
    }
    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::string volumes = "/volume/v3/" + g_named.tenant + "/volumes/detail";
    const std::vector<Pair> pairs = {
        {"servers_list", "/v1/servers", "/compute/v2.1/servers/detail"},
        {"server_show", "/v1/servers/" + g_named.server, "/compute/v2.1/servers/" + g_named.server},
        {"networks_list", "/v1/networks", "/network/v2.0/networks"},
        {"volumes_list", "/v1/volumes", volumes},
        {"flavors_list", "/v1/flavors", "/compute/v2.1/flavors/detail"},
    };
    for (const auto& p : pairs) {
        // Each pair's two one after the other, so that they see the same machine.
        benchmark::RegisterBenchmark((std::string(p.name) + "_v1").c_str(), Get, false, p.v1)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime()
            ->Repetitions(o.runs);
        benchmark::RegisterBenchmark((std::string(p.name) + "_os").c_str(), Get, true, p.face)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime()
            ->Repetitions(o.runs);
    }
    benchmark::RegisterBenchmark("login", LoginAs, std::string("alice"))
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(2.0)   // ~10 logins a repetition rather than 3
        ->UseRealTime()  // a login waits on the hashing thread and the store's commit, not the CPU
        ->Repetitions(o.runs);
    benchmark::RegisterBenchmark("login_1iter", LoginAs, std::string("bob"))
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()  // a login waits on the hashing thread and the store's commit, not the CPU
        ->Repetitions(o.runs);
    cogs::testing::TimesReporter collector;
    benchmark::RunSpecifiedBenchmarks(&collector);
    const double load_after = LoadAverage();
    cloud.Close();

    auto median = [&collector](const std::string& name) {
        auto it = collector.times.find(name);
        return it == collector.times.end() ? -1.0 : Median(it->second);
    };
    auto bytes = [&collector](const std::string& name) {
        auto it = collector.counters.find(name);
        return it == collector.counters.end() ? -1.0 : it->second["bytes"];
    };
    // Numbers as people write them (Boost.JSON would print 397.8 as 3.978E2).
    std::string line = fmt::format(
        R"({{"servers":{},"other_projects":{},"volumes":{},"flavors":5,"runs":{},"setup_s":{:.2f},"pairs":{{)",
        o.servers, o.others, o.volumes, o.runs, setup_s);
    bool first = true;
    for (const auto& p : pairs) {
        const std::string n = p.name;
        const double v1 = median(n + "_v1"), os = median(n + "_os");
        line += fmt::format(
            R"({}"{}":{{"v1_us":{:.1f},"os_us":{:.1f},"overhead_us":{:.1f},"ratio":{:.2f},"v1_bytes":{:.0f},"os_bytes":{:.0f}}})",
            first ? "" : ",", n, v1, os, os - v1, v1 > 0 ? os / v1 : -1.0, bytes(n + "_v1"),
            bytes(n + "_os"));
        first = false;
    }
    const double login = median("login"), login_1 = median("login_1iter");
    line += fmt::format(
        R"(}},"login":{{"password_iterations":{},"us":{:.1f},"us_1_iteration":{:.1f},"hash_us":{:.1f}}})",
        password_iterations, login, login_1, login - login_1);
    line += fmt::format(R"(,"machine":{{"nproc":{},"loadavg_1m_before":{:.2f},"loadavg_1m_after":{:.2f}}}}})",
                        std::thread::hardware_concurrency(), load_before, load_after);
    std::printf("%s\n", line.c_str());
    return 0;
}
