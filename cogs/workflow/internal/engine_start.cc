// Engine::Impl: the public operations — taking the lease and resuming what was left unfinished,
// starting, cancelling, retrying a failed workflow, completion reports, stats, shutdown.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <set>

#include "cogs/base/check.h"
#include "cogs/base/secret.h"
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

namespace asio = boost::asio;
using internal::ToMs;

namespace {

bool ValidId(const std::string& id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    return std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':';
    });
}

}  // namespace

Result<std::vector<store::WorkflowRecord>> Engine::Impl::TakeLease(store::Lease* lease) {
    COGS_ASSIGN_OR_RETURN(*lease, store_.AcquireLease(options_.owner, options_.lease_ttl_ms));
    std::vector<store::WorkflowRecord> all;
    for (;;) {
        COGS_ASSIGN_OR_RETURN(auto claimed, store_.ClaimOrphaned(*lease, 1000));
        const size_t n = claimed.size();
        all.insert(all.end(), std::make_move_iterator(claimed.begin()),
                   std::make_move_iterator(claimed.end()));
        if (n < 1000) {
            return all;
        }
    }
}

Status Engine::Impl::Recover() {
    store::Lease lease;
    auto claimed = TakeLease(&lease);
    if (!claimed && claimed.error().code == ErrorCode::kNoSpace) {
        // A full disk at start: serve what can be read, and recover once writes resume (the lease
        // timer probes the store) rather than fail at every restart.
        log_->warn("engine {}: the store is out of space: no workflow runs until it is writable again",
                   options_.owner);
        awaiting_lease_ = true;
        ScheduleRenewal();
        return Ok();
    }
    if (!claimed) {
        return MakeError(claimed.error());
    }
    lease_ = lease;
    log_->info("engine {}: lease token {}", options_.owner, lease_.token);
    for (auto& rec : *claimed) {
        Resume(std::move(rec));
    }
    ScheduleRenewal();
    return Ok();
}

Result<Engine::Impl::WfPtr> Engine::Impl::Prepare(StartRequest& req, size_t more) {
    const Definition* def = registry_.Latest(req.type);
    if (def == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument, "type: unknown workflow type '" + req.type + "'");
    }
    boost::system::error_code ec;
    auto parsed = boost::json::parse(req.input, ec);
    if (ec || !parsed.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, "input: must be a JSON object");
    }
    if (req.id.empty()) {
        req.id = NewId();
    } else if (!ValidId(req.id)) {
        return MakeError(ErrorCode::kInvalidArgument, "id: 1-128 characters of [A-Za-z0-9._:-]");
    }
    if (wfs_.count(req.id) != 0) {
        return MakeError(ErrorCode::kAlreadyExists, "workflow " + req.id + " exists");
    }
    if (wfs_.size() + more >= options_.max_inflight) {
        return MakeError(ErrorCode::kResourceExhausted, "too many workflows in flight");
    }
    if (awaiting_lease_) {
        return MakeError(ErrorCode::kNoSpace,
                         "the store's disk is full: nothing was written; writes resume once space is freed");
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
    wf->created_ms = clock_.WallMs();
    wf->started_at = clock_.Now();
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
    return wf;
}

Engine::Impl::Pending Engine::Impl::Launch(const WfPtr& wf) {
    Hold(wf);
    ++stats_.started;
    Pending p;
    p.creating = true;
    wf->creating = true;
    Advance(wf, p);
    return p;
}

void Engine::Impl::Start(StartRequest req, std::function<void(Result<std::string>)> done) {
    auto wf = Prepare(req, 0);
    if (!wf) {
        return Reply(std::move(done), MakeError(wf.error()));
    }
    Pending p = Launch(*wf);
    p.on_commit = [done = std::move(done), id = (*wf)->id, metrics = (*wf)->metrics](Status s) mutable {
        if (!s) {
            done(MakeError(s.error()));
        } else {
            if (metrics != nullptr) {
                metrics->started.Inc();
            }
            done(id);
        }
    };
    Commit(*wf, std::move(p));
}

void Engine::Impl::StartMany(std::vector<StartRequest> reqs,
                             std::function<void(Result<std::vector<std::string>>)> done) {
    if (reqs.empty()) {
        return Reply(std::move(done), MakeError(ErrorCode::kInvalidArgument, "no workflow to start"));
    }
    // Every one is checked before any is held: a refusal leaves nothing behind.
    std::vector<WfPtr> wfs;
    std::set<std::string> ids;
    for (StartRequest& req : reqs) {
        auto wf = Prepare(req, reqs.size() - 1);
        if (wf && !ids.insert((*wf)->id).second) {
            wf = MakeError(ErrorCode::kAlreadyExists, "workflow " + (*wf)->id + " is asked for twice");
        }
        if (!wf) {
            return Reply(std::move(done), MakeError(wf.error()));
        }
        wfs.push_back(std::move(*wf));
    }
    std::vector<std::pair<WfPtr, Pending>> created;
    for (const WfPtr& wf : wfs) {
        Pending p = Launch(wf);
        p.on_commit = [metrics = wf->metrics](Status s) {
            if (s && metrics != nullptr) {
                metrics->started.Inc();
            }
        };
        created.emplace_back(wf, std::move(p));
    }
    // The last one's callback runs once every one has taken the outcome (they are delivered in order).
    std::vector<std::string> order;
    for (const WfPtr& wf : wfs) {
        order.push_back(wf->id);
    }
    auto& last = created.back().second.on_commit;
    last = [each = std::move(last), done = std::move(done), order = std::move(order)](Status s) mutable {
        each(s);
        if (!s) {
            return done(MakeError(s.error()));
        }
        done(std::move(order));
    };
    CommitCreates(std::move(created));
}

void Engine::Impl::Cancel(const std::string& id, std::function<void(Status)> done) {
    auto it = wfs_.find(id);
    if (it == wfs_.end()) {
        return CheckStored(id, std::move(done), "cannot be cancelled");
    }
    WfPtr wf = it->second;
    if (wf->creating) {
        return Reply(std::move(done),
                     MakeError(ErrorCode::kConflict, "workflow " + id + " is being created; retry"));
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

void Engine::Impl::Retry(const std::string& id, std::function<void(Status)> done) {
    if (awaiting_lease_) {
        return Reply(std::move(done),
                     MakeError(ErrorCode::kNoSpace, "the store's disk is full: retry later"));
    }
    if (wfs_.count(id) != 0) {
        return Reply(std::move(done),
                     MakeError(ErrorCode::kConflict, "workflow " + id + " is still running"));
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

Status Engine::Impl::ReportCompletion(const std::string& key, Result<ActionReply> result) {
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

EngineStats Engine::Impl::Stats() const {
    EngineStats s = stats_;
    s.inflight = wfs_.size();
    s.circuit_waiting = circuit_waiting_;
    return s;
}

void Engine::Impl::Shutdown() {
    stopped_ = true;
    timers_.Stop();
    renew_timer_->Cancel();
}

void Engine::Impl::CheckStored(const std::string& id, std::function<void(Status)> done, const char* what) {
    asio::post(blocking_, [this, id, done = std::move(done), what]() mutable {
        auto rec = store_.GetWorkflow(id);
        Status s =
            rec ? Status(MakeError(ErrorCode::kConflict, fmt::format("workflow {} is {} and {}", id,
                                                                     store::ToString(rec->state), what)))
                : Status(MakeError(rec.error()));
        Reply(std::move(done), std::move(s));
    });
}

// A random UUID from the OS (getrandom): never the same after a restart or on another engine,
// and unrelated to the jitter's seed.
std::string Engine::Impl::NewId() { return NewUuid(); }

void Engine::Impl::Resume(store::WorkflowRecord rec) {
    const Definition* def = registry_.Get(rec.type, rec.version);
    if (def == nullptr || def->steps.size() != rec.steps.size()) {
        COGS_EXPECT(def != nullptr && def->steps.size() == rec.steps.size());
        observe::LogScope scope({observe::TraceIdOf(rec.trace), rec.id, rec.resource_id});
        log_->error("workflow {}: definition {} v{} is not loadable; left for an operator", rec.id, rec.type,
                    rec.version);
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
    Hold(wf);
    ++stats_.resumed;
    asio::post(io_, [this, wf] { AdvanceAndCommit(wf); });
}

// Takes on a workflow whose steps are set (started, or resumed from its record): nothing of it is
// busy yet; its metric handles, its place among the workflows held, its deadline's timer.
void Engine::Impl::Hold(const WfPtr& wf) {
    wf->busy.assign(wf->steps.size(), kIdle);
    wf->attempt_start_ms.assign(wf->steps.size(), 0);
    AttachMetrics(*wf);
    wfs_[wf->id] = wf;
    PublishInflight();
    ScheduleDeadline(wf);
}

void Engine::Impl::SetTrace(Wf& wf) {
    wf.trace_ctx = observe::ParseTraceparent(wf.trace);
    wf.trace_id = wf.trace_ctx ? wf.trace_ctx->trace_id : std::string();
}

}  // namespace cogs::workflow
