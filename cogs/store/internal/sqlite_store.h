// Test seams of the SQLite backend. Production code opens the store with OpenSqliteStore
// (cogs/store/store.h); tests use this to make the database fail where a real disk could.
#pragma once

#include <functional>
#include <memory>

#include "cogs/base/result.h"
#include "cogs/store/store.h"

namespace cogs::store::internal {

struct SqliteFaults {
    // Called on the writer thread just before a batch's COMMIT. An error fails that transaction
    // exactly as a failed COMMIT would: it is rolled back and every group's callback gets the error.
    std::function<Status()> before_commit;
};

Result<std::unique_ptr<Store>> OpenSqliteStoreWithFaults(const SqliteOptions& options, SqliteFaults faults);

}  // namespace cogs::store::internal
