// Engine: runs workflows durably, to an end, through faults and crashes.
//
// Contract:
//  * Every state change of a workflow or step is committed to the Store before the engine acts on
//    it (sends a call, reports an outcome). Changes of many workflows share one transaction
//    (group commit); a step's completion and the dispatch of the steps it unblocks are one group.
//  * Every call carries the idempotency key "<workflow id>/<step>/do" (or "/undo" for the
//    compensation), the same for every attempt and after every restart.
//  * A step that fails for good (a definitive error, attempts exhausted, the workflow's or step's
//    deadline) or a cancel makes the workflow compensate: no new step starts, calls in flight are
//    awaited, then every step whose effect may exist is compensated in reverse dependency order.
//    Terminal states: succeeded, rolled_back, failed (a compensation could not finish; Retry()
//    resumes it).
//  * Recover() takes a lease with a fresh fencing token and resumes every unfinished workflow;
//    steps that were in flight are re-sent with the same key. Writes carry the token, so a stale
//    engine can never overwrite a newer one.
//  * Per-service bulkheads bound the calls in flight to each service; steps beyond wait in FIFO.
//  * A circuit breaker per (service, ServiceClient::Endpoint(call)): after failure_threshold
//    consecutive failed answers (retryable errors, unavailable, timeouts) it opens; steps,
//    compensations and polls bound for it then WAIT, in FIFO, without being sent and without using
//    an attempt, and in their durable state (runnable, waiting_retry, polling, compensating): no
//    write. After open_for it lets half_open_probes calls through; a success closes it and releases
//    the waiters in order, a failure opens it again for twice as long (up to max_open_for). The
//    workflow's deadline and cancels still apply to waiting steps. Breakers live in memory only:
//    after a restart every breaker starts closed.
//  * A parked workflow holds no thread and no coroutine frame: it is a record in memory plus, at
//    most, one outstanding call, one timer entry or one place in a breaker's queue.
//  * Observability: with EngineOptions::metrics, the series of docs/metrics.md ("the workflow
//    engine"); with metrics off the hot path only tests a null pointer. A workflow started with a
//    W3C traceparent sends each call a child span of it (same trace id, a new span id per call);
//    without one, calls carry none. A workflow started with a resource appends that resource's
//    events (step_succeeded, step_retried, step_failed, step_compensated, compensation_failed,
//    step_waiting, workflow_succeeded / workflow_rolled_back / workflow_failed) to the same group
//    as the change each reports. Log lines go to observe::Log("engine") with the workflow's trace,
//    workflow and resource ids in scope.
//  * Time: every reading of time (steady deadlines, wall-clock milliseconds recorded in the store)
//    and every timer (retry backoffs, polls, workflow and step deadlines, breakers' half-open
//    probes, lease renewal) goes through EngineOptions::clock: a test passes a FakeClock and moves
//    time itself. Call deadlines handed to a ServiceClient are on that clock too.
//
// Threading: every method must be called on the io_context's thread (the engine is single-
// threaded by design; store callbacks are posted back to it). Recover() blocks on the store and is
// called once before the workflows run. Destroy the engine only after io.run() has returned and
// Store::Flush() was called.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/observe/metrics.h"
#include "cogs/store/store.h"
#include "cogs/workflow/registry.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::workflow {

// A circuit breaker's state, as Engine::BreakerState and cogs_circuit_state show it.
enum class CircuitState : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

// "closed", "open", "half_open" (the `to` label of cogs_circuit_transitions_total).
const char* ToString(CircuitState s);

struct EngineOptions {
    // The circuit breakers of one service (one per endpoint of it, see ServiceClient::Endpoint).
    // A failure is an answer with a retryable error, kUnavailable or kDeadlineExceeded; any other
    // answer (ok, accepted, a definitive refusal) shows the endpoint answering. Values below their
    // minimum are raised to it (1, 1 ms, open_for, 1).
    struct BreakerOptions {
        bool enabled = true;
        int failure_threshold = 5;  // consecutive failed answers that open it
        Duration open_for = std::chrono::seconds(1);
        Duration max_open_for = std::chrono::seconds(30);  // a failed probe doubles open_for up to this
        int half_open_probes = 1;                          // calls let through half-open
    };

    std::string owner = "cogs-engine";  // lease owner name
    int64_t lease_ttl_ms = 15000;
    int default_bulkhead = 512;            // calls in flight per service
    std::map<std::string, int> bulkheads;  // per-service overrides
    Duration poll_initial = std::chrono::milliseconds(20);
    Duration poll_max = std::chrono::seconds(2);
    size_t max_inflight = 200000;  // Start() beyond this answers kResourceExhausted
    // The seed of the retry jitter; unset: drawn from the OS, so that engines (replicas on one
    // database, or one cogsd and its restarts) do not retry in step. Tests set it to replay a run.
    // Workflow ids the engine names itself never come from it: they are random UUIDs from the OS
    // (getrandom), unique across restarts and engines.
    std::optional<uint64_t> seed;
    BreakerOptions breaker;                          // every service's, unless overridden
    std::map<std::string, BreakerOptions> breakers;  // per-service overrides
    // Where the engine's metrics go (docs/metrics.md, "the workflow engine"); null: none. Must
    // outlive the engine. Handles are looked up once per definition and per (service, action).
    observe::Metrics* metrics = nullptr;
    // The engine's time and timers (cogs/runtime/clock.h); null: runtime::SystemClock(). Must
    // outlive the engine; with a FakeClock, Advance() it on the io_context's thread.
    runtime::Clock* clock = nullptr;
};

struct StartRequest {
    std::string id;  // caller-chosen (idempotent: kAlreadyExists if taken); empty: a fresh one
    std::string type;
    std::string input = "{}";  // a JSON object
    Duration deadline{0};      // 0: the definition's
    // W3C traceparent (the API's request span): kept on the workflow, every call carries a child
    // span of it. Empty or malformed: calls carry none.
    std::string traceparent;
    std::string project{};  // the tenant it works for (listed and filtered by it)
    // The resource it works on: the engine records the workflow's progress (step done, retried,
    // failed, compensated, workflow ended) as events of that resource. Empty: no events.
    std::string resource_kind{};
    std::string resource_id{};
    // Events committed with the create (e.g. the resource's "created"). The engine fills in what
    // is left empty: workflow_id (this workflow's id), trace_id (of `traceparent`), time_ms (now).
    std::vector<store::EventRecord> events{};
    // Desired-state records committed in the same transaction as the workflow's create (a server
    // in BUILD and the workflow that builds it exist together or not at all).
    std::vector<store::ResourceWrite> resources{};
};

struct EngineStats {
    uint64_t started = 0;
    uint64_t resumed = 0;
    uint64_t succeeded = 0;
    uint64_t rolled_back = 0;
    uint64_t failed = 0;
    uint64_t calls = 0;
    uint64_t retries = 0;
    uint64_t timeouts = 0;
    uint64_t compensations = 0;
    uint64_t fenced = 0;
    uint64_t inflight = 0;
    uint64_t circuit_opens = 0;    // breakers that opened (from closed or after a failed probe)
    uint64_t circuit_waits = 0;    // steps, compensations or polls that began waiting on a breaker
    uint64_t circuit_waiting = 0;  // waiting now
};

struct FinishedEvent {
    std::string id;
    std::string type;
    store::WorkflowState state = store::WorkflowState::kSucceeded;
    std::string reason;
    int64_t finished_ms = 0;
    std::string project;
    std::string trace;          // the traceparent it was started with
    std::string resource_kind;  // as in StartRequest
    std::string resource_id;
    std::string input;                           // JSON text
    std::map<std::string, std::string> outputs;  // step name -> its output's JSON text (steps with one)
};

// The end of a workflow read back from the store (for one whose end was not heard, e.g. it ended
// while its listener's process was down): `def` is its definition (for the steps' names), or null.
FinishedEvent FinishedEventOf(const store::WorkflowRecord& w, const Definition* def);

class Engine {
public:
    Engine(boost::asio::io_context& io, store::Store& store, Registry& registry,
           const ServiceCatalog& services, EngineOptions options);
    // Call Shutdown() and flush the store (Store::Flush) first: a commit of the engine's that
    // completes after the engine is gone would reach it.
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Takes the lease and resumes every unfinished workflow of the store. Blocking.
    Status Recover();

    // Starts a workflow on the latest version of its type. `done` gets the id once the workflow
    // is durable, or kInvalidArgument (unknown type, bad input), kAlreadyExists,
    // kResourceExhausted (max_inflight reached).
    void Start(StartRequest request, std::function<void(Result<std::string>)> done);

    // Starts several workflows whose creates (with each one's resources and events) commit in ONE
    // transaction: all are durable, or none is and none runs. `done` gets their ids in the order
    // asked, or the first refusal: Start's, an id asked twice (kAlreadyExists), kResourceExhausted
    // when all of them would pass max_inflight, kInvalidArgument for an empty list. Each then runs
    // as if started alone. (A bulk request: one answer for many resources, docs/api.md.)
    void StartMany(std::vector<StartRequest> requests,
                   std::function<void(Result<std::vector<std::string>>)> done);

    // Requests cancellation: no new step starts, completed ones are compensated.
    void Cancel(const std::string& id, std::function<void(Status)> done);

    // Operator retry of a `failed` workflow: its failed compensations run again.
    void Retry(const std::string& id, std::function<void(Status)> done);

    // A service's completion report for an accepted long action: the idempotency key it was
    // started with and its final answer (the output, or a definitive error). The step then ends at
    // once instead of at its next poll. kNotFound if no step of a running workflow is polling
    // under that key (a late or duplicate report: polling remains the source of truth).
    Status ReportCompletion(const std::string& idempotency_key, Result<ActionReply> result);

    // Called on the io thread for every workflow that reaches a terminal state.
    void OnFinished(std::function<void(const FinishedEvent&)> listener);

    // Called with the time from a step's completion being durable to its dependent's call (ns).
    void SetStepOverheadObserver(std::function<void(int64_t)> observer);

    EngineStats Stats() const;

    // The breaker of (service, endpoint) ("" endpoint: the service as a whole). kClosed for one
    // that no call has gone through yet, and for every breaker of a service whose breakers are off.
    CircuitState BreakerState(const std::string& service, const std::string& endpoint) const;
    const store::Lease& lease() const;

    // Sets (or changes, on a reload of cogsd's service catalog) a service's bulkhead and breakers,
    // as EngineOptions::bulkheads and ::breakers would have: a raised bulkhead lets waiting steps go
    // at once, a lowered one holds new calls back until those in flight are under it; breakers
    // take the new settings from their next answer (`enabled` is kept from the service's first call).
    void ConfigureService(const std::string& service, int bulkhead,
                          const EngineOptions::BreakerOptions& breaker);

    // Stops timers and lease renewal. Work in flight stays in the store and resumes next start.
    void Shutdown();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogs::workflow
