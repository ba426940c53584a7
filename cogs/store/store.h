// Store: where the workflow engine commits every state change before it acts on it.
//
// One interface, so that a PostgreSQL backend can later run several engine replicas on one
// database. The SQLite backend (sqlite_store.h) is the default.
//
// Group commit: Commit() queues a WriteGroup; a single writer takes every queued group into one
// transaction, commits it with one fsync, and then calls each group's callback. Throughput is
// therefore bounded by the disk's fsync rate times the batch size, not by the fsync rate alone.
//
// Fencing: every group carries the fencing token of its writer's lease. A group whose token is not
// the current token of each workflow it touches fails whole with kFenced, so a stale owner can
// never overwrite what a newer one wrote.
//
// Threading: every method may be called from any thread. Commit() never blocks; its callback runs
// on the store's writer thread and must be quick (post to your own executor). The other methods
// block on the database and must not be called from an I/O thread in a hot path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/store/records.h"

namespace cogs::store {

struct StoreStats {
    uint64_t commits = 0;       // transactions committed
    uint64_t groups = 0;        // groups committed
    uint64_t transitions = 0;   // WriteGroup::Transitions() summed over committed groups
    uint64_t fenced = 0;        // groups refused for a stale token
    double commit_seconds = 0;  // time spent in BEGIN..COMMIT, summed
    uint64_t no_space = 0;      // groups turned away for lack of space (refused, or held)
};

// Which ended workflows one PruneWorkflows call deletes.
enum class Ended : uint8_t {
    kDone,    // succeeded or rolled back
    kFailed,  // failed: a compensation could not finish; kept for an operator's retry
};

// What one PruneWorkflows call did.
struct PruneResult {
    int64_t pruned = 0;  // workflows deleted (with their steps)
    int64_t kept = 0;    // workflows of that kind left
};

class Store {
public:
    using CommitCallback = std::function<void(Status)>;

    virtual ~Store() = default;

    // Queues `group`; `done` receives Ok once it is durable, kFenced if the token is stale,
    // kAlreadyExists for a duplicate create, or another error if the transaction failed (then no
    // group of that transaction was applied: each callback gets the error).
    virtual void Commit(WriteGroup group, CommitCallback done) = 0;

    // Blocks until every group queued before the call is committed (tests, shutdown); while writes
    // are refused (below), until every such group is committed, refused or held.
    virtual void Flush() = 0;

    // A full disk. When a write fails for lack of space, the store refuses writes until space
    // returns: Writable() turns false, and each group queued from then on (and each group of the
    // failed transaction) is
    //   - refused with kNoSpace if it creates a workflow (nothing of it is written: its caller can
    //     answer "no" — the API's 507), or
    //   - held, in queue order, if it continues what is already durable (a workflow's or a step's
    //     change, a resource write, events): its callback runs once it is durable, after the
    //     groups held before it. Nothing is lost and nothing is applied out of order; the caller
    //     just waits, as for a slow disk.
    // Blocking writes (leases, claims, definitions, pruning) fail with kNoSpace without trying.
    // Reads go on. The store also starts in this state when the writes of its open fail for lack
    // of space (it opens read-only rather than failing).
    virtual bool Writable() = 0;
    // What to answer a change while !Writable(): kNoSpace (the disk is full; SQLite, or
    // PostgreSQL's own disk) or kUnavailable (the database cannot be reached), with a message for
    // an API answer. Any thread.
    virtual Error WhyNotWritable() {
        return Error(
            ErrorCode::kNoSpace,
            "the control plane's disk is full: changes are refused until space is freed; reads go on");
    }
    // Tries to end a full-disk episode: enough free space (SqliteOptions::resume_min_free_bytes),
    // a probe write, then the held groups in order. Ok once writable (at once if it was); kNoSpace
    // if still full. Blocking: call it from a timer off the I/O thread (the engine's lease timer).
    virtual Status ResumeWrites() = 0;

    // Takes a new lease for `owner` with a fresh token, greater than any token issued before by
    // this store. Expires after `ttl_ms` unless renewed.
    virtual Result<Lease> AcquireLease(const std::string& owner, int64_t ttl_ms) = 0;
    // Extends the lease; kFenced if a newer lease of the same owner name superseded it.
    virtual Status RenewLease(Lease& lease, int64_t ttl_ms) = 0;

    // Claims up to `limit` non-terminal workflows whose owning lease has expired (or whose fence
    // is older than every live lease), stamps them with `lease.token`, and returns them with their
    // steps (logs not loaded). Used at start-up and by the stuck-work loop.
    virtual Result<std::vector<WorkflowRecord>> ClaimOrphaned(const Lease& lease, int limit) = 0;

    // Inspection.
    virtual Result<WorkflowRecord> GetWorkflow(const std::string& id) = 0;  // with steps and logs
    virtual Result<std::vector<WorkflowSummary>> ListWorkflows(const ListFilter& filter) = 0;
    virtual Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState() = 0;

    // Operator retry of a `failed` workflow: puts it back to kCompensating and its
    // kCompensationFailed steps back to kCompensating with fresh attempts, under `lease`'s token
    // (so the caller owns it). Returns the reloaded record.
    virtual Result<WorkflowRecord> ReviveFailed(const Lease& lease, const std::string& id) = 0;

    // Definition versions: every version ever run stays loadable, so a workflow finishes on the
    // version it started with even after a restart.
    virtual Status SaveDefinition(const DefinitionRecord& def) = 0;  // idempotent for equal text
    virtual Result<std::vector<DefinitionRecord>> LoadDefinitions() = 0;

    // Every desired-state record (WriteGroup::resources), ordered by kind and id. Blocking; for
    // start-up, when the API process rebuilds its in-memory model.
    virtual Result<std::vector<ResourceRecord>> LoadResources() = 0;

    // Retention of ended workflows. Deletes, oldest end first, at most `batch` workflows of
    // `which` kind, with their steps (and so their logs): those finished before
    // `finished_before_ms` (wall ms), and the oldest beyond the newest `keep_at_most` of that kind.
    // Never a running or compensating workflow. A failed one waits for an operator's ReviveFailed,
    // so its retention is set apart (longer). Their events are the resources' history and have
    // their own retention (PruneEvents). One short write transaction on the writer thread: call it
    // again while it pruned `batch`, so that group commits go on in between. Blocking; off the I/O
    // thread.
    virtual Result<PruneResult> PruneWorkflows(Ended which, int64_t finished_before_ms, int64_t keep_at_most,
                                               int batch) = 0;

    // Events oldest first (by seq) matching `filter`. Blocking.
    virtual Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) = 0;
    // Deletes events older than `older_than_ms` (wall ms), then the oldest beyond the newest
    // `keep_at_most`; returns how many went. Deletes in batches of a few thousand rows, each its
    // own short transaction (group commits go on in between). Blocking; run it from a maintenance
    // timer off the I/O thread.
    virtual Result<int64_t> PruneEvents(int64_t older_than_ms, int64_t keep_at_most) = 0;

    // The audit log (AuditRecord), newest first, matching `filter`. Blocking.
    virtual Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) = 0;
    // As PruneEvents, for the audit log: entries older than `older_than_ms`, then the oldest beyond
    // the newest `keep_at_most`; how many went. Blocking; off the I/O thread.
    virtual Result<int64_t> PruneAudit(int64_t older_than_ms, int64_t keep_at_most) = 0;

    // Image content (cogs/cloud's images), kept in the store so that every replica reads it: a blob
    // (one upload of one image, named by its caller) is a sequence of chunks 0, 1, ... of at most a
    // few MiB each, written one at a time, never all in memory. Unfenced, like the resources: a
    // blob becomes visible only through the image record that names it, which is written (fenced)
    // with the groups once every chunk is durable. All blocking; off the I/O thread.
    //
    // Writes chunk `seq` of `blob` (replacing a chunk of the same seq), durable on return.
    virtual Status PutChunk(const std::string& blob, int64_t seq, std::string_view data) = 0;
    // Chunk `seq` of `blob`: kNotFound if there is none.
    virtual Result<std::string> GetChunk(const std::string& blob, int64_t seq) = 0;
    // Deletes every chunk of `blob`; how many there were.
    virtual Result<int64_t> DeleteChunks(const std::string& blob) = 0;
    // How many chunks `blob` has; "" counts the chunks of every blob.
    virtual Result<int64_t> CountChunks(const std::string& blob) = 0;
    // Every blob that has chunks (at start-up, to delete those no image names: an upload cut short).
    virtual Result<std::vector<std::string>> ListBlobs() = 0;

    virtual StoreStats Stats() = 0;
};

// What one transaction of groups came to, for metrics (SqliteOptions::on_commit).
struct CommitReport {
    bool committed = false;  // false: the transaction failed and no group of it was applied
    double seconds = 0;      // BEGIN → durable (its WAL sync done): what its groups waited
    size_t groups = 0;       // groups in the transaction
    size_t fenced = 0;       // of them, refused for a stale fencing token (0 if not committed)
    size_t no_space = 0;     // of them, turned away for lack of space (refused or held; see Writable)
    size_t held = 0;         // groups held in all, waiting for space (SqliteOptions::max_held_groups)
};

struct SqliteOptions {
    std::string path;  // the database file; its directory must exist
    // Every acknowledged commit is on disk (else NORMAL: a power cut may lose the last commits).
    bool synchronous_full = true;
    // With synchronous_full: fdatasync the WAL on a syncer thread after each COMMIT, so batch N is
    // synced while batch N+1 is written, and acknowledge a batch once its sync is done (the
    // connection then runs synchronous=NORMAL). false: PRAGMA synchronous=FULL, the sync inside
    // COMMIT on the writer thread. Both acknowledge only what is on disk.
    bool pipelined_sync = true;
    size_t max_batch_groups = 4096;  // most groups in one transaction
    // Called on the writer thread once per transaction of groups, when its callbacks are about to
    // run (metrics: see store_metrics.h). Must be quick and must not call the store. Empty: none.
    std::function<void(const CommitReport&)> on_commit{};
    // Called when writes stop for lack of space (false, with the store's error: the file and
    // SQLite's words) and when they resume (true, the error of the episode that ended): once per
    // episode, not per write. On the writer thread (or the opening thread, for a read-only open);
    // quick, must not call the store. Empty: none.
    std::function<void(bool writable, const Error& why)> on_writable{};
    // ResumeWrites tries only once the file system has this much free space.
    int64_t resume_min_free_bytes = int64_t{1} << 20;
    // "<path>.reserve", a file of this size kept beside the database: released when the store
    // cannot even be opened for lack of space (SQLite needs room for its shared-memory index to
    // read), made again once writes resume. 0: none.
    int64_t reserve_bytes = int64_t{256} << 10;
    // The most groups held while the disk is full (see Store::Writable). They are the ones that
    // cannot be refused, so one more ends the process (CheckFailed, naming this bound): memory
    // stays bounded however long the disk stays full, and a restart recovers from what is durable
    // and opens read-only, as PostgreSQL stops when it cannot write its WAL. In cogsd they come
    // from workflows in flight and host state changes, far below the default. 0: no bound.
    size_t max_held_groups = 100'000;
};

// Opens (creating and migrating if needed) a SQLite store in WAL mode. Takes an exclusive lock on
// "<path>.lock" for the life of the store: only one process may own an embedded store, so leases
// left by an earlier process on the same file are expired at open (that process is provably gone).
// On a full disk it opens read-only (Writable() false; the expiry waits for ResumeWrites), unless
// the schema needs a migration.
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

struct PgOptions {
    // A libpq connection string or URI: "host=/run/cogs-pg port=5433 dbname=cogs user=cogs" or
    // "postgresql://cogs@db1:5432/cogs". A password belongs in ~/.pgpass or PGPASSWORD, not here:
    // this text may be logged (its password is not, but keep it out of process arguments).
    std::string conninfo;
    size_t max_batch_groups = 4096;  // most groups in one transaction
    // The deadline of every round trip to the server (a statement, a pipeline, a COMMIT): a server
    // that does not answer by then is taken as lost (see Writable). Also the connect timeout.
    Duration statement_timeout = std::chrono::seconds(10);
    // How long the server lets a session of this store sit idle inside a transaction (a client
    // paused or cut off between two round trips) before it ends it and its locks go. 0: twice
    // statement_timeout. A leader's store sets its lease TTL: a frozen leader must not hold the
    // share lock on the lease row (and so the takeover) longer than that.
    Duration idle_in_transaction_timeout{};
    // As SqliteOptions: on_commit once per transaction of groups; on_writable when the database
    // becomes unreachable (false) and reachable again (true).
    std::function<void(const CommitReport&)> on_commit{};
    std::function<void(bool writable, const Error& why)> on_writable{};
    // The most groups held while the database cannot be reached (as SqliteOptions::max_held_groups).
    size_t max_held_groups = 100'000;
    // The leader's store (cogs/store/leadership.h): its token. Every write transaction checks, in
    // the transaction, that the leader row still carries it; if not, it is refused whole (each
    // group and blocking write: kFenced) and on_deposed is called once (on the writer thread). 0:
    // no check (a single process, or tests of the store alone).
    uint64_t leader_token = 0;
    std::function<void(const Error& why)> on_deposed{};
};

// Opens a PostgreSQL store: connects (kUnavailable if the server cannot be reached within
// statement_timeout), creates or migrates the schema (under an advisory lock, so replicas that
// start together migrate once) and prepares every statement. Several stores, in one process or
// several, may open one database: leases and fencing tokens arbitrate between their engines
// (nothing is expired at open: another live process may own it). See README.md, "PostgreSQL".
Result<std::unique_ptr<Store>> OpenPgStore(const PgOptions& options);

}  // namespace cogs::store
