// The audit log: appended with the groups that carry it, listed newest first through the index its
// filter picks (see kAudit* in sqlite_store_sql.cc), pruned by age and by count as events are.
#include <algorithm>
#include <limits>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

SqliteStore::Verdict SqliteStore::ApplyAudit(const WriteGroup& g, Error* error) {
    for (const AuditRecord& a : g.audit) {
        Query q(*writer_db_, kInsertAudit);
        q->Int(a.time_ms).Text(a.token_id).Text(a.project).Text(a.role).Text(a.method).Text(a.path);
        q->Text(a.resource_id).Int(a.status).Text(a.trace_id).Text(a.peer);
        if (Status st = q->Run(); !st) {
            return Fatal(st.error(), error);
        }
    }
    return Verdict::kOk;
}

Result<int64_t> SqliteStore::PruneAudit(int64_t older_than_ms, int64_t keep_at_most) {
    if (keep_at_most < 0) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative");
    }
    constexpr int64_t kBatch = 5000;  // one short transaction each (see PruneEvents)
    int64_t deleted = 0;
    for (Sql sql : {kPruneAuditByAge, kPruneAuditByCount}) {
        for (;;) {
            COGS_ASSIGN_OR_RETURN(
                int64_t n, Write<int64_t>([&]() -> Result<int64_t> {
                    Query q(*writer_db_, sql);
                    q->Int(sql == kPruneAuditByAge ? older_than_ms : keep_at_most).Int(kBatch);
                    COGS_TRY(q->Run());
                    return writer_db_->db().Changes();
                }));
            deleted += n;
            if (n < kBatch) {
                break;
            }
        }
    }
    return deleted;
}

Result<std::vector<AuditRecord>> ListAudit(Connection& db, const AuditFilter& f) {
    Sql sql = !f.token_id.empty()      ? kAuditByToken
              : !f.resource_id.empty() ? kAuditByResource
              : !f.project.empty()     ? kAuditByProject
                                       : kAuditAll;
    Query q(db, sql);
    q->Text(f.token_id).Text(f.project).Text(f.resource_id).Int(f.since_ms);
    q->Int(f.before_seq > 0 ? f.before_seq : std::numeric_limits<int64_t>::max());
    q->Int(std::clamp(f.limit, 1, 1000));
    std::vector<AuditRecord> out;
    COGS_TRY(q->ForEachRow([&] {
        AuditRecord& a = out.emplace_back();
        a.seq = q->ColumnInt(0);
        a.time_ms = q->ColumnInt(1);
        a.token_id = q->ColumnText(2);
        a.project = q->ColumnText(3);
        a.role = q->ColumnText(4);
        a.method = q->ColumnText(5);
        a.path = q->ColumnText(6);
        a.resource_id = q->ColumnText(7);
        a.status = static_cast<int>(q->ColumnInt(8));
        a.trace_id = q->ColumnText(9);
        a.peer = q->ColumnText(10);
    }));
    return out;
}

Result<std::vector<AuditRecord>> SqliteStore::ListAudit(const AuditFilter& filter) {
    return Read<std::vector<AuditRecord>>([&](Connection& db) { return internal::ListAudit(db, filter); });
}

}  // namespace cogs::store::internal
