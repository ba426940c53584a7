// Context: what every part of the control plane shares — where it lives (the io thread), the store,
// the engine, the clock, the desired state (Model) and placement — and the only three ways a part
// changes durable state:
//
//   Persist(writes, events)   records and the events that report them, in one transaction;
//   StartWorkflow(launch)     records in a transitional status, the workflow that will settle them
//                             and the "<action>_requested" event, in one transaction;
//   a settle function         when a workflow ends, the records take its outcome (ACTIVE, ERROR with
//                             the reason, erased) with their events, in one transaction.
//
// Settle functions are looked up by workflow type (OnSettle): each resource module registers the
// types it starts (servers.cc: server.create, server.delete, ...), heal/ its moves, reconcile/ its
// repairs. Settle() is called by the engine when a workflow ends, at start-up for workflows that
// ended while cogsd was down, and by the stuck-work check: one end may come more than once, and
// only its first delivery finds its resources (Settlement::Mine).
//
// Threading: everything here runs on the io thread (the model has no locks), except OffThread's
// work, which runs on a one-thread pool for blocking store reads and posts its result back.
// Callbacks that may outlive the cloud (the store's commits, the read pool, timers) are dropped
// once the Context is gone.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/cloud/cloud.h"
#include "cogs/cloud/core/model.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/scheduler/placement.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"

namespace cogs::cloud {

// A workflow to start on a resource.
struct Launch {
    std::string type{};
    json::object input{};
    // Records committed with the workflow, each with "workflow_id" set to it and touched.
    std::vector<Res*> changed{};
    // Called once `changed` carry the new workflow's id, within StartWorkflow: other records to
    // commit with it (an Idempotency-Key's record of the answer, which shows that id).
    std::function<std::vector<store::ResourceWrite>()> extra{};
    // The engine refused (overload, 429): give back what was reserved, put statuses back.
    std::function<void()> undo{};
    // The resource the workflow works on: its progress goes to that resource's events, starting
    // with "created" / "<action>_requested", committed with the workflow.
    const Res* on = nullptr;
    std::string traceparent{};
};

class Context;

// What a finished workflow changes: its resources' records and events, gathered by a settle
// function and committed together once it returns.
class Settlement {
public:
    Settlement(Context& ctx, const workflow::FinishedEvent& ev, json::object input);

    const workflow::FinishedEvent& event() const { return ev_; }
    const json::object& input() const { return input_; }
    std::string In(std::string_view field) const { return Str(input_, field); }
    bool ok() const { return ev_.state == store::WorkflowState::kSucceeded; }
    bool rolled_back() const { return ev_.state == store::WorkflowState::kRolledBack; }
    // "rolled back" or "failed", for messages.
    std::string outcome() const { return rolled_back() ? "rolled back" : "failed"; }
    // The output of step `step`, or {}.
    json::object Output(std::string_view step) const;

    // The resource of `kind` `id`, if it is waiting for this workflow (Res::awaited_workflow): it
    // names it and is still in its transitional status, or it took the workflow's failure and an
    // admin retried it. The same end can be delivered more than once (the engine's report,
    // the stuck-work check's look-ups, start-up): only the first finds it, and a stale end (the
    // resource moved on to another workflow) changes nothing.
    Res* Mine(std::string_view kind, const std::string& id);
    // An event on `r`, of this workflow.
    void Note(const Res& r, std::string type, std::string message);
    // `r` is touched and written.
    void Save(Res& r);
    // `r` failed: an "error" event, its status `status`, its fault the workflow's reason; saved.
    void Fail(Res& r, std::string_view status);
    // A create that did not succeed: if it rolled back, nothing of `r` exists any more and it holds
    // no quota (a failed rollback keeps the quota until `r` is deleted); then Fail(r, status).
    void FailCreate(Res& r, std::string_view status);
    // The end of a delete of the `kind` whose id is the input's `id_field`: erased if it
    // succeeded, else failed with `error_status`.
    void SettleDelete(std::string_view kind, std::string_view id_field, std::string_view error_status);
    // `r` is gone: a "deleted" event, its quota released, erased.
    void Erase(std::string_view kind, std::string id);
    void Write(store::ResourceWrite w) { writes_.push_back(std::move(w)); }
    void AddEvent(store::EventRecord e) { events_.push_back(std::move(e)); }
    // What the outcome starts (a workflow that takes the resource over): run right after the
    // settlement is handed to the store, in the same turn of the io thread, so that what it commits
    // comes after the outcome and nothing (another delivery of this end, a request) runs between
    // the decision and the take-over.
    void Then(std::function<void()> fn) { then_.push_back(std::move(fn)); }

    Context& ctx;

private:
    friend class Context;
    const workflow::FinishedEvent& ev_;
    json::object input_;
    std::vector<store::ResourceWrite> writes_;
    std::vector<store::EventRecord> events_;
    std::vector<std::function<void()>> then_;
};

using SettleFn = std::function<void(Settlement&)>;

// A placement claim as the record that keeps it durable (kind "claim", id = the server's).
Res ClaimRecord(const scheduler::Claim& c);
scheduler::Claim ClaimOf(const Res& r);

class Context {
public:
    Context(boost::asio::io_context& io, store::Store& store, workflow::Engine& engine,
            const workflow::Registry& registry, CloudOptions options);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    boost::asio::io_context& io;
    store::Store& store;
    workflow::Engine& engine;
    const workflow::Registry& registry;
    const CloudOptions options;
    runtime::Clock& clock;
    Model model;
    scheduler::Placement placement;

    // ---- lifetime ----

    // Runs `fn` on the io thread later (never inline), unless the Context is gone by then.
    void Post(std::function<void()> fn);
    // `fn` wrapped to do nothing once the Context is gone.
    template <typename F>
    auto Guard(F fn) const {
        return [life = std::weak_ptr<void>(life_), fn = std::move(fn)](auto&&... args) mutable {
            if (life.lock()) fn(std::forward<decltype(args)>(args)...);
        };
    }

    // ---- durable changes ----

    // Resource writes and the events that report them, in one transaction; `done` on the io thread
    // once durable. The events are counted in cogs_events_total then. A refused write is fatal:
    // memory is ahead of the store and only a restart makes them equal.
    void Persist(std::vector<store::ResourceWrite> writes, std::vector<store::EventRecord> events = {},
                 std::function<void(Status)> done = {});
    // Blocking (start-up only).
    Status PersistBlocking(std::vector<store::ResourceWrite> writes);
    // Commits launch.changed and launch.extra with a new workflow and its first event in one
    // transaction; `done` gets the workflow's id, or the engine's refusal after launch.undo ran.
    void StartWorkflow(Launch launch, std::function<void(Result<std::string>)> done);
    // The batch form, for a bulk request: every launch's changed records, workflow and first event,
    // and `extra()` (called once all of them carry their workflow's id), in ONE transaction
    // (workflow::Engine::StartMany): all are durable or none. `done` gets the ids in order, or the
    // engine's refusal after every launch's undo ran.
    void StartWorkflows(std::vector<Launch> launches,
                        std::function<std::vector<store::ResourceWrite>()> extra,
                        std::function<void(Result<std::vector<std::string>>)> done);
    // Runs `work` (a blocking store read) on the read pool, then `then(result)` on the io thread.
    template <typename F, typename Then>
    void OffThread(F work, Then then) {
        using R = std::invoke_result_t<F>;
        auto result = std::make_shared<std::optional<R>>();
        RunOffThread([result, work = std::move(work)]() mutable { result->emplace(work()); },
                     [result, then = std::move(then)]() mutable { then(std::move(**result)); });
    }

    // ---- records and events ----

    // A new record of `kind` in `project` with a fresh id and its timestamps.
    Res NewRes(std::string_view kind, std::string project) const;
    // Marks `r` changed now ("updated_at", and "_changed_ms" for the reconcilers).
    void Touch(Res& r) const;
    // Puts back a record's status (a refused workflow start).
    void Revert(std::string_view kind, const std::string& id, const std::string& status);
    // A workflow `type` on `r` that moves it to the transitional status `to`: its status before is
    // kept ("_prev_status") and put back if the engine refuses the start.
    Launch Transition(Res& r, std::string_view to, std::string type, json::object input,
                      std::string traceparent);
    store::EventRecord Event(std::string_view kind, const std::string& id, const std::string& project,
                             std::string type, std::string message, const std::string& workflow_id = "",
                             const std::string& traceparent = "") const;
    void CountEvent(const std::string& type);
    // A steady-clock moment as wall-clock RFC 3339 (for the API). The same moment reads the same in
    // every answer (a polled list keeps its ETag): the wall - steady offset is kept, and taken again
    // only when the wall clock moved by more than a second against the steady one (NTP, settimeofday).
    std::string WallOf(SteadyTime t) const;

    // ---- settling ----

    void OnSettle(std::string type, SettleFn fn);
    // Settles the resources of a workflow that ended (no-op for a type nobody registered).
    void Settle(const workflow::FinishedEvent& ev);
    // The end of each of these workflows that has ended, as the engine reports one (blocking store
    // reads). A workflow still running is left out: the engine will report its end.
    std::vector<workflow::FinishedEvent> EndedWorkflows(const std::vector<std::string>& ids) const;

    // ---- workflows in flight per project (CloudOptions::max_inflight_workflows_per_project) ----

    // A workflow counts from StartWorkflow (or, for one that resumes, from Load's CountWorkflow) until
    // its end is settled (or the engine refuses it). Bounded by the engine's max_inflight.
    size_t WorkflowsInFlight(const std::string& project) const;
    void CountWorkflow(const std::string& id, const std::string& project);
    // kResourceExhausted (429, Retry-After) when `project` has its limit of workflows in flight; counted
    // in cogs_api_rejected_total{reason="project_workflows"}.
    Status AdmitWorkflow(const std::string& project);
    // A request that would start from `min` to `max` workflows of `project` (a bulk create): how many
    // of them may start now, at most `max`; kResourceExhausted as AdmitWorkflow's when fewer than
    // `min` may.
    Result<size_t> AdmitWorkflows(const std::string& project, size_t min, size_t max);

    // ---- metrics (docs/metrics.md, "the cloud"); no-ops without a registry ----
    observe::Metrics* metrics() const { return options.metrics; }

private:
    void UncountWorkflow(const std::string& id);
    // The engine's request for `l` (its records stamped with the new workflow's id and touched).
    workflow::StartRequest Request(Launch& l);

    void RunOffThread(std::function<void()> work, std::function<void()> then);

    std::shared_ptr<int> life_ = std::make_shared<int>(0);
    std::map<std::string, SettleFn, std::less<>> settle_;
    observe::CounterFamily events_counter_;
    std::unordered_map<std::string, observe::Counter> event_counters_;  // by type
    std::unordered_map<std::string, std::string> running_;              // workflow id -> its project
    std::unordered_map<std::string, size_t> running_per_project_;       // only projects with one
    observe::Counter rejected_project_workflows_;
    struct Pool;
    std::unique_ptr<Pool> reads_;                    // blocking store reads, off the io thread
    mutable std::optional<int64_t> wall_offset_ms_;  // WallOf's wall - steady, in milliseconds
};

}  // namespace cogs::cloud
