// What the two kinds of ActionTarget (kit::DomainService, service.h, and the simulated service,
// cogs/services/sim) share around their own ledgers, so that each writes only its ledger:
//
//   CallStats          the counts of calls, replays and faults every service's GET /v1/stats has;
//   CallDesk           where a call comes in and its answer leaves: the gates every call passes
//                      before its key is looked at (hang_all, a deadline already passed), the fault
//                      drawn for a new key, and answers held while a group commit that may hold what
//                      they report is pending, then sent after the latency fault, never inline;
//   ForwardingTarget   the public face of a target whose state lives in an object shared with the
//                      work it posts (which holds it weakly, to find it gone).
//
// The semantics these carry out are documented with each service (service.h, sim_service.h); the
// wire protocol is docs/service-protocol.md.
//
// Threading: a CallDesk belongs to its service's io thread, like the service.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/kit/faults.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

// The engine's key convention (cogs/workflow/engine.h): "<base>/do", and its undo "<base>/undo".
inline constexpr std::string_view kDoSuffix = "/do";
inline constexpr std::string_view kUndoSuffix = "/undo";

// Totals since the process started, the part every service's GET /v1/stats has.
struct CallStats {
    uint64_t calls = 0;                // Handle() calls
    uint64_t status_calls = 0;         // Status() calls
    uint64_t duplicates_answered = 0;  // calls answered from the ledger (a key recorded before)
    uint64_t refused_after_undo = 0;   // do calls refused because the undo came first
    uint64_t expired_on_arrival = 0;   // calls whose deadline had passed when they arrived
    uint64_t errors_injected = 0;
    uint64_t permanent_injected = 0;  // including fail_actions
    uint64_t hangs_injected = 0;      // including hang_all
    uint64_t lost_replies_injected = 0;

    // The counts by name, as GET /v1/stats shows them ({"calls", calls}, ...); a service adds its own.
    std::vector<std::pair<std::string_view, uint64_t>> Named() const;
};

// The answer to a do whose undo was recorded first (a tombstone): kFailedPrecondition
// "compensated before applied", now and on every re-send.
Error RefusedAfterUndo();

// The answer to Status() of a key that was never recorded: kNotFound.
Error NotRecorded(std::string_view key);

// cogs_service_records{service,kind} (docs/metrics.md): the records a service holds, by kind; every
// service samples it at each render of the registry.
observe::GaugeFamily RecordsGauge(observe::Metrics& metrics);

class CallDesk {
public:
    using Callback = ActionTarget::Callback;

    // Faults are drawn from `seed` and counted in `metrics` (may be null) under `service`; the
    // calls and the faults that strike them are counted in `stats`, which must outlive the desk.
    CallDesk(boost::asio::io_context& io, FaultConfig faults, uint64_t seed, observe::Metrics* metrics,
             std::string_view service, CallStats& stats);
    CallDesk(const CallDesk&) = delete;
    CallDesk& operator=(const CallDesk&) = delete;

    // Handle()'s gates, before the key is looked at; counts the call. False if it goes no further:
    // under hang_all it hangs (`done` is left uncalled), and a call whose deadline passed before it
    // arrived is answered kDeadlineExceeded (nothing applied).
    bool Admit(SteadyTime deadline, Callback& done);
    // Status()'s gate; counts the poll. False under hang_all (it hangs).
    bool AdmitStatus();

    // The fault of a call with a new key: one draw of the FaultRoller, counted. nullopt when the call
    // stops here: an injected error (answered InjectedError()) or a hang (`done` left uncalled).
    // Otherwise kNone, kPermanent (a do only) or kLostReply, which the service carries out: it
    // records the refusal, or performs the call and does not answer it.
    std::optional<Fault> Roll(std::string_view action, CallKind kind, Callback& done);

    // When an action applied at `applied_at_us` ends if it is one of FaultConfig.long_actions
    // (accept_duration later, at least 1 us); 0 if it is not.
    int64_t LongActionEndUs(std::string_view action, int64_t applied_at_us) const;

    // Every answer leaves through here: held while a group commit is pending (it may report what
    // that commit writes), else at once; then after FaultConfig.latency, never inline.
    void Answer(Callback done, Result<workflow::ActionReply> reply);

    // A group commit at the end of this turn of the event loop: the first call in a turn posts
    // `commit`, later ones join it. `commit` runs only if `owner` is still alive then, and must end
    // with Release(). Until then every answer is held.
    void CommitThisTurn(std::weak_ptr<void> owner, std::function<void()> commit);
    bool commit_pending() const { return commit_pending_; }
    // The commit is done: every held answer leaves, in order. With `failed`, each is answered that
    // error instead (what it reports was not kept).
    void Release(std::optional<Error> failed = std::nullopt);

    void SetFaults(FaultConfig faults) { faults_ = std::move(faults); }
    const FaultConfig& faults() const { return faults_; }

private:
    struct Held {
        Callback done;
        Result<workflow::ActionReply> reply;
    };

    bool AdmitUnlessHanging();
    void Deliver(Callback done, Result<workflow::ActionReply> reply);

    boost::asio::io_context& io_;
    FaultConfig faults_;
    FaultRoller roller_;
    FaultCounter counter_;
    CallStats& stats_;
    bool commit_pending_ = false;
    std::vector<Held> held_;
};

// An ActionTarget that forwards every call to `target`, the object holding the service's state (and
// shared with the work it posts). DomainService and SimService derive from it.
class ForwardingTarget : public ActionTarget {
public:
    std::string_view name() const final { return target_->name(); }
    bool IsRecorded(const std::string& key) const final { return target_->IsRecorded(key); }
    void Handle(std::string action, std::string key, std::string input, SteadyTime deadline,
                Callback done) final {
        target_->Handle(std::move(action), std::move(key), std::move(input), deadline, std::move(done));
    }
    void Status(std::string key, Callback done) final { target_->Status(std::move(key), std::move(done)); }
    void SetFaults(FaultConfig faults) final { target_->SetFaults(std::move(faults)); }
    const FaultConfig& faults() const final { return target_->faults(); }
    std::string LedgerJson() const final { return target_->LedgerJson(); }
    std::string StatsJson() const final { return target_->StatsJson(); }
    std::optional<http::Response> Get(const http::Request& request) final { return target_->Get(request); }
    bool Post(const http::Request& request, const http::Respond& respond) final {
        return target_->Post(request, respond);
    }

protected:
    explicit ForwardingTarget(std::shared_ptr<ActionTarget> target) : target_(std::move(target)) {}

private:
    std::shared_ptr<ActionTarget> target_;
};

}  // namespace cogs::services::kit
