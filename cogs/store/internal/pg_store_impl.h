// PgStore, the PostgreSQL backend of Store (see ../README.md, "PostgreSQL backend"), declared once
// here; its methods are spread over files by concern:
//
//   pg_store_sql.cc     the schema's migrations and the text of every statement
//   pg_store.cc         opening, connections, and what the writer thread (WriteQueue, shared with
//                       the SQLite backend: write_queue.h) does with a batch: one pipelined round
//                       trip, the exact path when a group is refused, commits whose reply was lost
//                       ("in doubt"), and a database that cannot be reached
//   pg_store_ops.cc     a group's statements, leases and claims, revivals, definitions, pruning,
//                       and the reads
//
// Connections: one writer connection, used only by the writer thread (groups, and every other
// write as a task queued in order with them: WriteQueue, as in the SQLite backend); a small pool of
// reader connections used on the callers' threads. Every round trip has a deadline (PgOptions).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/pg/conn.h"
#include "cogs/store/internal/pg_store.h"
#include "cogs/store/internal/write_queue.h"
#include "cogs/store/store.h"

namespace cogs::store::internal {

// Every statement the store prepares on each connection (pg_store_sql.cc).
enum PgSql : int {
    kPgInsertWorkflow,
    kPgInsertStep,
    kPgUpdateWorkflow,
    kPgUpsertStep,
    kPgUpsertStepKeepLog,
    // The upsert's halves: the fast path sends one when PgStepRows knows which applies.
    kPgUpdateStep,
    kPgUpdateStepKeepLog,
    kPgInsertStepFenced,
    kPgInsertStepFencedKeepLog,
    kPgWorkflowFence,
    kPgStepFence,
    kPgUpsertResource,
    kPgDeleteResource,
    kPgInsertEvent,
    kPgMarkCommit,
    kPgCommitMark,
    kPgNextToken,
    kPgUpsertLease,
    kPgRenewLease,
    kPgLeaseTokenOf,
    kPgClaimOrphans,
    kPgClaimSteps,
    kPgSelectWorkflow,
    kPgSelectSteps,
    kPgSelectStepsWithLog,
    kPgList,
    kPgCountByState,
    kPgWorkflowState,
    kPgReviveWorkflow,
    kPgReviveSteps,
    kPgInsertDefinition,
    kPgDefinitionText,
    kPgLoadDefinitions,
    kPgLoadResources,
    kPgEventsByResource,
    kPgEventsByWorkflow,
    kPgEventsByProject,
    kPgEventsAll,
    kPgPruneEventsByAge,
    kPgPruneEventsByCount,
    kPgCountEnded,
    kPgOldestEnded,
    kPgCountFailed,
    kPgOldestFailed,
    kPgDeleteSteps,
    kPgDeleteEnded,
    kPgDeleteFailed,
    kPgLeaderFence,
    kPgPutChunk,
    kPgGetChunk,
    kPgDeleteChunks,
    kPgCountChunks,
    kPgCountAllChunks,
    kPgListBlobs,
    kPgInsertAudit,
    kPgAuditList,
    kPgPruneAuditByAge,
    kPgPruneAuditByCount,
    kPgNumSql,
};

const char* PgSqlText(PgSql s);
// The prepared name of a statement ("s12").
std::string PgName(PgSql s);
inline pg::Call PgCall(PgSql s) { return pg::Call{PgName(s), {}, {}}; }

struct PgMigration {
    int version = 0;
    const char* sql = nullptr;
};
extern const PgMigration kPgMigrations[];
extern const size_t kPgMigrationCount;

// Connects, sets the session up and prepares every statement.
Result<std::unique_ptr<pg::Conn>> PgConnect(const PgOptions& options, bool reader);
// Brings the database to the newest schema (one transaction, under an advisory lock: replicas
// that start together migrate once).
Status PgMigrate(pg::Conn& db, const PgOptions& options);

// Reads on any connection (pg_store_ops.cc).
Result<WorkflowRecord> PgLoadWorkflow(pg::Conn& db, const std::string& id, bool with_logs,
                                      SteadyTime deadline);

// Which steps of a workflow have a row, for the workflows this writer created (their pending steps
// have none until their first change): the fast path then sends a step's change as the fenced
// update alone (the row exists) or the fenced insert alone (it does not), each about half the
// server's work of the upsert that tries both (profiled: the upsert's plan, two data-modifying CTEs,
// was most of the server's CPU per workflow). Anything else (a workflow recovered, claimed or
// revived, or one this writer stopped tracking) takes the upsert.
//
// Only a hint, never trusted: on a wrong guess the statement changes nothing and answers 0, which
// refuses its group as a stale token would, and a refused group sends the batch to the exact path,
// which sends the upsert for every step. Whenever the fast path commits, each statement did what the
// upsert would have done. A wrong guess therefore costs time, never correctness; so that one cannot
// recur, a batch that did not commit on the fast path forgets every workflow it touched.
//
// Knowledge is committed knowledge plus what the batch being built has written so far (a step's
// first change and a later one can share a batch). Writer thread only.
class PgStepRows {
public:
    enum Guess { kUnknown, kHasRow, kNoRow };
    Guess Row(const std::string& workflow_id, int step) const;
    // The batch being built: a create (its steps with rows), a step written, a workflow ended.
    void Created(const WorkflowRecord& w);
    void Wrote(const std::string& workflow_id, int step);
    void Ended(const std::string& workflow_id);
    // The batch committed whole on the fast path: what it wrote is now known.
    void Commit();
    // The batch did not (refused groups, an error, a COMMIT in doubt): forget what it touched.
    void Discard();
    void Clear();

private:
    // Tracked: workflows of at most 64 steps; bit i: step i has a row. Untracked ones are absent.
    struct Entry {
        uint64_t rows = 0;
        bool tracked = false;
        bool ended = false;
    };
    static constexpr size_t kMaxTracked = size_t{1} << 18;  // beyond: start again (a hint only)

    Entry& Batch(const std::string& workflow_id);

    std::unordered_map<std::string, uint64_t> committed_;
    std::unordered_map<std::string, Entry> batch_;
};

class PgStore final : public QueuedStore {
public:
    PgStore(PgOptions options, PgFaults faults, std::unique_ptr<pg::Conn> writer);
    ~PgStore() override;

    // pg_store.cc
    Error WhyNotWritable() override;

    // pg_store_ops.cc
    Result<Lease> AcquireLease(const std::string& owner, int64_t ttl_ms) override;
    Status RenewLease(Lease& lease, int64_t ttl_ms) override;
    Result<std::vector<WorkflowRecord>> ClaimOrphaned(const Lease& lease, int limit) override;
    Result<WorkflowRecord> ReviveFailed(const Lease& lease, const std::string& id) override;
    Result<PruneResult> PruneWorkflows(Ended which, int64_t finished_before_ms, int64_t keep_at_most,
                                       int batch) override;
    Status SaveDefinition(const DefinitionRecord& def) override;
    Result<int64_t> PruneEvents(int64_t older_than_ms, int64_t keep_at_most) override;
    Result<WorkflowRecord> GetWorkflow(const std::string& id) override;
    Result<std::vector<WorkflowSummary>> ListWorkflows(const ListFilter& filter) override;
    Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState() override;
    Result<std::vector<ResourceRecord>> LoadResources() override;
    Result<std::vector<DefinitionRecord>> LoadDefinitions() override;
    Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override;

    // pg_store_chunks.cc
    Status PutChunk(const std::string& blob, int64_t seq, std::string_view data) override;
    Result<std::string> GetChunk(const std::string& blob, int64_t seq) override;
    Result<int64_t> DeleteChunks(const std::string& blob) override;
    Result<int64_t> CountChunks(const std::string& blob) override;
    Result<std::vector<std::string>> ListBlobs() override;

    // pg_store_audit.cc
    Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) override;
    Result<int64_t> PruneAudit(int64_t older_than_ms, int64_t keep_at_most) override;

private:
    using Item = WriteQueue::Item;

    // What one statement of a group must have done for the group to stand.
    struct Check {
        size_t group = 0;
        enum Kind { kNone, kCreated, kWorkflowFenced, kStepFenced } kind = kNone;
        const std::string* id = nullptr;  // the workflow (owned by the batch)
        int step = 0;
    };

    SteadyTime Deadline() const { return SteadyClock::now() + options_.statement_timeout; }

    // Runs `body` in its own transaction on the writer connection, in queue order (BEGIN and
    // COMMIT are a round trip each; body's statements as it sends them). A lost connection starts
    // an episode.
    template <typename T>
    Result<T> Write(const std::function<Result<T>(pg::Conn&, SteadyTime)>& body) {
        return queue_.RunOnWriter<Result<T>>([&]() -> Result<T> {
            if (!Writable()) {
                return MakeError(queue_.Episode());
            }
            const SteadyTime deadline = Deadline();
            Result<T> r = [&]() -> Result<T> {
                COGS_TRY(writer_->Exec("BEGIN", deadline));
                COGS_TRY(CheckLeader(deadline));
                Result<T> v = body(*writer_, deadline);
                if (!v) {
                    return v;
                }
                COGS_TRY(writer_->Exec("COMMIT", deadline));
                return v;
            }();
            if (!r && !writer_->Broken()) {
                (void)writer_->Exec("ROLLBACK", deadline);
            }
            if (writer_->Broken()) {
                queue_.StopWrites(r ? Error(ErrorCode::kUnavailable, "connection lost") : r.error());
            }
            return r;
        });
    }

    // Runs `body` on a pooled reader connection, on the calling thread. A pooled connection the
    // server closed meanwhile (it restarted) is replaced and the read tried once more.
    template <typename T>
    Result<T> Read(const std::function<Result<T>(pg::Conn&, SteadyTime)>& body) {
        for (int attempt = 0;; ++attempt) {
            std::unique_ptr<pg::Conn> db;
            {
                std::lock_guard lock(readers_mu_);
                if (!idle_readers_.empty() && attempt == 0) {
                    db = std::move(idle_readers_.back());
                    idle_readers_.pop_back();
                }
            }
            const bool pooled = db != nullptr;
            if (db == nullptr) {
                COGS_ASSIGN_OR_RETURN(db, PgConnect(options_, /*reader=*/true));
            }
            Result<T> r = body(*db, Deadline());
            if (!db->Broken()) {
                std::lock_guard lock(readers_mu_);
                if (idle_readers_.size() < kMaxIdleReaders) {
                    idle_readers_.push_back(std::move(db));
                }
            } else if (pooled && !r && r.error().code == ErrorCode::kUnavailable) {
                continue;
            }
            return r;
        }
    }

    // ---- the writer thread (pg_store.cc): WriteQueue::Backend
    void CommitBatch(std::vector<Item>& batch) override;
    // Reconnects and settles the batch in doubt (committed: acknowledged; else turned away).
    Status Reopen() override;
    // kNoSpace for the server's disk, else kUnavailable.
    Error RefuseCreate(const Error& episode) const override;
    // The episode's error is retryable; the step-row hints are dropped.
    Error WritesStopping(const Error& why) override;
    // The batch in one pipelined round trip and a COMMIT; nullopt if a group was refused (the
    // transaction was rolled back: take the exact path).
    std::optional<Status> FastPath(std::vector<Item>& batch, std::vector<Status>& results);
    Status ExactPath(std::vector<Item>& batch, std::vector<Status>& results);
    Status CommitBatchTransaction(SteadyTime deadline);  // COMMIT (and the lost-reply seam)
    Status Reconnect();
    // With a leader token: the row still carries it (and is share-locked until the transaction
    // ends); else kFenced, and on_deposed once.
    Status CheckLeader(SteadyTime deadline);
    pg::Call LeaderFence() const;
    Status Deposed();

    // ---- a group's statements (pg_store_ops.cc)
    // `rows`: the fast path's hint for choosing a step's statement (and it records what the group
    // writes); nullptr (the exact path): the upsert for every step.
    void AddGroup(size_t index, const WriteGroup& g, std::vector<pg::Call>& calls, std::vector<Check>& checks,
                  PgStepRows* rows);
    // The first statement whose answer refuses its group (a create that found its id taken, a
    // fenced update that changed no row), or kNoRefusal.
    static constexpr size_t kNoRefusal = static_cast<size_t>(-1);
    static size_t FirstRefused(const std::vector<pg::Reply>& replies, const std::vector<Check>& checks);
    // The refusal for `check`'s statement: the id taken, or the row's token (stale, or no row).
    Error Refusal(const Check& check, uint64_t fence, SteadyTime deadline);
    static Status CheckSteps(const WriteGroup& g);

    static constexpr size_t kMaxIdleReaders = 4;

    const PgOptions options_;
    const PgFaults faults_;
    const std::string writer_name_;  // this store's name in commit_marks
    std::unique_ptr<pg::Conn> writer_;
    uint64_t batch_seq_ = 0;  // the writer's: the mark of the last batch sent
    bool deposed_ = false;    // the writer's: the leader token was found superseded
    PgStepRows step_rows_;    // the writer's

    std::mutex readers_mu_;
    std::vector<std::unique_ptr<pg::Conn>> idle_readers_;

    // The queue's episode: the database cannot be reached (or its disk is full), as the SQLite
    // backend's full disk. Written by the writer thread only.
    std::atomic<bool> down_for_space_{false};  // the episode's cause: the server's disk, not the server
    // A batch whose COMMIT reply was lost: committed or not, the mark tells after reconnecting.
    std::vector<Item> in_doubt_;
    std::vector<Status> in_doubt_results_;
    uint64_t in_doubt_seq_ = 0;
};

}  // namespace cogs::store::internal
