#include "cogs/services/kit/internal/ledger_table.h"

#include "cogs/wire/answer.h"

namespace cogs::services::kit::internal {
namespace {

Outcome OutcomeFrom(std::string_view s) {
    return s == "rejected"      ? Outcome::kRejected
           : s == "compensated" ? Outcome::kCompensated
           : s == "tombstone"   ? Outcome::kTombstone
                                : Outcome::kApplied;
}

}  // namespace

Result<std::unique_ptr<LedgerTable>> LedgerTable::Prepare(sqlite::Db& db, OnConflict on_conflict) {
    const std::string sql =
        std::string(on_conflict == OnConflict::kReplace ? "INSERT OR REPLACE" : "INSERT") +
        " INTO ledger(key, seq, action, kind, outcome, output, code, at_us, done_at_us) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    COGS_ASSIGN_OR_RETURN(sqlite::Stmt insert, db.Prepare(sql, sqlite::Lifetime::kPersistent));
    COGS_ASSIGN_OR_RETURN(sqlite::Stmt erase,
                          db.Prepare("DELETE FROM ledger WHERE key = ?1", sqlite::Lifetime::kPersistent));
    return std::unique_ptr<LedgerTable>(new LedgerTable(db, std::move(insert), std::move(erase)));
}

Result<std::vector<LedgerEntry>> LedgerTable::LoadAll() {
    COGS_ASSIGN_OR_RETURN(sqlite::Stmt q,
                          db_.Prepare("SELECT key, seq, action, kind, outcome, output, code, at_us, "
                                      "done_at_us FROM ledger ORDER BY seq"));
    std::vector<LedgerEntry> out;
    COGS_TRY(q.ForEachRow([&] {
        LedgerEntry& e = out.emplace_back();
        e.key = q.ColumnText(0);
        e.seq = static_cast<uint64_t>(q.ColumnInt(1));
        e.action = q.ColumnText(2);
        e.kind = q.ColumnView(3) == "undo" ? CallKind::kUndo : CallKind::kDo;
        e.outcome = OutcomeFrom(q.ColumnView(4));
        e.output = q.ColumnText(5);
        if (const std::string_view code = q.ColumnView(6); !code.empty()) {
            e.code = wire::ParseErrorCode(code).value_or(ErrorCode::kFailedPrecondition);
        }
        e.at_us = q.ColumnInt(7);
        e.done_at_us = q.ColumnInt(8);
    }));
    return out;
}

Status LedgerTable::Insert(const LedgerEntry& e) {
    insert_.Text(e.key).Int(static_cast<int64_t>(e.seq)).Text(e.action).Text(ToString(e.kind));
    insert_.Text(ToString(e.outcome)).Text(e.output).Text(e.code ? ToString(*e.code) : std::string_view());
    insert_.Int(e.at_us).Int(e.done_at_us);
    return insert_.Run();
}

Status LedgerTable::Erase(const std::string& key) {
    erase_.Text(key);
    return erase_.Run();
}

}  // namespace cogs::services::kit::internal
