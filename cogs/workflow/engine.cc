#include "cogs/workflow/engine.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <type_traits>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cogs/base/check.h"
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
// only idle steps are touched by Advance().
enum Busy : uint8_t { kIdle = 0, kCommit, kCall, kTimer, kQueued };

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

struct Wf {
    std::string id;
    const Definition* def = nullptr;
    std::string input;
    std::string trace;
    std::string project;
    std::vector<store::ResourceWrite> create_resources;  // written with the create, then dropped
    WorkflowState state = WorkflowState::kRunning;
    std::string reason;
    bool cancel_requested = false;
    int64_t created_ms = 0;
    int64_t deadline_ms = 0;
    uint64_t fence = 0;
    std::vector<StepRecord> steps;
    std::vector<uint8_t> busy;
    std::vector<int64_t> attempt_start_ms;
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
};

}  // namespace

class Engine::Impl {
public:
    Impl(asio::io_context& io, store::Store& store, Registry& registry, const ServiceCatalog& services,
         EngineOptions options)
        : io_(io), store_(store), registry_(registry), services_(services), options_(std::move(options)),
          timers_(io), renew_timer_(io), rng_(options_.seed) {}

    ~Impl() { blocking_.join(); }

    Status Recover() {
        auto lease = store_.AcquireLease(options_.owner, options_.lease_ttl_ms);
        if (!lease) {
            return MakeError(lease.error());
        }
        lease_ = *lease;
        spdlog::info("engine {}: lease token {}", options_.owner, lease_.token);
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
        wf->create_resources = std::move(req.resources);
        wf->created_ms = WallNowMs();
        const Duration deadline = req.deadline.count() > 0 ? req.deadline : def->deadline;
        wf->deadline_ms = deadline.count() > 0 ? wf->created_ms + ToMs(deadline) : 0;
        wf->fence = lease_.token;
        wf->steps.resize(def->steps.size());
        for (size_t i = 0; i < wf->steps.size(); ++i) {
            wf->steps[i].index = static_cast<int>(i);
        }
        wf->busy.assign(def->steps.size(), kIdle);
        wf->attempt_start_ms.assign(def->steps.size(), 0);
        wfs_.emplace(wf->id, wf);
        ++stats_.started;
        ScheduleDeadline(wf);

        Pending p;
        p.creating = true;
        std::string id = wf->id;
        wf->creating = true;
        p.on_commit = [this, done = std::move(done), id](Status s) mutable {
            if (!s) {
                done(MakeError(s.error()));
            } else {
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
        wf->busy[i] = kIdle;  // a pending poll timer finds the step busy no more and lets go
        FinishPoll(wf, i, std::move(result));
        return Ok();
    }

    void OnFinished(std::function<void(const FinishedEvent&)> l) { listeners_.push_back(std::move(l)); }
    void SetStepOverheadObserver(std::function<void(int64_t)> o) { overhead_observer_ = std::move(o); }

    EngineStats Stats() const {
        EngineStats s = stats_;
        s.inflight = wfs_.size();
        return s;
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
            spdlog::error("workflow {}: definition {} v{} is not loadable; left for an operator", rec.id, rec.type,
                          rec.version);
            return;
        }
        auto wf = std::make_shared<Wf>();
        wf->id = std::move(rec.id);
        wf->def = def;
        wf->input = std::move(rec.input);
        wf->trace = std::move(rec.trace);
        wf->project = std::move(rec.project);
        wf->state = rec.state;
        wf->reason = std::move(rec.reason);
        wf->cancel_requested = rec.cancel_requested;
        wf->created_ms = rec.created_ms;
        wf->deadline_ms = rec.deadline_ms;
        wf->fence = rec.fence;
        wf->steps = std::move(rec.steps);
        wf->busy.assign(wf->steps.size(), kIdle);
        wf->attempt_start_ms.assign(wf->steps.size(), 0);
        wfs_[wf->id] = wf;
        ++stats_.resumed;
        ScheduleDeadline(wf);
        asio::post(io_, [this, wf] {
            Pending p;
            Advance(wf, p);
            Commit(wf, std::move(p));
        });
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
                    spdlog::critical("engine {}: lease lost: {}", options_.owner, s.error().ToString());
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
            it = bulkheads_.emplace(service, std::move(b)).first;
        }
        return it->second;
    }

    const std::string& ServiceOf(const Wf& wf, int i, bool compensation) const {
        const StepDef& s = wf.def->steps[i];
        return compensation ? s.compensation->action.service : s.action.service;
    }

    // Takes a bulkhead slot and marks the step dispatched, or queues the step for a slot.
    void TryDispatch(const WfPtr& wf, int i, bool compensation, Pending& p, int64_t now, bool after_completion) {
        Bulkhead& b = BulkheadFor(ServiceOf(*wf, i, compensation));
        if (b.in_use >= b.limit) {
            wf->busy[i] = kQueued;
            b.waiters.emplace_back(wf, i);
            return;
        }
        ++b.in_use;
        StepRecord& rec = wf->steps[i];
        internal::MarkDispatched(rec, now, compensation);
        wf->attempt_start_ms[i] = now;
        wf->busy[i] = kCommit;
        p.group.steps.push_back({wf->id, rec, {}});
        p.actions.push_back({compensation ? ActionKind::kCompensate : ActionKind::kCall, i, after_completion});
    }

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
                                ++stats_.retries;
                                TryDispatch(wf, i, false, p, now, false);
                            } else {
                                wf->busy[i] = kTimer;
                                p.actions.push_back({ActionKind::kTimer, i});
                            }
                            break;
                        case StepState::kPolling:
                            if (s.next_at_ms <= now) {
                                wf->busy[i] = kCommit;
                                p.actions.push_back({ActionKind::kPoll, i});
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
            if (forward && (wf->busy[i] == kQueued || wf->busy[i] == kTimer)) {
                wf->busy[i] = kIdle;  // the forward dispatch it waited for is off: its entry goes stale
            }
            if (wf->busy[i] != kIdle) {
                busy = true;
                continue;
            }
            const StepState before = s.state;
            internal::StopForward(s, now);
            if (s.state != before) {
                p.group.steps.push_back({wf->id, s, {}});
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
            rec.steps = wf->steps;
            p.group.create = std::move(rec);
            p.group.resources = std::move(wf->create_resources);
            wf->create_resources.clear();
            p.group.steps.clear();  // the create carries every step as it is now
        } else if (p.workflow_dirty) {
            const int64_t now = WallNowMs();
            p.group.workflows.push_back(
                {wf->id, wf->state, wf->reason, wf->cancel_requested, now, terminal ? now : 0});
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

    void OnCommitted(const WfPtr& wf, const std::vector<Action>& actions, const Status& s, SteadyTime durable_at,
                     bool terminal) {
        if (!s) {
            // Fenced: a newer owner has the workflow. Duplicate create: the id was taken. Either
            // way this engine lets go of it. Any other failure means the store is broken: die and
            // let the restart recover from what is durable.
            COGS_CHECK(s.error().code == ErrorCode::kFenced || s.error().code == ErrorCode::kAlreadyExists);
            if (s.error().code == ErrorCode::kFenced) {
                ++stats_.fenced;
                spdlog::warn("workflow {}: fenced out: {}", wf->id, s.error().message);
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
            }
        }
        for (const Action& a : actions) {
            if (a.kind == ActionKind::kCall || a.kind == ActionKind::kCompensate) {
                ReleaseSlot(ServiceOf(*wf, a.index, a.kind == ActionKind::kCompensate));
            }
        }
    }

    void Finish(const WfPtr& wf) {
        wf->finished = true;
        wfs_.erase(wf->id);
        switch (wf->state) {
            case WorkflowState::kSucceeded: ++stats_.succeeded; break;
            case WorkflowState::kRolledBack: ++stats_.rolled_back; break;
            default: ++stats_.failed; break;
        }
        if (!listeners_.empty()) {
            FinishedEvent ev{wf->id, wf->def->type, wf->state, wf->reason, WallNowMs(), wf->project, wf->input, {}};
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

    void Perform(const WfPtr& wf, const std::vector<Action>& actions, SteadyTime durable_at) {
        for (const Action& a : actions) {
            switch (a.kind) {
                case ActionKind::kCall:
                    if (a.after_completion && overhead_observer_ && durable_at != SteadyTime{}) {
                        overhead_observer_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               SteadyClock::now() - durable_at)
                                               .count());
                    }
                    SendAction(wf, a.index);
                    break;
                case ActionKind::kCompensate:
                    SendCompensation(wf, a.index);
                    break;
                case ActionKind::kPoll:
                    SendPoll(wf, a.index);
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

    ActionCall MakeCall(const Wf& wf, int i, const ActionRef& action, const char* suffix) const {
        ActionCall call;
        call.service = action.service;
        call.action = action.action;
        call.idempotency_key = fmt::format("{}/{}/{}", wf.id, wf.def->steps[i].name, suffix);
        call.traceparent = wf.trace;
        return call;
    }

    void SendAction(const WfPtr& wf, int i) {
        const StepDef& sd = wf->def->steps[i];
        ServiceClient* client = services_.Find(sd.action.service);
        ActionCall call = MakeCall(*wf, i, sd.action, "do");
        call.deadline = AttemptDeadline(*wf, i, sd.timeout);
        wf->busy[i] = kCall;
        ++stats_.calls;
        auto input = RenderInput(*wf, sd.input);
        if (client == nullptr || !input) {
            Error e = client == nullptr ? Error(ErrorCode::kFailedPrecondition,
                                                "no client for service '" + sd.action.service + "'")
                                        : input.error();
            e.retryable = false;
            return Reply<Result<ActionReply>>([this, wf, i](Result<ActionReply> r) { OnActionResult(wf, i, std::move(r)); },
                                              MakeError(std::move(e)));
        }
        call.input = std::move(*input);
        client->Invoke(std::move(call), [this, wf, i](Result<ActionReply> r) { OnActionResult(wf, i, std::move(r)); });
    }

    void OnActionResult(const WfPtr& wf, int i, Result<ActionReply> r) {
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
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void SendPoll(const WfPtr& wf, int i) {
        const StepDef& sd = wf->def->steps[i];
        ServiceClient* client = services_.Find(sd.action.service);
        COGS_CHECK(client != nullptr);
        ActionCall call = MakeCall(*wf, i, sd.action, "do");
        call.deadline = AttemptDeadline(*wf, i, sd.timeout);
        // The action's input again: a routing client (e.g. to the step's compute host) needs it.
        if (auto input = RenderInput(*wf, sd.input)) {
            call.input = std::move(*input);
        }
        wf->busy[i] = kCall;
        client->Status(std::move(call), [this, wf, i](Result<ActionReply> r) {
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
        }
        Advance(wf, p);
        Commit(wf, std::move(p));
    }

    void SendCompensation(const WfPtr& wf, int i) {
        const StepDef& sd = wf->def->steps[i];
        const Compensation& comp = *sd.compensation;
        ServiceClient* client = services_.Find(comp.action.service);
        ActionCall call = MakeCall(*wf, i, comp.action, "undo");
        call.deadline = SteadyClock::now() + comp.timeout;
        wf->busy[i] = kCall;
        ++stats_.compensations;
        Result<std::string> input = MakeError(ErrorCode::kInternal, "");
        if (comp.input.empty()) {
            auto action_input = RenderInput(*wf, sd.input);
            input = fmt::format(R"({{"input":{},"output":{}}})", action_input ? *action_input : "null",
                                wf->steps[i].output.empty() ? "null" : wf->steps[i].output);
        } else {
            input = RenderInput(*wf, comp.input);
        }
        if (client == nullptr || !input) {
            Error e = client == nullptr
                          ? Error(ErrorCode::kFailedPrecondition, "no client for service '" + comp.action.service + "'")
                          : input.error();
            e.retryable = false;
            return Reply<Result<ActionReply>>(
                [this, wf, i](Result<ActionReply> r) { OnCompensationResult(wf, i, std::move(r)); },
                MakeError(std::move(e)));
        }
        call.input = std::move(*input);
        client->Invoke(std::move(call),
                       [this, wf, i](Result<ActionReply> r) { OnCompensationResult(wf, i, std::move(r)); });
    }

    void OnCompensationResult(const WfPtr& wf, int i, Result<ActionReply> r) {
        ReleaseAfter release(this, wf->def->steps[i].compensation->action.service);
        if (wf->finished) {
            return;
        }
        wf->busy[i] = kIdle;
        StepRecord& rec = wf->steps[i];
        const int64_t now = WallNowMs();
        const Next next =
            internal::ApplyCompensationResult(*wf->def->steps[i].compensation, rec, r, now, Jitter());
        Pending p;
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
    std::vector<std::function<void(const FinishedEvent&)>> listeners_;
    std::function<void(int64_t)> overhead_observer_;
    std::mutex inbox_mu_;
    std::vector<std::unique_ptr<Committed>> inbox_;  // guarded by inbox_mu_
    bool drain_posted_ = false;                      // guarded by inbox_mu_
    EngineStats stats_;
    bool stopped_ = false;
};

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
const store::Lease& Engine::lease() const { return impl_->lease(); }
void Engine::Shutdown() { impl_->Shutdown(); }

}  // namespace cogs::workflow
