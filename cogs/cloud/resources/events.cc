#include "cogs/cloud/resources/events.h"

#include "cogs/observe/log.h"

namespace cogs::cloud {

History::History(Context& ctx)
    : ctx_(ctx),
      timer_(ctx.clock.NewTimer(ctx.io)),
      pruned_(observe::CounterOf(ctx.metrics(), "cogs_pruned_total", "Records deleted by retention, by what.")
                  .With({{"what", "events"}})) {}

History::~History() { Stop(); }

void History::Start() { Prune(); }

void History::Stop() { timer_->Cancel(); }

void History::Prune() {
    const int64_t older_than =
        ctx_.clock.WallMs() -
        std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.options.event_retention).count();
    const int64_t keep = ctx_.options.event_max;
    ctx_.OffThread([this, older_than, keep] { return ctx_.store.PruneEvents(older_than, keep); },
                   [this](Result<int64_t> pruned) {
                       if (!pruned) {
                           observe::Log("cloud").warn("pruning events failed: {}", pruned.error().ToString());
                       } else if (*pruned > 0) {
                           pruned_.Inc(static_cast<double>(*pruned));
                           observe::Log("cloud").info("pruned {} events past their retention", *pruned);
                       }
                       timer_->ArmAfter(ctx_.options.event_prune_every, [this] { Prune(); });
                   });
}

void History::List(Call call, std::string_view kind) {
    const std::string id = kind == kHost ? call.Param("name") : call.Param("id");
    const bool one_resource = !kind.empty();
    store::EventFilter f;
    f.resource_kind = std::string(kind);
    f.resource_id = id;
    if (kind == kHost) {
        if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    }
    for (const auto& [k, v] : call.query) {
        if (k == "resource_kind" && !one_resource) {
            f.resource_kind = v;
        } else if (k == "resource_id" && !one_resource) {
            f.resource_id = v;
        } else if (k == "workflow_id") {
            f.workflow_id = v;
        } else if (k == "project_id" && call.who.admin()) {
            f.project = v;
        } else if (k == "after") {
            auto n = IntParam("after", v, 0, INT64_MAX, "must be an event seq >= 0");
            if (!n) return call.Fail(n.error());
            f.after_seq = *n;
        } else if (k == "limit") {
            auto n = IntParam("limit", v, 1, 1000, "must be an integer from 1 to 1000");
            if (!n) return call.Fail(n.error());
            f.limit = static_cast<int>(*n);
        } else {
            return call.Fail(FieldError(k, "unknown query parameter"));
        }
    }
    if (!call.who.admin()) {
        f.project = call.who.project_id;
    }
    // A resource that exists answers its (maybe empty) history; one that does not must have left
    // some to be found.
    const Res* r = one_resource ? ctx_.model.Find(kind, id) : nullptr;
    const bool exists = r != nullptr && Visible(call.who, *r);
    if (r != nullptr && !exists) {
        return call.Fail(NotFound(kind, id));
    }
    ctx_.OffThread(
        [this, f] { return ctx_.store.ListEvents(f); },
        [respond = call.respond, f, exists, one_resource, kind = std::string(kind),
         id](Result<std::vector<store::EventRecord>> events) {
            if (!events) return respond(wire::ApiError(events.error()));
            if (one_resource && !exists && events->empty() && f.after_seq == 0) {
                return respond(wire::ApiError(NotFound(kind, id)));
            }
            json::array items;
            int64_t next = f.after_seq;
            for (const auto& e : *events) {
                items.push_back(json::object{{"seq", e.seq},
                                             {"time_ms", e.time_ms},
                                             {"time", Rfc3339(e.time_ms)},
                                             {"project", e.project},
                                             {"resource_kind", e.resource_kind},
                                             {"resource_id", e.resource_id},
                                             {"workflow_id", e.workflow_id},
                                             {"type", e.type},
                                             {"message", e.message},
                                             {"trace_id", e.trace_id}});
                next = std::max(next, e.seq);
            }
            respond(wire::Json(200, json::object{{"events", std::move(items)}, {"next_after", next}}));
        });
}

}  // namespace cogs::cloud
