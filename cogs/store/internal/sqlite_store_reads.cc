// Reads: each on a connection of the read pool, on the caller's thread (WAL lets them read the
// last committed state while the writer commits), and the workflow listings they serve.
#include <algorithm>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

Result<WorkflowRecord> SqliteStore::GetWorkflow(const std::string& id) {
    return Read<WorkflowRecord>([&](Connection& db) -> Result<WorkflowRecord> {
        // One read transaction, so that the workflow and its steps come from the same commit.
        COGS_TRY(db.Run(kBeginRead));
        auto r = LoadWorkflow(db, id, /*with_logs=*/true);
        db.RollbackIfActive();
        return r;
    });
}

Result<std::vector<WorkflowSummary>> SqliteStore::ListWorkflows(const ListFilter& filter) {
    return Read<std::vector<WorkflowSummary>>(
        [&](Connection& db) { return internal::ListWorkflows(db, filter); });
}

Result<std::vector<std::pair<WorkflowState, int64_t>>> SqliteStore::CountByState() {
    return Read<std::vector<std::pair<WorkflowState, int64_t>>>(
        [](Connection& db) { return internal::CountByState(db); });
}

Result<std::vector<ResourceRecord>> SqliteStore::LoadResources() {
    return Read<std::vector<ResourceRecord>>([](Connection& db) { return internal::LoadResources(db); });
}

Result<std::vector<DefinitionRecord>> SqliteStore::LoadDefinitions() {
    return Read<std::vector<DefinitionRecord>>([](Connection& db) { return internal::LoadDefinitions(db); });
}

Result<std::vector<EventRecord>> SqliteStore::ListEvents(const EventFilter& filter) {
    return Read<std::vector<EventRecord>>([&](Connection& db) { return internal::ListEvents(db, filter); });
}

Result<std::vector<WorkflowSummary>> ListWorkflows(Connection& db, const ListFilter& f) {
    bool by_type = !f.type.empty();
    Query q(db, !f.project.empty() ? kListByProject
                : f.state          ? (by_type ? kListByStateType : kListByState)
                                   : (by_type ? kListByType : kListAll));
    if (!f.project.empty()) {
        q->Text(f.project).Int(f.state ? static_cast<int>(*f.state) : -1).Text(f.type);
    } else {
        if (by_type) {
            q->Text(f.type);
        }
        if (f.state) {
            q->Int(static_cast<int>(*f.state));
        }
    }
    q->Text(f.after_id).Int(std::clamp(f.limit, 1, 1000));
    std::vector<WorkflowSummary> out;
    COGS_TRY(q->ForEachRow([&] {
        WorkflowSummary& s = out.emplace_back();
        s.id = q->ColumnText(0);
        s.type = q->ColumnText(1);
        s.version = static_cast<int>(q->ColumnInt(2));
        s.state = static_cast<WorkflowState>(q->ColumnInt(3));
        s.reason = q->ColumnText(4);
        s.created_ms = q->ColumnInt(5);
        s.finished_ms = q->ColumnInt(6);
        s.project = q->ColumnText(7);
        s.trace = q->ColumnText(8);
        s.resource_kind = q->ColumnText(9);
        s.resource_id = q->ColumnText(10);
    }));
    return out;
}

Result<std::vector<std::pair<WorkflowState, int64_t>>> CountByState(Connection& db) {
    // Every state, zeros included, in enum order.
    std::vector<std::pair<WorkflowState, int64_t>> out;
    for (auto s : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                   WorkflowState::kRolledBack, WorkflowState::kFailed}) {
        out.emplace_back(s, 0);
    }
    Query q(db, kCountByState);
    COGS_TRY(q->ForEachRow([&] {
        int64_t state = q->ColumnInt(0);
        if (state >= 0 && static_cast<size_t>(state) < out.size()) {
            out[static_cast<size_t>(state)].second = q->ColumnInt(1);
        }
    }));
    return out;
}

}  // namespace cogs::store::internal
