// HostMonitor: where host leases live. It owns every compute host's lease (liveness.h: up ->
// suspect -> down without renewals, the restart grace) and the timer that applies the transitions
// at their exact deadlines, and tells the rest of the control plane what changed:
//
//   suspect  placement skips the host (no new servers); a "suspect" event; counted as a detection
//   down     its agent has fenced itself: a "down" event; listeners evacuate (heal/)
//   up       a renewal came back: placement takes it again; an "up" event; listeners look at what
//            it holds (reconcile/)
//
// Renewals come from the API (PUT /v1/hosts/{name} registers and renews, POST .../heartbeat
// renews: resources/hosts.cc). The monitor counts time on the Context's clock: a test moves a fake
// clock to the deadline instead of waiting for it.
//
// Track() gives a host loaded from the store a fresh lease (its agent renews within it, and within
// the restart grace). Start() arms the timer; Stop() disarms it. Threading: the io thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cogs/cloud/core/context.h"
#include "cogs/cloud/health/liveness.h"

namespace cogs::cloud::health {

class HostMonitor {
public:
    explicit HostMonitor(Context& ctx);
    ~HostMonitor();

    void Start();
    void Stop();

    // Called with every transition, after the monitor's own bookkeeping and events.
    void OnChange(std::function<void(const Liveness::Change&)> listener);
    // Called after every tick of the timer (at least every second, and at each deadline).
    void OnTick(std::function<void()> listener);

    // A host loaded from the store: up, with a fresh lease, no event.
    void Track(const std::string& host);
    // A host deleted: its lease and epoch are forgotten, with no event (the delete has its own).
    void Forget(const std::string& host);
    // A renewal (or a registration) of `host` now; `why` says what brought it back if it was not up.
    // Returns the TTL of the lease granted, which its answer must carry (LeaseTtl() may have grown
    // by the time the answer goes).
    Duration Renewed(const std::string& host, const std::string& why);

    // When the control plane last took `host` in (wall ms): at its start for a host loaded from the
    // store, at its registration, and when it came back from down. Its renewal answers carry it
    // ("lease_epoch") and the compute calls that start instances too, so that its agent refuses a
    // call sent before the host went down and came back (services/compute/compute.h). 0: unknown.
    int64_t LeaseEpoch(const std::string& host) const;

    HostState StateOf(const std::string& host) const { return liveness_.StateOf(host); }
    bool Up(const std::string& host) const { return StateOf(host) == HostState::kUp; }
    const Liveness& liveness() const { return liveness_; }
    // The lease a renewal grants now: CloudOptions::lease_ttl, or longer with many hosts (cloud.h:
    // max(lease_ttl, 3 x hosts / max_renewals_per_s), rounded up to 100 ms).
    Duration LeaseTtl() const;
    int64_t lease_ttl_ms() const;
    // How often agents renew: a third of the TTL (renewal answers carry it, "renew_interval_ms").
    int64_t renew_interval_ms() const { return lease_ttl_ms() / 3; }
    // More than max_down_fraction of the hosts are suspect, down or late, now.
    bool EvacuationPaused() const;

    // Samples cogs_hosts{state} (at a scrape, on the io thread).
    void SampleGauges();

private:
    void Tick();
    void Changed(const Liveness::Change& c, const std::string& why);

    Context& ctx_;
    Liveness liveness_;
    std::unique_ptr<runtime::Timer> timer_;
    std::vector<std::function<void(const Liveness::Change&)>> on_change_;
    std::vector<std::function<void()>> on_tick_;
    int64_t EpochNow() const;                // CloudOptions::lease_epoch_base + the wall clock
    std::map<std::string, int64_t> epochs_;  // LeaseEpoch
    struct {
        observe::Gauge up, suspect, down, disabled;
        observe::Counter detections, renewals;
        observe::Gauge ttl;
    } metrics_;
};

}  // namespace cogs::cloud::health
