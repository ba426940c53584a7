// cogs-chaos cloud and cogs-chaos host-failure: chaos against a whole local cloud (ChaosCloud,
// chaos_cloud.h) — process kills, partitions, service faults and instance crashes under a mixed API
// workload — and the checks a user would make afterwards: every accepted request ended, nothing
// leaked, no address or running server is held twice, servers meant to run do run, and how fast host
// failures were detected and healed. Each prints one JSON object as its last line of stdout and logs
// what it injects (time, kind, target) to stderr.
#pragma once

#include <cstdint>
#include <string>

namespace cogs::testing {

struct CloudChaosOptions {
    uint64_t seed = 1;
    int duration_s = 60;  // of injection and workload; settling and checks come after
    int hosts = 6;
    double rate = 4;     // API operations started per second
    int settle_s = 180;  // after the run: how long accepted requests may take to end
    std::string dir;     // empty: a fresh temporary directory
    bool keep = false;   // keep the directory even when every check passes
};

// Exit status: 0 when every check passed; 1 when one failed; 2 when the cloud could not start.
int RunCloudChaos(const CloudChaosOptions& options);

struct HostFailureOptions {
    uint64_t seed = 1;
    int hosts = 10;
    int servers = 100;  // placed on the host that fails
    int runs = 3;
    int crashes = 20;     // instances crashed on a healthy host per run
    int timeout_s = 180;  // per measurement
    std::string dir;
    bool keep = false;
};

// Exit status: 0 when every run measured detection, heal and restarts; 1 otherwise; 2 when the
// cloud could not start.
int RunHostFailure(const HostFailureOptions& options);

}  // namespace cogs::testing
