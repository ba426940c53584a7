#include "cogs/cloud/health/host_monitor.h"

#include <cstdio>

#include "cogs/observe/log.h"

namespace cogs::cloud::health {

HostMonitor::HostMonitor(Context& ctx)
    : ctx_(ctx),
      liveness_(LivenessOptions{ctx.options.lease_ttl, ctx.options.fence_window, ctx.options.restart_grace,
                                ctx.options.max_down_fraction},
                ctx.clock.Now()),
      timer_(ctx.clock.NewTimer(ctx.io)) {
    observe::Metrics* m = ctx.metrics();
    auto hosts = observe::GaugeOf(m, "cogs_hosts", "Hosts by state: up, suspect, down, disabled.");
    metrics_.up = hosts.With({{"state", "up"}});
    metrics_.suspect = hosts.With({{"state", "suspect"}});
    metrics_.down = hosts.With({{"state", "down"}});
    metrics_.disabled = hosts.With({{"state", "disabled"}});
    metrics_.detections = observe::CounterOf(m, "cogs_heal_host_failures_total",
                                             "Hosts found without a lease (up -> suspect or down).")
                              .With({});
    metrics_.renewals = observe::CounterOf(m, "cogs_host_renewals_total",
                                           "Host leases renewed (each host of a batch counts).")
                            .With({});
    metrics_.ttl = observe::GaugeOf(m, "cogs_host_lease_ttl_seconds",
                                    "The lease TTL a renewal grants now (it grows with the number of hosts).")
                       .With({});
}

HostMonitor::~HostMonitor() { Stop(); }

void HostMonitor::Start() { Tick(); }

void HostMonitor::Track(const std::string& host) {
    (void)liveness_.Renewed(host, ctx_.clock.Now(), LeaseTtl());
    epochs_[host] = EpochNow();
}

void HostMonitor::Forget(const std::string& host) {
    liveness_.Forget(host);
    epochs_.erase(host);
}

int64_t HostMonitor::EpochNow() const { return ctx_.options.lease_epoch_base + ctx_.clock.WallMs(); }

int64_t HostMonitor::LeaseEpoch(const std::string& host) const {
    auto it = epochs_.find(host);
    return it == epochs_.end() ? 0 : it->second;
}

void HostMonitor::Stop() { timer_->Cancel(); }

void HostMonitor::OnChange(std::function<void(const Liveness::Change&)> listener) {
    on_change_.push_back(std::move(listener));
}

void HostMonitor::OnTick(std::function<void()> listener) { on_tick_.push_back(std::move(listener)); }

Duration HostMonitor::LeaseTtl() const {
    const Duration base = liveness_.options().ttl;
    const int64_t rate = ctx_.options.max_renewals_per_s;
    if (rate <= 0) return base;
    // The registered hosts (the model's, known before Load tracks them one by one), or those with a lease.
    const auto hosts = static_cast<int64_t>(std::max(ctx_.model.All(kHost).size(), liveness_.size()));
    const int64_t needed_ms = (3 * hosts * 1000 + rate - 1) / rate;
    const auto rounded = std::chrono::milliseconds((needed_ms + 99) / 100 * 100);
    return std::max<Duration>(base, rounded);
}

int64_t HostMonitor::lease_ttl_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(LeaseTtl()).count();
}

bool HostMonitor::EvacuationPaused() const { return liveness_.EvacuationPaused(ctx_.clock.Now()); }

Duration HostMonitor::Renewed(const std::string& host, const std::string& why) {
    epochs_.try_emplace(host, EpochNow());  // a host registered now
    const Duration ttl = LeaseTtl();
    metrics_.renewals.Inc();
    if (auto change = liveness_.Renewed(host, ctx_.clock.Now(), ttl)) {
        Changed(*change, why);
    } else {
        ctx_.placement.SetAlive(host, true);
    }
    return ttl;
}

// Applies the transitions that are due, then sleeps until the next one can be (at most 1 s:
// renewals move deadlines later, never earlier, so waking early is only a re-check).
void HostMonitor::Tick() {
    const SteadyTime now = ctx_.clock.Now();
    for (const auto& change : liveness_.Tick(now)) {
        Changed(change, "");
    }
    for (const auto& listener : on_tick_) {
        listener();
    }
    SteadyTime next = now + std::chrono::seconds(1);
    if (auto due = liveness_.NextDeadline(); due && *due < next) next = *due;
    timer_->Arm(next, [this] { Tick(); });
}

void HostMonitor::Changed(const Liveness::Change& c, const std::string& why) {
    const std::string& name = c.host;
    const double silent_s = std::chrono::duration<double>(ctx_.clock.Now() - c.last_renewal).count();
    char silent[32];
    std::snprintf(silent, sizeof silent, "%.1f s", silent_s);
    std::vector<store::EventRecord> events;
    if (c.to == HostState::kSuspect) {
        ctx_.placement.SetAlive(name, false);
        metrics_.detections.Inc();
        observe::Log("cloud").warn("host {} is suspect: no lease renewal for {}", name, silent);
        events.push_back(
            ctx_.Event(kHost, name, "", "suspect",
                       std::string("suspect: no lease renewal for ") + silent + "; no new servers go there"));
    } else if (c.to == HostState::kDown) {
        ctx_.placement.SetAlive(name, false);
        if (c.from == HostState::kUp) metrics_.detections.Inc();
        observe::Log("cloud").warn("host {} is down: no lease renewal for {}; its agent has fenced itself",
                                   name, silent);
        events.push_back(ctx_.Event(kHost, name, "", "down",
                                    std::string("down: no lease renewal for ") + silent +
                                        "; its agent has fenced itself; its servers are evacuated"));
    } else {
        ctx_.placement.SetAlive(name, true);
        if (c.from == HostState::kDown) {
            // Calls sent to it before were given up (and undone without its agent): a new epoch.
            epochs_[name] = std::max(epochs_[name] + 1, EpochNow());
        }
        observe::Log("cloud").info("host {} is up again ({})", name, why);
        events.push_back(ctx_.Event(kHost, name, "", "up",
                                    "up again after " + std::string(ToString(c.from)) + ": " + why));
    }
    ctx_.Persist({}, std::move(events));
    for (const auto& listener : on_change_) {
        listener(c);
    }
}

void HostMonitor::SampleGauges() {
    int64_t up = 0, suspect = 0, down = 0, disabled = 0;
    for (const auto& [name, r] : ctx_.model.All(kHost)) {
        const bool enabled = !r.body.contains("enabled") || Bool(r.body, "enabled");
        const HostState st = liveness_.StateOf(name);
        (!enabled ? disabled : st == HostState::kUp ? up : st == HostState::kSuspect ? suspect : down) += 1;
    }
    metrics_.up.Set(static_cast<double>(up));
    metrics_.suspect.Set(static_cast<double>(suspect));
    metrics_.down.Set(static_cast<double>(down));
    metrics_.disabled.Set(static_cast<double>(disabled));
    metrics_.ttl.Set(std::chrono::duration<double>(LeaseTtl()).count());
}

}  // namespace cogs::cloud::health
