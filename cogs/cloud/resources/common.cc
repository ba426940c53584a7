#include "cogs/cloud/resources/common.h"

#include <charconv>

#include "cogs/cloud/resources/idempotency.h"

namespace cogs::cloud {

json::object Present(const Res& r) {
    json::object o = View(r);
    if (r.kind == kProject) {
        o.erase("quotas");
    }
    return o;
}

http::Response Presented(int status, const Res& r) { return wire::Wrapped(status, r.kind, Present(r)); }

std::optional<Creation> AdmitCreate(Call call) {
    if (auto st = RequireWriter(call.who); !st) {
        call.Fail(st.error());
        return std::nullopt;
    }
    return Creation{std::move(call)};
}

Result<std::string> OwnerOf(const Context& ctx, const Principal& who, const wire::Input& body) {
    COGS_ASSIGN_OR_RETURN(auto p, body.OptionalString("project_id"));
    if (!p) return who.project_id;
    if (!who.admin() && *p != who.project_id) {
        return MakeError(FieldError("project_id", "only an admin may create in another project"));
    }
    if (!ctx.model.Has(kProject, *p)) {
        return MakeError(FieldError("project_id", "no project " + *p));
    }
    return *p;
}

Result<int64_t> IntParam(std::string_view name, const std::string& value, int64_t min, int64_t max,
                         std::string_view rule) {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < min || n > max) {
        return MakeError(FieldError(name, rule));
    }
    return n;
}

Result<Res*> FindToChange(Context& ctx, const Call& call, std::string_view kind, bool idle) {
    COGS_TRY(RequireWriter(call.who));
    const std::string& id = call.Param("id");
    Res* r = ctx.model.Find(kind, id);
    if (r == nullptr || !Visible(call.who, *r)) {
        return MakeError(NotFound(kind, id));
    }
    if (idle && Transitional(kind, r->status_text())) {
        return MakeError(ErrorCode::kConflict, std::string(kind) + " " + id + " is " + r->status_text());
    }
    return r;
}

void StartCreate(Context& ctx, const Creation& c, Res made, std::string type, json::object input) {
    Res& stored = ctx.model.Put(std::move(made));
    Launch l{.type = std::move(type),
             .input = std::move(input),
             .changed = {&stored},
             .undo =
                 [&ctx, kind = stored.kind, id = stored.id] {
                     if (const Res* r = ctx.model.Find(kind, id)) {
                         ctx.model.Release(r->project, Model::HeldBy(*r));
                     }
                     ctx.model.Erase(kind, id);
                 },
             .on = &stored,
             .traceparent = c.call.traceparent};
    StartAndAnswer(ctx, std::move(l), c.call);
}

void SaveAndAnswer(Context& ctx, const Creation& c, std::vector<Res> made, int status) {
    std::vector<store::ResourceWrite> writes;
    for (const Res& r : made) {
        writes.push_back(Model::Write(r));
    }
    http::Response answer = Presented(status, made.front());
    Remember(ctx, c.call, answer, writes);
    for (Res& r : made) {
        ctx.model.Put(std::move(r));
    }
    ctx.Persist(std::move(writes), {},
                [respond = c.call.respond, answer = std::move(answer)](Status st) mutable {
                    respond(st ? std::move(answer) : wire::ApiError(st.error()));
                });
}

void StartAndAnswer(Context& ctx, Launch launch, const Call& call) {
    // The project's workflows in flight (of the resource's project, whoever asks): refused as the
    // engine's overload is, before anything is committed.
    if (auto admitted = ctx.AdmitWorkflow(launch.on->project); !admitted) {
        if (launch.undo) launch.undo();
        if (!call.idempotency_record.empty()) ctx.model.Erase(kIdempotency, call.idempotency_record);
        return call.Fail(admitted.error());
    }
    // The answer is made when the workflow's id is on the resource, so that the key's record (in
    // the same commit) holds exactly what is answered.
    auto answer = std::make_shared<http::Response>();
    const Res* on = launch.on;
    launch.extra = [&ctx, &call, on, answer, first = std::move(launch.extra)] {  // within StartWorkflow
        *answer = Presented(202, *on);
        std::vector<store::ResourceWrite> writes;
        if (first) writes = first();
        Remember(ctx, call, *answer, writes);
        return writes;
    };
    ctx.StartWorkflow(std::move(launch), [&ctx, answer, record = call.idempotency_record,
                                          respond = call.respond](Result<std::string> r) {
        if (!r) {
            if (!record.empty()) ctx.model.Erase(kIdempotency, record);
            return respond(wire::ApiError(r.error()));
        }
        respond(std::move(*answer));
    });
}

void StartManyAndAnswer(Context& ctx, std::vector<Launch> launches, std::function<http::Response()> present,
                        const Call& call) {
    auto answer = std::make_shared<http::Response>();
    ctx.StartWorkflows(
        std::move(launches),
        [&ctx, &call, answer, present = std::move(present)] {  // within StartWorkflows
            *answer = present();
            std::vector<store::ResourceWrite> writes;
            Remember(ctx, call, *answer, writes);
            return writes;
        },
        [&ctx, answer, record = call.idempotency_record,
         respond = call.respond](Result<std::vector<std::string>> r) {
            if (!r) {
                if (!record.empty()) ctx.model.Erase(kIdempotency, record);
                return respond(wire::ApiError(r.error()));
            }
            respond(std::move(*answer));
        });
}

}  // namespace cogs::cloud
