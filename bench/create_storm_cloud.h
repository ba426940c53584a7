// cogs-bench create-storm (create_storm.h), the cloud it runs against: `cogs dev`, one more compute
// process serving many sim hosts, and what the storm needs in it (a project without quotas, a member
// token, a flavor, a network with a subnet large enough). Set-up is not timed: it uses the
// synchronous test client. Internal to the benchmark.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bench/create_storm.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench::storm {

// A cogs-compute process serving simulated hosts: where it listens, the agent token the checks
// present to it (its first host's), its pid.
struct SimAgent {
    std::string url, token;
    int pid = -1;
};

// `cogs dev` with options.hosts hosts (host-1..N) and, with options.sim_hosts > 0, more cogs-compute
// processes serving the simulated hosts, at most 1,000 each (process k: bench-sim-k-1..), registered
// with cogsd like `cogs dev`'s own.
class StormCloud {
public:
    // nullptr, and why on stderr, if a process did not start.
    static std::unique_ptr<StormCloud> Start(const CreateStormOptions& options);
    ~StormCloud();  // Stop()
    StormCloud(const StormCloud&) = delete;
    StormCloud& operator=(const StormCloud&) = delete;

    // The extra compute processes first, then `cogs dev`.
    void Stop();

    testing::DevCloud& dev() { return *dev_; }
    // The extra compute processes (none without sim hosts).
    const std::vector<SimAgent>& sims() const { return sims_; }
    // Every host the cloud must show up before the storm.
    const std::set<std::string>& hosts() const { return hosts_; }

private:
    StormCloud() = default;
    bool StartSim(const CreateStormOptions& options);

    std::unique_ptr<testing::DevCloud> dev_;
    std::vector<runtime::Child> sim_children_;
    std::vector<SimAgent> sims_;
    std::set<std::string> hosts_;
};

// What the storm sends with.
struct Setup {
    std::string project_id;
    std::string member_token;
    std::string network_id;
    std::string subnet_id;
};

// Creates, through the API, the project "bench" without quotas, a member token, the flavor
// bench.tiny and the network bench-net with a subnet for options.servers addresses, and waits for
// them; nullopt (and why, on stderr) if any step fails.
std::optional<Setup> SetUp(const testing::DevCloud& dev, const CreateStormOptions& options);

// Deletes the subnet and the network SetUp made and waits (up to 60 s each) until they are gone:
// with the linux network driver the network's bridge goes with it, which a data directory thrown
// away afterwards would otherwise leave on the machine. Servers on it must be gone first. False
// (and why, on stderr) if either is still there.
bool TearDown(const testing::DevCloud& dev, const Setup& setup);

// Waits (up to 90 s) until GET /v1/hosts shows every host of `wanted` up and enabled.
bool AwaitHostsUp(const testing::DevCloud& dev, const std::set<std::string>& wanted);

}  // namespace cogs::bench::storm
