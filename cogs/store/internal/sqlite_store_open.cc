// Opening and closing the store: the schema and its migrations, the lock file that keeps a second
// process out, the writer connection's pragmas, and the expiry of earlier owners' leases.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store {
namespace internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema. Each entry migrates version i - 1 to i (PRAGMA user_version). Never edit a released
// entry: append a new one (ALTER TABLE ... ADD COLUMN ...) instead.
constexpr sqlite::Migration kMigrations[] = {
    // 1: the initial schema.
    {1, R"sql(
    CREATE TABLE workflows(
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        input TEXT NOT NULL,
        state INTEGER NOT NULL,
        reason TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL,
        finished_ms INTEGER NOT NULL,
        trace TEXT NOT NULL,
        fence INTEGER NOT NULL,
        owner TEXT NOT NULL,
        step_count INTEGER NOT NULL);
    CREATE INDEX workflows_by_state ON workflows(state, id);
    CREATE INDEX workflows_by_type ON workflows(type, state, id);
    CREATE INDEX workflows_active ON workflows(fence) WHERE state <= 1;

    CREATE TABLE steps(
        workflow_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        state INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        comp_attempts INTEGER NOT NULL,
        applied INTEGER NOT NULL,
        next_at_ms INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER NOT NULL,
        output TEXT NOT NULL,
        error TEXT NOT NULL,
        log TEXT NOT NULL,
        fence INTEGER NOT NULL,
        PRIMARY KEY(workflow_id, idx)) WITHOUT ROWID;
    -- A step has a row from its first change on; a step without one is pending (the workflow's
    -- step_count says how many there are). Most steps of a new workflow are pending, so creating
    -- a workflow writes one or two rows instead of one per step.

    CREATE TABLE leases(
        owner TEXT PRIMARY KEY,
        token INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL);
    CREATE UNIQUE INDEX leases_by_token ON leases(token);

    CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters(name, value) VALUES('lease_token', 0);

    CREATE TABLE definitions(
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY(type, version));
    )sql"},
    // 2: the control plane's desired state, and the tenant of each workflow.
    {2, R"sql(
    ALTER TABLE workflows ADD COLUMN project TEXT NOT NULL DEFAULT '';
    CREATE INDEX workflows_by_project ON workflows(project, id);
    CREATE TABLE resources(
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        project TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY(kind, id)) WITHOUT ROWID;
    )sql"},
    // 3: the resource each workflow works on, and every resource's event history.
    {3, R"sql(
    ALTER TABLE workflows ADD COLUMN resource_kind TEXT NOT NULL DEFAULT '';
    ALTER TABLE workflows ADD COLUMN resource_id TEXT NOT NULL DEFAULT '';
    -- AUTOINCREMENT: a seq is never reused, even after pruning removed the newest events, so a
    -- reader following the history with after_seq never misses one.
    CREATE TABLE events(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        project TEXT NOT NULL,
        resource_kind TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        trace_id TEXT NOT NULL);
    CREATE INDEX events_by_resource ON events(resource_kind, resource_id, seq);
    CREATE INDEX events_by_project ON events(project, seq);
    CREATE INDEX events_by_workflow ON events(workflow_id, seq);
    )sql"},
    // 4: retention of ended workflows (PruneWorkflows) walks them oldest first, without a scan.
    // Partial: only succeeded (2) and rolled-back (3) rows are indexed, so the index costs a write
    // when a workflow ends, not at every step update.
    {4, R"sql(
    CREATE INDEX workflows_ended ON workflows(finished_ms) WHERE state IN (2, 3);
    )sql"},
    // 5: failed workflows have a retention of their own (longer: they wait for an operator).
    {5, R"sql(
    CREATE INDEX workflows_failed ON workflows(finished_ms) WHERE state = 4;
    )sql"},
    // 6: image content, in chunks of at most a few MiB each (Store::PutChunk). A blob is one upload
    // of one image; the image's record names it.
    {6, R"sql(
    CREATE TABLE image_chunks(
        blob TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(blob, seq)) WITHOUT ROWID;
    )sql"},
    // 7: the audit log: every change asked of the API (cogs/cloud/resources/audit.h). Newest first
    // by seq; a filter by token, project or resource walks its own index.
    {7, R"sql(
    CREATE TABLE audit(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        token_id TEXT NOT NULL,
        project TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        trace_id TEXT NOT NULL,
        peer TEXT NOT NULL);
    CREATE INDEX audit_by_token ON audit(token_id, seq);
    CREATE INDEX audit_by_project ON audit(project, seq);
    CREATE INDEX audit_by_resource ON audit(resource_id, seq);
    )sql"},
};

}  // namespace

const sqlite::Schema kSchema{"store", kMigrations, ""};

// The exclusive lock on "<path>.lock", held until the object goes.
class LockFile {
public:
    explicit LockFile(int fd) : fd_(fd) {}
    LockFile(const LockFile&) = delete;
    LockFile& operator=(const LockFile&) = delete;
    ~LockFile() { ::close(fd_); }  // closing the only descriptor releases the flock

    static Result<std::unique_ptr<LockFile>> Acquire(const std::string& db_path) {
        std::string path = db_path + ".lock";
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            return MakeError(ErrorCode::kUnavailable, "open " + path + ": " + std::strerror(errno));
        }
        auto lock = std::make_unique<LockFile>(fd);
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            if (err == EWOULDBLOCK) {
                return MakeError(
                    ErrorCode::kFailedPrecondition,
                    "store " + db_path + " is in use by another process (" + path + " is locked)");
            }
            return MakeError(ErrorCode::kUnavailable, "flock " + path + ": " + std::strerror(err));
        }
        return lock;
    }

private:
    int fd_;
};

namespace {

constexpr const char* kExpireLeases = "UPDATE leases SET expires_ms = 0";

std::string DirOf(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, std::max<size_t>(slash, 1));
}

// Opens the writer connection: WAL, pragmas, migrations, expiry of earlier owners' leases. On a
// full disk the expiry fails: `*read_only` gets the error and the expiry waits for FinishOpen.
Result<std::unique_ptr<Connection>> OpenWriter(const SqliteOptions& options,
                                               std::optional<Error>* read_only) {
    sqlite::Options o;
    // Anything but WAL (e.g. a file system without shared memory) would silently lose what the
    // design relies on: readers beside the writer. Open refuses it.
    o.wal = true;
    o.synchronous = options.synchronous_full ? sqlite::Synchronous::kFull : sqlite::Synchronous::kNormal;
    o.busy_timeout_ms = 5000;
    o.pragmas = {
        "cache_size = -65536",  // 64 MiB
        // Checkpoint every ~40 MiB of WAL instead of every 4 MiB: a page updated by many commits is
        // copied back to the database once per checkpoint, and checkpoints run on the writer thread.
        "wal_autocheckpoint = 10000",
        "journal_size_limit = 67108864",  // truncate the WAL back to 64 MiB after checkpoints
    };
    COGS_ASSIGN_OR_RETURN(auto db, Connection::Open(options.path, o));
    COGS_TRY(sqlite::Migrate(db->db(), kSchema));
    // We hold the lock file, so whoever held these leases is gone: their work is claimable now.
    if (auto st = db->db().Exec(kExpireLeases); !st) {
        if (st.error().code != ErrorCode::kNoSpace) {
            return MakeError(st.error());
        }
        *read_only = st.error();
    }
    COGS_TRY(db->PrepareAll());
    return db;
}

}  // namespace

Status EnoughSpace(const SqliteOptions& options) {
    const std::string dir = DirOf(options.path);
    struct statvfs fs {};
    if (::statvfs(dir.c_str(), &fs) != 0) {
        return MakeError(ErrorCode::kUnavailable, "statvfs " + dir + ": " + std::strerror(errno));
    }
    const auto free_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
    if (free_bytes < options.resume_min_free_bytes) {
        return MakeError(ErrorCode::kNoSpace, dir + " has " + std::to_string(free_bytes) +
                                                  " bytes free, fewer than " +
                                                  std::to_string(options.resume_min_free_bytes));
    }
    return Ok();
}

void EnsureReserve(const SqliteOptions& options) {
    if (options.reserve_bytes <= 0) {
        return;
    }
    const std::string path = options.path + ".reserve";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return;
    }
    // Blocks really allocated (a sparse file would free nothing); a failure leaves a smaller file,
    // which still frees what it holds.
    (void)::posix_fallocate(fd, 0, options.reserve_bytes);
    ::close(fd);
}

bool ReleaseReserve(const SqliteOptions& options) {
    return options.reserve_bytes > 0 && ::unlink((options.path + ".reserve").c_str()) == 0;
}

Status SqliteStore::FinishOpen() {
    if (auto st = writer_db_->db().Exec(kExpireLeases); !st) {
        return st;
    }
    if (options_.synchronous_full && options_.pipelined_sync) {
        // The WAL exists once something was written: the probe first, with SQLite's own sync.
        COGS_TRY(Probe());
        COGS_ASSIGN_OR_RETURN(syncer_, WalSyncer::Open(options_.path));
        COGS_TRY(writer_db_->db().Exec("PRAGMA synchronous = NORMAL"));
    }
    open_deferred_ = false;
    return Ok();
}

SqliteStore::SqliteStore(SqliteOptions options, SqliteFaults faults, std::unique_ptr<LockFile> lock,
                         std::unique_ptr<Connection> writer, std::unique_ptr<WalSyncer> syncer,
                         std::optional<Error> read_only)
    : QueuedStore(WriteQueue::Options{options.max_batch_groups, options.max_held_groups, options.on_commit,
                                      options.on_writable,
                                      "the disk stayed full until max_held_groups writes waited: exiting, a "
                                      "restart opens read-only"}),
      options_(std::move(options)),
      faults_(std::move(faults)),
      lock_(std::move(lock)),
      writer_db_(std::move(writer)),
      syncer_(std::move(syncer)) {
    if (read_only) {
        open_deferred_ = true;
        queue_.StopWrites(*read_only);
    }
    queue_.Start();
}

SqliteStore::~SqliteStore() {
    queue_.Stop();
    // Then members go in reverse order: connections close, then the lock file is released; then
    // the queue (groups still held for lack of space go unwritten and uncalled: the process is
    // stopping, and their callers may be gone already).
}

Result<std::unique_ptr<Connection>> SqliteStore::OpenReader() {
    sqlite::Options o;
    o.create = false;
    o.busy_timeout_ms = 5000;
    o.query_only = true;
    COGS_ASSIGN_OR_RETURN(auto db, Connection::Open(options_.path, o));
    COGS_TRY(db->PrepareAll());
    return db;
}

Result<std::unique_ptr<Store>> OpenSqliteStoreWithFaults(const SqliteOptions& options, SqliteFaults faults) {
    if (options.path.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "store path is empty");
    }
    if (options.max_batch_groups < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "max_batch_groups must be at least 1");
    }
    COGS_ASSIGN_OR_RETURN(auto lock, LockFile::Acquire(options.path));
    std::optional<Error> read_only;
    auto db = OpenWriter(options, &read_only);
    if (!db && db.error().code == ErrorCode::kNoSpace && ReleaseReserve(options)) {
        // Too full even to read (SQLite could not make its shared-memory index): the reserve
        // gives it the room. The disk is full all the same: writes wait for ResumeWrites.
        read_only = db.error();
        db = OpenWriter(options, &read_only);
    }
    if (!db) {
        return MakeError(db.error());
    }
    std::unique_ptr<WalSyncer> syncer;
    if (options.synchronous_full && options.pipelined_sync && !read_only) {
        COGS_ASSIGN_OR_RETURN(syncer, WalSyncer::Open(options.path));
        // From here on the syncer makes each commit durable before it is acknowledged.
        COGS_TRY((*db)->db().Exec("PRAGMA synchronous = NORMAL"));
    }
    if (!read_only) {
        EnsureReserve(options);
    }
    return std::make_unique<SqliteStore>(options, std::move(faults), std::move(lock), std::move(*db),
                                         std::move(syncer), std::move(read_only));
}

}  // namespace internal

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
    return internal::OpenSqliteStoreWithFaults(options, {});
}

}  // namespace cogs::store
