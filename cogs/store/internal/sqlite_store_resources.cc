// The control plane's desired state (resources, written with the groups, unfenced: their one
// writer is the API process that owns the store) and the insert-only workflow definitions.
#include <string>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

SqliteStore::Verdict SqliteStore::ApplyResources(const WriteGroup& g, Error* error) {
    for (const ResourceWrite& r : g.resources) {
        Query q(*writer_db_, r.erase ? kDeleteResource : kUpsertResource);
        q->Text(r.kind).Text(r.id);
        if (!r.erase) {
            q->Text(r.project).Text(r.body);
        }
        if (Status st = q->Run(); !st) {
            return Fatal(st.error(), error);
        }
    }
    return Verdict::kOk;
}

Status SqliteStore::SaveDefinition(const DefinitionRecord& def) {
    auto saved = Write<bool>([&]() -> Result<bool> {
        Query insert(*writer_db_, kInsertDefinition);
        insert->Text(def.type).Int(def.version).Text(def.text);
        COGS_TRY(insert->Run());
        if (writer_db_->db().Changes() > 0) {
            return true;
        }
        Query q(*writer_db_, kDefinitionText);
        q->Text(def.type).Int(def.version);
        COGS_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) {
            return MakeError(ErrorCode::kInternal, "definition " + def.type + " version " +
                                                       std::to_string(def.version) +
                                                       " neither inserted nor found");
        }
        if (q->ColumnText(0) != def.text) {
            return MakeError(ErrorCode::kAlreadyExists, "definition " + def.type + " version " +
                                                            std::to_string(def.version) +
                                                            " exists with a different text");
        }
        return false;
    });
    return saved ? Ok() : MakeError(saved.error());
}

Result<std::vector<ResourceRecord>> LoadResources(Connection& db) {
    std::vector<ResourceRecord> out;
    Query q(db, kLoadResources);
    COGS_TRY(q->ForEachRow([&] {
        out.push_back(ResourceRecord{q->ColumnText(0), q->ColumnText(1), q->ColumnText(2), q->ColumnText(3)});
    }));
    return out;
}

Result<std::vector<DefinitionRecord>> LoadDefinitions(Connection& db) {
    std::vector<DefinitionRecord> out;
    Query q(db, kLoadDefinitions);
    COGS_TRY(q->ForEachRow([&] {
        out.push_back(
            DefinitionRecord{q->ColumnText(0), static_cast<int>(q->ColumnInt(1)), q->ColumnText(2)});
    }));
    return out;
}

}  // namespace cogs::store::internal
