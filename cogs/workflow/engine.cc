#include "cogs/workflow/engine.h"

#include <fmt/format.h>
#include <spdlog/logger.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "cogs/base/check.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/workflow/internal/breaker.h"
#include "cogs/workflow/internal/step_machine.h"
#include "cogs/workflow/internal/template.h"

namespace cogs::workflow {

namespace asio = boost::asio;
using internal::Next;
using store::StepRecord;
using store::StepState;
using store::WorkflowState;

namespace {

// What a step is waiting for, in memory only. A step is "idle" when nothing is outstanding, and
// only idle steps are touched by Advance(). kQueued: for a bulkhead slot; kCircuit: in the queue
// of a breaker that holds calls back.
enum Busy : uint8_t { kIdle = 0, kCommit, kCall, kTimer, kQueued, kCircuit };

int64_t ToMs(Duration d) { return std::chrono::duration_cast<Millis>(d).count(); }

bool ValidId(const std::string& id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    return std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':';
    });
}

// One timer for the whole engine: parked retries, polls and deadlines cost a map entry each, not a
// timer object or a coroutine frame.
class TimerQueue {
public:
    explicit TimerQueue(asio::io_context& io) : timer_(io) {}

    void Schedule(SteadyTime at, std::function<void()> fn) {
        const bool earliest = queue_.empty() || at < queue_.begin()->first;
        queue_.emplace(at, std::move(fn));
        if (earliest) {
            Arm();
        }
    }

    void Stop() {
        stopped_ = true;
        queue_.clear();
        timer_.cancel();
    }

private:
    void Arm() {
        if (stopped_ || queue_.empty()) {
            return;
        }
        armed_at_ = queue_.begin()->first;
        timer_.expires_at(armed_at_);
        timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec == asio::error::operation_aborted && !stopped_) {
                return;  // re-armed for an earlier entry
            }
            Fire();
        });
    }

    void Fire() {
        if (stopped_) {
            return;
        }
        const auto now = SteadyClock::now();
        std::vector<std::function<void()>> due;
        while (!queue_.empty() && queue_.begin()->first <= now) {
            due.push_back(std::move(queue_.begin()->second));
            queue_.erase(queue_.begin());
        }
        Arm();
        for (auto& fn : due) {
            fn();
        }
    }

    asio::steady_timer timer_;
    std::multimap<SteadyTime, std::function<void()>> queue_;
    SteadyTime armed_at_{};
    bool stopped_ = false;
};

}  // namespace

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
    WorkflowState state = WorkflowState::kRunning;
    std::string reason;
    bool cancel_requested = false;
    int64_t created_ms = 0;
    int64_t deadline_ms = 0;
    uint64_t fence = 0;
    std::vector<StepRecord> steps;
    std::vector<uint8_t> busy;
    std::vector<int64_t> attempt_start_ms;
    std::vector<CircuitWait> circuit_wait;  // per step, allocated at the workflow's first wait
    bool finished = false;  // terminal and reported, or dropped
    // Its create is not durable yet: nothing else of it may be written, since the create may still
    // be refused (the id taken) and a later write must never land on somebody else's workflow.
    bool creating = false;
};
using WfPtr = std::shared_ptr<Wf>;

namespace {

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

}  // namespace

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
    Circuit(ServiceCircuits* s, std::string n, internal::Breaker::Config c)
        : service(s), name(std::move(n)), breaker(c) {}

    ServiceCircuits* service;
    std::string name;  // "service/endpoint", or "service" for the service as a whole
    internal::Breaker breaker;
    std::deque<Waiter> waiters;
    size_t waiting = 0;         // live entries
    observe::Gauge state_gauge;  // cogs_circuit_state
};

// The breakers of one service and their options, gauges and counters.
struct ServiceCircuits {
    std::string service;
    bool enabled = false;
    internal::Breaker::Config config;
    std::map<std::string, std::unique_ptr<Circuit>, std::less<>> endpoints;
    size_t waiting = 0;
    observe::Gauge waiting_gauge;  // cogs_circuit_waiting
    observe::Counter to[3];        // cogs_circuit_transitions_total, by CircuitState
};

namespace {

// What a call's answer tells its breaker: the breaker, whether the call was its probe, and
// whether the answer counts (a call sent with no time left says nothing about the endpoint).
struct Gate {
    Circuit* circuit = nullptr;
    bool probe = false;
    bool counts = true;
};

// The endpoint did not answer: a retryable error, unavailable, or a timeout. Any other answer,
// a definitive refusal included, shows it working.
bool EndpointFailed(const Result<ActionReply>& r) {
    if (r) {
        return false;
    }
    const Error& e = r.error();
    return e.retryable || e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kDeadlineExceeded;
}

double Seconds(SteadyTime from, SteadyTime to) { return std::chrono::duration<double>(to - from).count(); }

CallMetrics::Outcome OutcomeOf(const Result<ActionReply>& r) {
    if (r) {
        return r->accepted ? CallMetrics::kAccepted : CallMetrics::kOk;
    }
    if (r.error().code == ErrorCode::kDeadlineExceeded) {
        return CallMetrics::kTimeout;
    }
    return r.error().retryable ? CallMetrics::kRetryable : CallMetrics::kPermanent;
}

}  // namespace

class Engine::Impl {
public:
    Impl(asio::io_context& io, store::Store& store, Registry& registry, const ServiceCatalog& services,
         EngineOptions options)
        : io_(io),
          store_(store),
          registry_(registry),
          services_(services),
          options_(std::move(options)),
          timers_(io),
          renew_timer_(io),
          rng_(options_.seed),
          log_(&observe::Log("engine")) {
        observe::Metrics* m = options_.metrics;
        started_f_ =
            observe::CounterOf(m, "cogs_workflows_started_total", "Workflows made durable by Start.");
        finished_f_ = observe::CounterOf(m, "cogs_workflows_finished_total",
                                         "Workflows that reached a terminal state, by outcome.");
        wf_duration_f_ = observe::HistogramOf(m, "cogs_workflow_duration_seconds",
                                              "A workflow's life, created to terminal.");
        inflight_ =
            observe::GaugeOf(m, "cogs_workflows_in_flight", "Workflows not terminal, held by this engine.")
                .With({});
        step_duration_f_ = observe::HistogramOf(m, "cogs_step_duration_seconds",
                                                "A step's first dispatch to its end (compensations: the undo "
                                                "action's).");
        schedule_f_ = observe::HistogramOf(m, "cogs_step_schedule_to_start_seconds",
                                           "A step runnable (dependencies done, or retry due) to its call "
                                           "dispatched, bulkhead wait included.");
        calls_f_ = observe::CounterOf(m, "cogs_service_calls_total", "Service call attempts, by outcome.");
        retries_f_ = observe::CounterOf(m, "cogs_step_retries_total", "Call attempts after the first.");
        timeouts_f_ =
            observe::CounterOf(m, "cogs_step_timeouts_total", "Call attempts that hit their deadline.");
        compensations_f_ = observe::CounterOf(m, "cogs_compensations_total",
                                              "Compensating calls that completed (action: the undo action).");
        bulkhead_in_use_f_ = observe::GaugeOf(m, "cogs_bulkhead_in_use", "Calls in flight to the service.");
        bulkhead_waiting_f_ =
            observe::GaugeOf(m, "cogs_bulkhead_waiting", "Steps waiting for a bulkhead slot of the service.");
        bulkhead_limit_f_ = observe::GaugeOf(m, "cogs_bulkhead_limit", "The size of the service's bulkhead.");
        events_f_ = observe::CounterOf(m, "cogs_events_total", "Events recorded, by type.");
        circuit_state_f_ = observe::GaugeOf(m, "cogs_circuit_state",
                                            "A circuit breaker's state: 0 closed, 1 open, 2 half-open.");
        circuit_transitions_f_ = observe::CounterOf(m, "cogs_circuit_transitions_total",
                                                    "Circuit breaker state changes, by the state entered.");
        circuit_waiting_f_ = observe::GaugeOf(m, "cogs_circuit_waiting",
                                              "Steps waiting for the service's circuit breakers to let them go.");
    }

    ~Impl() { blocking_.join(); }

    Status Recover() {
        auto lease = store_.AcquireLease(options_.owner, options_.lease_ttl_ms);
        if (!lease) {
            return MakeError(lease.error());
        }
        lease_ = *lease;
        log_->info("engine {}: lease token {}", options_.owner, lease_.token);
        for (;;) {
            auto claimed = store_.ClaimOrphaned(lease_, 1000);
            if (!claimed) {
                return MakeError(claimed.error());
            }
            for (auto& rec : *claimed) {
                Resume(std::move(rec));
            }
            if (claimed->size() < 1000) {
                break;
            }
        }
        ScheduleRenewal();
        return Ok();
    }

    void Start(StartRequest req, std::function<void(Result<std::string>)> done) {
        const Definition* def = registry_.Latest(req.type);
        if (def == nullptr) {
            return Reply(std::move(done), MakeError(ErrorCode::kInvalidArgument, "type: unknown workflow type '" + req.type + "'"));
        }
        boost::system::error_code ec;
        auto parsed = boost::json::parse(req.input, ec);
        if (ec || !parsed.is_object()) {
            return Reply(std::move(done), MakeError(ErrorCode::kInvalidArgument, "input: must be a JSON object"));
        }
        if (req.id.empty()) {
            req.id = NewId();
        } else if (!ValidId(req.id)) {
            return Reply(std::move(done),
                         MakeError(ErrorCode::kInvalidArgument, "id: 1-128 characters of [A-Za-z0-9._:-]"));
        }
        if (wfs_.count(req.id) != 0) {
            return Reply(std::move(done), MakeError(ErrorCode::kAlreadyExists, "workflow " + req.id + " exists"));
        }
        if (wfs_.size() >= options_.max_inflight) {
            return Reply(std::move(done), MakeError(ErrorCode::kResourceExhausted, "too many workflows in flight"));
        }
        auto wf = std::make_shared<Wf>();
        wf->id = req.id;
        wf->def = def;
        wf->input = std::move(req.input);
        wf->trace = std::move(req.traceparent);
        wf->project = std::move(req.project);
        wf->resource_kind = std::move(req.resource_kind);
        wf->resource_id = std::move(req.resource_id);
        wf->create_resources = std::move(req.resources);
        wf->created_ms = WallNowMs();
        wf->started_at = SteadyClock::now();
        SetTrace(*wf);
        wf->create_events = std::move(req.events);
        for (store::EventRecord& e : wf->create_events) {
            if (e.workflow_id.empty()) {
                e.workflow_id = wf->id;
            }
            if (e.trace_id.empty()) {
                e.trace_id = wf->trace_id;
            }
            if (e.time_ms == 0) {
                e.time_ms = wf->created_ms;
            }
        }
        const Duration deadline = req.deadline.count() > 0 ? req.deadline : def->deadline;
        wf->deadline_ms = deadline.count() > 0 ? wf->created_ms + ToMs(deadline) : 0;
        wf->fence = lease_.token;
        wf->steps.resize(def->steps.size());
        for (size_t i = 0; i < wf->steps.size(); ++i) {
            wf->steps[i].index = static_cast<int>(i);
        }
        wf->busy.assign(def->steps.size(), kIdle);
        wf->attempt_start_ms.assign(def->steps.size(), 0);
        AttachMetrics(*wf);
        wfs_.emplace(wf->id, wf);
        PublishInflight();
        ++stats_.started;
        ScheduleDeadline(wf);

        Pending p;
        p.creating = true;
        std::string id = wf->id;
        wf->creating = true;
        p.on_commit = [done = std::move(done), id, metrics = wf->metrics](Status s) mutable {
            if (!s) {
                done(MakeError(s.error()));
            } else {
                if (metrics != nullptr) {
                    metrics->started.Inc();
                }
                done(id);
            }
        };
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void Cancel(const std::string& id, std::function<void(Status)> done) {
        auto it = wfs_.find(id);
        if (it == wfs_.end()) {
            return CheckStored(id, std::move(done), "cannot be cancelled");
        }
        WfPtr wf = it->second;
        if (wf->creating) {
            return Reply(std::move(done), MakeError(ErrorCode::kConflict, "workflow " + id + " is being created; retry"));
        }
        if (wf->state != WorkflowState::kRunning) {
            return Reply(std::move(done), Ok());  // already stopping: cancelling again is a no-op
        }
        wf->cancel_requested = true;
        Pending p;
        p.workflow_dirty = true;
        p.on_commit = std::move(done);
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void Retry(const std::string& id, std::function<void(Status)> done) {
        if (wfs_.count(id) != 0) {
            return Reply(std::move(done), MakeError(ErrorCode::kConflict, "workflow " + id + " is still running"));
        }
        asio::post(blocking_, [this, id, done = std::move(done)]() mutable {
            auto rec = store_.ReviveFailed(lease_, id);
            asio::post(io_, [this, rec = std::move(rec), done = std::move(done)]() mutable {
                if (!rec) {
                    return done(MakeError(rec.error()));
                }
                Resume(std::move(*rec));
                done(Ok());
            });
        });
    }

    Status ReportCompletion(const std::string& key, Result<ActionReply> result) {
        // "<workflow>/<step>/do"
        const auto first = key.find('/');
        const auto last = key.rfind('/');
        if (first == std::string::npos || last == first || key.compare(last, std::string::npos, "/do") != 0) {
            return MakeError(ErrorCode::kInvalidArgument, "key: not an action key: '" + key + "'");
        }
        auto it = wfs_.find(key.substr(0, first));
        if (it == wfs_.end()) {
            return MakeError(ErrorCode::kNotFound, "no running workflow for key '" + key + "'");
        }
        WfPtr wf = it->second;
        const int i = wf->def->StepIndex(key.substr(first + 1, last - first - 1));
        if (i < 0 || wf->steps[i].state != StepState::kPolling || wf->busy[i] == kCall ||
            wf->busy[i] == kCommit) {
            return MakeError(ErrorCode::kNotFound, "no step is waiting for '" + key + "'");
        }
        if (result && result->accepted) {
            return MakeError(ErrorCode::kInvalidArgument, "result: a completion report cannot be 'accepted'");
        }
        if (wf->busy[i] == kCircuit) {
            EndWait(*wf, i);  // the poll it waited to send is not needed any more
        }
        wf->busy[i] = kIdle;  // a pending poll timer finds the step busy no more and lets go
        FinishPoll(wf, i, std::move(result));
        return Ok();
    }

    void OnFinished(std::function<void(const FinishedEvent&)> l) { listeners_.push_back(std::move(l)); }
    void SetStepOverheadObserver(std::function<void(int64_t)> o) { overhead_observer_ = std::move(o); }

    EngineStats Stats() const {
        EngineStats s = stats_;
        s.inflight = wfs_.size();
        s.circuit_waiting = circuit_waiting_;
        return s;
    }

    CircuitState BreakerState(const std::string& service, const std::string& endpoint) const {
        auto sc = circuits_.find(service);
        if (sc == circuits_.end()) {
            return CircuitState::kClosed;
        }
        auto c = sc->second.endpoints.find(endpoint);
        return c == sc->second.endpoints.end() ? CircuitState::kClosed : StateOf(*c->second);
    }
    const store::Lease& lease() const { return lease_; }

    void Shutdown() {
        stopped_ = true;
        timers_.Stop();
        renew_timer_.cancel();
    }

private:
    template <typename T>
    void Reply(std::function<void(T)> done, std::type_identity_t<T> value) {
        asio::post(io_, [done = std::move(done), value = std::move(value)]() mutable { done(std::move(value)); });
    }

    void CheckStored(const std::string& id, std::function<void(Status)> done, const char* what) {
        asio::post(blocking_, [this, id, done = std::move(done), what]() mutable {
            auto rec = store_.GetWorkflow(id);
            Status s = rec ? Status(MakeError(ErrorCode::kConflict, fmt::format("workflow {} is {} and {}", id,
                                                                                 store::ToString(rec->state), what)))
                           : Status(MakeError(rec.error()));
            Reply(std::move(done), std::move(s));
        });
    }

    std::string NewId() {
        std::uniform_int_distribution<uint64_t> d;
        const uint64_t a = d(rng_), b = d(rng_);
        return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                           ((b >> 48) & 0x3fff) | 0x8000, b & 0xffffffffffffULL);
    }

    double Jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

    void Resume(store::WorkflowRecord rec) {
        const Definition* def = registry_.Get(rec.type, rec.version);
        if (def == nullptr || def->steps.size() != rec.steps.size()) {
            COGS_EXPECT(def != nullptr && def->steps.size() == rec.steps.size());
            observe::LogScope scope({observe::TraceIdOf(rec.trace), rec.id, rec.resource_id});
            log_->error("workflow {}: definition {} v{} is not loadable; left for an operator", rec.id,
                        rec.type, rec.version);
            return;
        }
        auto wf = std::make_shared<Wf>();
        wf->id = std::move(rec.id);
        wf->def = def;
        wf->input = std::move(rec.input);
        wf->trace = std::move(rec.trace);
        wf->project = std::move(rec.project);
        wf->resource_kind = std::move(rec.resource_kind);
        wf->resource_id = std::move(rec.resource_id);
        SetTrace(*wf);
        wf->state = rec.state;
        wf->reason = std::move(rec.reason);
        wf->cancel_requested = rec.cancel_requested;
        wf->created_ms = rec.created_ms;
        wf->deadline_ms = rec.deadline_ms;
        wf->fence = rec.fence;
        wf->steps = std::move(rec.steps);
        wf->busy.assign(wf->steps.size(), kIdle);
        wf->attempt_start_ms.assign(wf->steps.size(), 0);
        AttachMetrics(*wf);
        wfs_[wf->id] = wf;
        PublishInflight();
        ++stats_.resumed;
        ScheduleDeadline(wf);
        asio::post(io_, [this, wf] {
            Pending p;
            Advance(wf, p);
            Commit(wf, std::move(p));
        });
    }

    static void SetTrace(Wf& wf) {
        wf.trace_ctx = observe::ParseTraceparent(wf.trace);
        wf.trace_id = wf.trace_ctx ? wf.trace_ctx->trace_id : std::string();
    }

    // ---- metrics, events, logs

    // The handles of a (service, action), created on first use.
    const CallMetrics* CallMetricsFor(const ActionRef& a, bool undo) {
        auto& slot = call_metrics_[{a.service, a.action, undo}];
        if (slot == nullptr) {
            slot = std::make_unique<CallMetrics>();
            const observe::Labels sa{{"service", a.service}, {"action", a.action}};
            static constexpr const char* kOutcomes[] = {"ok", "accepted", "retryable", "permanent",
                                                        "timeout"};
            for (int o = 0; o < CallMetrics::kNumOutcomes; ++o) {
                observe::Labels l = sa;
                l["outcome"] = kOutcomes[o];
                slot->calls[o] = calls_f_.With(l);
            }
            slot->retries = retries_f_.With(sa);
            slot->timeouts = timeouts_f_.With(sa);
            if (undo) {
                slot->compensations = compensations_f_.With(sa);
            }
            for (int o = 0; o < 2; ++o) {
                observe::Labels l = sa;
                l["outcome"] = undo ? (o == 0 ? "compensated" : "compensation_failed")
                                    : (o == 0 ? "succeeded" : "failed");
                slot->duration[o] = step_duration_f_.With(l);
            }
            slot->schedule_to_start = schedule_f_.With({{"service", a.service}});
        }
        return slot.get();
    }

    // Points the workflow at its definition's handles (built once per definition) and sets up its
    // step timing. Nothing with metrics off: the hot path then only tests a null pointer.
    void AttachMetrics(Wf& wf) {
        if (options_.metrics == nullptr) {
            return;
        }
        auto& slot = type_metrics_[wf.def];
        if (slot == nullptr) {
            slot = std::make_unique<TypeMetrics>();
            const std::string& type = wf.def->type;
            slot->started = started_f_.With({{"type", type}});
            static constexpr const char* kOutcomes[] = {"succeeded", "rolled_back", "failed"};
            for (int o = 0; o < 3; ++o) {
                slot->finished[o] = finished_f_.With({{"type", type}, {"outcome", kOutcomes[o]}});
                slot->duration[o] = wf_duration_f_.With({{"type", type}, {"outcome", kOutcomes[o]}});
            }
            for (const StepDef& sd : wf.def->steps) {
                slot->action.push_back(CallMetricsFor(sd.action, false));
                slot->undo.push_back(sd.compensation ? CallMetricsFor(sd.compensation->action, true)
                                                     : nullptr);
            }
        }
        wf.metrics = slot.get();
        wf.timing.assign(wf.steps.size(), StepTiming{});
    }

    void PublishInflight() { inflight_.Set(static_cast<double>(wfs_.size())); }

    // A step's action (or compensation) ended: its duration from the first dispatch.
    void ObserveStepEnd(const Wf& wf, int i, bool compensation, bool ok, int64_t now_ms) {
        if (wf.metrics == nullptr) {
            return;
        }
        const CallMetrics* m = compensation ? wf.metrics->undo[i] : wf.metrics->action[i];
        const SteadyTime from = compensation ? wf.timing[i].comp_dispatch : wf.timing[i].first_dispatch;
        double seconds;
        if (from != SteadyTime{}) {
            seconds = Seconds(from, SteadyClock::now());
        } else if (!compensation && wf.steps[i].started_ms != 0) {
            seconds = static_cast<double>(now_ms - wf.steps[i].started_ms) / 1000.0;  // resumed: wall clock
        } else {
            return;  // a compensation resumed after a restart: its start is not known
        }
        m->duration[ok ? 0 : 1].Observe(seconds);
    }

    // An attempt is being sent: schedule-to-start, and retries.
    void ObserveDispatch(Wf& wf, int i, bool compensation) {
        if (wf.metrics == nullptr) {
            return;
        }
        const CallMetrics* m = compensation ? wf.metrics->undo[i] : wf.metrics->action[i];
        StepTiming& t = wf.timing[i];
        const SteadyTime now = SteadyClock::now();
        SteadyTime& first = compensation ? t.comp_dispatch : t.first_dispatch;
        if (first == SteadyTime{}) {
            first = now;
        }
        if (t.runnable != SteadyTime{}) {
            m->schedule_to_start.Observe(Seconds(t.runnable, now));
            t.runnable = SteadyTime{};
        }
        if ((compensation ? wf.steps[i].comp_attempts : wf.steps[i].attempts) > 1) {
            m->retries.Inc();
        }
    }

    // An attempt's answer: counted by outcome.
    static void ObserveAnswer(const Wf& wf, int i, bool compensation, const Result<ActionReply>& r) {
        if (wf.metrics == nullptr) {
            return;
        }
        const CallMetrics* m = compensation ? wf.metrics->undo[i] : wf.metrics->action[i];
        const CallMetrics::Outcome o = OutcomeOf(r);
        m->calls[o].Inc();
        if (o == CallMetrics::kTimeout) {
            m->timeouts.Inc();
        }
    }

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
        e.time_ms = WallNowMs();
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

    // The events (and log lines) of a step's action ending one way or another.
    void ReportActionEnd(Wf& wf, int i, Next next, Pending& p, int64_t now_ms) {
        const StepDef& sd = wf.def->steps[i];
        const StepRecord& rec = wf.steps[i];
        switch (next) {
            case Next::kSucceeded:
                ObserveStepEnd(wf, i, false, true, now_ms);
                AddEvent(wf, p, "step_succeeded", "step {} ({}.{}) succeeded after {} attempt{}", sd.name,
                         sd.action.service, sd.action.action, rec.attempts, rec.attempts == 1 ? "" : "s");
                break;
            case Next::kRetry:
                AddEvent(wf, p, "step_retried", "step {} ({}.{}) attempt {} failed, retrying in {} ms: {}",
                         sd.name, sd.action.service, sd.action.action, rec.attempts, rec.next_at_ms - now_ms,
                         rec.error);
                LogWf(wf, spdlog::level::debug, "step {} ({}.{}) attempt {} failed, retrying: {}", sd.name,
                      sd.action.service, sd.action.action, rec.attempts, rec.error);
                break;
            case Next::kFailed:
                ObserveStepEnd(wf, i, false, false, now_ms);
                AddEvent(wf, p, "step_failed", "step {} ({}.{}) failed: {}", sd.name, sd.action.service,
                         sd.action.action, rec.error);
                LogWf(wf, spdlog::level::debug, "step {} ({}.{}) failed: {}", sd.name, sd.action.service,
                      sd.action.action, rec.error);
                break;
            case Next::kPoll:
                break;
        }
    }

    void ScheduleDeadline(const WfPtr& wf) {
        if (wf->deadline_ms == 0 || wf->state != WorkflowState::kRunning) {
            return;
        }
        timers_.Schedule(SteadyFromWallMs(wf->deadline_ms), [this, wf] {
            if (!wf->finished && wf->state == WorkflowState::kRunning) {
                Pending p;
                Advance(wf, p);
                Commit(wf, std::move(p));
            }
        });
    }

    void ScheduleRenewal() {
        renew_timer_.expires_after(std::chrono::milliseconds(std::max<int64_t>(100, options_.lease_ttl_ms / 3)));
        renew_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopped_) {
                return;
            }
            asio::post(blocking_, [this] {
                store::Lease lease = lease_;
                auto s = store_.RenewLease(lease, options_.lease_ttl_ms);
                // Losing the lease means another engine owns our workflows: stop at once; the
                // fencing tokens already refuse anything we would still write.
                if (!s) {
                    log_->critical("engine {}: lease lost: {}", options_.owner, s.error().ToString());
                    COGS_CHECK(s.error().code != ErrorCode::kFenced);
                }
                asio::post(io_, [this, lease] {
                    lease_.expires_ms = lease.expires_ms;
                    ScheduleRenewal();
                });
            });
        });
    }

    Bulkhead& BulkheadFor(const std::string& service) {
        auto it = bulkheads_.find(service);
        if (it == bulkheads_.end()) {
            Bulkhead b;
            auto o = options_.bulkheads.find(service);
            b.limit = o == options_.bulkheads.end() ? options_.default_bulkhead : o->second;
            b.in_use_gauge = bulkhead_in_use_f_.With({{"service", service}});
            b.waiting_gauge = bulkhead_waiting_f_.With({{"service", service}});
            bulkhead_limit_f_.With({{"service", service}}).Set(b.limit);
            b.Publish();
            it = bulkheads_.emplace(service, std::move(b)).first;
        }
        return it->second;
    }

    const std::string& ServiceOf(const Wf& wf, int i, bool compensation) const {
        const StepDef& s = wf.def->steps[i];
        return compensation ? s.compensation->action.service : s.action.service;
    }

    // Takes a bulkhead slot and marks the step dispatched; or queues the step for a slot, or on
    // its breaker while that holds calls back (then nothing is recorded: it waits as it is).
    // Returns true if dispatched.
    bool TryDispatch(const WfPtr& wf, int i, bool compensation, Pending& p, int64_t now, bool after_completion) {
        if (wf->metrics != nullptr && wf->timing[i].runnable == SteadyTime{}) {
            wf->timing[i].runnable = SteadyClock::now();  // kept while it waits for a slot or a breaker
        }
        Bulkhead& b = BulkheadFor(ServiceOf(*wf, i, compensation));
        if (b.in_use >= b.limit) {
            wf->busy[i] = kQueued;
            b.waiters.emplace_back(wf, i);
            b.waiting_gauge.Set(static_cast<double>(b.waiters.size()));
            return false;
        }
        Action a{compensation ? ActionKind::kCompensate : ActionKind::kCall, i, after_completion};
        if (!PassCircuit(wf, a, p)) {
            return false;
        }
        ++b.in_use;
        b.in_use_gauge.Set(b.in_use);
        StepRecord& rec = wf->steps[i];
        internal::MarkDispatched(rec, now, compensation);
        wf->attempt_start_ms[i] = now;
        wf->busy[i] = kCommit;
        p.group.steps.push_back({wf->id, rec, {}});
        p.actions.push_back(std::move(a));
        return true;
    }

    // ---- circuit breakers

    ServiceCircuits& CircuitsOf(const std::string& service) {
        auto it = circuits_.find(service);
        if (it != circuits_.end()) {
            return it->second;
        }
        ServiceCircuits& sc = circuits_[service];
        auto o = options_.breakers.find(service);
        const EngineOptions::BreakerOptions& bo = o == options_.breakers.end() ? options_.breaker : o->second;
        sc.service = service;
        sc.enabled = bo.enabled;
        sc.config = {bo.failure_threshold, bo.open_for, bo.max_open_for, bo.half_open_probes};
        if (sc.enabled) {
            sc.waiting_gauge = circuit_waiting_f_.With({{"service", service}});
            sc.waiting_gauge.Set(0);
            for (CircuitState to : {CircuitState::kClosed, CircuitState::kOpen, CircuitState::kHalfOpen}) {
                sc.to[static_cast<int>(to)] =
                    circuit_transitions_f_.With({{"service", service}, {"to", ToString(to)}});
            }
        }
        return sc;
    }

    Circuit& CircuitOf(ServiceCircuits& sc, const std::string& endpoint) {
        auto it = sc.endpoints.find(endpoint);
        if (it != sc.endpoints.end()) {
            return *it->second;
        }
        auto c = std::make_unique<Circuit>(&sc, endpoint.empty() ? sc.service : sc.service + "/" + endpoint,
                                           sc.config);
        // "-" for the service as a whole: an empty label value would read as no label at all.
        c->state_gauge =
            circuit_state_f_.With({{"service", sc.service}, {"endpoint", endpoint.empty() ? "-" : endpoint}});
        c->state_gauge.Set(0);
        return *sc.endpoints.emplace(endpoint, std::move(c)).first->second;
    }

    static CircuitState StateOf(const Circuit& c) {
        static_assert(static_cast<int>(internal::Breaker::State::kHalfOpen) ==
                      static_cast<int>(CircuitState::kHalfOpen));
        return static_cast<CircuitState>(c.breaker.state());
    }

    // The breaker that the call of `a` (an action, compensation or poll of step a.index) goes
    // through, per ServiceClient::Endpoint, and that call's input (kept in `a` so that it is not
    // rendered twice). Null when the service's breakers are off, it has no client, or the input
    // does not render (the call then fails unsent).
    Circuit* CircuitFor(const Wf& wf, Action& a) {
        const int i = a.index;
        const bool undo = a.kind == ActionKind::kCompensate;
        const ActionRef& ref = undo ? wf.def->steps[i].compensation->action : wf.def->steps[i].action;
        ServiceCircuits& sc = CircuitsOf(ref.service);
        if (!sc.enabled) {
            return nullptr;
        }
        const ServiceClient* client = services_.Find(ref.service);
        if (client == nullptr) {
            return nullptr;
        }
        auto input = undo ? CompensationInput(wf, i) : RenderInput(wf, wf.def->steps[i].input);
        if (!input) {
            return nullptr;
        }
        ActionCall call = BareCall(wf, i, ref, undo ? "undo" : "do");
        call.input = std::move(*input);
        Circuit& c = CircuitOf(sc, client->Endpoint(call));
        a.input = std::move(call.input);
        return &c;
    }

    // Asks the breaker of `a`'s call: true if the call may go (a.circuit and a.probe are set), or
    // false and the step now waits in the breaker's queue.
    bool PassCircuit(const WfPtr& wf, Action& a, Pending& p) {
        Circuit* c = CircuitFor(*wf, a);
        if (c == nullptr) {
            return true;
        }
        const int i = a.index;
        if (!c->breaker.CanSend()) {
            WaitOnCircuit(wf, i, a.kind, *c, p);
            return false;
        }
        a.circuit = c;
        a.probe = c->breaker.OnSend();
        if (!wf->circuit_wait.empty()) {
            wf->circuit_wait[i].announced = false;  // a later wait is a new one
        }
        return true;
    }

    void WaitOnCircuit(const WfPtr& wf, int i, ActionKind kind, Circuit& c, Pending& p) {
        if (wf->circuit_wait.empty()) {
            wf->circuit_wait.resize(wf->steps.size());
        }
        CircuitWait& w = wf->circuit_wait[i];
        w.on = &c;
        w.ticket = ++next_ticket_;
        wf->busy[i] = kCircuit;
        if (c.waiters.size() >= 2 * c.waiting + 64) {
            std::erase_if(c.waiters, [](const Circuit::Waiter& e) { return !Live(e); });
        }
        c.waiters.push_back({wf, i, w.ticket});
        CountWaiting(c, +1);
        ++stats_.circuit_waits;
        if (w.announced) {
            return;
        }
        w.announced = true;
        if (wf->resource_id.empty()) {
            return;
        }
        const StepDef& sd = wf->def->steps[i];
        const char* state =
            c.breaker.state() == internal::Breaker::State::kOpen ? "open" : "half-open, probing";
        if (kind == ActionKind::kCompensate) {
            AddEvent(*wf, p, "step_waiting", "compensation of step {} ({}.{}) waits: circuit of {} is {}",
                     sd.name, sd.compensation->action.service, sd.compensation->action.action, c.name, state);
        } else {
            AddEvent(*wf, p, "step_waiting", "step {} ({}.{}) waits: circuit of {} is {}", sd.name,
                     sd.action.service, sd.action.action, c.name, state);
        }
        Touch(p);  // the event commits under the workflow's fencing token, like every other write
    }

    static bool Live(const Circuit::Waiter& e) {
        return e.wf->busy[e.index] == kCircuit && e.wf->circuit_wait[e.index].ticket == e.ticket;
    }

    void CountWaiting(Circuit& c, int delta) {
        c.waiting += delta;
        c.service->waiting += delta;
        circuit_waiting_ += delta;
        c.service->waiting_gauge.Set(static_cast<double>(c.service->waiting));
    }

    // Step i stops waiting on its breaker (released, or its wait became moot); its queue entry
    // goes stale.
    void EndWait(Wf& wf, int i) {
        CircuitWait& w = wf.circuit_wait[i];
        COGS_DCHECK(wf.busy[i] == kCircuit && w.on != nullptr);
        CountWaiting(*w.on, -1);
        w.on = nullptr;
        w.ticket = 0;
        wf.busy[i] = kIdle;
    }

    // Lets waiters go, in order, while the breaker lets calls through: all of them once it is
    // closed, as many as it has probe places half-open (each takes its place when it is sent).
    void ReleaseWaiters(Circuit& c) {
        while (c.breaker.CanSend() && !c.waiters.empty()) {
            Circuit::Waiter e = std::move(c.waiters.front());
            c.waiters.pop_front();
            if (!Live(e)) {
                continue;
            }
            EndWait(*e.wf, e.index);
            Pending p;
            Advance(e.wf, p);
            Commit(e.wf, std::move(p));
        }
    }

    void EnterState(Circuit& c, CircuitState to) {
        c.state_gauge.Set(static_cast<double>(to));
        c.service->to[static_cast<int>(to)].Inc();
    }

    // A call's answer as its breaker sees it. Returns the breaker whose waiters may go now (they
    // are released once the answer's handler is done: see CircuitAfter), or null.
    Circuit* OnCircuitAnswer(const Gate& g, const Result<ActionReply>& r) {
        if (g.circuit == nullptr) {
            return nullptr;
        }
        Circuit& c = *g.circuit;
        if (!g.counts) {
            if (g.probe) {
                c.breaker.ProbeDropped();
                return &c;
            }
            return nullptr;
        }
        const bool was_half_open = c.breaker.state() == internal::Breaker::State::kHalfOpen;
        switch (c.breaker.OnAnswer(g.probe, EndpointFailed(r), SteadyClock::now())) {
            case internal::Breaker::Change::kOpened: {
                const int threshold = c.service->config.failure_threshold;
                Opened(c,
                       was_half_open    ? std::string("its probe failed")
                       : threshold <= 1 ? std::string("a call failed")
                                        : fmt::format("{} calls in a row failed", threshold),
                       r.error().ToString());
                return nullptr;
            }
            case internal::Breaker::Change::kClosed:
                EnterState(c, CircuitState::kClosed);
                log_->info("circuit of {} closed: its probe succeeded; releasing {} waiting call{}", c.name,
                           c.waiting, c.waiting == 1 ? "" : "s");
                return &c;
            case internal::Breaker::Change::kNone:
                break;
        }
        return nullptr;
    }

    void Opened(Circuit& c, const std::string& why, const std::string& last_error) {
        ++stats_.circuit_opens;
        EnterState(c, CircuitState::kOpen);
        log_->info("circuit of {} opened: {} (last: {}); calls to it wait {} ms", c.name, why, last_error,
                   ToMs(c.breaker.open_for()));
        ScheduleHalfOpen(c);
    }

    // One timer entry per open period (not one per waiting step).
    void ScheduleHalfOpen(Circuit& c) {
        Circuit* cp = &c;
        const uint64_t epoch = c.breaker.epoch();
        timers_.Schedule(c.breaker.open_until(), [this, cp, epoch] {
            if (cp->breaker.epoch() != epoch || cp->breaker.state() != internal::Breaker::State::kOpen) {
                return;
            }
            if (!cp->breaker.HalfOpenIfDue(SteadyClock::now())) {
                return ScheduleHalfOpen(*cp);
            }
            EnterState(*cp, CircuitState::kHalfOpen);
            ReleaseWaiters(*cp);
        });
    }

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

    void ReleaseSlot(const std::string& service) {
        Bulkhead& b = BulkheadFor(service);
        --b.in_use;
        COGS_DCHECK(b.in_use >= 0);
        while (b.in_use < b.limit && !b.waiters.empty()) {
            auto [wf, i] = std::move(b.waiters.front());
            b.waiters.pop_front();
            if (wf->finished || wf->busy[i] != kQueued) {
                continue;
            }
            wf->busy[i] = kIdle;
            Pending p;
            Advance(wf, p);
            Commit(wf, std::move(p));
        }
        b.Publish();
    }

    void Touch(Pending& p) { p.workflow_dirty = true; }

    // Decides everything that can happen now for an idle step of `wf` and records it in `p`.
    void Advance(const WfPtr& wf, Pending& p) {
        if (wf->finished || store::IsTerminal(wf->state) || (wf->creating && !p.creating)) {
            return;  // a creating workflow is advanced again once its create is durable
        }
        const Definition& def = *wf->def;
        const int64_t now = WallNowMs();
        const size_t n = def.steps.size();

        if (wf->state == WorkflowState::kRunning) {
            std::string stop;
            if (wf->cancel_requested) {
                stop = "cancelled";
            } else if (wf->deadline_ms != 0 && now >= wf->deadline_ms) {
                stop = "deadline_exceeded: the workflow's deadline passed";
            } else {
                for (size_t i = 0; i < n; ++i) {
                    if (wf->steps[i].state == StepState::kFailed) {
                        stop = fmt::format("step {} failed: {}", def.steps[i].name, wf->steps[i].error);
                        break;
                    }
                }
            }
            if (!stop.empty()) {
                wf->state = WorkflowState::kCompensating;
                wf->reason = std::move(stop);
                Touch(p);
            } else {
                bool all_done = true;
                for (int i : def.topo_order) {
                    StepRecord& s = wf->steps[i];
                    if (s.state != StepState::kSucceeded) {
                        all_done = false;
                    }
                    if (wf->busy[i] != kIdle) {
                        continue;
                    }
                    switch (s.state) {
                        case StepState::kPending:
                            if (internal::DependenciesDone(def, wf->steps, i)) {
                                TryDispatch(wf, i, false, p, now, !def.steps[i].deps.empty());
                            }
                            break;
                        case StepState::kRunning:  // in flight when an earlier process died: re-send
                            TryDispatch(wf, i, false, p, now, false);
                            break;
                        case StepState::kWaitingRetry:
                            if (s.next_at_ms <= now) {
                                if (TryDispatch(wf, i, false, p, now, false)) {
                                    ++stats_.retries;
                                }
                            } else {
                                wf->busy[i] = kTimer;
                                p.actions.push_back({ActionKind::kTimer, i});
                            }
                            break;
                        case StepState::kPolling:
                            if (s.next_at_ms <= now) {
                                // A poll goes to the same endpoint as the action: it waits on an
                                // open breaker like a dispatch (no attempt is involved).
                                Action a{ActionKind::kPoll, i};
                                if (PassCircuit(wf, a, p)) {
                                    wf->busy[i] = kCommit;
                                    p.actions.push_back(std::move(a));
                                }
                            } else {
                                wf->busy[i] = kTimer;
                                p.actions.push_back({ActionKind::kTimer, i});
                            }
                            break;
                        default:
                            break;
                    }
                }
                if (all_done) {
                    wf->state = WorkflowState::kSucceeded;
                    Touch(p);
                }
                return;
            }
        }

        // Compensating: stop idle forward work, then undo in reverse dependency order.
        bool busy = false;
        for (auto it = def.topo_order.rbegin(); it != def.topo_order.rend(); ++it) {
            const int i = *it;
            StepRecord& s = wf->steps[i];
            const bool forward = s.state == StepState::kPending || s.state == StepState::kRunning ||
                                 s.state == StepState::kWaitingRetry || s.state == StepState::kPolling;
            if (forward && (wf->busy[i] == kQueued || wf->busy[i] == kTimer || wf->busy[i] == kCircuit)) {
                if (wf->busy[i] == kCircuit) {
                    EndWait(*wf, i);
                }
                wf->busy[i] = kIdle;  // the forward dispatch it waited for is off: its entry goes stale
                if (wf->metrics != nullptr) {
                    wf->timing[i].runnable = SteadyTime{};
                }
            }
            if (wf->busy[i] != kIdle) {
                busy = true;
                continue;
            }
            const StepState before = s.state;
            internal::StopForward(s, now);
            if (s.state != before) {
                p.group.steps.push_back({wf->id, s, {}});
                if (s.state == StepState::kFailed) {  // it had been dispatched: it ends here
                    ReportActionEnd(*wf, i, Next::kFailed, p, now);
                }
            }
            if (!internal::NeedsCompensation(def.steps[i], s)) {
                continue;
            }
            if (s.state == StepState::kCompensating && s.next_at_ms > now) {
                wf->busy[i] = kTimer;
                p.actions.push_back({ActionKind::kTimer, i});
                busy = true;
                continue;
            }
            if (internal::CompensationReady(def, wf->steps, wf->busy, i)) {
                TryDispatch(wf, i, true, p, now, false);
                busy = true;
            }
        }
        if (busy) {
            return;
        }
        // Nothing in flight and nothing can start: the saga is over.
        bool stuck = false;
        for (size_t i = 0; i < n; ++i) {
            if (wf->steps[i].state == StepState::kCompensationFailed ||
                internal::NeedsCompensation(def.steps[i], wf->steps[i])) {
                stuck = true;
            }
        }
        wf->state = stuck ? WorkflowState::kFailed : WorkflowState::kRolledBack;
        if (stuck) {
            wf->reason += "; a compensation could not finish (retry the workflow once the service is fixed)";
        }
        Touch(p);
    }

    // The workflow reached a terminal state in the group `p` commits.
    void ReportWorkflowEnd(const Wf& wf, Pending& p) {
        const std::string& type = wf.def->type;
        switch (wf.state) {
            case WorkflowState::kSucceeded:
                AddEvent(wf, p, "workflow_succeeded", "workflow {} succeeded", type);
                LogWf(wf, spdlog::level::debug, "workflow {} succeeded", type);
                break;
            case WorkflowState::kRolledBack:
                AddEvent(wf, p, "workflow_rolled_back", "workflow {} rolled back: {}", type, wf.reason);
                LogWf(wf, spdlog::level::info, "workflow {} rolled back: {}", type, wf.reason);
                break;
            default:
                AddEvent(wf, p, "workflow_failed", "workflow {} failed: {}", type, wf.reason);
                LogWf(wf, spdlog::level::err, "workflow {} failed: {}", type, wf.reason);
                break;
        }
    }

    void Commit(const WfPtr& wf, Pending p) {
        const bool terminal = store::IsTerminal(wf->state);
        if (p.creating) {
            store::WorkflowRecord rec;
            rec.id = wf->id;
            rec.type = wf->def->type;
            rec.version = wf->def->version;
            rec.input = wf->input;
            rec.state = wf->state;
            rec.reason = wf->reason;
            rec.created_ms = rec.updated_ms = wf->created_ms;
            rec.deadline_ms = wf->deadline_ms;
            rec.trace = wf->trace;
            rec.project = wf->project;
            rec.fence = wf->fence;
            rec.resource_kind = wf->resource_kind;
            rec.resource_id = wf->resource_id;
            rec.steps = wf->steps;
            p.group.create = std::move(rec);
            p.group.resources = std::move(wf->create_resources);
            wf->create_resources.clear();
            p.group.events.insert(p.group.events.begin(), std::make_move_iterator(wf->create_events.begin()),
                                  std::make_move_iterator(wf->create_events.end()));
            wf->create_events.clear();
            p.group.steps.clear();  // the create carries every step as it is now
        } else if (p.workflow_dirty) {
            const int64_t now = WallNowMs();
            p.group.workflows.push_back(
                {wf->id, wf->state, wf->reason, wf->cancel_requested, now, terminal ? now : 0});
        }
        if (terminal && (p.creating || p.workflow_dirty)) {
            ReportWorkflowEnd(*wf, p);
        }
        if (p.group.Transitions() == 0) {
            Perform(wf, p.actions, SteadyTime{});
            if (p.on_commit) {
                p.on_commit(Ok());
            }
            return;
        }
        COGS_DCHECK(!wf->creating || p.creating);
        p.group.fence = wf->fence;
        // Owned by the store's callback until delivered; a raw pointer keeps the callback small
        // enough for std::function's inline storage (no allocation per commit on the writer).
        auto* c = new Committed{wf, std::move(p.actions), std::move(p.on_commit), terminal, Ok(), {}};
        store_.Commit(std::move(p.group), [this, c](Status s) {
            c->status = std::move(s);
            c->durable_at = SteadyClock::now();
            Deliver(c);
        });
    }

    // Writer thread: hands a commit result to the io thread. Results of one batch arrive together,
    // so one posted handler drains them all instead of one post per group.
    void Deliver(Committed* c) {
        std::lock_guard lock(inbox_mu_);
        inbox_.emplace_back(c);
        if (!drain_posted_) {
            drain_posted_ = true;
            asio::post(io_, [this] { DrainInbox(); });
        }
    }

    void DrainInbox() {
        std::vector<std::unique_ptr<Committed>> batch;
        {
            std::lock_guard lock(inbox_mu_);
            batch.swap(inbox_);
            drain_posted_ = false;
        }
        for (auto& c : batch) {
            OnCommitted(c->wf, c->actions, c->status, c->durable_at, c->terminal);
            if (c->on_commit) {
                c->on_commit(std::move(c->status));
            }
        }
    }

    void OnCommitted(const WfPtr& wf, std::vector<Action>& actions, const Status& s, SteadyTime durable_at,
                     bool terminal) {
        if (!s) {
            // Fenced: a newer owner has the workflow. Duplicate create: the id was taken. Either
            // way this engine lets go of it. Any other failure means the store is broken: die and
            // let the restart recover from what is durable.
            COGS_CHECK(s.error().code == ErrorCode::kFenced || s.error().code == ErrorCode::kAlreadyExists);
            if (s.error().code == ErrorCode::kFenced) {
                ++stats_.fenced;
                LogWf(*wf, spdlog::level::warn, "workflow {}: fenced out: {}", wf->id, s.error().message);
            }
            Drop(wf, actions);
            return;
        }
        if (terminal && !wf->finished) {
            Finish(wf);
            return;
        }
        Perform(wf, actions, durable_at);
        if (wf->creating) {
            // Steps that found their bulkhead full while the create was in flight go now.
            wf->creating = false;
            Pending p;
            Advance(wf, p);
            Commit(wf, std::move(p));
        }
    }

    void Drop(const WfPtr& wf, const std::vector<Action>& actions) {
        if (!wf->finished) {
            wf->finished = true;
            auto it = wfs_.find(wf->id);
            if (it != wfs_.end() && it->second == wf) {
                wfs_.erase(it);
                PublishInflight();
            }
            for (size_t i = 0; i < wf->busy.size(); ++i) {
                if (wf->busy[i] == kCircuit) {
                    EndWait(*wf, static_cast<int>(i));
                }
            }
        }
        for (const Action& a : actions) {
            if (a.kind == ActionKind::kCall || a.kind == ActionKind::kCompensate) {
                ReleaseSlot(ServiceOf(*wf, a.index, a.kind == ActionKind::kCompensate));
            }
            if (a.probe) {  // never sent: the breaker's probe place is free again
                a.circuit->breaker.ProbeDropped();
                ReleaseWaiters(*a.circuit);
            }
        }
    }

    void Finish(const WfPtr& wf) {
        wf->finished = true;
        wfs_.erase(wf->id);
        PublishInflight();
        int outcome = 2;
        switch (wf->state) {
            case WorkflowState::kSucceeded:
                ++stats_.succeeded;
                outcome = 0;
                break;
            case WorkflowState::kRolledBack:
                ++stats_.rolled_back;
                outcome = 1;
                break;
            default: ++stats_.failed; break;
        }
        const int64_t now_ms = WallNowMs();
        if (wf->metrics != nullptr) {
            wf->metrics->finished[outcome].Inc();
            wf->metrics->duration[outcome].Observe(
                wf->started_at != SteadyTime{} ? Seconds(wf->started_at, SteadyClock::now())
                                               : static_cast<double>(now_ms - wf->created_ms) / 1000.0);
        }
        if (!listeners_.empty()) {
            FinishedEvent ev{wf->id,    wf->def->type,     wf->state,       wf->reason, now_ms, wf->project,
                             wf->trace, wf->resource_kind, wf->resource_id, wf->input,  {}};
            for (size_t i = 0; i < wf->steps.size(); ++i) {
                if (!wf->steps[i].output.empty()) {
                    ev.outputs.emplace(wf->def->steps[i].name, wf->steps[i].output);
                }
            }
            for (auto& l : listeners_) {
                l(ev);
            }
        }
    }

    void Perform(const WfPtr& wf, std::vector<Action>& actions, SteadyTime durable_at) {
        for (Action& a : actions) {
            switch (a.kind) {
                case ActionKind::kCall:
                    if (a.after_completion && overhead_observer_ && durable_at != SteadyTime{}) {
                        overhead_observer_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               SteadyClock::now() - durable_at)
                                               .count());
                    }
                    SendAction(wf, a);
                    break;
                case ActionKind::kCompensate:
                    SendCompensation(wf, a);
                    break;
                case ActionKind::kPoll:
                    SendPoll(wf, a);
                    break;
                case ActionKind::kTimer: {
                    const int i = a.index;
                    timers_.Schedule(SteadyFromWallMs(wf->steps[i].next_at_ms), [this, wf, i] {
                        if (wf->finished || wf->busy[i] != kTimer) {
                            return;
                        }
                        wf->busy[i] = kIdle;
                        Pending p;
                        Advance(wf, p);
                        Commit(wf, std::move(p));
                    });
                    break;
                }
            }
        }
    }

    // The earliest of the workflow's deadline and the step's own (0: none).
    int64_t StopAt(const Wf& wf, int i) const {
        int64_t stop = wf.deadline_ms;
        const Duration d = wf.def->steps[i].deadline;
        if (d.count() > 0 && wf.steps[i].started_ms != 0) {
            const int64_t step_stop = wf.steps[i].started_ms + ToMs(d);
            stop = stop == 0 ? step_stop : std::min(stop, step_stop);
        }
        return stop;
    }

    SteadyTime AttemptDeadline(const Wf& wf, int i, Duration timeout) const {
        SteadyTime deadline = SteadyClock::now() + timeout;
        if (const int64_t stop = StopAt(wf, i); stop != 0) {
            deadline = std::min(deadline, SteadyFromWallMs(stop));
        }
        return deadline;
    }

    Result<std::string> RenderInput(const Wf& wf, const std::string& tmpl) const {
        internal::RenderContext ctx;
        ctx.workflow_id = wf.id;
        ctx.input = wf.input;
        ctx.step_output = [&wf](std::string_view name) -> const std::string* {
            const int j = wf.def->StepIndex(std::string(name));
            if (j < 0 || wf.steps[j].output.empty()) {
                return nullptr;
            }
            return &wf.steps[j].output;
        };
        return internal::RenderTemplate(tmpl, ctx);
    }

    // The call's service, action and key: what ServiceClient::Endpoint may look at, with the input.
    static ActionCall BareCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) {
        ActionCall call;
        call.service = action.service;
        call.action = action.action;
        call.idempotency_key = fmt::format("{}/{}/{}", wf.id, wf.def->steps[i].name, suffix);
        return call;
    }

    ActionCall MakeCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) const {
        ActionCall call = BareCall(wf, i, action, suffix);
        if (wf.trace_ctx) {
            call.traceparent = wf.trace_ctx->Child().ToTraceparent();  // a span of its own per call
        }
        return call;
    }

    // A compensation's input: its template, or by default the action's input and output.
    Result<std::string> CompensationInput(const Wf& wf, int i) const {
        const StepDef& sd = wf.def->steps[i];
        if (!sd.compensation->input.empty()) {
            return RenderInput(wf, sd.compensation->input);
        }
        auto action_input = RenderInput(wf, sd.input);
        return fmt::format(R"({{"input":{},"output":{}}})", action_input ? *action_input : "null",
                           wf.steps[i].output.empty() ? "null" : wf.steps[i].output);
    }

    // What the answer of the call of `a`, sent now with `deadline`, tells its breaker.
    static Gate GateOf(const Action& a, SteadyTime deadline) {
        // A call sent with no time left (a step released past its own deadline) fails on its own.
        return {a.circuit, a.probe, deadline > SteadyClock::now()};
    }

    void SendAction(const WfPtr& wf, Action& a) {
        const int i = a.index;
        const StepDef& sd = wf->def->steps[i];
        ServiceClient* client = services_.Find(sd.action.service);
        ActionCall call = MakeCall(*wf, i, sd.action, "do");
        call.deadline = AttemptDeadline(*wf, i, sd.timeout);
        wf->busy[i] = kCall;
        ++stats_.calls;
        ObserveDispatch(*wf, i, false);
        auto input = a.input ? Result<std::string>(std::move(*a.input)) : RenderInput(*wf, sd.input);
        if (client == nullptr || !input) {
            Error e = client == nullptr ? Error(ErrorCode::kFailedPrecondition,
                                                "no client for service '" + sd.action.service + "'")
                                        : input.error();
            e.retryable = false;
            return Reply<Result<ActionReply>>(
                [this, wf, i](Result<ActionReply> r) { OnActionResult(wf, i, Gate{}, std::move(r)); },
                MakeError(std::move(e)));
        }
        call.input = std::move(*input);
        const Gate gate = GateOf(a, call.deadline);
        client->Invoke(std::move(call),
                       [this, wf, i, gate](Result<ActionReply> r) { OnActionResult(wf, i, gate, std::move(r)); });
    }

    void OnActionResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r) {
        CircuitAfter circuit(this, OnCircuitAnswer(gate, r));
        ReleaseAfter release(this, wf->def->steps[i].action.service);
        if (wf->finished) {
            return;
        }
        wf->busy[i] = kIdle;
        StepRecord& rec = wf->steps[i];
        const int64_t now = WallNowMs();
        if (!r && r.error().code == ErrorCode::kDeadlineExceeded) {
            ++stats_.timeouts;
        }
        ObserveAnswer(*wf, i, false, r);
        const Next next = internal::ApplyActionResult(wf->def->steps[i], rec, r, now, Jitter(), StopAt(*wf, i),
                                                      wf->state == WorkflowState::kRunning);
        const char* outcome = next == Next::kSucceeded ? "succeeded"
                              : next == Next::kPoll    ? "accepted"
                              : next == Next::kRetry   ? "retry"
                                                       : "failed";
        Pending p;
        p.group.steps.push_back({wf->id, rec,
                                 internal::LogLine("action", rec.attempts, wf->attempt_start_ms[i], now, outcome,
                                                   r ? std::string() : r.error().ToString())});
        ReportActionEnd(*wf, i, next, p, now);
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void SendPoll(const WfPtr& wf, Action& a) {
        const int i = a.index;
        const StepDef& sd = wf->def->steps[i];
        ServiceClient* client = services_.Find(sd.action.service);
        COGS_CHECK(client != nullptr);
        ActionCall call = MakeCall(*wf, i, sd.action, "do");
        call.deadline = AttemptDeadline(*wf, i, sd.timeout);
        // The action's input again: a routing client (e.g. to the step's compute host) needs it.
        if (a.input) {
            call.input = std::move(*a.input);
        } else if (auto input = RenderInput(*wf, sd.input)) {
            call.input = std::move(*input);
        }
        wf->busy[i] = kCall;
        const Gate gate = GateOf(a, call.deadline);
        client->Status(std::move(call), [this, wf, i, gate](Result<ActionReply> r) {
            CircuitAfter circuit(this, OnCircuitAnswer(gate, r));
            if (wf->finished || wf->busy[i] != kCall) {
                return;  // a completion report got there first
            }
            wf->busy[i] = kIdle;
            FinishPoll(wf, i, std::move(r));
        });
    }

    // A poll's answer, or a completion report, for a polling step.
    void FinishPoll(const WfPtr& wf, int i, Result<ActionReply> r) {
        StepRecord& rec = wf->steps[i];
        const int64_t now = WallNowMs();
        const Next next = internal::ApplyPollResult(wf->def->steps[i], rec, r, now, options_.poll_initial,
                                                    options_.poll_max, StopAt(*wf, i));
        Pending p;
        if (next != Next::kPoll) {
            p.group.steps.push_back({wf->id, rec,
                                     internal::LogLine("poll", rec.attempts, wf->attempt_start_ms[i], now,
                                                       next == Next::kSucceeded ? "succeeded" : "failed",
                                                       rec.error)});
            ReportActionEnd(*wf, i, next, p, now);
        }
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void SendCompensation(const WfPtr& wf, Action& a) {
        const int i = a.index;
        const StepDef& sd = wf->def->steps[i];
        const Compensation& comp = *sd.compensation;
        ServiceClient* client = services_.Find(comp.action.service);
        ActionCall call = MakeCall(*wf, i, comp.action, "undo");
        call.deadline = SteadyClock::now() + comp.timeout;
        wf->busy[i] = kCall;
        ++stats_.compensations;
        ObserveDispatch(*wf, i, true);
        auto input = a.input ? Result<std::string>(std::move(*a.input)) : CompensationInput(*wf, i);
        if (client == nullptr || !input) {
            Error e = client == nullptr
                          ? Error(ErrorCode::kFailedPrecondition, "no client for service '" + comp.action.service + "'")
                          : input.error();
            e.retryable = false;
            return Reply<Result<ActionReply>>(
                [this, wf, i](Result<ActionReply> r) { OnCompensationResult(wf, i, Gate{}, std::move(r)); },
                MakeError(std::move(e)));
        }
        call.input = std::move(*input);
        const Gate gate = GateOf(a, call.deadline);
        client->Invoke(std::move(call), [this, wf, i, gate](Result<ActionReply> r) {
            OnCompensationResult(wf, i, gate, std::move(r));
        });
    }

    void OnCompensationResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r) {
        CircuitAfter circuit(this, OnCircuitAnswer(gate, r));
        ReleaseAfter release(this, wf->def->steps[i].compensation->action.service);
        if (wf->finished) {
            return;
        }
        wf->busy[i] = kIdle;
        StepRecord& rec = wf->steps[i];
        const int64_t now = WallNowMs();
        ObserveAnswer(*wf, i, true, r);
        const Compensation& comp = *wf->def->steps[i].compensation;
        const Next next = internal::ApplyCompensationResult(comp, rec, r, now, Jitter());
        Pending p;
        const std::string& name = wf->def->steps[i].name;
        switch (next) {
            case Next::kSucceeded:
                if (wf->metrics != nullptr) {
                    wf->metrics->undo[i]->compensations.Inc();
                }
                ObserveStepEnd(*wf, i, true, true, now);
                AddEvent(*wf, p, "step_compensated", "step {} compensated ({}.{})", name, comp.action.service,
                         comp.action.action);
                break;
            case Next::kRetry:
                AddEvent(*wf, p, "step_retried",
                         "compensation of step {} ({}.{}) attempt {} failed, retrying in {} ms: {}", name,
                         comp.action.service, comp.action.action, rec.comp_attempts, rec.next_at_ms - now,
                         rec.error);
                LogWf(*wf, spdlog::level::debug,
                      "compensation of step {} ({}.{}) attempt {} failed, retrying: {}", name,
                      comp.action.service, comp.action.action, rec.comp_attempts, rec.error);
                break;
            default:
                ObserveStepEnd(*wf, i, true, false, now);
                AddEvent(*wf, p, "compensation_failed", "compensation of step {} ({}.{}) failed: {}", name,
                         comp.action.service, comp.action.action, rec.error);
                LogWf(*wf, spdlog::level::warn, "compensation of step {} ({}.{}) failed: {}", name,
                      comp.action.service, comp.action.action, rec.error);
                break;
        }
        p.group.steps.push_back({wf->id, rec,
                                 internal::LogLine("compensation", rec.comp_attempts, wf->attempt_start_ms[i], now,
                                                   next == Next::kSucceeded ? "compensated"
                                                   : next == Next::kRetry   ? "retry"
                                                                            : "failed",
                                                   r ? std::string() : r.error().ToString())});
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    // Frees a bulkhead slot when the handler that received a call's answer is done with it, so
    // the workflow's own next step and the waiters are decided after the answer is recorded.
    struct ReleaseAfter {
        Impl* impl;
        const std::string& service;
        ReleaseAfter(Impl* i, const std::string& s) : impl(i), service(s) {}
        ~ReleaseAfter() { impl->ReleaseSlot(service); }
    };

    asio::io_context& io_;
    store::Store& store_;
    Registry& registry_;
    const ServiceCatalog& services_;
    EngineOptions options_;
    TimerQueue timers_;
    asio::steady_timer renew_timer_;
    asio::thread_pool blocking_{1};
    std::mt19937_64 rng_;
    store::Lease lease_;
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

const char* ToString(CircuitState s) {
    switch (s) {
        case CircuitState::kClosed: return "closed";
        case CircuitState::kOpen: return "open";
        case CircuitState::kHalfOpen: return "half_open";
    }
    return "closed";
}

Engine::Engine(asio::io_context& io, store::Store& store, Registry& registry, const ServiceCatalog& services,
               EngineOptions options)
    : impl_(std::make_unique<Impl>(io, store, registry, services, std::move(options))) {}
Engine::~Engine() = default;
Status Engine::Recover() { return impl_->Recover(); }
void Engine::Start(StartRequest r, std::function<void(Result<std::string>)> done) { impl_->Start(std::move(r), std::move(done)); }
void Engine::Cancel(const std::string& id, std::function<void(Status)> done) { impl_->Cancel(id, std::move(done)); }
void Engine::Retry(const std::string& id, std::function<void(Status)> done) { impl_->Retry(id, std::move(done)); }
Status Engine::ReportCompletion(const std::string& key, Result<ActionReply> r) {
    return impl_->ReportCompletion(key, std::move(r));
}
void Engine::OnFinished(std::function<void(const FinishedEvent&)> l) { impl_->OnFinished(std::move(l)); }
void Engine::SetStepOverheadObserver(std::function<void(int64_t)> o) { impl_->SetStepOverheadObserver(std::move(o)); }
EngineStats Engine::Stats() const { return impl_->Stats(); }
CircuitState Engine::BreakerState(const std::string& service, const std::string& endpoint) const {
    return impl_->BreakerState(service, endpoint);
}
const store::Lease& Engine::lease() const { return impl_->lease(); }
void Engine::Shutdown() { impl_->Shutdown(); }

}  // namespace cogs::workflow
