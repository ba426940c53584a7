#include "cogs/cloud/resources/servers.h"

#include <optional>
#include <set>

#include "cogs/base/secret.h"
#include "cogs/cloud/heal/healer.h"
#include "cogs/cloud/resources/networks.h"
#include "cogs/cloud/resources/volumes.h"
#include "cogs/wire/base64.h"

namespace cogs::cloud {

using wire::Input;
using wire::List;
using wire::Text;

Servers::Servers(Context& ctx, Volumes& volumes, heal::Healer& healer)
    : ctx_(ctx), volumes_(volumes), healer_(healer) {
    ctx_.OnSettle("server.create", [this](Settlement& s) { SettleCreate(s); });
    ctx_.OnSettle("server.delete", [this](Settlement& s) { SettleDelete(s); });
    for (const char* action : {"start", "stop", "reboot"}) {
        ctx_.OnSettle(std::string("server.") + action,
                      [this, action](Settlement& s) { SettlePower(s, action); });
    }
}

namespace {

// `a` times `n`.
Amount Times(const Amount& a, int64_t n) {
    Amount r;
    for (const auto& q : kQuotas) {
        r.*q.field = a.*q.field * n;
    }
    return r;
}

// Reserves `per` for as many as the project's quota allows between `lo` and `hi` (Nova's bulk
// create): that count, or the quota's refusal of `lo`.
Result<int64_t> ReserveMost(Model& model, const std::string& project, const Amount& per, int64_t lo,
                            int64_t hi) {
    for (int64_t n = hi; n > lo; --n) {
        if (model.Reserve(project, Times(per, n))) return n;
    }
    COGS_TRY(model.Reserve(project, Times(per, lo)));
    return lo;
}

}  // namespace

void Servers::Create(Creation c) {
    const int64_t cap = ctx_.options.max_servers_per_request;
    auto planned = [&]() -> Result<Plan> {
        Plan p;
        COGS_ASSIGN_OR_RETURN(
            auto in,
            Input::Parse(c.call.body, {"name", "flavor", "image", "network_id", "port_id", "volume_ids",
                                       "server_group_id", "availability_zone", "weigher", "project_id",
                                       "user_data", "key_name", "min_count", "max_count"}));
        COGS_ASSIGN_OR_RETURN(p.project, OwnerOf(ctx_, c.who(), in));
        COGS_ASSIGN_OR_RETURN(p.name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto min_count, in.OptionalInt("min_count", 1, cap));
        COGS_ASSIGN_OR_RETURN(auto max_count, in.OptionalInt("max_count", 1, cap));
        p.bulk = min_count.has_value() || max_count.has_value();
        p.min_count = min_count.value_or(1);
        p.max_count = max_count.value_or(p.min_count);
        if (p.max_count < p.min_count) {
            return MakeError(
                FieldError("max_count", "must be at least min_count (" + std::to_string(p.min_count) + ")"));
        }
        if (p.max_count > 1 && p.name.size() + 1 + std::to_string(p.max_count).size() > 64) {
            return MakeError(FieldError("name", "with max_count " + std::to_string(p.max_count) +
                                                    " the names " + p.name + "-1 .. " + p.name + "-" +
                                                    std::to_string(p.max_count) + " must fit 64 characters"));
        }
        COGS_ASSIGN_OR_RETURN(auto flavor_ref, in.String("flavor"));
        p.flavor = ctx_.model.FindByIdOrName(kFlavor, flavor_ref);
        if (p.flavor == nullptr) return MakeError(FieldError("flavor", "no flavor " + flavor_ref));
        COGS_ASSIGN_OR_RETURN(auto image_ref, in.String("image"));
        p.image = ctx_.model.FindByIdOrName(kImage, image_ref);
        if (p.image == nullptr) return MakeError(FieldError("image", "no image " + image_ref));
        COGS_ASSIGN_OR_RETURN(auto net_ref, in.OptionalString("network_id"));
        COGS_ASSIGN_OR_RETURN(auto port_ref, in.OptionalString("port_id"));
        if (port_ref) {
            // Nova's boot on a port: the port is the project's, free and ACTIVE; the network is its.
            if (p.max_count > 1) {
                return MakeError(FieldError("port_id", "a port is one server's: none with max_count > 1"));
            }
            const Res* port = ctx_.model.Find(kPort, *port_ref);
            if (port == nullptr || port->project != p.project) {
                return MakeError(FieldError("port_id", "no port " + *port_ref));
            }
            if (const std::string device = Str(port->body, "device_id"); !device.empty()) {
                return MakeError(ErrorCode::kConflict, "port " + port->id + " is in use by server " + device);
            }
            if (!port->is(NetStatus::kActive)) {
                return MakeError(ErrorCode::kConflict,
                                 "port " + port->id + " is " + port->status_text() + ", not ACTIVE");
            }
            p.port_id = port->id;
            p.net_id = Str(port->body, "network_id");
            if (net_ref && *net_ref != p.net_id) {
                return MakeError(FieldError(
                    "network_id", "port " + p.port_id + " is on network " + p.net_id + ", not " + *net_ref));
            }
        } else if (net_ref) {
            p.net_id = *net_ref;
        } else {
            return MakeError(FieldError("network_id", "required (or port_id)"));
        }
        const Res* net = ctx_.model.Find(kNetwork, p.net_id);
        if (net == nullptr || net->project != p.project) {
            return MakeError(FieldError("network_id", "no network " + p.net_id));
        }
        if (!net->is(NetStatus::kActive)) {
            return MakeError(ErrorCode::kConflict, "network " + p.net_id + " is not ACTIVE");
        }
        COGS_ASSIGN_OR_RETURN(p.volume_ids, in.StringList("volume_ids", List{.max_items = 16}));
        if (p.max_count > 1 && !p.volume_ids.empty()) {
            return MakeError(
                FieldError("volume_ids", "a volume attaches to one server: none with max_count > 1"));
        }
        if (std::set<std::string>(p.volume_ids.begin(), p.volume_ids.end()).size() != p.volume_ids.size()) {
            return MakeError(FieldError("volume_ids", "lists a volume twice"));
        }
        for (const auto& vid : p.volume_ids) {
            const Res* v = ctx_.model.Find(kVolume, vid);
            if (v == nullptr || v->project != p.project) {
                return MakeError(FieldError("volume_ids", "no volume " + vid));
            }
            if (!v->is(VolumeStatus::kAvailable)) {
                return MakeError(ErrorCode::kConflict,
                                 "volume " + vid + " is " + v->status_text() + ", not available");
            }
        }
        COGS_ASSIGN_OR_RETURN(auto group_id, in.OptionalString("server_group_id"));
        p.group_id = group_id.value_or("");
        p.policy = "none";
        if (group_id) {
            const Res* g = ctx_.model.Find(kGroup, *group_id);
            if (g == nullptr || g->project != p.project) {
                return MakeError(FieldError("server_group_id", "no server group " + *group_id));
            }
            p.policy = Str(g->body, "policy");
        }
        COGS_ASSIGN_OR_RETURN(
            auto az, in.OptionalString("availability_zone", Text{.max_len = 64, .allow_empty = true}));
        p.az = az.value_or("");
        COGS_ASSIGN_OR_RETURN(auto weigher, in.OptionalString("weigher"));
        if (weigher && *weigher != "spread" && *weigher != "pack") {
            return MakeError(FieldError("weigher", "must be spread or pack"));
        }
        p.weigher = weigher.value_or("spread");
        COGS_ASSIGN_OR_RETURN(auto user_data, wire::OptionalBase64(in, "user_data", kMaxUserDataBytes));
        if (user_data) {
            p.user_data = in.object().at("user_data").get_string();
        }
        COGS_ASSIGN_OR_RETURN(auto key_name, in.OptionalString("key_name", Text{.max_len = 64}));
        if (key_name) {
            const Res* k = ctx_.model.FindByName(kKeypair, *key_name, p.project);
            if (k == nullptr) {
                return MakeError(FieldError("key_name", "no key pair " + *key_name + " in the project"));
            }
            p.key_name = *key_name;
            p.public_key = Str(k->body, "public_key");
        }
        return p;
    }();
    if (!planned) return c.call.Fail(planned.error());
    const Plan& p = *planned;
    const Amount amount = p.Quota();
    if (!p.bulk) {
        if (auto st = ctx_.model.Reserve(p.project, amount); !st) return c.call.Fail(st.error());
        return StartAndAnswer(ctx_, Build(p, p.name, "r-" + NewUuid(), c.call.traceparent), c.call);
    }
    // How many: as many of max_count as the project may start workflows for now (429 below
    // min_count), then as many of those as its quota allows (its refusal below min_count). Both
    // before anything is written.
    auto room =
        ctx_.AdmitWorkflows(p.project, static_cast<size_t>(p.min_count), static_cast<size_t>(p.max_count));
    if (!room) return c.call.Fail(room.error());
    auto count = ReserveMost(ctx_.model, p.project, amount, p.min_count, static_cast<int64_t>(*room));
    if (!count) return c.call.Fail(count.error());
    const std::string reservation = "r-" + NewUuid();
    std::vector<Launch> launches;
    std::vector<const Res*> made;
    for (int64_t i = 1; i <= *count; ++i) {
        launches.push_back(Build(p, *count == 1 ? p.name : p.name + "-" + std::to_string(i), reservation,
                                 c.call.traceparent));
        made.push_back(launches.back().on);
    }
    StartManyAndAnswer(
        ctx_, std::move(launches),
        [reservation, made = std::move(made)] {
            json::array servers;
            for (const Res* r : made) {
                servers.push_back(json::object{{"id", r->id},
                                               {"name", Str(r->body, "name")},
                                               {"status", Str(r->body, "status")},
                                               {"workflow_id", Str(r->body, "workflow_id")}});
            }
            return wire::Json(202,
                              json::object{{"reservation_id", reservation}, {"servers", std::move(servers)}});
        },
        c.call);
}

Amount Servers::Plan::Quota() const {
    return Amount{.servers = 1,
                  .vcpus = Int(flavor->body, "vcpus"),
                  .ram_mb = Int(flavor->body, "ram_mb"),
                  .ports = port_id.empty() ? 1 : 0};
}

Launch Servers::Build(const Plan& p, const std::string& name, const std::string& reservation,
                      const std::string& traceparent) {
    const int64_t vcpus = Int(p.flavor->body, "vcpus");
    const int64_t ram = Int(p.flavor->body, "ram_mb");
    const int64_t disk = Int(p.flavor->body, "disk_gb");
    const Amount amount = p.Quota();
    Res server = ctx_.NewRes(kServer, p.project);
    const bool keep_port = !p.port_id.empty();
    // A new port's quota is the server's: `amount` counted it. A given port holds its own.
    std::optional<Res> new_port;
    Res* given_port = nullptr;
    if (keep_port) {
        given_port = ctx_.model.Find(kPort, p.port_id);
        given_port->body["device_id"] = server.id;
    } else {
        new_port = Networks::NewPort(ctx_, p.project, p.net_id, "", server.id);
    }
    const std::string port_id = keep_port ? p.port_id : new_port->id;
    auto& b = server.body;
    b["name"] = name;
    server.set_status(ServerStatus::kBuild);
    b["flavor_id"] = p.flavor->id;
    b["flavor"] = Str(p.flavor->body, "name");
    b["image_id"] = p.image->id;
    b["network_id"] = p.net_id;
    b["host"] = "";
    b["availability_zone"] = p.az;
    b["port_id"] = port_id;
    b["_keep_port"] = keep_port;
    b["ip_address"] = "";
    b["mac_address"] = "";
    b["volume_ids"] = ToArray(p.volume_ids);
    b["server_group_id"] = p.group_id;
    b["key_name"] = p.key_name;
    b["reservation_id"] = reservation;
    b["_vcpus"] = vcpus;
    b["_ram_mb"] = ram;
    b["_disk_gb"] = disk;
    b["_quota"] = true;
    b["_user_data"] = p.user_data;
    b["_public_key"] = p.public_key;
    const std::string server_id = server.id;
    json::object input{
        {"server_id", server_id},
        {"project_id", p.project},
        {"name", name},
        {"port_id", port_id},
        {"network_id", p.net_id},
        {"vcpus", vcpus},
        {"ram_mb", ram},
        {"disk_gb", disk},
        {"image_id", p.image->id},
        {"volume_ids", ToArray(p.volume_ids)},
        {"availability_zone", p.az},
        {"traits", p.flavor->body.contains("traits") ? p.flavor->body.at("traits") : json::array()},
        {"group_id", p.group_id},
        {"policy", p.policy},
        {"weigher", p.weigher},
        {"user_data", p.user_data},
        {"public_keys", PublicKeysOf(server)},
        {"keep_port", keep_port}};
    Res& stored = ctx_.model.Put(std::move(server));
    std::vector<Res*> changed{&stored, keep_port ? given_port : &ctx_.model.Put(std::move(*new_port))};
    for (const auto& vid : p.volume_ids) {
        Res* v = ctx_.model.Find(kVolume, vid);
        v->set_status(VolumeStatus::kAttaching);
        v->body["server_id"] = server_id;
        changed.push_back(v);
    }
    return Launch{
        .type = "server.create",
        .input = std::move(input),
        .changed = std::move(changed),
        .undo =
            [this, server_id, port_id, keep_port, project = p.project, amount, vols = p.volume_ids] {
                ctx_.model.Erase(kServer, server_id);
                if (!keep_port) {
                    ctx_.model.Erase(kPort, port_id);
                } else if (Res* port = ctx_.model.Find(kPort, port_id)) {
                    port->body["device_id"] = "";
                }
                ctx_.model.Release(project, amount);
                for (const auto& vid : vols) {
                    if (Res* v = ctx_.model.Find(kVolume, vid)) {
                        v->set_status(VolumeStatus::kAvailable);
                        v->body["server_id"] = "";
                    }
                }
            },
        .on = &stored,
        .traceparent = traceparent};
}

json::array PublicKeysOf(const Res& server) {
    json::array keys;
    if (std::string key = Str(server.body, "_public_key"); !key.empty()) keys.emplace_back(std::move(key));
    return keys;
}

void Servers::Delete(Call call) {
    const std::string id = call.Param("id");
    bool delete_volumes = false;
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * s, FindToChange(ctx_, call, kServer));
        // The delete detaches the volumes listed now: one being attached could land after that.
        if (const Res* v = VolumeInFlight(ctx_.model, *s)) {
            return MakeError(ErrorCode::kConflict, "server " + id + " has volume " + v->id + " " +
                                                       v->status_text() + ": delete it once that ends");
        }
        if (auto q = call.query.find("delete_volumes"); q != call.query.end()) {
            delete_volumes = q->second == "true" || q->second == "1";
            if (!delete_volumes && q->second != "false" && q->second != "0") {
                return MakeError(FieldError("delete_volumes", "must be true or false"));
            }
        }
        return s;
    }();
    if (!found) return call.Fail(found.error());
    Res& s = **found;
    s.body["_delete_volumes"] = delete_volumes;
    json::object input{{"server_id", id},
                       {"host", Str(s.body, "host")},
                       {"port_id", Str(s.body, "port_id")},
                       {"keep_port", Bool(s.body, "_keep_port")},  // the tenant's: unbound, not deleted
                       {"volume_ids", ToArray(AttachedVolumes(ctx_.model, s))}};
    StartAndAnswer(ctx_,
                   ctx_.Transition(s, ToString(ServerStatus::kDeleting), "server.delete", std::move(input),
                                   call.traceparent),
                   call);
}

void Servers::Act(Call call, std::string_view action) {
    const std::string id = call.Param("id");
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * s, FindToChange(ctx_, call, kServer, /*idle=*/false));
        COGS_TRY(Input::Parse(call.body, {}));
        const ServerStatus need = action == "start" ? ServerStatus::kShutoff : ServerStatus::kActive;
        if (!s->is(need)) {
            return MakeError(ErrorCode::kConflict, "server " + id + " is " + s->status_text() + "; " +
                                                       std::string(action) + " needs " +
                                                       std::string(ToString(need)));
        }
        return s;
    }();
    if (!found) return call.Fail(found.error());
    Res& s = **found;
    const ServerStatus to = action == "start"  ? ServerStatus::kStarting
                            : action == "stop" ? ServerStatus::kStopping
                                               : ServerStatus::kReboot;
    StartAndAnswer(ctx_,
                   ctx_.Transition(s, ToString(to), "server." + std::string(action),
                                   {{"server_id", id}, {"host", Str(s.body, "host")}}, call.traceparent),
                   call);
}

void Servers::SettleCreate(Settlement& st) {
    const std::string sid = st.In("server_id");
    Res* s = st.Mine(kServer, sid);
    if (s == nullptr) return;
    Res* port = ctx_.model.Find(kPort, st.In("port_id"));
    const bool keep_port = Bool(s->body, "_keep_port");
    const auto vols = StrList(st.input(), "volume_ids");
    if (st.ok()) {
        json::object claim = st.Output("claim");
        json::object p = st.Output("create_port");
        s->set_status(ServerStatus::kActive);
        s->body["host"] = Str(claim, "host");
        if (const Res* h = ctx_.model.Find(kHost, Str(claim, "host"))) {
            s->body["availability_zone"] = Str(h->body, "availability_zone");
        }
        s->body["ip_address"] = Str(p, "fixed_ip");
        s->body["mac_address"] = Str(p, "mac_address");
        // What a rebuild elsewhere plugs the port with again (heal::Healer::StartMove).
        s->body["_cidr"] = Str(p, "cidr");
        s->body["_gateway_ip"] = Str(p, "gateway_ip");
        st.Note(*s, "active",
                "server is ACTIVE on host " + Str(s->body, "host") + " at " + Str(s->body, "ip_address"));
        st.Save(*s);
        if (port != nullptr && keep_port) {
            st.Note(*port, "bound", "port is bound to server " + sid);
            st.Save(*port);
        } else if (port != nullptr) {
            port->set_status(NetStatus::kActive);
            for (const char* k : {"mac_address", "fixed_ip", "subnet_id"}) {
                if (p.contains(k)) port->body[k] = p.at(k);
            }
            st.Note(*port, "active", "port is ACTIVE for server " + sid);
            st.Save(*port);
        }
        json::object att = st.Output("attach_volumes");
        std::map<std::string, std::string> devices;
        if (const auto* a = att.if_contains("attachments"); a != nullptr && a->is_array()) {
            for (const auto& item : a->get_array()) {
                if (item.is_object()) {
                    devices[Str(item.get_object(), "volume_id")] = Str(item.get_object(), "device");
                }
            }
        }
        for (const auto& vid : vols) {
            if (Res* v = ctx_.model.Find(kVolume, vid)) {
                v->set_status(VolumeStatus::kInUse);
                v->body["device"] = devices[vid];
                st.Note(*v, "attached", "attached to server " + sid + " as " + devices[vid]);
                st.Save(*v);
            }
        }
        return;
    }
    if (st.rolled_back() && healer_.Reschedule(st, *s)) {
        st.Note(*s, "rescheduled",
                "server.create rolled back (" + st.event().reason + ") after its host " +
                    Str(st.Output("claim"), "host") + " failed: built again on another host");
        return;
    }
    const bool clean = st.rolled_back();
    if (clean) {
        ctx_.model.Release(s->project, Model::HeldBy(*s));
        s->body["_quota"] = false;
        // Its volumes are free again (below): it keeps none of them, so that its delete later
        // never touches a volume another server took meanwhile.
        s->body["volume_ids"] = json::array();
        if (port != nullptr && keep_port) {
            Unbind(st, *port, sid);
        } else if (port != nullptr) {
            st.Erase(kPort, port->id);
        }
    } else if (port != nullptr && !keep_port) {
        st.Fail(*port, ToString(NetStatus::kError));
    }
    // (A given port whose rollback did not end stays bound to the failed server: its delete
    // unbinds it.)
    s->body["host"] = "";
    st.Fail(*s, ToString(ServerStatus::kError));
    for (const auto& vid : vols) {
        if (Res* v = ctx_.model.Find(kVolume, vid)) {
            v->set_status(clean ? VolumeStatus::kAvailable : VolumeStatus::kError);
            v->body["server_id"] = clean ? "" : sid;
            st.Note(*v, std::string(v->status_text()),
                    "server " + sid + " create " + st.outcome() + ": volume is " + v->status_text());
            st.Save(*v);
        }
    }
}

void Servers::Unbind(Settlement& st, Res& port, const std::string& server_id) {
    if (Str(port.body, "device_id") != server_id) return;  // another server's since
    port.body["device_id"] = "";
    st.Note(port, "unbound",
            "port is free again: server " + server_id + " " + st.event().type + " " + st.outcome());
    st.Save(port);
}

void Servers::SettleDelete(Settlement& st) {
    const std::string sid = st.In("server_id");
    Res* s = st.Mine(kServer, sid);
    if (s == nullptr) return;
    if (!st.ok()) {
        st.Fail(*s, ToString(ServerStatus::kError));
        return;
    }
    const bool delete_volumes = Bool(s->body, "_delete_volumes");
    if (!Bool(s->body, "_keep_port")) {
        st.Erase(kPort, Str(s->body, "port_id"));
    } else if (Res* port = ctx_.model.Find(kPort, Str(s->body, "port_id"))) {
        Unbind(st, *port, sid);
    }
    // Only what is attached to this server is freed (no attach or detach ran meanwhile: both are
    // refused while it is DELETING, and its delete while one runs).
    const std::vector<std::string> vols = AttachedVolumes(ctx_.model, *s);
    st.Erase(kServer, sid);
    for (const auto& vid : vols) {
        Res* v = ctx_.model.Find(kVolume, vid);
        if (v == nullptr) continue;
        v->set_status(VolumeStatus::kAvailable);
        v->body["server_id"] = "";
        v->body["device"] = "";
        st.Note(*v, "detached", "detached from deleted server " + sid);
        st.Save(*v);
        if (delete_volumes) {
            // Once the detach is committed (its history reads detached, then delete_requested), and
            // if nothing took the volume meanwhile.
            ctx_.Post([this, vid, trace = st.event().trace] {
                Res* now = ctx_.model.Find(kVolume, vid);
                if (now != nullptr && now->is(VolumeStatus::kAvailable) &&
                    Str(now->body, "server_id").empty()) {
                    ctx_.StartWorkflow(volumes_.Deletion(*now, trace), nullptr);
                }
            });
        }
    }
}

void Servers::SettlePower(Settlement& st, std::string_view action) {
    Res* s = st.Mine(kServer, st.In("server_id"));
    if (s == nullptr) return;
    if (!st.ok()) {
        // The instance is as it was (the action was refused) or unknown: say so, keep the status
        // it had.
        st.Fail(*s, Str(s->body, "_prev_status"));
        return;
    }
    s->set_status(action == "stop" ? ServerStatus::kShutoff : ServerStatus::kActive);
    s->body.erase("fault");
    st.Note(*s,
            action == "stop"    ? "stopped"
            : action == "start" ? "started"
                                : "rebooted",
            "server is " + s->status_text());
    st.Save(*s);
}

}  // namespace cogs::cloud
