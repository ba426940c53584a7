#include "cogs/cloud/resources/kinds.h"

#include <algorithm>

#include "cogs/cloud/resources/events.h"
#include "cogs/cloud/resources/reads.h"

namespace cogs::cloud {

using wire::Input;
using wire::Text;

namespace {

// Every kind the control plane itself keeps records of.
constexpr std::string_view kBuiltinKinds[] = {kProject, kToken,  kUser,   kFlavor,      kImage,
                                              kHost,    kClaim,  kGroup,  kNetwork,     kSubnet,
                                              kPort,    kVolume, kServer, kIdempotency, kKeypair};

tl::unexpected<Error> Refuse(const KindSpec& k, const std::string& problem) {
    return MakeError(ErrorCode::kInvalidArgument,
                     (k.origin.empty() ? "" : k.origin + ": ") + "kind '" + k.kind + "': " + problem);
}

Status CheckField(const Input& in, const FieldSpec& f, json::object& out) {
    const json::value* v = in.object().if_contains(f.name);
    if (v == nullptr || v->is_null()) {
        if (f.required) return MakeError(FieldError(f.name, "required"));
        if (f.default_value) out[f.name] = *f.default_value;
        return Ok();
    }
    switch (f.type) {
        case FieldSpec::Type::kString: {
            COGS_ASSIGN_OR_RETURN(auto s, in.String(f.name, Text{.max_len = static_cast<size_t>(f.max_length),
                                                                 .allow_empty = !f.required}));
            if (!f.one_of.empty() && std::find(f.one_of.begin(), f.one_of.end(), s) == f.one_of.end()) {
                std::string list;
                for (const auto& o : f.one_of)
                    list += (list.empty() ? "" : ", ") + o;
                return MakeError(FieldError(f.name, "must be one of " + list));
            }
            out[f.name] = s;
            return Ok();
        }
        case FieldSpec::Type::kInteger: {
            COGS_ASSIGN_OR_RETURN(auto n, in.Int(f.name, f.minimum, f.maximum));
            out[f.name] = n;
            return Ok();
        }
        case FieldSpec::Type::kBoolean: {
            if (!v->is_bool()) return MakeError(FieldError(f.name, "must be true or false"));
            out[f.name] = v->as_bool();
            return Ok();
        }
        case FieldSpec::Type::kStrings: {
            COGS_ASSIGN_OR_RETURN(
                auto list,
                in.StringList(f.name,
                              wire::List{.max_items = static_cast<size_t>(f.max_items),
                                         .item = Text{.max_len = static_cast<size_t>(f.max_length)}}));
            if (f.required && list.empty()) return MakeError(FieldError(f.name, "required"));
            out[f.name] = ToArray(list);
            return Ok();
        }
    }
    return Ok();
}

}  // namespace

Kinds::Kinds(Context& ctx, Reads& reads, History& history) : ctx_(ctx), reads_(reads), history_(history) {}

Status Kinds::Set(const std::vector<KindSpec>& specs, bool apply) {
    std::map<std::string, KindSpec, std::less<>> next;
    std::set<std::string> kinds;
    for (const KindSpec& k : specs) {
        if (std::find(std::begin(kBuiltinKinds), std::end(kBuiltinKinds), k.kind) !=
            std::end(kBuiltinKinds)) {
            return Refuse(k, "'" + k.kind + "' is one of cogsd's own kinds");
        }
        if (builtin_.contains(k.plural)) {
            return Refuse(k,
                          "plural '" + k.plural + "' is one of the API's own paths (/v1/" + k.plural + ")");
        }
        if (!kinds.insert(k.kind).second || next.contains(k.plural)) {
            return Refuse(k, "declared twice (its kind or its plural)");
        }
        next.emplace(k.plural, k);
    }
    for (const auto& [plural, old] : by_plural_) {
        if (next.contains(plural)) continue;
        for (const auto& [id, r] : ctx_.model.All(old.kind)) {
            return MakeError(ErrorCode::kFailedPrecondition, "kind '" + old.kind + "' (" + old.origin +
                                                                 ") cannot go: it still has records (" +
                                                                 old.kind + " " + id +
                                                                 "); delete them first");
        }
    }
    if (!apply) return Ok();
    std::map<std::string, int64_t, std::less<>> limits;
    for (const auto& [plural, k] : next) {
        limits[plural] = k.quota;
        for (const auto& [type, create] :
             {std::pair{k.create_workflow, true}, std::pair{k.delete_workflow, false}}) {
            if (!settled_types_.insert(type).second) continue;
            ctx_.OnSettle(type, [this, kind = k.kind, is_create = create](Settlement& s) {
                Settle(s, kind, is_create);
            });
        }
    }
    ctx_.model.SetKindLimits(std::move(limits));
    by_plural_ = std::move(next);
    return Ok();
}

const KindSpec* Kinds::Of(const Call& call) const {
    auto it = by_plural_.find(call.Param("collection"));
    return it == by_plural_.end() ? nullptr : &it->second;
}

Result<json::object> Kinds::Fields(const KindSpec& spec, const Input& in) const {
    std::vector<std::string_view> known;
    for (const FieldSpec& f : spec.fields)
        known.push_back(f.name);
    known.push_back("project_id");
    COGS_TRY(in.Known(std::span<const std::string_view>(known)));
    json::object fields;
    for (const FieldSpec& f : spec.fields) {
        COGS_TRY(CheckField(in, f, fields));
    }
    return fields;
}

void Kinds::List(Call call) {
    const KindSpec* k = Of(call);
    if (k == nullptr)
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    reads_.List(std::move(call), k->plural, k->kind);
}

void Kinds::Show(Call call) {
    const KindSpec* k = Of(call);
    if (k == nullptr)
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    reads_.Show(std::move(call), k->kind);
}

void Kinds::Events(Call call) {
    const KindSpec* k = Of(call);
    if (k == nullptr)
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    history_.List(std::move(call), k->kind);
}

void Kinds::Create(Call call) {
    const KindSpec* k = Of(call);
    if (k == nullptr)
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    auto admitted = AdmitCreate(std::move(call));
    if (!admitted) return;
    Creation& c = *admitted;
    json::object fields;
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::ParseAny(c.call.body));
        COGS_ASSIGN_OR_RETURN(fields, Fields(*k, in));
        COGS_ASSIGN_OR_RETURN(auto project, OwnerOf(ctx_, c.who(), in));
        Amount one;
        one.kinds[k->plural] = 1;
        COGS_TRY(ctx_.model.Reserve(project, one));
        Res r = ctx_.NewRes(k->kind, project);
        for (const auto& [name, value] : fields)
            r.body[name] = value;
        r.set_status(NetStatus::kBuild);
        r.body["_quota"] = true;
        r.body["_quota_as"] = k->plural;
        return r;
    }();
    if (!made) return c.call.Fail(made.error());
    json::object input{{"id", made->id}, {"project_id", made->project}, {k->kind, std::move(fields)}};
    StartCreate(ctx_, c, std::move(*made), k->create_workflow, std::move(input));
}

void Kinds::Delete(Call call) {
    const KindSpec* k = Of(call);
    if (k == nullptr)
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    auto found = FindToChange(ctx_, call, k->kind);
    if (!found) return call.Fail(found.error());
    Res& r = **found;
    json::object fields;
    for (const FieldSpec& f : k->fields) {
        if (const json::value* v = r.body.if_contains(f.name)) fields[f.name] = *v;
    }
    json::object input{{"id", r.id}, {"project_id", r.project}, {k->kind, std::move(fields)}};
    StartAndAnswer(ctx_,
                   ctx_.Transition(r, ToString(NetStatus::kDeleting), k->delete_workflow, std::move(input),
                                   call.traceparent),
                   call);
}

void Kinds::Settle(Settlement& s, const std::string& kind, bool create) {
    if (!create) return s.SettleDelete(kind, "id", ToString(NetStatus::kError));
    Res* r = s.Mine(kind, s.In("id"));
    if (r == nullptr) return;
    if (!s.ok()) return s.FailCreate(*r, ToString(NetStatus::kError));
    r->set_status(NetStatus::kActive);
    s.Note(*r, "active", kind + " is ACTIVE");
    s.Save(*r);
}

}  // namespace cogs::cloud
