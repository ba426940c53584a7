// cogs-bench create-storm --driver container (create_storm.h): the figures only real instances
// have. Internal to the benchmark.
//
// Boot time of one instance: request → ACTIVE of a single server created on an otherwise idle
// cloud (POST /v1/servers until GET /v1/servers/{id} first shows ACTIVE, polled every 5 ms), which
// is the whole of server.create: the port, placement, then the agent's create_instance — the image's
// copy, the bundle, the namespace, `runc run` — until the driver sees the process running. Each
// sample's server is deleted (and gone) before the next is created.
//
// Memory per running instance: for every instance, the memory of its container's cgroup
// (memory.usage_in_bytes on cgroup v1, memory.current on v2: the processes' anonymous memory plus
// the page cache charged to it, mostly its rootfs copy) plus the resident set (VmRSS) of what runs
// for it outside the cgroup — its shim and its `runc run` — divided by the instances. Each part is
// reported as well, and the RSS of the processes inside the cgroup (which counts busybox's shared
// pages in every instance).
#pragma once

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "bench/create_storm.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench::storm {

// `samples` servers created one at a time with `token` (flavor bench.tiny, image busybox, on
// `network_id`), each timed and deleted. {"boot_samples", "boot_p50_ms", "boot_p99_ms",
// "boot_max_ms", "boot_failed"}.
boost::json::object MeasureBootTimes(const testing::DevCloud& dev, const std::string& token,
                                     const std::string& network_id, int samples);

// The memory of the running instances `ids` (their cgroups under /cogs, their shims and runcs
// found under <data dir>/instances). {"instances_measured", "memory_per_instance_kib",
// "cgroup_kib_per_instance", "host_processes_rss_kib_per_instance",
// "processes_in_cgroup_rss_kib_per_instance"}.
boost::json::object InstanceMemory(const testing::DevCloud& dev, const std::vector<std::string>& ids);

// dev.json's run_dir (/run/cogs/dev-<hash>: the agents' runc roots), or "".
std::string RunDirOf(const testing::DevCloud& dev);

// The containers still known to runc under the cloud's runc roots (dev.json's run_dir); -1 if there
// is no run_dir.
int64_t ContainersLeft(const testing::DevCloud& dev);

// Force-deletes every container under the cloud's runc roots, with the network namespace and the
// cgroups named after it: what a delete's removal had not finished when the agents stopped. Returns
// how many there were.
int64_t SweepContainers(const testing::DevCloud& dev);

}  // namespace cogs::bench::storm
