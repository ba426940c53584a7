// Engine::Impl: bulkheads, and the calls to services — actions, polls of accepted actions,
// compensations — with their inputs, deadlines and answers.
#include <algorithm>

#include "cogs/base/check.h"
#include "cogs/workflow/internal/engine_impl.h"
#include "cogs/workflow/internal/template.h"

namespace cogs::workflow {

using internal::ToMs;

namespace {

// A call that cannot be sent — no client for its service, or an input that does not render — fails
// for good (answered from a handler of its own, as a client would answer).
tl::unexpected<Error> Unsendable(const ServiceClient* client, const std::string& service,
                                 const Result<std::string>& input) {
    Error e = client == nullptr
                  ? Error(ErrorCode::kFailedPrecondition, "no client for service '" + service + "'")
                  : input.error();
    e.retryable = false;
    return MakeError(std::move(e));
}

}  // namespace

void Engine::Impl::ConfigureService(const std::string& service, int bulkhead,
                                    const EngineOptions::BreakerOptions& breaker) {
    options_.bulkheads[service] = std::max(1, bulkhead);
    options_.breakers[service] = breaker;
    if (auto b = bulkheads_.find(service); b != bulkheads_.end()) {
        b->second.limit = std::max(1, bulkhead);
        bulkhead_limit_f_.With({{"service", service}}).Set(b->second.limit);
        LetWaitersGo(b->second);
    }
    if (auto sc = circuits_.find(service); sc != circuits_.end()) {
        sc->second.config = {breaker.failure_threshold, breaker.open_for, breaker.max_open_for,
                             breaker.half_open_probes};
        for (auto& [endpoint, circuit] : sc->second.endpoints) {
            circuit->breaker.Reconfigure(sc->second.config);
        }
    }
}

internal::Bulkhead& Engine::Impl::BulkheadFor(const std::string& service) {
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

const std::string& Engine::Impl::ServiceOf(const Wf& wf, int i, bool compensation) const {
    const StepDef& s = wf.def->steps[i];
    return compensation ? s.compensation->action.service : s.action.service;
}

// Takes a bulkhead slot and marks the step dispatched; or queues the step for a slot, or on
// its breaker while that holds calls back (then nothing is recorded: it waits as it is).
// Returns true if dispatched.
bool Engine::Impl::TryDispatch(const WfPtr& wf, int i, bool compensation, Pending& p, int64_t now,
                               bool after_completion) {
    if (wf->metrics != nullptr && wf->timing[i].runnable == SteadyTime{}) {
        wf->timing[i].runnable = clock_.Now();  // kept while it waits for a slot or a breaker
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

void Engine::Impl::ReleaseSlot(const std::string& service) {
    Bulkhead& b = BulkheadFor(service);
    --b.in_use;
    COGS_DCHECK(b.in_use >= 0);
    LetWaitersGo(b);
}

void Engine::Impl::LetWaitersGo(Bulkhead& b) {
    while (b.in_use < b.limit && !b.waiters.empty()) {
        auto [wf, i] = std::move(b.waiters.front());
        b.waiters.pop_front();
        if (wf->finished || wf->busy[i] != kQueued) {
            continue;
        }
        wf->busy[i] = kIdle;
        AdvanceAndCommit(wf);
    }
    b.Publish();
}

// The earliest of the workflow's deadline and the step's own (0: none).
int64_t Engine::Impl::StopAt(const Wf& wf, int i) const {
    int64_t stop = wf.deadline_ms;
    const Duration d = wf.def->steps[i].deadline;
    if (d.count() > 0 && wf.steps[i].started_ms != 0) {
        const int64_t step_stop = wf.steps[i].started_ms + ToMs(d);
        stop = stop == 0 ? step_stop : std::min(stop, step_stop);
    }
    return stop;
}

SteadyTime Engine::Impl::AttemptDeadline(const Wf& wf, int i, Duration timeout) const {
    SteadyTime deadline = clock_.Now() + timeout;
    if (const int64_t stop = StopAt(wf, i); stop != 0) {
        deadline = std::min(deadline, SteadyAt(stop));
    }
    return deadline;
}

Result<std::string> Engine::Impl::RenderInput(const Wf& wf, const std::string& tmpl) const {
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
ActionCall Engine::Impl::BareCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) {
    ActionCall call;
    call.service = action.service;
    call.action = action.action;
    call.idempotency_key = fmt::format("{}/{}/{}", wf.id, wf.def->steps[i].name, suffix);
    return call;
}

ActionCall Engine::Impl::MakeCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) const {
    ActionCall call = BareCall(wf, i, action, suffix);
    if (wf.trace_ctx) {
        call.traceparent = wf.trace_ctx->Child().ToTraceparent();  // a span of its own per call
    }
    return call;
}

// A compensation's input: its template, or by default the action's input and output.
Result<std::string> Engine::Impl::CompensationInput(const Wf& wf, int i) const {
    const StepDef& sd = wf.def->steps[i];
    if (!sd.compensation->input.empty()) {
        return RenderInput(wf, sd.compensation->input);
    }
    auto action_input = RenderInput(wf, sd.input);
    return fmt::format(R"({{"input":{},"output":{}}})", action_input ? *action_input : "null",
                       wf.steps[i].output.empty() ? "null" : wf.steps[i].output);
}

// What the answer of the call of `a`, sent now with `deadline`, tells its breaker.
internal::Gate Engine::Impl::GateOf(const Action& a, SteadyTime deadline) const {
    // A call sent with no time left (a step released past its own deadline) fails on its own.
    return {a.circuit, a.probe, deadline > clock_.Now()};
}

void Engine::Impl::SendAction(const WfPtr& wf, Action& a) {
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
        return Reply<Result<ActionReply>>(
            [this, wf, i](Result<ActionReply> r) { OnActionResult(wf, i, Gate{}, std::move(r)); },
            Unsendable(client, sd.action.service, input));
    }
    call.input = std::move(*input);
    const Gate gate = GateOf(a, call.deadline);
    client->Invoke(std::move(call),
                   [this, wf, i, gate](Result<ActionReply> r) { OnActionResult(wf, i, gate, std::move(r)); });
}

void Engine::Impl::OnActionResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r) {
    CircuitAfter circuit(this, OnCircuitAnswer(gate, r));
    ReleaseAfter release(this, wf->def->steps[i].action.service);
    if (wf->finished) {
        return;
    }
    wf->busy[i] = kIdle;
    StepRecord& rec = wf->steps[i];
    const int64_t now = clock_.WallMs();
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

void Engine::Impl::SendPoll(const WfPtr& wf, Action& a) {
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
void Engine::Impl::FinishPoll(const WfPtr& wf, int i, Result<ActionReply> r) {
    StepRecord& rec = wf->steps[i];
    const int64_t now = clock_.WallMs();
    const Next next = internal::ApplyPollResult(wf->def->steps[i], rec, r, now, options_.poll_initial,
                                                options_.poll_max, StopAt(*wf, i));
    Pending p;
    if (next != Next::kPoll) {
        p.group.steps.push_back(
            {wf->id, rec,
             internal::LogLine("poll", rec.attempts, wf->attempt_start_ms[i], now,
                               next == Next::kSucceeded ? "succeeded" : "failed", rec.error)});
        ReportActionEnd(*wf, i, next, p, now);
    }
    Advance(wf, p);
    Commit(wf, std::move(p));
}

void Engine::Impl::SendCompensation(const WfPtr& wf, Action& a) {
    const int i = a.index;
    const StepDef& sd = wf->def->steps[i];
    const Compensation& comp = *sd.compensation;
    ServiceClient* client = services_.Find(comp.action.service);
    ActionCall call = MakeCall(*wf, i, comp.action, "undo");
    call.deadline = clock_.Now() + comp.timeout;
    wf->busy[i] = kCall;
    ++stats_.compensations;
    ObserveDispatch(*wf, i, true);
    auto input = a.input ? Result<std::string>(std::move(*a.input)) : CompensationInput(*wf, i);
    if (client == nullptr || !input) {
        return Reply<Result<ActionReply>>(
            [this, wf, i](Result<ActionReply> r) { OnCompensationResult(wf, i, Gate{}, std::move(r)); },
            Unsendable(client, comp.action.service, input));
    }
    call.input = std::move(*input);
    const Gate gate = GateOf(a, call.deadline);
    client->Invoke(std::move(call), [this, wf, i, gate](Result<ActionReply> r) {
        OnCompensationResult(wf, i, gate, std::move(r));
    });
}

void Engine::Impl::OnCompensationResult(const WfPtr& wf, int i, Gate gate, Result<ActionReply> r) {
    CircuitAfter circuit(this, OnCircuitAnswer(gate, r));
    ReleaseAfter release(this, wf->def->steps[i].compensation->action.service);
    if (wf->finished) {
        return;
    }
    wf->busy[i] = kIdle;
    StepRecord& rec = wf->steps[i];
    const int64_t now = clock_.WallMs();
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
    p.group.steps.push_back(
        {wf->id, rec,
         internal::LogLine("compensation", rec.comp_attempts, wf->attempt_start_ms[i], now,
                           next == Next::kSucceeded ? "compensated"
                           : next == Next::kRetry   ? "retry"
                                                    : "failed",
                           r ? std::string() : r.error().ToString())});
    Advance(wf, p);
    Commit(wf, std::move(p));
}

}  // namespace cogs::workflow
