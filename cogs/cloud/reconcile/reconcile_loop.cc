#include "cogs/cloud/reconcile/reconcile_loop.h"

#include <boost/json/serialize.hpp>

#include "cogs/base/check.h"
#include "cogs/cloud/core/credentials.h"
#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/services/kit/http_client.h"

namespace cogs::cloud::reconcile {

// One scan: the inventories asked for, as they come back.
struct ReconcileLoop::Scan {
    Actual actual;
    int pending = 0;
    std::string what;      // "periodic" or "hosts" (ReconcileHost)
    int64_t begun_ms = 0;  // wall ms before its first inventory was asked for
};

// How each reconciler action runs (workflows/cloud/heal.yaml); kRepairServer goes to the healer.
struct Repair {
    ActionKind kind;
    const char* type;           // the workflow
    std::string_view resource;  // the kind its events are about
    bool orphan;                // it removes what nothing owns: its event is orphan_removed
    bool remake;                // input.request: create_<resource>'s input as the model has it
    const char* with_server;    // the input field that carries Action::server_id, or nullptr
    bool with_host;             // input.host: Action::host
};
constexpr Repair kRepairs[] = {
    {ActionKind::kDeleteInstance, "heal.delete_instance", "instance", true, false, nullptr, true},
    {ActionKind::kStartInstance, "heal.start_instance", kServer, false, false, nullptr, true},
    {ActionKind::kDeletePort, "heal.delete_port", kPort, true, false, nullptr, false},
    {ActionKind::kRepairPort, "heal.repair_port", kPort, false, true, nullptr, false},
    {ActionKind::kSetPortDevice, "heal.set_port_device", kPort, false, false, "device_id", false},
    {ActionKind::kDeleteNetwork, "heal.delete_network", kNetwork, true, false, nullptr, false},
    {ActionKind::kRepairNetwork, "heal.repair_network", kNetwork, false, true, nullptr, false},
    {ActionKind::kDeleteSubnet, "heal.delete_subnet", kSubnet, true, false, nullptr, false},
    {ActionKind::kRepairSubnet, "heal.repair_subnet", kSubnet, false, true, nullptr, false},
    {ActionKind::kDeleteVolume, "heal.delete_volume", kVolume, true, false, nullptr, false},
    // Detached from a server cogsd lacks: an orphan attachment (decided below); from one it has: a
    // wrong one.
    {ActionKind::kDetachVolume, "heal.detach_volume", kVolume, false, false, "server_id", false},
    {ActionKind::kAttachVolume, "heal.attach_volume", kVolume, false, false, "server_id", true},
    {ActionKind::kRepairVolume, "heal.repair_volume", kVolume, false, true, nullptr, false},
};

ReconcileLoop::ReconcileLoop(Context& ctx, health::HostMonitor& hosts, heal::Healer& healer)
    : ctx_(ctx),
      hosts_(hosts),
      healer_(healer),
      reconciler_(ReconcilerOptions{std::chrono::duration_cast<Millis>(ctx.options.orphan_grace), 2}),
      timer_(ctx.clock.NewTimer(ctx.io)),
      repairs_(observe::CounterOf(ctx.metrics(), "cogs_heal_repairs_total",
                                  "Reconciler actions started, by kind (drift and orphans).")),
      interval_gauge_(observe::GaugeOf(ctx.metrics(), "cogs_reconcile_interval_seconds",
                                       "The time between two periodic reconcile passes now (it grows "
                                       "with the number of records).")
                          .With({})) {
    for (const Repair& r : kRepairs) {
        ctx_.OnSettle(r.type, [this](Settlement& st) { SettleRepair(st); });
    }
}

ReconcileLoop::~ReconcileLoop() { Stop(); }

void ReconcileLoop::Start() {
    const Duration interval = PassInterval();
    interval_gauge_.Set(std::chrono::duration<double>(interval).count());
    timer_->ArmAfter(interval, [this] {
        Pass();
        Start();
    });
}

Duration ReconcileLoop::PassInterval() const {
    const Duration base = ctx_.options.reconcile_every;
    const int64_t rate = ctx_.options.reconcile_records_per_s;
    if (rate <= 0) return base;
    int64_t records = 0;
    for (std::string_view kind : {kServer, kPort, kVolume, kNetwork, kSubnet}) {
        records += static_cast<int64_t>(ctx_.model.All(kind).size());
    }
    const int64_t needed_ms = (records * 1000 + rate - 1) / rate;
    return std::max<Duration>(base, std::chrono::milliseconds((needed_ms + 99) / 100 * 100));
}

void ReconcileLoop::Stop() { timer_->Cancel(); }

// The periodic pass: stuck work, the healer, then every inventory (compute agents of up hosts only:
// a suspect or down host's instances are fenced and its answers stale).
void ReconcileLoop::Pass() {
    healer_.Heal();
    SettleStuck();
    if (periodic_scan_running_) {
        observe::Log("cloud").info(
            "reconcile: the last pass's inventories are not all in; this pass reads none");
        return;
    }
    auto scan = std::make_shared<Scan>();
    scan->begun_ms = ctx_.clock.WallMs();
    scan->what = "periodic";
    for (const auto& [service, url] : ctx_.options.inventory_urls) {
        ReadInventory(scan, service, url, {});
    }
    std::map<std::string, std::vector<std::string>> by_url;
    for (const auto& [name, h] : ctx_.model.All(kHost)) {
        if (hosts_.Up(name)) by_url[Str(h.body, "url")].push_back(name);
    }
    for (auto& [url, hosts] : by_url) {
        ReadInventory(scan, "compute", url, std::move(hosts));
    }
    periodic_scan_running_ = scan->pending > 0;
    // A reader unused for ten passes is for an address nothing is served at any more.
    const int64_t stale_ms =
        ctx_.clock.WallMs() - 10 * std::chrono::duration_cast<Millis>(PassInterval()).count();
    std::erase_if(readers_, [stale_ms](const auto& r) { return r.second.used_ms < stale_ms; });
}

void ReconcileLoop::ReconcileHost(const std::string& name, const std::string& why) {
    if (!ctx_.model.Has(kHost, name) || !queued_hosts_.insert(name).second) return;
    observe::Log("cloud").debug("reconcile: host {} ({})", name, why);
    // Hosts asked for in one turn (a batch of renewals brings a thousand back at once) and while a
    // host scan runs go in one scan: each scan reads every inventory it needs once and judges the
    // whole desired state once, so its cost does not grow with the number of hosts that asked.
    if (queued_hosts_.size() == 1 && !host_scan_running_) {
        ctx_.Post([this] { StartHostScan(); });
    }
}

void ReconcileLoop::StartHostScan() {
    if (host_scan_running_ || queued_hosts_.empty()) return;
    std::map<std::string, std::vector<std::string>> by_url;
    for (const std::string& name : queued_hosts_) {
        if (const Res* h = ctx_.model.Find(kHost, name)) by_url[Str(h->body, "url")].push_back(name);
    }
    observe::Log("cloud").info("reconcile: {} host(s) now, at {} agent(s) (first {})", queued_hosts_.size(),
                               by_url.size(), *queued_hosts_.begin());
    queued_hosts_.clear();
    auto scan = std::make_shared<Scan>();
    scan->begun_ms = ctx_.clock.WallMs();
    scan->what = "hosts";
    host_scan_running_ = true;
    for (auto& [url, hosts] : by_url) {
        ReadInventory(scan, "compute", url, std::move(hosts));
    }
    if (scan->pending == 0) EndHostScan();
}

void ReconcileLoop::EndHostScan() {
    host_scan_running_ = false;
    if (!queued_hosts_.empty()) {
        ctx_.Post([this] { StartHostScan(); });
    }
}

services::kit::HttpReader* ReconcileLoop::ReaderFor(const std::string& url, const std::string& service,
                                                    const std::string& host) {
    // One reader per service URL. For an agent, the token of one of its hosts (a process serving
    // several takes any of theirs) and, over TLS, that host's name, which its certificate must hold;
    // kept while that host is still served there with that token (enrolled again: a new one).
    const auto ep = http::ParseHttpUrl(url);
    if (!ep || (ep->tls && ctx_.options.service_tls == nullptr)) return nullptr;
    Reader& r = readers_[url];
    const Res* named = r.host.empty() ? nullptr : ctx_.model.Find(kHost, r.host);
    const bool current = r.reader != nullptr && TokenFor(ctx_, service, r.host) == r.token &&
                         (r.host.empty() || (named != nullptr && Str(named->body, "url") == url));
    if (!current) {
        r.host = host;
        r.token = TokenFor(ctx_, service, host);
        r.reader =
            services::kit::MakeHttpReader(ctx_.io, ep->host, ep->port, service, r.token,
                                          ep->tls ? ctx_.options.service_tls : nullptr, ep->tls ? host : "");
    }
    r.used_ms = ctx_.clock.WallMs();
    return r.reader.get();
}

// Reads one inventory into the scan; the scan runs when its last inventory is in.
void ReconcileLoop::ReadInventory(const std::shared_ptr<Scan>& scan, const std::string& service,
                                  const std::string& url, std::vector<std::string> hosts) {
    // An agent serving several hosts at one URL holds a certificate naming each of them.
    services::kit::HttpReader* reader = ReaderFor(url, service, hosts.empty() ? "" : hosts.front());
    if (reader == nullptr) return;
    ++scan->pending;
    const int64_t read_at = ctx_.clock.WallMs();
    reader->Get(
        "/v1/inventory", SteadyClock::now() + std::chrono::seconds(5),
        ctx_.Guard([this, scan, service, url, hosts = std::move(hosts), read_at](Result<std::string> body) {
            // An inventory that does not parse is left out of the scan: nothing of it is judged.
            auto take = [](auto inv, auto& slot) {
                if (inv) {
                    slot = std::move(*inv);
                } else {
                    observe::Log("cloud").warn("reconcile: {}", inv.error().ToString());
                }
            };
            if (!body) {
                observe::Log("cloud").debug("reconcile: {} inventory at {}: {}", service, url,
                                            body.error().ToString());
            } else if (service == "network") {
                take(ParseNetworkInventory(*body, read_at), scan->actual.network);
            } else if (service == "volume") {
                take(ParseVolumeInventory(*body, read_at), scan->actual.volume);
            } else {
                std::optional<ComputeInventory> inv;
                take(ParseComputeInventory(*body, read_at), inv);
                if (inv) {
                    inv->hosts = hosts;  // only the hosts that are up and served there
                    scan->actual.compute.push_back(std::move(*inv));
                }
            }
            if (--scan->pending == 0) RunScan(*scan);
        }));
}

// The desired state as the reconciler sees it: every record of the kinds it judges, on purpose (a
// pass compares all of them with the inventories; it runs every reconcile_every and per host).
Desired ReconcileLoop::DesiredState() const {
    Desired d;
    auto busy = [this](const Res& r) {
        return Transitional(r.kind, r.status_text()) || healer_.Moving(r.id);
    };
    for (const auto& [id, r] : ctx_.model.All(kServer)) {
        const scheduler::Claim* c = ctx_.placement.ClaimOf(id);
        // A server whose volume is being attached or detached is busy too: a repair would fix its
        // volume list while it changes.
        d.servers.push_back(
            DesiredServer{id, r.project, r.status_text(), Str(r.body, "host"), c != nullptr ? c->host : "",
                          Str(r.body, "port_id"), StrList(r.body, "volume_ids"),
                          busy(r) || VolumeInFlight(ctx_.model, r) != nullptr, Int(r.body, "_changed_ms")});
    }
    for (const auto& [id, r] : ctx_.model.All(kPort)) {
        d.ports.push_back(DesiredPort{id, Str(r.body, "network_id"), Str(r.body, "device_id"),
                                      Str(r.body, "fixed_ip"), r.status_text(), busy(r),
                                      Int(r.body, "_changed_ms")});
    }
    for (const auto& [id, r] : ctx_.model.All(kVolume)) {
        d.volumes.push_back(DesiredVolume{id, r.status_text(), Str(r.body, "server_id"), busy(r),
                                          Int(r.body, "_changed_ms")});
    }
    for (const auto& [id, r] : ctx_.model.All(kNetwork)) {
        d.networks.push_back(DesiredNetwork{id, r.status_text(), busy(r), Int(r.body, "_changed_ms")});
    }
    for (const auto& [id, r] : ctx_.model.All(kSubnet)) {
        d.subnets.push_back(DesiredSubnet{id, Str(r.body, "network_id"), r.status_text(), busy(r),
                                          Int(r.body, "_changed_ms")});
    }
    return d;
}

void ReconcileLoop::RunScan(const Scan& scan) {
    if (scan.what == "hosts") EndHostScan();
    if (scan.what == "periodic") periodic_scan_running_ = false;
    for (const auto& a : reconciler_.Scan(DesiredState(), scan.actual, ctx_.clock.WallMs())) {
        const std::string key = std::string(ToString(a.kind)) + "/" + a.id + "/" + a.host;
        // Its repair in flight, or ended after this scan's inventories were read (a scan for the
        // host coming back and a periodic one 7 ms apart deleted one stale instance twice).
        if (acting_.contains(key)) {
            continue;
        }
        if (auto ended = ended_ms_.find(key); ended != ended_ms_.end() && ended->second > scan.begun_ms) {
            continue;
        }
        // An agent's inventory answered after its host went down (a frozen agent thawing into a
        // scan begun while it was up) is stale, and a repair there would be done by the compute
        // router's answer for a down host without reaching the agent: the host's own scan when it
        // is up again decides (integration.heal saw one stale instance "removed" twice so).
        if (a.service == "compute" && !a.host.empty() && !hosts_.Up(a.host)) {
            continue;
        }
        StartRepair(a, key);
    }
    // A scan's reads end within their 5 s deadline: what ended a minute before this one began
    // cannot be newer than any scan still in flight.
    std::erase_if(ended_ms_, [&](const auto& e) { return e.second < scan.begun_ms - 60'000; });
}

// Runs one reconciler action as a workflow (workflows/cloud/heal.yaml, or server.repair).
void ReconcileLoop::StartRepair(const Action& a, const std::string& key) {
    const std::string kind(ToString(a.kind));
    observe::Log("cloud").info("reconcile: {} {}: {}", kind, a.id, a.reason);
    repairs_.With({{"kind", kind}}).Inc();
    if (a.kind == ActionKind::kRepairServer) {
        if (Res* s = ctx_.model.Find(kServer, a.id)) healer_.Repair(*s);
        return;
    }
    const Repair* how = nullptr;
    for (const Repair& r : kRepairs) {
        if (r.kind == a.kind) how = &r;
    }
    COGS_CHECK(how != nullptr);
    json::object input{{"key", key}, {"id", a.id}, {"reason", a.reason}};
    const std::string type = how->type;
    const std::string_view resource_kind = how->resource;
    // What the repair's event says when it succeeds: something nothing owned was removed, or the
    // service holds again what cogsd has.
    const bool orphan =
        how->orphan || (a.kind == ActionKind::kDetachVolume && !ctx_.model.Has(kServer, a.server_id));
    const std::string done = orphan ? "orphan_removed" : "repaired";
    if (how->with_server != nullptr) input[how->with_server] = a.server_id;
    if (how->with_host) input["host"] = a.host;
    if (how->remake) {
        // create_<kind>'s input as the model has the resource (the same id: creates are idempotent
        // by id); none if the model no longer has it.
        const Res* r = ctx_.model.Find(resource_kind, a.id);
        if (r == nullptr) return;
        json::object req{{"id", a.id}, {"project_id", r->project}};
        auto copy = [&](const char* field) {
            if (const json::value* v = r->body.if_contains(field);
                v != nullptr && !(v->is_string() && v->get_string().empty())) {
                req[field] = *v;
            }
        };
        if (resource_kind == kPort) {
            req["device_id"] = Str(r->body, "device_id");
            for (const char* f : {"network_id", "subnet_id", "fixed_ip"})
                copy(f);
        } else if (resource_kind == kSubnet) {
            req["name"] = Str(r->body, "name");
            for (const char* f : {"network_id", "cidr", "gateway_ip", "allocation_pools"})
                copy(f);
        } else {
            req["name"] = Str(r->body, "name");
            if (resource_kind == kVolume) req["size_gb"] = Int(r->body, "size_gb");
        }
        input["request"] = std::move(req);
    }
    input["event"] = done;
    workflow::StartRequest req;
    req.type = type;
    req.input = json::serialize(input);
    req.traceparent = observe::TraceContext::New().ToTraceparent();
    req.resource_kind = std::string(resource_kind);
    req.resource_id = a.id;
    const Res* owner = resource_kind == "instance" ? nullptr : ctx_.model.Find(resource_kind, a.id);
    req.project = owner != nullptr ? owner->project : "";
    req.events.push_back(ctx_.Event(req.resource_kind, a.id, req.project, "repair_requested",
                                    type + ": " + a.reason, "", req.traceparent));
    acting_.insert(key);
    ctx_.engine.Start(std::move(req), ctx_.Guard([this, key](Result<std::string> r) {
        if (!r) {
            acting_.erase(key);  // the next pass sees the drift again
            observe::Log("cloud").warn("reconcile: {}: {}", key, r.error().ToString());
        }
    }));
}

// A reconciler's workflow ended.
void ReconcileLoop::SettleRepair(Settlement& st) {
    const workflow::FinishedEvent& ev = st.event();
    acting_.erase(st.In("key"));
    ended_ms_[st.In("key")] = ctx_.clock.WallMs();
    const bool ok = st.ok();
    std::string type = !ok ? "repair_failed" : st.In("event").empty() ? "repaired" : st.In("event");
    if (ok && st.In("event").empty() &&
        (ev.type == "heal.delete_instance" || ev.type == "heal.delete_port" ||
         ev.type == "heal.delete_volume" || ev.type == "heal.detach_volume")) {
        type = "orphan_removed";  // started before repairs named their event
    }
    st.AddEvent(ctx_.Event(ev.resource_kind, ev.resource_id, ev.project, type,
                           ev.type + (ok ? " done: " : " failed (" + ev.reason + "): ") + st.In("reason"),
                           ev.id, ev.trace));
}

// Stuck work: a resource in a transitional status whose workflow has ended (its end was lost to us:
// it should not happen, and costs nothing to check) takes the outcome. Only resources seen
// transitional with the same workflow at two passes in a row are looked up. (Every record of the
// status kinds, on purpose: part of the periodic pass.)
void ReconcileLoop::SettleStuck() {
    std::map<std::string, std::string> now;
    std::set<std::string> check;  // a workflow of several resources is looked up once
    for (auto kind : kStatusKinds) {
        for (const auto& [id, r] : ctx_.model.All(kind)) {
            const std::string wf = r.awaited_workflow();
            if (wf.empty()) continue;
            const std::string key = std::string(kind) + "/" + id;
            auto seen = transitional_seen_.find(key);
            if (seen != transitional_seen_.end() && seen->second == wf) check.insert(wf);
            now.emplace(key, wf);
        }
    }
    transitional_seen_ = std::move(now);
    if (check.empty()) return;
    ctx_.OffThread([this, ids = std::vector<std::string>(check.begin(),
                                                         check.end())] { return ctx_.EndedWorkflows(ids); },
                   [this](std::vector<workflow::FinishedEvent> ended) {
                       for (const auto& ev : ended) {
                           observe::Log("cloud").warn("{} {}: settling it: its workflow {} ended unreported",
                                                      ev.resource_kind, ev.resource_id, ev.id);
                           repairs_.With({{"kind", "settle_stuck"}}).Inc();
                           ctx_.Settle(ev);
                       }
                   });
}

}  // namespace cogs::cloud::reconcile
