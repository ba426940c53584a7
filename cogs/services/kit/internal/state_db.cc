#include "cogs/services/kit/internal/state_db.h"

namespace cogs::services::kit::internal {
namespace {

// The records table is generic: a domain names its tables (e.g. "ports") and stores JSON per id, so
// adding a domain never changes this schema. The ledger's layout is internal/ledger_table.h's.
// Never edit a released step: append one.
constexpr sqlite::Migration kStateSteps[] = {
    {1, R"sql(
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
)sql" COGS_KIT_LEDGER_CREATE_HEAD R"sql(    kind       TEXT NOT NULL,              -- do | undo
    outcome    TEXT NOT NULL,              -- applied | rejected | compensated | tombstone
    output     TEXT NOT NULL,              -- the answered JSON, or the refusal message
    code       TEXT NOT NULL DEFAULT '',   -- rejected: the error code
    at_us      INTEGER NOT NULL,           -- wall clock, microseconds since the epoch
    done_at_us INTEGER NOT NULL DEFAULT 0  -- a long action: when it ends
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    tbl  TEXT NOT NULL,
    id   TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
)sql"},
};

constexpr sqlite::Schema kState{"state", kStateSteps, "schema_version"};

}  // namespace

Result<std::unique_ptr<StateDb>> StateDb::Open(const std::string& path) {
    // WAL + NORMAL: a commit survives a crash of the process, not of the machine; see service.h.
    sqlite::Options options;
    options.wal = true;
    options.synchronous = sqlite::Synchronous::kNormal;
    options.busy_timeout_ms = 5000;
    std::unique_ptr<StateDb> s(new StateDb());
    COGS_ASSIGN_OR_RETURN(s->db_, sqlite::Db::Open(path, options));
    COGS_TRY(sqlite::Migrate(*s->db_, kState));
    COGS_ASSIGN_OR_RETURN(s->ledger_, LedgerTable::Prepare(*s->db_, LedgerTable::OnConflict::kReplace));
    COGS_ASSIGN_OR_RETURN(s->put_record_, s->db_->Prepare("INSERT OR REPLACE INTO records(tbl, id, json) "
                                                          "VALUES(?1, ?2, ?3)",
                                                          sqlite::Lifetime::kPersistent));
    COGS_ASSIGN_OR_RETURN(s->erase_record_, s->db_->Prepare("DELETE FROM records WHERE tbl = ?1 AND id = ?2",
                                                            sqlite::Lifetime::kPersistent));
    return s;
}

Status StateDb::ForEachRecord(
    const std::function<Status(std::string_view table, std::string_view id, std::string_view json)>& fn) {
    COGS_ASSIGN_OR_RETURN(sqlite::Stmt q, db_->Prepare("SELECT tbl, id, json FROM records ORDER BY tbl, id"));
    return q.ForEachRow([&] { return fn(q.ColumnView(0), q.ColumnView(1), q.ColumnView(2)); });
}

Status StateDb::Write(const std::vector<LedgerEntry>& entries, const std::vector<Tx::Write>& writes,
                      const std::vector<std::string>& pruned) {
    if (entries.empty() && writes.empty() && pruned.empty()) {
        return Ok();
    }
    return db_->Transact([&]() -> Status {
        for (const LedgerEntry& e : entries) {
            COGS_TRY(ledger_->Insert(e));
        }
        for (const Tx::Write& w : writes) {
            sqlite::Stmt& q = w.erase ? erase_record_ : put_record_;
            q.Text(w.table).Text(w.id);
            if (!w.erase) {
                q.Text(w.json);
            }
            COGS_TRY(q.Run());
        }
        for (const std::string& key : pruned) {
            COGS_TRY(ledger_->Erase(key));
        }
        return Ok();
    });
}

}  // namespace cogs::services::kit::internal
