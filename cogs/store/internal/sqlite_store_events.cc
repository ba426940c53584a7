// The event history: appended with the groups whose changes it reports, listed through the index
// its filter picks (see kEventsBy* in sqlite_store_sql.cc), pruned by age and by count.
#include <algorithm>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

SqliteStore::Verdict SqliteStore::ApplyEvents(const WriteGroup& g, Error* error) {
    for (const EventRecord& e : g.events) {
        Query q(*writer_db_, kInsertEvent);
        q->Int(e.time_ms).Text(e.project).Text(e.resource_kind).Text(e.resource_id).Text(e.workflow_id);
        q->Text(e.type).Text(e.message).Text(e.trace_id);
        if (Status st = q->Run(); !st) {
            return Fatal(st.error(), error);
        }
    }
    return Verdict::kOk;
}

Result<int64_t> SqliteStore::PruneEvents(int64_t older_than_ms, int64_t keep_at_most) {
    if (keep_at_most < 0) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative");
    }
    // A batch per transaction: a million expired rows in one DELETE would hold the write lock
    // (and every group commit behind it) for seconds. The age pass scans the table in seq order
    // (no index on time_ms: it would cost every insert), where the old rows are; the count pass
    // walks the primary key from the newest end.
    constexpr int64_t kBatch = 5000;
    int64_t deleted = 0;
    for (Sql sql : {kPruneEventsByAge, kPruneEventsByCount}) {
        for (;;) {
            COGS_ASSIGN_OR_RETURN(
                int64_t n, Write<int64_t>([&]() -> Result<int64_t> {
                    Query q(*writer_db_, sql);
                    q->Int(sql == kPruneEventsByAge ? older_than_ms : keep_at_most).Int(kBatch);
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

Result<std::vector<EventRecord>> ListEvents(Connection& db, const EventFilter& f) {
    Sql sql = !f.resource_kind.empty() && !f.resource_id.empty() ? kEventsByResource
              : !f.workflow_id.empty()                           ? kEventsByWorkflow
              : !f.project.empty()                               ? kEventsByProject
                                                                 : kEventsAll;
    Query q(db, sql);
    q->Text(f.project).Text(f.resource_kind).Text(f.resource_id).Text(f.workflow_id);
    q->Int(f.after_seq).Int(std::clamp(f.limit, 1, 1000));
    std::vector<EventRecord> out;
    COGS_TRY(q->ForEachRow([&] {
        EventRecord& e = out.emplace_back();
        e.seq = q->ColumnInt(0);
        e.time_ms = q->ColumnInt(1);
        e.project = q->ColumnText(2);
        e.resource_kind = q->ColumnText(3);
        e.resource_id = q->ColumnText(4);
        e.workflow_id = q->ColumnText(5);
        e.type = q->ColumnText(6);
        e.message = q->ColumnText(7);
        e.trace_id = q->ColumnText(8);
    }));
    return out;
}

}  // namespace cogs::store::internal
