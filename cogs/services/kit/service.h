// DomainService: a cogs micro-service made of a kit::Domain (domain.h: networks, volumes, instances)
// and everything generic: the action protocol of docs/service-protocol.md, the idempotency ledger
// with tombstones, fault injection, durable state in SQLite, group commit, /v1/inventory.
// Serve it with MakeActionHttpHandler (protocol.h), or run a whole process with Serve (serve.h).
//
// Keys. A key ending in "/undo" is an undo; any other key is a do ("<base>/do" by the engine's
// convention, but any key works). The undo of "<base>/do" is "<base>/undo".
//
//   do, key recorded          -> the recorded answer again (output, or refusal); never performed twice.
//   do, "<base>/undo" is a    -> 422 failed_precondition "compensated before applied" (a late do
//     tombstone                   never re-creates what its workflow already rolled back).
//   do, new key               -> faults are rolled (faults.h, one draw):
//                                  error      503 unavailable, nothing applied or recorded;
//                                  hang       no answer, nothing applied;
//                                  permanent  422 failed_precondition, recorded as rejected
//                                             (also for every action in fail_actions);
//                                  lost reply performed and recorded as below, but no answer;
//                                then the action (its handler in the domain's table, dispatch.h):
//                                  ok                      recorded as applied with its output, tx's
//                                                          record writes with it (one transaction);
//                                  non-retryable error     recorded as rejected, answered (and
//                                                          answered the same to every re-send);
//                                  retryable error         not recorded, answered (the caller retries).
//   undo, key recorded        -> the recorded answer again.
//   undo, new key             -> faults are rolled (never permanent); if "<base>/do" is recorded as
//                                applied, the compensating action (the undo names it, e.g.
//                                delete_port) is performed like a do's, and the undo is
//                                recorded as compensated with its output; otherwise a tombstone is
//                                recorded without performing anything, output {"compensated": false}.
//                                A compensating action failing for good is recorded as rejected; a
//                                retryable failure is not recorded.
//   unknown action            -> 404 not_found, nothing recorded (before faults are rolled): a name
//                                that is not in the domain's table (Domain::actions()).
//   input not a JSON object   -> 400 invalid_argument, nothing recorded.
//   deadline passed on arrival-> 504 deadline_exceeded, nothing applied.
//
// Long actions: Done.ready_at_us > now (or the action is in FaultConfig.long_actions, which makes it
// end accept_duration after it was applied) -> 202 {"accepted": true}; Status(key) answers 202 until
// then and 200 with the output afterwards. Done.wait_for (a domain that learns the end later, e.g. a
// real boot) -> 202 until the domain's DomainContext::Finish(wait_for, output or error), then that
// output, or the error as a definitive refusal (the entry becomes "rejected"; an undo of it still
// performs the compensating action). A pending entry is stored with output {"waiting_for": name}
// and done_at_us = INT64_MAX, so it survives a restart and Finish reaches it afterwards.
// Status of a key never recorded: 404 (or 422 if its undo left a tombstone). hang_all: no call is answered.
// latency: every answer waits, on a timer.
//
// Durability. With state_path set, the ledger and the domain's records live in one SQLite file.
// Everything made in one turn of the event loop is committed in ONE transaction (group commit): an
// action's ledger entry and its records are kept together or not at all, and no answer leaves before
// the transaction holding what it reports has committed. At start the ledger is loaded, then every
// record is handed to domain.Load() (table by table, id order); a Load error makes Create fail.
// SQLite runs WAL with synchronous=NORMAL: a commit survives a crash of the process, not a power cut
// of the machine (which may lose the last commits, answers included). The SQLite calls block the io
// thread (a commit is a write to the OS, not an fsync); accepted for services (see README).
//
// Refusals and HTTP statuses: the caller decides retries from the status alone, so a refusal the
// service records (non-retryable domain error) whose code maps to a retryable status (e.g.
// kResourceExhausted -> 429) is answered as kFailedPrecondition "<code>: <message>", and a retryable
// domain error whose code maps to a definitive 4xx is answered as kUnavailable "<code>: <message>".
//
// A failed commit: the domain has already changed its in-memory state and cannot roll it back, so
// the process cannot trust its memory any more. The service then fails fast (a fatal check); a
// restart reloads exactly what was committed. Answers of that batch never leave.
//
// Without state_path, everything lives in memory (tests).
//
// Retention (ServiceOptions.ledger_retention, ledger.h): an entry older than the retention is
// deleted from memory and from the file, a few per entry made, in the same group commit; counted in
// cogs_pruned_total{service,what="ledger"}. A key pruned is a key never seen.
//
// The domain's own changes (domain.h, DomainContext): Create hands the domain a context once its
// records are loaded (Domain::Bind). Its Write(tx) joins the next group commit like an action's
// records (without a ledger entry); its `committed` callback runs after that commit.
//
// Metrics (with ServiceOptions.metrics): cogs_service_faults_injected_total{service,kind} counts
// every fault that strikes (hang_all included, as "hang"; "latency" per answer held back), and at
// every render of the registry cogs_service_records{service,kind} is sampled: kind "ledger" (the
// idempotency entries) and the domain's RecordCounts(); then the domain's Collect() runs. The
// samplers read the service's state, so the registry must be rendered on the service's io thread
// (MakeActionHttpHandler's GET /metrics is) and must outlive the service.
//
// Threading: a DomainService and its Domain live on one io_context run by exactly one thread; every
// method must be called there. Callbacks are never invoked inline.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cogs/base/result.h"
#include "cogs/services/kit/calls.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/kit/faults.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/services/kit/protocol.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::services::kit {

struct ServiceOptions {
    std::string state_path{};  // SQLite file for the ledger and the domain's records; empty: in memory
    FaultConfig faults{};
    uint64_t seed = 1;                    // for the fault draws
    observe::Metrics* metrics = nullptr;  // where to count faults and sample records; null: nowhere
    // The wall time of the ledger: when an entry was made, when a long action ends and whether it
    // has (the domain's Done.ready_at_us must come from the same clock); it must outlive the service.
    // null: runtime::SystemClock(). Deadlines and latency stay on the machine's clock.
    runtime::Clock* clock = nullptr;
    // How long entries are kept (ledger.h: the rule that makes pruning safe). Pruned while the
    // service works: each entry made takes up to LedgerPruner::kPerEntry expired ones with it, in
    // the same group commit; at start, every expired entry goes before the first call.
    LedgerRetention ledger_retention{};
};

// Totals since the process started (GET /v1/stats): the calls' (calls.h) and these.
struct ServiceStats : CallStats {
    uint64_t performed = 0;         // actions performed (do and compensating undo)
    uint64_t rejected = 0;          // refusals recorded (domain or injected)
    uint64_t retryable_errors = 0;  // retryable domain errors answered, not recorded
    uint64_t compensated = 0;       // undos that performed their compensating action
    uint64_t tombstones = 0;        // undos that found nothing applied
    uint64_t unknown_actions = 0;
    uint64_t commits = 0;  // group-commit transactions
};

// An ActionTarget (protocol.h) with the semantics above; name() is the domain's, and:
//   LedgerJson  [{"seq","key","action","kind":"do"|"undo","outcome":"applied"|"rejected"|"compensated"|
//               "tombstone", "output": {...} | "error": "...", "at_us", "done_at_us"?}] in sequence order;
//   Get         GET /v1/inventory -> domain.Inventory(); any other GET -> domain.Get();
//   Post        any other POST -> domain.Post().
class DomainService final : public ForwardingTarget {
public:
    // Opens (or creates) the state at options.state_path, loads the ledger and hands every record to
    // domain->Load(). Errors: kUnavailable if the file cannot be opened or read, kInternal if it is
    // not a database, the Load error, or kFailedPrecondition for a file of a newer schema.
    static Result<std::unique_ptr<DomainService>> Create(boost::asio::io_context& io,
                                                         std::unique_ptr<Domain> domain,
                                                         ServiceOptions options);
    ~DomainService() override;
    DomainService(const DomainService&) = delete;
    DomainService& operator=(const DomainService&) = delete;

    const Domain& domain() const;
    const ServiceStats& stats() const;
    size_t ledger_size() const;

private:
    class Impl;
    explicit DomainService(std::shared_ptr<Impl> impl);
    const Impl& impl_;  // the state, shared with posted work (which holds it weakly); owned by the base
};

}  // namespace cogs::services::kit
