// The group-commit writer thread: it owns the writer connection, takes every queued group into
// one transaction (one savepoint per group of several statements, so a refused group is undone
// alone), and runs each group's callback once the transaction is durable. Every other write is a
// task queued in the same FIFO (see sqlite_store_impl.h).
#include <pthread.h>

#include <algorithm>

#include "cogs/base/check.h"
#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

void SqliteStore::Commit(WriteGroup group, CommitCallback done) {
    {
        std::lock_guard lock(mu_);
        queue_.push_back(Item{std::move(group), std::move(done), nullptr});
    }
    cv_.notify_one();
}

void SqliteStore::Flush() {
    // From a commit callback this would wait for the very thread that runs it.
    COGS_CHECK(!OnWriterThread());
    RunOnWriter<int>([] { return 0; });
}

StoreStats SqliteStore::Stats() {
    std::lock_guard lock(stats_mu_);
    return stats_;
}

void SqliteStore::WriterLoop() {
    writer_id_.store(std::this_thread::get_id(), std::memory_order_release);
    pthread_setname_np(pthread_self(), "cogs-store");
    std::vector<Item> batch;
    batch.reserve(std::min<size_t>(options_.max_batch_groups, 4096));
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock(mu_);
            if (queue_.empty() && !pending_.empty()) {
                // Nothing to overlap the pending batch's sync with: finish it now.
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
            CommitBatch(batch);
        } else {
            FinishPending();
            TurnAway(batch);
        }
        batch.clear();
    }
}

// One transaction for the whole batch. With a syncer the batch becomes pending: its callbacks
// run once its WAL sync is done, after the next batch's COMMIT (the sync overlaps that work).
void SqliteStore::CommitBatch(std::vector<Item>& batch) {
    SteadyTime start = SteadyClock::now();
    std::vector<Status> results(batch.size(), Ok());
    Status txn = writer_db_->Run(kBeginImmediate);
    for (size_t i = 0; txn && i < batch.size(); ++i) {
        Error error;
        switch (ApplyGroup(batch[i].group, &error)) {
            case Verdict::kOk: break;
            case Verdict::kRefused: results[i] = MakeError(std::move(error)); break;
            case Verdict::kFatal: txn = MakeError(std::move(error)); break;
        }
    }
    if (txn && faults_.before_commit) {
        txn = faults_.before_commit();
    }
    if (txn) {
        txn = writer_db_->Run(kCommit);
    }
    writer_db_->RollbackIfActive();
    if (!txn && txn.error().code == ErrorCode::kNoSpace) {
        // Nothing of the batch was applied: its groups are refused or held like any group queued
        // while the disk is full. The previous batch is committed: its callbacks come first.
        FinishPending();
        StopWrites(txn.error());
        TurnAway(batch);
        return;
    }
    double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    CommitReport report{static_cast<bool>(txn), 0, batch.size(), 0};
    {
        std::lock_guard lock(stats_mu_);
        stats_.commit_seconds += seconds;
        if (txn) {
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
    if (!txn) {
        results.assign(batch.size(), txn);
    }
    uint64_t ticket = txn && syncer_ != nullptr ? syncer_->Request() : 0;
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
void SqliteStore::Report(CommitReport& report, SteadyTime start) {
    if (options_.on_commit) {
        report.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
        options_.on_commit(report);
    }
}

// Waits until the pending batch is durable, then calls its callbacks.
void SqliteStore::FinishPending() {
    if (pending_.empty()) {
        return;
    }
    syncer_->Wait(pending_ticket_);
    Report(pending_report_, pending_start_);
    std::vector<Item> batch;
    batch.swap(pending_);
    std::vector<Status> results = std::move(pending_results_);
    CallBack(batch, results);
    batch.clear();
    pending_.swap(batch);  // still empty, but keeps its capacity for the writer's next batch
}

// No transaction is open here, so callbacks may call the store's blocking methods inline.
void SqliteStore::CallBack(std::vector<Item>& batch, std::vector<Status>& results) {
    for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].done) {
            batch[i].done(std::move(results[i]));
        }
    }
}

void SqliteStore::StopWrites(const Error& why) {
    if (!Writable()) {
        return;
    }
    full_error_ = why;
    writable_.store(false, std::memory_order_release);
    if (options_.on_writable) {
        options_.on_writable(false, why);
    }
}

// A create is the first write of its workflow: refusing it leaves nothing behind, and its caller
// can say no. Any other group continues something already durable (and maybe acted on), so it
// must be written in its turn: it waits.
void SqliteStore::TurnAway(std::vector<Item>& batch) {
    {
        std::lock_guard lock(stats_mu_);
        stats_.no_space += batch.size();
    }
    const size_t holding = held_.size() + std::count_if(batch.begin(), batch.end(),
                                                        [](const Item& i) { return !i.group.create; });
    COGS_CHECK(
        (options_.max_held_groups == 0 || holding <= options_.max_held_groups) &&
        "the disk stayed full until max_held_groups writes waited: exiting, a restart opens read-only");
    if (options_.on_commit) {
        options_.on_commit(CommitReport{false, 0, batch.size(), 0, batch.size(), holding});
    }
    const Error refusal(ErrorCode::kNoSpace,
                        "the store's disk is full: nothing was written; writes resume once space is freed");
    for (Item& item : batch) {
        if (item.group.create) {
            if (item.done) {
                item.done(MakeError(refusal));
            }
        } else {
            held_.push_back(std::move(item));
        }
    }
}

Status SqliteStore::ResumeWrites() {
    return RunOnWriter<Status>([this]() -> Status {
        if (Writable()) {
            return Ok();
        }
        COGS_TRY(EnoughSpace(options_));
        if (open_deferred_) {
            COGS_TRY(FinishOpen());
        }
        COGS_TRY(Probe());
        const Error ended = full_error_;
        writable_.store(true, std::memory_order_release);
        if (options_.on_writable) {
            options_.on_writable(true, ended);
        }
        EnsureReserve(options_);
        std::vector<Item> held;
        held.swap(held_);
        // In queue order, as one batch: if the disk fills again they are held again, in order.
        if (!held.empty()) {
            CommitBatch(held);
        }
        return Writable() ? Ok() : MakeError(full_error_);
    });
}

Status SqliteStore::Probe() {
    if (auto st = writer_db_->Run(kBeginImmediate); !st) {
        return st;
    }
    Status st = writer_db_->Run(kProbe);
    if (st) {
        st = writer_db_->Run(kCommit);
    }
    writer_db_->RollbackIfActive();
    if (st && syncer_ != nullptr) {
        syncer_->Wait(syncer_->Request());
    }
    return st;
}

// Applies one group inside the batch's transaction, all or nothing.
SqliteStore::Verdict SqliteStore::ApplyGroup(const WriteGroup& g, Error* error) {
    size_t statements = g.Transitions() + g.resources.size() + g.events.size();
    if (statements == 0) {
        return Verdict::kOk;
    }
    // One statement is atomic by itself, and a refused one changed nothing: only groups of
    // several statements need a savepoint to be undone alone.
    bool savepoint = statements > 1 || (g.create && !g.create->steps.empty());
    if (savepoint) {
        if (auto st = writer_db_->Run(kSavepoint); !st) {
            *error = st.error();
            return Verdict::kFatal;
        }
    }
    Verdict v = ApplyWrites(g, error);
    if (savepoint && v != Verdict::kFatal) {
        Status st = v == Verdict::kRefused ? writer_db_->Run(kRollbackTo) : Ok();
        if (st) {
            st = writer_db_->Run(kRelease);
        }
        if (!st) {
            *error = st.error();
            return Verdict::kFatal;
        }
    }
    return v;
}

// The group's parts in order; the first that is not kOk decides. A part the group does not have
// is not called: most groups have one.
SqliteStore::Verdict SqliteStore::ApplyWrites(const WriteGroup& g, Error* error) {
    Verdict v = g.create ? ApplyCreate(g, error) : Verdict::kOk;
    if (v == Verdict::kOk && !g.workflows.empty()) {
        v = ApplyWorkflowUpdates(g, error);
    }
    if (v == Verdict::kOk && !g.steps.empty()) {
        v = ApplyStepUpdates(g, error);
    }
    if (v == Verdict::kOk && !g.resources.empty()) {
        v = ApplyResources(g, error);
    }
    if (v == Verdict::kOk && !g.events.empty()) {
        v = ApplyEvents(g, error);
    }
    return v;
}

}  // namespace cogs::store::internal
