#include "cogs/scheduler/scheduler_service.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/observe/log.h"
#include "cogs/wire/input.h"

namespace cogs::scheduler {
namespace {

namespace json = boost::json;
using wire::Str;
using workflow::ActionCall;
using workflow::ActionReply;

class SchedulerService final : public workflow::ServiceClient {
public:
    SchedulerService(boost::asio::io_context& io, Placement& placement, ClaimLedger& ledger,
                     runtime::Clock& clock, observe::Metrics* m)
        : io_(io), placement_(placement), ledger_(ledger), clock_(clock) {
        duration_ = observe::HistogramOf(m, "cogs_placement_duration_seconds",
                                         "One placement decision (scheduler.claim).")
                        .With({});
        auto placements = observe::CounterOf(m, "cogs_placements_total", "Placement decisions by outcome.");
        placed_ = placements.With({{"outcome", "placed"}});
        failed_ = placements.With({{"outcome", "failed"}});
        failures_ =
            observe::CounterOf(m, "cogs_placement_failures_total",
                               "Failed placements by the filter that eliminated the last candidates.");
    }

    void Invoke(ActionCall call, Callback done) override { Act(call.action, call.input, std::move(done)); }
    // Claims answer at once: there is never an accepted claim to poll.
    void Status(ActionCall call, Callback done) override { Act("status", call.input, std::move(done)); }

private:
    void Reply(Callback done, Result<ActionReply> r) {
        boost::asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    }
    // Answers `out` once the ledger has it.
    std::function<void(cogs::Status)> Answer(Callback done, json::object out) {
        return [this, done = std::move(done), out = std::move(out)](cogs::Status st) mutable {
            if (!st) return Reply(std::move(done), MakeError(st.error()));
            Reply(std::move(done), ActionReply{false, json::serialize(out)});
        };
    }

    void Act(const std::string& action, const std::string& input, Callback done) {
        auto in = wire::Input::ParseAny(input, "input");
        if (!in) {
            return Reply(std::move(done),
                         MakeError(ErrorCode::kInvalidArgument, "scheduler: input must be a JSON object"));
        }
        const json::object& o = in->object();
        const std::string server_id = Str(o, "server_id");
        if (server_id.empty()) {
            return Reply(std::move(done), MakeError(FieldError("server_id", "required")));
        }
        if (action == "release") {
            const bool had = placement_.Release(server_id);
            json::object out{{"server_id", server_id}, {"released", had}};
            if (!had) {
                return Reply(std::move(done), ActionReply{false, json::serialize(out)});
            }
            return ledger_.Erase(server_id, Answer(std::move(done), std::move(out)));
        }
        if (action != "claim" && action != "move") {
            return Reply(std::move(done),
                         MakeError(ErrorCode::kNotFound, "scheduler: no action " + action +
                                                             " (claims are never long: nothing to poll)"));
        }
        PlacementRequest pr;
        pr.server_id = server_id;
        pr.vcpus = wire::Int(o, "vcpus");
        pr.ram_mb = wire::Int(o, "ram_mb");
        pr.disk_gb = wire::Int(o, "disk_gb");
        pr.availability_zone = Str(o, "availability_zone");
        pr.required_traits = wire::StrList(o, "traits");
        pr.group_id = Str(o, "group_id");
        const std::string policy = Str(o, "policy");
        pr.policy = policy == "affinity"        ? GroupPolicy::kAffinity
                    : policy == "anti-affinity" ? GroupPolicy::kAntiAffinity
                                                : GroupPolicy::kNone;
        pr.weigher = Str(o, "weigher") == "pack" ? Weigher::kPack : Weigher::kSpread;
        std::optional<Claim> moved_from;
        if (action == "move") {
            const Claim* now = placement_.ClaimOf(server_id);
            const std::string from = Str(o, "from_host");
            // Also off a host that failed since an earlier move chose it (a retried evacuation).
            const HostInfo* at = now != nullptr ? placement_.FindHost(now->host) : nullptr;
            if (now != nullptr && (now->host == from || (!from.empty() && (at == nullptr || !at->alive)))) {
                moved_from = *now;
                placement_.Release(server_id);
            }
        }
        const bool existed = placement_.ClaimOf(server_id) != nullptr;
        FailureReason why = FailureReason::kNone;
        const SteadyTime started = clock_.Now();
        auto claim = placement_.ClaimFor(pr, &why);
        if (!claim && moved_from) {
            placement_.AddClaim(*moved_from);
            claim = MakeError(ErrorCode::kUnavailable, "no host to move to: " + claim.error().message);
        }
        if (!existed) {  // a replayed claim decides nothing
            duration_.Observe(std::chrono::duration<double>(clock_.Now() - started).count());
            (claim ? placed_ : failed_).Inc();
        }
        if (!claim) {
            failures_.With({{"reason", std::string(ToString(why))}}).Inc();
            observe::Log("scheduler").info("server {}: {}", server_id, claim.error().message);
            return Reply(std::move(done), MakeError(claim.error()));
        }
        json::object out{{"server_id", claim->server_id}, {"host", claim->host}};
        if (existed) {
            return Reply(std::move(done), ActionReply{false, json::serialize(out)});
        }
        ledger_.Put(*claim, Answer(std::move(done), std::move(out)));
    }

    boost::asio::io_context& io_;
    Placement& placement_;
    ClaimLedger& ledger_;
    runtime::Clock& clock_;
    observe::Histogram duration_;
    observe::Counter placed_, failed_;
    observe::CounterFamily failures_;
};

}  // namespace

std::shared_ptr<workflow::ServiceClient> MakeSchedulerService(boost::asio::io_context& io,
                                                              Placement& placement, ClaimLedger& ledger,
                                                              runtime::Clock& clock,
                                                              observe::Metrics* metrics) {
    return std::make_shared<SchedulerService>(io, placement, ledger, clock, metrics);
}

}  // namespace cogs::scheduler
