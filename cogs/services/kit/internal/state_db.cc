#include "cogs/services/kit/internal/state_db.h"

#include <sqlite3.h>

namespace cogs::services::kit::internal {
namespace {

// The records table is generic: a domain names its tables (e.g. "ports") and stores JSON per id, so
// adding a domain never changes this schema.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    key        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,              -- do | undo
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
)sql";

std::string Text(sqlite3_stmt* stmt, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt, col)) : std::string();
}

std::string_view View(sqlite3_stmt* stmt, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
    return p ? std::string_view(p, sqlite3_column_bytes(stmt, col)) : std::string_view();
}

void Bind(sqlite3_stmt* stmt, int i, std::string_view s) {
    sqlite3_bind_text(stmt, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
}

}  // namespace

Error StateDb::Fail(const std::string& what) const {
    return Error(ErrorCode::kUnavailable, "state " + path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Status StateDb::Exec(const char* sql, const char* what) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
        return MakeError(Fail(what));
    }
    return Ok();
}

Status StateDb::Prepare(const char* sql, sqlite3_stmt** stmt) {
    if (sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr) != SQLITE_OK) {
        return MakeError(Fail("prepare"));
    }
    return Ok();
}

Result<std::unique_ptr<StateDb>> StateDb::Open(const std::string& path) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    std::unique_ptr<StateDb> db(new StateDb(raw, path));
    if (rc != SQLITE_OK) {
        return MakeError(db->Fail("open"));
    }
    sqlite3_busy_timeout(raw, 5000);
    // WAL + NORMAL: a commit survives a crash of the process, not of the machine; see service.h.
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", kSchema}) {
        if (auto s = db->Exec(sql, "set up"); !s) {
            return MakeError(s.error());
        }
    }
    sqlite3_stmt* stmt = nullptr;
    if (auto s = db->Prepare("SELECT max(version) FROM schema_version", &stmt); !s) {
        return MakeError(s.error());
    }
    const bool row = sqlite3_step(stmt) == SQLITE_ROW;
    const bool empty = !row || sqlite3_column_type(stmt, 0) == SQLITE_NULL;
    const int64_t version = empty ? 0 : sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (version > kSchemaVersion) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "state " + path + ": schema version " + std::to_string(version) +
                             " is newer than this program's (" + std::to_string(kSchemaVersion) + ")");
    }
    if (empty) {
        const std::string sql = "INSERT INTO schema_version(version) VALUES(" + std::to_string(kSchemaVersion) + ")";
        if (auto s = db->Exec(sql.c_str(), "set schema version"); !s) {
            return MakeError(s.error());
        }
    }
    for (auto [sql, out] : {
             std::pair{"INSERT INTO ledger(key, seq, action, kind, outcome, output, code, at_us, done_at_us) "
                       "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &db->insert_ledger_},
             std::pair{"INSERT OR REPLACE INTO records(tbl, id, json) VALUES(?, ?, ?)", &db->put_record_},
             std::pair{"DELETE FROM records WHERE tbl = ? AND id = ?", &db->erase_record_},
         }) {
        if (auto s = db->Prepare(sql, out); !s) {
            return MakeError(s.error());
        }
    }
    return db;
}

StateDb::~StateDb() {
    sqlite3_finalize(insert_ledger_);
    sqlite3_finalize(put_record_);
    sqlite3_finalize(erase_record_);
    sqlite3_close(db_);
}

Result<std::vector<LedgerRow>> StateDb::LoadLedger() {
    sqlite3_stmt* stmt = nullptr;
    if (auto s = Prepare("SELECT key, seq, action, kind, outcome, output, code, at_us, done_at_us "
                         "FROM ledger ORDER BY seq",
                         &stmt);
        !s) {
        return MakeError(s.error());
    }
    std::vector<LedgerRow> out;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        LedgerRow r;
        r.key = Text(stmt, 0);
        r.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
        r.action = Text(stmt, 2);
        r.kind = Text(stmt, 3);
        r.outcome = Text(stmt, 4);
        r.output = Text(stmt, 5);
        r.code = Text(stmt, 6);
        r.at_us = sqlite3_column_int64(stmt, 7);
        r.done_at_us = sqlite3_column_int64(stmt, 8);
        out.push_back(std::move(r));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        return MakeError(Fail("load ledger"));
    }
    return out;
}

Status StateDb::ForEachRecord(
    const std::function<Status(std::string_view table, std::string_view id, std::string_view json)>& fn) {
    sqlite3_stmt* stmt = nullptr;
    if (auto s = Prepare("SELECT tbl, id, json FROM records ORDER BY tbl, id", &stmt); !s) {
        return s;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (auto s = fn(View(stmt, 0), View(stmt, 1), View(stmt, 2)); !s) {
            sqlite3_finalize(stmt);
            return s;
        }
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        return MakeError(Fail("load records"));
    }
    return Ok();
}

Status StateDb::Write(const std::vector<LedgerRow>& rows, const std::vector<Tx::Write>& writes) {
    if (rows.empty() && writes.empty()) {
        return Ok();
    }
    if (auto s = Exec("BEGIN", "begin"); !s) {
        return s;
    }
    auto step = [this](sqlite3_stmt* stmt, const char* what) -> Status {
        const int rc = sqlite3_step(stmt);
        Status s = Ok();
        if (rc != SQLITE_DONE) {
            s = MakeError(Fail(what));
        }
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        return s;
    };
    Status s = Ok();
    for (const auto& r : rows) {
        Bind(insert_ledger_, 1, r.key);
        sqlite3_bind_int64(insert_ledger_, 2, static_cast<sqlite3_int64>(r.seq));
        Bind(insert_ledger_, 3, r.action);
        Bind(insert_ledger_, 4, r.kind);
        Bind(insert_ledger_, 5, r.outcome);
        Bind(insert_ledger_, 6, r.output);
        Bind(insert_ledger_, 7, r.code);
        sqlite3_bind_int64(insert_ledger_, 8, r.at_us);
        sqlite3_bind_int64(insert_ledger_, 9, r.done_at_us);
        if (s = step(insert_ledger_, "insert ledger"); !s) {
            break;
        }
    }
    for (size_t i = 0; s && i < writes.size(); ++i) {
        const auto& w = writes[i];
        sqlite3_stmt* stmt = w.erase ? erase_record_ : put_record_;
        Bind(stmt, 1, w.table);
        Bind(stmt, 2, w.id);
        if (!w.erase) {
            Bind(stmt, 3, w.json);
        }
        s = step(stmt, w.erase ? "erase record" : "put record");
    }
    if (s) {
        s = Exec("COMMIT", "commit");
    }
    if (!s) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return s;
}

}  // namespace cogs::services::kit::internal
