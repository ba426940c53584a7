// ReconcileLoop: where drift is repaired, as a Kubernetes controller does. Every reconcile_every,
// and for one host when it comes back or reports fenced instances, it reads the inventories
// (GET /v1/inventory) of cogs-network, cogs-volume and the agent of every host that is up, and
// hands them with the desired state to the Reconciler (reconcile.h: pure decisions). Each action
// runs as a workflow — heal.* (workflows/cloud/heal.yaml) or server.repair (heal/healer.h) — one at
// a time per action key, with the retries, keys, resume and events of any workflow.
//
// Each pass also looks for stuck work: a resource seen transitional with the same workflow at two
// passes in a row whose workflow has ended (its end was lost to us) is settled as at start-up; and
// it runs the healer's level-triggered Heal().
//
// Inventory reads are HTTP with a 5 s deadline on the machine's clock (a transport matter); when
// the passes run and how long an orphan has been seen go by the Context's clock.
//
// Start() schedules the passes (the first one PassInterval() after it); Stop() cancels them. A
// periodic pass whose inventories are not all in when the next is due lets that one go: passes
// never pile up behind slow agents.
// Threading: the io thread.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cogs/cloud/core/context.h"
#include "cogs/cloud/heal/healer.h"
#include "cogs/cloud/health/host_monitor.h"
#include "cogs/cloud/reconcile/reconcile.h"

namespace cogs::services::kit {
class HttpReader;
}

namespace cogs::cloud::reconcile {

class ReconcileLoop {
public:
    // Registers the settle functions of the heal.* workflows.
    ReconcileLoop(Context& ctx, health::HostMonitor& hosts, heal::Healer& healer);
    ~ReconcileLoop();

    void Start();
    void Stop();

    // One pass now: stuck work, the healer, then every inventory.
    void Pass();
    // The time between two periodic passes for the cloud as it is now: max(reconcile_every,
    // records / reconcile_records_per_s), rounded up to 100 ms (cloud.h).
    Duration PassInterval() const;
    // Scans a host soon (it came back, or holds fenced instances): what it holds that is stale goes,
    // what is fenced and still its own runs again. The hosts asked for in one turn, and while a host
    // scan is in flight, are scanned together (one at a time): each inventory is read once, the
    // desired state judged once, whatever the number of hosts.
    void ReconcileHost(const std::string& host, const std::string& why);

private:
    struct Scan;
    void ReadInventory(const std::shared_ptr<Scan>& scan, const std::string& service, const std::string& url,
                       std::vector<std::string> hosts);
    // The reader of `service` at `url`, with the token for it (for "compute", `host`'s agent's, or
    // that of another host served there); over TLS an agent's certificate must name that host.
    services::kit::HttpReader* ReaderFor(const std::string& url, const std::string& service,
                                         const std::string& host);
    void StartHostScan();
    void EndHostScan();
    Desired DesiredState() const;
    void RunScan(const Scan& scan);
    void StartRepair(const Action& a, const std::string& key);
    void SettleRepair(Settlement& st);
    void SettleStuck();

    Context& ctx_;
    health::HostMonitor& hosts_;
    heal::Healer& healer_;
    Reconciler reconciler_;
    std::unique_ptr<runtime::Timer> timer_;
    std::set<std::string> acting_;  // actions with a workflow in flight (their key)
    // When the last workflow of an action ended (wall ms, by key): a scan begun before that read
    // inventories from before it, so they are no evidence for the same action again. Entries
    // older than every scan in flight are dropped at each scan.
    std::map<std::string, int64_t> ended_ms_;
    std::set<std::string> queued_hosts_;  // for the next host scan
    bool host_scan_running_ = false;
    bool periodic_scan_running_ = false;
    struct Reader {
        std::string host;  // whose token it presents and, over TLS, whose name it asks for
        std::string token;
        std::shared_ptr<services::kit::HttpReader> reader;
        int64_t used_ms = 0;  // wall ms: readers unused for ten passes are dropped
    };
    std::map<std::string, Reader> readers_;                 // by URL
    std::map<std::string, std::string> transitional_seen_;  // "kind/id" -> workflow id
    observe::CounterFamily repairs_;
    observe::Gauge interval_gauge_;
};

}  // namespace cogs::cloud::reconcile
