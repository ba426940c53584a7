// Engine::Impl and time: the single timer queue of every parked retry, poll, deadline and half-open
// probe; workflow deadlines; lease renewal.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "cogs/base/check.h"
#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

namespace asio = boost::asio;

namespace internal {

void TimerQueue::Schedule(SteadyTime at, std::function<void()> fn) {
    const bool earliest = queue_.empty() || at < queue_.begin()->first;
    queue_.emplace(at, std::move(fn));
    if (earliest) {
        Arm();
    }
}

void TimerQueue::Stop() {
    stopped_ = true;
    queue_.clear();
    timer_->Cancel();
}

void TimerQueue::Arm() {
    if (stopped_ || queue_.empty()) {
        return;
    }
    timer_->Arm(queue_.begin()->first, [this] { Fire(); });  // replaces a later one armed before
}

void TimerQueue::Fire() {
    if (stopped_) {
        return;
    }
    const auto now = clock_.Now();
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

}  // namespace internal

void Engine::Impl::ScheduleDeadline(const WfPtr& wf) {
    if (wf->deadline_ms == 0 || wf->state != WorkflowState::kRunning) {
        return;
    }
    timers_.Schedule(SteadyAt(wf->deadline_ms), [this, wf] {
        if (!wf->finished && wf->state == WorkflowState::kRunning) {
            AdvanceAndCommit(wf);
        }
    });
}

void Engine::Impl::ScheduleRenewal() {
    const Millis every(std::max<int64_t>(100, options_.lease_ttl_ms / 3));
    renew_timer_->ArmAfter(every, [this] {
        if (stopped_) {
            return;
        }
        asio::post(blocking_, [this, lease = lease_, recovering = awaiting_lease_]() mutable {
            // A full disk: this timer is also the store's probe. Until it is writable there is
            // nothing to renew (the store said why, once; the lease cannot be taken by another
            // process: the store's lock file keeps it out).
            if (!store_.Writable() && !store_.ResumeWrites()) {
                asio::post(io_, [this] { ScheduleRenewal(); });
                return;
            }
            if (recovering) {
                auto claimed = TakeLease(&lease);
                asio::post(io_, [this, lease, claimed = std::move(claimed)]() mutable {
                    if (claimed) {
                        lease_ = lease;
                        awaiting_lease_ = false;
                        log_->info("engine {}: the store is writable: lease token {}", options_.owner,
                                   lease_.token);
                        for (auto& rec : *claimed) {
                            Resume(std::move(rec));
                        }
                    }
                    ScheduleRenewal();
                });
                return;
            }
            auto s = store_.RenewLease(lease, options_.lease_ttl_ms);
            // Losing the lease means another engine owns our workflows: stop at once; the
            // fencing tokens already refuse anything we would still write.
            if (!s && s.error().code == ErrorCode::kUnavailable) {
                // The database is out of reach (PostgreSQL restarting): the store said so, and
                // holds the writes; the lease is renewed once it answers again.
                log_->warn("engine {}: lease not renewed: {}", options_.owner, s.error().ToString());
            } else if (!s && s.error().code != ErrorCode::kNoSpace) {
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

}  // namespace cogs::workflow
