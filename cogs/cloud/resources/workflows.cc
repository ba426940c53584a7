#include "cogs/cloud/resources/workflows.h"

#include <boost/json/parse.hpp>

#include "cogs/observe/trace.h"

namespace cogs::cloud {
namespace {

// What a list shows of a workflow (a WorkflowSummary or a whole WorkflowRecord).
template <typename W>
json::object Summary(const W& w) {
    json::object o{{"id", w.id},
                   {"type", w.type},
                   {"version", w.version},
                   {"state", store::ToString(w.state)},
                   {"reason", w.reason},
                   {"project_id", w.project},
                   {"created_at", Rfc3339(w.created_ms)},
                   {"trace_id", observe::TraceIdOf(w.trace)},
                   {"resource_kind", w.resource_kind},
                   {"resource_id", w.resource_id}};
    if (w.finished_ms != 0) o["finished_at"] = Rfc3339(w.finished_ms);
    return o;
}

// The workflows an operator's decision starts (healing, evacuation, migration, a drain's moves,
// the reconcilers' repairs): cancelling one leaves a server half moved or a repair undone, so only
// an admin may.
bool OperatorWorkflow(std::string_view type) {
    return type == "server.evacuate" || type == "server.migrate" || type == "server.repair" ||
           type.starts_with("heal.");
}

}  // namespace

void Workflows::List(Call call) {
    store::ListFilter f;
    for (const auto& [k, v] : call.query) {
        if (k == "state") {
            f.state = store::ParseWorkflowState(v);
            if (!f.state) return call.Fail(FieldError("state", "unknown state " + v));
        } else if (k == "type") {
            f.type = v;
        } else if (k == "marker") {
            f.after_id = v;
        } else if (k == "limit") {
            auto n = IntParam("limit", v, 1, 1000, "must be an integer from 1 to 1000");
            if (!n) return call.Fail(n.error());
            f.limit = static_cast<int>(*n);
        } else if (k == "project_id" && call.who.admin()) {
            f.project = v;
        } else {
            return call.Fail(FieldError(k, "unknown query parameter"));
        }
    }
    if (!call.who.admin()) f.project = call.who.project_id;
    ctx_.OffThread([this, f] { return ctx_.store.ListWorkflows(f); },
                   [respond = call.respond, limit = f.limit](Result<std::vector<store::WorkflowSummary>> r) {
                       if (!r) return respond(wire::ApiError(r.error()));
                       json::array items;
                       for (const auto& w : *r) {
                           items.push_back(Summary(w));
                       }
                       json::object o{{"workflows", items}};
                       if (static_cast<int>(r->size()) == limit && !r->empty())
                           o["next_marker"] = r->back().id;
                       respond(wire::Json(200, o));
                   });
}

void Workflows::Load(Call call, std::function<void(Call, store::WorkflowRecord)> then) {
    const std::string id = call.Param("id");
    ctx_.OffThread(
        [this, id] { return ctx_.store.GetWorkflow(id); },
        [call = std::move(call), id, then = std::move(then)](Result<store::WorkflowRecord> r) mutable {
            if (!r || (!call.who.admin() && r->project != call.who.project_id)) {
                return call.Fail(r || r.error().code == ErrorCode::kNotFound ? NotFound("workflow", id)
                                                                             : r.error());
            }
            then(std::move(call), std::move(*r));
        });
}

void Workflows::Show(Call call) {
    Load(std::move(call),
         [this](Call c, store::WorkflowRecord w) { c.Answer(wire::Wrapped(200, "workflow", View(w))); });
}

void Workflows::Cancel(Call call) {
    if (auto st = RequireWriter(call.who); !st) return call.Fail(st.error());
    Load(std::move(call), [this](Call c, store::WorkflowRecord w) {
        if (OperatorWorkflow(w.type) && !c.who.admin()) {
            return c.Fail(Error(ErrorCode::kPermissionDenied,
                                "only an admin may cancel a " + w.type + " workflow (an operator's)"));
        }
        ctx_.engine.Cancel(w.id, [respond = c.respond, id = w.id](Status st) {
            respond(st ? wire::Json(202, json::object{{"workflow",
                                                       json::object{{"id", id}, {"cancel_requested", true}}}})
                       : wire::ApiError(st.error()));
        });
    });
}

void Workflows::Retry(Call call) {
    // An operator's: the compensation failed for a reason someone had to look at (a service down
    // for long, a refusal), and is run again once it is fixed.
    if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    Load(std::move(call), [this](Call c, store::WorkflowRecord w) {
        if (w.state != store::WorkflowState::kFailed) {
            return c.Fail(Error(ErrorCode::kConflict, "workflow " + w.id + " is " +
                                                          std::string(store::ToString(w.state)) +
                                                          ": only a failed workflow is retried"));
        }
        ctx_.engine.Retry(w.id, [this, c, w](Status st) {
            if (!st) return c.Fail(st.error());
            // Its resource took the failure (ERROR); the retried end settles it again
            // (Settlement::Mine), as a workflow in flight would.
            if (Res* r = ctx_.model.Find(w.resource_kind, w.resource_id);
                r != nullptr && Str(r->body, "workflow_id") == w.id) {
                r->body["_retry_of"] = w.id;
                ctx_.Touch(*r);
                ctx_.Persist(
                    {Model::Write(*r)},
                    {ctx_.Event(r->kind, r->id, r->project, "retry_requested",
                                "an admin retried workflow " + w.type + "'s compensation", w.id, w.trace)});
            }
            c.Answer(
                wire::Json(202, json::object{{"workflow", json::object{{"id", w.id}, {"retried", true}}}}));
        });
    });
}

json::object Workflows::View(const store::WorkflowRecord& w) const {
    const workflow::Definition* def = ctx_.registry.Get(w.type, w.version);
    json::object o = Summary(w);
    o["cancel_requested"] = w.cancel_requested;
    o["updated_at"] = Rfc3339(w.updated_ms);
    o["traceparent"] = w.trace;
    boost::system::error_code ec;
    json::value input = json::parse(w.input, ec);
    o["input"] = ec ? json::value(w.input) : input;
    json::array steps;
    for (size_t i = 0; i < w.steps.size(); ++i) {
        const store::StepRecord& s = w.steps[i];
        const bool named = def != nullptr && i < def->steps.size();
        json::object so{{"name", named ? def->steps[i].name : std::to_string(i)},
                        {"action", named ? def->steps[i].action.FullName() : ""},
                        {"state", store::ToString(s.state)},
                        {"attempts", s.attempts},
                        {"compensation_attempts", s.comp_attempts},
                        {"error", s.error}};
        if (s.started_ms != 0) so["started_at"] = Rfc3339(s.started_ms), so["started_ms"] = s.started_ms;
        if (s.finished_ms != 0) so["finished_at"] = Rfc3339(s.finished_ms), so["finished_ms"] = s.finished_ms;
        json::value out = s.output.empty() ? json::value(nullptr) : json::parse(s.output, ec);
        so["output"] = ec ? json::value(s.output) : out;
        json::array log;
        size_t start = 0;
        while (start < s.log.size()) {
            size_t end = s.log.find('\n', start);
            if (end == std::string::npos) end = s.log.size();
            json::value line = json::parse(std::string_view(s.log).substr(start, end - start), ec);
            if (!ec) log.push_back(std::move(line));
            start = end + 1;
        }
        so["log"] = std::move(log);
        steps.push_back(std::move(so));
    }
    o["steps"] = std::move(steps);
    return o;
}

}  // namespace cogs::cloud
