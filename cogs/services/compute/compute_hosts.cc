// The hosts: fencing and the heartbeat's body (HostLink), and what the domain shows of its hosts and
// instances: the inventory, GET /v1/instances/{id} and the metrics sampled at each scrape.
#include <boost/json/serialize.hpp>

#include "cogs/observe/log.h"
#include "cogs/services/compute/internal/compute_domain.h"
#include "cogs/services/kit/dispatch.h"
#include "cogs/wire/answer.h"

namespace cogs::services::compute::internal {
namespace {

namespace json = wire::json;

constexpr size_t kMaxReportsPerBeat = 100;  // sent in one heartbeat
constexpr std::string_view kConsoleSuffix = "/console";

json::value OrNull(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

}  // namespace

void ComputeDomainImpl::SetLeaseEpoch(std::string_view host, int64_t epoch) {
    if (hosts_.count(std::string(host)) == 0) {
        return;
    }
    int64_t& known = lease_epochs_[std::string(host)];
    known = std::max(known, epoch);
}

size_t ComputeDomainImpl::SetFenced(std::string_view host, bool fenced) {
    if (hosts_.find(host) == hosts_.end()) {
        return 0;
    }
    if (!fenced) {
        if (auto it = fenced_.find(host); it != fenced_.end()) {
            fenced_.erase(it);
        }
        return 0;
    }
    if (!fenced_.emplace(host).second) {
        return 0;
    }
    ++counts_.fences;
    kit::Tx tx;
    size_t stopped = 0;
    if (auto ids = by_host_.find(host); ids != by_host_.end()) {
        for (const std::string& id : ids->second) {
            Instance& i = instances_.at(id);
            if (i.power != Power::kOn && i.power != Power::kCrashed) {
                continue;
            }
            if (i.power == Power::kOn) {
                // At once, not gracefully: the control plane may run it elsewhere a fence window from now.
                if (auto s = driver_->PowerOff(i.spec); !s) {
                    // It is fenced all the same: nothing of it may run without a lease.
                    observe::Log("compute").error("fencing: stopping instance {} failed: {}", id,
                                                  s.error().ToString());
                }
            }
            i.power = Power::kFenced;
            i.rebooting = false;
            i.restart_at_us = 0;
            tx.Put(kTable, id, Record(i));
            Settle(i, clock_.WallUs());
            ++stopped;
        }
    }
    if (context_ != nullptr && !tx.writes().empty()) {
        context_->Write(std::move(tx));
    }
    return stopped;
}

std::string ComputeDomainImpl::HeartbeatBody(std::string_view host) const {
    const int64_t now = clock_.WallUs();
    json::object counts;
    if (auto ids = by_host_.find(host); ids != by_host_.end()) {
        for (const std::string& id : ids->second) {
            const char* state = instances_.at(id).State(now);
            if (json::value* n = counts.if_contains(state)) {
                *n = n->as_int64() + 1;
            } else {
                counts[state] = 1;
            }
        }
    }
    json::array reports;
    if (auto q = reports_.find(host); q != reports_.end()) {
        for (size_t k = 0; k < q->second.size() && k < kMaxReportsPerBeat; ++k) {
            const Report& r = q->second[k];
            json::object o;
            o["seq"] = r.seq;
            o["instance"] = r.instance;
            o["type"] = r.type;
            o["message"] = r.message;
            o["at_ms"] = r.at_ms;
            reports.push_back(std::move(o));
        }
    }
    json::object o;
    o["instances"] = std::move(counts);
    o["reports"] = std::move(reports);
    return json::serialize(o);
}

void ComputeDomainImpl::Acknowledged(std::string_view host, uint64_t acked_seq) {
    auto q = reports_.find(host);
    if (q == reports_.end()) {
        return;
    }
    while (!q->second.empty() && q->second.front().seq <= acked_seq) {
        q->second.pop_front();
    }
}

// cogs_compute_instances{host,state}, from the clock like every state. A host and state seen at
// an earlier scrape and empty now is set to 0 rather than left at its last value. The handles
// are kept (per registry) so a scrape of thousands of hosts does not look each one up again.
// Also cogs_compute_host_fenced{host} and the supervisor's and fencing's counters, which count
// in the domain and are brought up to date here (a counter only goes up by what is new).
void ComputeDomainImpl::Collect(observe::Metrics& metrics) const {
    if (gauges_for_ != &metrics) {
        gauges_.clear();
        gauges_for_ = &metrics;
        family_ = observe::GaugeOf(&metrics, "cogs_compute_instances",
                                   "Instances this process holds, by host and state.");
        const observe::GaugeFamily fenced =
            observe::GaugeOf(&metrics, "cogs_compute_host_fenced",
                             "1 while the host is fenced (it holds no lease from the control plane), "
                             "else 0.");
        fenced_gauges_.clear();
        for (const auto& [name, h] : hosts_) {
            fenced_gauges_.push_back(fenced.With({{"host", name}}));
        }
        const observe::CounterFamily restarts = observe::CounterOf(
            &metrics, "cogs_compute_restarts_total",
            "Supervisor outcomes for crashed instances: restarted, or gave_up (the instance went to "
            "ERROR).");
        restarted_counter_ = restarts.With({{"outcome", "restarted"}});
        gave_up_counter_ = restarts.With({{"outcome", "gave_up"}});
        fences_counter_ = observe::CounterOf(&metrics, "cogs_compute_fences_total",
                                             "Times a host fenced itself when its lease ran out.")
                              .With({});
        counted_ = Counts{};
    }
    const int64_t now = clock_.WallUs();
    std::map<std::pair<std::string_view, std::string_view>, int64_t> by_host_state;
    for (const auto& [id, i] : instances_) {
        ++by_host_state[{i.spec.host, i.State(now)}];
    }
    for (auto& [key, gauge] : gauges_) {
        auto it = by_host_state.find({key.first, key.second});
        gauge.Set(it == by_host_state.end() ? 0.0 : static_cast<double>(it->second));
    }
    for (const auto& [key, n] : by_host_state) {
        std::pair<std::string, std::string> labels{std::string(key.first), std::string(key.second)};
        if (!gauges_.contains(labels)) {
            observe::Gauge g = family_.With({{"host", labels.first}, {"state", labels.second}});
            g.Set(static_cast<double>(n));
            gauges_.emplace(std::move(labels), g);
        }
    }
    size_t k = 0;
    for (const auto& [name, h] : hosts_) {
        fenced_gauges_[k++].Set(fenced_.contains(name) ? 1.0 : 0.0);
    }
    restarted_counter_.Inc(static_cast<double>(counts_.restarted - counted_.restarted));
    gave_up_counter_.Inc(static_cast<double>(counts_.gave_up - counted_.gave_up));
    fences_counter_.Inc(static_cast<double>(counts_.fences - counted_.fences));
    counted_ = counts_;
}

std::string ComputeDomainImpl::Inventory() const {
    const int64_t now = clock_.WallUs();
    json::array hosts;
    for (const auto& [name, h] : hosts_) {
        json::object o;
        o["name"] = h.name;
        AddHostFields(h, o);
        o["fenced"] = fenced_.contains(name);
        hosts.push_back(std::move(o));
    }
    json::array instances;
    for (const auto& [id, i] : instances_) {
        instances.push_back(Describe(i, now));
    }
    json::object o;
    o["hosts"] = std::move(hosts);
    o["instances"] = std::move(instances);
    return json::serialize(o);
}

std::optional<http::Response> ComputeDomainImpl::Get(const http::Request& request) const {
    const std::string path = request.Path();
    if (path.starts_with(kInstancesPrefix) && path.ends_with(kConsoleSuffix) &&
        path.size() > kInstancesPrefix.size() + kConsoleSuffix.size()) {
        const std::string id = http::UrlDecode(std::string_view(path).substr(
            kInstancesPrefix.size(), path.size() - kInstancesPrefix.size() - kConsoleSuffix.size()));
        auto it = instances_.find(id);
        if (it == instances_.end()) {
            return wire::ServiceError(Error(ErrorCode::kNotFound, "no instance '" + id + "'"));
        }
        auto output = driver_->Console(it->second.spec, kConsoleBytes);
        if (!output) {
            return wire::ServiceError(output.error());
        }
        json::object o;
        o["id"] = id;
        o["output"] = *output;
        http::Response r;
        r.body = json::serialize(o);
        return r;
    }
    return kit::GetRecord(request, kInstancesPrefix, "instance", [this](const std::string& id) {
        auto it = instances_.find(id);
        return it == instances_.end() ? std::nullopt
                                      : std::optional<json::object>(Describe(it->second, clock_.WallUs()));
    });
}

json::object ComputeDomainImpl::Describe(const Instance& i, int64_t now) const {
    json::object o;
    o["id"] = i.spec.id;
    o["host"] = i.spec.host;
    o["state"] = i.State(now);
    o["vcpus"] = i.spec.vcpus;
    o["ram_mb"] = i.spec.ram_mb;
    o["disk_gb"] = i.spec.disk_gb;
    o["image"] = i.spec.image;
    o["port_id"] = OrNull(i.spec.port_id);
    o["mac_address"] = OrNull(i.spec.mac_address);
    o["ip_address"] = OrNull(i.spec.ip_address);
    o["project_id"] = OrNull(i.spec.project_id);
    o["name"] = OrNull(i.spec.name);
    o["created_at_ms"] = i.created_at_ms;
    o["ready_at_ms"] =
        i.ready_at_us == kReportedUs ? json::value(nullptr) : json::value(i.ready_at_us / 1000);
    o["crashes"] = i.CrashesSince(now - WindowUs());
    o["volumes"] = VolumesJson(i.spec.volumes);
    return o;
}

}  // namespace cogs::services::compute::internal
