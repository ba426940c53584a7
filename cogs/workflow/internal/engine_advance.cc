// Engine::Impl::Advance, the step machine driven for one workflow: everything that can happen now
// for its idle steps is decided and recorded in one group; Perform acts on what was decided once
// that group is durable.
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

namespace {

// A timer action for step `i`, built in place: g++ 12 warns that a braced temporary's empty
// optional<string> is read uninitialized when it is moved into the vector (a false positive), and
// clang 14 refuses emplace_back's parenthesised aggregate initialisation.
void AddTimer(std::vector<internal::Action>& actions, int i) {
    internal::Action& a = actions.emplace_back();
    a.kind = internal::ActionKind::kTimer;
    a.index = i;
}

}  // namespace

// Decides everything that can happen now for an idle step of `wf` and records it in `p`.
void Engine::Impl::Advance(const WfPtr& wf, Pending& p) {
    if (wf->finished || store::IsTerminal(wf->state) || (wf->creating && !p.creating)) {
        return;  // a creating workflow is advanced again once its create is durable
    }
    const Definition& def = *wf->def;
    const int64_t now = clock_.WallMs();
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
                            AddTimer(p.actions, i);
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
                            AddTimer(p.actions, i);
                        }
                        break;
                    default: break;
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
            AddTimer(p.actions, i);
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

void Engine::Impl::Perform(const WfPtr& wf, std::vector<Action>& actions, SteadyTime durable_at) {
    for (Action& a : actions) {
        switch (a.kind) {
            case ActionKind::kCall:
                if (a.after_completion && overhead_observer_ && durable_at != SteadyTime{}) {
                    overhead_observer_(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.Now() - durable_at)
                            .count());
                }
                SendAction(wf, a);
                break;
            case ActionKind::kCompensate: SendCompensation(wf, a); break;
            case ActionKind::kPoll: SendPoll(wf, a); break;
            case ActionKind::kTimer: {
                const int i = a.index;
                timers_.Schedule(SteadyAt(wf->steps[i].next_at_ms), [this, wf, i] {
                    if (wf->finished || wf->busy[i] != kTimer) {
                        return;
                    }
                    wf->busy[i] = kIdle;
                    AdvanceAndCommit(wf);
                });
                break;
            }
        }
    }
}

}  // namespace cogs::workflow
