#include "cogs/cloud/resources/common.h"

#include <charconv>

#include "cogs/base/secret.h"

namespace cogs::cloud {

json::object Present(const Res& r) {
    json::object o = View(r);
    if (r.kind == kProject) {
        o.erase("quotas");
    }
    return o;
}

http::Response Presented(int status, const Res& r) { return wire::Wrapped(status, r.kind, Present(r)); }

std::optional<Res> Creation::IdempotencyRecord(const Res& made, int status, int64_t now_ms) const {
    if (idem_id.empty()) {
        return std::nullopt;
    }
    Res rec{std::string(kIdempotency), idem_id, call.who.project_id, {}};
    rec.body["_hash"] = idem_hash;
    rec.body["kind"] = made.kind;
    rec.body["id"] = made.id;
    rec.body["status"] = status;
    rec.body["_at_ms"] = now_ms;
    return rec;
}

std::optional<Creation> AdmitCreate(Context& ctx, Call call, std::string_view kind) {
    if (auto st = RequireWriter(call.who); !st) {
        call.Fail(st.error());
        return std::nullopt;
    }
    Creation c{std::move(call), "", ""};
    const std::string& key = c.call.idempotency_key;
    if (key.empty()) {
        return c;
    }
    if (key.size() > 255) {
        c.call.Fail(FieldError("Idempotency-Key", "longer than 255 characters"));
        return std::nullopt;
    }
    c.idem_id = c.call.who.project_id + "/" + key;
    c.idem_hash = Sha256Hex(std::string(kind) + "\n" + c.call.body);
    const Res* prior = ctx.model.Find(kIdempotency, c.idem_id);
    if (prior == nullptr) {
        return c;
    }
    if (Str(prior->body, "_hash") != c.idem_hash) {
        c.call.Fail(Error(ErrorCode::kConflict, "Idempotency-Key reused with a different request"));
        return std::nullopt;
    }
    const Res* r = ctx.model.Find(Str(prior->body, "kind"), Str(prior->body, "id"));
    if (r == nullptr) {
        c.call.Fail(NotFound(Str(prior->body, "kind"), Str(prior->body, "id")));
    } else {
        c.call.Answer(Presented(static_cast<int>(Int(prior->body, "status")), *r));
    }
    return std::nullopt;
}

Result<std::string> OwnerOf(const Context& ctx, const Principal& who, const wire::Input& body) {
    COGS_ASSIGN_OR_RETURN(auto p, body.OptionalString("project_id"));
    if (!p) return who.project_id;
    if (!who.admin() && *p != who.project_id) {
        return MakeError(FieldError("project_id", "only an admin may create in another project"));
    }
    if (ctx.model.Find(kProject, *p) == nullptr) {
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

void StartCreate(Context& ctx, const Creation& c, Res made, std::string type, json::object input,
                 std::function<void()> give_back) {
    Res& stored = ctx.model.Put(std::move(made));
    Launch l{.type = std::move(type),
             .input = std::move(input),
             .changed = {&stored},
             .undo =
                 [&ctx, kind = stored.kind, id = stored.id, give_back = std::move(give_back)] {
                     ctx.model.Erase(kind, id);
                     if (give_back) give_back();
                 },
             .on = &stored,
             .traceparent = c.call.traceparent};
    StartAndAnswer(ctx, std::move(l), c.call, &c);
}

void SaveAndAnswer(Context& ctx, const Creation& c, std::vector<Res> made, int status) {
    std::vector<store::ResourceWrite> writes;
    for (const Res& r : made) {
        writes.push_back(Model::Write(r));
    }
    if (auto idem = c.IdempotencyRecord(made.front(), status, ctx.clock.WallMs())) {
        writes.push_back(Model::Write(*idem));
        ctx.model.Put(std::move(*idem));
    }
    http::Response answer = Presented(status, made.front());
    for (Res& r : made) {
        ctx.model.Put(std::move(r));
    }
    ctx.Persist(std::move(writes), {},
                [respond = c.call.respond, answer = std::move(answer)](Status st) mutable {
                    respond(st ? std::move(answer) : wire::ApiError(st.error()));
                });
}

void StartAndAnswer(Context& ctx, Launch launch, const Call& call, const Creation* c) {
    std::string idem_id;
    if (c != nullptr) {
        if (auto idem = c->IdempotencyRecord(*launch.on, 202, ctx.clock.WallMs())) {
            idem_id = idem->id;
            launch.extra.push_back(Model::Write(*idem));
            ctx.model.Put(std::move(*idem));
        }
    }
    const std::string kind = launch.on->kind;
    const std::string id = launch.on->id;
    ctx.StartWorkflow(std::move(launch),
                      [&ctx, kind, id, idem_id, respond = call.respond](Result<std::string> r) {
                          if (!r) {
                              if (!idem_id.empty()) ctx.model.Erase(kIdempotency, idem_id);
                              return respond(wire::ApiError(r.error()));
                          }
                          const Res* now = ctx.model.Find(kind, id);
                          respond(now != nullptr ? Presented(202, *now) : wire::ApiError(NotFound(kind, id)));
                      });
}

}  // namespace cogs::cloud
