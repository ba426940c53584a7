// What the writer thread (WriteQueue, write_queue.h) does with the writer connection: a batch of
// groups in one transaction (one savepoint per group of several statements, so a refused group is
// undone alone), and the probe that ends a full disk's episode. Every other write is a task queued
// in the same FIFO (see sqlite_store_impl.h).
#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

// One transaction for the whole batch. With a syncer the batch is acknowledged once its WAL sync
// is done, after the next batch's COMMIT (the sync overlaps that work).
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
        // while the disk is full (after the previous batch's callbacks: that one is committed).
        queue_.StopWrites(txn.error());
        queue_.TurnAway(batch);
        return;
    }
    if (!txn) {
        results.assign(batch.size(), txn);
    }
    const uint64_t ticket = txn && syncer_ != nullptr ? syncer_->Request() : 0;
    queue_.Acknowledge(batch, results, static_cast<bool>(txn), start, ticket);
}

// A create is refused: nothing of it is written, and its caller can say no (the API's 507).
Error SqliteStore::RefuseCreate(const Error& /*episode*/) const {
    return Error(ErrorCode::kNoSpace,
                 "the store's disk is full: nothing was written; writes resume once space is freed");
}

Status SqliteStore::Reopen() {
    COGS_TRY(EnoughSpace(options_));
    if (open_deferred_) {
        COGS_TRY(FinishOpen());
    }
    COGS_TRY(Probe());
    EnsureReserve(options_);
    return Ok();
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
    size_t statements = g.Transitions() + g.resources.size() + g.events.size() + g.audit.size();
    if (statements == 0) {
        return Verdict::kOk;
    }
    // One statement is atomic by itself, and a refused one changed nothing: only groups of
    // several statements need a savepoint to be undone alone.
    bool savepoint = statements > 1 || (g.creates.size() == 1 && !g.creates.front().steps.empty());
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
    Verdict v = g.creates.empty() ? Verdict::kOk : ApplyCreates(g, error);
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
    if (v == Verdict::kOk && !g.audit.empty()) {
        v = ApplyAudit(g, error);
    }
    return v;
}

}  // namespace cogs::store::internal
