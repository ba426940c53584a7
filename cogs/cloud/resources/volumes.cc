#include "cogs/cloud/resources/volumes.h"

#include <algorithm>

namespace cogs::cloud {

using wire::Input;
using wire::Text;

namespace {

// Lists volume `id` on `server` (at the end, once) or takes it off.
void SetListed(Res& server, const std::string& id, bool listed) {
    std::vector<std::string> list = StrList(server.body, "volume_ids");
    const auto at = std::find(list.begin(), list.end(), id);
    if ((at != list.end()) == listed) return;
    if (listed) {
        list.push_back(id);
    } else {
        list.erase(at);
    }
    server.body["volume_ids"] = ToArray(list);
}

}  // namespace

Volumes::Volumes(Context& ctx) : ctx_(ctx) {
    ctx_.OnSettle("volume.create", [this](Settlement& s) { SettleCreate(s); });
    ctx_.OnSettle("volume.delete", [](Settlement& s) {
        s.SettleDelete(kVolume, "volume_id", ToString(VolumeStatus::kError));
    });
    ctx_.OnSettle("volume.attach", [this](Settlement& s) { SettleAttachment(s, true); });
    ctx_.OnSettle("volume.detach", [this](Settlement& s) { SettleAttachment(s, false); });
}

void Volumes::Create(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "size_gb", "project_id"}));
        COGS_ASSIGN_OR_RETURN(auto project, OwnerOf(ctx_, c.who(), in));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto size, in.Int("size_gb", 1, 16384));
        COGS_TRY(ctx_.model.Reserve(project, Amount{.volumes = 1, .volume_gb = size}));
        Res v = ctx_.NewRes(kVolume, project);
        v.body["name"] = name;
        v.body["size_gb"] = size;
        v.set_status(VolumeStatus::kCreating);
        v.body["server_id"] = "";
        v.body["device"] = "";
        v.body["_quota"] = true;
        return v;
    }();
    if (!made) return c.call.Fail(made.error());
    const int64_t gb = Int(made->body, "size_gb");
    json::object input{{"volume_id", made->id},
                       {"project_id", made->project},
                       {"name", Str(made->body, "name")},
                       {"size_gb", gb}};
    StartCreate(ctx_, c, std::move(*made), "volume.create", std::move(input));
}

Launch Volumes::Deletion(Res& v, const std::string& traceparent) {
    return ctx_.Transition(v, ToString(VolumeStatus::kDeleting), "volume.delete", {{"volume_id", v.id}},
                           traceparent);
}

void Volumes::Delete(Call call) {
    const std::string id = call.Param("id");
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * v, FindToChange(ctx_, call, kVolume));
        const auto status = v->status<VolumeStatus>();
        if (status == VolumeStatus::kInUse) {
            return MakeError(ErrorCode::kConflict, "volume " + id + " is in-use: detach it first");
        }
        return v;
    }();
    if (!found) return call.Fail(found.error());
    StartAndAnswer(ctx_, Deletion(**found, call.traceparent), call);
}

void Volumes::Attach(Call call) {
    const std::string id = call.Param("id");
    std::string server_id, host;
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * v, FindToChange(ctx_, call, kVolume, /*idle=*/false));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(call.body, {"server_id"}));
        COGS_ASSIGN_OR_RETURN(server_id, in.String("server_id"));
        const Res* s = ctx_.model.Find(kServer, server_id);
        if (s == nullptr || s->project != v->project) {
            return MakeError(FieldError("server_id", "no server " + server_id));
        }
        // As Nova: a server with a task in progress (BUILD, REBUILD, MIGRATING, DELETING, a power
        // action) takes no attach; those workflows fixed the server's volume list when they started.
        if (!s->is(ServerStatus::kActive) && !s->is(ServerStatus::kShutoff)) {
            return MakeError(ErrorCode::kConflict, "server " + server_id + " is " + s->status_text() +
                                                       ": its volumes cannot change until that ends");
        }
        if (!v->is(VolumeStatus::kAvailable)) {
            return MakeError(ErrorCode::kConflict,
                             "volume " + id + " is " + v->status_text() + ", not available");
        }
        host = Str(s->body, "host");
        return v;
    }();
    if (!found) return call.Fail(found.error());
    Res* v = *found;
    Res* server = ctx_.model.Find(kServer, server_id);
    v->set_status(VolumeStatus::kAttaching);
    v->body["server_id"] = server_id;
    // The server lists the volume from now on (AttachedVolumes), so that a workflow started on it
    // later acts on it too; committed with the attach.
    SetListed(*server, id, true);
    ctx_.Touch(*server);
    Launch l{.type = "volume.attach",
             .input = {{"volume_id", id}, {"server_id", server_id}, {"host", host}},
             .changed = {v},
             .extra = [server] { return std::vector<store::ResourceWrite>{Model::Write(*server)}; },
             .undo =
                 [this, id, server_id] {
                     if (Res* r = ctx_.model.Find(kVolume, id)) {
                         r->set_status(VolumeStatus::kAvailable);
                         r->body["server_id"] = "";
                     }
                     if (Res* s = ctx_.model.Find(kServer, server_id)) {
                         SetListed(*s, id, false);
                     }
                 },
             .on = v,
             .traceparent = call.traceparent};
    StartAndAnswer(ctx_, std::move(l), call);
}

void Volumes::Detach(Call call) {
    const std::string id = call.Param("id");
    std::string host;  // the server's: it unmounts the volume first
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * v, FindToChange(ctx_, call, kVolume, /*idle=*/false));
        COGS_TRY(Input::Parse(call.body, {}));
        if (!v->is(VolumeStatus::kInUse)) {
            return MakeError(ErrorCode::kConflict,
                             "volume " + id + " is " + v->status_text() + ", not in-use");
        }
        // As for an attach: not while a workflow on the server acts on its volumes (an evacuation
        // would attach the volume again after this detach, a delete detach it twice).
        const std::string server_id = Str(v->body, "server_id");
        const Res* s = ctx_.model.Find(kServer, server_id);
        if (s != nullptr && Transitional(kServer, s->status_text())) {
            return MakeError(ErrorCode::kConflict, "server " + server_id + " is " + s->status_text() +
                                                       ": its volumes cannot change until that ends");
        }
        if (s != nullptr) {
            host = Str(s->body, "host");
        }
        return v;
    }();
    if (!found) return call.Fail(found.error());
    Res& v = **found;
    StartAndAnswer(
        ctx_,
        ctx_.Transition(v, ToString(VolumeStatus::kDetaching), "volume.detach",
                        {{"volume_id", id}, {"server_id", Str(v.body, "server_id")}, {"host", host}},
                        call.traceparent),
        call);
}

void Volumes::SettleCreate(Settlement& s) {
    Res* v = s.Mine(kVolume, s.In("volume_id"));
    if (v == nullptr) return;
    if (s.ok()) {
        v->set_status(VolumeStatus::kAvailable);
        s.Note(*v, "available", "volume is available");
        s.Save(*v);
        return;
    }
    s.FailCreate(*v, ToString(VolumeStatus::kError));
}

void Volumes::SettleAttachment(Settlement& s, bool attach) {
    Res* v = s.Mine(kVolume, s.In("volume_id"));
    if (v == nullptr) return;
    Res* server = ctx_.model.Find(kServer, s.In("server_id"));
    if (!s.ok()) {
        if (attach && s.rolled_back()) {
            v->body["server_id"] = "";
            s.Fail(*v, ToString(VolumeStatus::kAvailable));
            if (server != nullptr) {
                SetListed(*server, v->id, false);
                s.Save(*server);
            }
        } else {
            s.Fail(*v, ToString(attach ? VolumeStatus::kError : VolumeStatus::kInUse));
        }
        return;
    }
    v->set_status(attach ? VolumeStatus::kInUse : VolumeStatus::kAvailable);
    const std::string vid = v->id;
    if (attach) {
        json::object out = s.Output("attach");
        if (const auto* a = out.if_contains("attachments");
            a != nullptr && a->is_array() && !a->get_array().empty() && a->get_array()[0].is_object()) {
            v->body["device"] = Str(a->get_array()[0].get_object(), "device");
        }
    } else {
        v->body["server_id"] = "";
        v->body["device"] = "";
    }
    v->body.erase("fault");
    const std::string sid = s.In("server_id");
    s.Note(*v, attach ? "attached" : "detached",
           attach ? "attached to server " + sid + " as " + Str(v->body, "device")
                  : "detached from server " + sid);
    s.Save(*v);
    if (server != nullptr) {
        SetListed(*server, vid, attach);
        s.Note(*server, attach ? "volume_attached" : "volume_detached",
               "volume " + vid + (attach ? " attached" : " detached"));
        s.Save(*server);
    }
}

}  // namespace cogs::cloud
