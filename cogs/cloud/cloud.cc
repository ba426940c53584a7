// The facade: builds the parts of the control plane on one Context and wires them together (see
// README.md for the map). Nothing here decides anything about a resource.
#include "cogs/cloud/cloud.h"

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <set>

#include "cogs/base/secret.h"
#include "cogs/cloud/api/http_api.h"
#include "cogs/cloud/api/routes.h"
#include "cogs/cloud/core/context.h"
#include "cogs/cloud/core/credentials.h"
#include "cogs/cloud/heal/healer.h"
#include "cogs/cloud/health/host_monitor.h"
#include "cogs/cloud/openstack/face.h"
#include "cogs/cloud/reconcile/reconcile_loop.h"
#include "cogs/cloud/resources/audit.h"
#include "cogs/cloud/resources/catalog.h"
#include "cogs/cloud/resources/consoles.h"
#include "cogs/cloud/resources/events.h"
#include "cogs/cloud/resources/hosts.h"
#include "cogs/cloud/resources/idempotency.h"
#include "cogs/cloud/resources/images.h"
#include "cogs/cloud/resources/kinds.h"
#include "cogs/cloud/resources/networks.h"
#include "cogs/cloud/resources/reads.h"
#include "cogs/cloud/resources/servers.h"
#include "cogs/cloud/resources/volumes.h"
#include "cogs/cloud/resources/workflows.h"
#include "cogs/cloud/ui/console.h"
#include "cogs/scheduler/scheduler_service.h"
#include "cogs/services/compute/router.h"

namespace cogs::cloud {

namespace {

// Claims are records of the store (kind "claim"), committed like any other. In memory they are
// Placement's alone: a copy in the model was read by nobody and cost ~0.7 KiB per server (the
// README's "Memory").
class ModelClaims final : public scheduler::ClaimLedger {
public:
    explicit ModelClaims(Context& ctx) : ctx_(ctx) {}
    void Put(const scheduler::Claim& claim, std::function<void(Status)> done) override {
        ctx_.Persist({Model::Write(ClaimRecord(claim))}, {}, std::move(done));
    }
    void Erase(const std::string& server_id, std::function<void(Status)> done) override {
        ctx_.Persist({Model::EraseWrite(kClaim, server_id)}, {}, std::move(done));
    }

private:
    Context& ctx_;
};

}  // namespace

class Cloud::Impl {
public:
    Impl(boost::asio::io_context& io, store::Store& store, workflow::Engine& engine,
         const workflow::Registry& registry, CloudOptions options)
        : ctx(io, store, engine, registry, std::move(options)),
          monitor(ctx),
          healer(ctx, monitor),
          reconcile(ctx, monitor, healer),
          catalog(ctx),
          networks(ctx),
          volumes(ctx),
          servers(ctx, volumes, healer),
          hosts(ctx, catalog, monitor, healer, reconcile),
          reads(ctx),
          history(ctx),
          workflows(ctx),
          keys(ctx),
          consoles(ctx, [this](const std::string& host) { return RouteTo(host); }),
          images(ctx),
          claims(ctx),
          audit(ctx),
          pruner(io, store, ctx.options.workflow_retention, &ctx.clock, ctx.metrics()),
          kinds(ctx, reads, history),
          router(ApiRoutes({ctx, reads, catalog, networks, volumes, servers, hosts, history, workflows, keys,
                            consoles, images, audit, kinds})),
          openstack(ctx, router, catalog),
          api(
              io, router, [this](std::string_view bearer) { return catalog.Authenticate(bearer); },
              ctx.options.admission, ctx.clock, ctx.metrics(),
              [&store]() -> std::optional<Error> {
                  if (store.Writable()) return std::nullopt;
                  return store.WhyNotWritable();
              }),
          resources_gauge(observe::GaugeOf(ctx.metrics(), "cogs_resources",
                                           "Desired-state records by kind and status.")) {
        // A declared kind may not take a collection of the API's own.
        std::set<std::string> builtin;
        for (const Route& r : router.routes()) {
            const std::vector<std::string> segments = PathSegments(r.pattern);
            if (segments.size() >= 2 && !segments[1].starts_with("{")) builtin.insert(segments[1]);
        }
        kinds.SetBuiltinCollections(std::move(builtin));
        api.SetFace(openstack.Face());
        api.SetStatic({ui::Owns, ui::Serve});
        api.SetAuditor([this](store::AuditRecord entry, const http::Response& answer) {
            audit.Record(std::move(entry), answer);
        });
        monitor.OnChange([this](const health::Liveness::Change& c) {
            healer.OnHostChange(c);
            if (c.to == health::HostState::kUp) reconcile.ReconcileHost(c.host, "it is up again");
        });
        monitor.OnTick([this] { healer.OnTick(); });
        engine.OnFinished(ctx.Guard([this](const workflow::FinishedEvent& ev) { ctx.Settle(ev); }));
        if (ctx.metrics() != nullptr) {
            // Render() runs on the io thread in cogsd (the /metrics handler), where the model lives.
            ctx.metrics()->OnCollect(ctx.Guard([this] { SampleGauges(); }));
        }
    }

    Status Load();
    Result<std::string> Bootstrap(std::string_view current);
    void SampleGauges();
    // Where host `host`'s agent is and whether the host is down; nullopt for an unknown host.
    std::optional<services::compute::HostRoute> RouteTo(const std::string& host) const {
        const Res* h = ctx.model.Find(kHost, host);
        if (h == nullptr) return std::nullopt;
        return services::compute::HostRoute{Str(h->body, "url"),
                                            monitor.StateOf(host) == health::HostState::kDown,
                                            monitor.LeaseEpoch(host), TokenFor(ctx, "compute", host)};
    }

    Context ctx;
    health::HostMonitor monitor;
    heal::Healer healer;
    reconcile::ReconcileLoop reconcile;
    Catalog catalog;
    Networks networks;
    Volumes volumes;
    Servers servers;
    Hosts hosts;
    Reads reads;
    History history;
    Workflows workflows;
    IdempotencyKeys keys;
    Consoles consoles;
    ImageFiles images;
    ModelClaims claims;
    AuditLog audit;
    workflow::WorkflowPruner pruner;
    Kinds kinds;
    Router router;
    OpenStackFace openstack;
    HttpApi api;
    observe::GaugeFamily resources_gauge;
    std::map<std::pair<std::string, std::string>, observe::Gauge> resource_gauges;  // (kind, status)
    std::shared_ptr<workflow::ServiceClient> scheduler_service;
    std::shared_ptr<workflow::ServiceClient> compute_router;
};

Status Cloud::Impl::Load() {
    COGS_ASSIGN_OR_RETURN(auto all, ctx.store.LoadResources());
    std::vector<store::ResourceWrite> expired;
    const int64_t now = ctx.clock.WallMs();
    for (auto& rec : all) {
        boost::system::error_code ec;
        json::value v = json::parse(rec.body, ec);
        if (ec || !v.is_object()) {
            return MakeError(ErrorCode::kInternal,
                             "stored " + rec.kind + " " + rec.id + " is not a JSON object");
        }
        Res r{rec.kind, rec.id, rec.project, std::move(v.get_object())};
        if (r.kind == kIdempotency && IdempotencyKeys::Expired(ctx, r, now)) {
            expired.push_back(Model::EraseWrite(r.kind, r.id));
            continue;
        }
        if (r.kind == kToken) {
            ctx.model.token_by_hash[Str(r.body, "_hash")] = r.id;
            if (Int(r.body, "_old_expires_ms") > now) {  // a rotation's grace still runs
                ctx.model.token_by_hash[Str(r.body, "_old_hash")] = r.id;
            }
        } else if (r.kind == kHost) {
            ctx.placement.UpsertHost(Hosts::InfoOf(r));
            monitor.Track(r.id);
        } else if (r.kind == kClaim) {
            ctx.placement.AddClaim(ClaimOf(r));
            continue;  // Placement's alone (ModelClaims)
        } else if (r.kind == kServer && (r.is(ServerStatus::kRebuild) || r.is(ServerStatus::kMigrating))) {
            healer.Resumed(r.id);  // its workflow resumes (or is settled below)
        }
        // Loaded usage counts even over the limit (limits may have been lowered since).
        ctx.model.Add(r.project, Model::HeldBy(r));
        ctx.model.Load(std::move(r));
    }
    if (!expired.empty() && ctx.store.Writable()) {  // else at a later start: they are refused meanwhile
        COGS_TRY(ctx.PersistBlocking(std::move(expired)));
    }
    images.CollectOrphans();
    // Resources whose workflow ended while we were down take its outcome now. (A walk over every
    // record of the status kinds, on purpose: once, at start.)
    // (A server.create is the workflow of its server, port and volumes: each id once.)
    std::set<std::string> settle;
    for (auto kind : kStatusKinds) {
        for (const auto& [id, r] : ctx.model.All(kind)) {
            if (std::string wf = r.awaited_workflow(); !wf.empty()) settle.insert(std::move(wf));
        }
    }
    // The rest resume: they count against their project's workflows in flight until they end.
    for (auto kind : kStatusKinds) {
        for (const auto& [id, r] : ctx.model.All(kind)) {
            if (std::string wf = r.awaited_workflow(); !wf.empty()) ctx.CountWorkflow(wf, r.project);
        }
    }
    for (const auto& ev : ctx.EndedWorkflows({settle.begin(), settle.end()})) {
        ctx.Settle(ev);
    }
    return Ok();
}

Result<std::string> Cloud::Impl::Bootstrap(std::string_view current) {
    const int64_t now = ctx.clock.WallMs();
    const auto valid = [now](const Res& t) {
        const int64_t expires = Int(t.body, "_expires_ms");
        return expires == 0 || expires > now;
    };
    // The token the bootstrap file holds, if it is still a bootstrap token of this cloud.
    const Res* held = nullptr;
    if (!current.empty()) {
        auto it = ctx.model.token_by_hash.find(Sha256Hex(current));
        held = it == ctx.model.token_by_hash.end() ? nullptr : ctx.model.Find(kToken, it->second);
        if (held != nullptr &&
            (Str(held->body, "_hash") != Sha256Hex(current) || Str(held->body, "name") != "bootstrap" ||
             Str(held->body, "role") != "admin")) {
            held = nullptr;  // rotated away, or not the bootstrap token: an operator's choice stands
        }
    }
    bool renew = false;
    if (held != nullptr) {
        const int64_t expires = Int(held->body, "_expires_ms");
        const int64_t half_ttl =
            std::chrono::duration_cast<std::chrono::milliseconds>(ctx.options.admin_token_ttl).count() / 2;
        // On a full disk a token that still works is kept: the start must not fail for a renewal.
        renew = expires != 0 && expires - now < half_ttl && (!valid(*held) || ctx.store.Writable());
    } else {
        renew = true;
        for (const auto& [id, t] : ctx.model.All(kToken)) {
            if (Str(t.body, "role") == "admin" && valid(t)) {
                renew = false;
                break;
            }
        }
    }
    if (!renew) {
        return std::string();
    }
    std::vector<store::ResourceWrite> writes;
    // Expired bootstrap tokens: nobody can use them any more; the new one replaces them.
    std::vector<std::string> gone;
    for (const auto& [id, t] : ctx.model.All(kToken)) {
        if (Str(t.body, "name") == "bootstrap" && Str(t.body, "role") == "admin" && !valid(t)) {
            gone.push_back(id);
        }
    }
    for (const std::string& id : gone) {
        const Res* t = ctx.model.Find(kToken, id);
        ctx.model.token_by_hash.erase(Str(t->body, "_hash"));
        ctx.model.token_by_hash.erase(Str(t->body, "_old_hash"));
        ctx.model.Erase(kToken, id);
        writes.push_back(Model::EraseWrite(kToken, id));
    }
    std::string project_id;
    if (const Res* admin = ctx.model.FindByName(kProject, "admin")) {
        project_id = admin->id;
    } else {
        Res p = catalog.NewProject("admin", "the operators' project");
        project_id = p.id;
        writes.push_back(Model::Write(p));
        ctx.model.Put(std::move(p));
    }
    auto [token, secret] = catalog.NewToken(project_id, Role::kAdmin, "bootstrap", 0);
    writes.push_back(Model::Write(token));
    ctx.model.token_by_hash[Str(token.body, "_hash")] = token.id;
    ctx.model.Put(std::move(token));
    COGS_TRY(ctx.PersistBlocking(std::move(writes)));
    return secret;
}

// cogs_hosts{state} and cogs_resources{kind,status}, sampled from the model at a scrape: the
// counts the model keeps as records change (no walk over the records), the hosts' states.
void Cloud::Impl::SampleGauges() {
    monitor.SampleGauges();
    std::map<std::pair<std::string, std::string>, int64_t> counts;
    for (auto kind : kStatusKinds) {
        for (const auto& [status, n] : ctx.model.StatusCounts(kind)) {
            counts[{std::string(kind), status}] = n;
        }
    }
    // A status that emptied since the last scrape shows 0 rather than its last value.
    for (auto& [key, gauge] : resource_gauges) {
        if (!counts.contains(key)) gauge.Set(0);
    }
    for (const auto& [key, n] : counts) {
        auto it = resource_gauges.find(key);
        if (it == resource_gauges.end()) {
            it = resource_gauges
                     .emplace(key, resources_gauge.With({{"kind", key.first}, {"status", key.second}}))
                     .first;
        }
        it->second.Set(static_cast<double>(n));
    }
}

Cloud::Cloud(boost::asio::io_context& io, store::Store& store, workflow::Engine& engine,
             const workflow::Registry& registry, CloudOptions options)
    : impl_(std::make_unique<Impl>(io, store, engine, registry, std::move(options))) {}

Cloud::~Cloud() { Stop(); }

Status Cloud::Load() { return impl_->Load(); }
Status Cloud::SetKinds(const std::vector<KindSpec>& kinds, bool apply) {
    return impl_->kinds.Set(kinds, apply);
}
Result<std::string> Cloud::Bootstrap(std::string_view current) { return impl_->Bootstrap(current); }

void Cloud::Start() {
    impl_->monitor.Start();
    impl_->healer.Start();
    impl_->reconcile.Start();
    impl_->history.Start();
    impl_->audit.Start();
    impl_->pruner.Start();
    impl_->keys.Start();
}

void Cloud::Stop() {
    impl_->keys.Stop();
    impl_->pruner.Stop();
    impl_->audit.Stop();
    impl_->history.Stop();
    impl_->reconcile.Stop();
    impl_->healer.Stop();
    impl_->monitor.Stop();
}

std::shared_ptr<workflow::ServiceClient> Cloud::SchedulerService() {
    Impl& i = *impl_;
    if (!i.scheduler_service) {
        i.scheduler_service = scheduler::MakeSchedulerService(i.ctx.io, i.ctx.placement, i.claims,
                                                              i.ctx.clock, i.ctx.metrics());
    }
    return i.scheduler_service;
}

std::shared_ptr<workflow::ServiceClient> Cloud::ComputeService() {
    Impl& i = *impl_;
    if (!i.compute_router) {
        i.compute_router = services::compute::MakeComputeRouter(
            i.ctx.io, [&i](const std::string& host) { return i.RouteTo(host); },
            i.ctx.options.compute_connections, i.ctx.options.service_tls);
    }
    return i.compute_router;
}

http::Handler Cloud::Handler() { return impl_->api.Handler(); }

}  // namespace cogs::cloud
