#include "cogs/services/sim/internal/ledger_db.h"

#include <sqlite3.h>

namespace cogs::services::sim::internal {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS ledger (
    key        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,     -- do | undo
    outcome    TEXT NOT NULL,     -- applied | rejected | compensated | tombstone
    output     TEXT NOT NULL,     -- the answered JSON, or the refusal message
    at_us      INTEGER NOT NULL,  -- wall clock, microseconds since the epoch
    done_at_us INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
)sql";

std::string Text(sqlite3_stmt* stmt, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt, col)) : std::string();
}

}  // namespace

Error LedgerDb::Fail(const std::string& what) const {
    return Error(ErrorCode::kUnavailable, "ledger " + path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Result<std::unique_ptr<LedgerDb>> LedgerDb::Open(const std::string& path) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    std::unique_ptr<LedgerDb> db(new LedgerDb(raw, path));
    if (rc != SQLITE_OK) {
        return MakeError(db->Fail("open"));
    }
    sqlite3_busy_timeout(raw, 5000);
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", kSchema}) {
        if (sqlite3_exec(raw, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
            return MakeError(db->Fail("set up"));
        }
    }
    rc = sqlite3_prepare_v2(raw,
                            "INSERT INTO ledger(key, seq, action, kind, outcome, output, at_us, done_at_us) "
                            "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                            -1, &db->insert_, nullptr);
    if (rc != SQLITE_OK) {
        return MakeError(db->Fail("prepare"));
    }
    return db;
}

LedgerDb::~LedgerDb() {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
}

Result<std::vector<LedgerEntry>> LedgerDb::LoadAll() {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(
            db_, "SELECT key, seq, action, kind, outcome, output, at_us, done_at_us FROM ledger ORDER BY seq",
            -1, &stmt, nullptr) != SQLITE_OK) {
        return MakeError(Fail("load"));
    }
    std::vector<LedgerEntry> out;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        LedgerEntry e;
        e.key = Text(stmt, 0);
        e.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
        e.action = Text(stmt, 2);
        e.kind = Text(stmt, 3) == "undo" ? CallKind::kUndo : CallKind::kDo;
        const std::string outcome = Text(stmt, 4);
        e.outcome = outcome == "rejected"      ? Outcome::kRejected
                    : outcome == "compensated" ? Outcome::kCompensated
                    : outcome == "tombstone"   ? Outcome::kTombstone
                                               : Outcome::kApplied;
        e.output = Text(stmt, 5);
        e.at_us = sqlite3_column_int64(stmt, 6);
        e.done_at_us = sqlite3_column_int64(stmt, 7);
        out.push_back(std::move(e));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        return MakeError(Fail("load"));
    }
    return out;
}

Status LedgerDb::Write(const std::vector<LedgerEntry>& entries) {
    if (entries.empty()) {
        return Ok();
    }
    if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
        return MakeError(Fail("begin"));
    }
    for (const auto& e : entries) {
        const std::string_view kind = ToString(e.kind);
        const std::string_view outcome = ToString(e.outcome);
        sqlite3_reset(insert_);
        sqlite3_bind_text(insert_, 1, e.key.data(), static_cast<int>(e.key.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert_, 2, static_cast<sqlite3_int64>(e.seq));
        sqlite3_bind_text(insert_, 3, e.action.data(), static_cast<int>(e.action.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert_, 4, kind.data(), static_cast<int>(kind.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert_, 5, outcome.data(), static_cast<int>(outcome.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert_, 6, e.output.data(), static_cast<int>(e.output.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert_, 7, e.at_us);
        sqlite3_bind_int64(insert_, 8, e.done_at_us);
        if (sqlite3_step(insert_) != SQLITE_DONE) {
            Error err = Fail("insert");
            sqlite3_reset(insert_);
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            return MakeError(std::move(err));
        }
    }
    sqlite3_reset(insert_);
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
        Error err = Fail("commit");
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return MakeError(std::move(err));
    }
    return Ok();
}

}  // namespace cogs::services::sim::internal
