// Hosts, as the API shows and changes them (admin only): an agent registers its host (PUT
// /v1/hosts/{name}: URL, capacity, zone, traits — which also renews its lease) and renews the lease
// with every heartbeat (POST .../heartbeat, carrying its instance reports); an operator lists,
// enables, disables and drains hosts. Leases themselves live in health/host_monitor.h, moving
// servers off a host in heal/healer.h.
//
// A heartbeat's body carries the agent's instance counts by state and the instance reports it has
// not had acknowledged (crashed, restarted, gave_up: server events; gave_up puts the server in
// ERROR); its answer, once the reports' events are durable, gives the lease TTL and the highest
// report seq taken. FENCED instances on a host that is up make the reconcilers look at it now.
#pragma once

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

namespace health {
class HostMonitor;
}
namespace heal {
class Healer;
}
namespace reconcile {
class ReconcileLoop;
}

class Hosts {
public:
    Hosts(Context& ctx, health::HostMonitor& monitor, heal::Healer& healer,
          reconcile::ReconcileLoop& reconcile);

    void List(Call call);
    void Show(Call call);
    void Register(Call call);
    void Heartbeat(Call call);
    // POST /v1/hosts/{name}/enable and /disable {"reason"?}.
    void Enable(Call call, bool enable);
    // POST /v1/hosts/{name}/drain {"reason"?}: disabled, draining until no server is left.
    void Drain(Call call);

    // The placement view of a host record.
    static scheduler::HostInfo InfoOf(const Res& r);

private:
    json::object View(const Res& r) const;
    // The host named by the call (admin only), or the error.
    Result<Res*> Find(const Call& call);
    // Persists a host record and its events and answers it as it is once durable.
    void SaveAndAnswer(const Res& h, const Call& call, std::vector<store::EventRecord> events);
    void InstanceReport(const std::string& host, const json::object& report,
                        std::vector<store::ResourceWrite>& writes, std::vector<store::EventRecord>& events);

    Context& ctx_;
    health::HostMonitor& monitor_;
    heal::Healer& healer_;
    reconcile::ReconcileLoop& reconcile_;
    observe::Counter restarts_;
};

}  // namespace cogs::cloud
