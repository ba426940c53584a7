#include "cogs/store/store_metrics.h"

#include <atomic>
#include <memory>

#include "cogs/base/time.h"
#include "cogs/observe/log.h"

namespace cogs::store {

std::function<void(const CommitReport&)> CommitMetrics(observe::Metrics* metrics) {
    if (metrics == nullptr) {
        return {};
    }
    struct Handles {
        observe::Histogram duration;
        observe::Histogram groups;
        observe::Counter commits;
        observe::Counter fenced;
        observe::Counter no_space;
        observe::Gauge held;
        std::shared_ptr<std::atomic<int64_t>> last_commit;  // steady ns of the last durable commit
    };
    Handles h{
        metrics->Histogram("cogs_store_commit_duration_seconds", "One store transaction, BEGIN to durable.")
            .With({}),
        metrics
            ->Histogram("cogs_store_commit_groups",
                        "Write groups per store transaction (group-commit batch size).",
                        observe::SizeBuckets())
            .With({}),
        metrics->Counter("cogs_store_commits_total", "Store transactions committed.").With({}),
        metrics->Counter("cogs_store_fenced_total", "Write groups refused for a stale fencing token.")
            .With({}),
        metrics
            ->Counter(
                "cogs_store_no_space_total",
                "Write groups turned away for lack of disk space (refused, or held until space returns).")
            .With({}),
        metrics
            ->Gauge(
                "cogs_store_held_groups",
                "Write groups held while the disk is full, waiting for space (bounded by max_held_groups).")
            .With({}),
        std::make_shared<std::atomic<int64_t>>(cogs::SteadyClock::now().time_since_epoch().count()),
    };
    // Sampled at each scrape: how long no transaction has been durable (a store that stalls, or a
    // database that cannot be reached, shows here before anything else does).
    metrics->OnCollect([age = metrics
                                  ->Gauge("cogs_store_last_commit_age_seconds",
                                          "Seconds since the store's last durable transaction.")
                                  .With({}),
                        last = h.last_commit] {
        const cogs::SteadyTime at{cogs::SteadyTime::duration(last->load())};
        age.Set(std::chrono::duration<double>(cogs::SteadyClock::now() - at).count());
    });
    return [h](const CommitReport& report) {
        h.held.Set(static_cast<double>(report.held));
        if (report.no_space > 0) {
            h.no_space.Inc(static_cast<double>(report.no_space));
        }
        if (!report.committed) {
            return;
        }
        h.last_commit->store(cogs::SteadyClock::now().time_since_epoch().count());
        h.duration.Observe(report.seconds);
        h.groups.Observe(static_cast<double>(report.groups));
        h.commits.Inc();
        if (report.fenced > 0) {
            h.fenced.Inc(static_cast<double>(report.fenced));
        }
    };
}

std::function<void(bool, const Error&)> WritableMetrics(observe::Metrics* metrics) {
    observe::Gauge writable;
    observe::Counter disk_full;
    observe::Counter unreachable;
    observe::Counter reconnects;
    if (metrics != nullptr) {
        writable = metrics
                       ->Gauge("cogs_store_writable",
                               "1 if the store accepts writes, 0 while its disk is full or its database "
                               "cannot be reached.")
                       .With({});
        disk_full = metrics->Counter("cogs_store_disk_full_total", "Episodes of the store's disk being full.")
                        .With({});
        unreachable = metrics
                          ->Counter("cogs_store_unreachable_total",
                                    "Episodes of the store's database (PostgreSQL) being out of reach.")
                          .With({});
        reconnects = metrics
                         ->Counter("cogs_store_reconnects_total",
                                   "Times the store reconnected to its database after losing it.")
                         .With({});
        writable.Set(1);
    }
    return [=, since = cogs::SteadyTime{}, full = false](bool now_writable, const Error& why) mutable {
        writable.Set(now_writable ? 1 : 0);
        if (!now_writable) {
            full = why.code == ErrorCode::kNoSpace;
            (full ? disk_full : unreachable).Inc();
            since = cogs::SteadyClock::now();
            observe::Log("store").warn(
                "{}: writes are refused (API changes answer {}), reads go on; writing resumes by itself once "
                "{}: "
                "{}",
                full ? "disk full" : "database unreachable", full ? 507 : 503,
                full ? "space is freed" : "it answers again", why.ToString());
        } else {
            if (!full) {
                reconnects.Inc();
            }
            observe::Log("store").info(
                "writable again after {:.0f} s {}",
                std::chrono::duration<double>(cogs::SteadyClock::now() - since).count(),
                full ? "without space" : "without the database");
        }
    };
}

}  // namespace cogs::store
