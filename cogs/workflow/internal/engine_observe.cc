// Engine::Impl: observability — metric handles (looked up once per definition and per (service,
// action), so the hot path follows pointers), step and workflow timings, events, log lines.
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

using internal::CallMetrics;
using internal::Seconds;

namespace {

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

void Engine::Impl::InitMetrics() {
    observe::Metrics* m = options_.metrics;
    started_f_ = observe::CounterOf(m, "cogs_workflows_started_total", "Workflows made durable by Start.");
    finished_f_ = observe::CounterOf(m, "cogs_workflows_finished_total",
                                     "Workflows that reached a terminal state, by outcome.");
    wf_duration_f_ =
        observe::HistogramOf(m, "cogs_workflow_duration_seconds", "A workflow's life, created to terminal.");
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
    timeouts_f_ = observe::CounterOf(m, "cogs_step_timeouts_total", "Call attempts that hit their deadline.");
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

// The handles of a (service, action), created on first use.
const internal::CallMetrics* Engine::Impl::CallMetricsFor(const ActionRef& a, bool undo) {
    auto& slot = call_metrics_[{a.service, a.action, undo}];
    if (slot == nullptr) {
        slot = std::make_unique<CallMetrics>();
        const observe::Labels sa{{"service", a.service}, {"action", a.action}};
        static constexpr const char* kOutcomes[] = {"ok", "accepted", "retryable", "permanent", "timeout"};
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
            l["outcome"] =
                undo ? (o == 0 ? "compensated" : "compensation_failed") : (o == 0 ? "succeeded" : "failed");
            slot->duration[o] = step_duration_f_.With(l);
        }
        slot->schedule_to_start = schedule_f_.With({{"service", a.service}});
    }
    return slot.get();
}

// Points the workflow at its definition's handles (built once per definition) and sets up its
// step timing. Nothing with metrics off: the hot path then only tests a null pointer.
void Engine::Impl::AttachMetrics(Wf& wf) {
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
            slot->undo.push_back(sd.compensation ? CallMetricsFor(sd.compensation->action, true) : nullptr);
        }
    }
    wf.metrics = slot.get();
    wf.timing.assign(wf.steps.size(), StepTiming{});
}

// A step's action (or compensation) ended: its duration from the first dispatch.
void Engine::Impl::ObserveStepEnd(const Wf& wf, int i, bool compensation, bool ok, int64_t now_ms) {
    if (wf.metrics == nullptr) {
        return;
    }
    const CallMetrics* m = compensation ? wf.metrics->undo[i] : wf.metrics->action[i];
    const SteadyTime from = compensation ? wf.timing[i].comp_dispatch : wf.timing[i].first_dispatch;
    double seconds;
    if (from != SteadyTime{}) {
        seconds = Seconds(from, clock_.Now());
    } else if (!compensation && wf.steps[i].started_ms != 0) {
        seconds = static_cast<double>(now_ms - wf.steps[i].started_ms) / 1000.0;  // resumed: wall clock
    } else {
        return;  // a compensation resumed after a restart: its start is not known
    }
    m->duration[ok ? 0 : 1].Observe(seconds);
}

// An attempt is being sent: schedule-to-start, and retries.
void Engine::Impl::ObserveDispatch(Wf& wf, int i, bool compensation) {
    if (wf.metrics == nullptr) {
        return;
    }
    const CallMetrics* m = compensation ? wf.metrics->undo[i] : wf.metrics->action[i];
    StepTiming& t = wf.timing[i];
    const SteadyTime now = clock_.Now();
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
void Engine::Impl::ObserveAnswer(const Wf& wf, int i, bool compensation, const Result<ActionReply>& r) {
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

// The events (and log lines) of a step's action ending one way or another.
void Engine::Impl::ReportActionEnd(Wf& wf, int i, Next next, Pending& p, int64_t now_ms) {
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
        case Next::kPoll: break;
    }
}

// The workflow reached a terminal state in the group `p` commits.
void Engine::Impl::ReportWorkflowEnd(const Wf& wf, Pending& p) {
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

}  // namespace cogs::workflow
