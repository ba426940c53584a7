// Test seams of the PostgreSQL backend. Production code opens the store with OpenPgStore
// (cogs/store/store.h); tests use this to lose a reply where a real network could.
#pragma once

#include <functional>
#include <memory>

#include "cogs/base/result.h"
#include "cogs/store/store.h"

namespace cogs::store::internal {

struct PgFaults {
    // Called on the writer thread once a batch's COMMIT has been answered Ok: true drops the
    // connection as if that answer had been lost on the way (the batch is then "in doubt" until
    // ResumeWrites reconnects and reads the batch's mark).
    std::function<bool()> lose_commit_reply;
};

Result<std::unique_ptr<Store>> OpenPgStoreWithFaults(const PgOptions& options, PgFaults faults);

}  // namespace cogs::store::internal
