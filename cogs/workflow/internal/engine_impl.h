// Engine::Impl, declared once and defined over internal/engine_*.cc by concern, the way RocksDB
// spreads DBImpl over db_impl_*.cc: each group of methods below is marked with its file, and
// cogs/workflow/README.md has the map.
//
// Everything here runs on the io thread, except Commit's store callback (the writer thread hands
// results over through inbox_, under inbox_mu_) and the blocking pool's store calls, which post
// back to the io thread.
#pragma once

#include <fmt/format.h>
#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/runtime/clock.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/internal/breaker.h"
#include "cogs/workflow/internal/step_machine.h"

namespace cogs::workflow::internal {

inline int64_t ToMs(Duration d) { return std::chrono::duration_cast<Millis>(d).count(); }

inline double Seconds(SteadyTime from, SteadyTime to) {
    return std::chrono::duration<double>(to - from).count();
}

// One timer for the whole engine: parked retries, polls and deadlines cost a map entry each, not a
// timer object or a coroutine frame.
class TimerQueue {
public:
    TimerQueue(runtime::Clock& clock, boost::asio::io_context& io)
        : clock_(clock), timer_(clock.NewTimer(io)) {}

    void Schedule(SteadyTime at, std::function<void()> fn);
    void Stop();

private:
    void Arm();
    void Fire();

    runtime::Clock& clock_;
    std::unique_ptr<runtime::Timer> timer_;
    std::multimap<SteadyTime, std::function<void()>> queue_;
    bool stopped_ = false;
};

// Metric handles of one (service, action), as a step's action or as a compensation. Looked up once
// (Family::With hashes labels under a lock) and shared by every step that calls it.
struct CallMetrics {
    enum Outcome : uint8_t { kOk, kAccepted, kRetryable, kPermanent, kTimeout, kNumOutcomes };
    observe::Counter calls[kNumOutcomes];  // cogs_service_calls_total
    observe::Counter retries;              // cogs_step_retries_total
    observe::Counter timeouts;             // cogs_step_timeouts_total
    observe::Counter compensations;        // cogs_compensations_total (undo actions only)
    // cogs_step_duration_seconds: [0] succeeded / compensated, [1] failed / compensation_failed.
    observe::Histogram duration[2];
    observe::Histogram schedule_to_start;  // cogs_step_schedule_to_start_seconds{service}
};

// Metric handles of one workflow definition, with its steps' CallMetrics by step index.
struct TypeMetrics {
    observe::Counter started;      // cogs_workflows_started_total
    observe::Counter finished[3];  // cogs_workflows_finished_total: succeeded, rolled_back, failed
    observe::Histogram duration[3];
    std::vector<const CallMetrics*> action;  // per step
    std::vector<const CallMetrics*> undo;    // per step; null without a compensation
};

struct Circuit;

// A step's place in a breaker's queue, valid while the step is kCircuit.
struct CircuitWait {
    Circuit* on = nullptr;
    uint64_t ticket = 0;     // the queue entry that is its place (older entries of it are stale)
    bool announced = false;  // its step_waiting event is written: until the step is next sent
};

// Steady-clock instants of one step, kept only while metrics are on (and lost at a restart: then
// durations fall back to the records' wall-clock milliseconds).
struct StepTiming {
    SteadyTime runnable{};        // became runnable and not yet dispatched ({} otherwise)
    SteadyTime first_dispatch{};  // the action's first call
    SteadyTime comp_dispatch{};   // the compensation's first call
};

struct Wf {
    std::string id;
    const Definition* def = nullptr;
    std::string input;
    std::string trace;
    std::string project;
    // The resource it works on (its events go there); "" for none: then it writes no events.
    std::string resource_kind;
    std::string resource_id;
    // `trace` parsed once: each call carries a child span of it. nullopt: no (valid) trace.
    std::optional<observe::TraceContext> trace_ctx;
    std::string trace_id;                                // of trace_ctx, "" without one
    std::vector<store::ResourceWrite> create_resources;  // written with the create, then dropped
    std::vector<store::EventRecord> create_events;       // likewise
    const TypeMetrics* metrics = nullptr;                // null: metrics off
    std::vector<StepTiming> timing;                      // per step, with metrics only
    SteadyTime started_at{};                             // Start() on this engine; {} if resumed
    store::WorkflowState state = store::WorkflowState::kRunning;
    std::string reason;
    bool cancel_requested = false;
    int64_t created_ms = 0;
    int64_t deadline_ms = 0;
    uint64_t fence = 0;
    std::vector<store::StepRecord> steps;
    std::vector<uint8_t> busy;  // Engine::Impl::Busy, per step
    std::vector<int64_t> attempt_start_ms;
    std::vector<CircuitWait> circuit_wait;  // per step, allocated at the workflow's first wait
    bool finished = false;                  // terminal and reported, or dropped
    // Its create is not durable yet: nothing else of it may be written, since the create may still
    // be refused (the id taken) and a later write must never land on somebody else's workflow.
    bool creating = false;
};
using WfPtr = std::shared_ptr<Wf>;

enum class ActionKind : uint8_t { kCall, kCompensate, kPoll, kTimer };
struct Action {
    ActionKind kind;
    int index;
    bool after_completion = false;  // a dependent unblocked by a completion in the same group
    // Calls: the breaker the call goes through (null: none), whether it is that breaker's probe,
    // and the input rendered to ask the breaker (sent as is, not rendered again).
    Circuit* circuit = nullptr;
    bool probe = false;
    std::optional<std::string> input{};
};

// The changes of one event of one workflow, committed as one group, and what to do after.
struct Pending {
    store::WriteGroup group;
    std::vector<Action> actions;
    bool workflow_dirty = false;
    bool creating = false;
    std::function<void(Status)> on_commit;
};

// A group's commit result on its way from the store's writer thread to the io thread.
struct Committed {
    WfPtr wf;
    std::vector<Action> actions;
    std::function<void(Status)> on_commit;
    bool terminal = false;
    Status status;
    SteadyTime durable_at;
};

struct Bulkhead {
    int limit = 0;
    int in_use = 0;
    std::deque<std::pair<WfPtr, int>> waiters;
    observe::Gauge in_use_gauge;   // cogs_bulkhead_in_use
    observe::Gauge waiting_gauge;  // cogs_bulkhead_waiting

    void Publish() const {
        in_use_gauge.Set(in_use);
        waiting_gauge.Set(static_cast<double>(waiters.size()));
    }
};

struct ServiceCircuits;

// The breaker of one (service, endpoint) and the steps it holds back, in FIFO. An entry is live
// while its step is kCircuit with the entry's ticket; others are stale and skipped (and compacted
// away once they outnumber the live ones), so the queue stays bounded by the steps waiting.
struct Circuit {
    struct Waiter {
        WfPtr wf;
        int index;
        uint64_t ticket;
    };
    Circuit(ServiceCircuits* s, std::string n, Breaker::Config c)
        : service(s), name(std::move(n)), breaker(c) {}

    ServiceCircuits* service;
    std::string name;  // "service/endpoint", or "service" for the service as a whole
    Breaker breaker;
    std::deque<Waiter> waiters;
    size_t waiting = 0;          // live entries
    observe::Gauge state_gauge;  // cogs_circuit_state
};

// The breakers of one service and their options, gauges and counters.
struct ServiceCircuits {
    std::string service;
    bool enabled = false;
    Breaker::Config config;
    std::map<std::string, std::unique_ptr<Circuit>, std::less<>> endpoints;
    size_t waiting = 0;
    observe::Gauge waiting_gauge;  // cogs_circuit_waiting
    observe::Counter to[3];        // cogs_circuit_transitions_total, by CircuitState
};

// What a call's answer tells its breaker: the breaker, whether the call was its probe, and
// whether the answer counts (a call sent with no time left says nothing about the endpoint).
struct Gate {
    Circuit* circuit = nullptr;
    bool probe = false;
    bool counts = true;
};

}  // namespace cogs::workflow::internal

namespace cogs::workflow {

class Engine::Impl {
public:
    Impl(boost::asio::io_context& io, store::Store& store, Registry& registry, const ServiceCatalog& services,
         EngineOptions options);
    ~Impl();

    // engine_start.cc
    Status Recover();
    // The lease and the orphans it claims (blocking; Recover, or the lease timer after a read-only
    // start).
    Result<std::vector<store::WorkflowRecord>> TakeLease(store::Lease* lease);
    void Start(StartRequest req, std::function<void(Result<std::string>)> done);
    void StartMany(std::vector<StartRequest> reqs,
                   std::function<void(Result<std::vector<std::string>>)> done);
    void Cancel(const std::string& id, std::function<void(Status)> done);
    void Retry(const std::string& id, std::function<void(Status)> done);
    Status ReportCompletion(const std::string& key, Result<ActionReply> result);
    void OnFinished(std::function<void(const FinishedEvent&)> l) { listeners_.push_back(std::move(l)); }
    void SetStepOverheadObserver(std::function<void(int64_t)> o) { overhead_observer_ = std::move(o); }
    EngineStats Stats() const;
    const store::Lease& lease() const { return lease_; }
    void Shutdown();

    // engine_circuit.cc
    CircuitState BreakerState(const std::string& service, const std::string& endpoint) const;
    void ConfigureService(const std::string& service, int bulkhead,
                          const EngineOptions::BreakerOptions& breaker);

private:
    // What a step is waiting for, in memory only (Wf::busy). A step is "idle" when nothing is
    // outstanding, and only idle steps are touched by Advance(). kQueued: for a bulkhead slot;
    // kCircuit: in the queue of a breaker that holds calls back.
    enum Busy : uint8_t { kIdle = 0, kCommit, kCall, kTimer, kQueued, kCircuit };

    using Action = internal::Action;
    using ActionKind = internal::ActionKind;
    using Bulkhead = internal::Bulkhead;
    using CallMetrics = internal::CallMetrics;
    using Circuit = internal::Circuit;
    using CircuitWait = internal::CircuitWait;
    using Committed = internal::Committed;
    using Gate = internal::Gate;
    using Next = internal::Next;
    using Pending = internal::Pending;
    using ServiceCircuits = internal::ServiceCircuits;
    using StepRecord = store::StepRecord;
    using StepState = store::StepState;
    using StepTiming = internal::StepTiming;
    using TypeMetrics = internal::TypeMetrics;
    using Wf = internal::Wf;
    using WfPtr = internal::WfPtr;
    using WorkflowState = store::WorkflowState;

    // ---- engine_start.cc
    template <typename T>
    void Reply(std::function<void(T)> done, std::type_identity_t<T> value) {
        boost::asio::post(
            io_, [done = std::move(done), value = std::move(value)]() mutable { done(std::move(value)); });
    }
    void CheckStored(const std::string& id, std::function<void(Status)> done, const char* what);
    // A new workflow of `req` (not held yet), or why it may not start; `more` others start with it.
    Result<WfPtr> Prepare(StartRequest& req, size_t more);
    // Holds a prepared workflow and advances it: the pending create to commit.
    Pending Launch(const WfPtr& wf);
    std::string NewId();
    double Jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
    void Resume(store::WorkflowRecord rec);
    void Hold(const WfPtr& wf);
    static void SetTrace(Wf& wf);

    // ---- engine_advance.cc
    void Touch(Pending& p) { p.workflow_dirty = true; }
    void Advance(const WfPtr& wf, Pending& p);
    // Advances `wf` on its own (a timer fired, a slot or a breaker let it go, it was resumed) and
    // commits what that decided.
    void AdvanceAndCommit(const WfPtr& wf) {
        Pending p;
        Advance(wf, p);
        Commit(wf, std::move(p));
    }
    void Perform(const WfPtr& wf, std::vector<Action>& actions, SteadyTime durable_at);

    // ---- engine_dispatch.cc
    Bulkhead& BulkheadFor(const std::string& service);
    const std::string& ServiceOf(const Wf& wf, int i, bool compensation) const;
    bool TryDispatch(const WfPtr& wf, int i, bool compensation, Pending& p, int64_t now,
                     bool after_completion);
    void ReleaseSlot(const std::string& service);
    void LetWaitersGo(Bulkhead& b);  // steps waiting for a slot go while there are slots
    int64_t StopAt(const Wf& wf, int i) const;
    SteadyTime AttemptDeadline(const Wf& wf, int i, Duration timeout) const;
    Result<std::string> RenderInput(const Wf& wf, const std::string& tmpl) const;
    static ActionCall BareCall(const Wf& wf, int i, const ActionRef& action, const char* suffix);
    ActionCall MakeCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) const;
    Result<std::string> CompensationInput(const Wf& wf, int i) const;
    Gate GateOf(const Action& a, SteadyTime deadline) const;
    void SendAction(const WfPtr& wf, Action& a);
    void OnActionResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r);
    void SendPoll(const WfPtr& wf, Action& a);
    void FinishPoll(const WfPtr& wf, int i, Result<ActionReply> r);
    void SendCompensation(const WfPtr& wf, Action& a);
    void OnCompensationResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r);

    // Frees a bulkhead slot when the handler that received a call's answer is done with it, so
    // the workflow's own next step and the waiters are decided after the answer is recorded.
    struct ReleaseAfter {
        Impl* impl;
        const std::string& service;
        ReleaseAfter(Impl* i, const std::string& s) : impl(i), service(s) {}
        ~ReleaseAfter() { impl->ReleaseSlot(service); }
    };

    // ---- engine_circuit.cc
    ServiceCircuits& CircuitsOf(const std::string& service);
    Circuit& CircuitOf(ServiceCircuits& sc, const std::string& endpoint);
    static CircuitState StateOf(const Circuit& c);
    Circuit* CircuitFor(const Wf& wf, Action& a);
    bool PassCircuit(const WfPtr& wf, Action& a, Pending& p);
    void WaitOnCircuit(const WfPtr& wf, int i, ActionKind kind, Circuit& c, Pending& p);
    static bool Live(const Circuit::Waiter& e);
    void CountWaiting(Circuit& c, int delta);
    void EndWait(Wf& wf, int i);
    void ReleaseWaiters(Circuit& c);
    void EnterState(Circuit& c, CircuitState to);
    Circuit* OnCircuitAnswer(const Gate& g, const Result<ActionReply>& r);
    void Opened(Circuit& c, const std::string& why, const std::string& last_error);
    void ScheduleHalfOpen(Circuit& c);

    // Releases a breaker's waiters when the handler of an answer is done with it (declared before
    // ReleaseAfter, it runs after the bulkhead slot is freed).
    struct CircuitAfter {
        Impl* impl;
        Circuit* circuit;
        CircuitAfter(Impl* i, Circuit* c) : impl(i), circuit(c) {}
        ~CircuitAfter() {
            if (circuit != nullptr) {
                impl->ReleaseWaiters(*circuit);
            }
        }
    };

    // ---- engine_commit.cc
    void Commit(const WfPtr& wf, Pending p);
    void CommitCreates(std::vector<std::pair<WfPtr, Pending>> created);
    void Compose(const WfPtr& wf, Pending& p, bool terminal);
    void Deliver(Committed* c);
    void DrainInbox();
    void OnCommitted(const WfPtr& wf, std::vector<Action>& actions, const Status& s, SteadyTime durable_at,
                     bool terminal);
    void Drop(const WfPtr& wf, const std::vector<Action>& actions);
    void Finish(const WfPtr& wf);

    // ---- engine_timers.cc
    void ScheduleDeadline(const WfPtr& wf);
    void ScheduleRenewal();
    // The steady time at which the wall-clock instant `wall_ms` happens, by the engine's clock
    // (SteadyFromWallMs of cogs/base/time.h reads the machine's).
    SteadyTime SteadyAt(int64_t wall_ms) const { return clock_.Now() + Millis(wall_ms - clock_.WallMs()); }

    // ---- engine_observe.cc
    void InitMetrics();
    const CallMetrics* CallMetricsFor(const ActionRef& a, bool undo);
    void AttachMetrics(Wf& wf);
    void PublishInflight() { inflight_.Set(static_cast<double>(wfs_.size())); }
    void ObserveStepEnd(const Wf& wf, int i, bool compensation, bool ok, int64_t now_ms);
    void ObserveDispatch(Wf& wf, int i, bool compensation);
    static void ObserveAnswer(const Wf& wf, int i, bool compensation, const Result<ActionReply>& r);
    void ReportActionEnd(Wf& wf, int i, Next next, Pending& p, int64_t now_ms);
    void ReportWorkflowEnd(const Wf& wf, Pending& p);

    // Appends an event of the workflow's resource to the group `p` commits (nothing for a
    // workflow without a resource: the message is not even formatted).
    template <typename... Args>
    void AddEvent(const Wf& wf, Pending& p, const char* type, fmt::format_string<Args...> format,
                  Args&&... args) {
        if (wf.resource_id.empty()) {
            return;
        }
        auto counter = event_counters_.find(type);
        if (counter == event_counters_.end()) {
            counter = event_counters_.emplace(type, events_f_.With({{"type", type}})).first;
        }
        counter->second.Inc();
        store::EventRecord& e = p.group.events.emplace_back();
        e.time_ms = clock_.WallMs();
        e.project = wf.project;
        e.resource_kind = wf.resource_kind;
        e.resource_id = wf.resource_id;
        e.workflow_id = wf.id;
        e.type = type;
        e.message = fmt::format(format, std::forward<Args>(args)...);
        e.trace_id = wf.trace_id;
    }

    // Logs through the "engine" logger with the workflow's ids in scope (nothing is built when the
    // level is off).
    template <typename... Args>
    void LogWf(const Wf& wf, spdlog::level::level_enum level, fmt::format_string<Args...> format,
               Args&&... args) {
        if (!log_->should_log(level)) {
            return;
        }
        observe::LogScope scope({wf.trace_id, wf.id, wf.resource_id});
        log_->log(level, format, std::forward<Args>(args)...);
    }

    boost::asio::io_context& io_;
    store::Store& store_;
    Registry& registry_;
    const ServiceCatalog& services_;
    runtime::Clock& clock_;  // EngineOptions::clock, or the system's
    EngineOptions options_;
    internal::TimerQueue timers_;
    std::unique_ptr<runtime::Timer> renew_timer_;
    boost::asio::thread_pool blocking_{1};
    std::mt19937_64 rng_;
    store::Lease lease_;
    // Recover found the store out of space: no lease yet, so no workflow may start; the lease timer
    // takes it once the store is writable again (io thread).
    bool awaiting_lease_ = false;
    std::unordered_map<std::string, WfPtr> wfs_;
    std::unordered_map<std::string, Bulkhead> bulkheads_;
    std::unordered_map<std::string, ServiceCircuits> circuits_;  // by service; created on first use
    uint64_t next_ticket_ = 0;
    uint64_t circuit_waiting_ = 0;  // live waiters over every breaker
    std::vector<std::function<void(const FinishedEvent&)>> listeners_;
    std::function<void(int64_t)> overhead_observer_;
    std::mutex inbox_mu_;
    std::vector<std::unique_ptr<Committed>> inbox_;  // guarded by inbox_mu_
    bool drain_posted_ = false;                      // guarded by inbox_mu_
    EngineStats stats_;
    bool stopped_ = false;

    observe::CounterFamily events_f_;
    std::map<std::string_view, observe::Counter> event_counters_;  // by type (string literals)
    spdlog::logger* log_;  // observe::Log("engine"): loggers live as long as the process
    observe::CounterFamily started_f_, finished_f_, calls_f_, retries_f_, timeouts_f_, compensations_f_;
    observe::HistogramFamily wf_duration_f_, step_duration_f_, schedule_f_;
    observe::GaugeFamily bulkhead_in_use_f_, bulkhead_waiting_f_, bulkhead_limit_f_;
    observe::GaugeFamily circuit_state_f_, circuit_waiting_f_;
    observe::CounterFamily circuit_transitions_f_;
    observe::Gauge inflight_;
    std::map<const Definition*, std::unique_ptr<TypeMetrics>> type_metrics_;
    std::map<std::tuple<std::string, std::string, bool>, std::unique_ptr<CallMetrics>> call_metrics_;
};

}  // namespace cogs::workflow
