// placement_benchmark: what one placement decision costs (`ClaimFor` then `Release` of the same
// server, so the cloud stays as it was) at 100, 1,000, 10,000 and 100,000 hosts, and how much
// memory the `Placement` holds per host (README.md, "How it stays fast").
//
// The cloud (fixed seed): host i is in zone az(i % 10), has 64 cores (256 vCPUs under the default
// 4x ratio), 256 GiB of RAM and 4,000 GB of disk; trait "ssd" on even hosts, "gpu" on 1% (i % 100
// == 7). Ordered from the head of the spread order (most free RAM first):
//   - 1% disabled (i % 100 == 1) and 1% dead (i % 100 == 2) hosts, empty;
//   - the first 50 of the others hold one member each of anti-affinity group "g" (1 vCPU, 512 MiB,
//     10 GB);
//   - 2% of the hosts (i % 50 == 3) have RAM left but no vCPU: 256 vCPUs and 0-10% RAM claimed;
//   - the others are 25-75% full (RAM, vCPU and disk in proportion): half full on average.
// The decisions (2 vCPUs, 4,096 MiB, 40 GB, spread):
//   plain          no zone, no trait, no group
//   zone           availability zone az3 (a tenth of the hosts)
//   rare_trait     required trait "gpu" (1% of the hosts)
//   anti_affinity  group "g", anti-affinity: its 50 members sit on the best hosts
//   unplaceable    512 GiB of RAM: more than any host has; refused
//
// Prints Google Benchmark's table (--runs repetitions of each), then, as its last line, one JSON
// object: per decision and cloud size the median time in ns (and min, max), the hosts the
// decision examined (when the placement reports it), the Placement's bytes per host, and the
// machine. Reports; never fails on a timing. Built against any `Placement` with the surface of
// placement.h (the "before" figures of the README build it against an older one).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cogs/scheduler/placement.h"
#include "test/support/bench_report.h"

// Every allocation counted, with the allocator's rounding (malloc_usable_size), to measure the
// Placement's memory. tcmalloc's malloc_usable_size allocates once (a singleton): not counted.
namespace {
long long g_live_bytes = 0;
bool g_in_size = false;

long long UsableSize(void* p) {
    if (g_in_size) {
        return 0;
    }
    g_in_size = true;
    const auto size = static_cast<long long>(malloc_usable_size(p));
    g_in_size = false;
    return size;
}
}  // namespace

void* operator new(std::size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    g_live_bytes += UsableSize(p);
    return p;
}
void operator delete(void* p) noexcept {
    if (p != nullptr) {
        g_live_bytes -= UsableSize(p);
        std::free(p);
    }
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace cogs::scheduler {
namespace {

using cogs::testing::LoadAverage;
using cogs::testing::Median;

struct Cloud {
    std::unique_ptr<Placement> placement;
    int hosts = 0;
    double bytes_per_host = 0;              // the Placement with its hosts, before any claim
    double bytes_per_host_with_claims = 0;  // and with the cloud's claims
};

std::string HostName(int i) {
    char name[32];
    std::snprintf(name, sizeof name, "host-%06d", i);
    return name;
}

Cloud Build(int n) {
    Cloud cloud;
    cloud.hosts = n;
    std::mt19937_64 rng(20261206);
    auto uniform = [&rng](double lo, double hi) {
        return std::uniform_real_distribution<double>(lo, hi)(rng);
    };
    const long long before = g_live_bytes;
    cloud.placement = std::make_unique<Placement>();
    Placement& p = *cloud.placement;
    for (int i = 0; i < n; ++i) {
        HostInfo h;
        h.name = HostName(i);
        h.availability_zone = "az" + std::to_string(i % 10);
        h.vcpus = 64;
        h.ram_mb = 262144;
        h.disk_gb = 4000;
        if (i % 2 == 0) {
            h.traits.push_back("ssd");
        }
        if (i % 100 == 7) {
            h.traits.push_back("gpu");
        }
        h.enabled = i % 100 != 1;
        h.alive = i % 100 != 2;
        p.UpsertHost(std::move(h));
    }
    const long long hosts_only = g_live_bytes;
    int members = 0;
    for (int i = 0; i < n; ++i) {
        if (i % 100 == 1 || i % 100 == 2) {
            continue;
        }
        Claim c;
        c.host = HostName(i);
        if (members < 50) {
            c.server_id = "member-" + std::to_string(members++);
            c.vcpus = 1;
            c.ram_mb = 512;
            c.disk_gb = 10;
            c.group_id = "g";
        } else if (i % 50 == 3) {
            c.server_id = "busy-" + std::to_string(i);
            c.vcpus = 256;
            c.ram_mb = static_cast<int64_t>(262144 * uniform(0, 0.1));
            c.disk_gb = 100;
        } else {
            const double full = uniform(0.25, 0.75);
            c.server_id = "fill-" + std::to_string(i);
            c.vcpus = static_cast<int64_t>(256 * full);
            c.ram_mb = static_cast<int64_t>(262144 * full);
            c.disk_gb = static_cast<int64_t>(4000 * full);
        }
        p.AddClaim(std::move(c));
    }
    cloud.bytes_per_host = static_cast<double>(hosts_only - before) / n;
    cloud.bytes_per_host_with_claims = static_cast<double>(g_live_bytes - before) / n;
    return cloud;
}

// Hosts examined by the last decision, if this Placement says (an older one does not).
template <class P>
double Examined(const P& p) {
    if constexpr (requires { p.last_examined(); }) {
        return static_cast<double>(p.last_examined());
    } else {
        return -1;
    }
}

PlacementRequest Request(const std::string& kind) {
    PlacementRequest r;
    r.server_id = "bench-" + kind;
    r.vcpus = 2;
    r.ram_mb = 4096;
    r.disk_gb = 40;
    if (kind == "zone") {
        r.availability_zone = "az3";
    } else if (kind == "rare_trait") {
        r.required_traits = {"gpu"};
    } else if (kind == "anti_affinity") {
        r.group_id = "g";
        r.policy = GroupPolicy::kAntiAffinity;
    } else if (kind == "unplaceable") {
        r.ram_mb = 524288;
    }
    return r;
}

void Decide(benchmark::State& state, Placement* p, const std::string& kind) {
    const PlacementRequest r = Request(kind);
    const bool must_place = kind != "unplaceable";
    for (auto _ : state) {
        auto claim = p->ClaimFor(r);
        if (claim.has_value() != must_place) {
            state.SkipWithError(claim ? "placed an unplaceable request" : claim.error().message.c_str());
            break;
        }
        if (claim) {
            p->Release(r.server_id);
        }
    }
    state.counters["examined"] = Examined(*p);
}

}  // namespace
}  // namespace cogs::scheduler

int main(int argc, char** argv) {
    using namespace cogs::scheduler;
    benchmark::Initialize(&argc, argv);
    std::vector<int> sizes = {100, 1000, 10000, 100000};
    int runs = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.starts_with("--runs=")) {
            runs = std::stoi(a.substr(7));
        } else if (a.starts_with("--hosts=")) {
            sizes.clear();
            for (size_t at = 8; at <= a.size();) {
                const size_t comma = std::min(a.find(',', at), a.size());
                sizes.push_back(std::stoi(a.substr(at, comma - at)));
                at = comma + 1;
            }
        } else {
            std::fprintf(stderr, "usage: %s [--hosts=N,N,...] [--runs=N] [--benchmark_...]\n", argv[0]);
            return 2;
        }
    }
    const double load_before = LoadAverage();
    cogs::testing::TimesReporter collector;
    std::string memory;
    for (const int n : sizes) {
        Cloud cloud = Build(n);
        char line[160];
        std::snprintf(line, sizeof line, R"(%s"%d":{"bytes_per_host":%.0f,"with_claims":%.0f})",
                      memory.empty() ? "" : ",", n, cloud.bytes_per_host, cloud.bytes_per_host_with_claims);
        memory += line;
        for (const char* kind : {"plain", "zone", "rare_trait", "anti_affinity", "unplaceable"}) {
            Placement* p = cloud.placement.get();
            const std::string k = kind;
            benchmark::RegisterBenchmark((k + "/" + std::to_string(n)).c_str(),
                                         [p, k](benchmark::State& state) { Decide(state, p, k); })
                ->Unit(benchmark::kNanosecond)
                ->Repetitions(runs);
        }
        benchmark::RunSpecifiedBenchmarks(&collector);
        benchmark::ClearRegisteredBenchmarks();
    }
    const double load_after = LoadAverage();
    std::string json = R"({"runs":)" + std::to_string(runs) + R"(,"memory":{)" + memory + "}";
    for (const auto& [name, times] : collector.times) {
        char entry[256];
        std::snprintf(entry, sizeof entry, R"(,"%s_ns":%.0f,"%s_ns_min_max":[%.0f,%.0f],"%s_examined":%.0f)",
                      name.c_str(), Median(times), name.c_str(),
                      *std::min_element(times.begin(), times.end()),
                      *std::max_element(times.begin(), times.end()), name.c_str(),
                      collector.counters[name]["examined"]);
        json += entry;
    }
    char machine[160];
    std::snprintf(machine, sizeof machine,
                  R"(,"machine":{"nproc":%u,"loadavg_1m_before":%.2f,"loadavg_1m_after":%.2f}})",
                  std::thread::hardware_concurrency(), load_before, load_after);
    json += machine;
    std::printf("%s\n", json.c_str());
    return 0;
}
