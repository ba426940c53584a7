// The text of every statement the store runs after open, and the connection that prepares them.
// No SQL text is built after open: a statement is prepared once per connection, then reset and
// rebound per use.
#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

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
#define COGS_AUDIT_COLUMNS \
    "seq, time_ms, token_id, project, role, method, path, resource_id, status, trace_id, peer"
// Every audit query binds ?1 token_id, ?2 project, ?3 resource_id (each '' for any), ?4 since_ms,
// ?5 before_seq, ?6 limit; newest first. As for events, the index is named by the filter.
#define COGS_AUDIT_FILTER_TAIL                                                                        \
    " AND (?1 = '' OR token_id = ?1) AND (?2 = '' OR project = ?2) AND (?3 = '' OR resource_id = ?3)" \
    " AND time_ms >= ?4 AND seq < ?5 ORDER BY seq DESC LIMIT ?6"

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
        // Rewrites a row as it is: a write SQLite appends to the WAL, for ResumeWrites' probe.
        case kProbe: return "UPDATE counters SET value = value WHERE name = 'lease_token'";
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
        case kPruneEventsByAge:
            // At most ?2 rows: the scan walks seq order, where the oldest events are, and stops there.
            return "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time_ms < ?1 ORDER BY seq "
                   "LIMIT ?2)";
        case kPruneEventsByCount:
            // The (keep+1)-th newest and everything older, at most ?2 rows of them, oldest first;
            // nothing if there are no more than keep.
            return "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= (SELECT seq FROM "
                   "events ORDER BY seq DESC LIMIT 1 OFFSET ?1) ORDER BY seq LIMIT ?2)";
        case kCountEnded:
            // Through the partial index of ended workflows (its WHERE must be repeated to be usable).
            return "SELECT COUNT(*) FROM workflows INDEXED BY workflows_ended WHERE state IN (2, 3)";
        case kOldestEnded:
            return "SELECT id, finished_ms FROM workflows INDEXED BY workflows_ended WHERE state IN (2, 3) "
                   "ORDER BY finished_ms LIMIT ?1";
        case kDeleteSteps: return "DELETE FROM steps WHERE workflow_id = ?1";
        case kDeleteEnded: return "DELETE FROM workflows WHERE id = ?1 AND state IN (2, 3)";
        case kCountFailed:
            return "SELECT COUNT(*) FROM workflows INDEXED BY workflows_failed WHERE state = 4";
        case kOldestFailed:
            return "SELECT id, finished_ms FROM workflows INDEXED BY workflows_failed WHERE state = 4 "
                   "ORDER BY finished_ms LIMIT ?1";
        case kDeleteFailed: return "DELETE FROM workflows WHERE id = ?1 AND state = 4";
        case kPutChunk: return "INSERT OR REPLACE INTO image_chunks(blob, seq, data) VALUES(?1, ?2, ?3)";
        case kGetChunk: return "SELECT data FROM image_chunks WHERE blob = ?1 AND seq = ?2";
        case kDeleteChunks: return "DELETE FROM image_chunks WHERE blob = ?1";
        case kCountChunks: return "SELECT COUNT(*) FROM image_chunks WHERE blob = ?1";
        case kCountAllChunks: return "SELECT COUNT(*) FROM image_chunks";
        case kListBlobs: return "SELECT DISTINCT blob FROM image_chunks ORDER BY blob";
        case kInsertAudit:
            return "INSERT INTO audit(time_ms, token_id, project, role, method, path, resource_id, status, "
                   "trace_id, peer) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
        case kAuditByToken:
            return "SELECT " COGS_AUDIT_COLUMNS " FROM audit INDEXED BY audit_by_token WHERE token_id = ?1"
                   COGS_AUDIT_FILTER_TAIL;
        case kAuditByProject:
            return "SELECT " COGS_AUDIT_COLUMNS " FROM audit INDEXED BY audit_by_project WHERE project = ?2"
                   COGS_AUDIT_FILTER_TAIL;
        case kAuditByResource:
            return "SELECT " COGS_AUDIT_COLUMNS " FROM audit INDEXED BY audit_by_resource WHERE resource_id = ?3"
                   COGS_AUDIT_FILTER_TAIL;
        case kAuditAll:
            return "SELECT " COGS_AUDIT_COLUMNS " FROM audit WHERE 1" COGS_AUDIT_FILTER_TAIL;
        case kPruneAuditByAge:
            return "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE time_ms < ?1 ORDER BY seq "
                   "LIMIT ?2)";
        case kPruneAuditByCount:
            return "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= (SELECT seq FROM "
                   "audit ORDER BY seq DESC LIMIT 1 OFFSET ?1) ORDER BY seq LIMIT ?2)";
        case kNumSql: break;
    }
    return "";
}

// clang-format on

#undef COGS_SUMMARY_COLUMNS
#undef COGS_STEP_COLUMNS
#undef COGS_EVENT_COLUMNS
#undef COGS_EVENT_FILTER_TAIL
#undef COGS_AUDIT_COLUMNS
#undef COGS_AUDIT_FILTER_TAIL

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path,
                                                     const sqlite::Options& options) {
    auto c = std::make_unique<Connection>();
    COGS_ASSIGN_OR_RETURN(c->db_, sqlite::Db::Open(path, options));
    return c;
}

Status Connection::PrepareAll() {
    for (int i = 0; i < kNumSql; ++i) {
        COGS_ASSIGN_OR_RETURN(stmts_[i],
                              db_->Prepare(SqlText(static_cast<Sql>(i)), sqlite::Lifetime::kPersistent));
    }
    return Ok();
}

void Connection::RollbackIfActive() {
    if (db_->InTransaction()) {
        (void)Run(kRollback);
    }
}

}  // namespace cogs::store::internal
