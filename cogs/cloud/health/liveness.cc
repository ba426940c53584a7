#include "cogs/cloud/health/liveness.h"

#include <algorithm>

namespace cogs::cloud::health {

std::string_view ToString(HostState state) {
    switch (state) {
        case HostState::kUp: return "up";
        case HostState::kSuspect: return "suspect";
        case HostState::kDown: return "down";
    }
    return "down";
}

Liveness::Liveness(LivenessOptions options, SteadyTime started)
    : options_(options), grace_ends_(started + options.restart_grace) {}

std::optional<Liveness::Change> Liveness::Renewed(const std::string& host, SteadyTime now, Duration ttl) {
    auto [it, inserted] = hosts_.try_emplace(host, Host{now, HostState::kUp, now});
    Host& h = it->second;
    const HostState was = h.state;
    const SteadyTime last = h.last_renewal;
    h.last_renewal = now;
    h.ttl = ttl > Duration::zero() ? ttl : options_.ttl;
    if (inserted || was == HostState::kUp) {
        return std::nullopt;
    }
    h.state = HostState::kUp;
    h.since = now;
    return Change{host, was, HostState::kUp, last};
}

void Liveness::Forget(const std::string& host) { hosts_.erase(host); }

std::vector<Liveness::Change> Liveness::Tick(SteadyTime now) {
    std::vector<Change> changes;
    for (auto& [name, h] : hosts_) {
        const SteadyTime lapses = h.last_renewal + h.ttl;
        const SteadyTime fenced = lapses + options_.fence_window;
        HostState want = HostState::kUp;
        if (now >= lapses) {
            want = now >= fenced && now >= grace_ends_ ? HostState::kDown : HostState::kSuspect;
        }
        // A host only goes forward without a renewal (up -> suspect -> down).
        if (want > h.state) {
            changes.push_back(Change{name, h.state, want, h.last_renewal});
            h.state = want;
            h.since = now;
        }
    }
    return changes;
}

std::optional<SteadyTime> Liveness::NextDeadline() const {
    std::optional<SteadyTime> next;
    auto consider = [&](SteadyTime t) {
        if (!next || t < *next) next = t;
    };
    for (const auto& [name, h] : hosts_) {
        if (h.state == HostState::kUp) {
            consider(h.last_renewal + h.ttl);
        } else if (h.state == HostState::kSuspect) {
            consider(std::max(h.last_renewal + h.ttl + options_.fence_window, grace_ends_));
        }
    }
    return next;
}

HostState Liveness::StateOf(const std::string& host) const {
    auto it = hosts_.find(host);
    return it == hosts_.end() ? HostState::kDown : it->second.state;
}

std::optional<SteadyTime> Liveness::LastRenewal(const std::string& host) const {
    auto it = hosts_.find(host);
    if (it == hosts_.end()) return std::nullopt;
    return it->second.last_renewal;
}

std::optional<SteadyTime> Liveness::Since(const std::string& host) const {
    auto it = hosts_.find(host);
    if (it == hosts_.end()) return std::nullopt;
    return it->second.since;
}

size_t Liveness::Count(HostState state) const {
    return static_cast<size_t>(std::count_if(hosts_.begin(), hosts_.end(),
                                             [state](const auto& kv) { return kv.second.state == state; }));
}

bool Liveness::EvacuationPaused(SteadyTime now) const {
    if (hosts_.empty()) return false;
    const size_t lapsed =
        static_cast<size_t>(std::count_if(hosts_.begin(), hosts_.end(), [&](const auto& kv) {
            return kv.second.state != HostState::kUp || now - kv.second.last_renewal >= kv.second.ttl / 2;
        }));
    return static_cast<double>(lapsed) > options_.max_down_fraction * static_cast<double>(hosts_.size());
}

}  // namespace cogs::cloud::health
