// A DomainService's durable state: its ledger and its domain's records, in one SQLite file.
// Blocking calls on the service's io thread (accepted for services: with WAL and synchronous=NORMAL a
// commit is a write to the OS, not an fsync). Not thread-safe: one connection, one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/kit/internal/ledger_table.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/sqlite/db.h"

namespace cogs::services::kit::internal {

class StateDb {
public:
    // Opens or creates the file; kFailedPrecondition for a file written by a newer schema.
    static Result<std::unique_ptr<StateDb>> Open(const std::string& path);
    StateDb(const StateDb&) = delete;
    StateDb& operator=(const StateDb&) = delete;

    // Every ledger entry, in sequence order.
    Result<std::vector<LedgerEntry>> LoadLedger() { return ledger_->LoadAll(); }
    // Every record, table by table, in id order; stops at the first error `fn` returns.
    Status ForEachRecord(
        const std::function<Status(std::string_view table, std::string_view id, std::string_view json)>& fn);

    // The ledger entries, the record writes (in order) and the deletion of the pruned ledger keys
    // in one transaction: all or none.
    Status Write(const std::vector<LedgerEntry>& entries, const std::vector<Tx::Write>& writes,
                 const std::vector<std::string>& pruned = {});

private:
    StateDb() = default;

    std::unique_ptr<sqlite::Db> db_;
    std::unique_ptr<LedgerTable> ledger_;
    sqlite::Stmt put_record_;
    sqlite::Stmt erase_record_;
};

}  // namespace cogs::services::kit::internal
