#include "cogs/services/kit/calls.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace cogs::services::kit {

std::vector<std::pair<std::string_view, uint64_t>> CallStats::Named() const {
    return {{"calls", calls},
            {"status_calls", status_calls},
            {"duplicates_answered", duplicates_answered},
            {"refused_after_undo", refused_after_undo},
            {"expired_on_arrival", expired_on_arrival},
            {"errors_injected", errors_injected},
            {"permanent_injected", permanent_injected},
            {"hangs_injected", hangs_injected},
            {"lost_replies_injected", lost_replies_injected}};
}

Error RefusedAfterUndo() { return Error(ErrorCode::kFailedPrecondition, "compensated before applied"); }

Error NotRecorded(std::string_view key) {
    return Error(ErrorCode::kNotFound, "no action recorded under key '" + std::string(key) + "'");
}

observe::GaugeFamily RecordsGauge(observe::Metrics& metrics) {
    return observe::GaugeOf(&metrics, "cogs_service_records",
                            "Records the service holds, by kind (ledger: idempotency entries).");
}

CallDesk::CallDesk(boost::asio::io_context& io, FaultConfig faults, uint64_t seed, observe::Metrics* metrics,
                   std::string_view service, CallStats& stats)
    : io_(io), faults_(std::move(faults)), roller_(seed), counter_(metrics, service), stats_(stats) {}

bool CallDesk::Admit(SteadyTime deadline, Callback& done) {
    ++stats_.calls;
    if (!AdmitUnlessHanging()) {
        return false;
    }
    if (SteadyClock::now() >= deadline) {
        ++stats_.expired_on_arrival;
        Answer(std::move(done),
               MakeError(ErrorCode::kDeadlineExceeded, "the call's deadline passed before it arrived"));
        return false;
    }
    return true;
}

bool CallDesk::AdmitStatus() {
    ++stats_.status_calls;
    return AdmitUnlessHanging();
}

bool CallDesk::AdmitUnlessHanging() {
    if (faults_.hang_all) {
        ++stats_.hangs_injected;
        counter_.Count(Fault::kHang);
        return false;
    }
    return true;
}

std::optional<Fault> CallDesk::Roll(std::string_view action, CallKind kind, Callback& done) {
    const Fault fault = roller_.Roll(faults_, action, kind);
    counter_.Count(fault);
    switch (fault) {
        case Fault::kNone: break;
        case Fault::kError:
            ++stats_.errors_injected;
            Answer(std::move(done), MakeError(InjectedError()));
            return std::nullopt;
        case Fault::kHang: ++stats_.hangs_injected; return std::nullopt;
        case Fault::kPermanent: ++stats_.permanent_injected; break;
        case Fault::kLostReply: ++stats_.lost_replies_injected; break;
    }
    return fault;
}

int64_t CallDesk::LongActionEndUs(std::string_view action, int64_t applied_at_us) const {
    if (!IsLongAction(faults_, action)) {
        return 0;
    }
    const int64_t run_us =
        std::chrono::duration_cast<std::chrono::microseconds>(faults_.accept_duration).count();
    return applied_at_us + std::max<int64_t>(1, run_us);
}

void CallDesk::Answer(Callback done, Result<workflow::ActionReply> reply) {
    if (commit_pending_) {
        held_.push_back(Held{std::move(done), std::move(reply)});
        return;
    }
    Deliver(std::move(done), std::move(reply));
}

void CallDesk::CommitThisTurn(std::weak_ptr<void> owner, std::function<void()> commit) {
    if (commit_pending_) {
        return;
    }
    commit_pending_ = true;
    boost::asio::post(io_, [owner = std::move(owner), commit = std::move(commit)] {
        if (auto alive = owner.lock()) {
            commit();
        }
    });
}

void CallDesk::Release(std::optional<Error> failed) {
    commit_pending_ = false;
    auto held = std::move(held_);
    held_.clear();
    for (auto& h : held) {
        if (failed) {
            h.reply = MakeError(*failed);
        }
        Deliver(std::move(h.done), std::move(h.reply));
    }
}

void CallDesk::Deliver(Callback done, Result<workflow::ActionReply> reply) {
    AfterLatency(io_, faults_, counter_,
                 [done = std::move(done), reply = std::move(reply)]() mutable { done(std::move(reply)); });
}

}  // namespace cogs::services::kit
