// A DomainService's durable state: its ledger and its domain's records, in one SQLite file.
// Blocking calls on the service's io thread (accepted for services: with WAL and synchronous=NORMAL a
// commit is a write to the OS, not an fsync). Not thread-safe: one connection, one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/kit/domain.h"

struct sqlite3;
struct sqlite3_stmt;

namespace cogs::services::kit::internal {

// One ledger row.
struct LedgerRow {
    uint64_t seq = 0;
    std::string key;
    std::string action;
    std::string kind;     // do | undo
    std::string outcome;  // applied | rejected | compensated | tombstone
    std::string output;   // the answered JSON, or the refusal message (rejected)
    std::string code;     // rejected: the error code's name; else ""
    int64_t at_us = 0;
    int64_t done_at_us = 0;
};

class StateDb {
public:
    static constexpr int kSchemaVersion = 1;

    // Opens or creates the file; kFailedPrecondition for a file written by a newer schema.
    static Result<std::unique_ptr<StateDb>> Open(const std::string& path);
    ~StateDb();
    StateDb(const StateDb&) = delete;
    StateDb& operator=(const StateDb&) = delete;

    // Every ledger row, in sequence order.
    Result<std::vector<LedgerRow>> LoadLedger();
    // Every record, table by table, in id order; stops at the first error `fn` returns.
    Status ForEachRecord(const std::function<Status(std::string_view table, std::string_view id,
                                                    std::string_view json)>& fn);

    // The ledger rows and the record writes (in order) in one transaction: all or none.
    Status Write(const std::vector<LedgerRow>& rows, const std::vector<Tx::Write>& writes);

private:
    StateDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    Error Fail(const std::string& what) const;
    Status Exec(const char* sql, const char* what);
    Status Prepare(const char* sql, sqlite3_stmt** stmt);

    sqlite3* db_ = nullptr;
    sqlite3_stmt* insert_ledger_ = nullptr;
    sqlite3_stmt* put_record_ = nullptr;
    sqlite3_stmt* erase_record_ = nullptr;
    std::string path_;
};

}  // namespace cogs::services::kit::internal
