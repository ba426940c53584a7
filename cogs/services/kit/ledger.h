// The idempotency ledger's record, shared by every service that keeps one (a DomainService, the
// simulated service): one entry per idempotency key, made when the key is first performed,
// refused or tombstoned, and answered from ever after. Its JSON form is GET /v1/ledger's; its
// durable form is one table layout (internal/ledger_table.h), in a DomainService's state file
// beside the domain's records, or alone in a LedgerFile (the simulated service's).
//
// A service may keep the entries in memory its own way (the simulated service keeps a leaner
// record for millions of parked keys); it converts to LedgerEntry to show or store them.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/observe/metrics.h"
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

// Retention of a ledger. An entry exists to answer its key's re-sends, and a caller re-sends a key
// only while its workflow runs: the engine sends a step's key until the step's and the workflow's
// deadline (the longest shipped workflow deadline is 30 minutes), and the undo key of a compensation
// (which reads its do's entry to tell "compensated" from "tombstone") while the workflow compensates.
// So an entry may go once no workflow that could still use it can be running: once it is older than
// the longest workflow deadline plus a margin. `min_age` is that floor (1 h by default; raise it with
// longer deadlines): no entry younger goes, whatever the count. Beyond it, entries older than
// `keep_for` go, and the oldest beyond `keep_at_most`. An entry's age counts from when it was made,
// or for a long action from when it ends (`done_at_us`).
//
// What a pruned key then gets: a re-sent do is performed as new, a status query is 404, an undo
// finds no do (a tombstone, nothing compensated). Only a workflow older than the retention can see
// that — an operator's retry of a `failed` workflow days later: what it leaves behind is an orphan
// the reconciler removes (docs/healing.md).
struct LedgerRetention {
    Duration keep_for = std::chrono::hours(24);  // entries older than this go
    size_t keep_at_most = 1'000'000;             // the oldest beyond this many go (if past min_age)
    Duration min_age = std::chrono::hours(1);    // never one younger: longest deadline + margin
};

// Which entries of a ledger go, oldest first. Entries are added in the order they were made (seq
// order, the order of at_us); an entry is prunable by the rules of LedgerRetention, and since the
// oldest go first, the queue is only ever looked at from its front: O(1) per entry. A service asks
// it for a few keys each time it makes an entry (amortized: a ledger that grows also shrinks, with
// no timer and no long pause) and deletes them with that entry's write.
//
// Counts cogs_pruned_total{service,what="ledger"}. One thread (the service's).
class LedgerPruner {
public:
    LedgerPruner(LedgerRetention retention, observe::Metrics* metrics, std::string_view service);

    // An entry made (or loaded) now, after every entry added before.
    void Add(std::string key, int64_t at_us, int64_t done_at_us);
    // Forgets the `n` entries added last (their write failed: they are not in the ledger).
    void DropNewest(size_t n);
    // Up to `limit` keys that may go now, oldest first, given the ledger's `size` (entries held);
    // they leave the queue, and the caller must delete them.
    std::vector<std::string> Take(int64_t now_us, size_t size,
                                  size_t limit = std::numeric_limits<size_t>::max());

    // Keys a service prunes per entry it makes: more than one, so that a backlog (a lowered
    // limit) drains while the service works.
    static constexpr size_t kPerEntry = 2;

private:
    struct Item {
        int64_t since_us;  // max(at_us, done_at_us)
        std::string key;
    };
    LedgerRetention retention_;
    std::deque<Item> queue_;
    observe::Counter pruned_;
};

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
    // Appends the entries and deletes the keys of `pruned` in one transaction: all or none. A key
    // or seq already there is kAlreadyExists (and nothing is written).
    Status Append(const std::vector<LedgerEntry>& entries, const std::vector<std::string>& pruned = {});

private:
    LedgerFile(std::unique_ptr<sqlite::Db> db, std::unique_ptr<internal::LedgerTable> table);

    std::unique_ptr<sqlite::Db> db_;
    std::unique_ptr<internal::LedgerTable> table_;
};

}  // namespace cogs::services::kit
