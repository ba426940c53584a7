// Engine::Impl: group commit of a workflow's changes and their delivery back to the io thread;
// finishing a workflow, and letting go of one that was fenced out.
#include <boost/asio/post.hpp>

#include "cogs/base/check.h"
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

namespace asio = boost::asio;
using internal::Seconds;

void Engine::Impl::Commit(const WfPtr& wf, Pending p) {
    const bool terminal = store::IsTerminal(wf->state);
    Compose(wf, p, terminal);
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
        c->durable_at = clock_.Now();
        Deliver(c);
    });
}

// The creates of several new workflows in one group: the store writes all or none, and each
// workflow then learns the one outcome as a workflow committed alone would (OnCommitted, in order).
void Engine::Impl::CommitCreates(std::vector<std::pair<WfPtr, Pending>> created) {
    store::WriteGroup g;
    auto batch = std::make_unique<std::vector<Committed*>>();
    for (auto& [wf, p] : created) {
        COGS_DCHECK(p.creating);
        const bool terminal = store::IsTerminal(wf->state);
        Compose(wf, p, terminal);
        g.fence = wf->fence;
        auto append = [](auto& to, auto& from) {
            to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
        };
        append(g.creates, p.group.creates);
        append(g.workflows, p.group.workflows);
        append(g.steps, p.group.steps);
        append(g.resources, p.group.resources);
        append(g.events, p.group.events);
        append(g.audit, p.group.audit);
        batch->push_back(new Committed{wf, std::move(p.actions), std::move(p.on_commit), terminal, Ok(), {}});
    }
    store_.Commit(std::move(g), [this, batch = batch.release()](Status s) {
        const SteadyTime now = clock_.Now();
        for (Committed* c : *batch) {
            c->status = s;
            c->durable_at = now;
            Deliver(c);
        }
        delete batch;
    });
}

// What a workflow's pending changes write: its create (with the resources and events given to
// Start), or its record's update; the end's event if it ended.
void Engine::Impl::Compose(const WfPtr& wf, Pending& p, bool terminal) {
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
        p.group.creates.push_back(std::move(rec));
        p.group.resources = std::move(wf->create_resources);
        wf->create_resources.clear();
        p.group.events.insert(p.group.events.begin(), std::make_move_iterator(wf->create_events.begin()),
                              std::make_move_iterator(wf->create_events.end()));
        wf->create_events.clear();
        p.group.steps.clear();  // the create carries every step as it is now
    } else if (p.workflow_dirty) {
        const int64_t now = clock_.WallMs();
        p.group.workflows.push_back(
            {wf->id, wf->state, wf->reason, wf->cancel_requested, now, terminal ? now : 0});
    }
    if (terminal && (p.creating || p.workflow_dirty)) {
        ReportWorkflowEnd(*wf, p);
    }
}

// Writer thread: hands a commit result to the io thread. Results of one batch arrive together,
// so one posted handler drains them all instead of one post per group.
void Engine::Impl::Deliver(Committed* c) {
    std::lock_guard lock(inbox_mu_);
    inbox_.emplace_back(c);
    if (!drain_posted_) {
        drain_posted_ = true;
        asio::post(io_, [this] { DrainInbox(); });
    }
}

void Engine::Impl::DrainInbox() {
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

void Engine::Impl::OnCommitted(const WfPtr& wf, std::vector<Action>& actions, const Status& s,
                               SteadyTime durable_at, bool terminal) {
    if (!s) {
        // Fenced: a newer owner has the workflow. Duplicate create: the id was taken. A create
        // refused for lack of space, or while the database cannot be reached: nothing of it was
        // written (the store holds every other group until it can write again). Each way this
        // engine lets go of it. Any other failure means the store is broken: die and let the
        // restart recover from what is durable.
        COGS_CHECK(s.error().code == ErrorCode::kFenced || s.error().code == ErrorCode::kAlreadyExists ||
                   ((s.error().code == ErrorCode::kNoSpace || s.error().code == ErrorCode::kUnavailable) &&
                    wf->creating));
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
        AdvanceAndCommit(wf);
    }
}

void Engine::Impl::Drop(const WfPtr& wf, const std::vector<Action>& actions) {
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

void Engine::Impl::Finish(const WfPtr& wf) {
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
    const int64_t now_ms = clock_.WallMs();
    if (wf->metrics != nullptr) {
        wf->metrics->finished[outcome].Inc();
        wf->metrics->duration[outcome].Observe(wf->started_at != SteadyTime{}
                                                   ? Seconds(wf->started_at, clock_.Now())
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

}  // namespace cogs::workflow
