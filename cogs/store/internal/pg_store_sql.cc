// The PostgreSQL backend's schema (versioned, as the SQLite one) and the text of every statement it
// prepares on each connection. The columns and their meanings are the SQLite backend's (see
// ../README.md); what differs is said where it differs.
#include "cogs/store/internal/pg_store_impl.h"

namespace cogs::store::internal {

// The database's clock, in ms: leases are written and judged by it, so that the replicas' own
// clocks (on several machines) never decide whether a lease has expired.
#define COGS_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
#define COGS_SUMMARY_COLUMNS \
    "id, type, version, state, reason, created_ms, finished_ms, project, trace, resource_kind, resource_id"
#define COGS_STEP_COLUMNS \
    "idx, state, attempts, comp_attempts, applied, next_at_ms, started_ms, finished_ms, output, error"
#define COGS_EVENT_COLUMNS \
    "seq, time_ms, project, resource_kind, resource_id, workflow_id, type, message, trace_id"
#define COGS_EVENT_FILTER_TAIL " AND seq > $5 ORDER BY seq LIMIT $6"
// A step's change: the row's own token fences an update; a step without a row (it was pending)
// gets its first row only if its workflow carries the token, and that workflow row is locked
// (FOR SHARE) so that a concurrent claim, which rewrites the workflow's and then its steps'
// tokens, either sees this row or makes this insert see the new token. The upsert tries both and
// answers one row: 1 if the step was written, 0 if the token is stale (or there is no such
// workflow or step). The update alone and the insert alone (each answering a row of 1 if it wrote)
// are what the upsert does when the row exists and when it does not: the writer's fast path sends
// them when it knows which (PgStepRows), since each costs the server about half the upsert.
#define COGS_STEP_UPDATE(LOG_SET)                                                         \
    "UPDATE steps SET state = $1, attempts = $2, comp_attempts = $3, applied = $4, "      \
    "next_at_ms = $5, started_ms = $6, finished_ms = $7, output = $8, error = $9" LOG_SET \
    " WHERE workflow_id = $10 AND idx = $11 AND fence = $12 RETURNING 1"
#define COGS_STEP_INSERT(LOG_VALUE, CONDITION)                        \
    "INSERT INTO steps(workflow_id, " COGS_STEP_COLUMNS               \
    ", log, fence) "                                                  \
    "SELECT $10, $11, $1, $2, $3, $4, $5, $6, $7, $8, $9, " LOG_VALUE \
    ", $12 FROM workflows w "                                         \
    "WHERE " CONDITION                                                \
    "w.id = $10 AND w.fence = $12 AND $11 < w.step_count "            \
    "FOR SHARE OF w ON CONFLICT DO NOTHING RETURNING 1"
#define COGS_STEP_UPSERT(LOG_SET, LOG_VALUE) \
    "WITH u AS (" COGS_STEP_UPDATE(LOG_SET) "), "                                               \
    "i AS (" COGS_STEP_INSERT(LOG_VALUE, "NOT EXISTS (SELECT 1 FROM u) AND ") ") "              \
    "SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM i)"

// clang-format off
const char* PgSqlText(PgSql s) {
    switch (s) {
        case kPgInsertWorkflow:
            return "INSERT INTO workflows(id, type, version, input, state, reason, cancel_requested, "
                   "created_ms, updated_ms, deadline_ms, finished_ms, trace, fence, owner, step_count, "
                   "project, resource_kind, resource_id) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                   "$11, $12, $13, COALESCE((SELECT owner FROM leases WHERE token = $13), ''), $14, $15, "
                   "$16, $17) ON CONFLICT (id) DO NOTHING";
        case kPgInsertStep:
            return "INSERT INTO steps(workflow_id, " COGS_STEP_COLUMNS ", log, fence) "
                   "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING";
        case kPgUpdateWorkflow:
            return "UPDATE workflows SET state = $1, reason = $2, cancel_requested = $3, updated_ms = $4, "
                   "finished_ms = $5 WHERE id = $6 AND fence = $7";
        case kPgUpsertStep: return COGS_STEP_UPSERT(", log = log || $13", "$13");
        case kPgUpsertStepKeepLog: return COGS_STEP_UPSERT("", "''");
        case kPgUpdateStep: return COGS_STEP_UPDATE(", log = log || $13");
        case kPgUpdateStepKeepLog: return COGS_STEP_UPDATE("");
        case kPgInsertStepFenced: return COGS_STEP_INSERT("$13", "");
        case kPgInsertStepFencedKeepLog: return COGS_STEP_INSERT("''", "");
        case kPgWorkflowFence: return "SELECT fence FROM workflows WHERE id = $1";
        case kPgStepFence: return "SELECT fence FROM steps WHERE workflow_id = $1 AND idx = $2";
        case kPgUpsertResource:
            return "INSERT INTO resources(kind, id, project, body) VALUES($1, $2, $3, $4) "
                   "ON CONFLICT (kind, id) DO UPDATE SET project = excluded.project, body = excluded.body";
        case kPgDeleteResource: return "DELETE FROM resources WHERE kind = $1 AND id = $2";
        case kPgInsertEvent:
            return "INSERT INTO events(time_ms, project, resource_kind, resource_id, workflow_id, type, "
                   "message, trace_id) VALUES($1, $2, $3, $4, $5, $6, $7, $8)";
        case kPgMarkCommit:
            // The batch's mark, in its own transaction: after a lost COMMIT reply, the row says
            // whether the batch committed.
            return "INSERT INTO commit_marks(writer, batch, at_ms) VALUES($1, $2, " COGS_NOW_MS ") "
                   "ON CONFLICT (writer) DO UPDATE SET batch = excluded.batch, at_ms = excluded.at_ms";
        case kPgCommitMark: return "SELECT batch FROM commit_marks WHERE writer = $1";
        case kPgNextToken:
            return "UPDATE counters SET value = value + 1 WHERE name = 'lease_token' RETURNING value";
        case kPgUpsertLease:
            return "INSERT INTO leases(owner, token, expires_ms) VALUES($1, $2, " COGS_NOW_MS " + $3) "
                   "ON CONFLICT (owner) DO UPDATE SET token = excluded.token, expires_ms = excluded.expires_ms "
                   "RETURNING expires_ms";
        case kPgRenewLease:
            return "UPDATE leases SET expires_ms = " COGS_NOW_MS " + $1 WHERE owner = $2 AND token = $3 "
                   "RETURNING expires_ms";
        case kPgLeaseTokenOf: return "SELECT token FROM leases WHERE owner = $1 FOR SHARE";
        case kPgClaimOrphans:
            // Every orphan up to the limit, locked (another claimer skips them), restamped at once.
            return "WITH o AS (SELECT id FROM workflows WHERE state <= 1 AND fence < $1 AND NOT EXISTS "
                   "(SELECT 1 FROM leases WHERE leases.token = workflows.fence AND leases.expires_ms > "
                   COGS_NOW_MS ") LIMIT $3 FOR UPDATE SKIP LOCKED) "
                   "UPDATE workflows w SET fence = $1, owner = $2 FROM o WHERE w.id = o.id RETURNING w.id";
        case kPgClaimSteps: return "UPDATE steps SET fence = $1 WHERE workflow_id = ANY($2::text[])";
        case kPgSelectWorkflow:
            return "SELECT id, type, version, input, state, reason, cancel_requested, created_ms, "
                   "updated_ms, deadline_ms, finished_ms, trace, fence, step_count, project, resource_kind, "
                   "resource_id FROM workflows WHERE id = $1";
        case kPgSelectSteps:
            return "SELECT " COGS_STEP_COLUMNS ", '' FROM steps WHERE workflow_id = $1 ORDER BY idx";
        case kPgSelectStepsWithLog:
            return "SELECT " COGS_STEP_COLUMNS ", log FROM steps WHERE workflow_id = $1 ORDER BY idx";
        case kPgList:
            // One statement for every filter: each is optional ('' or -1: any); the planner picks
            // the index from the values of each execution (custom plans for a handful of shapes).
            return "SELECT " COGS_SUMMARY_COLUMNS " FROM workflows WHERE ($1 = '' OR project = $1) "
                   "AND ($2::int < 0 OR state = $2::int) AND ($3 = '' OR type = $3) AND id > $4 "
                   "ORDER BY id LIMIT $5";
        case kPgCountByState: return "SELECT state, COUNT(*) FROM workflows GROUP BY state";
        case kPgWorkflowState: return "SELECT state FROM workflows WHERE id = $1 FOR UPDATE";
        case kPgReviveWorkflow:
            return "UPDATE workflows SET state = 1, fence = $1, owner = $2, updated_ms = $3, finished_ms = 0 "
                   "WHERE id = $4 AND state = 4";
        case kPgReviveSteps:
            return "UPDATE steps SET fence = $1, "
                   "comp_attempts = CASE WHEN state = 8 THEN 0 ELSE comp_attempts END, "
                   "state = CASE WHEN state = 8 THEN 6 ELSE state END WHERE workflow_id = $2";
        case kPgInsertDefinition:
            return "INSERT INTO definitions(type, version, text) VALUES($1, $2, $3) "
                   "ON CONFLICT (type, version) DO NOTHING";
        case kPgDefinitionText: return "SELECT text FROM definitions WHERE type = $1 AND version = $2";
        case kPgLoadDefinitions: return "SELECT type, version, text FROM definitions ORDER BY type, version";
        case kPgLoadResources:
            return "SELECT kind, id, project, body FROM resources ORDER BY kind COLLATE \"C\", id COLLATE \"C\"";
        case kPgEventsByResource:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events WHERE resource_kind = $2 AND resource_id = $3 "
                   "AND ($1 = '' OR project = $1) AND ($4 = '' OR workflow_id = $4)" COGS_EVENT_FILTER_TAIL;
        case kPgEventsByWorkflow:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events WHERE workflow_id = $4 AND ($1 = '' OR project = $1) "
                   "AND ($2 = '' OR resource_kind = $2) AND ($3 = '' OR resource_id = $3)" COGS_EVENT_FILTER_TAIL;
        case kPgEventsByProject:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events WHERE project = $1 AND ($2 = '' OR resource_kind = $2) "
                   "AND ($3 = '' OR resource_id = $3) AND ($4 = '' OR workflow_id = $4)" COGS_EVENT_FILTER_TAIL;
        case kPgEventsAll:
            return "SELECT " COGS_EVENT_COLUMNS " FROM events WHERE ($1 = '' OR project = $1) "
                   "AND ($2 = '' OR resource_kind = $2) AND ($3 = '' OR resource_id = $3) "
                   "AND ($4 = '' OR workflow_id = $4)" COGS_EVENT_FILTER_TAIL;
        case kPgPruneEventsByAge:
            return "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time_ms < $1 ORDER BY seq "
                   "LIMIT $2)";
        case kPgPruneEventsByCount:
            return "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= (SELECT seq FROM "
                   "events ORDER BY seq DESC LIMIT 1 OFFSET $1) ORDER BY seq LIMIT $2)";
        case kPgCountEnded: return "SELECT COUNT(*) FROM workflows WHERE state IN (2, 3)";
        case kPgOldestEnded:
            return "SELECT id, finished_ms FROM workflows WHERE state IN (2, 3) ORDER BY finished_ms LIMIT $1";
        case kPgCountFailed: return "SELECT COUNT(*) FROM workflows WHERE state = 4";
        case kPgOldestFailed:
            return "SELECT id, finished_ms FROM workflows WHERE state = 4 ORDER BY finished_ms LIMIT $1";
        case kPgDeleteSteps: return "DELETE FROM steps WHERE workflow_id = ANY($1::text[])";
        case kPgDeleteEnded: return "DELETE FROM workflows WHERE id = ANY($1::text[]) AND state IN (2, 3)";
        case kPgDeleteFailed: return "DELETE FROM workflows WHERE id = ANY($1::text[]) AND state = 4";
        case kPgLeaderFence:
            // Every write transaction of a leader's store starts here: the share lock holds a
            // takeover (an UPDATE of the row) back until the transaction ends.
            return "SELECT 1 FROM leader WHERE id = 1 AND token = $1 FOR SHARE";
        // Parameters travel as text: a chunk goes in and out as hex (pg_store_chunks.cc).
        case kPgPutChunk:
            return "INSERT INTO image_chunks(blob, seq, data) VALUES($1, $2, decode($3, 'hex')) "
                   "ON CONFLICT (blob, seq) DO UPDATE SET data = EXCLUDED.data";
        case kPgGetChunk: return "SELECT encode(data, 'hex') FROM image_chunks WHERE blob = $1 AND seq = $2";
        case kPgDeleteChunks: return "DELETE FROM image_chunks WHERE blob = $1";
        case kPgCountChunks: return "SELECT COUNT(*) FROM image_chunks WHERE blob = $1";
        case kPgCountAllChunks: return "SELECT COUNT(*) FROM image_chunks";
        case kPgListBlobs: return "SELECT DISTINCT blob FROM image_chunks ORDER BY blob";
        case kPgInsertAudit:
            return "INSERT INTO audit(time_ms, token_id, project, role, method, path, resource_id, status, "
                   "trace_id, peer) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        case kPgAuditList:
            // One statement for every filter (custom plans pick the index per execution, as kPgList).
            return "SELECT seq, time_ms, token_id, project, role, method, path, resource_id, status, trace_id, "
                   "peer FROM audit WHERE ($1 = '' OR token_id = $1) AND ($2 = '' OR project = $2) "
                   "AND ($3 = '' OR resource_id = $3) AND time_ms >= $4 AND seq < $5 ORDER BY seq DESC LIMIT $6";
        case kPgPruneAuditByAge:
            return "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE time_ms < $1 ORDER BY seq "
                   "LIMIT $2)";
        case kPgPruneAuditByCount:
            return "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= (SELECT seq FROM "
                   "audit ORDER BY seq DESC LIMIT 1 OFFSET $1) ORDER BY seq LIMIT $2)";
        case kPgNumSql: break;
    }
    return "";
}

// Each entry migrates version i - 1 to i (the table schema_version); never edit a released one.
// Version 1 is the SQLite schema at its version 5, in PostgreSQL's types, plus commit_marks.
const PgMigration kPgMigrations[] = {
    {1, R"sql(
    CREATE TABLE workflows(
        id TEXT COLLATE "C" PRIMARY KEY,
        type TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        input TEXT NOT NULL,
        state INTEGER NOT NULL,
        reason TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        deadline_ms BIGINT NOT NULL,
        finished_ms BIGINT NOT NULL,
        trace TEXT NOT NULL,
        fence BIGINT NOT NULL,
        owner TEXT NOT NULL,
        step_count INTEGER NOT NULL,
        project TEXT COLLATE "C" NOT NULL,
        resource_kind TEXT NOT NULL,
        resource_id TEXT NOT NULL);
    CREATE INDEX workflows_by_state ON workflows(state, id);
    CREATE INDEX workflows_by_type ON workflows(type, state, id);
    CREATE INDEX workflows_by_project ON workflows(project, id);
    CREATE INDEX workflows_active ON workflows(fence) WHERE state <= 1;
    CREATE INDEX workflows_ended ON workflows(finished_ms) WHERE state IN (2, 3);
    CREATE INDEX workflows_failed ON workflows(finished_ms) WHERE state = 4;

    -- Step rows are rewritten at every transition: room in each page keeps those updates HOT.
    CREATE TABLE steps(
        workflow_id TEXT COLLATE "C" NOT NULL,
        idx INTEGER NOT NULL,
        state INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        comp_attempts INTEGER NOT NULL,
        applied INTEGER NOT NULL,
        next_at_ms BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        finished_ms BIGINT NOT NULL,
        output TEXT NOT NULL,
        error TEXT NOT NULL,
        log TEXT NOT NULL,
        fence BIGINT NOT NULL,
        PRIMARY KEY(workflow_id, idx)) WITH (fillfactor = 70);

    CREATE TABLE leases(
        owner TEXT PRIMARY KEY,
        token BIGINT NOT NULL UNIQUE,
        expires_ms BIGINT NOT NULL);
    CREATE TABLE counters(name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO counters(name, value) VALUES('lease_token', 0);

    CREATE TABLE definitions(
        type TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY(type, version));

    CREATE TABLE resources(
        kind TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        project TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY(kind, id));

    -- A sequence never hands a number out twice, so a seq is never reused (as AUTOINCREMENT).
    CREATE TABLE events(
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time_ms BIGINT NOT NULL,
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

    -- The last batch each writer committed: what tells a commit whose reply was lost from one
    -- that never happened (see pg_store.cc, "in doubt").
    CREATE TABLE commit_marks(
        writer TEXT PRIMARY KEY,
        batch BIGINT NOT NULL,
        at_ms BIGINT NOT NULL);
    )sql"},
    // 2: replicas and the leader's lease (cogs/store/leadership.h).
    {2, R"sql(
    CREATE TABLE leader(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        replica TEXT NOT NULL,
        address TEXT NOT NULL,
        token BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        since_ms BIGINT NOT NULL);
    INSERT INTO leader VALUES(1, '', '', 0, 0, 0);
    CREATE TABLE replicas(
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        seen_ms BIGINT NOT NULL);
    )sql"},
    // 3: image content in chunks (as the SQLite schema's version 6).
    {3, R"sql(
    CREATE TABLE image_chunks(
        blob TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY(blob, seq));
    )sql"},
    // 4: the audit log (as the SQLite schema's version 7).
    {4, R"sql(
    CREATE TABLE audit(
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time_ms BIGINT NOT NULL,
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
const size_t kPgMigrationCount = sizeof(kPgMigrations) / sizeof(kPgMigrations[0]);

// clang-format on

#undef COGS_NOW_MS
#undef COGS_SUMMARY_COLUMNS
#undef COGS_STEP_COLUMNS
#undef COGS_EVENT_COLUMNS
#undef COGS_EVENT_FILTER_TAIL
#undef COGS_STEP_UPSERT

}  // namespace cogs::store::internal
