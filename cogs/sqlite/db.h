// cogs::sqlite — the one adapter of SQLite: a connection (Db), prepared statements (Stmt),
// versioned schema migrations (Migrate) and the mapping of SQLite's result codes to cogs::Error.
// No other file of cogs includes <sqlite3.h>; sqlite3 types appear here only as opaque private
// pointers.
//
// Errors. Every failure is an Error whose message names the file, what was being done and
// SQLite's own words: "sqlite /var/lib/cogs/store.db: INSERT INTO workflows(id, …: UNIQUE
// constraint failed: workflows.id". The code says what a caller can do about it:
//
//   SQLITE_BUSY, SQLITE_LOCKED          kUnavailable, retryable (another connection holds the lock
//                                       longer than the busy timeout)
//   SQLITE_FULL, an SQLITE_IOERR_*      kNoSpace, retryable (the disk is full: nothing was written)
//   whose errno is ENOSPC
//   SQLITE_IOERR, SQLITE_CANTOPEN,      kUnavailable, retryable (the disk, not the data)
//   SQLITE_PROTOCOL, SQLITE_NOMEM
//   SQLITE_CONSTRAINT_PRIMARYKEY,       kAlreadyExists (a row with that key is there)
//   _UNIQUE, _ROWID
//   any other SQLITE_CONSTRAINT         kFailedPrecondition (NOT NULL, CHECK, FOREIGN KEY, ...)
//   SQLITE_CORRUPT, SQLITE_NOTADB       kInternal (the file is not what it should be)
//   anything else                       kInternal (a bug: bad SQL, misuse)
//
// Threading: a Db and its Stmts belong to one thread at a time (the connection is opened without
// SQLite's own mutex). Several Dbs on one file, in one or several threads, are fine: SQLite's
// locks (and, with WAL, snapshots) arbitrate between them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cogs/base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace cogs::sqlite {

class Db;

// A prepared statement, finalized when it goes. Movable, not copyable; a default-constructed Stmt
// is empty (only good to be assigned to).
//
// Binding: by position (1-based, as in "?1"), by name (":key", "@key", "$key" as written in the
// SQL), or in order with Int() / Text(), each binding the parameter after the one bound last (from
// 1 after Reset). Text is bound without a copy: the bytes must stay alive until the statement has
// been stepped for the last time before the next Reset or rebind. Bindings stay across Reset.
// A Stmt may outlive its Db (the connection closes once its last statement is finalized), but
// must not be used after it.
class Stmt {
public:
    Stmt() = default;
    Stmt(Stmt&& other) noexcept;
    Stmt& operator=(Stmt&& other) noexcept;
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt();

    Stmt& Bind(int pos, int64_t value);
    Stmt& Bind(int pos, std::string_view text);  // an empty view binds '' (never NULL)
    Stmt& BindNull(int pos);
    Stmt& Bind(std::string_view name, int64_t value);
    Stmt& Bind(std::string_view name, std::string_view text);
    Stmt& Int(int64_t value);
    Stmt& Text(std::string_view text);
    // Binds bytes as a BLOB (any bytes, NULs included; read back with ColumnView), bound without a
    // copy like Text.
    Stmt& Blob(std::string_view bytes);
    // The position of a named parameter; a name the SQL does not have is a bug (fatal check).
    int ParamIndex(std::string_view name) const;

    // One step: true with a row to read, false once done; an error as mapped above. After false or
    // an error, Reset before stepping again.
    Result<bool> Step();
    // Steps a statement that returns no row to its end and resets it (rows are an error).
    Status Run();
    // Steps to the end, calling `row()` on each row (it reads the columns). A `row` that returns a
    // Status stops the walk at its first error, which is returned.
    template <typename Fn>
    Status ForEachRow(Fn&& row) {
        while (true) {
            COGS_ASSIGN_OR_RETURN(bool more, Step());
            if (!more) {
                return Ok();
            }
            if constexpr (std::is_void_v<std::invoke_result_t<Fn&>>) {
                row();
            } else {
                COGS_TRY(row());
            }
        }
    }
    // Back to the start, ready to step again with the same bindings; the next Int()/Text() binds 1.
    void Reset();

    // Columns of the current row (0-based). Text is a copy, or a view valid until the next
    // Step/Reset; NULL reads as 0 or "".
    int64_t ColumnInt(int col) const;
    std::string ColumnText(int col) const;
    std::string_view ColumnView(int col) const;
    bool ColumnIsNull(int col) const;

private:
    friend class Db;
    Stmt(Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
    Error Fail(int rc) const;

    Db* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
    int next_ = 0;          // the position Int()/Text() bound last
    bool stepped_ = false;  // since the last reset: Reset has work to do
};

// One use of a statement kept for reuse: resets it at the end of the scope, so that a statement
// stepped part of the way (a lookup of one row) never keeps a read open on its connection.
class Use {
public:
    explicit Use(Stmt& stmt) : stmt_(stmt) {}
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    ~Use() { stmt_.Reset(); }
    Stmt* operator->() { return &stmt_; }
    Stmt& operator*() { return stmt_; }

private:
    Stmt& stmt_;
};

enum class Synchronous { kOff, kNormal, kFull };

struct Options {
    bool create = true;  // create the file if it does not exist
    // PRAGMA journal_mode = WAL. A file system that cannot do WAL (no shared memory) makes Open fail
    // with kFailedPrecondition rather than silently run another journal.
    bool wal = false;
    std::optional<Synchronous> synchronous;  // unset: SQLite's default (FULL)
    int busy_timeout_ms = 0;                 // how long a write waits for another connection's lock
    bool query_only = false;                 // a read-only connection: any write fails
    std::vector<std::string> pragmas;        // more, run in order after the above: "cache_size = -65536"
};

// Whether Prepare keeps the statement for many uses (prepared once at open, reset and rebound per
// use) or for one.
enum class Lifetime { kOnce, kPersistent };

class Db {
public:
    // Opens (or creates) `path` with `options`. kUnavailable if the file cannot be opened.
    static Result<std::unique_ptr<Db>> Open(std::string path, const Options& options);
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    ~Db();  // statements left over keep the connection until they are finalized

    const std::string& path() const { return path_; }

    // Runs SQL text of one or more statements without parameters (pragmas, DDL, BEGIN ...).
    Status Exec(std::string_view sql);
    Result<Stmt> Prepare(std::string_view sql, Lifetime lifetime = Lifetime::kOnce);
    // The first column of the first row of `sql` (0 if there is none): "PRAGMA user_version".
    Result<int64_t> QueryInt(std::string_view sql);

    // Runs `body` inside BEGIN IMMEDIATE ... COMMIT: all of it or nothing. A failed body or COMMIT
    // rolls back and is returned.
    Status Transact(const std::function<Status()>& body);
    // Whether a transaction is open on this connection; RollbackIfActive ends one that is.
    bool InTransaction() const;
    void RollbackIfActive();

    // Rows changed by the last INSERT/UPDATE/DELETE.
    int64_t Changes() const;

private:
    friend class Stmt;
    Db(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
    Error Fail(int rc, std::string_view what) const;

    std::string path_;
    sqlite3* db_ = nullptr;
};

// ---- Versioned schema

// One step of a schema: the SQL that brings a file from version - 1 to `version`. Never edit a
// released step: append one (ALTER TABLE ... ADD COLUMN ...).
struct Migration {
    int version = 0;
    std::string_view sql;
};

struct Schema {
    std::string_view name;  // for messages: "store", "state", "ledger"
    // steps[i].version == i + 1 (a fatal check): the newest version is steps.back().version.
    std::span<const Migration> steps;
    // Where a file keeps its version: "" for PRAGMA user_version; else the name of a table
    // (version INTEGER) whose largest value is the version, created with the first step recorded.
    std::string_view version_table;
};

// The file's version (0 for a new file).
Result<int64_t> SchemaVersion(Db& db, const Schema& schema);

// Brings the file to the schema's newest version: each missing step runs in its own BEGIN
// IMMEDIATE transaction together with the record of its version, so a crash leaves the file at a
// step's boundary. A file of a newer version than the schema knows (written by a newer program) is
// refused with kFailedPrecondition and left as it is; a failed step with its own error code.
Status Migrate(Db& db, const Schema& schema);

}  // namespace cogs::sqlite
