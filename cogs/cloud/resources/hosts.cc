#include "cogs/cloud/resources/hosts.h"

#include "cogs/cloud/core/credentials.h"
#include "cogs/cloud/heal/healer.h"
#include "cogs/cloud/health/host_monitor.h"
#include "cogs/cloud/reconcile/reconcile_loop.h"
#include "cogs/cloud/resources/catalog.h"
#include "cogs/cloud/resources/idempotency.h"
#include "cogs/http/client.h"

namespace cogs::cloud {

using wire::Input;
using wire::Text;

namespace {

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

Status ValidHostName(const std::string& name) {
    if (name.empty() || name.size() > 64 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos) {
        return MakeError(FieldError("name", "1-64 characters of [A-Za-z0-9._-]"));
    }
    return Ok();
}

}  // namespace

Hosts::Hosts(Context& ctx, Catalog& catalog, health::HostMonitor& monitor, heal::Healer& healer,
             reconcile::ReconcileLoop& reconcile)
    : ctx_(ctx),
      catalog_(catalog),
      monitor_(monitor),
      healer_(healer),
      reconcile_(reconcile),
      restarts_(observe::CounterOf(ctx.metrics(), "cogs_heal_instance_restarts_total",
                                   "Crashed instances their agent restarted (reported by heartbeat).")
                    .With({})) {}

scheduler::HostInfo Hosts::InfoOf(const Res& r) {
    scheduler::HostInfo h;
    h.name = r.id;
    h.availability_zone = Str(r.body, "availability_zone");
    h.vcpus = Int(r.body, "vcpus");
    h.ram_mb = Int(r.body, "ram_mb");
    h.disk_gb = Int(r.body, "disk_gb");
    h.traits = StrList(r.body, "traits");
    h.enabled = !r.body.contains("enabled") || Bool(r.body, "enabled");
    h.alive = true;
    return h;
}

json::object Hosts::View(const Res& r) const {
    json::object o = cloud::View(r);
    o["name"] = r.id;
    o["state"] = health::ToString(monitor_.StateOf(r.id));
    if (auto since = monitor_.liveness().Since(r.id)) o["state_since"] = ctx_.WallOf(*since);
    if (auto last = monitor_.liveness().LastRenewal(r.id)) o["last_renewal_at"] = ctx_.WallOf(*last);
    o["draining"] = Bool(r.body, "draining");
    scheduler::Usage u = ctx_.placement.UsageOf(r.id);
    o["used"] = json::object{{"vcpus", u.vcpus}, {"ram_mb", u.ram_mb}, {"disk_gb", u.disk_gb}};
    o["servers"] = u.servers;
    return o;
}

Result<Res*> Hosts::Find(const Call& call) {
    COGS_TRY(RequireAdmin(call.who));
    Res* h = ctx_.model.Find(kHost, call.Param("name"));
    if (h == nullptr) return MakeError(NotFound("host", call.Param("name")));
    return h;
}

void Hosts::SaveAndAnswer(const Res& h, const Call& call, std::vector<store::EventRecord> events) {
    http::Response answer = wire::Wrapped(200, "host", View(h));
    std::vector<store::ResourceWrite> writes{Model::Write(h)};
    Remember(ctx_, call, answer, writes);
    ctx_.Persist(std::move(writes), std::move(events),
                 [respond = call.respond, answer = std::move(answer)](Status st) mutable {
                     respond(st ? std::move(answer) : wire::ApiError(st.error()));
                 });
}

void Hosts::List(Call call) {
    if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    json::array items;
    for (const auto& [name, r] : ctx_.model.All(kHost)) {
        items.push_back(View(r));
    }
    call.Answer(wire::Json(200, json::object{{"hosts", std::move(items)}}));
}

void Hosts::Show(Call call) {
    auto h = Find(call);
    if (!h) return call.Fail(h.error());
    call.Answer(wire::Wrapped(200, "host", View(**h)));
}

namespace {

// A client certificate names its host (mutual TLS, docs/api.md "Hosts"): an agent that shows one may
// register and heartbeat only for the host it names. Without a certificate the token decides alone.
Status CheckPeerNamesHost(const std::string& peer_name, const std::string& host) {
    if (peer_name.empty() || peer_name == host) return {};
    return MakeError(ErrorCode::kPermissionDenied,
                     "the client certificate names '" + peer_name + "', not host '" + host + "'");
}

}  // namespace

void Hosts::Register(Call call) {
    const std::string name = call.Param("name");
    if (auto st = CheckPeerNamesHost(call.peer_name, name); !st) return call.Fail(st.error());
    std::vector<store::EventRecord> events;
    auto made = [&]() -> Result<Res> {
        COGS_TRY(RequireAdminOrHost(call.who, name));
        COGS_TRY(ValidHostName(name));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(call.body, {"url", "availability_zone", "vcpus", "ram_mb",
                                                                "disk_gb", "traits"}));
        COGS_ASSIGN_OR_RETURN(auto url, in.String("url"));
        if (!http::ParseHttpUrl(url)) {
            return MakeError(FieldError("url", "must be http://HOST:PORT or https://HOST:PORT"));
        }
        COGS_ASSIGN_OR_RETURN(
            auto az, in.OptionalString("availability_zone", Text{.max_len = 64, .allow_empty = true}));
        COGS_ASSIGN_OR_RETURN(auto vcpus, in.Int("vcpus", 1, 1 << 20));
        COGS_ASSIGN_OR_RETURN(auto ram, in.Int("ram_mb", 1, 1LL << 40));
        COGS_ASSIGN_OR_RETURN(auto disk, in.Int("disk_gb", 0, 1LL << 40));
        COGS_ASSIGN_OR_RETURN(auto traits, in.StringList("traits"));
        const Res* existing = ctx_.model.Find(kHost, name);
        Res h = existing != nullptr ? *existing : Res{std::string(kHost), name, "", {}};
        if (existing == nullptr) {
            events.push_back(ctx_.Event(kHost, name, "", "registered",
                                        "registered: " + url + ", " + std::to_string(vcpus) + " vcpus, " +
                                            std::to_string(ram) + " MiB, " + std::to_string(disk) + " GiB"));
            h.body["created_at"] = Rfc3339(ctx_.clock.WallMs());
            h.body["enabled"] = true;
            h.body["disabled_reason"] = "";
        }
        h.body["url"] = url;
        h.body["availability_zone"] = az.value_or("nova");
        h.body["vcpus"] = vcpus;
        h.body["ram_mb"] = ram;
        h.body["disk_gb"] = disk;
        h.body["traits"] = ToArray(traits);
        ctx_.Touch(h);
        return h;
    }();
    if (!made) return call.Fail(made.error());
    ctx_.placement.UpsertHost(InfoOf(*made));
    const Res& stored = ctx_.model.Put(std::move(*made));
    const int64_t ttl_ms = Ms(monitor_.Renewed(name, "registered anew"));
    // Registering renews the lease too: the answer carries its TTL, as a heartbeat's does.
    ctx_.Persist({Model::Write(stored)}, std::move(events),
                 [this, respond = call.respond, name, ttl_ms](Status st) {
                     const Res* now = ctx_.model.Find(kHost, name);
                     if (!st) return respond(wire::ApiError(st.error()));
                     if (now == nullptr) return respond(wire::ApiError(NotFound("host", name)));
                     respond(wire::Json(200, json::object{{"host", View(*now)},
                                                          {"lease_ttl_ms", ttl_ms},
                                                          {"renew_interval_ms", ttl_ms / 3},
                                                          {"lease_epoch", monitor_.LeaseEpoch(name)}}));
                 });
}

// One host's renewal, from a heartbeat's body (or one entry of a batch): the lease, the reports
// (their writes and events added to the caller's), the look at fenced instances. The answer's
// per-host part: {"lease_epoch", "acked_seq"}, the lease granted in `ttl`.
Result<json::object> Hosts::Renew(const std::string& name, const Principal& who, const std::string& peer_name,
                                  const json::object& in, Duration& ttl,
                                  std::vector<store::ResourceWrite>& writes,
                                  std::vector<store::EventRecord>& events) {
    COGS_TRY(CheckPeerNamesHost(peer_name, name));
    COGS_TRY(RequireAdminOrHost(who, name));
    if (!ctx_.model.Has(kHost, name)) return MakeError(NotFound("host", name));
    ttl = monitor_.Renewed(name, "its lease is renewed again");
    int64_t acked = 0;
    // On a full disk the reports are not acknowledged (acked_seq 0): the agent sends them again.
    const auto* reports = ctx_.store.Writable() ? in.if_contains("reports") : nullptr;
    if (reports != nullptr && reports->is_array()) {
        for (const auto& item : reports->get_array()) {
            if (!item.is_object()) continue;
            acked = std::max(acked, Int(item.get_object(), "seq"));
            InstanceReport(name, item.get_object(), writes, events);
        }
    }
    // Instances the host holds FENCED (after fencing itself, or a restart) wait for us to say what
    // runs again: look at that host now rather than at the next periodic pass.
    if (Int(wire::Obj(in, "instances"), "FENCED") > 0 && monitor_.Up(name)) {
        reconcile_.ReconcileHost(name, "its agent holds fenced instances");
    }
    return json::object{{"lease_epoch", monitor_.LeaseEpoch(name)}, {"acked_seq", acked}};
}

namespace {

// Answers once the renewals' reports are durable (none: at once).
void AnswerRenewal(Context& ctx, const Call& call, json::object answer,
                   std::vector<store::ResourceWrite> writes, std::vector<store::EventRecord> events) {
    if (writes.empty() && events.empty()) {
        return call.Answer(wire::Json(200, answer));
    }
    ctx.Persist(std::move(writes), std::move(events),
                [respond = call.respond, answer = std::move(answer)](Status st) {
                    respond(st ? wire::Json(200, answer) : wire::ApiError(st.error()));
                });
}

}  // namespace

void Hosts::Heartbeat(Call call) {
    auto parsed = Input::ParseAny(call.body);
    std::vector<store::ResourceWrite> writes;
    std::vector<store::EventRecord> events;
    Duration ttl{};
    auto renewed = [&]() -> Result<json::object> {
        COGS_TRY(CheckPeerNamesHost(call.peer_name, call.Param("name")));
        COGS_TRY(RequireAdminOrHost(call.who, call.Param("name")));
        if (ctx_.model.Find(kHost, call.Param("name")) == nullptr) {
            return MakeError(NotFound("host", call.Param("name")));
        }
        if (!parsed) return MakeError(FieldError("body", "must be a JSON object"));
        return Renew(call.Param("name"), call.who, call.peer_name, parsed->object(), ttl, writes, events);
    }();
    if (!renewed) return call.Fail(renewed.error());
    json::object answer = std::move(*renewed);
    answer["lease_ttl_ms"] = Ms(ttl);
    answer["renew_interval_ms"] = Ms(ttl) / 3;
    AnswerRenewal(ctx_, call, std::move(answer), std::move(writes), std::move(events));
}

void Hosts::Heartbeats(Call call) {
    std::vector<store::ResourceWrite> writes;
    std::vector<store::EventRecord> events;
    auto renewed = [&]() -> Result<json::array> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::ParseAny(call.body));
        const json::object& body = in.object();
        for (const auto& [key, value] : body) {
            if (key != "hosts") return MakeError(FieldError(std::string(key), "unknown field"));
        }
        const json::value* hosts = body.if_contains("hosts");
        if (hosts == nullptr || !hosts->is_array()) {
            return MakeError(FieldError("hosts", "must be an array of {\"name\", ...}"));
        }
        const json::array& entries = hosts->get_array();
        if (entries.empty() || entries.size() > kMaxBatchRenewals) {
            return MakeError(FieldError("hosts", "1 to " + std::to_string(kMaxBatchRenewals) + " entries"));
        }
        // The whole batch is checked before any lease moves: a malformed entry refuses it all.
        for (size_t i = 0; i < entries.size(); ++i) {
            const std::string field = "hosts[" + std::to_string(i) + "]";
            if (!entries[i].is_object()) return MakeError(FieldError(field, "must be an object"));
            const json::object& e = entries[i].get_object();
            const json::value* name = e.if_contains("name");
            if (name == nullptr || !name->is_string() || name->get_string().empty()) {
                return MakeError(FieldError(field + ".name", "a host name is required"));
            }
            if (const json::value* t = e.if_contains("token"); t != nullptr && !t->is_string()) {
                return MakeError(FieldError(field + ".token", "must be a string"));
            }
        }
        json::array results;
        results.reserve(entries.size());
        for (const auto& value : entries) {
            const json::object& e = value.get_object();
            const std::string name(e.at("name").get_string());
            // An entry may carry its own host's token (an agent serving many hosts, each with its
            // own); without one the request's token must be allowed to renew that host.
            Result<Principal> who = call.who;
            if (const json::value* t = e.if_contains("token")) {
                who = catalog_.Authenticate(std::string_view(t->get_string()));
            }
            Duration ttl{};
            Result<json::object> one =
                who ? Renew(name, *who, call.peer_name, e, ttl, writes, events) : MakeError(who.error());
            json::object result{{"name", name}};
            if (one) {
                for (auto& [k, v] : *one)
                    result[k] = std::move(v);
                result["lease_ttl_ms"] = Ms(ttl);
            } else {
                json::object error = wire::ApiErrorObject(one.error());
                error["status"] = HttpStatus(one.error().code);
                result["error"] = std::move(error);
            }
            results.push_back(std::move(result));
        }
        return results;
    }();
    if (!renewed) return call.Fail(renewed.error());
    const int64_t ttl_ms = monitor_.lease_ttl_ms();
    json::object answer{
        {"lease_ttl_ms", ttl_ms}, {"renew_interval_ms", ttl_ms / 3}, {"hosts", std::move(*renewed)}};
    AnswerRenewal(ctx_, call, std::move(answer), std::move(writes), std::move(events));
}

std::vector<std::string> Hosts::RevokeHostTokens(const std::string& host,
                                                 std::vector<store::ResourceWrite>& writes) {
    return catalog_.RevokeTokens("host", host, writes);
}

void Hosts::Enroll(Call call) {
    const std::string name = call.Param("name");
    auto made = [&]() -> Result<std::pair<Res, std::string>> {
        COGS_TRY(RequireAdmin(call.who));
        COGS_TRY(ValidHostName(name));
        COGS_TRY(Input::Parse(call.body, {}));
        if (ctx_.options.agent_key.empty()) {
            return MakeError(
                ErrorCode::kFailedPrecondition,
                "cogsd has no agent key (--agent-key-file): it cannot give a host's agent its token");
        }
        auto [token, secret] = catalog_.NewToken(call.who.project_id, Role::kHost, "host " + name, 0);
        token.body["host"] = name;
        return std::pair{std::move(token), std::move(secret)};
    }();
    if (!made) return call.Fail(made.error());
    auto& [token, secret] = *made;
    std::vector<store::ResourceWrite> writes;
    const std::vector<std::string> revoked = RevokeHostTokens(name, writes);
    json::array revoked_ids;
    for (const std::string& id : revoked) {
        revoked_ids.emplace_back(id);
    }
    json::object view{{"host", name},
                      {"token_id", token.id},
                      {"revoked_token_ids", std::move(revoked_ids)},
                      {"enrolled_at", Rfc3339(ctx_.clock.WallMs())}};
    // A replay answers this without the secrets: they are not stored.
    Remember(ctx_, call, wire::Wrapped(201, "enrollment", view), writes);
    view["host_token"] = secret;
    view["agent_token"] = AgentToken(ctx_.options.agent_key, name, token.id);
    ctx_.model.token_by_hash[Str(token.body, "_hash")] = token.id;
    writes.push_back(Model::Write(token));
    std::vector<store::EventRecord> events{ctx_.Event(
        kHost, name, "", "enrolled",
        "enrolled: host token " + token.id +
            (revoked.empty() ? std::string() : ", revoking " + std::to_string(revoked.size()) + " before it"),
        "", call.traceparent)};
    ctx_.model.Put(std::move(token));
    ctx_.Persist(
        std::move(writes), std::move(events),
        [respond = call.respond, view = std::move(view)](Status st) mutable {
            respond(st ? wire::Wrapped(201, "enrollment", std::move(view)) : wire::ApiError(st.error()));
        });
}

// What an agent's instance supervisor reports (crashed, restarted, gave_up) becomes the server's
// history; "gave_up" puts the server in ERROR with the agent's message.
void Hosts::InstanceReport(const std::string& host, const json::object& report,
                           std::vector<store::ResourceWrite>& writes,
                           std::vector<store::EventRecord>& events) {
    const std::string type = Str(report, "type");
    const std::string message = Str(report, "message");
    Res* s = ctx_.model.Find(kServer, Str(report, "instance"));
    if (s == nullptr || Str(s->body, "host") != host) return;  // not (or no longer) this host's
    const std::string event_type = type == "gave_up" ? "restart_gave_up" : type;
    if (event_type != "crashed" && event_type != "restarted" && event_type != "restart_gave_up") return;
    events.push_back(ctx_.Event(kServer, s->id, s->project, event_type,
                                "host " + host + ": " + (message.empty() ? type : message)));
    if (event_type == "restarted") {
        restarts_.Inc();
    }
    if (event_type == "restart_gave_up" && s->is(ServerStatus::kActive)) {
        s->set_status(ServerStatus::kError);
        s->body["fault"] =
            json::object{{"message", message.empty() ? "the instance kept crashing" : message}};
        ctx_.Touch(*s);
        writes.push_back(Model::Write(*s));
        events.push_back(ctx_.Event(kServer, s->id, s->project, "error",
                                    "server is ERROR: its instance kept crashing on host " + host));
    }
}

void Hosts::Enable(Call call, bool enable) {
    std::string why;
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * h, Find(call));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(call.body, {"reason"}));
        COGS_ASSIGN_OR_RETURN(auto reason,
                              in.OptionalString("reason", Text{.max_len = 255, .allow_empty = true}));
        why = reason.value_or("");
        return h;
    }();
    if (!found) return call.Fail(found.error());
    Res& h = **found;
    h.body["enabled"] = enable;
    h.body["disabled_reason"] = enable ? "" : why;
    if (enable) h.body["draining"] = false;
    ctx_.Touch(h);
    ctx_.placement.SetEnabled(h.id, enable);
    SaveAndAnswer(h, call,
                  {ctx_.Event(kHost, h.id, "", enable ? "enabled" : "disabled",
                              std::string(enable ? "enabled" : "disabled: no new servers go there") +
                                  (why.empty() ? "" : " (" + why + ")"),
                              "", call.traceparent)});
}

void Hosts::Drain(Call call) {
    std::optional<std::string> why;
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * h, Find(call));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(call.body, {"reason"}));
        COGS_ASSIGN_OR_RETURN(why, in.OptionalString("reason", Text{.max_len = 255, .allow_empty = true}));
        return h;
    }();
    if (!found) return call.Fail(found.error());
    Res& h = **found;
    const std::string name = h.id;
    h.body["enabled"] = false;
    h.body["draining"] = true;
    h.body["disabled_reason"] = why.value_or("drained");
    ctx_.Touch(h);
    ctx_.placement.SetEnabled(name, false);
    const size_t n = ctx_.model.Having(kServer, "host", name).size();
    SaveAndAnswer(h, call,
                  {ctx_.Event(kHost, name, "", "draining",
                              "draining: disabled; " + std::to_string(n) + " servers are migrated off it" +
                                  (why ? " (" + *why + ")" : ""),
                              "", call.traceparent)});
    healer_.Heal();
}

void Hosts::Delete(Call call) {
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * h, Find(call));
        COGS_TRY(Input::Parse(call.body, {}));
        // A server recorded on the host, or a claim naming it (a create or a move on its way there,
        // a move off it not yet settled): the host is still in use.
        if (const auto& on = ctx_.model.Having(kServer, "host", h->id); !on.empty()) {
            return MakeError(ErrorCode::kConflict,
                             "host " + h->id + " still has server " + (*on.begin())->id + " (and " +
                                 std::to_string(on.size() - 1) + " more): drain it first");
        }
        if (const int64_t claims = ctx_.placement.UsageOf(h->id).servers; claims > 0) {
            return MakeError(ErrorCode::kConflict,
                             "host " + h->id + " is claimed by " + std::to_string(claims) +
                                 " server(s) on their way there or off it: wait, or drain it");
        }
        return h;
    }();
    if (!found) return call.Fail(found.error());
    const std::string name = (*found)->id;
    std::vector<store::ResourceWrite> writes{Model::EraseWrite(kHost, name)};
    const std::vector<std::string> revoked = RevokeHostTokens(name, writes);
    ctx_.model.Erase(kHost, name);
    ctx_.placement.RemoveHost(name);
    monitor_.Forget(name);
    healer_.Forget(name);
    std::vector<store::EventRecord> events{ctx_.Event(
        kHost, name, "", "deleted",
        "deleted" + (revoked.empty() ? std::string()
                                     : ", revoking its " + std::to_string(revoked.size()) + " host token(s)"),
        "", call.traceparent)};
    ctx_.Persist(std::move(writes), std::move(events), [respond = call.respond](Status st) {
        respond(st ? http::Response{204, {}, "", "application/json", false} : wire::ApiError(st.error()));
    });
}

}  // namespace cogs::cloud
