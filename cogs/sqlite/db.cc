#include "cogs/sqlite/db.h"

#include <sqlite3.h>

#include <cerrno>
#include <mutex>
#include <utility>

#include "cogs/base/check.h"

namespace cogs::sqlite {
namespace {

ErrorCode CodeOf(int rc, int sys_errno) {
    // A full disk shows as SQLITE_FULL where SQLite writes the file, but as an I/O error where it
    // grows the shared-memory index (SQLITE_IOERR_SHMSIZE); the system's errno tells them apart.
    if ((rc & 0xff) == SQLITE_FULL || ((rc & 0xff) == SQLITE_IOERR && sys_errno == ENOSPC)) {
        return ErrorCode::kNoSpace;
    }
    switch (rc) {
        case SQLITE_CONSTRAINT_PRIMARYKEY:
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_ROWID: return ErrorCode::kAlreadyExists;
        default: break;
    }
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
        case SQLITE_PROTOCOL:
        case SQLITE_NOMEM: return ErrorCode::kUnavailable;
        case SQLITE_CONSTRAINT: return ErrorCode::kFailedPrecondition;
        default: return ErrorCode::kInternal;  // SQLITE_CORRUPT, SQLITE_NOTADB, bad SQL, misuse
    }
}

// "sqlite PATH: WHAT: SQLite's message". `what` is cut to one short line: SQL text can be long.
Error Failure(int rc, sqlite3* db, const std::string& path, std::string_view what, const char* detail) {
    std::string w(what.substr(0, what.find('\n')));
    if (w.size() > 60) {
        w.resize(57);
        w += "...";
    }
    return Error(CodeOf(rc, db != nullptr ? sqlite3_system_errno(db) : 0),
                 "sqlite " + path + ": " + w + ": " + (detail != nullptr ? detail : sqlite3_errstr(rc)));
}

// SQL text (a raw string) often starts with a line break: name it by its first line of text.
std::string_view FirstLine(std::string_view sql) {
    size_t start = sql.find_first_not_of(" \t\n");
    return start == std::string_view::npos ? sql : sql.substr(start);
}

}  // namespace

// ---- Stmt

Stmt::Stmt(Stmt&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      next_(other.next_),
      stepped_(other.stepped_) {}

Stmt& Stmt::operator=(Stmt&& other) noexcept {
    if (this != &other) {
        sqlite3_finalize(stmt_);
        db_ = std::exchange(other.db_, nullptr);
        stmt_ = std::exchange(other.stmt_, nullptr);
        next_ = other.next_;
        stepped_ = other.stepped_;
    }
    return *this;
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Error Stmt::Fail(int rc) const {
    sqlite3* db = sqlite3_db_handle(stmt_);
    return Failure(rc, db, db_->path_, sqlite3_sql(stmt_), sqlite3_errmsg(db));
}

Stmt& Stmt::Bind(int pos, int64_t value) {
    [[maybe_unused]] int rc = sqlite3_bind_int64(stmt_, pos, value);
    COGS_DCHECK(rc == SQLITE_OK);
    next_ = pos;
    return *this;
}

Stmt& Stmt::Bind(int pos, std::string_view text) {
    // A null pointer would bind NULL; an empty view means ''.
    const char* data = text.data() != nullptr ? text.data() : "";
    [[maybe_unused]] int rc =
        sqlite3_bind_text(stmt_, pos, data, static_cast<int>(text.size()), SQLITE_STATIC);
    COGS_DCHECK(rc == SQLITE_OK);
    next_ = pos;
    return *this;
}

Stmt& Stmt::BindNull(int pos) {
    [[maybe_unused]] int rc = sqlite3_bind_null(stmt_, pos);
    COGS_DCHECK(rc == SQLITE_OK);
    next_ = pos;
    return *this;
}

Stmt& Stmt::Bind(std::string_view name, int64_t value) { return Bind(ParamIndex(name), value); }
Stmt& Stmt::Bind(std::string_view name, std::string_view text) { return Bind(ParamIndex(name), text); }
Stmt& Stmt::Int(int64_t value) { return Bind(next_ + 1, value); }
Stmt& Stmt::Text(std::string_view text) { return Bind(next_ + 1, text); }

Stmt& Stmt::Blob(std::string_view bytes) {
    const char* data = bytes.data() != nullptr ? bytes.data() : "";
    [[maybe_unused]] int rc =
        sqlite3_bind_blob(stmt_, next_ + 1, data, static_cast<int>(bytes.size()), SQLITE_STATIC);
    COGS_DCHECK(rc == SQLITE_OK);
    ++next_;
    return *this;
}

int Stmt::ParamIndex(std::string_view name) const {
    const int i = sqlite3_bind_parameter_index(stmt_, std::string(name).c_str());
    COGS_CHECK(i > 0 && "no such parameter in the statement");
    return i;
}

Result<bool> Stmt::Step() {
    stepped_ = true;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    return MakeError(Fail(rc));
}

Status Stmt::Run() {
    stepped_ = true;
    const int rc = sqlite3_step(stmt_);
    Status s = Ok();
    if (rc == SQLITE_ROW) {
        s = MakeError(ErrorCode::kInternal,
                      "sqlite " + db_->path_ + ": " + sqlite3_sql(stmt_) + ": returned a row");
    } else if (rc != SQLITE_DONE) {
        s = MakeError(Fail(rc));
    }
    Reset();
    return s;
}

void Stmt::Reset() {
    // A kept statement is reset after Run and again at the end of its Use: once is enough.
    if (stepped_) {
        sqlite3_reset(stmt_);
        stepped_ = false;
    }
    next_ = 0;
}

int64_t Stmt::ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Stmt::ColumnText(int col) const { return std::string(ColumnView(col)); }

std::string_view Stmt::ColumnView(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    if (p == nullptr) {
        return {};
    }
    return std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

bool Stmt::ColumnIsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

// ---- Db

Result<std::unique_ptr<Db>> Db::Open(std::string path, const Options& options) {
    static std::once_flag configured;
    std::call_once(configured, [] {
        // Memory statistics cost a global mutex on every allocation (about 6% of the store's
        // writer time) and nothing reads them. Only possible before SQLite initializes, which is
        // why it is done here, before the process's first open: nothing else calls SQLite.
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    });
    sqlite3* raw = nullptr;
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (options.create ? SQLITE_OPEN_CREATE : 0);
    const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    std::unique_ptr<Db> db(new Db(std::move(path), raw));  // closes `raw` on every return below
    if (rc != SQLITE_OK) {
        return MakeError(db->Fail(rc, "open"));
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, options.busy_timeout_ms);
    if (options.wal) {
        // journal_mode answers with the mode in force, which is not WAL where WAL is impossible.
        COGS_ASSIGN_OR_RETURN(Stmt q, db->Prepare("PRAGMA journal_mode = WAL"));
        COGS_ASSIGN_OR_RETURN(bool row, q.Step());
        const std::string mode = row ? q.ColumnText(0) : std::string();
        if (mode != "wal") {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "sqlite " + db->path() + ": cannot use WAL mode (got '" + mode + "')");
        }
    }
    std::string pragmas;
    if (options.synchronous) {
        static constexpr const char* kLevels[] = {"OFF", "NORMAL", "FULL"};
        pragmas += "PRAGMA synchronous = ";
        pragmas += kLevels[static_cast<int>(*options.synchronous)];
        pragmas += ";";
    }
    if (options.query_only) {
        pragmas += "PRAGMA query_only = ON;";
    }
    for (const std::string& p : options.pragmas) {
        pragmas += "PRAGMA " + p + ";";
    }
    if (!pragmas.empty()) {
        COGS_TRY(db->Exec(pragmas));
    }
    return db;
}

Db::~Db() { sqlite3_close_v2(db_); }

Error Db::Fail(int rc, std::string_view what) const {
    return Failure(rc, db_, path_, what, db_ != nullptr ? sqlite3_errmsg(db_) : nullptr);
}

Status Db::Exec(std::string_view sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &err);
    if (rc == SQLITE_OK) {
        return Ok();
    }
    Error e = Failure(rc, db_, path_, FirstLine(sql), err);
    sqlite3_free(err);
    return MakeError(std::move(e));
}

Result<Stmt> Db::Prepare(std::string_view sql, Lifetime lifetime) {
    sqlite3_stmt* raw = nullptr;
    const unsigned flags = lifetime == Lifetime::kPersistent ? SQLITE_PREPARE_PERSISTENT : 0;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &raw, nullptr);
    if (rc != SQLITE_OK) {
        return MakeError(Fail(rc, "prepare " + std::string(FirstLine(sql))));
    }
    return Stmt(this, raw);
}

Result<int64_t> Db::QueryInt(std::string_view sql) {
    COGS_ASSIGN_OR_RETURN(Stmt q, Prepare(sql));
    COGS_ASSIGN_OR_RETURN(bool row, q.Step());
    return row ? q.ColumnInt(0) : 0;
}

Status Db::Transact(const std::function<Status()>& body) {
    COGS_TRY(Exec("BEGIN IMMEDIATE"));
    Status s = body();
    if (s) {
        s = Exec("COMMIT");
    }
    RollbackIfActive();
    return s;
}

bool Db::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

void Db::RollbackIfActive() {
    if (InTransaction()) {
        // Called on paths that already fail; a failed ROLLBACK adds nothing a caller could act on.
        (void)Exec("ROLLBACK");
    }
}

int64_t Db::Changes() const { return sqlite3_changes64(db_); }

// ---- Versioned schema

Result<int64_t> SchemaVersion(Db& db, const Schema& schema) {
    if (schema.version_table.empty()) {
        return db.QueryInt("PRAGMA user_version");
    }
    COGS_ASSIGN_OR_RETURN(Stmt exists,
                          db.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"));
    exists.Bind(1, schema.version_table);
    COGS_ASSIGN_OR_RETURN(bool found, exists.Step());
    if (!found) {
        return 0;
    }
    return db.QueryInt("SELECT max(version) FROM " + std::string(schema.version_table));
}

Status Migrate(Db& db, const Schema& schema) {
    for (size_t i = 0; i < schema.steps.size(); ++i) {
        COGS_CHECK(schema.steps[i].version == static_cast<int>(i) + 1);
    }
    const auto newest = static_cast<int64_t>(schema.steps.size());
    const std::string what = std::string(schema.name) + " " + db.path();
    auto newer = [&](int64_t version) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         what + " has schema version " + std::to_string(version) +
                             ", newer than this program's " + std::to_string(newest));
    };
    COGS_ASSIGN_OR_RETURN(int64_t version, SchemaVersion(db, schema));
    if (version > newest) {
        return newer(version);
    }
    while (version < newest) {
        const Migration& step = schema.steps[static_cast<size_t>(version)];
        std::string record;
        if (schema.version_table.empty()) {
            record = "PRAGMA user_version = " + std::to_string(step.version);
        } else {
            const std::string table(schema.version_table);
            record = "CREATE TABLE IF NOT EXISTS " + table + "(version INTEGER NOT NULL); INSERT INTO " +
                     table + "(version) VALUES(" + std::to_string(step.version) + ")";
        }
        int64_t seen = version;
        Status s = db.Transact([&]() -> Status {
            // Read again under the write lock: another connection may have migrated meanwhile.
            COGS_ASSIGN_OR_RETURN(seen, SchemaVersion(db, schema));
            if (seen != version) {
                return Ok();
            }
            COGS_TRY(db.Exec(step.sql));
            COGS_TRY(db.Exec(record));
            seen = step.version;
            return Ok();
        });
        if (!s) {
            Error e = std::move(s).error();
            e.message = what + ": migration to schema version " + std::to_string(step.version) +
                        " failed: " + e.message;
            return MakeError(std::move(e));
        }
        if (seen > newest) {
            return newer(seen);
        }
        version = seen;
    }
    return Ok();
}

}  // namespace cogs::sqlite
