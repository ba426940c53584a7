// SimService: a simulated micro-service that drives the workflow engine in tests and benchmarks.
//
// It performs "actions" that do nothing but remember, in a ledger, exactly what was applied, under
// which idempotency key, and what was answered. That ledger is the ground truth the tests check the
// engine against: every action applied at most once per key, every compensation matching an applied
// action, no action applied after its compensation.
//
// Keys follow the engine's convention (cogs/workflow/service.h): "<workflow>/<step>/do" and
// "<workflow>/<step>/undo". The undo of "W/S/do" is "W/S/undo".
//
//   do, key seen before   -> the recorded outcome again: the same output, the same refusal, or
//                            kFailedPrecondition "compensated before applied" if the undo came first.
//   do, new key           -> faults are rolled (below); if none strikes, the action is applied: an
//                            entry {key, action, kind=do, outcome=applied} is made durable, then the
//                            output {"id", "action", "seq"} (+ "ip" for allocate_ip) is answered.
//   undo, key seen before -> the recorded answer again.
//   undo, new key         -> faults are rolled (never a permanent one); if the do was applied, a
//                            compensation is recorded {outcome=compensated}; otherwise a tombstone
//                            {outcome=tombstone} so that a late do is refused. Either way: ok.
//
// Faults (kit::FaultConfig), for a new key, from one draw of kit::FaultRoller (cogs/services/kit/faults.h):
//   error                               kUnavailable (retryable), nothing applied
//   hang                                no answer at all, nothing applied (the caller's deadline fires)
//   permanent (fail_actions, or at random; do only)
//                                       kFailedPrecondition, recorded as rejected (a re-send gets it again)
//   lost reply                          applied and recorded, but no answer (the caller times out) hang_all
//   makes every call (Handle and
// Status) hang. `latency` delays every answer, by a timer. A call whose deadline has already passed
// when it arrives is not started: kDeadlineExceeded, nothing applied.
//
// Long actions (`long_actions`): applied and recorded at once, answered {accepted}; Status() reports
// them accepted until accept_duration has passed since they were applied, then done with the output.
//
// Actions: any name, unless SimOptions::actions lists them (cogs-sim --action): then a name not
// listed is kNotFound "no action 'x'" before anything else (deadline aside), nothing recorded, as a
// real service answers an action it does not have.
//
// Inventory (GET /v1/inventory): what the sim holds, i.e. every do applied and not compensated,
// {"applied": [{"id", "key", "action"}]} in key order (`id` as in the do's output). A scan of the
// ledger: for tests and `cogs service check`, not for a benchmark's million keys.
//
// Durability: with ledger_path set, the ledger is an SQLite table (WAL, synchronous=NORMAL: survives
// a process kill, not a power cut), loaded into memory at start, so a restarted service remembers
// every key. Entries made in one turn of the event loop are written in one transaction (group
// commit), and no answer leaves before the entries it depends on are written. Without ledger_path
// the ledger lives in memory only.
//
// Metrics (with SimOptions.metrics; service label "sim"): cogs_service_faults_injected_total{kind}
// counts every fault that strikes (hang_all as "hang", "latency" per answer held back), and at every
// render of the registry cogs_service_records{kind} is sampled: "ledger" (every entry) and "applied",
// "rejected", "compensated", "tombstone" (the entries by outcome). The sampler reads the ledger, so
// render the registry on the service's io thread (kit::MakeActionHttpHandler's GET /metrics does);
// the registry must outlive the service. cogs_pruned_total{service="sim",what="ledger"} counts the
// entries retention deleted.
//
// Threading: a SimService lives on one io_context that exactly one thread runs; every method must be
// called on that thread. Callbacks are never invoked inline: always from a later handler on that
// io_context. A callback for a call that hangs or loses its reply is destroyed without being called.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/services/kit/calls.h"
#include "cogs/services/kit/faults.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::services::sim {

// The fault settings and their JSON (PUT /v1/faults) are the kit's, shared with every micro-service,
// and so are the ledger's record, its JSON (GET /v1/ledger) and its file (kit/ledger.h). The sim's
// entries have no refusal code: every refusal is kFailedPrecondition.
using kit::CallKind;
using kit::FaultConfig;
using kit::LedgerEntry;
using kit::LedgerToJson;
using kit::Outcome;
using kit::ParseFaultConfig;
using kit::ToJson;
using kit::ToString;

struct SimOptions {
    std::string ledger_path{};  // SQLite file; empty: in memory only
    FaultConfig faults{};
    uint64_t seed = 1;                    // for the fault draws: the same seed and calls give the same faults
    observe::Metrics* metrics = nullptr;  // where to count faults and sample the ledger; null: nowhere
    // How long entries are kept (kit/ledger.h: the rule that makes pruning safe): each entry made
    // takes up to LedgerPruner::kPerEntry expired ones with it (same write); at open, every expired
    // entry goes. A pruned key is a key never seen.
    kit::LedgerRetention retention{};
    // The ledger's wall time (entries' at_us, the end of long actions, retention); null:
    // runtime::SystemClock(). Must outlive the service. Deadlines and latency stay on the machine's.
    runtime::Clock* clock = nullptr;
    // The actions it performs; empty: every name (see Actions above).
    std::vector<std::string> actions{};
};

struct LedgerCounts {
    uint64_t applied = 0;                                    // do entries applied
    uint64_t rejected = 0;                                   // do entries refused permanently
    uint64_t compensated = 0;                                // undo entries that compensated an applied do
    uint64_t tombstones = 0;                                 // undo entries that found nothing to undo
    uint64_t live() const { return applied - compensated; }  // applied and not compensated
};

// Totals since the process started: the calls' (kit/calls.h) and these.
struct SimStats : kit::CallStats {
    uint64_t applied = 0;      // new do entries applied by this process
    uint64_t compensated = 0;  // new compensations by this process
    uint64_t tombstones = 0;   // new tombstones by this process
};

// A kit::ActionTarget, served over HTTP by kit::MakeActionHttpHandler (cogs/services/kit/protocol.h),
// with the semantics above:
//   name()       "sim": the service label of its metrics and the component of its log lines;
//   IsRecorded   whether `key` has a ledger entry (a call with it is answered from the ledger);
//   Handle       performs `action` under `key` (ending in "/do" or "/undo"; anything else is
//                kInvalidArgument). `input` is JSON text; the sim does not interpret it. `done` is
//                called at most once, never inline; not at all if the call hangs or its reply is lost;
//   Status       the state of the action recorded under `key`: accepted=true while a long action
//                runs, else the output; the refusal for a rejected key; kNotFound for a key never
//                recorded;
//   LedgerJson   GET /v1/ledger: LedgerToJson(Ledger()); StatsJson: GET /v1/stats, ToJson(stats());
//   Get          GET /v1/inventory (see Inventory above); no other route;
//   Post         no other routes.
class SimService final : public kit::ForwardingTarget {
public:
    // Opens (or creates) the ledger at options.ledger_path and loads it. Throws std::runtime_error if
    // it cannot (bad configuration is fatal at start-up); Create() returns the error instead.
    SimService(boost::asio::io_context& io, SimOptions options);
    ~SimService() override;
    SimService(const SimService&) = delete;
    SimService& operator=(const SimService&) = delete;

    static Result<std::unique_ptr<SimService>> Create(boost::asio::io_context& io, SimOptions options);

    // The whole ledger in sequence order, one entry, and the totals.
    std::vector<LedgerEntry> Ledger() const;
    std::optional<LedgerEntry> Find(const std::string& key) const;
    LedgerCounts Counts() const;
    const SimStats& stats() const;

    boost::asio::io_context& io() const;

private:
    class Impl;
    SimService(std::shared_ptr<Impl> impl, const SimOptions& options);
    const Impl& impl_;  // the state, shared with posted work (which holds it weakly); owned by the base
};

// The stats as a JSON object (GET /v1/stats).
std::string ToJson(const SimStats& stats);

}  // namespace cogs::services::sim
