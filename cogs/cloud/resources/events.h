// Event history (docs/api.md "Events"): GET /v1/events (filters resource_kind, resource_id,
// workflow_id, project_id for admins, after, limit) and GET /v1/<collection>/{id}/events. A member
// sees its project's events only (filtered in the store's query); a resource of another project,
// or one never seen, is 404 (a deleted resource keeps its history). Reads run on the read pool.
//
// Retention: the pruner deletes events older than event_retention, then the oldest beyond
// event_max, at Start() and every event_prune_every, on the read pool, in batches (Store::PruneEvents);
// cogs_pruned_total{what="events"} counts them.
#pragma once

#include <memory>

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class History {
public:
    explicit History(Context& ctx);
    ~History();

    void Start();  // prunes now, then every event_prune_every
    void Stop();

    // `kind` empty: GET /v1/events; else the history of the resource {id} (or {name}: hosts).
    void List(Call call, std::string_view kind);

private:
    void Prune();
    Context& ctx_;
    std::unique_ptr<runtime::Timer> timer_;
    observe::Counter pruned_;
};

}  // namespace cogs::cloud
