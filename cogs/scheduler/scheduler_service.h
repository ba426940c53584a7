// The scheduler as a micro-service of the engine's catalog, in process: workflows call
// `scheduler.claim`, `scheduler.move` and `scheduler.release` like any service, and this answers
// them from a Placement (placement.h) on the caller's io thread.
//
//   claim    {server_id, vcpus, ram_mb, disk_gb, availability_zone, traits, group_id, policy,
//             weigher} -> {server_id, host}: ClaimFor; idempotent per server_id (a replayed claim
//             answers the claim it made and decides nothing)
//   move     as claim, plus from_host: the claim leaves `from_host` (down or draining, so placement
//            skips it) — or a host that failed since an earlier move chose it — for another host.
//            Idempotent: a claim already elsewhere is the answer; if no host fits, the claim stays
//            where it was and the answer is retryable (capacity may come back)
//   release  {server_id} -> {server_id, released}: frees the claim (compensation of claim)
//
// Claims are durable through a ClaimLedger (cogsd keeps them in its store); an answer leaves only
// once what it reports is durable. Status polls answer kNotFound: claims are never long.
//
// Metrics (docs/metrics.md, "the cloud"), per new claim decision: cogs_placement_duration_seconds,
// cogs_placements_total{outcome}, cogs_placement_failures_total{reason} (the filter that eliminated
// the last candidates).
//
// Threading: every call on the io thread that owns the Placement; answers are posted, never inline.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "cogs/base/result.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/scheduler/placement.h"
#include "cogs/workflow/service.h"

namespace cogs::scheduler {

// Its actions, as workflows name them after "scheduler." (cogsd's catalog refuses any other).
inline constexpr std::array<std::string_view, 3> kServiceActions = {"claim", "move", "release"};

// Where claims are kept durably.
class ClaimLedger {
public:
    virtual ~ClaimLedger() = default;
    // Records `claim` (replacing the server's earlier one); `done` on the io thread once durable.
    virtual void Put(const Claim& claim, std::function<void(Status)> done) = 0;
    virtual void Erase(const std::string& server_id, std::function<void(Status)> done) = 0;
};

// `placement` and `ledger` must outlive the service; `metrics` may be null.
std::shared_ptr<workflow::ServiceClient> MakeSchedulerService(boost::asio::io_context& io,
                                                              Placement& placement, ClaimLedger& ledger,
                                                              runtime::Clock& clock,
                                                              observe::Metrics* metrics);

}  // namespace cogs::scheduler
