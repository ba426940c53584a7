#include "cogs/store/store_metrics.h"

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
    };
    return [h](const CommitReport& report) {
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

}  // namespace cogs::store
