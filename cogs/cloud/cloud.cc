#include "cogs/cloud/cloud.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <future>
#include <set>
#include <unordered_map>

#include "cogs/base/check.h"
#include "cogs/base/secret.h"
#include "cogs/cloud/internal/json_util.h"
#include "cogs/cloud/internal/liveness.h"
#include "cogs/cloud/internal/reconcile.h"
#include "cogs/cloud/internal/model.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/scheduler/placement.h"
#include "cogs/services/kit/http_client.h"

namespace cogs::cloud {

using namespace internal;  // NOLINT: the cloud's own internals
namespace asio = boost::asio;
using workflow::ActionCall;
using workflow::ActionReply;
using workflow::ServiceClient;
using Done = std::function<void(ApiAnswer)>;

namespace {

constexpr int64_t kIdempotencyTtlMs = 24 * 3600 * 1000;

std::string_view RoleName(Role r) {
    switch (r) {
        case Role::kAdmin: return "admin";
        case Role::kMember: return "member";
        case Role::kReader: return "reader";
    }
    return "reader";
}

std::optional<Role> ParseRole(std::string_view s) {
    if (s == "admin") return Role::kAdmin;
    if (s == "member") return Role::kMember;
    if (s == "reader") return Role::kReader;
    return std::nullopt;
}

ApiAnswer JsonAnswer(int status, const json::value& v) { return ApiAnswer{status, json::serialize(v), {}}; }

ApiAnswer Wrap(int status, std::string_view key, json::object o) {
    json::object w;
    w[key] = std::move(o);
    return JsonAnswer(status, w);
}

ApiAnswer ErrorAnswer(const Error& e, json::object details = {}) {
    json::object o;
    std::string code(ToString(e.code));
    int status = HttpStatus(e.code);
    if (e.code == ErrorCode::kPermissionDenied && e.message.starts_with("quota exceeded")) {
        // Model::Reserve's message: "quota exceeded: NAME limit L, in use U, requested R".
        code = "quota_exceeded";
        char name[32] = {};
        long long limit = 0, in_use = 0, requested = 0;
        if (std::sscanf(e.message.c_str(), "quota exceeded: %31s limit %lld, in use %lld, requested %lld", name, &limit,
                        &in_use, &requested) == 4) {
            details["resource"] = name;
            details["limit"] = limit;
            details["in_use"] = in_use;
            details["requested"] = requested;
        }
    }
    if (e.code == ErrorCode::kInvalidArgument && details.empty()) {
        // "field: what" names the field.
        auto colon = e.message.find(": ");
        if (colon != std::string::npos && e.message.find(' ') >= colon) {
            details["field"] = e.message.substr(0, colon);
        }
    }
    o["code"] = code;
    o["message"] = e.message;
    o["details"] = std::move(details);
    ApiAnswer a = JsonAnswer(status, o);
    if (e.code == ErrorCode::kResourceExhausted || e.code == ErrorCode::kUnavailable) {
        a.headers.emplace_back("retry-after", "1");
    }
    return a;
}

ApiAnswer NotFound(std::string_view what, const std::string& id) {
    return ErrorAnswer(Error(ErrorCode::kNotFound, std::string(what) + " " + id + " not found"));
}

// "http://host:port" -> host, port.
std::optional<std::pair<std::string, uint16_t>> ParseUrl(const std::string& url) {
    std::string_view s = url;
    if (!s.starts_with("http://")) {
        return std::nullopt;
    }
    s.remove_prefix(7);
    if (auto slash = s.find('/'); slash != std::string_view::npos) {
        s = s.substr(0, slash);
    }
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        return std::nullopt;
    }
    unsigned port = 0;
    auto p = s.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535) {
        return std::nullopt;
    }
    return std::make_pair(std::string(s.substr(0, colon)), static_cast<uint16_t>(port));
}

// The JSON key of a collection: "server-groups" lists as "server_groups".
std::string ListKey(std::string_view collection) {
    std::string k(collection);
    for (char& c : k) {
        c = c == '-' ? '_' : c;
    }
    return k;
}

// The event a workflow's start writes on its resource: "created" for a create, else
// "<action>_requested" ("delete_requested", "stop_requested", "attach_requested", ...).
std::string RequestedEventType(std::string_view workflow_type) {
    auto dot = workflow_type.rfind('.');
    std::string_view action = dot == std::string_view::npos ? workflow_type : workflow_type.substr(dot + 1);
    return action == "create" ? std::string("created") : std::string(action) + "_requested";
}

// Kinds whose records carry a status, sampled into cogs_resources{kind,status}.
constexpr std::string_view kStatusKinds[] = {kNetwork, kSubnet, kPort, kVolume, kServer};

// Builds of one server started again after its host failed during the build.
constexpr int64_t kMaxReschedules = 2;

// Evacuations of one server before it is left in ERROR (each may fail because its new host failed).
constexpr int64_t kMaxEvacuations = 3;

bool Transitional(std::string_view status) {
    return status == "BUILD" || status == "DELETING" || status == "STARTING" || status == "STOPPING" ||
           status == "REBUILD" || status == "MIGRATING" ||
           status == "REBOOT" || status == "creating" || status == "deleting" || status == "attaching" ||
           status == "detaching";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class Cloud::Impl : public std::enable_shared_from_this<Cloud::Impl> {
public:
    struct Move {
        std::string server_id, from_host, type;  // type: server.evacuate or server.migrate
    };
    Impl(asio::io_context& io, store::Store& store, workflow::Engine& engine,
         const workflow::Registry& registry, CloudOptions options)
        : io_(io),
          store_(store),
          engine_(engine),
          registry_(registry),
          options_(std::move(options)),
          placement_(scheduler::Ratios{options_.cpu_ratio, options_.ram_ratio, options_.disk_ratio}),
          hosts_(internal::LivenessOptions{options_.lease_ttl, options_.fence_window, options_.restart_grace,
                                           options_.max_down_fraction},
                 SteadyClock::now()),
          reconciler_(ReconcilerOptions{std::chrono::duration_cast<Millis>(options_.orphan_grace), 2}),
          liveness_timer_(io),
          reconcile_timer_(io),
          prune_(io),
          reads_(1) {
        observe::Metrics* m = options_.metrics;
        auto hosts = observe::GaugeOf(m, "cogs_hosts", "Hosts by state: up, suspect, down, disabled.");
        metrics_.hosts_up = hosts.With({{"state", "up"}});
        metrics_.hosts_suspect = hosts.With({{"state", "suspect"}});
        metrics_.hosts_down = hosts.With({{"state", "down"}});
        metrics_.hosts_disabled = hosts.With({{"state", "disabled"}});
        metrics_.placement_duration = observe::HistogramOf(m, "cogs_placement_duration_seconds",
                                                           "One placement decision (scheduler.claim).")
                                          .With({});
        auto placements = observe::CounterOf(m, "cogs_placements_total", "Placement decisions by outcome.");
        metrics_.placed = placements.With({{"outcome", "placed"}});
        metrics_.placement_failed = placements.With({{"outcome", "failed"}});
        metrics_.placement_failures =
            observe::CounterOf(m, "cogs_placement_failures_total",
                               "Failed placements by the filter that eliminated the last candidates.");
        metrics_.resources =
            observe::GaugeOf(m, "cogs_resources", "Desired-state records by kind and status.");
        metrics_.events = observe::CounterOf(m, "cogs_events_total", "Events recorded, by type.");
        metrics_.detections = observe::CounterOf(m, "cogs_heal_host_failures_total",
                                                 "Hosts found without a lease (up -> suspect or down).")
                                  .With({});
        metrics_.evacuation_paused =
            observe::GaugeOf(m, "cogs_heal_evacuation_paused",
                             "1 while most hosts are suspect or down at once and evacuation waits.")
                .With({});
        metrics_.moves_started = observe::CounterOf(m, "cogs_heal_moves_started_total",
                                                    "Evacuation and migration workflows started, by type.");
        metrics_.move_failures = observe::CounterOf(m, "cogs_heal_move_failures_total",
                                                    "Evacuations and migrations that ended in ERROR, by type.");
        auto moved = observe::CounterOf(m, "cogs_heal_moves_total", "Servers moved, by type.");
        metrics_.evacuated = moved.With({{"type", "server.evacuate"}});
        metrics_.migrated = moved.With({{"type", "server.migrate"}});
        metrics_.restarts = observe::CounterOf(m, "cogs_heal_instance_restarts_total",
                                               "Crashed instances their agent restarted (reported by heartbeat).")
                                .With({});
        metrics_.repairs = observe::CounterOf(m, "cogs_heal_repairs_total",
                                              "Reconciler actions started, by kind (drift and orphans).");
        metrics_.heal_duration =
            observe::HistogramOf(m, "cogs_heal_duration_seconds",
                                 "From a down host's last lease renewal to one of its servers ACTIVE elsewhere.")
                .With({});
    }

    ~Impl() { reads_.join(); }

    void Start() {
        engine_.OnFinished([weak = weak_from_this()](const workflow::FinishedEvent& ev) {
            if (auto self = weak.lock()) {
                self->OnFinished(ev);
            }
        });
        if (options_.metrics != nullptr) {
            // Render() runs on the io thread in cogsd (the /metrics handler), where the model lives.
            options_.metrics->OnCollect([weak = weak_from_this()] {
                if (auto self = weak.lock()) {
                    self->SampleGauges();
                }
            });
        }
        TickLiveness();
        ScheduleReconcile(options_.reconcile_every);
    }

    void Stop() {
        liveness_timer_.cancel();
        reconcile_timer_.cancel();
        prune_.cancel();
    }

    // ---- metrics sampled at scrape ----

    void SampleGauges() {
        int64_t up = 0, suspect = 0, down = 0, disabled = 0;
        for (const auto& [name, r] : model_.All(kHost)) {
            const bool enabled = !r.body.contains("enabled") || Bool(r.body, "enabled");
            const HostState st = hosts_.StateOf(name);
            (!enabled ? disabled : st == HostState::kUp ? up : st == HostState::kSuspect ? suspect : down) += 1;
        }
        metrics_.hosts_up.Set(static_cast<double>(up));
        metrics_.hosts_suspect.Set(static_cast<double>(suspect));
        metrics_.hosts_down.Set(static_cast<double>(down));
        metrics_.hosts_disabled.Set(static_cast<double>(disabled));
        std::map<std::pair<std::string, std::string>, int64_t> counts;
        for (auto kind : kStatusKinds) {
            for (const auto& [id, r] : model_.All(kind)) {
                ++counts[{std::string(kind), Str(r.body, "status")}];
            }
        }
        // A status that emptied since the last scrape shows 0 rather than its last value.
        for (auto& [key, gauge] : resource_gauges_) {
            if (!counts.contains(key)) gauge.Set(0);
        }
        for (const auto& [key, n] : counts) {
            auto it = resource_gauges_.find(key);
            if (it == resource_gauges_.end()) {
                it = resource_gauges_
                         .emplace(key, metrics_.resources.With({{"kind", key.first}, {"status", key.second}}))
                         .first;
            }
            it->second.Set(static_cast<double>(n));
        }
    }

    // ---- events ----

    static store::EventRecord Event(std::string_view kind, const std::string& id, const std::string& project,
                                    std::string type, std::string message, const std::string& workflow_id,
                                    const std::string& traceparent) {
        store::EventRecord e;
        e.time_ms = WallNowMs();
        e.project = project;
        e.resource_kind = std::string(kind);
        e.resource_id = id;
        e.workflow_id = workflow_id;
        e.type = std::move(type);
        e.message = std::move(message);
        e.trace_id = observe::TraceIdOf(traceparent);
        return e;
    }

    // Counts events once they are durable (cogs_events_total{type}).
    void CountEvents(const std::vector<store::EventRecord>& events) {
        for (const auto& e : events) {
            CountEvent(e.type);
        }
    }
    void CountEvent(const std::string& type) {
        auto it = event_counters_.find(type);
        if (it == event_counters_.end()) {
            it = event_counters_.emplace(type, metrics_.events.With({{"type", type}})).first;
        }
        it->second.Inc();
    }

    // Deletes events past their retention now and then, off the io thread.
    void SchedulePrune(Duration after) {
        prune_.expires_after(after);
        prune_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || ec) return;
            const int64_t older_than =
                WallNowMs() -
                std::chrono::duration_cast<std::chrono::milliseconds>(self->options_.event_retention).count();
            const int64_t keep = self->options_.event_max;
            self->OffThread(
                [self, older_than, keep] { return self->store_.PruneEvents(older_than, keep); },
                [self](Result<int64_t> pruned) {
                    if (!pruned) {
                        observe::Log("cloud").warn("pruning events failed: {}", pruned.error().ToString());
                    } else if (*pruned > 0) {
                        observe::Log("cloud").info("pruned {} events past their retention", *pruned);
                    }
                    self->SchedulePrune(self->options_.event_prune_every);
                });
        });
    }

    // ---- start-up ----

    Status Load() {
        auto all = store_.LoadResources();
        if (!all) {
            return MakeError(all.error());
        }
        std::vector<store::ResourceWrite> expired;
        const int64_t now = WallNowMs();
        for (auto& rec : *all) {
            boost::system::error_code ec;
            json::value v = json::parse(rec.body, ec);
            if (ec || !v.is_object()) {
                return MakeError(ErrorCode::kInternal, "stored " + rec.kind + " " + rec.id + " is not a JSON object");
            }
            Res r{rec.kind, rec.id, rec.project, std::move(v.get_object())};
            if (r.kind == kIdempotency && Int(r.body, "_at_ms") + kIdempotencyTtlMs < now) {
                expired.push_back(Model::EraseWrite(r.kind, r.id));
                continue;
            }
            Index(r);
            if (r.kind == kServer &&
                (Str(r.body, "status") == "REBUILD" || Str(r.body, "status") == "MIGRATING")) {
                moving_.insert(r.id);  // its workflow resumes (or is settled below)
            }
            model_.Put(std::move(r));
        }
        if (!expired.empty()) {
            PersistBlocking(std::move(expired));
        }
        // Resources whose workflow ended while we were down take its outcome now.
        std::vector<std::string> settle;
        for (auto kind : {kNetwork, kSubnet, kPort, kVolume, kServer}) {
            for (const auto& [id, r] : model_.All(kind)) {
                if (Transitional(Str(r.body, "status")) && !Str(r.body, "workflow_id").empty()) {
                    settle.push_back(Str(r.body, "workflow_id"));
                }
            }
        }
        for (const auto& ev : EndedWorkflows(settle)) {
            OnFinished(ev);
        }
        SchedulePrune(Duration(0));
        return Ok();
    }

    // The end of each of these workflows that has ended, as the engine reports one (blocking
    // store reads). A workflow still running is left out: the engine will report its end.
    std::vector<workflow::FinishedEvent> EndedWorkflows(const std::vector<std::string>& ids) const {
        std::vector<workflow::FinishedEvent> ended;
        for (const auto& wf_id : ids) {
            auto wf = store_.GetWorkflow(wf_id);
            if (!wf || !store::IsTerminal(wf->state)) {
                continue;
            }
            const workflow::Definition* def = registry_.Get(wf->type, wf->version);
            workflow::FinishedEvent ev;
            ev.id = wf->id;
            ev.type = wf->type;
            ev.state = wf->state;
            ev.reason = wf->reason;
            ev.finished_ms = wf->finished_ms;
            ev.project = wf->project;
            ev.trace = wf->trace;
            ev.resource_kind = wf->resource_kind;
            ev.resource_id = wf->resource_id;
            ev.input = wf->input;
            for (size_t i = 0; def != nullptr && i < wf->steps.size() && i < def->steps.size(); ++i) {
                if (!wf->steps[i].output.empty()) {
                    ev.outputs.emplace(def->steps[i].name, wf->steps[i].output);
                }
            }
            ended.push_back(std::move(ev));
        }
        return ended;
    }

    // Indexes a resource being loaded: tokens, quota usage, hosts and claims for placement.
    void Index(const Res& r) {
        if (r.kind == kToken) {
            model_.token_by_hash[Str(r.body, "_hash")] = r.id;
        } else if (r.kind == kHost) {
            placement_.UpsertHost(HostInfoOf(r));
            hosts_.Renewed(r.id, SteadyClock::now());  // a fresh lease: agents renew within it (and the restart grace)
        } else if (r.kind == kClaim) {
            placement_.AddClaim(scheduler::Claim{Str(r.body, "server_id"), Str(r.body, "host"), Int(r.body, "vcpus"),
                                                 Int(r.body, "ram_mb"), Int(r.body, "disk_gb"),
                                                 Str(r.body, "group_id")});
        }
        // Loaded usage counts even over the limit (limits may have been lowered since).
        model_.Add(r.project, Model::HeldBy(r));
    }

    Result<std::string> Bootstrap() {
        for (const auto& [id, t] : model_.All(kToken)) {
            if (Str(t.body, "role") == "admin") {
                return std::string();
            }
        }
        std::vector<store::ResourceWrite> writes;
        const Res* admin = model_.FindByName(kProject, "admin");
        std::string project_id;
        if (admin == nullptr) {
            Res p = NewProject("admin", "the operators' project");
            project_id = p.id;
            writes.push_back(Model::Write(p));
            model_.Put(std::move(p));
        } else {
            project_id = admin->id;
        }
        auto [token, secret] = NewToken(project_id, Role::kAdmin, "bootstrap", 0);
        writes.push_back(Model::Write(token));
        model_.token_by_hash[Str(token.body, "_hash")] = token.id;
        model_.Put(std::move(token));
        if (auto st = PersistBlocking(std::move(writes)); !st) {
            return MakeError(st.error());
        }
        return secret;
    }

    // ---- authentication ----

    Result<Principal> Authenticate(std::string_view bearer) const {
        if (bearer.empty()) {
            return MakeError(ErrorCode::kUnauthenticated, "missing token: send Authorization: Bearer <token>");
        }
        auto it = model_.token_by_hash.find(Sha256Hex(bearer));
        const Res* t = it == model_.token_by_hash.end() ? nullptr : model_.Find(kToken, it->second);
        if (t == nullptr) {
            return MakeError(ErrorCode::kUnauthenticated, "invalid token");
        }
        const int64_t expires = Int(t->body, "_expires_ms");
        if (expires != 0 && expires < WallNowMs()) {
            return MakeError(ErrorCode::kUnauthenticated, "token expired");
        }
        const Res* p = model_.Find(kProject, t->project);
        if (p == nullptr) {
            return MakeError(ErrorCode::kUnauthenticated, "the token's project no longer exists");
        }
        Principal who;
        who.token_id = t->id;
        who.project_id = t->project;
        who.project_name = Str(p->body, "name");
        who.role = ParseRole(Str(t->body, "role")).value_or(Role::kReader);
        return who;
    }

    // ---- routing ----

    void Handle(const Principal& who, ApiRequest req, Done done) {
        // Never inline: the caller may hold locks or be mid-parse.
        Done posted = [this, done = std::move(done)](ApiAnswer a) mutable {
            asio::post(io_, [done = std::move(done), a = std::move(a)]() mutable { done(std::move(a)); });
        };
        Route(who, req, posted);
    }

    void Route(const Principal& who, ApiRequest& req, const Done& done) {
        const auto& p = req.path;
        const std::string& m = req.method;
        if (p.empty()) {
            return done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1")));
        }
        const std::string& c = p[0];
        const size_t n = p.size();
        auto method_not_allowed = [&](std::string allowed) {
            ApiAnswer a = ErrorAnswer(Error(ErrorCode::kInvalidArgument, "method " + m + " not allowed: use " + allowed));
            a.status = 405;
            a.headers.emplace_back("allow", allowed);
            done(std::move(a));
        };
        if (c == "whoami" && n == 1) {
            if (m != "GET") return method_not_allowed("GET");
            json::object o{{"project_id", who.project_id},
                           {"project_name", who.project_name},
                           {"role", RoleName(who.role)},
                           {"token_id", who.token_id}};
            return done(JsonAnswer(200, o));
        }
        if (c == "workflows") {
            return RouteWorkflows(who, req, done);
        }
        if (c == "events" && n == 1) {
            if (m != "GET") return method_not_allowed("GET");
            return ListEvents(who, req.query, "", "", done);
        }
        if (c == "hosts") {
            return RouteHosts(who, req, done);
        }
        if (c == "projects" && n == 3 && p[2] == "quotas") {
            if (m == "GET") return GetQuotas(who, p[1], done);
            if (m == "PUT") return SetQuotas(who, p[1], req.body, done);
            return method_not_allowed("GET, PUT");
        }
        static const std::map<std::string, std::string_view, std::less<>> kCollections = {
            {"projects", kProject}, {"tokens", kToken},     {"flavors", kFlavor}, {"images", kImage},
            {"server-groups", kGroup}, {"networks", kNetwork}, {"subnets", kSubnet}, {"ports", kPort},
            {"volumes", kVolume},   {"servers", kServer}};
        auto it = kCollections.find(c);
        if (it == kCollections.end() || n > 3) {
            return done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1/" + c)));
        }
        const std::string_view kind = it->second;
        if (n == 1) {
            if (m == "GET") return List(who, c, kind, req.query, done);
            if (m == "POST") return Create(who, kind, req, done);
            return method_not_allowed("GET, POST");
        }
        const std::string& id = p[1];
        if (n == 2) {
            if (m == "GET") return Show(who, kind, id, done);
            if (m == "DELETE") return Delete(who, kind, id, req, done);
            return method_not_allowed("GET, DELETE");
        }
        if (p[2] == "events" &&
            (kind == kNetwork || kind == kSubnet || kind == kPort || kind == kVolume || kind == kServer)) {
            if (m != "GET") return method_not_allowed("GET");
            return ListEvents(who, req.query, kind, id, done);
        }
        if (m != "POST") return method_not_allowed("POST");
        return Act(who, kind, id, p[2], req, done);
    }

    // ---- events ----

    // GET /v1/events (kind and id empty: from the query) or GET /v1/<collection>/{id}/events. A
    // member sees its project's events only; a resource of another project, or one never seen,
    // answers 404 (a deleted resource keeps its history).
    void ListEvents(const Principal& who, const std::map<std::string, std::string>& query,
                    std::string_view kind, const std::string& id, const Done& done) {
        store::EventFilter f;
        f.resource_kind = std::string(kind);
        f.resource_id = id;
        const bool one_resource = !id.empty();
        for (const auto& [k, v] : query) {
            if (k == "resource_kind" && !one_resource) {
                f.resource_kind = v;
            } else if (k == "resource_id" && !one_resource) {
                f.resource_id = v;
            } else if (k == "workflow_id") {
                f.workflow_id = v;
            } else if (k == "project_id" && who.admin()) {
                f.project = v;
            } else if (k == "after" || k == "limit") {
                int64_t n = 0;
                auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                const bool bad = ec != std::errc() || end != v.data() + v.size();
                if (k == "after") {
                    if (bad || n < 0) {
                        return done(ErrorAnswer(FieldError("after", "must be an event seq >= 0")));
                    }
                    f.after_seq = n;
                } else {
                    if (bad || n < 1 || n > 1000) {
                        return done(ErrorAnswer(FieldError("limit", "must be an integer from 1 to 1000")));
                    }
                    f.limit = static_cast<int>(n);
                }
            } else {
                return done(ErrorAnswer(FieldError(k, "unknown query parameter")));
            }
        }
        if (!who.admin()) {
            f.project = who.project_id;
        }
        // A resource that exists answers its (maybe empty) history; one that does not must have
        // left some to be found.
        const Res* r = one_resource ? model_.Find(kind, id) : nullptr;
        const bool exists = r != nullptr && Visible(who, *r);
        if (r != nullptr && !exists) {
            return done(NotFound(kind, id));
        }
        OffThread([this, f] { return store_.ListEvents(f); },
                  [done, f, exists, one_resource, kind = std::string(kind),
                   id](Result<std::vector<store::EventRecord>> events) {
                      if (!events) return done(ErrorAnswer(events.error()));
                      if (one_resource && !exists && events->empty() && f.after_seq == 0) {
                          return done(NotFound(kind, id));
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
                      done(JsonAnswer(200, json::object{{"events", std::move(items)}, {"next_after", next}}));
                  });
    }

    // ---- generic read ----

    // Whether `who` may see `r` at all (else it is answered as not found).
    static bool Visible(const Principal& who, const Res& r) {
        if (who.admin()) {
            return true;
        }
        if (r.kind == kFlavor || r.kind == kImage) {
            return true;
        }
        if (r.kind == kProject) {
            return r.id == who.project_id;
        }
        if (r.kind == kToken) {
            return false;
        }
        return r.project == who.project_id;
    }

    static Status RequireWriter(const Principal& who) {
        if (who.role == Role::kReader) {
            return MakeError(ErrorCode::kPermissionDenied, "a reader token cannot change anything");
        }
        return Ok();
    }

    static Status RequireAdmin(const Principal& who) {
        if (!who.admin()) {
            return MakeError(ErrorCode::kPermissionDenied, "only an admin may do this");
        }
        return Ok();
    }

    json::object Present(const Res& r) const {
        json::object o = View(r);
        if (r.kind == kProject) {
            o.erase("quotas");
        }
        return o;
    }

    void Show(const Principal& who, std::string_view kind, const std::string& id, const Done& done) {
        const Res* r = model_.Find(kind, id);
        if (r == nullptr && (kind == kFlavor || kind == kImage)) {
            r = model_.FindByName(kind, id);
        }
        if (r == nullptr || !Visible(who, *r) || (kind == kToken && !who.admin())) {
            return done(NotFound(kind, id));
        }
        done(Wrap(200, kind, Present(*r)));
    }

    void List(const Principal& who, const std::string& collection, std::string_view kind,
              const std::map<std::string, std::string>& query, const Done& done) {
        if (kind == kToken) {
            if (auto st = RequireAdmin(who); !st) return done(ErrorAnswer(st.error()));
        }
        int limit = 100;
        if (auto q = query.find("limit"); q != query.end()) {
            auto [end, ec] = std::from_chars(q->second.data(), q->second.data() + q->second.size(), limit);
            if (ec != std::errc() || end != q->second.data() + q->second.size() || limit < 1 || limit > 1000) {
                return done(ErrorAnswer(FieldError("limit", "must be an integer from 1 to 1000")));
            }
        }
        static const std::set<std::string> kFilters = {"limit", "marker", "name", "status", "host", "project_id",
                                                       "network_id", "server_id"};
        for (const auto& [k, v] : query) {
            if (!kFilters.contains(k)) {
                return done(ErrorAnswer(FieldError(k, "unknown query parameter")));
            }
        }
        auto get = [&](const char* k) {
            auto q = query.find(k);
            return q == query.end() ? std::string() : q->second;
        };
        const std::string marker = get("marker"), name = get("name"), status = get("status"), host = get("host"),
                          project = get("project_id"), network = get("network_id"), server = get("server_id");
        const auto& all = model_.All(kind);
        json::array items;
        std::string next;
        for (auto it = marker.empty() ? all.begin() : all.upper_bound(marker); it != all.end(); ++it) {
            const Res& r = it->second;
            if (!Visible(who, r)) continue;
            if (!name.empty() && Str(r.body, "name") != name) continue;
            if (!status.empty() && Str(r.body, "status") != status) continue;
            if (!host.empty() && Str(r.body, "host") != host) continue;
            if (!project.empty() && r.project != project && !(kind == kProject && r.id == project)) continue;
            if (!network.empty() && Str(r.body, "network_id") != network) continue;
            if (!server.empty() && Str(r.body, "server_id") != server && Str(r.body, "device_id") != server) continue;
            if (static_cast<int>(items.size()) == limit) {
                next = items.back().as_object().at("id").as_string().c_str();
                break;
            }
            items.push_back(Present(r));
        }
        json::object o;
        o[ListKey(collection)] = std::move(items);
        if (!next.empty()) {
            o["next_marker"] = next;
        }
        done(JsonAnswer(200, o));
    }

    // ---- generic create / delete / act ----

    void Create(const Principal& who, std::string_view kind, ApiRequest& req, const Done& done) {
        if (auto st = RequireWriter(who); !st) return done(ErrorAnswer(st.error()));
        // Idempotency-Key: the same key and body answer the first answer again.
        std::string idem_id;
        std::string req_hash;
        if (!req.idempotency_key.empty()) {
            if (req.idempotency_key.size() > 255) {
                return done(ErrorAnswer(FieldError("Idempotency-Key", "longer than 255 characters")));
            }
            idem_id = who.project_id + "/" + req.idempotency_key;
            req_hash = Sha256Hex(std::string(kind) + "\n" + req.body);
            if (const Res* prior = model_.Find(kIdempotency, idem_id)) {
                if (Str(prior->body, "_hash") != req_hash) {
                    return done(ErrorAnswer(Error(ErrorCode::kConflict,
                                                  "Idempotency-Key reused with a different request")));
                }
                const Res* r = model_.Find(Str(prior->body, "kind"), Str(prior->body, "id"));
                if (r == nullptr) {
                    return done(NotFound(Str(prior->body, "kind"), Str(prior->body, "id")));
                }
                return done(Wrap(static_cast<int>(Int(prior->body, "status")), r->kind, Present(*r)));
            }
        }
        auto parsed = Parse(kind, req.body);
        if (!parsed) return done(ErrorAnswer(parsed.error()));
        Creation c{who, std::move(*parsed), {}, req.traceparent};
        if (!idem_id.empty()) {
            c.idempotency = [idem_id, req_hash, project = who.project_id](const Res& made, int status) {
                Res rec{std::string(kIdempotency), idem_id, project, {}};
                rec.body["_hash"] = req_hash;
                rec.body["kind"] = made.kind;
                rec.body["id"] = made.id;
                rec.body["status"] = status;
                rec.body["_at_ms"] = WallNowMs();
                return rec;
            };
        }
        if (kind == kProject) return CreateProject(c, done);
        if (kind == kToken) return CreateToken(c, done);
        if (kind == kFlavor) return CreateFlavor(c, done);
        if (kind == kImage) return CreateImage(c, done);
        if (kind == kGroup) return CreateGroup(c, done);
        if (kind == kNetwork) return CreateNetwork(c, done);
        if (kind == kSubnet) return CreateSubnet(c, done);
        if (kind == kPort) return CreatePort(c, done);
        if (kind == kVolume) return CreateVolume(c, done);
        return CreateServer(c, done);
    }

    static Result<json::object> Parse(std::string_view kind, const std::string& body) {
        if (kind == kProject) return ParseBody(body, {"name", "description"});
        if (kind == kToken) return ParseBody(body, {"project_id", "role", "name", "expires_in_s"});
        if (kind == kFlavor) return ParseBody(body, {"name", "vcpus", "ram_mb", "disk_gb", "traits"});
        if (kind == kImage) return ParseBody(body, {"name", "os", "min_disk_gb"});
        if (kind == kGroup) return ParseBody(body, {"name", "policy", "project_id"});
        if (kind == kNetwork) return ParseBody(body, {"name", "project_id"});
        if (kind == kSubnet) return ParseBody(body, {"name", "network_id", "cidr", "gateway_ip", "allocation_pools"});
        if (kind == kPort) return ParseBody(body, {"name", "network_id", "fixed_ip"});
        if (kind == kVolume) return ParseBody(body, {"name", "size_gb", "project_id"});
        return ParseBody(body, {"name", "flavor", "image", "network_id", "volume_ids", "server_group_id",
                                "availability_zone", "weigher", "project_id"});
    }

    struct Creation {
        Principal who;
        json::object body;
        std::function<Res(const Res&, int)> idempotency;  // empty: no Idempotency-Key
        std::string traceparent;
    };

    // The project a new resource belongs to: the caller's, or (admins only) the body's project_id.
    Result<std::string> OwnerOf(const Creation& c) const {
        auto p = OptionalString(c.body, "project_id");
        if (!p) return MakeError(p.error());
        if (!*p) return c.who.project_id;
        if (!c.who.admin() && **p != c.who.project_id) {
            return MakeError(FieldError("project_id", "only an admin may create in another project"));
        }
        if (model_.Find(kProject, **p) == nullptr) {
            return MakeError(FieldError("project_id", "no project " + **p));
        }
        return **p;
    }

    static Res NewRes(std::string_view kind, std::string project) {
        Res r{std::string(kind), NewUuid(), std::move(project), {}};
        r.body["id"] = r.id;
        if (!r.project.empty()) {
            r.body["project_id"] = r.project;
        }
        const std::string now = Rfc3339(WallNowMs());
        r.body["created_at"] = now;
        r.body["updated_at"] = now;
        return r;
    }

    static void Touch(Res& r) {
        const int64_t now = WallNowMs();
        r.body["updated_at"] = Rfc3339(now);
        r.body["_changed_ms"] = now;  // for the reconciler: an inventory read before it is no evidence
    }

    // Saves catalog records (no workflow) and answers once durable.
    void SaveAndAnswer(const Creation& c, std::vector<Res> made, int status, const Done& done) {
        std::vector<store::ResourceWrite> writes;
        for (const Res& r : made) {
            writes.push_back(Model::Write(r));
        }
        if (c.idempotency) {
            Res idem = c.idempotency(made.front(), status);
            writes.push_back(Model::Write(idem));
            model_.Put(std::move(idem));
        }
        ApiAnswer answer = Wrap(status, made.front().kind, Present(made.front()));
        for (Res& r : made) {
            model_.Put(std::move(r));
        }
        Persist(std::move(writes), [done, answer = std::move(answer)](Status st) mutable {
            done(st ? std::move(answer) : ErrorAnswer(st.error()));
        });
    }

    // ---- catalog: projects, tokens, flavors, images, groups ----

    static Res NewProject(const std::string& name, const std::string& description) {
        Res p = NewRes(kProject, "");
        p.project = p.id;  // a project owns itself (listing by project finds it)
        p.body["name"] = name;
        p.body["description"] = description;
        return p;
    }

    std::pair<Res, std::string> NewToken(const std::string& project, Role role, const std::string& name,
                                         int64_t expires_in_s) {
        Res t = NewRes(kToken, project);
        std::string secret = "cogs_" + RandomHex(24);
        t.body["role"] = RoleName(role);
        t.body["name"] = name;
        t.body["_hash"] = Sha256Hex(secret);
        if (expires_in_s > 0) {
            const int64_t at = WallNowMs() + expires_in_s * 1000;
            t.body["_expires_ms"] = at;
            t.body["expires_at"] = Rfc3339(at);
        }
        return {std::move(t), std::move(secret)};
    }

    void CreateProject(const Creation& c, const Done& done) {
        if (auto st = RequireAdmin(c.who); !st) return done(ErrorAnswer(st.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto desc = OptionalString(c.body, "description", 1024);
        if (!desc) return done(ErrorAnswer(desc.error()));
        if (model_.FindByName(kProject, *name) != nullptr) {
            return done(ErrorAnswer(Error(ErrorCode::kAlreadyExists, "a project named " + *name + " exists")));
        }
        SaveAndAnswer(c, {NewProject(*name, desc->value_or(""))}, 201, done);
    }

    void CreateToken(const Creation& c, const Done& done) {
        if (auto st = RequireAdmin(c.who); !st) return done(ErrorAnswer(st.error()));
        auto project = RequiredString(c.body, "project_id");
        if (!project) return done(ErrorAnswer(project.error()));
        const Res* p = model_.Find(kProject, *project);
        if (p == nullptr) p = model_.FindByName(kProject, *project);
        if (p == nullptr) return done(ErrorAnswer(FieldError("project_id", "no project " + *project)));
        auto role_name = RequiredString(c.body, "role");
        if (!role_name) return done(ErrorAnswer(role_name.error()));
        auto role = ParseRole(*role_name);
        if (!role) return done(ErrorAnswer(FieldError("role", "must be admin, member or reader")));
        auto name = OptionalString(c.body, "name");
        if (!name) return done(ErrorAnswer(name.error()));
        auto ttl = OptionalInt(c.body, "expires_in_s", 1, 10LL * 365 * 24 * 3600);
        if (!ttl) return done(ErrorAnswer(ttl.error()));
        auto [token, secret] = NewToken(p->id, *role, name->value_or(""), ttl->value_or(0));
        model_.token_by_hash[Str(token.body, "_hash")] = token.id;
        // The secret is in this answer only.
        json::object view = Present(token);
        view["secret"] = secret;
        std::vector<store::ResourceWrite> writes{Model::Write(token)};
        if (c.idempotency) {
            // A replay cannot show the secret again: it is not stored.
            Res idem = c.idempotency(token, 201);
            writes.push_back(Model::Write(idem));
            model_.Put(std::move(idem));
        }
        model_.Put(std::move(token));
        Persist(std::move(writes), [done, view = std::move(view)](Status st) mutable {
            done(st ? Wrap(201, "token", std::move(view)) : ErrorAnswer(st.error()));
        });
    }

    void CreateFlavor(const Creation& c, const Done& done) {
        if (auto st = RequireAdmin(c.who); !st) return done(ErrorAnswer(st.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto vcpus = RequiredInt(c.body, "vcpus", 1, 1024);
        if (!vcpus) return done(ErrorAnswer(vcpus.error()));
        auto ram = RequiredInt(c.body, "ram_mb", 1, 16 * 1024 * 1024);
        if (!ram) return done(ErrorAnswer(ram.error()));
        auto disk = RequiredInt(c.body, "disk_gb", 0, 1024 * 1024);
        if (!disk) return done(ErrorAnswer(disk.error()));
        auto traits = OptionalStringList(c.body, "traits");
        if (!traits) return done(ErrorAnswer(traits.error()));
        if (model_.FindByName(kFlavor, *name) != nullptr) {
            return done(ErrorAnswer(Error(ErrorCode::kAlreadyExists, "a flavor named " + *name + " exists")));
        }
        Res f = NewRes(kFlavor, "");
        f.body["name"] = *name;
        f.body["vcpus"] = *vcpus;
        f.body["ram_mb"] = *ram;
        f.body["disk_gb"] = *disk;
        f.body["traits"] = ToArray(*traits);
        SaveAndAnswer(c, {std::move(f)}, 201, done);
    }

    void CreateImage(const Creation& c, const Done& done) {
        if (auto st = RequireAdmin(c.who); !st) return done(ErrorAnswer(st.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto os = OptionalString(c.body, "os", 64);
        if (!os) return done(ErrorAnswer(os.error()));
        auto min_disk = OptionalInt(c.body, "min_disk_gb", 0, 1024 * 1024);
        if (!min_disk) return done(ErrorAnswer(min_disk.error()));
        if (model_.FindByName(kImage, *name) != nullptr) {
            return done(ErrorAnswer(Error(ErrorCode::kAlreadyExists, "an image named " + *name + " exists")));
        }
        Res i = NewRes(kImage, "");
        i.body["name"] = *name;
        i.body["os"] = os->value_or("linux");
        i.body["min_disk_gb"] = min_disk->value_or(0);
        SaveAndAnswer(c, {std::move(i)}, 201, done);
    }

    void CreateGroup(const Creation& c, const Done& done) {
        auto project = OwnerOf(c);
        if (!project) return done(ErrorAnswer(project.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto policy = RequiredString(c.body, "policy");
        if (!policy) return done(ErrorAnswer(policy.error()));
        if (*policy != "affinity" && *policy != "anti-affinity") {
            return done(ErrorAnswer(FieldError("policy", "must be affinity or anti-affinity")));
        }
        Res g = NewRes(kGroup, *project);
        g.body["name"] = *name;
        g.body["policy"] = *policy;
        SaveAndAnswer(c, {std::move(g)}, 201, done);
    }

    // ---- infrastructure: created by workflows ----

    // Commits the new records with their workflow in one transaction, then answers 202. On a
    // refused start the records leave memory again and `undo` gives back what was reserved. The
    // workflow works on `shown`: its progress goes to that resource's events, starting with
    // "created" / "<action>_requested", committed with the workflow.
    void StartWorkflow(const Creation* c, std::string type, json::object input, std::vector<Res*> changed,
                       std::vector<store::ResourceWrite> extra, std::function<void()> undo, const Res& shown,
                       const std::string& project, const std::string& traceparent, const Done& done) {
        workflow::StartRequest s;
        s.id = NewUuid();
        s.type = std::move(type);
        s.project = project;
        s.traceparent = traceparent;
        s.resource_kind = shown.kind;
        s.resource_id = shown.id;
        const std::string name = Str(shown.body, "name");
        s.events.push_back(
            Event(shown.kind, shown.id, shown.project, RequestedEventType(s.type),
                  shown.kind + (name.empty() ? "" : " " + name) + ": workflow " + s.type + " started", s.id,
                  traceparent));
        for (Res* r : changed) {
            r->body["workflow_id"] = s.id;
            Touch(*r);
            s.resources.push_back(Model::Write(*r));
        }
        for (auto& w : extra) {
            s.resources.push_back(std::move(w));
        }
        std::string idem_id;
        if (c != nullptr && c->idempotency) {
            Res idem = c->idempotency(shown, 202);
            idem_id = idem.id;
            s.resources.push_back(Model::Write(idem));
            model_.Put(std::move(idem));
        }
        s.input = json::serialize(input);
        std::string kind = shown.kind;
        std::string id = shown.id;
        std::vector<store::EventRecord> events = s.events;
        observe::LogScope scope({observe::TraceIdOf(traceparent), s.id, id});
        observe::Log("cloud").info("{} {}: starting workflow {}", kind, id, s.type);
        engine_.Start(std::move(s), [this, kind, id, idem_id, undo = std::move(undo), done,
                                     events = std::move(events)](Result<std::string> r) {
            if (!r) {
                if (!idem_id.empty()) model_.Erase(kIdempotency, idem_id);
                undo();
                // Overload is answered 429 (counted in cogs_http_requests_total{code="429"}): no line each.
                observe::Log("cloud").log(r.error().code == ErrorCode::kResourceExhausted ? spdlog::level::debug
                                                                                          : spdlog::level::warn,
                                          "{} {}: workflow refused: {}", kind, id, r.error().ToString());
                return done(ErrorAnswer(r.error()));
            }
            CountEvents(events);
            const Res* now = model_.Find(kind, id);
            if (now == nullptr) {
                return done(NotFound(kind, id));
            }
            done(Wrap(202, kind, Present(*now)));
        });
    }

    void CreateNetwork(const Creation& c, const Done& done) {
        auto project = OwnerOf(c);
        if (!project) return done(ErrorAnswer(project.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        Res n = NewRes(kNetwork, *project);
        n.body["name"] = *name;
        n.body["status"] = "BUILD";
        Res& stored = model_.Put(std::move(n));
        const std::string id = stored.id;
        json::object input{{"network_id", id}, {"project_id", *project}, {"name", *name}};
        StartWorkflow(&c, "network.create", std::move(input), {&stored}, {},
                      [this, id] { model_.Erase(kNetwork, id); }, stored, *project, c.traceparent, done);
    }

    // The body's network_id: one the caller may use (else 400 naming the field), ACTIVE (else 409).
    Result<const Res*> ActiveNetwork(const Creation& c) const {
        auto net_id = RequiredString(c.body, "network_id");
        if (!net_id) return MakeError(net_id.error());
        const Res* net = model_.Find(kNetwork, *net_id);
        if (net == nullptr || !Visible(c.who, *net)) {
            return MakeError(FieldError("network_id", "no network " + *net_id));
        }
        if (Str(net->body, "status") != "ACTIVE") {
            return MakeError(ErrorCode::kConflict,
                             "network " + *net_id + " is " + Str(net->body, "status") + ", not ACTIVE");
        }
        return net;
    }

    void CreateSubnet(const Creation& c, const Done& done) {
        auto found = ActiveNetwork(c);
        if (!found) return done(ErrorAnswer(found.error()));
        const Res* net = *found;
        const std::string* net_id = &net->id;
        auto cidr = RequiredString(c.body, "cidr", 64);
        if (!cidr) return done(ErrorAnswer(cidr.error()));
        auto name = OptionalString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto gateway = OptionalString(c.body, "gateway_ip", 64);
        if (!gateway) return done(ErrorAnswer(gateway.error()));
        const json::value* pools = c.body.if_contains("allocation_pools");
        if (pools != nullptr && !pools->is_array() && !pools->is_null()) {
            return done(ErrorAnswer(FieldError("allocation_pools", "must be an array of {start, end}")));
        }
        Res s = NewRes(kSubnet, net->project);
        s.body["name"] = name->value_or("");
        s.body["network_id"] = *net_id;
        s.body["cidr"] = *cidr;
        s.body["status"] = "BUILD";
        json::object request{{"id", s.id}, {"network_id", *net_id}, {"cidr", *cidr}, {"project_id", net->project},
                             {"name", name->value_or("")}};
        if (*gateway) request["gateway_ip"] = **gateway;
        if (pools != nullptr && pools->is_array()) request["allocation_pools"] = *pools;
        Res& stored = model_.Put(std::move(s));
        const std::string id = stored.id;
        json::object input{{"subnet_id", id}, {"request", std::move(request)}};
        StartWorkflow(&c, "subnet.create", std::move(input), {&stored}, {}, [this, id] { model_.Erase(kSubnet, id); },
                      stored, stored.project, c.traceparent, done);
    }

    void CreatePort(const Creation& c, const Done& done) {
        auto found = ActiveNetwork(c);
        if (!found) return done(ErrorAnswer(found.error()));
        const Res* net = *found;
        const std::string* net_id = &net->id;
        auto name = OptionalString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto fixed_ip = OptionalString(c.body, "fixed_ip", 64);
        if (!fixed_ip) return done(ErrorAnswer(fixed_ip.error()));
        const std::string project = net->project;
        if (auto st = model_.Reserve(project, Amount{.ports = 1}); !st) return done(ErrorAnswer(st.error()));
        Res port = NewPortRecord(project, *net_id, name->value_or(""), "");
        json::object request{{"id", port.id}, {"network_id", *net_id}, {"project_id", project},
                             {"name", name->value_or("")}};
        if (*fixed_ip) request["fixed_ip"] = **fixed_ip;
        Res& stored = model_.Put(std::move(port));
        const std::string id = stored.id;
        json::object input{{"port_id", id}, {"request", std::move(request)}};
        StartWorkflow(&c, "port.create", std::move(input), {&stored}, {},
                      [this, id, project] {
                          model_.Erase(kPort, id);
                          model_.Release(project, Amount{.ports = 1});
                      },
                      stored, project, c.traceparent, done);
    }

    static Res NewPortRecord(const std::string& project, const std::string& network, const std::string& name,
                             const std::string& device) {
        Res p = NewRes(kPort, project);
        p.body["name"] = name;
        p.body["network_id"] = network;
        p.body["subnet_id"] = "";
        p.body["mac_address"] = "";
        p.body["fixed_ip"] = "";
        p.body["device_id"] = device;
        p.body["status"] = "BUILD";
        p.body["_quota"] = true;
        return p;
    }

    void CreateVolume(const Creation& c, const Done& done) {
        auto project = OwnerOf(c);
        if (!project) return done(ErrorAnswer(project.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto size = RequiredInt(c.body, "size_gb", 1, 16384);
        if (!size) return done(ErrorAnswer(size.error()));
        if (auto st = model_.Reserve(*project, Amount{.volumes = 1, .volume_gb = *size}); !st) {
            return done(ErrorAnswer(st.error()));
        }
        Res v = NewRes(kVolume, *project);
        v.body["name"] = *name;
        v.body["size_gb"] = *size;
        v.body["status"] = "creating";
        v.body["server_id"] = "";
        v.body["device"] = "";
        v.body["_quota"] = true;
        Res& stored = model_.Put(std::move(v));
        const std::string id = stored.id;
        const int64_t gb = *size;
        json::object input{{"volume_id", id}, {"project_id", *project}, {"name", *name}, {"size_gb", gb}};
        StartWorkflow(&c, "volume.create", std::move(input), {&stored}, {},
                      [this, id, p = *project, gb] {
                          model_.Erase(kVolume, id);
                          model_.Release(p, Amount{.volumes = 1, .volume_gb = gb});
                      },
                      stored, *project, c.traceparent, done);
    }

    void CreateServer(const Creation& c, const Done& done) {
        auto project = OwnerOf(c);
        if (!project) return done(ErrorAnswer(project.error()));
        auto name = RequiredString(c.body, "name", 64);
        if (!name) return done(ErrorAnswer(name.error()));
        auto flavor_ref = RequiredString(c.body, "flavor");
        if (!flavor_ref) return done(ErrorAnswer(flavor_ref.error()));
        const Res* flavor = model_.Find(kFlavor, *flavor_ref);
        if (flavor == nullptr) flavor = model_.FindByName(kFlavor, *flavor_ref);
        if (flavor == nullptr) return done(ErrorAnswer(FieldError("flavor", "no flavor " + *flavor_ref)));
        auto image_ref = RequiredString(c.body, "image");
        if (!image_ref) return done(ErrorAnswer(image_ref.error()));
        const Res* image = model_.Find(kImage, *image_ref);
        if (image == nullptr) image = model_.FindByName(kImage, *image_ref);
        if (image == nullptr) return done(ErrorAnswer(FieldError("image", "no image " + *image_ref)));
        auto net_id = RequiredString(c.body, "network_id");
        if (!net_id) return done(ErrorAnswer(net_id.error()));
        const Res* net = model_.Find(kNetwork, *net_id);
        if (net == nullptr || net->project != *project) {
            return done(ErrorAnswer(FieldError("network_id", "no network " + *net_id)));
        }
        if (Str(net->body, "status") != "ACTIVE") {
            return done(ErrorAnswer(Error(ErrorCode::kConflict, "network " + *net_id + " is not ACTIVE")));
        }
        auto volume_ids = OptionalStringList(c.body, "volume_ids", 16);
        if (!volume_ids) return done(ErrorAnswer(volume_ids.error()));
        std::set<std::string> unique(volume_ids->begin(), volume_ids->end());
        if (unique.size() != volume_ids->size()) {
            return done(ErrorAnswer(FieldError("volume_ids", "lists a volume twice")));
        }
        for (const auto& vid : *volume_ids) {
            const Res* v = model_.Find(kVolume, vid);
            if (v == nullptr || v->project != *project) {
                return done(ErrorAnswer(FieldError("volume_ids", "no volume " + vid)));
            }
            if (Str(v->body, "status") != "available") {
                return done(ErrorAnswer(Error(ErrorCode::kConflict,
                                              "volume " + vid + " is " + Str(v->body, "status") + ", not available")));
            }
        }
        auto group_id = OptionalString(c.body, "server_group_id");
        if (!group_id) return done(ErrorAnswer(group_id.error()));
        std::string policy = "none";
        if (*group_id) {
            const Res* g = model_.Find(kGroup, **group_id);
            if (g == nullptr || g->project != *project) {
                return done(ErrorAnswer(FieldError("server_group_id", "no server group " + **group_id)));
            }
            policy = Str(g->body, "policy");
        }
        auto az = OptionalString(c.body, "availability_zone", 64);
        if (!az) return done(ErrorAnswer(az.error()));
        auto weigher = OptionalString(c.body, "weigher");
        if (!weigher) return done(ErrorAnswer(weigher.error()));
        if (*weigher && **weigher != "spread" && **weigher != "pack") {
            return done(ErrorAnswer(FieldError("weigher", "must be spread or pack")));
        }
        const int64_t vcpus = Int(flavor->body, "vcpus");
        const int64_t ram = Int(flavor->body, "ram_mb");
        const int64_t disk = Int(flavor->body, "disk_gb");
        const Amount amount{.servers = 1, .vcpus = vcpus, .ram_mb = ram, .ports = 1};
        if (auto st = model_.Reserve(*project, amount); !st) return done(ErrorAnswer(st.error()));

        Res server = NewRes(kServer, *project);
        Res port = NewPortRecord(*project, *net_id, "", server.id);
        // The port's quota is the server's: Amount above counted it.
        auto& b = server.body;
        b["name"] = *name;
        b["status"] = "BUILD";
        b["flavor_id"] = flavor->id;
        b["flavor"] = Str(flavor->body, "name");
        b["image_id"] = image->id;
        b["network_id"] = *net_id;
        b["host"] = "";
        b["availability_zone"] = az->value_or("");
        b["port_id"] = port.id;
        b["ip_address"] = "";
        b["mac_address"] = "";
        b["volume_ids"] = ToArray(*volume_ids);
        b["server_group_id"] = group_id->value_or("");
        b["_vcpus"] = vcpus;
        b["_ram_mb"] = ram;
        b["_disk_gb"] = disk;
        b["_quota"] = true;
        const std::string server_id = server.id;
        const std::string port_id = port.id;
        json::object input{{"server_id", server_id},
                           {"project_id", *project},
                           {"name", *name},
                           {"port_id", port_id},
                           {"network_id", *net_id},
                           {"vcpus", vcpus},
                           {"ram_mb", ram},
                           {"disk_gb", disk},
                           {"image_id", image->id},
                           {"volume_ids", ToArray(*volume_ids)},
                           {"availability_zone", az->value_or("")},
                           {"traits", flavor->body.contains("traits") ? flavor->body.at("traits") : json::array()},
                           {"group_id", group_id->value_or("")},
                           {"policy", policy},
                           {"weigher", weigher->value_or("spread")}};
        std::vector<Res*> changed;
        Res& stored_server = model_.Put(std::move(server));
        changed.push_back(&stored_server);
        changed.push_back(&model_.Put(std::move(port)));
        for (const auto& vid : *volume_ids) {
            Res* v = model_.Find(kVolume, vid);
            v->body["status"] = "attaching";
            v->body["server_id"] = server_id;
            changed.push_back(v);
        }
        StartWorkflow(&c, "server.create", std::move(input), changed, {},
                      [this, server_id, port_id, p = *project, amount, vols = *volume_ids] {
                          model_.Erase(kServer, server_id);
                          model_.Erase(kPort, port_id);
                          model_.Release(p, amount);
                          for (const auto& vid : vols) {
                              if (Res* v = model_.Find(kVolume, vid)) {
                                  v->body["status"] = "available";
                                  v->body["server_id"] = "";
                              }
                          }
                      },
                      stored_server, *project, c.traceparent, done);
    }

    void Delete(const Principal& who, std::string_view kind, const std::string& id, const ApiRequest& req,
                const Done& done) {
        if (auto st = RequireWriter(who); !st) return done(ErrorAnswer(st.error()));
        Res* r = model_.Find(kind, id);
        if (r == nullptr && (kind == kFlavor || kind == kImage)) {
            r = const_cast<Res*>(model_.FindByName(kind, id));
        }
        if (r == nullptr || !Visible(who, *r) || (kind == kToken && !who.admin())) {
            return done(NotFound(kind, id));
        }
        if (kind == kProject || kind == kToken || kind == kFlavor || kind == kImage) {
            if (auto st = RequireAdmin(who); !st) return done(ErrorAnswer(st.error()));
        }
        if (kind == kProject) {
            for (auto k : {kToken, kGroup, kNetwork, kSubnet, kPort, kVolume, kServer}) {
                for (const auto& [oid, o] : model_.All(k)) {
                    if (o.project == r->id) {
                        return done(ErrorAnswer(Error(ErrorCode::kConflict, "project " + r->id + " still owns " +
                                                                                std::string(k) + " " + oid)));
                    }
                }
            }
        }
        if (kind == kGroup) {
            for (const auto& [sid, s] : model_.All(kServer)) {
                if (Str(s.body, "server_group_id") == r->id) {
                    return done(ErrorAnswer(Error(ErrorCode::kConflict, "server group has member " + sid)));
                }
            }
        }
        if (kind == kProject || kind == kToken || kind == kFlavor || kind == kImage || kind == kGroup) {
            if (kind == kToken) {
                model_.token_by_hash.erase(Str(r->body, "_hash"));
            }
            std::string rid = r->id;
            model_.Erase(kind, rid);
            return Persist({Model::EraseWrite(kind, rid)}, [done](Status st) {
                done(st ? ApiAnswer{204, "", {}} : ErrorAnswer(st.error()));
            });
        }
        const std::string status = Str(r->body, "status");
        if (Transitional(status)) {
            return done(ErrorAnswer(Error(ErrorCode::kConflict, std::string(kind) + " " + id + " is " + status)));
        }
        r->body["_prev_status"] = status;
        if (kind == kNetwork) {
            for (auto k : {kSubnet, kPort}) {
                for (const auto& [oid, o] : model_.All(k)) {
                    if (Str(o.body, "network_id") == id) {
                        return done(ErrorAnswer(Error(ErrorCode::kConflict, "network " + id + " still has " +
                                                                                std::string(k) + " " + oid)));
                    }
                }
            }
            r->body["status"] = "DELETING";
            return StartWorkflow(nullptr, "network.delete", json::object{{"network_id", id}}, {r}, {},
                                 [this, id, status] { Revert(kNetwork, id, status); }, *r, r->project,
                                 req.traceparent, done);
        }
        if (kind == kSubnet) {
            for (const auto& [oid, o] : model_.All(kPort)) {
                if (Str(o.body, "subnet_id") == id) {
                    return done(ErrorAnswer(Error(ErrorCode::kConflict, "subnet " + id + " still has port " + oid)));
                }
            }
            r->body["status"] = "DELETING";
            return StartWorkflow(nullptr, "subnet.delete", json::object{{"subnet_id", id}}, {r}, {},
                                 [this, id, status] { Revert(kSubnet, id, status); }, *r, r->project,
                                 req.traceparent, done);
        }
        if (kind == kPort) {
            if (!Str(r->body, "device_id").empty()) {
                return done(ErrorAnswer(Error(ErrorCode::kConflict,
                                              "port " + id + " belongs to server " + Str(r->body, "device_id"))));
            }
            r->body["status"] = "DELETING";
            return StartWorkflow(nullptr, "port.delete", json::object{{"port_id", id}}, {r}, {},
                                 [this, id, status] { Revert(kPort, id, status); }, *r, r->project,
                                 req.traceparent, done);
        }
        if (kind == kVolume) {
            if (status == "in-use") {
                return done(ErrorAnswer(Error(ErrorCode::kConflict, "volume " + id + " is in-use: detach it first")));
            }
            r->body["status"] = "deleting";
            return StartWorkflow(nullptr, "volume.delete", json::object{{"volume_id", id}}, {r}, {},
                                 [this, id, status] { Revert(kVolume, id, status); }, *r, r->project,
                                 req.traceparent, done);
        }
        // A server.
        auto q = req.query.find("delete_volumes");
        const bool delete_volumes = q != req.query.end() && (q->second == "true" || q->second == "1");
        if (q != req.query.end() && !delete_volumes && q->second != "false" && q->second != "0") {
            return done(ErrorAnswer(FieldError("delete_volumes", "must be true or false")));
        }
        r->body["status"] = "DELETING";
        r->body["_delete_volumes"] = delete_volumes;
        json::object input{{"server_id", id},
                           {"host", Str(r->body, "host")},
                           {"port_id", Str(r->body, "port_id")},
                           {"volume_ids", ToArray(StrList(r->body, "volume_ids"))}};
        StartWorkflow(nullptr, "server.delete", std::move(input), {r}, {},
                      [this, id, status] { Revert(kServer, id, status); }, *r, r->project, req.traceparent, done);
    }

    void Revert(std::string_view kind, const std::string& id, const std::string& status) {
        if (Res* r = model_.Find(kind, id)) {
            r->body["status"] = status;
        }
    }

    void Act(const Principal& who, std::string_view kind, const std::string& id, const std::string& action,
             ApiRequest& req, const Done& done) {
        if (auto st = RequireWriter(who); !st) return done(ErrorAnswer(st.error()));
        Res* r = model_.Find(kind, id);
        if (r == nullptr || !Visible(who, *r)) {
            return done(NotFound(kind, id));
        }
        const std::string status = Str(r->body, "status");
        auto conflict = [&](std::string why) { done(ErrorAnswer(Error(ErrorCode::kConflict, std::move(why)))); };
        if (kind == kServer && (action == "start" || action == "stop" || action == "reboot")) {
            auto body = ParseBody(req.body, {});
            if (!body) return done(ErrorAnswer(body.error()));
            const char* need = action == "start" ? "SHUTOFF" : "ACTIVE";
            if (status != need) {
                return conflict("server " + id + " is " + status + "; " + action + " needs " + need);
            }
            r->body["status"] = action == "start" ? "STARTING" : action == "stop" ? "STOPPING" : "REBOOT";
            r->body["_prev_status"] = status;
            json::object input{{"server_id", id}, {"host", Str(r->body, "host")}};
            return StartWorkflow(nullptr, "server." + action, std::move(input), {r}, {},
                                 [this, id, status] { Revert(kServer, id, status); }, *r, r->project,
                                 req.traceparent, done);
        }
        if (kind == kVolume && action == "attach") {
            auto body = ParseBody(req.body, {"server_id"});
            if (!body) return done(ErrorAnswer(body.error()));
            auto server_id = RequiredString(*body, "server_id");
            if (!server_id) return done(ErrorAnswer(server_id.error()));
            const Res* s = model_.Find(kServer, *server_id);
            if (s == nullptr || s->project != r->project) {
                return done(ErrorAnswer(FieldError("server_id", "no server " + *server_id)));
            }
            const std::string sstatus = Str(s->body, "status");
            if (sstatus != "ACTIVE" && sstatus != "SHUTOFF") {
                return conflict("server " + *server_id + " is " + sstatus);
            }
            if (status != "available") {
                return conflict("volume " + id + " is " + status + ", not available");
            }
            r->body["status"] = "attaching";
            r->body["server_id"] = *server_id;
            json::object input{{"volume_id", id}, {"server_id", *server_id}, {"host", Str(s->body, "host")}};
            return StartWorkflow(nullptr, "volume.attach", std::move(input), {r}, {},
                                 [this, id] {
                                     if (Res* v = model_.Find(kVolume, id)) {
                                         v->body["status"] = "available";
                                         v->body["server_id"] = "";
                                     }
                                 },
                                 *r, r->project, req.traceparent, done);
        }
        if (kind == kVolume && action == "detach") {
            auto body = ParseBody(req.body, {});
            if (!body) return done(ErrorAnswer(body.error()));
            if (status != "in-use") {
                return conflict("volume " + id + " is " + status + ", not in-use");
            }
            r->body["status"] = "detaching";
            json::object input{{"volume_id", id}, {"server_id", Str(r->body, "server_id")}};
            return StartWorkflow(nullptr, "volume.detach", std::move(input), {r}, {},
                                 [this, id] { Revert(kVolume, id, "in-use"); }, *r, r->project, req.traceparent,
                                 done);
        }
        done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route POST /v1/" + std::string(kind) + "s/" + id + "/" + action)));
    }

    // ---- workflow ends ----

    void OnFinished(const workflow::FinishedEvent& ev) {
        boost::system::error_code ec;
        json::value iv = json::parse(ev.input, ec);
        if (ec || !iv.is_object()) {
            return;
        }
        const json::object& in = iv.get_object();
        const bool ok = ev.state == store::WorkflowState::kSucceeded;
        auto output = [&](const char* step) {
            json::object o;
            auto it = ev.outputs.find(step);
            if (it != ev.outputs.end()) {
                json::value v = json::parse(it->second, ec);
                if (!ec && v.is_object()) {
                    o = std::move(v.get_object());
                }
            }
            return o;
        };
        std::vector<store::ResourceWrite> writes;
        // The resources' events, written with their settled records.
        std::vector<store::EventRecord> events;
        const std::string outcome = ev.state == store::WorkflowState::kRolledBack ? "rolled back" : "failed";
        auto note = [&](const Res& r, std::string type, std::string message) {
            events.push_back(
                Event(r.kind, r.id, r.project, std::move(type), std::move(message), ev.id, ev.trace));
        };
        auto save = [&](Res& r) {
            Touch(r);
            writes.push_back(Model::Write(r));
        };
        auto fail = [&](Res& r, std::string status) {
            note(r, "error", ev.type + " " + outcome + ": " + ev.reason + " (status " + status + ")");
            r.body["status"] = std::move(status);
            r.body["fault"] = json::object{{"message", ev.reason}, {"workflow_id", ev.id}};
            save(r);
        };
        // `id` by value: it may be the erased record's own field.
        auto erase = [&](std::string_view kind, std::string id) {
            if (const Res* r = model_.Find(kind, id)) {
                note(*r, "deleted", std::string(kind) + " deleted (" + ev.type + ")");
                model_.Release(r->project, Model::HeldBy(*r));
                model_.Erase(kind, id);
                writes.push_back(Model::EraseWrite(kind, id));
            }
        };
        // Only the workflow a resource is waiting for may settle it (a stale end changes nothing).
        auto mine = [&](Res* r) { return r != nullptr && Str(r->body, "workflow_id") == ev.id ? r : nullptr; };
        const std::string& t = ev.type;
        if (t == "network.create" || t == "subnet.create" || t == "port.create" || t == "volume.create") {
            std::string_view kind = t == "network.create" ? kNetwork : t == "subnet.create" ? kSubnet
                                    : t == "port.create"  ? kPort : kVolume;
            std::string id = Str(in, t == "network.create" ? "network_id" : t == "subnet.create" ? "subnet_id"
                                     : t == "port.create"  ? "port_id" : "volume_id");
            Res* r = mine(model_.Find(kind, id));
            if (r == nullptr) return;
            if (ok) {
                r->body["status"] = kind == kVolume ? "available" : "ACTIVE";
                json::object out = output(kind == kNetwork ? "create_network" : kind == kSubnet ? "create_subnet"
                                          : kind == kPort ? "create_port" : "create_volume");
                for (const char* k : {"gateway_ip", "allocation_pools", "mac_address", "fixed_ip", "subnet_id"}) {
                    if (out.contains(k)) r->body[k] = out.at(k);
                }
                note(*r, kind == kVolume ? "available" : "active",
                     std::string(kind) + " is " + Str(r->body, "status"));
                save(*r);
            } else {
                // Nothing of it exists any more (rolled back): it holds no quota. A failed
                // rollback keeps the quota until the resource is deleted.
                if (ev.state == store::WorkflowState::kRolledBack) {
                    model_.Release(r->project, Model::HeldBy(*r));
                    r->body["_quota"] = false;
                }
                fail(*r, kind == kVolume ? "error" : "ERROR");
            }
        } else if (t == "network.delete" || t == "subnet.delete" || t == "port.delete" || t == "volume.delete") {
            std::string_view kind = t == "network.delete" ? kNetwork : t == "subnet.delete" ? kSubnet
                                    : t == "port.delete"  ? kPort : kVolume;
            std::string id = Str(in, t == "network.delete" ? "network_id" : t == "subnet.delete" ? "subnet_id"
                                     : t == "port.delete"  ? "port_id" : "volume_id");
            Res* r = mine(model_.Find(kind, id));
            if (r == nullptr) return;
            if (ok) {
                erase(kind, id);
            } else {
                fail(*r, kind == kVolume ? "error" : "ERROR");
            }
        } else if (t == "server.create") {
            const std::string sid = Str(in, "server_id");
            Res* s = mine(model_.Find(kServer, sid));
            if (s == nullptr) return;
            Res* port = model_.Find(kPort, Str(in, "port_id"));
            const auto vols = StrList(in, "volume_ids");
            if (ok) {
                json::object claim = output("claim");
                json::object p = output("create_port");
                s->body["status"] = "ACTIVE";
                s->body["host"] = Str(claim, "host");
                if (const Res* h = model_.Find(kHost, Str(claim, "host"))) {
                    s->body["availability_zone"] = Str(h->body, "availability_zone");
                }
                s->body["ip_address"] = Str(p, "fixed_ip");
                s->body["mac_address"] = Str(p, "mac_address");
                note(
                    *s, "active",
                    "server is ACTIVE on host " + Str(s->body, "host") + " at " + Str(s->body, "ip_address"));
                save(*s);
                if (port != nullptr) {
                    port->body["status"] = "ACTIVE";
                    for (const char* k : {"mac_address", "fixed_ip", "subnet_id"}) {
                        if (p.contains(k)) port->body[k] = p.at(k);
                    }
                    note(*port, "active", "port is ACTIVE for server " + sid);
                    save(*port);
                }
                json::object att = output("attach_volumes");
                std::map<std::string, std::string> devices;
                if (const auto* a = att.if_contains("attachments"); a != nullptr && a->is_array()) {
                    for (const auto& item : a->get_array()) {
                        if (item.is_object()) {
                            devices[Str(item.get_object(), "volume_id")] = Str(item.get_object(), "device");
                        }
                    }
                }
                for (const auto& vid : vols) {
                    if (Res* v = model_.Find(kVolume, vid)) {
                        v->body["status"] = "in-use";
                        v->body["device"] = devices[vid];
                        note(*v, "attached", "attached to server " + sid + " as " + devices[vid]);
                        save(*v);
                    }
                }
            } else if (ev.state == store::WorkflowState::kRolledBack && Reschedule(ev, *s, output("claim"))) {
                note(*s, "rescheduled",
                     "server.create rolled back (" + ev.reason + ") after its host " + Str(output("claim"), "host") +
                         " failed: built again on another host");
            } else {
                const bool clean = ev.state == store::WorkflowState::kRolledBack;
                if (clean) {
                    model_.Release(s->project, Model::HeldBy(*s));
                    s->body["_quota"] = false;
                    if (port != nullptr) erase(kPort, port->id);
                } else if (port != nullptr) {
                    fail(*port, "ERROR");
                }
                s->body["host"] = "";
                fail(*s, "ERROR");
                for (const auto& vid : vols) {
                    if (Res* v = model_.Find(kVolume, vid)) {
                        v->body["status"] = clean ? "available" : "error";
                        v->body["server_id"] = clean ? "" : sid;
                        note(
                            *v, clean ? "available" : "error",
                            "server " + sid + " create " + outcome + ": volume is " + Str(v->body, "status"));
                        save(*v);
                    }
                }
            }
        } else if (t == "server.delete") {
            const std::string sid = Str(in, "server_id");
            Res* s = mine(model_.Find(kServer, sid));
            if (s == nullptr) return;
            if (ok) {
                const bool delete_volumes = Bool(s->body, "_delete_volumes");
                const std::string project = s->project;
                erase(kPort, Str(s->body, "port_id"));
                std::vector<std::string> vols = StrList(s->body, "volume_ids");
                erase(kServer, sid);
                for (const auto& vid : vols) {
                    Res* v = model_.Find(kVolume, vid);
                    if (v == nullptr) continue;
                    v->body["status"] = "available";
                    v->body["server_id"] = "";
                    v->body["device"] = "";
                    note(*v, "detached", "detached from deleted server " + sid);
                    if (!delete_volumes) {
                        save(*v);
                        continue;
                    }
                    v->body["status"] = "deleting";
                    v->body["_prev_status"] = "available";
                    StartWorkflow(
                        nullptr, "volume.delete", json::object{{"volume_id", vid}}, {v}, {},
                        [this, vid] { Revert(kVolume, vid, "available"); }, *v, project, ev.trace,
                        [](ApiAnswer) {});
                }
            } else {
                fail(*s, "ERROR");
            }
        } else if (t.rfind("heal.", 0) == 0) {
            RepairFinished(ev, in, events);
        } else if (t == "server.evacuate" || t == "server.migrate" || t == "server.repair") {
            moving_.erase(Str(in, "server_id"));
            asio::post(io_, [weak = weak_from_this()] {
                if (auto self = weak.lock()) {
                    self->PumpMoves();
                    self->FinishDrains();
                }
            });
            Res* s = mine(model_.Find(kServer, Str(in, "server_id")));
            if (s == nullptr) return;
            MoveFinished(ev, *s, ok, output("claim"), writes, events);
        } else if (t == "server.start" || t == "server.stop" || t == "server.reboot") {
            Res* s = mine(model_.Find(kServer, Str(in, "server_id")));
            if (s == nullptr) return;
            if (ok) {
                s->body["status"] = t == "server.stop" ? "SHUTOFF" : "ACTIVE";
                s->body.erase("fault");
                note(*s,
                     t == "server.stop"    ? "stopped"
                     : t == "server.start" ? "started"
                                           : "rebooted",
                     "server is " + Str(s->body, "status"));
                save(*s);
            } else {
                // The instance is as it was (the action was refused) or unknown: say so, keep the
                // status it had.
                fail(*s, Str(s->body, "_prev_status"));
            }
        } else if (t == "volume.attach" || t == "volume.detach") {
            Res* v = mine(model_.Find(kVolume, Str(in, "volume_id")));
            if (v == nullptr) return;
            Res* s = model_.Find(kServer, Str(in, "server_id"));
            const bool attach = t == "volume.attach";
            if (ok) {
                v->body["status"] = attach ? "in-use" : "available";
                std::vector<std::string> list = s != nullptr ? StrList(s->body, "volume_ids") : std::vector<std::string>{};
                const std::string vid = v->id;
                list.erase(std::remove(list.begin(), list.end(), vid), list.end());
                if (attach) {
                    json::object out = output("attach");
                    if (const auto* a = out.if_contains("attachments"); a != nullptr && a->is_array() &&
                                                                         !a->get_array().empty() &&
                                                                         a->get_array()[0].is_object()) {
                        v->body["device"] = Str(a->get_array()[0].get_object(), "device");
                    }
                    list.push_back(vid);
                } else {
                    v->body["server_id"] = "";
                    v->body["device"] = "";
                }
                v->body.erase("fault");
                const std::string sid = Str(in, "server_id");
                note(*v, attach ? "attached" : "detached",
                     (attach ? "attached to server " + sid + " as " + Str(v->body, "device")
                             : "detached from server " + sid));
                save(*v);
                if (s != nullptr) {
                    s->body["volume_ids"] = ToArray(list);
                    note(*s, attach ? "volume_attached" : "volume_detached",
                         "volume " + vid + (attach ? " attached" : " detached"));
                    save(*s);
                }
            } else {
                if (attach && ev.state == store::WorkflowState::kRolledBack) {
                    v->body["server_id"] = "";
                    fail(*v, "available");
                } else {
                    fail(*v, attach ? "error" : "in-use");
                }
            }
        }
        if (!writes.empty() || !events.empty()) {
            Persist(std::move(writes), std::move(events), [](Status) {});
        }
    }

    // ---- quotas ----

    json::object QuotaView(const std::string& project) const {
        Amount limits = model_.Limits(project);
        Amount used = model_.Usage(project);
        json::object q;
        for (auto name : kQuotaNames) {
            q[name] = json::object{{"limit", QuotaField(limits, name)}, {"in_use", QuotaField(used, name)}};
        }
        return q;
    }

    void GetQuotas(const Principal& who, const std::string& id, const Done& done) {
        const Res* p = model_.Find(kProject, id);
        if (p == nullptr || !Visible(who, *p)) return done(NotFound("project", id));
        done(JsonAnswer(200, json::object{{"quotas", QuotaView(id)}}));
    }

    void SetQuotas(const Principal& who, const std::string& id, const std::string& body, const Done& done) {
        if (auto st = RequireAdmin(who); !st) return done(ErrorAnswer(st.error()));
        Res* p = model_.Find(kProject, id);
        if (p == nullptr) return done(NotFound("project", id));
        auto parsed = ParseBody(body, {"servers", "vcpus", "ram_mb", "volumes", "volume_gb", "ports"});
        if (!parsed) return done(ErrorAnswer(parsed.error()));
        json::object quotas = p->body.contains("quotas") && p->body.at("quotas").is_object()
                                  ? p->body.at("quotas").get_object()
                                  : json::object{};
        for (auto name : kQuotaNames) {
            auto v = OptionalInt(*parsed, name, -1, INT64_MAX / 4);
            if (!v) return done(ErrorAnswer(v.error()));
            if (*v) quotas[name] = **v;
        }
        p->body["quotas"] = std::move(quotas);
        Touch(*p);
        Persist({Model::Write(*p)}, [this, done, id](Status st) {
            done(st ? JsonAnswer(200, json::object{{"quotas", QuotaView(id)}}) : ErrorAnswer(st.error()));
        });
    }

    // ---- hosts ----

    static scheduler::HostInfo HostInfoOf(const Res& r) {
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

    bool HostUp(const std::string& name) const { return hosts_.StateOf(name) == HostState::kUp; }

    // A steady-clock moment as wall-clock RFC 3339 (for the API).
    static std::string WallOf(SteadyTime t) {
        const auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t).count();
        return Rfc3339(WallNowMs() - ago);
    }

    json::object HostView(const Res& r) const {
        json::object o = View(r);
        o["name"] = r.id;
        o["state"] = ToString(hosts_.StateOf(r.id));
        if (auto since = hosts_.Since(r.id)) o["state_since"] = WallOf(*since);
        if (auto last = hosts_.LastRenewal(r.id)) o["last_renewal_at"] = WallOf(*last);
        o["draining"] = Bool(r.body, "draining");
        scheduler::Usage u = placement_.UsageOf(r.id);
        o["used"] = json::object{{"vcpus", u.vcpus}, {"ram_mb", u.ram_mb}, {"disk_gb", u.disk_gb}};
        o["servers"] = u.servers;
        return o;
    }

    void RouteHosts(const Principal& who, ApiRequest& req, const Done& done) {
        if (auto st = RequireAdmin(who); !st) return done(ErrorAnswer(st.error()));
        const auto& p = req.path;
        const std::string& m = req.method;
        if (p.size() == 1 && m == "GET") {
            json::array items;
            for (const auto& [name, r] : model_.All(kHost)) {
                items.push_back(HostView(r));
            }
            return done(JsonAnswer(200, json::object{{"hosts", std::move(items)}}));
        }
        if (p.size() < 2) return done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1/hosts")));
        const std::string& name = p[1];
        Res* h = model_.Find(kHost, name);
        if (p.size() == 2 && m == "GET") {
            if (h == nullptr) return done(NotFound("host", name));
            return done(Wrap(200, "host", HostView(*h)));
        }
        if (p.size() == 2 && m == "PUT") {
            return RegisterHost(name, req.body, done);
        }
        if (p.size() == 3 && m == "GET" && p[2] == "events") {
            return ListEvents(who, req.query, kHost, name, done);
        }
        if (p.size() == 3 && m == "POST") {
            if (h == nullptr) return done(NotFound("host", name));
            if (p[2] == "heartbeat") {
                return Heartbeat(*h, req.body, done);
            }
            if (p[2] == "drain") {
                return Drain(*h, req, done);
            }
            if (p[2] == "enable" || p[2] == "disable") {
                auto body = ParseBody(req.body, {"reason"});
                if (!body) return done(ErrorAnswer(body.error()));
                auto reason = OptionalString(*body, "reason", 255);
                if (!reason) return done(ErrorAnswer(reason.error()));
                const bool enable = p[2] == "enable";
                h->body["enabled"] = enable;
                h->body["disabled_reason"] = enable ? "" : reason->value_or("");
                if (enable) h->body["draining"] = false;
                Touch(*h);
                placement_.SetEnabled(name, enable);
                const std::string why = reason->value_or("");
                return SaveHost(*h, done,
                                {Event(kHost, name, "", enable ? "enabled" : "disabled",
                                       std::string(enable ? "enabled" : "disabled: no new servers go there") +
                                           (why.empty() ? "" : " (" + why + ")"),
                                       "", req.traceparent)});
            }
        }
        done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1/hosts/" + name)));
    }

    void RegisterHost(const std::string& name, const std::string& body, const Done& done) {
        if (name.empty() || name.size() > 64 || name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos) {
            return done(ErrorAnswer(FieldError("name", "1-64 characters of [A-Za-z0-9._-]")));
        }
        auto parsed = ParseBody(body, {"url", "availability_zone", "vcpus", "ram_mb", "disk_gb", "traits"});
        if (!parsed) return done(ErrorAnswer(parsed.error()));
        auto url = RequiredString(*parsed, "url");
        if (!url) return done(ErrorAnswer(url.error()));
        if (!ParseUrl(*url)) return done(ErrorAnswer(FieldError("url", "must be http://HOST:PORT")));
        auto az = OptionalString(*parsed, "availability_zone", 64);
        if (!az) return done(ErrorAnswer(az.error()));
        auto vcpus = RequiredInt(*parsed, "vcpus", 1, 1 << 20);
        if (!vcpus) return done(ErrorAnswer(vcpus.error()));
        auto ram = RequiredInt(*parsed, "ram_mb", 1, 1LL << 40);
        if (!ram) return done(ErrorAnswer(ram.error()));
        auto disk = RequiredInt(*parsed, "disk_gb", 0, 1LL << 40);
        if (!disk) return done(ErrorAnswer(disk.error()));
        auto traits = OptionalStringList(*parsed, "traits");
        if (!traits) return done(ErrorAnswer(traits.error()));
        Res* existing = model_.Find(kHost, name);
        std::vector<store::EventRecord> events;
        if (existing == nullptr) {
            events.push_back(Event(kHost, name, "", "registered",
                                   "registered: " + *url + ", " + std::to_string(*vcpus) + " vcpus, " +
                                       std::to_string(*ram) + " MiB, " + std::to_string(*disk) + " GiB",
                                   "", ""));
        }
        Res h = existing != nullptr ? *existing : Res{std::string(kHost), name, "", {}};
        if (existing == nullptr) {
            h.body["created_at"] = Rfc3339(WallNowMs());
            h.body["enabled"] = true;
            h.body["disabled_reason"] = "";
        }
        h.body["url"] = *url;
        h.body["availability_zone"] = az->value_or("nova");
        h.body["vcpus"] = *vcpus;
        h.body["ram_mb"] = *ram;
        h.body["disk_gb"] = *disk;
        h.body["traits"] = ToArray(*traits);
        Touch(h);
        scheduler::HostInfo info = HostInfoOf(h);
        placement_.UpsertHost(info);
        const Res& stored = model_.Put(std::move(h));
        if (auto change = hosts_.Renewed(name, SteadyClock::now())) {
            OnHostChange(*change, "registered anew");
        } else {
            placement_.SetAlive(name, true);
        }
        // Registering renews the lease too: the answer carries its TTL, as a heartbeat's does.
        Persist({Model::Write(stored)}, std::move(events), [this, done, name](Status st) {
            const Res* now = model_.Find(kHost, name);
            if (!st) return done(ErrorAnswer(st.error()));
            if (now == nullptr) return done(NotFound("host", name));
            done(JsonAnswer(200, json::object{{"host", HostView(*now)}, {"lease_ttl_ms", LeaseTtlMs()}}));
        });
    }

    int64_t LeaseTtlMs() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(hosts_.options().ttl).count();
    }

    // A lease renewal (docs/api.md "Hosts", docs/healing.md): the body carries the host's instance
    // counts by state and the instance reports its agent has not had acknowledged. The answer,
    // once the reports' events are durable, gives the lease TTL and the highest report seq taken.
    void Heartbeat(Res& h, const std::string& body, const Done& done) {
        const std::string name = h.id;
        json::object in;
        if (!body.empty()) {
            boost::system::error_code ec;
            json::value v = json::parse(body, ec);
            if (ec || !v.is_object()) {
                return done(ErrorAnswer(FieldError("body", "must be a JSON object")));
            }
            in = std::move(v.get_object());
        }
        const SteadyTime now = SteadyClock::now();
        if (auto change = hosts_.Renewed(name, now)) {
            OnHostChange(*change, "its lease is renewed again");
        }
        int64_t acked = 0;
        std::vector<store::ResourceWrite> writes;
        std::vector<store::EventRecord> events;
        if (const auto* reports = in.if_contains("reports"); reports != nullptr && reports->is_array()) {
            for (const auto& item : reports->get_array()) {
                if (!item.is_object()) continue;
                const json::object& r = item.get_object();
                acked = std::max(acked, Int(r, "seq"));
                InstanceReport(name, Str(r, "instance"), Str(r, "type"), Str(r, "message"), writes, events);
            }
        }
        // Instances the host holds FENCED (after fencing itself, or a restart) wait for us to say
        // what runs again: look at that host now rather than at the next periodic pass.
        if (const auto* counts = in.if_contains("instances"); counts != nullptr && counts->is_object()) {
            if (Int(counts->get_object(), "FENCED") > 0 && HostUp(name)) {
                ReconcileHost(name, "its agent holds fenced instances");
            }
        }
        json::object answer{{"lease_ttl_ms", LeaseTtlMs()}, {"acked_seq", acked}};
        if (writes.empty() && events.empty()) {
            return done(JsonAnswer(200, std::move(answer)));
        }
        Persist(std::move(writes), std::move(events), [done, answer = std::move(answer)](Status st) {
            done(st ? JsonAnswer(200, answer) : ErrorAnswer(st.error()));
        });
    }

    // What an agent's instance supervisor reports (crashed, restarted, gave_up) becomes the
    // server's history; "gave_up" puts the server in ERROR with the agent's message.
    void InstanceReport(const std::string& host, const std::string& instance, const std::string& type,
                        const std::string& message, std::vector<store::ResourceWrite>& writes,
                        std::vector<store::EventRecord>& events) {
        Res* s = model_.Find(kServer, instance);
        if (s == nullptr || Str(s->body, "host") != host) return;  // not (or no longer) this host's
        const std::string event_type = type == "gave_up" ? "restart_gave_up" : type;
        if (event_type != "crashed" && event_type != "restarted" && event_type != "restart_gave_up") return;
        events.push_back(Event(kServer, s->id, s->project, event_type,
                               "host " + host + ": " + (message.empty() ? type : message), "", ""));
        if (event_type == "restarted") {
            metrics_.restarts.Inc();
        }
        if (event_type == "restart_gave_up" && Str(s->body, "status") == "ACTIVE") {
            s->body["status"] = "ERROR";
            s->body["fault"] = json::object{{"message", message.empty() ? "the instance kept crashing" : message}};
            Touch(*s);
            writes.push_back(Model::Write(*s));
            events.push_back(Event(kServer, s->id, s->project, "error",
                                   "server is ERROR: its instance kept crashing on host " + host, "", ""));
        }
    }

    // A host's liveness changed (internal/liveness.h).
    void OnHostChange(const Liveness::Change& c, const std::string& why = "") {
        const std::string& name = c.host;
        const double silent_s = std::chrono::duration<double>(SteadyClock::now() - c.last_renewal).count();
        char silent[32];
        std::snprintf(silent, sizeof silent, "%.1f s", silent_s);
        std::vector<store::EventRecord> events;
        if (c.to == HostState::kSuspect) {
            placement_.SetAlive(name, false);
            metrics_.detections.Inc();
            observe::Log("cloud").warn("host {} is suspect: no lease renewal for {}", name, silent);
            events.push_back(Event(kHost, name, "", "suspect",
                                   std::string("suspect: no lease renewal for ") + silent +
                                       "; no new servers go there",
                                   "", ""));
        } else if (c.to == HostState::kDown) {
            placement_.SetAlive(name, false);
            if (c.from == HostState::kUp) metrics_.detections.Inc();
            observe::Log("cloud").warn("host {} is down: no lease renewal for {}; its agent has fenced itself",
                                       name, silent);
            events.push_back(Event(kHost, name, "", "down",
                                   std::string("down: no lease renewal for ") + silent +
                                       "; its agent has fenced itself; its servers are evacuated",
                                   "", ""));
            down_since_[name] = c.last_renewal;
            heal_pending_ = true;
        } else {
            placement_.SetAlive(name, true);
            observe::Log("cloud").info("host {} is up again ({})", name, why);
            events.push_back(Event(kHost, name, "", "up",
                                   "up again after " + std::string(ToString(c.from)) + ": " + why, "", ""));
            down_since_.erase(name);
            // What it holds may be stale (evacuated meanwhile) or fenced (to run again).
            ReconcileHost(name, "it is up again");
        }
        Persist({}, std::move(events), [](Status) {});
        UpdatePause();
    }

    // Persists a host record (and its events) and answers it as it is once durable.
    void SaveHost(const Res& h, const Done& done, std::vector<store::EventRecord> events = {}) {
        Persist({Model::Write(h)}, std::move(events), [this, done, name = h.id](Status st) {
            const Res* now = model_.Find(kHost, name);
            if (!st) return done(ErrorAnswer(st.error()));
            done(now != nullptr ? Wrap(200, "host", HostView(*now)) : NotFound("host", name));
        });
    }

    // Applies the liveness transitions that are due, then sleeps until the next one can be (at
    // most 1 s: renewals move deadlines later, never earlier, so waking early is only a re-check).
    void TickLiveness() {
        const SteadyTime now = SteadyClock::now();
        for (const auto& change : hosts_.Tick(now)) {
            OnHostChange(change);
        }
        if (heal_pending_) {
            heal_pending_ = false;
            Heal();
        } else {
            UpdatePause();
        }
        SteadyTime next = now + std::chrono::seconds(1);
        if (auto due = hosts_.NextDeadline(); due && *due < next) next = *due;
        liveness_timer_.expires_at(next);
        liveness_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            if (auto self = weak.lock(); self && !ec) {
                self->TickLiveness();
            }
        });
    }

    // The mass-failure guard: an alert event when evacuation pauses and when it resumes.
    void UpdatePause() {
        const bool paused = hosts_.EvacuationPaused(SteadyClock::now());
        metrics_.evacuation_paused.Set(paused ? 1 : 0);
        if (paused == evacuation_paused_) return;
        evacuation_paused_ = paused;
        const size_t lapsed = hosts_.Count(HostState::kSuspect) + hosts_.Count(HostState::kDown);
        const std::string counts = std::to_string(lapsed) + " of " + std::to_string(hosts_.size()) + " hosts";
        if (paused) {
            observe::Log("cloud").error("evacuation paused: {} are suspect or down at once", counts);
        } else {
            observe::Log("cloud").warn("evacuation resumed: {} are suspect or down", counts);
            heal_pending_ = true;
        }
        Persist({},
                {Event("alert", "evacuation", "", paused ? "evacuation_paused" : "evacuation_resumed",
                       paused ? counts + " are suspect or down at once: more likely the control plane's "
                                         "network than the hosts; evacuation waits for an operator or for "
                                         "hosts to come back"
                              : "evacuation resumed: " + counts + " are suspect or down",
                       "", "")},
                [](Status) {});
    }

    // A create rolled back because the host it was placed on failed during the build (it is not up
    // any more) is started again with the same input: the same server, port and volumes, placed
    // anew (placement skips that host), as Nova retries on an alternate host. The server stays
    // BUILD and keeps its quota; at most kMaxReschedules times.
    bool Reschedule(const workflow::FinishedEvent& ev, Res& s, const json::object& claim) {
        const std::string host = Str(claim, "host");
        if (host.empty() || hosts_.StateOf(host) == HostState::kUp || Int(s.body, "_reschedules") >= kMaxReschedules) {
            return false;
        }
        s.body["_reschedules"] = Int(s.body, "_reschedules") + 1;
        boost::system::error_code ec;
        json::value input = json::parse(ev.input, ec);
        if (ec || !input.is_object()) return false;
        observe::Log("cloud").warn("server {}: its host {} failed during the build: building it again", s.id, host);
        asio::post(io_, [this, weak = weak_from_this(), id = s.id, in = std::move(input.get_object()),
                         trace = ev.trace]() mutable {
            auto self = weak.lock();
            Res* srv = self ? model_.Find(kServer, id) : nullptr;
            if (srv == nullptr || Str(srv->body, "status") != "BUILD") return;
            std::vector<Res*> changed{srv};
            if (Res* port = model_.Find(kPort, Str(in, "port_id"))) changed.push_back(port);
            for (const auto& vid : StrList(in, "volume_ids")) {
                if (Res* v = model_.Find(kVolume, vid)) changed.push_back(v);
            }
            StartWorkflow(nullptr, "server.create", std::move(in), changed, {},
                          [this, refs = Refs(changed)] {
                              // The engine refused (overload): a failed build, its volumes free again
                              // (nothing of it exists: the rolled-back create removed it all).
                              std::vector<store::ResourceWrite> writes;
                              for (const auto& [kind, rid] : refs) {
                                  Res* r = model_.Find(kind, rid);
                                  if (r == nullptr) continue;
                                  if (r->kind == kVolume) {
                                      r->body["status"] = "available";
                                      r->body["server_id"] = "";
                                  } else {
                                      r->body["status"] = "ERROR";
                                      r->body["fault"] = json::object{{"message", "rescheduling refused: overloaded"}};
                                  }
                                  Touch(*r);
                                  writes.push_back(Model::Write(*r));
                              }
                              Persist(std::move(writes), [](Status) {});
                          },
                          *srv, srv->project, trace, [](ApiAnswer) {});
        });
        return true;
    }

    static std::vector<std::pair<std::string, std::string>> Refs(const std::vector<Res*>& records) {
        std::vector<std::pair<std::string, std::string>> refs;
        for (const Res* r : records) refs.emplace_back(r->kind, r->id);
        return refs;
    }

    // ---- reconcilers ----

    void ScheduleReconcile(Duration after) {
        reconcile_timer_.expires_after(after);
        reconcile_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || ec) return;
            self->Heal();
            self->ReconcileAll();
            self->ScheduleReconcile(self->options_.reconcile_every);
        });
    }

    // One scan of the reconcilers: the inventories asked for, as they come back.
    struct Scan {
        Actual actual;
        int pending = 0;
        std::string what;  // "periodic" or "host H"
    };

    services::kit::HttpReader* ReaderFor(const std::string& url, const std::string& service) {
        auto it = readers_.find(url);
        if (it == readers_.end()) {
            auto ep = ParseUrl(url);
            if (!ep) return nullptr;
            it = readers_
                     .emplace(url, services::kit::MakeHttpReader(io_, ep->first, ep->second, service,
                                                                 options_.service_token))
                     .first;
        }
        return it->second.get();
    }

    // Reads one inventory into the scan; the scan runs when its last inventory is in.
    void ReadInventory(const std::shared_ptr<Scan>& scan, const std::string& service, const std::string& url,
                       std::vector<std::string> hosts) {
        services::kit::HttpReader* reader = ReaderFor(url, service);
        if (reader == nullptr) return;
        ++scan->pending;
        const int64_t read_at = WallNowMs();
        reader->Get("/v1/inventory", SteadyClock::now() + std::chrono::seconds(5),
                    [this, weak = weak_from_this(), scan, service, url, hosts = std::move(hosts),
                     read_at](Result<std::string> body) {
                        if (!weak.lock()) return;
                        if (!body) {
                            observe::Log("cloud").debug("reconcile: {} inventory at {}: {}", service, url,
                                                        body.error().ToString());
                        } else if (service == "network") {
                            auto inv = ParseNetworkInventory(*body, read_at);
                            if (inv) scan->actual.network = std::move(*inv);
                            else observe::Log("cloud").warn("reconcile: {}", inv.error().ToString());
                        } else if (service == "volume") {
                            auto inv = ParseVolumeInventory(*body, read_at);
                            if (inv) scan->actual.volume = std::move(*inv);
                            else observe::Log("cloud").warn("reconcile: {}", inv.error().ToString());
                        } else {
                            auto inv = ParseComputeInventory(*body, read_at);
                            if (inv) {
                                inv->hosts = hosts;  // only the hosts that are up and served there
                                scan->actual.compute.push_back(std::move(*inv));
                            } else {
                                observe::Log("cloud").warn("reconcile: {}", inv.error().ToString());
                            }
                        }
                        if (--scan->pending == 0) RunScan(*scan);
                    });
    }

    // The periodic pass: stuck work, then every inventory (compute agents of up hosts only: a
    // suspect or down host's instances are fenced and its answers stale).
    void ReconcileAll() {
        SettleStuck();
        auto scan = std::make_shared<Scan>();
        scan->what = "periodic";
        for (const auto& [service, url] : options_.inventory_urls) {
            ReadInventory(scan, service, url, {});
        }
        std::map<std::string, std::vector<std::string>> by_url;
        for (const auto& [name, h] : model_.All(kHost)) {
            if (HostUp(name)) by_url[Str(h.body, "url")].push_back(name);
        }
        for (auto& [url, hosts] : by_url) {
            ReadInventory(scan, "compute", url, std::move(hosts));
        }
    }

    // One host, now (it came back, or holds fenced instances): what it holds that is stale goes,
    // what is fenced and still its own runs again.
    void ReconcileHost(const std::string& name, const std::string& why) {
        const Res* h = model_.Find(kHost, name);
        if (h == nullptr || host_scans_.contains(name)) return;
        observe::Log("cloud").info("reconcile: host {} ({})", name, why);
        host_scans_.insert(name);
        auto scan = std::make_shared<Scan>();
        scan->what = "host " + name;
        ReadInventory(scan, "compute", Str(h->body, "url"), {name});
        if (scan->pending == 0) host_scans_.erase(name);
    }

    // The desired state as the reconciler sees it.
    Desired DesiredState() const {
        Desired d;
        auto busy = [this](const Res& r) {
            return Transitional(Str(r.body, "status")) || moving_.contains(r.id);
        };
        for (const auto& [id, r] : model_.All(kServer)) {
            const scheduler::Claim* c = placement_.ClaimOf(id);
            d.servers.push_back(DesiredServer{id, r.project, Str(r.body, "status"), Str(r.body, "host"),
                                              c != nullptr ? c->host : "", Str(r.body, "port_id"),
                                              StrList(r.body, "volume_ids"), busy(r), Int(r.body, "_changed_ms")});
        }
        for (const auto& [id, r] : model_.All(kPort)) {
            d.ports.push_back(DesiredPort{id, Str(r.body, "network_id"), Str(r.body, "device_id"),
                                          Str(r.body, "fixed_ip"), Str(r.body, "status"), busy(r),
                                          Int(r.body, "_changed_ms")});
        }
        for (const auto& [id, r] : model_.All(kVolume)) {
            d.volumes.push_back(DesiredVolume{id, Str(r.body, "status"), Str(r.body, "server_id"), busy(r),
                                              Int(r.body, "_changed_ms")});
        }
        return d;
    }

    void RunScan(const Scan& scan) {
        if (scan.what.rfind("host ", 0) == 0) host_scans_.erase(scan.what.substr(5));
        for (const auto& a : reconciler_.Scan(DesiredState(), scan.actual, WallNowMs())) {
            const std::string key = std::string(ToString(a.kind)) + "/" + a.id + "/" + a.host;
            if (acting_.contains(key)) continue;
            StartRepair(a, key);
        }
    }

    // Runs one reconciler action as a workflow (workflows/cloud/heal.yaml, or server.repair).
    void StartRepair(const Action& a, const std::string& key) {
        const std::string kind(ToString(a.kind));
        observe::Log("cloud").info("reconcile: {} {}: {}", kind, a.id, a.reason);
        metrics_.repairs.With({{"kind", kind}}).Inc();
        if (a.kind == ActionKind::kRepairServer) {
            Res* s = model_.Find(kServer, a.id);
            if (s == nullptr || !Movable(*s)) return;
            StartMove(*s, Move{a.id, "", "server.repair"});
            return;
        }
        json::object input{{"key", key}, {"id", a.id}, {"reason", a.reason}};
        std::string type;
        std::string resource_kind = a.service == "compute" ? "instance" : a.service == "network" ? "port" : "volume";
        switch (a.kind) {
            case ActionKind::kDeleteInstance:
                type = "heal.delete_instance";
                input["host"] = a.host;
                break;
            case ActionKind::kStartInstance:
                type = "heal.start_instance";
                input["host"] = a.host;
                resource_kind = "server";
                break;
            case ActionKind::kDeletePort:
                type = "heal.delete_port";
                break;
            case ActionKind::kRepairPort: {
                const Res* p = model_.Find(kPort, a.id);
                if (p == nullptr) return;
                type = "heal.repair_port";
                json::object req{{"id", a.id},
                                 {"network_id", Str(p->body, "network_id")},
                                 {"device_id", Str(p->body, "device_id")},
                                 {"project_id", p->project}};
                if (!Str(p->body, "subnet_id").empty()) req["subnet_id"] = Str(p->body, "subnet_id");
                if (!Str(p->body, "fixed_ip").empty()) req["fixed_ip"] = Str(p->body, "fixed_ip");
                input["request"] = std::move(req);
                break;
            }
            case ActionKind::kDeleteVolume:
                type = "heal.delete_volume";
                break;
            case ActionKind::kDetachVolume:
                type = "heal.detach_volume";
                input["server_id"] = a.server_id;
                break;
            case ActionKind::kRepairServer:
                return;
        }
        workflow::StartRequest req;
        req.type = type;
        req.input = json::serialize(input);
        req.traceparent = observe::TraceContext::New().ToTraceparent();
        req.resource_kind = resource_kind;
        req.resource_id = a.id;
        const Res* owner = resource_kind == "server" ? model_.Find(kServer, a.id)
                           : resource_kind == "port"  ? model_.Find(kPort, a.id)
                           : resource_kind == "volume" ? model_.Find(kVolume, a.id)
                                                       : nullptr;
        req.project = owner != nullptr ? owner->project : "";
        req.events.push_back(Event(resource_kind, a.id, req.project, "repair_requested",
                                   type + ": " + a.reason, "", req.traceparent));
        acting_.insert(key);
        engine_.Start(std::move(req), [this, key](Result<std::string> r) {
            if (!r) {
                acting_.erase(key);  // the next pass sees the drift again
                observe::Log("cloud").warn("reconcile: {}: {}", key, r.error().ToString());
            }
        });
    }

    // A reconciler's workflow ended (from OnFinished).
    void RepairFinished(const workflow::FinishedEvent& ev, const json::object& in,
                        std::vector<store::EventRecord>& events) {
        acting_.erase(Str(in, "key"));
        const bool ok = ev.state == store::WorkflowState::kSucceeded;
        const std::string what = Str(in, "reason");
        std::string type = ok ? "repaired" : "repair_failed";
        if (ok && (ev.type == "heal.delete_instance" || ev.type == "heal.delete_port" ||
                   ev.type == "heal.delete_volume" || ev.type == "heal.detach_volume")) {
            type = "orphan_removed";
        }
        const std::string project = ev.project;
        events.push_back(Event(ev.resource_kind, ev.resource_id, project, type,
                               ev.type + (ok ? " done: " : " failed (" + ev.reason + "): ") + what, ev.id,
                               ev.trace));
    }

    // Stuck work: a resource in a transitional status whose workflow has ended (its end was lost
    // to us: it should not happen, and costs nothing to check) takes the outcome. Only resources
    // seen transitional with the same workflow at two passes in a row are looked up.
    void SettleStuck() {
        std::map<std::string, std::string> now;
        std::vector<std::string> check;
        for (auto kind : kStatusKinds) {
            for (const auto& [id, r] : model_.All(kind)) {
                const std::string wf = Str(r.body, "workflow_id");
                if (!Transitional(Str(r.body, "status")) || wf.empty()) continue;
                const std::string key = std::string(kind) + "/" + id;
                auto seen = transitional_seen_.find(key);
                if (seen != transitional_seen_.end() && seen->second == wf) check.push_back(wf);
                now.emplace(key, wf);
            }
        }
        transitional_seen_ = std::move(now);
        if (check.empty()) return;
        OffThread([this, check] { return EndedWorkflows(check); },
                  [this](std::vector<workflow::FinishedEvent> ended) {
                      for (const auto& ev : ended) {
                          observe::Log("cloud").warn("{} {}: settling it: its workflow {} ended unreported",
                                                     ev.resource_kind, ev.resource_id, ev.id);
                          metrics_.repairs.With({{"kind", "settle_stuck"}}).Inc();
                          OnFinished(ev);
                      }
                  });
    }


    // ---- healing: evacuation and cold migration ----

    static bool Movable(const Res& s) {
        const std::string st = Str(s.body, "status");
        return st == "ACTIVE" || st == "SHUTOFF";
    }

    // Level-triggered: every server still on a down host is queued for evacuation, every server
    // on a draining host for migration (unless evacuation is paused), then as many run as the
    // parallelism allows.
    void Heal() {
        UpdatePause();
        if (!evacuation_paused_) {
            for (const auto& [id, s] : model_.All(kServer)) {
                const std::string host = Str(s.body, "host");
                if (host.empty() || !Movable(s) || queued_.contains(id)) continue;
                const Res* h = model_.Find(kHost, host);
                if (hosts_.StateOf(host) == HostState::kDown) {
                    moves_.push_back(Move{id, host, "server.evacuate"});
                    queued_.insert(id);
                } else if (h != nullptr && Bool(h->body, "draining")) {
                    moves_.push_back(Move{id, host, "server.migrate"});
                    queued_.insert(id);
                }
            }
        }
        PumpMoves();
    }

    void PumpMoves() {
        while (moving_.size() < static_cast<size_t>(options_.evacuation_parallelism) && !moves_.empty()) {
            Move mv = std::move(moves_.front());
            moves_.pop_front();
            queued_.erase(mv.server_id);
            Res* s = model_.Find(kServer, mv.server_id);
            if (s == nullptr || !Movable(*s) || Str(s->body, "host") != mv.from_host) continue;
            if (mv.type == "server.evacuate" && hosts_.StateOf(mv.from_host) != HostState::kDown) continue;
            StartMove(*s, mv);
        }
    }

    // server.evacuate (the host is down: rebuild elsewhere) or server.migrate (drain: stop, move,
    // start elsewhere). Both keep the server's id, port, address and volumes.
    void StartMove(Res& s, const Move& mv) {
        const std::string status = Str(s.body, "status");
        const Res* flavor = model_.Find(kFlavor, Str(s.body, "flavor_id"));
        std::string policy = "none";
        if (const Res* g = model_.Find(kGroup, Str(s.body, "server_group_id"))) policy = Str(g->body, "policy");
        json::object input{{"server_id", s.id},
                           {"project_id", s.project},
                           {"name", Str(s.body, "name")},
                           {"from_host", mv.from_host},
                           {"port_id", Str(s.body, "port_id")},
                           {"mac_address", Str(s.body, "mac_address")},
                           {"ip_address", Str(s.body, "ip_address")},
                           {"vcpus", Int(s.body, "_vcpus")},
                           {"ram_mb", Int(s.body, "_ram_mb")},
                           {"disk_gb", Int(s.body, "_disk_gb")},
                           {"image_id", Str(s.body, "image_id")},
                           {"volume_ids", ToArray(StrList(s.body, "volume_ids"))},
                           {"availability_zone", ""},
                           {"traits", flavor != nullptr && flavor->body.contains("traits") ? flavor->body.at("traits")
                                                                                           : json::array()},
                           {"group_id", Str(s.body, "server_group_id")},
                           {"policy", policy},
                           {"weigher", "spread"}};
        s.body["status"] = mv.type == "server.migrate" ? "MIGRATING" : "REBUILD";
        s.body["_prev_status"] = status;
        moving_.insert(s.id);
        metrics_.moves_started.With({{"type", mv.type}}).Inc();
        const std::string id = s.id;
        observe::Log("cloud").info("server {}: {} from host {}", id, mv.type, mv.from_host);
        StartWorkflow(nullptr, mv.type, std::move(input), {&s}, {},
                      [this, id, status] { Revert(kServer, id, status); }, s, s.project,
                      observe::TraceContext::New().ToTraceparent(), [this, id](ApiAnswer a) {
                          if (a.status >= 300) {
                              // Refused (the engine is full): the next heal pass tries again.
                              moving_.erase(id);
                          }
                      });
    }

    // Settles an evacuation or migration (from OnFinished).
    void MoveFinished(const workflow::FinishedEvent& ev, Res& s, bool ok, const json::object& claim,
                      std::vector<store::ResourceWrite>& writes, std::vector<store::EventRecord>& events) {
        const bool evacuate = ev.type == "server.evacuate";
        const std::string from = Str(s.body, "host");
        const std::string prev = Str(s.body, "_prev_status");
        if (ok) {
            const std::string to = Str(claim, "host");
            s.body["host"] = to;
            if (const Res* h = model_.Find(kHost, to)) {
                s.body["availability_zone"] = Str(h->body, "availability_zone");
            }
            s.body["status"] = "ACTIVE";
            s.body.erase("fault");
            s.body.erase("_evacuations");
            if (ev.type == "server.repair") {
                events.push_back(Event(kServer, s.id, s.project, "repaired",
                                       "its instance was missing on host " + to + ": built again there", ev.id,
                                       ev.trace));
            } else {
                events.push_back(Event(kServer, s.id, s.project, evacuate ? "evacuated" : "migrated",
                                       std::string(evacuate ? "evacuated" : "migrated") + " from host " + from +
                                           " to host " + to + ": ACTIVE with the same port, address and volumes",
                                       ev.id, ev.trace));
                (evacuate ? metrics_.evacuated : metrics_.migrated).Inc();
            }
            auto down = down_since_.find(from);
            if (evacuate && down != down_since_.end()) {
                metrics_.heal_duration.Observe(
                    std::chrono::duration<double>(SteadyClock::now() - down->second).count());
            }
        } else if (evacuate && Int(s.body, "_evacuations") + 1 < kMaxEvacuations) {
            // Most often the host it was moving to failed too. The server is back as it was on its
            // host: if that is still down the next heal pass evacuates it again (scheduler.move
            // also leaves a host that is no longer alive); if it came back meanwhile, its claim
            // returns there and the reconciler starts its fenced instance.
            s.body["_evacuations"] = Int(s.body, "_evacuations") + 1;
            s.body["status"] = prev;
            const scheduler::Claim* c = placement_.ClaimOf(s.id);
            if (c != nullptr && c->host != from && hosts_.StateOf(from) == HostState::kUp) {
                scheduler::Claim back = *c;
                back.host = from;
                placement_.Release(s.id);
                placement_.AddClaim(back);
                writes.push_back(PutClaim(back));
            }
            events.push_back(Event(kServer, s.id, s.project, "evacuation_retry",
                                   "server.evacuate failed (" + ev.reason + "); it is back on host " + from +
                                       (hosts_.StateOf(from) == HostState::kUp ? ", which is up again"
                                                                               : ", evacuated again at the next pass"),
                                   ev.id, ev.trace));
            heal_pending_ = true;
        } else {
            s.body["status"] = "ERROR";
            s.body["fault"] = json::object{{"message", ev.type + ": " + ev.reason}, {"workflow_id", ev.id}};
            events.push_back(Event(kServer, s.id, s.project, "error",
                                   ev.type + " failed: " + ev.reason + " (status ERROR)", ev.id, ev.trace));
            metrics_.move_failures.With({{"type", ev.type}}).Inc();
        }
        Touch(s);
        writes.push_back(Model::Write(s));
        // A stopped server is moved as a stopped server.
        if (ok && prev == "SHUTOFF") {
            s.body["status"] = "STOPPING";
            s.body["_prev_status"] = "ACTIVE";
            const std::string id = s.id;
            asio::post(io_, [this, weak = weak_from_this(), id] {
                auto self = weak.lock();
                Res* r = self ? model_.Find(kServer, id) : nullptr;
                if (r == nullptr || Str(r->body, "status") != "STOPPING") return;
                StartWorkflow(nullptr, "server.stop",
                              json::object{{"server_id", id}, {"host", Str(r->body, "host")}}, {r}, {},
                              [this, id] { Revert(kServer, id, "ACTIVE"); }, *r, r->project, "",
                              [](ApiAnswer) {});
            });
        }
    }

    // POST /v1/hosts/{name}/drain: disable the host and move every server off it (cold migration).
    void Drain(Res& h, ApiRequest& req, const Done& done) {
        auto body = ParseBody(req.body, {"reason"});
        if (!body) return done(ErrorAnswer(body.error()));
        auto reason = OptionalString(*body, "reason", 255);
        if (!reason) return done(ErrorAnswer(reason.error()));
        const std::string name = h.id;
        h.body["enabled"] = false;
        h.body["draining"] = true;
        h.body["disabled_reason"] = reason->value_or("drained");
        Touch(h);
        placement_.SetEnabled(name, false);
        size_t n = 0;
        for (const auto& [id, s] : model_.All(kServer)) {
            if (Str(s.body, "host") == name) ++n;
        }
        SaveHost(h, done,
                 {Event(kHost, name, "", "draining",
                        "draining: disabled; " + std::to_string(n) + " servers are migrated off it" +
                            (reason->has_value() ? " (" + **reason + ")" : ""),
                        "", req.traceparent)});
        Heal();
    }

    // A draining host with no server left is drained.
    void FinishDrains() {
        std::set<std::string> draining;
        for (const auto& [name, h] : model_.All(kHost)) {
            if (Bool(h.body, "draining")) draining.insert(name);
        }
        for (const auto& [id, s] : model_.All(kServer)) {
            draining.erase(Str(s.body, "host"));
        }
        for (const auto& name : draining) {
            Res& h = *model_.Find(kHost, name);
            h.body["draining"] = false;
            Touch(h);
            Persist({Model::Write(h)},
                    {Event(kHost, name, "", "drained", "drained: no server left; the host stays disabled", "", "")},
                    [](Status) {});
        }
    }

    // ---- workflows ----

    void RouteWorkflows(const Principal& who, ApiRequest& req, const Done& done) {
        const auto& p = req.path;
        const std::string& m = req.method;
        if (p.size() == 1 && m == "GET") {
            store::ListFilter f;
            for (const auto& [k, v] : req.query) {
                if (k == "state") {
                    f.state = store::ParseWorkflowState(v);
                    if (!f.state) return done(ErrorAnswer(FieldError("state", "unknown state " + v)));
                } else if (k == "type") {
                    f.type = v;
                } else if (k == "marker") {
                    f.after_id = v;
                } else if (k == "limit") {
                    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), f.limit);
                    if (ec != std::errc() || end != v.data() + v.size() || f.limit < 1 || f.limit > 1000) {
                        return done(ErrorAnswer(FieldError("limit", "must be an integer from 1 to 1000")));
                    }
                } else if (k == "project_id" && who.admin()) {
                    f.project = v;
                } else {
                    return done(ErrorAnswer(FieldError(k, "unknown query parameter")));
                }
            }
            if (!who.admin()) f.project = who.project_id;
            return OffThread(
                [this, f] { return store_.ListWorkflows(f); },
                [done, limit = f.limit](Result<std::vector<store::WorkflowSummary>> r) {
                    if (!r) return done(ErrorAnswer(r.error()));
                    json::array items;
                    for (const auto& w : *r) {
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
                        items.push_back(std::move(o));
                    }
                    json::object o{{"workflows", items}};
                    if (static_cast<int>(r->size()) == limit && !r->empty()) o["next_marker"] = r->back().id;
                    done(JsonAnswer(200, o));
                });
        }
        if (p.size() < 2) return done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1/workflows")));
        const std::string id = p[1];
        const bool show = p.size() == 2 && m == "GET";
        const bool cancel = p.size() == 3 && p[2] == "cancel" && m == "POST";
        if (!show && !cancel) {
            return done(ErrorAnswer(Error(ErrorCode::kNotFound, "no route " + m + " /v1/workflows/" + id)));
        }
        if (cancel) {
            if (auto st = RequireWriter(who); !st) return done(ErrorAnswer(st.error()));
        }
        OffThread([this, id] { return store_.GetWorkflow(id); },
                  [this, who, id, cancel, done](Result<store::WorkflowRecord> r) {
                      if (!r || (!who.admin() && r->project != who.project_id)) {
                          return done(r || r.error().code == ErrorCode::kNotFound ? NotFound("workflow", id)
                                                                                    : ErrorAnswer(r.error()));
                      }
                      if (!cancel) return done(Wrap(200, "workflow", WorkflowView(*r)));
                      engine_.Cancel(id, [done, id](Status st) {
                          done(st ? JsonAnswer(202, json::object{{"workflow", json::object{{"id", id}, {"cancel_requested", true}}}})
                                  : ErrorAnswer(st.error()));
                      });
                  });
    }

    json::object WorkflowView(const store::WorkflowRecord& w) const {
        const workflow::Definition* def = registry_.Get(w.type, w.version);
        json::object o{{"id", w.id},
                       {"type", w.type},
                       {"version", w.version},
                       {"state", store::ToString(w.state)},
                       {"reason", w.reason},
                       {"project_id", w.project},
                       {"cancel_requested", w.cancel_requested},
                       {"created_at", Rfc3339(w.created_ms)},
                       {"updated_at", Rfc3339(w.updated_ms)},
                       {"trace_id", observe::TraceIdOf(w.trace)},
                       {"traceparent", w.trace},
                       {"resource_kind", w.resource_kind},
                       {"resource_id", w.resource_id}};
        if (w.finished_ms != 0) o["finished_at"] = Rfc3339(w.finished_ms);
        boost::system::error_code ec;
        json::value input = json::parse(w.input, ec);
        o["input"] = ec ? json::value(w.input) : input;
        json::array steps;
        for (size_t i = 0; i < w.steps.size(); ++i) {
            const store::StepRecord& s = w.steps[i];
            json::object so{{"name", def != nullptr && i < def->steps.size() ? def->steps[i].name : std::to_string(i)},
                            {"action", def != nullptr && i < def->steps.size() ? def->steps[i].action.FullName() : ""},
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

    // Runs a blocking store read on the read pool, then `then` on the io thread.
    template <typename F, typename Then>
    void OffThread(F f, Then then) {
        asio::post(reads_, [this, weak = weak_from_this(), f = std::move(f), then = std::move(then)]() mutable {
            auto r = f();
            asio::post(io_, [weak, r = std::move(r), then = std::move(then)]() mutable {
                if (weak.lock()) then(std::move(r));
            });
        });
    }

    // ---- in-process services ----

    void SchedulerAction(ActionCall call, ServiceClient::Callback done) {
        auto reply = [this, done](Result<ActionReply> r) {
            asio::post(io_, [done, r = std::move(r)]() mutable { done(std::move(r)); });
        };
        boost::system::error_code ec;
        json::value v = json::parse(call.input, ec);
        if (ec || !v.is_object()) {
            return reply(MakeError(ErrorCode::kInvalidArgument, "scheduler: input must be a JSON object"));
        }
        const json::object& in = v.get_object();
        const std::string server_id = Str(in, "server_id");
        if (server_id.empty()) {
            return reply(MakeError(ErrorCode::kInvalidArgument, "server_id: required"));
        }
        if (call.action == "release") {
            const bool had = placement_.Release(server_id);
            json::object out{{"server_id", server_id}, {"released", had}};
            if (!had) {
                return reply(ActionReply{false, json::serialize(out)});
            }
            model_.Erase(kClaim, server_id);
            return Persist({Model::EraseWrite(kClaim, server_id)}, [reply, out](Status st) {
                reply(st ? Result<ActionReply>(ActionReply{false, json::serialize(out)}) : MakeError(st.error()));
            });
        }
        if (call.action != "claim" && call.action != "move") {
            return reply(MakeError(ErrorCode::kNotFound, "scheduler: no action " + call.action +
                                                             " (claims are never long: nothing to poll)"));
        }
        scheduler::PlacementRequest pr;
        pr.server_id = server_id;
        pr.vcpus = Int(in, "vcpus");
        pr.ram_mb = Int(in, "ram_mb");
        pr.disk_gb = Int(in, "disk_gb");
        pr.availability_zone = Str(in, "availability_zone");
        pr.required_traits = StrList(in, "traits");
        pr.group_id = Str(in, "group_id");
        const std::string policy = Str(in, "policy");
        pr.policy = policy == "affinity"        ? scheduler::GroupPolicy::kAffinity
                    : policy == "anti-affinity" ? scheduler::GroupPolicy::kAntiAffinity
                                                : scheduler::GroupPolicy::kNone;
        pr.weigher = Str(in, "weigher") == "pack" ? scheduler::Weigher::kPack : scheduler::Weigher::kSpread;
        // move: the claim leaves `from_host` (down or draining, so placement skips it) for another
        // host. Idempotent: a claim already elsewhere is the answer; if no host fits, the claim
        // stays where it was and the answer is retryable (capacity may come back).
        std::optional<scheduler::Claim> moved_from;
        if (call.action == "move") {
            const scheduler::Claim* now = placement_.ClaimOf(server_id);
            const std::string from = Str(in, "from_host");
            // Also off a host that failed since an earlier move chose it (a retried evacuation).
            const scheduler::HostInfo* at = now != nullptr ? placement_.FindHost(now->host) : nullptr;
            if (now != nullptr && (now->host == from || (!from.empty() && (at == nullptr || !at->alive)))) {
                moved_from = *now;
                placement_.Release(server_id);
            }
        }
        const bool existed = placement_.ClaimOf(server_id) != nullptr;
        scheduler::FailureReason why = scheduler::FailureReason::kNone;
        const SteadyTime started = SteadyClock::now();
        auto claim = placement_.ClaimFor(pr, &why);
        if (!claim && moved_from) {
            placement_.AddClaim(*moved_from);
            claim = MakeError(ErrorCode::kUnavailable, "no host to move to: " + claim.error().message);
        }
        if (!existed) {  // a replayed claim decides nothing
            metrics_.placement_duration.Observe(
                std::chrono::duration<double>(SteadyClock::now() - started).count());
            (claim ? metrics_.placed : metrics_.placement_failed).Inc();
        }
        if (!claim) {
            metrics_.placement_failures.With({{"reason", std::string(scheduler::ToString(why))}}).Inc();
            observe::Log("scheduler").info("server {}: {}", server_id, claim.error().message);
            return reply(MakeError(claim.error()));
        }
        json::object out{{"server_id", claim->server_id}, {"host", claim->host}};
        if (existed) {
            return reply(ActionReply{false, json::serialize(out)});
        }
        Persist({PutClaim(*claim)}, [reply, out](Status st) {
            reply(st ? Result<ActionReply>(ActionReply{false, json::serialize(out)}) : MakeError(st.error()));
        });
    }

    // A claim's record in the model; returns its durable form.
    store::ResourceWrite PutClaim(const scheduler::Claim& c) {
        Res rec{std::string(kClaim), c.server_id, "", {}};
        rec.body = json::object{{"server_id", c.server_id}, {"host", c.host},       {"vcpus", c.vcpus},
                                {"ram_mb", c.ram_mb},       {"disk_gb", c.disk_gb}, {"group_id", c.group_id}};
        store::ResourceWrite w = Model::Write(rec);
        model_.Put(std::move(rec));
        return w;
    }

    // The compute agent serving the host the call names; nullptr with `error` set if none.
    ServiceClient* ComputeFor(const ActionCall& call, Error* error, bool* nothing_to_do) {
        boost::system::error_code ec;
        json::value v = json::parse(call.input, ec);
        const std::string host = !ec && v.is_object() ? Str(v.get_object(), "host") : "";
        if (host.empty()) {
            // A server that was never placed has no instance anywhere: deleting it is done.
            *nothing_to_do = call.action == "delete_instance";
            *error = Error(ErrorCode::kInvalidArgument, "compute: host: required");
            return nullptr;
        }
        const Res* h = model_.Find(kHost, host);
        auto url = h != nullptr ? ParseUrl(Str(h->body, "url")) : std::nullopt;
        if (!url) {
            *error = Error(ErrorCode::kFailedPrecondition, "compute: host " + host + " is not registered");
            return nullptr;
        }
        if (hosts_.StateOf(host) == HostState::kDown) {
            // A down host has fenced itself: its instances are stopped, and the reconciler removes
            // what is stale when it comes back. Removing or stopping is therefore done; anything
            // that needs the host running is refused for good (the workflow rolls back).
            if (call.action == "delete_instance" || call.action == "stop_instance") {
                *nothing_to_do = true;
                return nullptr;
            }
            *error = Error(ErrorCode::kFailedPrecondition, "compute: host " + host + " is down");
            return nullptr;
        }
        const std::string key = Str(h->body, "url");
        auto it = compute_clients_.find(key);
        if (it == compute_clients_.end()) {
            it = compute_clients_
                     .emplace(key, services::kit::MakeHttpServiceClient(io_, url->first, url->second, "compute",
                                                                        options_.compute_connections,
                                                                        options_.service_token))
                     .first;
        }
        return it->second.get();
    }

    // The answer to a delete or stop that has nothing to do (never placed, or a fenced host).
    static std::string NothingToDo(const ActionCall& call) {
        boost::system::error_code ec;
        json::value v = json::parse(call.input, ec);
        const json::object in = !ec && v.is_object() ? v.get_object() : json::object{};
        if (call.action == "stop_instance") {
            return json::serialize(
                json::object{{"id", Str(in, "id")}, {"host", Str(in, "host")}, {"state", "SHUTOFF"}});
        }
        return json::serialize(json::object{{"id", Str(in, "id")}, {"deleted", false}});
    }

    void ComputeCall(ActionCall call, ServiceClient::Callback done, bool status) {
        Error error(ErrorCode::kInternal, "");
        bool nothing_to_do = false;
        ServiceClient* client = ComputeFor(call, &error, &nothing_to_do);
        if (client == nullptr) {
            Result<ActionReply> r = nothing_to_do ? Result<ActionReply>(ActionReply{false, NothingToDo(call)})
                                                  : Result<ActionReply>(MakeError(error));
            return asio::post(io_, [done, r = std::move(r)]() mutable { done(std::move(r)); });
        }
        if (status) {
            client->Status(std::move(call), std::move(done));
        } else {
            client->Invoke(std::move(call), std::move(done));
        }
    }

    // ---- persistence ----

    void Persist(std::vector<store::ResourceWrite> writes, std::function<void(Status)> done) {
        Persist(std::move(writes), {}, std::move(done));
    }

    // Resource writes and the events that report them, in one transaction.
    void Persist(std::vector<store::ResourceWrite> writes, std::vector<store::EventRecord> events,
                 std::function<void(Status)> done) {
        store::WriteGroup g;
        g.resources = std::move(writes);
        g.events = std::move(events);
        std::vector<std::string> types;
        for (const auto& e : g.events) {
            types.push_back(e.type);
        }
        store_.Commit(std::move(g), [this, weak = weak_from_this(), done = std::move(done),
                                     types = std::move(types)](Status st) mutable {
            if (!st) {
                // Memory is ahead of the store now; only a restart (which reloads) makes them equal.
                observe::Log("cloud").critical("store write failed: {}", st.error().ToString());
                COGS_CHECK(false && "the store refused a resource write");
            }
            asio::post(
                io_, [weak, done = std::move(done), st = std::move(st), types = std::move(types)]() mutable {
                    auto self = weak.lock();
                    if (!self) return;
                    for (const auto& type : types) {
                        self->CountEvent(type);
                    }
                    done(std::move(st));
                });
        });
    }

    Status PersistBlocking(std::vector<store::ResourceWrite> writes) {
        store::WriteGroup g;
        g.resources = std::move(writes);
        std::promise<Status> p;
        auto f = p.get_future();
        store_.Commit(std::move(g), [&p](Status st) { p.set_value(std::move(st)); });
        return f.get();
    }

    Cloud::Stats stats() const {
        Cloud::Stats s;
        s.servers = model_.All(kServer).size();
        s.hosts = model_.All(kHost).size();
        for (const auto& [name, r] : model_.All(kHost)) {
            s.hosts_up += HostUp(name) ? 1 : 0;
        }
        return s;
    }

private:
    asio::io_context& io_;
    store::Store& store_;
    workflow::Engine& engine_;
    const workflow::Registry& registry_;
    CloudOptions options_;
    Model model_;
    scheduler::Placement placement_;
    Liveness hosts_;
    std::map<std::string, SteadyTime> down_since_;  // down hosts: their last renewal (time to heal)
    bool evacuation_paused_ = false;
    bool heal_pending_ = false;
    std::deque<Move> moves_;        // waiting for a slot (evacuation_parallelism)
    std::set<std::string> queued_;  // server ids in moves_
    std::set<std::string> moving_;  // servers whose evacuation or migration runs
    Reconciler reconciler_;
    std::set<std::string> acting_;      // reconciler actions with a workflow in flight (their key)
    std::set<std::string> host_scans_;  // hosts whose inventory is being read for a host pass
    std::map<std::string, std::shared_ptr<services::kit::HttpReader>> readers_;  // by URL
    std::map<std::string, std::string> transitional_seen_;  // "kind/id" -> workflow id, last pass
    std::map<std::string, std::shared_ptr<ServiceClient>> compute_clients_;
    asio::steady_timer liveness_timer_;
    asio::steady_timer reconcile_timer_;
    asio::steady_timer prune_;  // event retention
    // Handles looked up once (docs/metrics.md, "the cloud"); no-ops without a registry.
    struct {
        observe::Gauge hosts_up, hosts_down, hosts_disabled;
        observe::Histogram placement_duration;
        observe::Counter placed, placement_failed;
        observe::CounterFamily placement_failures;
        observe::GaugeFamily resources;
        observe::CounterFamily events;
        observe::Gauge hosts_suspect, evacuation_paused;
        observe::Counter detections, evacuated, migrated, restarts;
        observe::CounterFamily moves_started, move_failures, repairs;
        observe::Histogram heal_duration;
    } metrics_;
    std::map<std::pair<std::string, std::string>, observe::Gauge> resource_gauges_;  // (kind, status)
    std::unordered_map<std::string, observe::Counter> event_counters_;               // by type
    asio::thread_pool reads_;  // blocking store reads (workflow inspection, events), off the io thread
};

// ---------------------------------------------------------------------------------------------

namespace {

class InProcessService final : public ServiceClient {
public:
    using Fn = std::function<void(ActionCall, Callback, bool status)>;
    using EndpointFn = std::function<std::string(const ActionCall&)>;
    explicit InProcessService(Fn fn, EndpointFn endpoint = nullptr)
        : fn_(std::move(fn)), endpoint_(std::move(endpoint)) {}
    void Invoke(ActionCall call, Callback done) override { fn_(std::move(call), std::move(done), false); }
    void Status(ActionCall call, Callback done) override { fn_(std::move(call), std::move(done), true); }
    std::string Endpoint(const ActionCall& call) const override { return endpoint_ ? endpoint_(call) : ""; }

private:
    Fn fn_;
    EndpointFn endpoint_;
};

// The compute host a call names: each agent has its own circuit breaker (a dead host does not
// stop calls to the others).
std::string HostOf(const ActionCall& call) {
    boost::system::error_code ec;
    json::value v = json::parse(call.input, ec);
    return !ec && v.is_object() ? Str(v.get_object(), "host") : "";
}

}  // namespace

Cloud::Cloud(asio::io_context& io, store::Store& store, workflow::Engine& engine, const workflow::Registry& registry,
             CloudOptions options)
    : impl_(std::make_shared<Impl>(io, store, engine, registry, std::move(options))) {
    impl_->Start();
}

Cloud::~Cloud() { impl_->Stop(); }

Status Cloud::Load() { return impl_->Load(); }
Result<std::string> Cloud::Bootstrap() { return impl_->Bootstrap(); }

std::shared_ptr<ServiceClient> Cloud::SchedulerService() {
    std::weak_ptr<Impl> weak = impl_;
    return std::make_shared<InProcessService>([weak](ActionCall call, ServiceClient::Callback done, bool status) {
        auto self = weak.lock();
        if (!self) return;
        if (status) {
            // Claims answer at once: there is never an accepted claim to poll.
            call.action = "status";
        }
        self->SchedulerAction(std::move(call), std::move(done));
    });
}

std::shared_ptr<ServiceClient> Cloud::ComputeService() {
    std::weak_ptr<Impl> weak = impl_;
    return std::make_shared<InProcessService>(
        [weak](ActionCall call, ServiceClient::Callback done, bool status) {
            if (auto self = weak.lock()) {
                self->ComputeCall(std::move(call), std::move(done), status);
            }
        },
        HostOf);
}

Result<Principal> Cloud::Authenticate(std::string_view bearer_token) const { return impl_->Authenticate(bearer_token); }

void Cloud::Handle(const Principal& who, ApiRequest request, std::function<void(ApiAnswer)> done) {
    impl_->Handle(who, std::move(request), std::move(done));
}

Cloud::Stats Cloud::stats() const { return impl_->stats(); }

}  // namespace cogs::cloud
