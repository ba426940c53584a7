// Host liveness: the lease each compute host renews (its heartbeat), and the state the control
// plane derives from it. Pure logic on a steady clock the caller passes in (no timers, no I/O),
// so it is tested without waiting. Used by the HostMonitor (host_monitor.h); lives on the io thread.
//
//   up ──(no renewal for ttl)──▶ suspect ──(fence_window more)──▶ down
//    ▲                              │                               │
//    └────────── a renewal ─────────┴───────────────────────────────┘
//
// A suspect host takes no new servers; only a down host is evacuated. The agent fences itself
// (stops its instances) at `ttl` after the SEND time of its last acknowledged renewal, which is no
// later than our receipt + ttl: by the time a host is suspect here its instances are stopped, and
// the fencing window covers timer lateness on either side before anything is rebuilt elsewhere.
//
// Two guards against declaring hosts down wrongly:
// - restart grace: for `restart_grace` after the control plane starts, a lapsed host stays suspect
//   (agents need a moment to find the restarted control plane again);
// - mass failure: when more than `max_down_fraction` of the hosts are suspect, down or late (no
//   renewal for half the TTL: agents renew at least three times per TTL, so a late host has missed
//   one) at once, the fault is more likely ours (the control plane's network) than theirs:
//   evacuation pauses (`EvacuationPaused`), hosts are still marked so that no new servers go
//   there ("late" and "ttl" are each host's own: the lease its last renewal granted). Counting late hosts
//   matters because leases lapse one by one, up to a heartbeat apart: the first host must not be evacuated
//   before the others of the same outage are suspect.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/time.h"

namespace cogs::cloud::health {

enum class HostState { kUp, kSuspect, kDown };
std::string_view ToString(HostState state);

struct LivenessOptions {
    Duration ttl = std::chrono::seconds(3);
    Duration fence_window = std::chrono::seconds(1);
    Duration restart_grace = std::chrono::seconds(10);
    double max_down_fraction = 0.5;
};

class Liveness {
public:
    Liveness(LivenessOptions options, SteadyTime started);

    struct Change {
        std::string host;
        HostState from, to;
        SteadyTime last_renewal;  // of the host, when it changed
    };

    // A renewal arrived (or the host registered). A host seen for the first time starts up, its
    // lease counted from `now`. Returns the change if the host was suspect or down. `ttl` is the
    // lease this renewal grants (the one its answer tells the agent); zero: options().ttl. A host's
    // lease is always the last one granted to it: a TTL that shrinks as hosts leave shortens only
    // the leases renewed from then on, never one an agent already holds.
    std::optional<Change> Renewed(const std::string& host, SteadyTime now, Duration ttl = Duration::zero());
    void Forget(const std::string& host);

    // The transitions due at `now`, in host order.
    std::vector<Change> Tick(SteadyTime now);
    // When Tick next has something to do (the earliest lease expiry or fencing deadline, or the
    // end of the restart grace), if any host can still change without a renewal.
    std::optional<SteadyTime> NextDeadline() const;

    HostState StateOf(const std::string& host) const;  // kDown for an unknown host
    std::optional<SteadyTime> LastRenewal(const std::string& host) const;
    std::optional<SteadyTime> Since(const std::string& host) const;  // in the current state since
    bool Known(const std::string& host) const { return hosts_.contains(host); }

    // More than max_down_fraction of the known hosts are suspect, down or late at `now`.
    bool EvacuationPaused(SteadyTime now) const;
    size_t Count(HostState state) const;
    size_t size() const { return hosts_.size(); }
    const LivenessOptions& options() const { return options_; }

private:
    struct Host {
        SteadyTime last_renewal;
        HostState state = HostState::kUp;
        SteadyTime since;
        Duration ttl{};  // the lease its last renewal granted
    };
    LivenessOptions options_;
    SteadyTime grace_ends_;
    std::map<std::string, Host, std::less<>> hosts_;
};

}  // namespace cogs::cloud::health
