// cogs-bench create-storm (create_storm.h), the checks and figures: after the storm, what cogsd says
// (GET /v1/hosts, the ACTIVE servers) against what the services hold (every compute agent's and the
// network service's own inventory); and the figures of the machine and of the processes (CPU, run
// queue wait, memory, the disk's fsync rate). Internal to the benchmark.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/create_storm.h"
#include "bench/create_storm_cloud.h"
#include "cogs/base/time.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench::storm {

namespace json = boost::json;

// ---- the checks after the storm ----

struct Usage {
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
};

struct Checks {
    int overcommitted_api = 0;     // used (GET /v1/hosts) above capacity × ratio
    int overcommitted_agents = 0;  // the agents' instances above capacity × ratio
    int overcommitted_hosts = 0;   // either
    int usage_mismatches = 0;      // hosts whose used (API) differs from the agents' sum
    int64_t instances = 0;         // held by the agents, in total
    int duplicate_addresses = 0;
    int addresses_missing = 0;  // an ACTIVE server's ip that the network service does not hold
    int64_t hosts_used = 0;     // hosts holding at least one instance
    int64_t max_per_host = 0;
};

// The checks; nullopt (and why, on stderr) if a listing or an inventory did not answer. `active`: the
// ACTIVE servers as the API lists them.
std::optional<Checks> Check(const testing::DevCloud& dev, const std::vector<SimAgent>& sims,
                            const std::vector<json::value>& active, const CreateStormOptions& o);

// Instances per host and each host's capacity, summed over every agent's own inventory (`cogs dev`'s
// and the sim hosts' processes); `instances` their number. nullopt if an agent did not answer.
std::optional<std::pair<std::map<std::string, Usage>, std::map<std::string, Usage>>> AgentUsage(
    const testing::DevCloud& dev, const std::vector<SimAgent>& sims, int64_t* instances);

// ---- figures ----

// Nearest-rank percentile of `v` (sorted here).
double Percentile(std::vector<double>& v, double p);

// The model name of the first CPU in /proc/cpuinfo.
std::string CpuModel();
// The disk's rate of 4 KiB append + fdatasync in `dir` for about `seconds` (what every commit of
// cogsd and the services waits for).
double MeasureFsyncs(const std::string& dir, double seconds);
// The 1-minute load average.
double LoadAverage();
// The pids of the processes whose parent is `pid` (PostgreSQL's backends under their postmaster).
std::vector<int> ChildPids(int pid);
// A field of /proc/<pid>/status in KiB ("VmRSS", "VmHWM"); 0 if absent.
int64_t StatusKib(int pid, const std::string& field);

// What the scheduler says of a process: CPU time and time spent runnable but waiting for a CPU,
// summed over its threads (/proc/<pid>/task/*/schedstat; threads gone since are not counted).
struct SchedTimes {
    double cpu_s = 0;
    double wait_s = 0;
};

// The processes whose CPU the benchmark accounts, grouped as reported.
struct Accounted {
    std::string group;  // "cogsd", "cogs-network", "cogs-volume", "compute", "postgres", "bench"
    int pid;
};

// CPU and run-queue wait of the accounted processes over an interval, by group.
class CpuMeter {
public:
    explicit CpuMeter(std::vector<Accounted> procs) : procs_(std::move(procs)) {}
    // From now on.
    void Start();
    // Per group since Start: {"cpu_s": {...}, "runq_wait_s": {...}, "wall_s"}.
    json::object Stop() const;

private:
    std::vector<Accounted> procs_;
    std::vector<SchedTimes> before_;
    SteadyTime start_{};
};

// JSON with numbers as people write them (Boost.JSON prints 233.0 as 2.33E2), on one line.
std::string Json(const json::value& v);

}  // namespace cogs::bench::storm
