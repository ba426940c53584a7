// The idempotency ledger's record, shared by every service that keeps one (a DomainService, the
// simulated service): one entry per idempotency key, made when the key is first performed,
// refused or tombstoned, and answered from ever after. Its JSON form is GET /v1/ledger's; its
// durable form is one table layout (internal/ledger_table.h), in a DomainService's state file
// beside the domain's records, or alone in a LedgerFile (the simulated service's).
//
// A service may keep the entries in memory its own way (the simulated service keeps a leaner
// record for millions of parked keys); it converts to LedgerEntry to show or store them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/kit/faults.h"

namespace cogs::sqlite {
class Db;
}

namespace cogs::services::kit {

namespace internal {
class LedgerTable;
}

enum class Outcome {
    kApplied,      // a do that took effect
    kRejected,     // refused for good (a domain's refusal, or a permanent fault); nothing applied
    kCompensated,  // an undo that performed its compensating action
    kTombstone,    // an undo that found nothing applied; refuses a later do
};
std::string_view ToString(Outcome outcome);  // "applied" | "rejected" | "compensated" | "tombstone"

struct LedgerEntry {
    uint64_t seq = 0;  // 1, 2, ...: the order in which entries were made
    std::string key;   // the idempotency key as received
    std::string action;
    CallKind kind = CallKind::kDo;
    Outcome outcome = Outcome::kApplied;
    std::string output;  // the JSON answered, or (kRejected) the refusal message
    // kRejected: the refusal's code, for a service that answers refusals with their own code (a
    // DomainService); unset where every refusal is kFailedPrecondition (the simulated service).
    std::optional<ErrorCode> code;
    int64_t at_us = 0;       // wall clock, when the entry was made
    int64_t done_at_us = 0;  // a long action: when it finishes (answered "accepted" before); else 0
};

// GET /v1/ledger: the entries as a JSON array, in the order given (callers give sequence order):
// [{"seq", "key", "action", "kind": "do"|"undo", "outcome", "output": {...} | "error": "...",
//   "code"? (when set), "at_us", "done_at_us"? (when not 0)}].
std::string LedgerToJson(const std::vector<LedgerEntry>& entries);

// A file that holds only a ledger. Opens a file of the older layout (the simulated service's,
// before refusal codes were kept: no `code` column, no schema_version) by migrating it; refuses a
// file of a newer schema with kFailedPrecondition. Blocking calls; one thread at a time.
class LedgerFile {
public:
    // Opens (or creates) `path`: WAL with synchronous=NORMAL (a commit survives a killed process,
    // not a power cut). kUnavailable if it cannot be opened.
    static Result<std::unique_ptr<LedgerFile>> Open(const std::string& path);
    ~LedgerFile();
    LedgerFile(const LedgerFile&) = delete;
    LedgerFile& operator=(const LedgerFile&) = delete;

    // Every entry, in sequence order.
    Result<std::vector<LedgerEntry>> LoadAll();
    // Appends the entries in one transaction: all or none. A key or seq already there is
    // kAlreadyExists (and nothing is written).
    Status Append(const std::vector<LedgerEntry>& entries);

private:
    LedgerFile(std::unique_ptr<sqlite::Db> db, std::unique_ptr<internal::LedgerTable> table);

    std::unique_ptr<sqlite::Db> db_;
    std::unique_ptr<internal::LedgerTable> table_;
};

}  // namespace cogs::services::kit
