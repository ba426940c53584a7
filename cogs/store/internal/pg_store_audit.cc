// The audit log on PostgreSQL: appended with the groups (pg_store_ops.cc), listed newest first on
// the reader pool, pruned by age and by count in short transactions (as the events).
#include <algorithm>
#include <limits>
#include <vector>

#include "cogs/store/internal/pg_store_impl.h"

namespace cogs::store::internal {

Result<std::vector<AuditRecord>> PgStore::ListAudit(const AuditFilter& f) {
    using Entries = std::vector<AuditRecord>;
    return Read<Entries>([&](pg::Conn& db, SteadyTime deadline) -> Result<Entries> {
        pg::Call c = PgCall(kPgAuditList);
        c.params.Text(f.token_id).Text(f.project).Text(f.resource_id).Int(f.since_ms);
        c.params.Int(f.before_seq > 0 ? f.before_seq : std::numeric_limits<int64_t>::max());
        c.params.Int(std::clamp(f.limit, 1, 1000));
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(c, deadline));
        Entries out;
        for (int i = 0; i < q.size(); ++i) {
            AuditRecord& a = out.emplace_back();
            a.seq = q.Int(i, 0);
            a.time_ms = q.Int(i, 1);
            a.token_id = q.Text(i, 2);
            a.project = q.Text(i, 3);
            a.role = q.Text(i, 4);
            a.method = q.Text(i, 5);
            a.path = q.Text(i, 6);
            a.resource_id = q.Text(i, 7);
            a.status = static_cast<int>(q.Int(i, 8));
            a.trace_id = q.Text(i, 9);
            a.peer = q.Text(i, 10);
        }
        return out;
    });
}

Result<int64_t> PgStore::PruneAudit(int64_t older_than_ms, int64_t keep_at_most) {
    if (keep_at_most < 0) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative");
    }
    constexpr int64_t kBatch = 5000;
    int64_t deleted = 0;
    for (PgSql sql : {kPgPruneAuditByAge, kPgPruneAuditByCount}) {
        for (;;) {
            COGS_ASSIGN_OR_RETURN(int64_t n,
                                  Write<int64_t>([&](pg::Conn& db, SteadyTime deadline) -> Result<int64_t> {
                                      pg::Call c = PgCall(sql);
                                      c.params.Int(sql == kPgPruneAuditByAge ? older_than_ms : keep_at_most);
                                      c.params.Int(kBatch);
                                      COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
                                      return rows.Changed();
                                  }));
            deleted += n;
            if (n < kBatch) {
                break;
            }
        }
    }
    return deleted;
}

}  // namespace cogs::store::internal
