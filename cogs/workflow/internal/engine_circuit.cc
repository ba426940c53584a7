// Engine::Impl: the circuit breakers of the service endpoints — the gate every call (action,
// compensation, poll) passes, the FIFO queues of the steps held back, half-open probes.
#include <algorithm>

#include "cogs/base/check.h"
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

using internal::ToMs;

namespace {

// The endpoint did not answer: a retryable error, unavailable, or a timeout. Any other answer,
// a definitive refusal included, shows it working.
bool EndpointFailed(const Result<ActionReply>& r) {
    if (r) {
        return false;
    }
    const Error& e = r.error();
    return e.retryable || e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kDeadlineExceeded;
}

}  // namespace

CircuitState Engine::Impl::BreakerState(const std::string& service, const std::string& endpoint) const {
    auto sc = circuits_.find(service);
    if (sc == circuits_.end()) {
        return CircuitState::kClosed;
    }
    auto c = sc->second.endpoints.find(endpoint);
    return c == sc->second.endpoints.end() ? CircuitState::kClosed : StateOf(*c->second);
}

internal::ServiceCircuits& Engine::Impl::CircuitsOf(const std::string& service) {
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

internal::Circuit& Engine::Impl::CircuitOf(ServiceCircuits& sc, const std::string& endpoint) {
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

CircuitState Engine::Impl::StateOf(const Circuit& c) {
    static_assert(static_cast<int>(internal::Breaker::State::kHalfOpen) ==
                  static_cast<int>(CircuitState::kHalfOpen));
    return static_cast<CircuitState>(c.breaker.state());
}

// The breaker that the call of `a` (an action, compensation or poll of step a.index) goes
// through, per ServiceClient::Endpoint, and that call's input (kept in `a` so that it is not
// rendered twice). Null when the service's breakers are off, it has no client, or the input
// does not render (the call then fails unsent).
internal::Circuit* Engine::Impl::CircuitFor(const Wf& wf, Action& a) {
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
bool Engine::Impl::PassCircuit(const WfPtr& wf, Action& a, Pending& p) {
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

void Engine::Impl::WaitOnCircuit(const WfPtr& wf, int i, ActionKind kind, Circuit& c, Pending& p) {
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
    const char* state = c.breaker.state() == internal::Breaker::State::kOpen ? "open" : "half-open, probing";
    if (kind == ActionKind::kCompensate) {
        AddEvent(*wf, p, "step_waiting", "compensation of step {} ({}.{}) waits: circuit of {} is {}",
                 sd.name, sd.compensation->action.service, sd.compensation->action.action, c.name, state);
    } else {
        AddEvent(*wf, p, "step_waiting", "step {} ({}.{}) waits: circuit of {} is {}", sd.name,
                 sd.action.service, sd.action.action, c.name, state);
    }
    Touch(p);  // the event commits under the workflow's fencing token, like every other write
}

bool Engine::Impl::Live(const Circuit::Waiter& e) {
    return e.wf->busy[e.index] == kCircuit && e.wf->circuit_wait[e.index].ticket == e.ticket;
}

void Engine::Impl::CountWaiting(Circuit& c, int delta) {
    c.waiting += delta;
    c.service->waiting += delta;
    circuit_waiting_ += delta;
    c.service->waiting_gauge.Set(static_cast<double>(c.service->waiting));
}

// Step i stops waiting on its breaker (released, or its wait became moot); its queue entry
// goes stale.
void Engine::Impl::EndWait(Wf& wf, int i) {
    CircuitWait& w = wf.circuit_wait[i];
    COGS_DCHECK(wf.busy[i] == kCircuit && w.on != nullptr);
    CountWaiting(*w.on, -1);
    w.on = nullptr;
    w.ticket = 0;
    wf.busy[i] = kIdle;
}

// Lets waiters go, in order, while the breaker lets calls through: all of them once it is
// closed, as many as it has probe places half-open (each takes its place when it is sent).
void Engine::Impl::ReleaseWaiters(Circuit& c) {
    while (c.breaker.CanSend() && !c.waiters.empty()) {
        Circuit::Waiter e = std::move(c.waiters.front());
        c.waiters.pop_front();
        if (!Live(e)) {
            continue;
        }
        EndWait(*e.wf, e.index);
        AdvanceAndCommit(e.wf);
    }
}

void Engine::Impl::EnterState(Circuit& c, CircuitState to) {
    c.state_gauge.Set(static_cast<double>(to));
    c.service->to[static_cast<int>(to)].Inc();
}

// A call's answer as its breaker sees it. Returns the breaker whose waiters may go now (they
// are released once the answer's handler is done: see CircuitAfter), or null.
internal::Circuit* Engine::Impl::OnCircuitAnswer(const Gate& g, const Result<ActionReply>& r) {
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
    switch (c.breaker.OnAnswer(g.probe, EndpointFailed(r), clock_.Now())) {
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
        case internal::Breaker::Change::kNone: break;
    }
    return nullptr;
}

void Engine::Impl::Opened(Circuit& c, const std::string& why, const std::string& last_error) {
    ++stats_.circuit_opens;
    EnterState(c, CircuitState::kOpen);
    log_->info("circuit of {} opened: {} (last: {}); calls to it wait {} ms", c.name, why, last_error,
               ToMs(c.breaker.open_for()));
    ScheduleHalfOpen(c);
}

// One timer entry per open period (not one per waiting step).
void Engine::Impl::ScheduleHalfOpen(Circuit& c) {
    Circuit* cp = &c;
    const uint64_t epoch = c.breaker.epoch();
    timers_.Schedule(c.breaker.open_until(), [this, cp, epoch] {
        if (cp->breaker.epoch() != epoch || cp->breaker.state() != internal::Breaker::State::kOpen) {
            return;
        }
        if (!cp->breaker.HalfOpenIfDue(clock_.Now())) {
            return ScheduleHalfOpen(*cp);
        }
        EnterState(*cp, CircuitState::kHalfOpen);
        ReleaseWaiters(*cp);
    });
}

}  // namespace cogs::workflow
