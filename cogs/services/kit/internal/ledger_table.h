// The ledger's one durable form: the loader and writer of LedgerEntry (../ledger.h) on a SQLite
// connection, used by a DomainService's state file (state_db.h) and by a LedgerFile. The table:
//
//   ledger(key TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, action TEXT NOT NULL,
//          kind TEXT NOT NULL                -- do | undo
//          outcome TEXT NOT NULL             -- applied | rejected | compensated | tombstone
//          output TEXT NOT NULL              -- the answered JSON, or the refusal message
//          code TEXT NOT NULL DEFAULT ''     -- a refusal's ErrorCode name; '' for none
//          at_us INTEGER NOT NULL            -- wall clock, microseconds since the epoch
//          done_at_us INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID   -- a long action: when it ends
//
// created by each file's own schema steps (state_db.cc, ledger.cc); statements name their columns,
// so the column order of a migrated file does not matter.
#pragma once

#include <memory>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/sqlite/db.h"

// The first lines of the ledger's CREATE TABLE, to the letter as both files' first schema steps
// were released with them: each step goes on with the columns of its own layout (a state file's has
// `code`, a ledger file's gets it in its second step). A string literal, so that a step stays one
// constant text. Frozen as the steps are: a file's schema text is what its first step wrote.
#define COGS_KIT_LEDGER_CREATE_HEAD             \
    "CREATE TABLE IF NOT EXISTS ledger (\n"     \
    "    key        TEXT PRIMARY KEY,\n"        \
    "    seq        INTEGER NOT NULL UNIQUE,\n" \
    "    action     TEXT NOT NULL,\n"

namespace cogs::services::kit::internal {

class LedgerTable {
public:
    // What Insert does with a key the table holds already: refuse it (kAlreadyExists: an append-only
    // ledger, LedgerFile), or replace the row (a service's state, whose long action the domain
    // finished later, DomainContext::Finish: the service decides in memory what is new).
    enum class OnConflict { kRefuse, kReplace };

    // Prepares the insert on `db` (which must outlive this and hold the table).
    static Result<std::unique_ptr<LedgerTable>> Prepare(sqlite::Db& db, OnConflict on_conflict);

    // Every entry, in sequence order. An outcome this program does not know reads as applied; a
    // refusal code it does not know as kFailedPrecondition.
    Result<std::vector<LedgerEntry>> LoadAll();
    // One row, inside the caller's transaction; a key already there as Prepare's OnConflict says.
    Status Insert(const LedgerEntry& e);
    // Deletes the row of `key` (none: nothing), inside the caller's transaction.
    Status Erase(const std::string& key);

private:
    LedgerTable(sqlite::Db& db, sqlite::Stmt insert, sqlite::Stmt erase)
        : db_(db), insert_(std::move(insert)), erase_(std::move(erase)) {}

    sqlite::Db& db_;
    sqlite::Stmt insert_;
    sqlite::Stmt erase_;
};

}  // namespace cogs::services::kit::internal
