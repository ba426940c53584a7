// The writer thread's loop, the acknowledgement of batches and the episodes (see write_queue.h).
#include "cogs/store/internal/write_queue.h"

#include <pthread.h>

#include <algorithm>

#include "cogs/base/check.h"

namespace cogs::store::internal {

WriteQueue::WriteQueue(Options options, Backend& backend) : options_(std::move(options)), backend_(backend) {}

WriteQueue::~WriteQueue() { Stop(); }

void WriteQueue::Start() {
    COGS_CHECK(!thread_.joinable());
    thread_ = std::thread([this] { Loop(); });
}

void WriteQueue::Stop() {
    if (!thread_.joinable()) {
        return;
    }
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void WriteQueue::Commit(WriteGroup group, Store::CommitCallback done) {
    {
        std::lock_guard lock(mu_);
        queue_.push_back(Item{std::move(group), std::move(done), nullptr});
    }
    cv_.notify_one();
}

void WriteQueue::Flush() {
    // From a commit callback this would wait for the very thread that runs it.
    COGS_CHECK(!OnWriterThread());
    RunOnWriter<int>([] { return 0; });
}

StoreStats WriteQueue::Stats() {
    std::lock_guard lock(stats_mu_);
    return stats_;
}

void WriteQueue::Loop() {
    writer_id_.store(std::this_thread::get_id(), std::memory_order_release);
    pthread_setname_np(pthread_self(), "cogs-store");
    std::vector<Item> batch;
    batch.reserve(std::min<size_t>(options_.max_batch_groups, 4096));
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock(mu_);
            if (queue_.empty() && !pending_.empty()) {
                // Nothing to overlap the pending batch's durability with: finish it now.
                lock.unlock();
                FinishPending();
                continue;
            }
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) {
                return;  // stopping, and everything queued has been handled
            }
            if (queue_.front().task) {
                task = std::move(queue_.front().task);
                queue_.pop_front();
            } else {
                // Everything queued meanwhile goes into this transaction: batches grow with load.
                while (!queue_.empty() && !queue_.front().task && batch.size() < options_.max_batch_groups) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
        }
        if (task) {
            FinishPending();  // a task sees, and Flush waits for, every earlier group's callback
            task();
            continue;
        }
        if (Writable()) {
            backend_.CommitBatch(batch);
        } else {
            TurnAway(batch);
        }
        batch.clear();
    }
}

void WriteQueue::Acknowledge(std::vector<Item>& batch, std::vector<Status>& results, bool committed,
                             SteadyTime start, uint64_t ticket) {
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    CommitReport report{committed, 0, batch.size(), 0};
    {
        std::lock_guard lock(stats_mu_);
        stats_.commit_seconds += seconds;
        if (committed) {
            ++stats_.commits;
            for (size_t i = 0; i < batch.size(); ++i) {
                if (results[i]) {
                    ++stats_.groups;
                    stats_.transitions += batch[i].group.Transitions();
                } else if (results[i].error().code == ErrorCode::kFenced) {
                    ++report.fenced;
                }
            }
            stats_.fenced += report.fenced;
        }
    }
    FinishPending();  // callbacks keep the order of the groups
    if (ticket == 0) {
        Report(report, start);
        CallBack(batch, results);
    } else {
        pending_.swap(batch);
        pending_results_ = std::move(results);
        pending_ticket_ = ticket;
        pending_report_ = report;
        pending_start_ = start;
    }
}

// Hands a transaction's report to on_commit, timed from its BEGIN to now (it is durable).
void WriteQueue::Report(CommitReport& report, SteadyTime start) {
    if (options_.on_commit) {
        report.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
        options_.on_commit(report);
    }
}

// Waits until the pending batch is durable, then calls its callbacks.
void WriteQueue::FinishPending() {
    if (pending_.empty()) {
        return;
    }
    backend_.WaitDurable(pending_ticket_);
    Report(pending_report_, pending_start_);
    std::vector<Item> batch;
    batch.swap(pending_);
    std::vector<Status> results = std::move(pending_results_);
    CallBack(batch, results);
    batch.clear();
    pending_.swap(batch);  // still empty, but keeps its capacity for the writer's next batch
}

// No transaction is open here, so callbacks may call the store's blocking methods inline.
void WriteQueue::CallBack(std::vector<Item>& batch, std::vector<Status>& results) {
    for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].done) {
            batch[i].done(std::move(results[i]));
        }
    }
}

void WriteQueue::StopWrites(const Error& why) {
    FinishPending();  // the previous batch is committed: its callbacks come first
    if (!Writable()) {
        return;
    }
    episode_ = backend_.WritesStopping(why);
    writable_.store(false, std::memory_order_release);
    if (options_.on_writable) {
        options_.on_writable(false, why);
    }
}

// A create is the first write of its workflow: refusing it leaves nothing behind, and its caller
// can say no. Any other group continues something already durable (and maybe acted on), so it
// must be written in its turn: it waits.
void WriteQueue::TurnAway(std::vector<Item>& batch) {
    FinishPending();
    {
        std::lock_guard lock(stats_mu_);
        stats_.no_space += batch.size();
    }
    const size_t holding = held_.size() + std::count_if(batch.begin(), batch.end(), [](const Item& i) {
                               return i.group.creates.empty();
                           });
    if (options_.max_held_groups != 0 && holding > options_.max_held_groups) {
        ::cogs::base::CheckFailed(options_.held_bound_message, __FILE__, __LINE__);
    }
    if (options_.on_commit) {
        options_.on_commit(CommitReport{false, 0, batch.size(), 0, batch.size(), holding});
    }
    const Error refusal = backend_.RefuseCreate(episode_);
    for (Item& item : batch) {
        if (!item.group.creates.empty()) {
            if (item.done) {
                item.done(MakeError(refusal));
            }
        } else {
            held_.push_back(std::move(item));
        }
    }
}

void WriteQueue::TurnAwayFirst(std::vector<Item>& batch) {
    std::vector<Item> later;
    later.swap(held_);
    TurnAway(batch);
    for (Item& item : later) {
        held_.push_back(std::move(item));
    }
}

Status WriteQueue::ResumeWrites() {
    return RunOnWriter<Status>([this]() -> Status {
        if (Writable()) {
            return Ok();
        }
        COGS_TRY(backend_.Reopen());
        const Error ended = episode_;
        writable_.store(true, std::memory_order_release);
        if (options_.on_writable) {
            options_.on_writable(true, ended);
        }
        std::vector<Item> held;
        held.swap(held_);
        // In queue order, as one batch: if writes stop again they are held again, in order.
        if (!held.empty()) {
            backend_.CommitBatch(held);
        }
        return Writable() ? Ok() : MakeError(episode_);
    });
}

}  // namespace cogs::store::internal
