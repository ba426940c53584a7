#include "cogs/cloud/heal/healer.h"

#include "cogs/cloud/resources/servers.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"

namespace cogs::cloud::heal {

using health::HostState;

Healer::Healer(Context& ctx, health::HostMonitor& hosts) : ctx_(ctx), hosts_(hosts) {
    observe::Metrics* m = ctx.metrics();
    metrics_.paused = observe::GaugeOf(m, "cogs_heal_evacuation_paused",
                                       "1 while most hosts are suspect or down at once and evacuation waits.")
                          .With({});
    metrics_.started = observe::CounterOf(m, "cogs_heal_moves_started_total",
                                          "Evacuation and migration workflows started, by type.");
    metrics_.failures = observe::CounterOf(m, "cogs_heal_move_failures_total",
                                           "Evacuations and migrations that ended in ERROR, by type.");
    auto moved = observe::CounterOf(m, "cogs_heal_moves_total", "Servers moved, by type.");
    metrics_.evacuated = moved.With({{"type", "server.evacuate"}});
    metrics_.migrated = moved.With({{"type", "server.migrate"}});
    metrics_.duration =
        observe::HistogramOf(m, "cogs_heal_duration_seconds",
                             "From a down host's last lease renewal to one of its servers ACTIVE elsewhere.")
            .With({});
    for (const char* type : {"server.evacuate", "server.migrate", "server.repair"}) {
        ctx_.OnSettle(type, [this](Settlement& st) { SettleMove(st); });
    }
}

void Healer::Start() {
    running_ = true;
    Heal();
}

void Healer::Stop() { running_ = false; }

// A move fixes the server's volume list when it starts (it detaches and attaches them again): not
// while one of them is being attached or detached. Heal() tries again at the next pass.
bool Healer::Movable(const Res& s) const {
    return (s.is(ServerStatus::kActive) || s.is(ServerStatus::kShutoff)) &&
           VolumeInFlight(ctx_.model, s) == nullptr;
}

void Healer::OnHostChange(const health::Liveness::Change& c) {
    if (c.to == HostState::kDown) {
        down_since_[c.host] = c.last_renewal;
        pending_ = true;
    } else if (c.to == HostState::kUp) {
        down_since_.erase(c.host);
    }
    UpdatePause();
}

void Healer::Forget(const std::string& host) {
    down_since_.erase(host);
    UpdatePause();
}

void Healer::OnTick() {
    if (pending_) {
        pending_ = false;
        Heal();
    } else {
        UpdatePause();
    }
}

// Level-triggered: every server still on a down host is queued for evacuation, every server on a
// draining host for migration (unless evacuation is paused), then as many run as the parallelism
// allows. Hosts are few; their servers come from the model's index by host.
void Healer::Heal() {
    UpdatePause();
    if (!running_) return;
    if (!paused_) {
        for (const auto& [host, h] : ctx_.model.All(kHost)) {
            const char* type = hosts_.StateOf(host) == HostState::kDown ? "server.evacuate"
                               : Bool(h.body, "draining")               ? "server.migrate"
                                                                        : nullptr;
            if (type == nullptr) continue;
            for (const Res* s : ctx_.model.Having(kServer, "host", host)) {
                if (queued_.contains(s->id) || !ReadyToMove(*s)) continue;
                moves_.push_back(Move{s->id, host, type});
                queued_.insert(s->id);
            }
        }
    }
    Pump();
}

void Healer::Pump() {
    while (running_ && moving_.size() < static_cast<size_t>(ctx_.options.evacuation_parallelism) &&
           !moves_.empty()) {
        Move mv = std::move(moves_.front());
        moves_.pop_front();
        queued_.erase(mv.server_id);
        Res* s = ctx_.model.Find(kServer, mv.server_id);
        if (s == nullptr || !ReadyToMove(*s) || Str(s->body, "host") != mv.from_host) continue;
        if (mv.type == "server.evacuate" && hosts_.StateOf(mv.from_host) != HostState::kDown) continue;
        StartMove(*s, mv);
    }
}

// Movable; a server that only waits for a volume's attach or detach is looked at again at the next
// tick (about a second).
bool Healer::ReadyToMove(const Res& s) {
    if (Movable(s)) return true;
    if (VolumeInFlight(ctx_.model, s) != nullptr) pending_ = true;
    return false;
}

void Healer::Repair(Res& s) {
    if (Movable(s)) StartMove(s, Move{s.id, "", "server.repair"});
}

// server.evacuate (the host is down: rebuild elsewhere), server.migrate (drain: stop, move, start
// elsewhere) or server.repair (rebuild in place). All keep the server's id, port, address and
// volumes.
void Healer::StartMove(Res& s, const Move& mv) {
    const Res* flavor = ctx_.model.Find(kFlavor, Str(s.body, "flavor_id"));
    std::string policy = "none";
    if (const Res* g = ctx_.model.Find(kGroup, Str(s.body, "server_group_id")))
        policy = Str(g->body, "policy");
    json::object input{
        {"server_id", s.id},
        {"project_id", s.project},
        {"name", Str(s.body, "name")},
        {"from_host", mv.from_host},
        {"port_id", Str(s.body, "port_id")},
        {"mac_address", Str(s.body, "mac_address")},
        {"ip_address", Str(s.body, "ip_address")},
        {"network_id", Str(s.body, "network_id")},
        {"cidr", Str(s.body, "_cidr")},
        {"gateway_ip", Str(s.body, "_gateway_ip")},
        {"user_data", Str(s.body, "_user_data")},
        {"public_keys", PublicKeysOf(s)},
        {"vcpus", Int(s.body, "_vcpus")},
        {"ram_mb", Int(s.body, "_ram_mb")},
        {"disk_gb", Int(s.body, "_disk_gb")},
        {"image_id", Str(s.body, "image_id")},
        {"volume_ids", ToArray(AttachedVolumes(ctx_.model, s))},
        {"availability_zone", ""},
        {"traits",
         flavor != nullptr && flavor->body.contains("traits") ? flavor->body.at("traits") : json::array()},
        {"group_id", Str(s.body, "server_group_id")},
        {"policy", policy},
        {"weigher", "spread"}};
    moving_.insert(s.id);
    metrics_.started.With({{"type", mv.type}}).Inc();
    const std::string id = s.id;
    observe::Log("cloud").info("server {}: {} from host {}", id, mv.type, mv.from_host);
    Launch l = ctx_.Transition(
        s, ToString(mv.type == "server.migrate" ? ServerStatus::kMigrating : ServerStatus::kRebuild), mv.type,
        std::move(input), observe::TraceContext::New().ToTraceparent());
    ctx_.StartWorkflow(std::move(l), [this, id](Result<std::string> r) {
        if (!r) {
            moving_.erase(id);  // refused (the engine is full): the next heal pass tries again
        }
    });
}

void Healer::SettleMove(Settlement& st) {
    const workflow::FinishedEvent& ev = st.event();
    moving_.erase(st.In("server_id"));
    ctx_.Post([this] {
        Pump();
        FinishDrains();
    });
    Res* s = st.Mine(kServer, st.In("server_id"));
    if (s == nullptr) return;
    const json::object claim = st.Output("claim");
    const bool evacuate = ev.type == "server.evacuate";
    const std::string from = Str(s->body, "host");
    const std::string prev = Str(s->body, "_prev_status");
    if (st.ok()) {
        const std::string to = Str(claim, "host");
        s->body["host"] = to;
        if (const Res* h = ctx_.model.Find(kHost, to)) {
            s->body["availability_zone"] = Str(h->body, "availability_zone");
        }
        s->set_status(ServerStatus::kActive);
        s->body.erase("fault");
        s->body.erase("_evacuations");
        if (ev.type == "server.repair") {
            st.Note(*s, "repaired", "its instance was missing on host " + to + ": built again there");
        } else {
            st.Note(*s, evacuate ? "evacuated" : "migrated",
                    std::string(evacuate ? "evacuated" : "migrated") + " from host " + from + " to host " +
                        to + ": ACTIVE with the same port, address and volumes");
            (evacuate ? metrics_.evacuated : metrics_.migrated).Inc();
        }
        auto down = down_since_.find(from);
        if (evacuate && down != down_since_.end()) {
            metrics_.duration.Observe(std::chrono::duration<double>(ctx_.clock.Now() - down->second).count());
        }
    } else if (evacuate && Int(s->body, "_evacuations") + 1 < kMaxEvacuations) {
        // Most often the host it was moving to failed too. The server is back as it was on its host:
        // if that is still down the next heal pass evacuates it again (scheduler.move also leaves a
        // host that is no longer alive); if it came back meanwhile, its claim returns there and the
        // reconciler starts its fenced instance.
        s->body["_evacuations"] = Int(s->body, "_evacuations") + 1;
        s->body["status"] = prev;
        const scheduler::Claim* c = ctx_.placement.ClaimOf(s->id);
        if (c != nullptr && c->host != from && hosts_.Up(from)) {
            scheduler::Claim back = *c;
            back.host = from;
            ctx_.placement.Release(s->id);
            ctx_.placement.AddClaim(back);
            Res rec = ClaimRecord(back);
            st.Write(Model::Write(rec));
            ctx_.model.Put(std::move(rec));
        }
        st.Note(*s, "evacuation_retry",
                "server.evacuate failed (" + ev.reason + "); it is back on host " + from +
                    (hosts_.Up(from) ? ", which is up again" : ", evacuated again at the next pass"));
        pending_ = true;
    } else {
        s->set_status(ServerStatus::kError);
        s->body["fault"] = json::object{{"message", ev.type + ": " + ev.reason}, {"workflow_id", ev.id}};
        st.Note(*s, "error", ev.type + " failed: " + ev.reason + " (status ERROR)");
        metrics_.failures.With({{"type", ev.type}}).Inc();
    }
    st.Save(*s);
    // A stopped server is moved as a stopped server.
    if (st.ok() && prev == ToString(ServerStatus::kShutoff)) {
        const std::string id = s->id;
        ctx_.Post([this, id] {
            Res* r = ctx_.model.Find(kServer, id);
            if (r == nullptr || !r->is(ServerStatus::kActive)) return;
            ctx_.StartWorkflow(ctx_.Transition(*r, ToString(ServerStatus::kStopping), "server.stop",
                                               {{"server_id", id}, {"host", Str(r->body, "host")}}, ""),
                               nullptr);
        });
    }
}

// A draining host with no server left is drained.
void Healer::FinishDrains() {
    std::vector<std::string> drained;
    for (const auto& [name, h] : ctx_.model.All(kHost)) {
        if (Bool(h.body, "draining") && ctx_.model.Having(kServer, "host", name).empty()) {
            drained.push_back(name);
        }
    }
    for (const auto& name : drained) {
        Res& h = *ctx_.model.Find(kHost, name);
        h.body["draining"] = false;
        ctx_.Touch(h);
        ctx_.Persist({Model::Write(h)}, {ctx_.Event(kHost, name, "", "drained",
                                                    "drained: no server left; the host stays disabled")});
    }
}

// The mass-failure guard: an alert event when evacuation pauses and when it resumes.
void Healer::UpdatePause() {
    const bool paused = hosts_.EvacuationPaused();
    metrics_.paused.Set(paused ? 1 : 0);
    if (paused == paused_) return;
    paused_ = paused;
    const auto& l = hosts_.liveness();
    const size_t lapsed = l.Count(HostState::kSuspect) + l.Count(HostState::kDown);
    const std::string counts = std::to_string(lapsed) + " of " + std::to_string(l.size()) + " hosts";
    if (paused) {
        observe::Log("cloud").error("evacuation paused: {} are suspect or down at once", counts);
    } else {
        observe::Log("cloud").warn("evacuation resumed: {} are suspect or down", counts);
        pending_ = true;
    }
    ctx_.Persist(
        {}, {ctx_.Event("alert", "evacuation", "", paused ? "evacuation_paused" : "evacuation_resumed",
                        paused ? counts + " are suspect or down at once: more likely the control plane's "
                                          "network than the hosts; evacuation waits for an operator or "
                                          "for hosts to come back"
                               : "evacuation resumed: " + counts + " are suspect or down")});
}

// A create rolled back because the host it was placed on failed during the build (it is not up any
// more) is started again with the same input: the same server, port and volumes, placed anew
// (placement skips that host), as Nova retries on an alternate host. The server stays BUILD and
// keeps its quota.
//
// The rebuild takes the server over in the same turn as the settle that decides it (Then): the same
// end may be settled again (the engine's report, a stuck-work look-up), and a server still naming
// the ended build would be decided again — rescheduled twice, then failed with both spent.
bool Healer::Reschedule(Settlement& st, Res& s) {
    const workflow::FinishedEvent& ev = st.event();
    const std::string host = Str(st.Output("claim"), "host");
    if (host.empty() || hosts_.Up(host) || Int(s.body, "_reschedules") >= kMaxReschedules) {
        return false;
    }
    json::object in = wire::ParseObject(ev.input);
    if (in.empty()) return false;
    s.body["_reschedules"] = Int(s.body, "_reschedules") + 1;
    observe::Log("cloud").warn("server {}: its host {} failed during the build: building it again", s.id,
                               host);
    st.Then([this, id = s.id, in = std::move(in), trace = ev.trace]() mutable {
        Res* srv = ctx_.model.Find(kServer, id);
        if (srv == nullptr || !srv->is(ServerStatus::kBuild)) return;
        std::vector<Res*> changed{srv};
        if (Res* port = ctx_.model.Find(kPort, Str(in, "port_id"))) changed.push_back(port);
        for (const auto& vid : StrList(in, "volume_ids")) {
            if (Res* v = ctx_.model.Find(kVolume, vid)) changed.push_back(v);
        }
        std::vector<std::pair<std::string, std::string>> refs;
        for (const Res* r : changed)
            refs.emplace_back(r->kind, r->id);
        Launch l{
            .type = "server.create",
            .input = std::move(in),
            .changed = std::move(changed),
            .undo =
                [this, refs] {
                    // The engine refused (overload): a failed build, its volumes free again
                    // (nothing of it exists: the rolled-back create removed it all).
                    std::vector<store::ResourceWrite> writes;
                    for (const auto& [kind, rid] : refs) {
                        Res* r = ctx_.model.Find(kind, rid);
                        if (r == nullptr) continue;
                        if (r->kind == kVolume) {
                            r->set_status(VolumeStatus::kAvailable);
                            r->body["server_id"] = "";
                        } else {
                            if (r->kind == kServer) r->body["volume_ids"] = json::array();  // freed above
                            r->body["status"] = "ERROR";
                            r->body["fault"] = json::object{{"message", "rescheduling refused: overloaded"}};
                        }
                        ctx_.Touch(*r);
                        writes.push_back(Model::Write(*r));
                    }
                    ctx_.Persist(std::move(writes));
                },
            .on = srv,
            .traceparent = trace};
        ctx_.StartWorkflow(std::move(l), nullptr);
    });
    return true;
}

}  // namespace cogs::cloud::heal
