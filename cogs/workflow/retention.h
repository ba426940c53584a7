// Retention of ended workflows: the store keeps every workflow until it is pruned, so something
// must prune it while the process runs, or the store grows with every request ever served.
//
// A pass deletes the workflows that succeeded or rolled back (with their steps and logs) that
// ended more than `keep_for` ago, then the oldest beyond the newest `keep_at_most` of them
// (Store::PruneWorkflows); then the failed ones by their own, longer bounds (`failed_keep_for`,
// `failed_keep_at_most`): a failed workflow waits for an operator's retry and says what may be
// left behind, but a service that keeps failing must not grow the store without bound either (what
// a pruned failed workflow left behind is the orphan reconciler's). A running or compensating
// workflow is never pruned. A workflow's events are
// its resource's history and go with the event retention (Store::PruneEvents), not here. Once a
// workflow is pruned, GET /v1/workflows/{id} answers 404 for it; a resource keeps its
// `workflow_id` and its history.
//
// The store calls block, so they run on the pruner's own thread, `batch` workflows per write
// transaction (the engine's group commits go on between them); the io thread only arms the timer
// and takes the result.
//
// Metrics (with `metrics`): cogs_retained_workflows{state="done"|"failed"} (ended workflows kept,
// after the last pass) and cogs_pruned_total{what="workflows"|"failed_workflows"}.
//
// Threading: construct, Start, Stop and PruneNow on the io thread that runs `io`; its callbacks
// run there. The destructor stops the timer and waits for a pass in progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/store/store.h"

namespace boost::asio {
class io_context;
}

namespace cogs::observe {
class Metrics;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::workflow {

struct RetentionOptions {
    Duration keep_for = std::chrono::hours(24 * 7);          // ended workflows older than this go
    int64_t keep_at_most = 100'000;                          // and the oldest beyond this many
    Duration failed_keep_for = std::chrono::hours(24 * 30);  // failed ones: older than this go
    int64_t failed_keep_at_most = 10'000;                    // and the oldest beyond this many
    Duration every = std::chrono::seconds(60);               // a pass at Start(), then every `every`
    int batch = 500;                                         // workflows per write transaction
};

class WorkflowPruner {
public:
    // `clock` null: runtime::SystemClock(); `metrics` null: none. Both must outlive the pruner.
    WorkflowPruner(boost::asio::io_context& io, store::Store& store, RetentionOptions options,
                   runtime::Clock* clock = nullptr, observe::Metrics* metrics = nullptr);
    ~WorkflowPruner();
    WorkflowPruner(const WorkflowPruner&) = delete;
    WorkflowPruner& operator=(const WorkflowPruner&) = delete;

    void Start();  // a pass now, then one every `every` after the previous one ended
    void Stop();

    // One pass now; `done` gets what it pruned (summed over its batches) and what is kept.
    void PruneNow(std::function<void(Result<store::PruneResult>)> done);

private:
    class Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace cogs::workflow
