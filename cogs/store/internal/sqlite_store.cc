// The SQLite backend of Store (see ../README.md for the schema and the threading model).
//
// Two kinds of connection:
//   - one writer connection, used only by the writer thread: group commits, and every other
//     write (leases, claims, revivals, definitions) as a task queued in order with the groups, so
//     the process never contends with itself for the write lock and a task sees every group
//     queued before it;
//   - a small pool of read-only connections for inspection, used on the caller's thread. WAL
//     lets them read the last committed state while the writer commits.
// With synchronous_full, the WAL is synced by a third thread (WalSyncer): batch N's sync runs
// while batch N+1 is applied, and N's callbacks run once it is done.
#include "cogs/store/internal/sqlite_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cogs/base/check.h"
#include "cogs/base/time.h"
#include "cogs/store/store.h"

namespace cogs::store {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema. Each entry migrates version i to i+1 (PRAGMA user_version). Never edit a released
// entry: append a new one (ALTER TABLE ... ADD COLUMN ...) instead.
constexpr std::array<const char*, 3> kMigrations = {
    // 1: the initial schema.
    R"sql(
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
    )sql",
    // 2: the control plane's desired state, and the tenant of each workflow.
    R"sql(
    ALTER TABLE workflows ADD COLUMN project TEXT NOT NULL DEFAULT '';
    CREATE INDEX workflows_by_project ON workflows(project, id);
    CREATE TABLE resources(
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        project TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY(kind, id)) WITHOUT ROWID;
    )sql",
    // 3: the resource each workflow works on, and every resource's event history.
    R"sql(
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
    )sql",
};

// Every statement the store runs after open, prepared once per connection.
enum Sql : int {
    kBeginImmediate,
    kBeginRead,
    kCommit,
    kRollback,
    kSavepoint,
    kRelease,
    kRollbackTo,
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
    kNumSql,
};

#define COGS_SUMMARY_COLUMNS \
    "id, type, version, state, reason, created_ms, finished_ms, project, trace, resource_kind, resource_id"
#define COGS_STEP_COLUMNS \
    "idx, state, attempts, comp_attempts, applied, next_at_ms, started_ms, finished_ms, output, error"
#define COGS_EVENT_COLUMNS \
    "seq, time_ms, project, resource_kind, resource_id, workflow_id, type, message, trace_id"
// Every event query binds ?1 project, ?2 resource_kind, ?3 resource_id, ?4 workflow_id (each ''
// for any), ?5 after_seq, ?6 limit. The filters that pick the index are plain equalities (and the
// index is named, so the plan cannot drift); the others are optional terms checked per row.
#define COGS_EVENT_FILTER_TAIL " AND seq > ?5 ORDER BY seq LIMIT ?6"

// clang-format off
const char* SqlText(Sql s) {
    switch (s) {
        case kBeginImmediate: return "BEGIN IMMEDIATE";
        case kBeginRead: return "BEGIN";
        case kCommit: return "COMMIT";
        case kRollback: return "ROLLBACK";
        case kSavepoint: return "SAVEPOINT g";
        case kRelease: return "RELEASE g";
        case kRollbackTo: return "ROLLBACK TO g";
        case kInsertWorkflow:
            // The owner is whoever holds the group's token now ('' if nobody: the workflow is
            // then orphaned from birth and claimable).
            return "INSERT INTO workflows(id, type, version, input, state, reason, cancel_requested, "
                   "created_ms, updated_ms, deadline_ms, finished_ms, trace, fence, owner, step_count, "
                   "project, resource_kind, resource_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                   "?11, ?12, ?13, COALESCE((SELECT owner FROM leases WHERE token = ?13), ''), ?14, ?15, "
                   "?16, ?17)";
        case kInsertStep:
            return "INSERT INTO steps(workflow_id, " COGS_STEP_COLUMNS ", log, fence) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
        case kInsertStepFenced:
            // A step's first row, fenced by its workflow's token; a row that exists already (then
            // with another token, or the update before this would have matched) is left alone.
            return "INSERT INTO steps(workflow_id, " COGS_STEP_COLUMNS ", log, fence) "
                   "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 "
                   "WHERE EXISTS(SELECT 1 FROM workflows WHERE id = ?1 AND fence = ?13 AND ?2 < step_count) "
                   "ON CONFLICT(workflow_id, idx) DO NOTHING";
        case kUpdateWorkflow:
            return "UPDATE workflows SET state = ?1, reason = ?2, cancel_requested = ?3, updated_ms = ?4, "
                   "finished_ms = ?5 WHERE id = ?6 AND fence = ?7";
        case kUpdateStep:
            return "UPDATE steps SET state = ?1, attempts = ?2, comp_attempts = ?3, applied = ?4, "
                   "next_at_ms = ?5, started_ms = ?6, finished_ms = ?7, output = ?8, error = ?9, "
                   "log = log || ?10 WHERE workflow_id = ?11 AND idx = ?12 AND fence = ?13";
        case kUpdateStepKeepLog:
            // Most transitions append nothing; rewriting the log with itself would cost a copy.
            return "UPDATE steps SET state = ?1, attempts = ?2, comp_attempts = ?3, applied = ?4, "
                   "next_at_ms = ?5, started_ms = ?6, finished_ms = ?7, output = ?8, error = ?9 "
                   "WHERE workflow_id = ?10 AND idx = ?11 AND fence = ?12";
        case kWorkflowFence: return "SELECT fence FROM workflows WHERE id = ?1";
        case kStepFence: return "SELECT fence FROM steps WHERE workflow_id = ?1 AND idx = ?2";
        case kNextToken:
            return "UPDATE counters SET value = value + 1 WHERE name = 'lease_token' RETURNING value";
        case kUpsertLease:
            return "INSERT INTO leases(owner, token, expires_ms) VALUES(?1, ?2, ?3) ON CONFLICT(owner) "
                   "DO UPDATE SET token = excluded.token, expires_ms = excluded.expires_ms";
        case kRenewLease: return "UPDATE leases SET expires_ms = ?1 WHERE owner = ?2 AND token = ?3";
        case kLeaseTokenOf: return "SELECT token FROM leases WHERE owner = ?1";
        case kSelectOrphans:
            // `state <= 1` repeats the partial index's condition so the planner can use it.
            return "SELECT id FROM workflows WHERE state <= 1 AND fence < ?1 AND NOT EXISTS "
                   "(SELECT 1 FROM leases WHERE leases.token = workflows.fence AND leases.expires_ms > ?2) "
                   "LIMIT ?3";
        case kClaimWorkflow: return "UPDATE workflows SET fence = ?1, owner = ?2 WHERE id = ?3";
        case kClaimSteps: return "UPDATE steps SET fence = ?1 WHERE workflow_id = ?2";
        case kSelectWorkflow:
            return "SELECT id, type, version, input, state, reason, cancel_requested, created_ms, "
                   "updated_ms, deadline_ms, finished_ms, trace, fence, step_count, project, resource_kind, "
                   "resource_id FROM workflows WHERE id = ?1";
        case kSelectSteps:
            return "SELECT " COGS_STEP_COLUMNS ", '' FROM steps WHERE workflow_id = ?1 ORDER BY idx";
        case kSelectStepsWithLog:
            return "SELECT " COGS_STEP_COLUMNS ", log FROM steps WHERE workflow_id = ?1 ORDER BY idx";
        case kListAll:
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE id > ?1 ORDER BY id LIMIT ?2";
        case kListByState:
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE state = ?1 AND id > ?2 "
                   "ORDER BY id LIMIT ?3";
        case kListByType:
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE type = ?1 AND id > ?2 "
                   "ORDER BY id LIMIT ?3";
        case kListByStateType:
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE type = ?1 AND state = ?2 "
                   "AND id > ?3 ORDER BY id LIMIT ?4";
        case kCountByState: return "SELECT state, COUNT(*) FROM workflows GROUP BY state";
        case kWorkflowState: return "SELECT state FROM workflows WHERE id = ?1";
        case kReviveWorkflow:
            return "UPDATE workflows SET state = 1, fence = ?1, owner = ?2, updated_ms = ?3, finished_ms = 0 "
                   "WHERE id = ?4 AND state = 4";
        case kReviveSteps:
            // Right-hand sides see the row as it was, so both CASEs test the old state.
            return "UPDATE steps SET fence = ?1, "
                   "comp_attempts = CASE WHEN state = 8 THEN 0 ELSE comp_attempts END, "
                   "state = CASE WHEN state = 8 THEN 6 ELSE state END WHERE workflow_id = ?2";
        case kInsertDefinition:
            return "INSERT INTO definitions(type, version, text) VALUES(?1, ?2, ?3) "
                   "ON CONFLICT(type, version) DO NOTHING";
        case kDefinitionText: return "SELECT text FROM definitions WHERE type = ?1 AND version = ?2";
        case kLoadDefinitions: return "SELECT type, version, text FROM definitions ORDER BY type, version";
        case kListByProject:
            // One tenant's workflows, through workflows_by_project; state and type filter the scan.
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE project = ?1 AND (?2 < 0 OR "
                   "state = ?2) AND (?3 = '' OR type = ?3) AND id > ?4 ORDER BY id LIMIT ?5";
        case kUpsertResource:
            return "INSERT INTO resources(kind, id, project, body) VALUES(?1, ?2, ?3, ?4) "
                   "ON CONFLICT(kind, id) DO UPDATE SET project = excluded.project, body = excluded.body";
        case kDeleteResource: return "DELETE FROM resources WHERE kind = ?1 AND id = ?2";
        case kLoadResources: return "SELECT kind, id, project, body FROM resources ORDER BY kind, id";
        case kInsertEvent:
            return "INSERT INTO events(time_ms, project, resource_kind, resource_id, workflow_id, type, "
                   "message, trace_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
        case kEventsByResource:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events INDEXED BY events_by_resource "
                   "WHERE resource_kind = ?2 AND resource_id = ?3 AND (?1 = '' OR project = ?1) "
                   "AND (?4 = '' OR workflow_id = ?4)" COGS_EVENT_FILTER_TAIL;
        case kEventsByWorkflow:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events INDEXED BY events_by_workflow "
                   "WHERE workflow_id = ?4 AND (?1 = '' OR project = ?1) AND (?2 = '' OR resource_kind = ?2) "
                   "AND (?3 = '' OR resource_id = ?3)" COGS_EVENT_FILTER_TAIL;
        case kEventsByProject:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events INDEXED BY events_by_project "
                   "WHERE project = ?1 AND (?2 = '' OR resource_kind = ?2) AND (?3 = '' OR resource_id = ?3) "
                   "AND (?4 = '' OR workflow_id = ?4)" COGS_EVENT_FILTER_TAIL;
        case kEventsAll:
            // No indexed filter: walks the table in seq order from after_seq.
            return "SELECT " COGS_EVENT_COLUMNS " FROM events WHERE (?1 = '' OR project = ?1) "
                   "AND (?2 = '' OR resource_kind = ?2) AND (?3 = '' OR resource_id = ?3) "
                   "AND (?4 = '' OR workflow_id = ?4)" COGS_EVENT_FILTER_TAIL;
        case kPruneEventsByAge: return "DELETE FROM events WHERE time_ms < ?1";
        case kPruneEventsByCount:
            // The (keep+1)-th newest and everything older; nothing if there are no more than keep.
            return "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 "
                   "OFFSET ?1)";
        case kNumSql: break;
    }
    return "";
}

// clang-format on

#undef COGS_SUMMARY_COLUMNS
#undef COGS_STEP_COLUMNS
#undef COGS_EVENT_COLUMNS
#undef COGS_EVENT_FILTER_TAIL

// ---------------------------------------------------------------------------------------------
// Errors.

ErrorCode CodeOf(int rc) {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_CANTOPEN:
        case SQLITE_PROTOCOL:
        case SQLITE_NOMEM: return ErrorCode::kUnavailable;
        default: return ErrorCode::kInternal;
    }
}

Error SqliteError(sqlite3* db, int rc, std::string_view what) {
    std::string msg = "sqlite: ";
    msg += what;
    msg += ": ";
    msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    return Error(CodeOf(rc), std::move(msg));
}

bool IsConstraint(int rc) { return (rc & 0xff) == SQLITE_CONSTRAINT; }

int64_t ToDb(uint64_t fence) { return static_cast<int64_t>(fence); }

// ---------------------------------------------------------------------------------------------
// A connection and its prepared statements.

class Db {
public:
    Db() = default;
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    ~Db() {
        for (sqlite3_stmt* s : stmts_) {
            sqlite3_finalize(s);
        }
        sqlite3_close_v2(db_);
    }

    static Result<std::unique_ptr<Db>> Open(const std::string& path, bool create) {
        auto db = std::make_unique<Db>();
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
        int rc = sqlite3_open_v2(path.c_str(), &db->db_, flags, nullptr);
        if (rc != SQLITE_OK) {
            return MakeError(SqliteError(db->db_, rc, "open " + path));
        }
        sqlite3_extended_result_codes(db->db_, 1);
        return db;
    }

    // Prepares every statement once the schema is current, so that no later call can fail to.
    Status PrepareAll() {
        for (int i = 0; i < kNumSql; ++i) {
            auto s = static_cast<Sql>(i);
            int rc = sqlite3_prepare_v3(db_, SqlText(s), -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr);
            if (rc != SQLITE_OK) {
                return MakeError(SqliteError(db_, rc, std::string("prepare ") + SqlText(s)));
            }
        }
        return Ok();
    }

    sqlite3* raw() { return db_; }
    sqlite3_stmt* Get(Sql s) { return stmts_[s]; }

    // Runs SQL text once (open time only: pragmas, migrations).
    Status Exec(const std::string& sql) {
        char* err = nullptr;
        int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
        if (rc != SQLITE_OK) {
            std::string msg = "sqlite: " + sql.substr(0, 60) + ": ";
            msg += err != nullptr ? err : sqlite3_errstr(rc);
            sqlite3_free(err);
            return MakeError(Error(CodeOf(rc), std::move(msg)));
        }
        return Ok();
    }

    // Runs a prepared statement without parameters or rows (BEGIN, COMMIT, ...).
    Status Run(Sql s) {
        int rc = sqlite3_step(stmts_[s]);
        sqlite3_reset(stmts_[s]);
        if (rc != SQLITE_DONE) {
            return MakeError(SqliteError(db_, rc, SqlText(s)));
        }
        return Ok();
    }

    void RollbackIfActive() {
        if (sqlite3_get_autocommit(db_) == 0) {
            (void)Run(kRollback);
        }
    }

private:
    sqlite3* db_ = nullptr;
    std::array<sqlite3_stmt*, kNumSql> stmts_{};
};

// One use of a prepared statement: binds parameters in order, resets it when it goes out of
// scope. Text is bound without a copy, so the bound values must outlive the last Step().
class Stmt {
public:
    Stmt(Db& db, Sql s) : s_(db.Get(s)) {}
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt() { sqlite3_reset(s_); }

    Stmt& Int(int64_t v) {
        [[maybe_unused]] int rc = sqlite3_bind_int64(s_, ++n_, v);
        COGS_DCHECK(rc == SQLITE_OK);
        return *this;
    }
    Stmt& Text(std::string_view v) {
        // A null pointer would bind NULL, and every text column is NOT NULL.
        const char* data = v.data() != nullptr ? v.data() : "";
        auto size = static_cast<int>(v.size());
        [[maybe_unused]] int rc = sqlite3_bind_text(s_, ++n_, data, size, SQLITE_STATIC);
        COGS_DCHECK(rc == SQLITE_OK);
        return *this;
    }

    int Step() { return sqlite3_step(s_); }
    // Runs a statement that returns no rows.
    Status Exec(std::string_view what) {
        int rc = Step();
        return rc == SQLITE_DONE ? Ok() : MakeError(Fail(rc, what));
    }
    Error Fail(int rc, std::string_view what) { return SqliteError(sqlite3_db_handle(s_), rc, what); }

    int64_t ColInt(int col) { return sqlite3_column_int64(s_, col); }
    std::string ColText(int col) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
        if (p == nullptr) {
            return {};
        }
        return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, col)));
    }

private:
    sqlite3_stmt* s_;
    int n_ = 0;
};

// Reads a workflow and its steps (ordered by index); the caller provides the snapshot.
Result<WorkflowRecord> LoadWorkflow(Db& db, const std::string& id, bool with_logs) {
    WorkflowRecord r;
    {
        Stmt q(db, kSelectWorkflow);
        q.Text(id);
        int rc = q.Step();
        if (rc == SQLITE_DONE) {
            return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
        }
        if (rc != SQLITE_ROW) {
            return MakeError(q.Fail(rc, "load workflow"));
        }
        r.id = q.ColText(0);
        r.type = q.ColText(1);
        r.version = static_cast<int>(q.ColInt(2));
        r.input = q.ColText(3);
        r.state = static_cast<WorkflowState>(q.ColInt(4));
        r.reason = q.ColText(5);
        r.cancel_requested = q.ColInt(6) != 0;
        r.created_ms = q.ColInt(7);
        r.updated_ms = q.ColInt(8);
        r.deadline_ms = q.ColInt(9);
        r.finished_ms = q.ColInt(10);
        r.trace = q.ColText(11);
        r.fence = static_cast<uint64_t>(q.ColInt(12));
        r.steps.resize(static_cast<size_t>(q.ColInt(13)));
        r.project = q.ColText(14);
        r.resource_kind = q.ColText(15);
        r.resource_id = q.ColText(16);
        for (size_t i = 0; i < r.steps.size(); ++i) {
            r.steps[i].index = static_cast<int>(i);  // pending unless a row says otherwise
        }
    }
    Stmt q(db, with_logs ? kSelectStepsWithLog : kSelectSteps);
    q.Text(id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        const auto index = static_cast<size_t>(q.ColInt(0));
        if (index >= r.steps.size()) {
            return MakeError(ErrorCode::kInternal, "workflow '" + id + "' has a row for step " +
                                                       std::to_string(index) + " beyond its step count");
        }
        StepRecord& s = r.steps[index];
        s.index = static_cast<int>(index);
        s.state = static_cast<StepState>(q.ColInt(1));
        s.attempts = static_cast<int>(q.ColInt(2));
        s.comp_attempts = static_cast<int>(q.ColInt(3));
        s.applied = q.ColInt(4) != 0;
        s.next_at_ms = q.ColInt(5);
        s.started_ms = q.ColInt(6);
        s.finished_ms = q.ColInt(7);
        s.output = q.ColText(8);
        s.error = q.ColText(9);
        s.log = q.ColText(10);
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "load steps"));
    }
    return r;
}

Result<std::vector<WorkflowSummary>> ListWorkflows(Db& db, const ListFilter& f) {
    bool by_type = !f.type.empty();
    Stmt q(db, !f.project.empty() ? kListByProject
               : f.state          ? (by_type ? kListByStateType : kListByState)
                                  : (by_type ? kListByType : kListAll));
    if (!f.project.empty()) {
        q.Text(f.project).Int(f.state ? static_cast<int>(*f.state) : -1).Text(f.type);
    } else {
        if (by_type) {
            q.Text(f.type);
        }
        if (f.state) {
            q.Int(static_cast<int>(*f.state));
        }
    }
    q.Text(f.after_id).Int(std::clamp(f.limit, 1, 1000));
    std::vector<WorkflowSummary> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        WorkflowSummary& s = out.emplace_back();
        s.id = q.ColText(0);
        s.type = q.ColText(1);
        s.version = static_cast<int>(q.ColInt(2));
        s.state = static_cast<WorkflowState>(q.ColInt(3));
        s.reason = q.ColText(4);
        s.created_ms = q.ColInt(5);
        s.finished_ms = q.ColInt(6);
        s.project = q.ColText(7);
        s.trace = q.ColText(8);
        s.resource_kind = q.ColText(9);
        s.resource_id = q.ColText(10);
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "list workflows"));
    }
    return out;
}

Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState(Db& db) {
    // Every state, zeros included, in enum order.
    std::vector<std::pair<WorkflowState, int64_t>> out;
    for (auto s : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                   WorkflowState::kRolledBack, WorkflowState::kFailed}) {
        out.emplace_back(s, 0);
    }
    Stmt q(db, kCountByState);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        int64_t state = q.ColInt(0);
        if (state >= 0 && static_cast<size_t>(state) < out.size()) {
            out[static_cast<size_t>(state)].second = q.ColInt(1);
        }
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "count workflows"));
    }
    return out;
}

Result<std::vector<ResourceRecord>> LoadResources(Db& db) {
    std::vector<ResourceRecord> out;
    Stmt q(db, kLoadResources);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        out.push_back(ResourceRecord{q.ColText(0), q.ColText(1), q.ColText(2), q.ColText(3)});
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "load resources"));
    }
    return out;
}

Result<std::vector<EventRecord>> ListEvents(Db& db, const EventFilter& f) {
    Sql sql = !f.resource_kind.empty() && !f.resource_id.empty() ? kEventsByResource
              : !f.workflow_id.empty()                           ? kEventsByWorkflow
              : !f.project.empty()                               ? kEventsByProject
                                                                 : kEventsAll;
    Stmt q(db, sql);
    q.Text(f.project).Text(f.resource_kind).Text(f.resource_id).Text(f.workflow_id);
    q.Int(f.after_seq).Int(std::clamp(f.limit, 1, 1000));
    std::vector<EventRecord> out;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        EventRecord& e = out.emplace_back();
        e.seq = q.ColInt(0);
        e.time_ms = q.ColInt(1);
        e.project = q.ColText(2);
        e.resource_kind = q.ColText(3);
        e.resource_id = q.ColText(4);
        e.workflow_id = q.ColText(5);
        e.type = q.ColText(6);
        e.message = q.ColText(7);
        e.trace_id = q.ColText(8);
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "list events"));
    }
    return out;
}

Result<std::vector<DefinitionRecord>> LoadDefinitions(Db& db) {
    std::vector<DefinitionRecord> out;
    Stmt q(db, kLoadDefinitions);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
        out.push_back(DefinitionRecord{q.ColText(0), static_cast<int>(q.ColInt(1)), q.ColText(2)});
    }
    if (rc != SQLITE_DONE) {
        return MakeError(q.Fail(rc, "load definitions"));
    }
    return out;
}

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

// Makes the WAL durable on its own thread, so that the fsync of one batch overlaps the work of
// the next. The writer connection runs with synchronous=NORMAL (SQLite writes the WAL at COMMIT
// without syncing it); a batch is acknowledged only once a sync that started after its COMMIT has
// finished. That is the sync synchronous=FULL would have done inside COMMIT, moved off the path.
class WalSyncer {
public:
    explicit WalSyncer(int fd) : fd_(fd) {
        thread_ = std::thread([this] { Loop(); });
    }
    WalSyncer(const WalSyncer&) = delete;
    WalSyncer& operator=(const WalSyncer&) = delete;
    ~WalSyncer() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        work_cv_.notify_one();
        thread_.join();
        ::close(fd_);
    }

    // Opens the WAL of `db_path` (it exists once the database has been written) and makes its
    // directory entry durable, which a data sync of the file alone would not.
    static Result<std::unique_ptr<WalSyncer>> Open(const std::string& db_path) {
        std::string wal = db_path + "-wal";
        int fd = ::open(wal.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            return MakeError(ErrorCode::kUnavailable, "open " + wal + ": " + std::strerror(errno));
        }
        auto syncer = std::make_unique<WalSyncer>(fd);
        std::string dir = db_path.find('/') == std::string::npos
                              ? std::string(".")
                              : db_path.substr(0, std::max<size_t>(db_path.rfind('/'), 1));
        int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
            int err = errno;
            if (dir_fd >= 0) {
                ::close(dir_fd);
            }
            return MakeError(ErrorCode::kUnavailable, "fsync " + dir + ": " + std::strerror(err));
        }
        ::close(dir_fd);
        return syncer;
    }

    // Asks for a sync of everything written so far; returns the ticket to wait for.
    uint64_t Request() {
        uint64_t ticket;
        {
            std::lock_guard lock(mu_);
            ticket = ++requested_;
        }
        work_cv_.notify_one();
        return ticket;
    }

    void Wait(uint64_t ticket) {
        std::unique_lock lock(mu_);
        done_cv_.wait(lock, [&] { return done_ >= ticket; });
    }

private:
    void Loop() {
        pthread_setname_np(pthread_self(), "cogs-store-sync");
        std::unique_lock lock(mu_);
        for (;;) {
            work_cv_.wait(lock, [&] { return stop_ || requested_ > done_; });
            if (requested_ == done_) {
                return;  // stopping, nothing left to sync
            }
            uint64_t target = requested_;  // one sync covers every request made before it starts
            lock.unlock();
            if (::fdatasync(fd_) != 0) {
                // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
                // is unknown, so nothing may be acknowledged. Restart and recover from the disk.
                std::fprintf(stderr, "FATAL: fdatasync of the store's WAL failed: %s\n",
                             std::strerror(errno));
                COGS_CHECK(false && "fdatasync of the WAL failed");
            }
            lock.lock();
            done_ = target;
            done_cv_.notify_all();
        }
    }

    const int fd_;
    std::mutex mu_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    uint64_t requested_ = 0;
    uint64_t done_ = 0;
    bool stop_ = false;
    std::thread thread_;
};

// ---------------------------------------------------------------------------------------------

class SqliteStore final : public Store {
public:
    SqliteStore(SqliteOptions options, internal::SqliteFaults faults, std::unique_ptr<LockFile> lock,
                std::unique_ptr<Db> writer, std::unique_ptr<WalSyncer> syncer)
        : options_(std::move(options)),
          faults_(std::move(faults)),
          lock_(std::move(lock)),
          writer_db_(std::move(writer)),
          syncer_(std::move(syncer)) {
        writer_ = std::thread([this] { WriterLoop(); });
    }

    ~SqliteStore() override {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_one();
        writer_.join();
        // Then members go in reverse order: connections close, then the lock file is released.
    }

    void Commit(WriteGroup group, CommitCallback done) override {
        {
            std::lock_guard lock(mu_);
            queue_.push_back(Item{std::move(group), std::move(done), nullptr});
        }
        cv_.notify_one();
    }

    void Flush() override {
        // From a commit callback this would wait for the very thread that runs it.
        COGS_CHECK(!OnWriterThread());
        RunOnWriter<int>([] { return 0; });
    }

    Result<Lease> AcquireLease(const std::string& owner, int64_t ttl_ms) override {
        if (owner.empty()) {
            return MakeError(ErrorCode::kInvalidArgument, "lease owner is empty");
        }
        return Write<Lease>([&]() -> Result<Lease> {
            Lease lease{owner, 0, WallNowMs() + ttl_ms};
            {
                Stmt q(*writer_db_, kNextToken);
                int rc = q.Step();
                if (rc != SQLITE_ROW) {
                    return MakeError(q.Fail(rc, "next token"));
                }
                lease.token = static_cast<uint64_t>(q.ColInt(0));
                if (auto st = q.Exec("next token"); !st) {
                    return MakeError(st.error());
                }
            }
            Stmt q(*writer_db_, kUpsertLease);
            q.Text(lease.owner).Int(ToDb(lease.token)).Int(lease.expires_ms);
            if (auto st = q.Exec("upsert lease"); !st) {
                return MakeError(st.error());
            }
            return lease;
        });
    }

    Status RenewLease(Lease& lease, int64_t ttl_ms) override {
        int64_t expires = WallNowMs() + ttl_ms;
        auto renewed = Write<bool>([&]() -> Result<bool> {
            Stmt q(*writer_db_, kRenewLease);
            q.Int(expires).Text(lease.owner).Int(ToDb(lease.token));
            if (auto st = q.Exec("renew lease"); !st) {
                return MakeError(st.error());
            }
            if (sqlite3_changes(writer_db_->raw()) == 0) {
                return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                         std::to_string(lease.token) + " was superseded");
            }
            return true;
        });
        if (!renewed) {
            return MakeError(renewed.error());
        }
        lease.expires_ms = expires;
        return Ok();
    }

    Result<std::vector<WorkflowRecord>> ClaimOrphaned(const Lease& lease, int limit) override {
        using Records = std::vector<WorkflowRecord>;
        if (limit < 1) {
            return MakeError(ErrorCode::kInvalidArgument, "claim limit must be at least 1");
        }
        return Write<Records>([&]() -> Result<Records> {
            if (auto st = CheckLeaseIsCurrent(lease); !st) {
                return MakeError(st.error());
            }
            std::vector<std::string> ids;
            {
                Stmt q(*writer_db_, kSelectOrphans);
                q.Int(ToDb(lease.token)).Int(WallNowMs()).Int(limit);
                int rc;
                while ((rc = q.Step()) == SQLITE_ROW) {
                    ids.push_back(q.ColText(0));
                }
                if (rc != SQLITE_DONE) {
                    return MakeError(q.Fail(rc, "select orphans"));
                }
            }
            Records out;
            out.reserve(ids.size());
            for (const std::string& id : ids) {
                Stmt claim_wf(*writer_db_, kClaimWorkflow);
                claim_wf.Int(ToDb(lease.token)).Text(lease.owner).Text(id);
                Stmt claim_steps(*writer_db_, kClaimSteps);
                claim_steps.Int(ToDb(lease.token)).Text(id);
                Status st = claim_wf.Exec("claim workflow");
                if (st) {
                    st = claim_steps.Exec("claim steps");
                }
                if (!st) {
                    return MakeError(st.error());
                }
                auto record = LoadWorkflow(*writer_db_, id, /*with_logs=*/false);
                if (!record) {
                    return MakeError(record.error());
                }
                out.push_back(std::move(*record));
            }
            return out;
        });
    }

    Result<WorkflowRecord> GetWorkflow(const std::string& id) override {
        return Read<WorkflowRecord>([&](Db& db) -> Result<WorkflowRecord> {
            // One read transaction, so that the workflow and its steps come from the same commit.
            if (auto st = db.Run(kBeginRead); !st) {
                return MakeError(st.error());
            }
            auto r = LoadWorkflow(db, id, /*with_logs=*/true);
            db.RollbackIfActive();
            return r;
        });
    }

    Result<std::vector<WorkflowSummary>> ListWorkflows(const ListFilter& filter) override {
        return Read<std::vector<WorkflowSummary>>([&](Db& db) { return store::ListWorkflows(db, filter); });
    }

    Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState() override {
        return Read<std::vector<std::pair<WorkflowState, int64_t>>>(
            [](Db& db) { return store::CountByState(db); });
    }

    Result<WorkflowRecord> ReviveFailed(const Lease& lease, const std::string& id) override {
        return Write<WorkflowRecord>([&]() -> Result<WorkflowRecord> {
            if (auto st = CheckLeaseIsCurrent(lease); !st) {
                return MakeError(st.error());
            }
            {
                Stmt q(*writer_db_, kWorkflowState);
                q.Text(id);
                int rc = q.Step();
                if (rc == SQLITE_DONE) {
                    return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
                }
                if (rc != SQLITE_ROW) {
                    return MakeError(q.Fail(rc, "workflow state"));
                }
                auto state = static_cast<WorkflowState>(q.ColInt(0));
                if (state != WorkflowState::kFailed) {
                    return MakeError(ErrorCode::kConflict, "workflow '" + id + "' is " +
                                                               std::string(ToString(state)) +
                                                               "; only a failed workflow can be revived");
                }
            }
            Stmt revive_wf(*writer_db_, kReviveWorkflow);
            revive_wf.Int(ToDb(lease.token)).Text(lease.owner).Int(WallNowMs()).Text(id);
            Stmt revive_steps(*writer_db_, kReviveSteps);
            revive_steps.Int(ToDb(lease.token)).Text(id);
            Status st = revive_wf.Exec("revive workflow");
            if (st) {
                st = revive_steps.Exec("revive steps");
            }
            if (!st) {
                return MakeError(st.error());
            }
            return LoadWorkflow(*writer_db_, id, /*with_logs=*/false);
        });
    }

    Status SaveDefinition(const DefinitionRecord& def) override {
        auto saved = Write<bool>([&]() -> Result<bool> {
            Stmt insert(*writer_db_, kInsertDefinition);
            insert.Text(def.type).Int(def.version).Text(def.text);
            if (auto st = insert.Exec("insert definition"); !st) {
                return MakeError(st.error());
            }
            if (sqlite3_changes(writer_db_->raw()) > 0) {
                return true;
            }
            Stmt q(*writer_db_, kDefinitionText);
            q.Text(def.type).Int(def.version);
            if (int rc = q.Step(); rc != SQLITE_ROW) {
                return MakeError(q.Fail(rc, "select definition"));
            }
            if (q.ColText(0) != def.text) {
                return MakeError(ErrorCode::kAlreadyExists, "definition " + def.type + " version " +
                                                                std::to_string(def.version) +
                                                                " exists with a different text");
            }
            return false;
        });
        return saved ? Ok() : MakeError(saved.error());
    }

    Result<std::vector<ResourceRecord>> LoadResources() override {
        return Read<std::vector<ResourceRecord>>([](Db& db) { return store::LoadResources(db); });
    }

    Result<std::vector<DefinitionRecord>> LoadDefinitions() override {
        return Read<std::vector<DefinitionRecord>>([](Db& db) { return store::LoadDefinitions(db); });
    }

    Result<std::vector<EventRecord>> ListEvents(const EventFilter& filter) override {
        return Read<std::vector<EventRecord>>([&](Db& db) { return store::ListEvents(db, filter); });
    }

    Result<int64_t> PruneEvents(int64_t older_than_ms, int64_t keep_at_most) override {
        if (keep_at_most < 0) {
            return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative");
        }
        // The age pass scans the table (no index on time_ms: it would cost every insert, and a
        // bounded table scanned from a maintenance timer costs little); the count pass walks the
        // primary key from the newest end.
        return Write<int64_t>([&]() -> Result<int64_t> {
            int64_t deleted = 0;
            {
                Stmt q(*writer_db_, kPruneEventsByAge);
                q.Int(older_than_ms);
                if (auto st = q.Exec("prune events by age"); !st) {
                    return MakeError(st.error());
                }
                deleted += sqlite3_changes64(writer_db_->raw());
            }
            Stmt q(*writer_db_, kPruneEventsByCount);
            q.Int(keep_at_most);
            if (auto st = q.Exec("prune events by count"); !st) {
                return MakeError(st.error());
            }
            deleted += sqlite3_changes64(writer_db_->raw());
            return deleted;
        });
    }

    StoreStats Stats() override {
        std::lock_guard lock(stats_mu_);
        return stats_;
    }

private:
    // A queued write: a group and its callback, or (if `task` is set) a synchronous operation
    // that runs alone on the writer connection, in queue order.
    struct Item {
        WriteGroup group;
        CommitCallback done;
        std::function<void()> task;
    };

    // What became of one group inside a batch.
    enum class Verdict {
        kOk,
        kRefused,  // fenced, duplicate or malformed: this group is undone, the batch goes on
        kFatal,    // the database failed: the whole transaction is rolled back
    };

    bool OnWriterThread() const {
        return writer_id_.load(std::memory_order_acquire) == std::this_thread::get_id();
    }

    // Runs `fn` on the writer thread after everything queued before it, and returns its value.
    // From a commit callback (on the writer thread, between transactions) it runs inline.
    template <typename T>
    T RunOnWriter(const std::function<T()>& fn) {
        if (OnWriterThread()) {
            return fn();
        }
        std::promise<T> promise;
        std::future<T> future = promise.get_future();
        {
            std::lock_guard lock(mu_);
            queue_.push_back(Item{{}, nullptr, [&] { promise.set_value(fn()); }});
        }
        cv_.notify_one();
        return future.get();
    }

    // Runs `body` in its own write transaction on the writer thread.
    template <typename T>
    Result<T> Write(const std::function<Result<T>()>& body) {
        return RunOnWriter<Result<T>>([&]() -> Result<T> {
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
            return r;
        });
    }

    // Runs `body` on a pooled read connection, on the calling thread.
    template <typename T>
    Result<T> Read(const std::function<Result<T>(Db&)>& body) {
        std::unique_ptr<Db> db;
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

    Result<std::unique_ptr<Db>> OpenReader() {
        auto db = Db::Open(options_.path, /*create=*/false);
        if (!db) {
            return db;
        }
        Status st = (*db)->Exec("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;");
        if (st) {
            st = (*db)->PrepareAll();
        }
        if (!st) {
            return MakeError(st.error());
        }
        return db;
    }

    Status CheckLeaseIsCurrent(const Lease& lease) {
        Stmt q(*writer_db_, kLeaseTokenOf);
        q.Text(lease.owner);
        int rc = q.Step();
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            return MakeError(q.Fail(rc, "lease token"));
        }
        if (rc == SQLITE_DONE || static_cast<uint64_t>(q.ColInt(0)) != lease.token) {
            return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                     std::to_string(lease.token) + " is not current");
        }
        return Ok();
    }

    // ---- the writer thread

    void WriterLoop() {
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
                    while (!queue_.empty() && !queue_.front().task &&
                           batch.size() < options_.max_batch_groups) {
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
            CommitBatch(batch);
            batch.clear();
        }
    }

    // One transaction for the whole batch. With a syncer the batch becomes pending: its callbacks
    // run once its WAL sync is done, after the next batch's COMMIT (the sync overlaps that work).
    void CommitBatch(std::vector<Item>& batch) {
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
    void Report(CommitReport& report, SteadyTime start) {
        if (options_.on_commit) {
            report.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
            options_.on_commit(report);
        }
    }

    // Waits until the pending batch is durable, then calls its callbacks.
    void FinishPending() {
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
    static void CallBack(std::vector<Item>& batch, std::vector<Status>& results) {
        for (size_t i = 0; i < batch.size(); ++i) {
            if (batch[i].done) {
                batch[i].done(std::move(results[i]));
            }
        }
    }

    // Applies one group inside the batch's transaction, all or nothing.
    Verdict ApplyGroup(const WriteGroup& g, Error* error) {
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

    Verdict ApplyWrites(const WriteGroup& g, Error* error) {
        auto fatal = [&](Stmt& q, int rc, std::string_view what) {
            *error = q.Fail(rc, what);
            return Verdict::kFatal;
        };
        if (g.create) {
            const WorkflowRecord& w = *g.create;
            {
                Stmt q(*writer_db_, kInsertWorkflow);
                q.Text(w.id).Text(w.type).Int(w.version).Text(w.input).Int(static_cast<int>(w.state));
                q.Text(w.reason).Int(w.cancel_requested ? 1 : 0).Int(w.created_ms).Int(w.updated_ms);
                q.Int(w.deadline_ms).Int(w.finished_ms).Text(w.trace).Int(ToDb(g.fence));
                q.Int(static_cast<int64_t>(w.steps.size())).Text(w.project).Text(w.resource_kind);
                q.Text(w.resource_id);
                int rc = q.Step();
                if (IsConstraint(rc)) {
                    *error = Error(ErrorCode::kAlreadyExists, "workflow '" + w.id + "' already exists");
                    return Verdict::kRefused;
                }
                if (rc != SQLITE_DONE) {
                    return fatal(q, rc, "insert workflow");
                }
            }
            std::vector<bool> seen(w.steps.size(), false);
            for (const StepRecord& s : w.steps) {
                if (s.index < 0 || static_cast<size_t>(s.index) >= w.steps.size() || seen[s.index]) {
                    *error = Error(ErrorCode::kInvalidArgument, "workflow '" + w.id + "' has step index " +
                                                                    std::to_string(s.index) + " twice or out of range");
                    return Verdict::kRefused;
                }
                seen[s.index] = true;
                if (s.state == StepState::kPending && s.attempts == 0 && s.log.empty()) {
                    continue;  // implied by step_count
                }
                Stmt q(*writer_db_, kInsertStep);
                q.Text(w.id).Int(s.index);
                BindStep(q, s).Text(s.log).Int(ToDb(g.fence));
                int rc = q.Step();
                if (IsConstraint(rc)) {
                    *error = Error(ErrorCode::kInvalidArgument, "workflow '" + w.id + "' has step index " +
                                                                    std::to_string(s.index) + " twice");
                    return Verdict::kRefused;
                }
                if (rc != SQLITE_DONE) {
                    return fatal(q, rc, "insert step");
                }
            }
        }
        for (const WorkflowUpdate& u : g.workflows) {
            Stmt q(*writer_db_, kUpdateWorkflow);
            q.Int(static_cast<int>(u.state)).Text(u.reason).Int(u.cancel_requested ? 1 : 0);
            q.Int(u.updated_ms).Int(u.finished_ms).Text(u.id).Int(ToDb(g.fence));
            if (int rc = q.Step(); rc != SQLITE_DONE) {
                return fatal(q, rc, "update workflow");
            }
            if (sqlite3_changes(writer_db_->raw()) == 0) {
                return Refuse(g.fence, u.id, std::nullopt, error);
            }
        }
        for (const StepUpdate& u : g.steps) {
            // Most transitions append nothing to the log; rewriting it with itself would cost a copy.
            bool append = !u.log_append.empty();
            Stmt q(*writer_db_, append ? kUpdateStep : kUpdateStepKeepLog);
            BindStep(q, u.step);
            if (append) {
                q.Text(u.log_append);
            }
            q.Text(u.workflow_id).Int(u.step.index).Int(ToDb(g.fence));
            if (int rc = q.Step(); rc != SQLITE_DONE) {
                return fatal(q, rc, "update step");
            }
            if (sqlite3_changes(writer_db_->raw()) != 0) {
                continue;
            }
            // No row matched: the step's first change (it was pending), or a stale token.
            Stmt ins(*writer_db_, kInsertStepFenced);
            ins.Text(u.workflow_id).Int(u.step.index);
            BindStep(ins, u.step).Text(u.log_append).Int(ToDb(g.fence));
            if (int rc = ins.Step(); rc != SQLITE_DONE) {
                return fatal(ins, rc, "insert step");
            }
            if (sqlite3_changes(writer_db_->raw()) == 0) {
                return Refuse(g.fence, u.workflow_id, u.step.index, error);
            }
        }
        for (const ResourceWrite& r : g.resources) {
            Stmt q(*writer_db_, r.erase ? kDeleteResource : kUpsertResource);
            q.Text(r.kind).Text(r.id);
            if (!r.erase) {
                q.Text(r.project).Text(r.body);
            }
            if (int rc = q.Step(); rc != SQLITE_DONE) {
                return fatal(q, rc, "write resource");
            }
        }
        for (const EventRecord& e : g.events) {
            Stmt q(*writer_db_, kInsertEvent);
            q.Int(e.time_ms).Text(e.project).Text(e.resource_kind).Text(e.resource_id).Text(e.workflow_id);
            q.Text(e.type).Text(e.message).Text(e.trace_id);
            if (int rc = q.Step(); rc != SQLITE_DONE) {
                return fatal(q, rc, "insert event");
            }
        }
        return Verdict::kOk;
    }

    // Binds state .. error: the mutable columns, in the order of COGS_STEP_COLUMNS after idx.
    static Stmt& BindStep(Stmt& q, const StepRecord& s) {
        q.Int(static_cast<int>(s.state)).Int(s.attempts).Int(s.comp_attempts).Int(s.applied ? 1 : 0);
        q.Int(s.next_at_ms).Int(s.started_ms).Int(s.finished_ms).Text(s.output).Text(s.error);
        return q;
    }

    // An update changed no row: the token is stale or the row does not exist. Both refuse the
    // group with kFenced (the contract has no per-group "not found"); the message tells which.
    Verdict Refuse(uint64_t fence, const std::string& id, std::optional<int> step, Error* error) {
        if (step) {
            // A pending step has no row: its workflow's token is the one that counts.
            Stmt has_row(*writer_db_, kStepFence);
            has_row.Text(id).Int(*step);
            if (has_row.Step() == SQLITE_DONE) {
                step.reset();
            }
        }
        Stmt q(*writer_db_, step ? kStepFence : kWorkflowFence);
        q.Text(id);
        if (step) {
            q.Int(*step);
        }
        std::string what = "workflow '" + id + "'";
        if (step) {
            what += " step " + std::to_string(*step);
        }
        int rc = q.Step();
        if (rc == SQLITE_ROW) {
            *error = Error(ErrorCode::kFenced, what + ": token " + std::to_string(fence) +
                                                   " is stale (current " + std::to_string(q.ColInt(0)) + ")");
        } else if (rc == SQLITE_DONE) {
            *error = Error(ErrorCode::kFenced, what + " does not exist");
        } else {
            *error = q.Fail(rc, "fence lookup");
            return Verdict::kFatal;
        }
        return Verdict::kRefused;
    }

    static constexpr size_t kMaxIdleReaders = 4;

    const SqliteOptions options_;
    const internal::SqliteFaults faults_;
    std::unique_ptr<LockFile> lock_;     // first of the resources, so released last
    std::unique_ptr<Db> writer_db_;      // the writer thread's, once it runs
    std::unique_ptr<WalSyncer> syncer_;  // null with synchronous=NORMAL: nothing is synced at commit

    std::mutex readers_mu_;
    std::vector<std::unique_ptr<Db>> idle_readers_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;

    std::mutex stats_mu_;
    StoreStats stats_;

    // The writer thread's: the last committed batch, waiting for its WAL sync.
    std::vector<Item> pending_;
    std::vector<Status> pending_results_;
    uint64_t pending_ticket_ = 0;
    CommitReport pending_report_;
    SteadyTime pending_start_{};
    std::atomic<std::thread::id> writer_id_{};
    std::thread writer_;  // last: it starts once every other member exists
};

Result<int64_t> QueryInt(Db& db, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db.raw(), sql, -1, &raw, nullptr);
    if (rc != SQLITE_OK) {
        return MakeError(SqliteError(db.raw(), rc, sql));
    }
    rc = sqlite3_step(raw);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(raw, 0) : 0;
    sqlite3_finalize(raw);
    return v;
}

// Sets up the writer connection: WAL, pragmas, migrations, expiry of earlier owners' leases.
Status Setup(Db& db, const SqliteOptions& options) {
    // journal_mode answers with the mode in force. Anything but WAL (e.g. a file system without
    // shared memory) would silently lose what the design relies on: readers beside the writer.
    {
        sqlite3_stmt* raw = nullptr;
        int rc = sqlite3_prepare_v2(db.raw(), "PRAGMA journal_mode = WAL", -1, &raw, nullptr);
        if (rc != SQLITE_OK) {
            return MakeError(SqliteError(db.raw(), rc, "journal_mode"));
        }
        std::string mode;
        if (sqlite3_step(raw) == SQLITE_ROW && sqlite3_column_text(raw, 0) != nullptr) {
            mode = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
        }
        sqlite3_finalize(raw);
        if (mode != "wal") {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "store " + options.path + ": cannot use WAL mode (got '" + mode + "')");
        }
    }
    std::string pragmas =
        options.synchronous_full ? "PRAGMA synchronous = FULL;" : "PRAGMA synchronous = NORMAL;";
    pragmas += "PRAGMA busy_timeout = 5000;";
    pragmas += "PRAGMA cache_size = -65536;";  // 64 MiB
    // Checkpoint every ~40 MiB of WAL instead of every 4 MiB: a page updated by many commits is
    // copied back to the database once per checkpoint, and checkpoints run on the writer thread.
    pragmas += "PRAGMA wal_autocheckpoint = 10000;";
    pragmas += "PRAGMA journal_size_limit = 67108864;";  // truncate the WAL back to 64 MiB after checkpoints
    if (auto st = db.Exec(pragmas); !st) {
        return st;
    }

    auto version = QueryInt(db, "PRAGMA user_version");
    if (!version) {
        return MakeError(version.error());
    }
    if (*version > static_cast<int64_t>(kMigrations.size())) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "store " + options.path + " has schema version " + std::to_string(*version) +
                             ", newer than this binary's " + std::to_string(kMigrations.size()));
    }
    for (auto v = static_cast<size_t>(*version); v < kMigrations.size(); ++v) {
        std::string sql = "BEGIN IMMEDIATE;";
        sql += kMigrations[v];
        sql += "PRAGMA user_version = " + std::to_string(v + 1) + "; COMMIT;";
        if (auto st = db.Exec(sql); !st) {
            db.RollbackIfActive();
            return MakeError(Error(st.error().code, "migration to schema version " + std::to_string(v + 1) +
                                                        " failed: " + st.error().message));
        }
    }
    // We hold the lock file, so whoever held these leases is gone: their work is claimable now.
    if (auto st = db.Exec("UPDATE leases SET expires_ms = 0"); !st) {
        return st;
    }
    return db.PrepareAll();
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
    return internal::OpenSqliteStoreWithFaults(options, {});
}

Result<std::unique_ptr<Store>> internal::OpenSqliteStoreWithFaults(const SqliteOptions& options,
                                                                   SqliteFaults faults) {
    if (options.path.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "store path is empty");
    }
    if (options.max_batch_groups < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "max_batch_groups must be at least 1");
    }
    static std::once_flag configured;
    std::call_once(configured, [] {
        // Memory statistics cost a global mutex on every allocation (about 6% of the writer's time
        // here) and nothing reads them. Only possible before SQLite initializes; a no-op after.
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    });
    auto lock = LockFile::Acquire(options.path);
    if (!lock) {
        return MakeError(lock.error());
    }
    auto db = Db::Open(options.path, /*create=*/true);
    if (!db) {
        return MakeError(db.error());
    }
    if (auto st = Setup(**db, options); !st) {
        return MakeError(st.error());
    }
    std::unique_ptr<WalSyncer> syncer;
    if (options.synchronous_full && options.pipelined_sync) {
        auto opened = WalSyncer::Open(options.path);
        if (!opened) {
            return MakeError(opened.error());
        }
        syncer = std::move(*opened);
        // From here on the syncer makes each commit durable before it is acknowledged.
        if (auto st = (*db)->Exec("PRAGMA synchronous = NORMAL"); !st) {
            return MakeError(st.error());
        }
    }
    return std::make_unique<SqliteStore>(options, std::move(faults), std::move(*lock), std::move(*db),
                                         std::move(syncer));
}

}  // namespace cogs::store
