// The sim service's durable ledger: one SQLite table, written in batches, read once at start.
// Blocking calls: used on the service's own thread, which is acceptable for a test double (WAL with
// synchronous=NORMAL makes a commit a write to the OS, not an fsync).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/sim/sim_service.h"

struct sqlite3;
struct sqlite3_stmt;

namespace cogs::services::sim::internal {

class LedgerDb {
public:
    static Result<std::unique_ptr<LedgerDb>> Open(const std::string& path);
    ~LedgerDb();

    // Every entry, in sequence order.
    Result<std::vector<LedgerEntry>> LoadAll();

    // Appends the entries in one transaction: all or none.
    Status Write(const std::vector<LedgerEntry>& entries);

private:
    LedgerDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    Error Fail(const std::string& what) const;

    sqlite3* db_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    std::string path_;
};

}  // namespace cogs::services::sim::internal
