// SqliteStore, the SQLite backend of Store (see ../README.md for the schema and the threading
// model), declared once here; its methods are spread over files by concern, the way RocksDB
// spreads DBImpl:
//
//   sqlite_store_open.cc       the schema and its migrations, the lock file, opening and closing
//   sqlite_store_sql.cc        the text of every statement; a connection prepares them all
//   sqlite_store_writer.cc     a batch's transaction (savepoints), the full disk's probe and resume
//   write_queue.{h,cc}         the queue and writer thread, shared with the PostgreSQL backend:
//                              batches, callbacks, the full disk's held and refused groups
//   wal_syncer.{h,cc}          the WAL's fdatasync on its own thread (synchronous_full)
//   sqlite_store_workflows.cc  workflows and steps: creates, updates, revival, loading one
//   sqlite_store_leases.cc     leases, claims and fencing (a refused update says why)
//   sqlite_store_resources.cc  desired-state resources and workflow definitions
//   sqlite_store_events.cc     the event history and its pruning
//   sqlite_store_chunks.cc     image content, in chunks
//   sqlite_store_reads.cc      the pool of read connections and the listings read through it
//
// Two kinds of connection:
//   - one writer connection, used only by the writer thread: group commits, and every other
//     write (leases, claims, revivals, definitions) as a task queued in order with the groups
//     (WriteQueue), so the process never contends with itself for the write lock and a task sees
//     every group queued before it;
//   - a small pool of read-only connections for inspection, used on the caller's thread. WAL
//     lets them read the last committed state while the writer commits.
// With synchronous_full, the WAL is synced by a third thread (WalSyncer): batch N's sync runs
// while batch N+1 is applied, and N's callbacks run once it is done (its ticket is the queue's
// durability ticket).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/sqlite/db.h"
#include "cogs/store/internal/sqlite_store.h"
#include "cogs/store/internal/wal_syncer.h"
#include "cogs/store/internal/write_queue.h"
#include "cogs/store/store.h"

namespace cogs::store::internal {

class LockFile;  // sqlite_store_open.cc

// Every statement the store runs after open, prepared once per connection (sqlite_store_sql.cc).
enum Sql : int {
    kBeginImmediate,
    kBeginRead,
    kCommit,
    kRollback,
    kSavepoint,
    kRelease,
    kRollbackTo,
    kProbe,
    kInsertWorkflow,
    kInsertStep,
    kUpdateWorkflow,
    kUpdateStep,
    kUpdateStepKeepLog,
    kWorkflowFence,
    kStepFence,
    kInsertStepFenced,
    kNextToken,
    kUpsertLease,
    kRenewLease,
    kLeaseTokenOf,
    kSelectOrphans,
    kClaimWorkflow,
    kClaimSteps,
    kSelectWorkflow,
    kSelectSteps,
    kSelectStepsWithLog,
    kListAll,
    kListByState,
    kListByType,
    kListByStateType,
    kCountByState,
    kWorkflowState,
    kReviveWorkflow,
    kReviveSteps,
    kInsertDefinition,
    kDefinitionText,
    kLoadDefinitions,
    kListByProject,
    kUpsertResource,
    kDeleteResource,
    kLoadResources,
    kInsertEvent,
    kEventsByResource,
    kEventsByWorkflow,
    kEventsByProject,
    kEventsAll,
    kPruneEventsByAge,
    kPruneEventsByCount,
    kCountEnded,
    kOldestEnded,
    kCountFailed,
    kOldestFailed,
    kDeleteFailed,
    kDeleteSteps,
    kDeleteEnded,
    kPutChunk,
    kGetChunk,
    kDeleteChunks,
    kCountChunks,
    kCountAllChunks,
    kListBlobs,
    kInsertAudit,
    kAuditByToken,
    kAuditByProject,
    kAuditByResource,
    kAuditAll,
    kPruneAuditByAge,
    kPruneAuditByCount,
    kNumSql,
};

const char* SqlText(Sql s);

// The schema's steps, oldest first (sqlite_store_open.cc).
extern const sqlite::Schema kSchema;

// A full disk (sqlite_store_open.cc): kNoSpace unless the database's file system has
// resume_min_free_bytes free; the reserve file made (best effort) or released.
Status EnoughSpace(const SqliteOptions& options);
void EnsureReserve(const SqliteOptions& options);
bool ReleaseReserve(const SqliteOptions& options);

// A connection and its prepared statements.
class Connection {
public:
    // Opens the file; Prepare once the schema is current, so that no later call can fail to.
    static Result<std::unique_ptr<Connection>> Open(const std::string& path, const sqlite::Options& options);
    Status PrepareAll();

    sqlite::Db& db() { return *db_; }
    sqlite::Stmt& Get(Sql s) { return stmts_[s]; }
    // Runs a prepared statement without parameters or rows (BEGIN, COMMIT, ...).
    Status Run(Sql s) { return stmts_[s].Run(); }
    void RollbackIfActive();

private:
    std::unique_ptr<sqlite::Db> db_;
    std::array<sqlite::Stmt, kNumSql> stmts_{};
};

// One use of a prepared statement: binds in order, resets it when it goes out of scope. Text is
// bound without a copy, so the bound values must outlive the last Step().
class Query : public sqlite::Use {
public:
    Query(Connection& c, Sql s) : Use(c.Get(s)) {}
};

inline int64_t ToDb(uint64_t fence) { return static_cast<int64_t>(fence); }

// Reads on any connection; the caller provides the snapshot (sqlite_store_workflows.cc and
// sqlite_store_reads.cc).
Result<WorkflowRecord> LoadWorkflow(Connection& db, const std::string& id, bool with_logs);
Result<std::vector<WorkflowSummary>> ListWorkflows(Connection& db, const ListFilter& f);
Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState(Connection& db);
Result<std::vector<ResourceRecord>> LoadResources(Connection& db);
Result<std::vector<DefinitionRecord>> LoadDefinitions(Connection& db);
Result<std::vector<EventRecord>> ListEvents(Connection& db, const EventFilter& f);
Result<std::vector<AuditRecord>> ListAudit(Connection& db, const AuditFilter& f);

class SqliteStore final : public QueuedStore {
public:
    // `read_only`: the open's writes failed for lack of space; they wait for ResumeWrites.
    SqliteStore(SqliteOptions options, SqliteFaults faults, std::unique_ptr<LockFile> lock,
                std::unique_ptr<Connection> writer, std::unique_ptr<WalSyncer> syncer,
                std::optional<Error> read_only);
    ~SqliteStore() override;

    // sqlite_store_leases.cc
    Result<Lease> AcquireLease(const std::string& owner, int64_t ttl_ms) override;
    Status RenewLease(Lease& lease, int64_t ttl_ms) override;
    Result<std::vector<WorkflowRecord>> ClaimOrphaned(const Lease& lease, int limit) override;

    // sqlite_store_workflows.cc
    Result<WorkflowRecord> ReviveFailed(const Lease& lease, const std::string& id) override;
    Result<PruneResult> PruneWorkflows(Ended which, int64_t finished_before_ms, int64_t keep_at_most,
                                       int batch) override;

    // sqlite_store_resources.cc
    Status SaveDefinition(const DefinitionRecord& def) override;

    // sqlite_store_events.cc
    Result<int64_t> PruneEvents(int64_t older_than_ms, int64_t keep_at_most) override;

    // sqlite_store_audit.cc
    Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) override;
    Result<int64_t> PruneAudit(int64_t older_than_ms, int64_t keep_at_most) override;

    // sqlite_store_chunks.cc
    Status PutChunk(const std::string& blob, int64_t seq, std::string_view data) override;
    Result<std::string> GetChunk(const std::string& blob, int64_t seq) override;
    Result<int64_t> DeleteChunks(const std::string& blob) override;
    Result<int64_t> CountChunks(const std::string& blob) override;
    Result<std::vector<std::string>> ListBlobs() override;

    // sqlite_store_reads.cc
    Result<WorkflowRecord> GetWorkflow(const std::string& id) override;
    Result<std::vector<WorkflowSummary>> ListWorkflows(const ListFilter& filter) override;
    Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState() override;
    Result<std::vector<ResourceRecord>> LoadResources() override;
    Result<std::vector<DefinitionRecord>> LoadDefinitions() override;
    Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override;

private:
    using Item = WriteQueue::Item;

    // What became of one group inside a batch.
    enum class Verdict {
        kOk,
        kRefused,  // fenced, duplicate or malformed: this group is undone, the batch goes on
        kFatal,    // the database failed: the whole transaction is rolled back
    };

    // Runs `body` in its own write transaction on the writer thread, in queue order.
    template <typename T>
    Result<T> Write(const std::function<Result<T>()>& body) {
        return queue_.RunOnWriter<Result<T>>([&]() -> Result<T> {
            if (!Writable()) {
                return MakeError(queue_.Episode());  // only ResumeWrites tries while the disk is full
            }
            if (auto st = writer_db_->Run(kBeginImmediate); !st) {
                return MakeError(st.error());
            }
            Result<T> r = body();
            if (r) {
                if (auto st = writer_db_->Run(kCommit); !st) {
                    r = MakeError(st.error());
                }
            }
            writer_db_->RollbackIfActive();
            if (r && syncer_ != nullptr) {
                syncer_->Wait(syncer_->Request());
            }
            if (!r && r.error().code == ErrorCode::kNoSpace) {
                queue_.StopWrites(r.error());
            }
            return r;
        });
    }

    // Runs `body` on a pooled read connection, on the calling thread.
    template <typename T>
    Result<T> Read(const std::function<Result<T>(Connection&)>& body) {
        std::unique_ptr<Connection> db;
        {
            std::lock_guard lock(readers_mu_);
            if (!idle_readers_.empty()) {
                db = std::move(idle_readers_.back());
                idle_readers_.pop_back();
            }
        }
        if (db == nullptr) {
            auto opened = OpenReader();
            if (!opened) {
                return MakeError(opened.error());
            }
            db = std::move(*opened);
        }
        Result<T> r = body(*db);
        std::lock_guard lock(readers_mu_);
        if (idle_readers_.size() < kMaxIdleReaders) {
            idle_readers_.push_back(std::move(db));
        }
        return r;
    }

    Result<std::unique_ptr<Connection>> OpenReader();  // sqlite_store_open.cc

    // sqlite_store_leases.cc
    Status CheckLeaseIsCurrent(const Lease& lease);
    // An update changed no row: the token is stale or the row does not exist.
    Verdict Refuse(uint64_t fence, const std::string& id, std::optional<int> step, Error* error);

    // ---- the writer thread (sqlite_store_writer.cc): WriteQueue::Backend. The queue's episode is a
    // full disk; its error is the store's (the file, SQLite's words).
    // One transaction for the whole batch, a savepoint per group of several statements.
    void CommitBatch(std::vector<Item>& batch) override;
    // A full disk: enough free space, the open's deferred writes, a probe; the reserve made again.
    Status Reopen() override;
    Error RefuseCreate(const Error& episode) const override;
    void WaitDurable(uint64_t ticket) override { syncer_->Wait(ticket); }
    Status FinishOpen();  // sqlite_store_open.cc: the open's writes, deferred by a read-only open
    Status Probe();       // one small write transaction, durable
    Verdict ApplyGroup(const WriteGroup& g, Error* error);
    Verdict ApplyWrites(const WriteGroup& g, Error* error);

    // The parts of a group, each on the writer connection inside the batch's transaction.
    Verdict ApplyCreates(const WriteGroup& g, Error* error);  // sqlite_store_workflows.cc
    Verdict ApplyCreate(const WorkflowRecord& w, uint64_t fence, Error* error);
    Verdict ApplyWorkflowUpdates(const WriteGroup& g, Error* error);  // sqlite_store_workflows.cc
    Verdict ApplyStepUpdates(const WriteGroup& g, Error* error);      // sqlite_store_workflows.cc
    Verdict ApplyResources(const WriteGroup& g, Error* error);        // sqlite_store_resources.cc
    Verdict ApplyEvents(const WriteGroup& g, Error* error);           // sqlite_store_events.cc
    Verdict ApplyAudit(const WriteGroup& g, Error* error);            // sqlite_store_audit.cc
    static Verdict Fatal(Error e, Error* error) {
        *error = std::move(e);
        return Verdict::kFatal;
    }

    static constexpr size_t kMaxIdleReaders = 4;

    const SqliteOptions options_;
    const SqliteFaults faults_;
    std::unique_ptr<LockFile> lock_;         // first of the resources, so released last
    std::unique_ptr<Connection> writer_db_;  // the writer thread's, once it runs
    std::unique_ptr<WalSyncer> syncer_;      // null with synchronous=NORMAL: nothing is synced at commit

    std::mutex readers_mu_;
    std::vector<std::unique_ptr<Connection>> idle_readers_;

    bool open_deferred_ = false;  // the writer's: a read-only open's writes wait for ResumeWrites
};

}  // namespace cogs::store::internal
