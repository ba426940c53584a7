#include "cogs/cloud/core/context.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <future>

#include "cogs/base/check.h"
#include "cogs/base/secret.h"
#include "cogs/cloud/core/status.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"

namespace cogs::cloud {

namespace asio = boost::asio;

namespace {

// The event a workflow's start writes on its resource: "created" for a create, else
// "<action>_requested" ("delete_requested", "stop_requested", "attach_requested", ...).
std::string RequestedEventType(std::string_view workflow_type) {
    auto dot = workflow_type.rfind('.');
    std::string_view action = dot == std::string_view::npos ? workflow_type : workflow_type.substr(dot + 1);
    return action == "create" ? std::string("created") : std::string(action) + "_requested";
}

}  // namespace

struct Context::Pool {
    asio::thread_pool pool{1};
};

Context::Context(asio::io_context& io_context, store::Store& s, workflow::Engine& e,
                 const workflow::Registry& r, CloudOptions o)
    : io(io_context),
      store(s),
      engine(e),
      registry(r),
      options(std::move(o)),
      clock(options.clock != nullptr ? *options.clock : runtime::SystemClock()),
      model([this](std::function<void()> fn) { Post(std::move(fn)); }),
      placement(scheduler::Ratios{options.cpu_ratio, options.ram_ratio, options.disk_ratio}),
      events_counter_(observe::CounterOf(options.metrics, "cogs_events_total", "Events recorded, by type.")),
      rejected_project_workflows_(
          observe::CounterOf(options.metrics, "cogs_api_rejected_total",
                             "Requests refused before routing, by reason: overload, system_overload, "
                             "rate_limited, project_overload, unauthenticated (and project_workflows, "
                             "refused by the route).")
              .With({{"reason", "project_workflows"}})),
      reads_(std::make_unique<Pool>()) {}

Context::~Context() {
    life_.reset();
    reads_->pool.join();
}

void Context::Post(std::function<void()> fn) { asio::post(io, Guard(std::move(fn))); }

// The work runs on the pool; `then` is posted to the io thread, where it runs only if the Context
// still lives (it is destroyed on the io thread too, so the check cannot race).
void Context::RunOffThread(std::function<void()> work, std::function<void()> then) {
    asio::post(reads_->pool, [&io = io, life = std::weak_ptr<void>(life_), work = std::move(work),
                              then = std::move(then)]() mutable {
        work();
        asio::post(io, [life, then = std::move(then)]() mutable {
            if (life.lock()) then();
        });
    });
}

// ---- durable changes ----

void Context::Persist(std::vector<store::ResourceWrite> writes, std::vector<store::EventRecord> events,
                      std::function<void(Status)> done) {
    store::WriteGroup g;
    g.resources = std::move(writes);
    g.events = std::move(events);
    std::vector<std::string> types;
    for (const auto& e : g.events) {
        types.push_back(e.type);
    }
    store.Commit(std::move(g), [this, &io = io, life = std::weak_ptr<void>(life_), done = std::move(done),
                                types = std::move(types)](Status st) mutable {
        if (!st) {
            observe::Log("cloud").critical("store write failed: {}", st.error().ToString());
            COGS_CHECK(false && "the store refused a resource write");
        }
        // On the store's writer thread: only `io` (which outlives the cloud) is touched here.
        asio::post(
            io, [this, life, done = std::move(done), st = std::move(st), types = std::move(types)]() mutable {
                if (!life.lock()) return;
                for (const auto& type : types) {
                    CountEvent(type);
                }
                if (done) done(std::move(st));
            });
    });
}

Status Context::PersistBlocking(std::vector<store::ResourceWrite> writes) {
    if (!store.Writable()) {  // the group would be held until the store writes again: start-up would wait
        return MakeError(store.WhyNotWritable());
    }
    store::WriteGroup g;
    g.resources = std::move(writes);
    std::promise<Status> p;
    auto f = p.get_future();
    store.Commit(std::move(g), [&p](Status st) { p.set_value(std::move(st)); });
    return f.get();
}

workflow::StartRequest Context::Request(Launch& l) {
    COGS_CHECK(l.on != nullptr);
    workflow::StartRequest s;
    s.id = NewUuid();
    s.type = std::move(l.type);
    s.project = l.on->project;
    s.traceparent = l.traceparent;
    s.resource_kind = l.on->kind;
    s.resource_id = l.on->id;
    const std::string name = Str(l.on->body, "name");
    s.events.push_back(
        Event(l.on->kind, l.on->id, l.on->project, RequestedEventType(s.type),
              l.on->kind + (name.empty() ? "" : " " + name) + ": workflow " + s.type + " started", s.id,
              l.traceparent));
    for (Res* r : l.changed) {
        r->body["workflow_id"] = s.id;
        Touch(*r);
        s.resources.push_back(Model::Write(*r));
    }
    s.input = json::serialize(l.input);
    return s;
}

void Context::StartWorkflow(Launch l, std::function<void(Result<std::string>)> done) {
    workflow::StartRequest s = Request(l);
    if (l.extra) {
        for (auto& w : l.extra()) {
            s.resources.push_back(std::move(w));
        }
    }
    const std::string kind = l.on->kind;
    const std::string id = l.on->id;
    std::vector<std::string> types;
    for (const auto& e : s.events)
        types.push_back(e.type);
    observe::LogScope scope({observe::TraceIdOf(l.traceparent), s.id, id});
    observe::Log("cloud").info("{} {}: starting workflow {}", kind, id, s.type);
    CountWorkflow(s.id, s.project);
    const std::string wf = s.id;  // captured before `s` is moved
    engine.Start(std::move(s), Guard([this, kind, id, wf, undo = std::move(l.undo), done = std::move(done),
                                      types = std::move(types)](Result<std::string> r) {
                     if (!r) {
                         UncountWorkflow(wf);
                         if (undo) undo();
                         // Overload is answered 429 (counted in cogs_http_requests_total{code="429"}): no
                         // line each.
                         observe::Log("cloud").log(
                             r.error().code == ErrorCode::kResourceExhausted ||
                                     r.error().code == ErrorCode::kNoSpace  // the store said why, once
                                 ? spdlog::level::debug
                                 : spdlog::level::warn,
                             "{} {}: workflow refused: {}", kind, id, r.error().ToString());
                     } else {
                         for (const auto& t : types)
                             CountEvent(t);
                     }
                     if (done) done(std::move(r));
                 }));
}

void Context::StartWorkflows(std::vector<Launch> launches,
                             std::function<std::vector<store::ResourceWrite>()> extra,
                             std::function<void(Result<std::vector<std::string>>)> done) {
    COGS_CHECK(!launches.empty());
    std::vector<workflow::StartRequest> requests;
    std::vector<std::string> wfs, types;
    std::vector<std::function<void()>> undos;
    for (Launch& l : launches) {
        requests.push_back(Request(l));
        wfs.push_back(requests.back().id);
        for (const auto& e : requests.back().events) {
            types.push_back(e.type);
        }
        undos.push_back(std::move(l.undo));
    }
    if (extra) {
        for (auto& w : extra()) {
            requests.back().resources.push_back(std::move(w));
        }
    }
    const Launch& first = launches.front();
    observe::LogScope scope({observe::TraceIdOf(first.traceparent), "", ""});
    observe::Log("cloud").info("{} {} and {} more: starting {} workflows {}", first.on->kind, first.on->id,
                               launches.size() - 1, launches.size(), requests.front().type);
    for (const auto& r : requests) {
        CountWorkflow(r.id, r.project);
    }
    engine.StartMany(std::move(requests),
                     Guard([this, wfs = std::move(wfs), undos = std::move(undos), done = std::move(done),
                            types = std::move(types)](Result<std::vector<std::string>> r) {
                         if (!r) {
                             for (const auto& wf : wfs)
                                 UncountWorkflow(wf);
                             for (const auto& undo : undos) {
                                 if (undo) undo();
                             }
                             observe::Log("cloud").log(r.error().code == ErrorCode::kResourceExhausted ||
                                                               r.error().code == ErrorCode::kNoSpace
                                                           ? spdlog::level::debug
                                                           : spdlog::level::warn,
                                                       "{} workflows refused: {}", wfs.size(),
                                                       r.error().ToString());
                         } else {
                             for (const auto& t : types)
                                 CountEvent(t);
                         }
                         if (done) done(std::move(r));
                     }));
}

// ---- records and events ----

Res Context::NewRes(std::string_view kind, std::string project) const {
    Res r{std::string(kind), NewUuid(), std::move(project), {}};
    r.body["id"] = r.id;
    if (!r.project.empty()) {
        r.body["project_id"] = r.project;
    }
    const std::string now = Rfc3339(clock.WallMs());
    r.body["created_at"] = now;
    r.body["updated_at"] = now;
    return r;
}

void Context::Touch(Res& r) const {
    const int64_t now = clock.WallMs();
    r.body["updated_at"] = Rfc3339(now);
    r.body["_changed_ms"] = now;  // for the reconciler: an inventory read before it is no evidence
}

void Context::Revert(std::string_view kind, const std::string& id, const std::string& status) {
    if (Res* r = model.Find(kind, id)) {
        r->body["status"] = status;
    }
}

Launch Context::Transition(Res& r, std::string_view to, std::string type, json::object input,
                           std::string traceparent) {
    const std::string was = r.status_text();
    r.body["_prev_status"] = was;
    r.body["status"] = to;
    return Launch{.type = std::move(type),
                  .input = std::move(input),
                  .changed = {&r},
                  .undo = [this, kind = r.kind, id = r.id, was] { Revert(kind, id, was); },
                  .on = &r,
                  .traceparent = std::move(traceparent)};
}

store::EventRecord Context::Event(std::string_view kind, const std::string& id, const std::string& project,
                                  std::string type, std::string message, const std::string& workflow_id,
                                  const std::string& traceparent) const {
    store::EventRecord e;
    e.time_ms = clock.WallMs();
    e.project = project;
    e.resource_kind = std::string(kind);
    e.resource_id = id;
    e.workflow_id = workflow_id;
    e.type = std::move(type);
    e.message = std::move(message);
    e.trace_id = observe::TraceIdOf(traceparent);
    return e;
}

void Context::CountEvent(const std::string& type) {
    auto it = event_counters_.find(type);
    if (it == event_counters_.end()) {
        it = event_counters_.emplace(type, events_counter_.With({{"type", type}})).first;
    }
    it->second.Inc();
}

std::string Context::WallOf(SteadyTime t) const {
    const auto steady_ms = [](SteadyTime at) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
    };
    // Two reads of two clocks differ by a millisecond now and then: only a real jump is taken.
    const int64_t offset = clock.WallMs() - steady_ms(clock.Now());
    if (!wall_offset_ms_ || std::abs(offset - *wall_offset_ms_) > 1000) wall_offset_ms_ = offset;
    return Rfc3339(steady_ms(t) + *wall_offset_ms_);
}

// ---- settling ----

void Context::OnSettle(std::string type, SettleFn fn) { settle_[std::move(type)] = std::move(fn); }

void Context::Settle(const workflow::FinishedEvent& ev) {
    UncountWorkflow(ev.id);
    auto it = settle_.find(ev.type);
    if (it == settle_.end()) {
        return;
    }
    boost::system::error_code ec;
    json::value in = json::parse(ev.input, ec);
    if (ec || !in.is_object()) {
        return;
    }
    Settlement s(*this, ev, std::move(in.get_object()));
    it->second(s);
    if (!s.writes_.empty() || !s.events_.empty()) {
        Persist(std::move(s.writes_), std::move(s.events_));
    }
    for (auto& fn : s.then_) {
        fn();
    }
}

size_t Context::WorkflowsInFlight(const std::string& project) const {
    auto it = running_per_project_.find(project);
    return it == running_per_project_.end() ? 0 : it->second;
}

void Context::CountWorkflow(const std::string& id, const std::string& project) {
    if (running_.emplace(id, project).second) {
        ++running_per_project_[project];
    }
}

void Context::UncountWorkflow(const std::string& id) {
    auto it = running_.find(id);
    if (it == running_.end()) {
        return;  // settled already (an end can be delivered more than once), or never counted
    }
    if (auto p = running_per_project_.find(it->second); p != running_per_project_.end() && --p->second == 0) {
        running_per_project_.erase(p);
    }
    running_.erase(it);
}

Status Context::AdmitWorkflow(const std::string& project) {
    COGS_TRY(AdmitWorkflows(project, 1, 1));
    return Ok();
}

Result<size_t> Context::AdmitWorkflows(const std::string& project, size_t min, size_t max) {
    const size_t limit = options.max_inflight_workflows_per_project;
    if (limit == 0) {
        return max;
    }
    const size_t running = WorkflowsInFlight(project);
    const size_t room = running < limit ? limit - running : 0;
    if (room >= min) {
        return std::min(room, max);
    }
    rejected_project_workflows_.Inc();
    return MakeError(Error(ErrorCode::kResourceExhausted,
                           "this project has too many workflows in flight: retry once some have ended")
                         .With("limit", "max_inflight_workflows_per_project")
                         .With("value", static_cast<int64_t>(limit)));
}

std::vector<workflow::FinishedEvent> Context::EndedWorkflows(const std::vector<std::string>& ids) const {
    std::vector<workflow::FinishedEvent> ended;
    for (const auto& wf_id : ids) {
        auto wf = store.GetWorkflow(wf_id);
        if (!wf || !store::IsTerminal(wf->state)) {
            continue;
        }
        ended.push_back(workflow::FinishedEventOf(*wf, registry.Get(wf->type, wf->version)));
    }
    return ended;
}

Res ClaimRecord(const scheduler::Claim& c) {
    Res rec{std::string(kClaim), c.server_id, "", {}};
    rec.body = json::object{{"server_id", c.server_id}, {"host", c.host},       {"vcpus", c.vcpus},
                            {"ram_mb", c.ram_mb},       {"disk_gb", c.disk_gb}, {"group_id", c.group_id}};
    return rec;
}

scheduler::Claim ClaimOf(const Res& r) {
    return scheduler::Claim{Str(r.body, "server_id"), Str(r.body, "host"),    Int(r.body, "vcpus"),
                            Int(r.body, "ram_mb"),    Int(r.body, "disk_gb"), Str(r.body, "group_id")};
}

// ---- Settlement ----

Settlement::Settlement(Context& c, const workflow::FinishedEvent& ev, json::object input)
    : ctx(c), ev_(ev), input_(std::move(input)) {}

json::object Settlement::Output(std::string_view step) const {
    auto it = ev_.outputs.find(std::string(step));
    return it == ev_.outputs.end() ? json::object{} : wire::ParseObject(it->second);
}

Res* Settlement::Mine(std::string_view kind, const std::string& id) {
    Res* r = ctx.model.Find(kind, id);
    if (r == nullptr || r->awaited_workflow() != ev_.id) return nullptr;
    // A failed workflow an admin retried (Workflows::Retry): its resource, settled once already by
    // the failure, takes this end too — once: the mark goes with this settle.
    r->body.erase("_retry_of");
    return r;
}

void Settlement::Note(const Res& r, std::string type, std::string message) {
    events_.push_back(
        ctx.Event(r.kind, r.id, r.project, std::move(type), std::move(message), ev_.id, ev_.trace));
}

void Settlement::Save(Res& r) {
    ctx.Touch(r);
    writes_.push_back(Model::Write(r));
}

void Settlement::Fail(Res& r, std::string_view status) {
    Note(r, "error",
         ev_.type + " " + outcome() + ": " + ev_.reason + " (status " + std::string(status) + ")");
    r.body["status"] = status;
    r.body["fault"] = json::object{{"message", ev_.reason}, {"workflow_id", ev_.id}};
    Save(r);
}

void Settlement::FailCreate(Res& r, std::string_view status) {
    if (rolled_back()) {
        ctx.model.Release(r.project, Model::HeldBy(r));
        r.body["_quota"] = false;
    }
    Fail(r, status);
}

void Settlement::SettleDelete(std::string_view kind, std::string_view id_field,
                              std::string_view error_status) {
    const std::string id = In(id_field);
    Res* r = Mine(kind, id);
    if (r == nullptr) return;
    if (ok()) {
        Erase(kind, id);
    } else {
        Fail(*r, error_status);
    }
}

void Settlement::Erase(std::string_view kind, std::string id) {
    if (const Res* r = ctx.model.Find(kind, id)) {
        Note(*r, "deleted", std::string(kind) + " deleted (" + ev_.type + ")");
        ctx.model.Release(r->project, Model::HeldBy(*r));
        ctx.model.Erase(kind, id);
        writes_.push_back(Model::EraseWrite(kind, id));
    }
}

}  // namespace cogs::cloud
