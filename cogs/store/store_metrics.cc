#include "cogs/store/store_metrics.h"

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
    };
    return [h](const CommitReport& report) {
        h.held.Set(static_cast<double>(report.held));
        if (report.no_space > 0) {
            h.no_space.Inc(static_cast<double>(report.no_space));
        }
        if (!report.committed) {
            return;
        }
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
    observe::Counter episodes;
    if (metrics != nullptr) {
        writable =
            metrics->Gauge("cogs_store_writable", "1 if the store accepts writes, 0 while its disk is full.")
                .With({});
        episodes = metrics->Counter("cogs_store_disk_full_total", "Episodes of the store's disk being full.")
                       .With({});
        writable.Set(1);
    }
    return [writable, episodes, since = cogs::SteadyTime{}](bool now_writable, const Error& why) mutable {
        writable.Set(now_writable ? 1 : 0);
        if (!now_writable) {
            episodes.Inc();
            since = cogs::SteadyClock::now();
            observe::Log("store").warn(
                "disk full: writes are refused (API changes answer 507), reads go on; writing resumes by "
                "itself once space is freed: {}",
                why.ToString());
        } else {
            observe::Log("store").info(
                "writable again after {:.0f} s without space",
                std::chrono::duration<double>(cogs::SteadyClock::now() - since).count());
        }
    };
}

}  // namespace cogs::store
