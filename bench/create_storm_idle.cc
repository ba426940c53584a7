#include "bench/create_storm_idle.h"

#include <sstream>
#include <thread>

#include "bench/create_storm_util.h"

namespace cogs::bench::storm {
namespace {

struct Scrape {
    double renewal_requests = 0;         // POST /v1/heartbeats and /v1/hosts/{id}/heartbeat answered
    double renewals = 0;                 // cogs_host_renewals_total
    double ttl_s = 0;                    // cogs_host_lease_ttl_seconds
    double allocated = -1, mapped = -1;  // cogs_allocator_*_bytes (-1: not exported)
};

// Reads cogsd's own counters from its /metrics (Prometheus text, one sample a line).
Scrape ScrapeCogsd(const testing::DevCloud& dev) {
    Scrape s;
    auto r = testing::ApiClient(dev.api_url(), "").Call("GET", "/metrics");
    if (!r || r->status != 200) {
        return s;
    }
    std::istringstream lines(r->text);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        const auto space = line.rfind(' ');
        if (space == std::string::npos) {
            continue;
        }
        const double value = std::strtod(line.c_str() + space + 1, nullptr);
        if (line.starts_with("cogs_http_requests_total{") && line.find("heartbeat") != std::string::npos) {
            s.renewal_requests += value;
        } else if (line.starts_with("cogs_host_renewals_total")) {
            s.renewals += value;
        } else if (line.starts_with("cogs_host_lease_ttl_seconds")) {
            s.ttl_s = value;
        } else if (line.starts_with("cogs_allocator_allocated_bytes")) {
            s.allocated = value;
        } else if (line.starts_with("cogs_allocator_mapped_bytes")) {
            s.mapped = value;
        }
    }
    return s;
}

}  // namespace

json::object CogsdHeap(const testing::DevCloud& dev) {
    const Scrape s = ScrapeCogsd(dev);
    json::object o;
    if (s.allocated >= 0) {
        o["cogsd_allocated_kib"] = static_cast<int64_t>(s.allocated / 1024);
        o["cogsd_mapped_kib"] = static_cast<int64_t>(s.mapped / 1024);
    }
    return o;
}

json::object MeasureIdle(const testing::DevCloud& dev, const std::vector<Accounted>& procs,
                         const std::string& cogsd, int seconds) {
    Progress("idle: {} s with every host up and renewing, before the storm", seconds);
    CpuMeter cpu(procs);
    const Scrape before = ScrapeCogsd(dev);
    cpu.Start();
    const SteadyTime start = SteadyClock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    const double wall = std::chrono::duration<double>(SteadyClock::now() - start).count();
    json::object used = cpu.Stop();
    const Scrape after = ScrapeCogsd(dev);
    double cogsd_cpu = 0;
    if (const auto* by_group = used.if_contains("cpu_s"); by_group != nullptr && by_group->is_object()) {
        if (const auto* c = by_group->as_object().if_contains(cogsd); c != nullptr && c->is_number()) {
            cogsd_cpu = c->to_number<double>();
        }
    }
    json::object out;
    out["idle_s"] = Round(wall, 1);
    out["idle_cogsd_cpu_share"] = Round(cogsd_cpu / wall, 4);
    out["idle_renewal_requests_per_s"] = Round((after.renewal_requests - before.renewal_requests) / wall, 1);
    out["idle_renewals_per_s"] = Round((after.renewals - before.renewals) / wall, 1);
    out["idle_lease_ttl_s"] = after.ttl_s;
    out["idle_cpu"] = std::move(used);
    Progress("idle: cogsd {:.1f} % of a core, {:.1f} renewal requests/s carrying {:.0f} renewals/s, TTL {} s",
             100 * cogsd_cpu / wall, (after.renewal_requests - before.renewal_requests) / wall,
             (after.renewals - before.renewals) / wall, after.ttl_s);
    return out;
}

}  // namespace cogs::bench::storm
