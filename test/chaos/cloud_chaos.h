// cogs-chaos cloud and cogs-chaos host-failure: chaos against a whole local cloud (ChaosCloud,
// chaos_cloud.h) — process kills (cogsd amid bursts of requests too), frozen agents, partitions,
// service faults, instance crashes and lost replies under a mixed API workload that re-sends with
// its Idempotency-Key — and the checks a user would make afterwards: every accepted request ended,
// every re-send was answered as the first, nothing leaked or was done twice, no address or running
// server is held twice, servers meant to run do run, attachments agree everywhere (cloud_audit.h),
// and how fast host failures were detected and healed. Each prints one JSON object as its last line
// of stdout and logs what it injects (time, kind, target) to stderr.
#pragma once

#include <cstdint>
#include <string>

#include "test/chaos/chaos_cloud.h"

namespace cogs::testing {

struct CloudChaosOptions {
    uint64_t seed = 1;
    int duration_s = 60;  // of injection and workload; settling and checks come after
    int hosts = 6;
    double rate = 4;       // API operations started per second
    int settle_s = 180;    // after the run: how long accepted requests may take to end
    int converge_s = 120;  // then: how long the audit (cloud_audit.h) may take to find nothing
    int freeze_min_s = 5;  // an agent frozen (SIGSTOP) stays so for a random time in [min, max]
    int freeze_max_s = 20;
    int burst = 10;                 // requests sent at once; cogsd dies once a random share came back
    double reply_drop_rate = 0.05;  // share of the workload's requests whose reply is lost
    double echo_rate = 0.25;        // share of answered POSTs sent once more with their key (bursts: all)
    std::string dir;                // empty: a fresh temporary directory
    bool keep = false;              // keep the directory even when every check passes
    // `cogs-chaos ha`: cogsd as this many replicas on a private PostgreSQL (fsync on) with this leader
    // lease (docs/ha.md); 0: one cogsd on SQLite (`cogs-chaos cloud`). The cogsd faults are then the
    // leader's (SIGKILL, SIGSTOP, SIGKILL amid a burst), a follower's SIGKILL and PostgreSQL restarts.
    int replicas = 0;
    int leader_ttl_ms = 1000;  // cogsd's defaults
    int leader_renew_ms = 200;
    // `cogs-chaos ha --failover-only`: no workload, no other fault: `kills` leader losses (SIGKILL and
    // SIGSTOP in turn), each timed until the new leader answers a mutation.
    bool failover_only = false;
    int kills = 10;
};

// The cloud a run of these options starts in `dir` (timings in test/chaos/README.md).
ChaosCloudOptions ChaosCloudOptionsFor(const CloudChaosOptions& options, const std::string& dir);

// `cogs-chaos cloud`, and `cogs-chaos ha` (options.replicas > 0).
// Exit status: 0 when every check passed; 1 when one failed; 2 when the cloud could not start.
int RunCloudChaos(const CloudChaosOptions& options);

// `cogs-chaos ha --failover-only` (failover_bench.cc). Exit status: 0 when every failover was
// measured within 15 s and nothing was evacuated, fenced twice or thawed into a second leader; 1
// otherwise; 2 when the cloud could not start.
int RunFailoverBench(const CloudChaosOptions& options);

struct HostFailureOptions {
    uint64_t seed = 1;
    int hosts = 10;
    int servers = 100;  // placed on the hosts that fail, spread evenly
    int failing = 1;    // hosts that fail at once (their agents SIGKILLed together)
    // Hosts per cogs-compute process (ChaosCloudOptions::hosts_per_agent); 0: --failing (one agent
    // killed fails them all). --hosts and --failing must be multiples of it.
    int hosts_per_agent = 0;
    int evacuation_parallelism = 0;  // cogsd's --evacuation-parallelism; 0: its default
    // How much later than a lease's expiry cogsd may declare its host suspect (its liveness timer on
    // a busy io thread): the run fails if a failed host's lapse exceeds the TTL plus this.
    int timer_slack_ms = 500;
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
