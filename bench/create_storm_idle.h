// cogs-bench create-storm --idle-s N (create_storm.h): the control plane at rest before the storm,
// every host up and renewing its lease — what the hosts alone cost cogsd. Internal to the benchmark.
#pragma once

#include <boost/json.hpp>
#include <vector>

#include "bench/create_storm_checks.h"

namespace cogs::bench::storm {

// Over `seconds`: cogsd's CPU (its share of one core: `idle_cogsd_cpu_share`), the renewal requests
// it answered a second (`idle_renewal_requests_per_s`: batches and single heartbeats, from its
// cogs_http_requests_total), the host leases renewed a second (`idle_renewals_per_s`, from
// cogs_host_renewals_total) and the TTL it grants (`idle_lease_ttl_s`). `cogsd` names the group of
// `procs` that is the leading cogsd.
json::object MeasureIdle(const testing::DevCloud& dev, const std::vector<Accounted>& procs,
                         const std::string& cogsd, int seconds);

// cogsd's heap now by its allocator's count (its /metrics): `cogsd_allocated_kib` (what it holds)
// and `cogsd_mapped_kib` (that, plus what it freed and the allocator keeps); empty when cogsd does
// not export them (a sanitized build).
json::object CogsdHeap(const testing::DevCloud& dev);

}  // namespace cogs::bench::storm
