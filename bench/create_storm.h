// cogs-bench create-storm: N servers requested at once through the REST API of a real local cloud
// (`cogs dev`: cogsd — or several replicas of it on PostgreSQL —, cogs-network, cogs-volume and
// compute agents as processes on 127.0.0.1, sim drivers or real containers), timed from each request to the
// first time the API shows the server ACTIVE, then checked for overcommitted hosts and duplicate addresses
// against the services' own inventories.
//
// Figures and method: bench/README.md. Progress goes to stderr; the last line on stdout is one JSON
// object of figures.
//
// Threading: RunCreateStorm runs on the calling thread (one io_context for the storm, synchronous
// calls for set-up and checks) and blocks until the cloud it started is stopped again.
#pragma once

#include <string>

namespace cogs::bench {

struct CreateStormOptions {
    int servers = 1000;  // servers requested at once
    // Servers per POST /v1/servers: 1, one request each; N > 1, bulk creates of N (`min_count` N,
    // docs/api.md "Bulk create"), ceil(servers / N) requests. Times are per server as with 1: from
    // its request to the first time the API shows it ACTIVE.
    int bulk = 1;
    int hosts = 3;         // compute processes of `cogs dev` (one host each: host-1 .. host-N)
    int sim_hosts = 40;    // hosts served by one extra `cogs-compute --hosts N` process (0: none)
    int boot_ms = 0;       // the sim driver's boot time, for every compute process
    int connections = 64;  // HTTP keep-alive connections carrying the storm
    int poll_ms = 25;      // pause between two rounds of status polling
    int deadline_s = 180;  // servers not ACTIVE or ERROR by then count as failed
    bool cleanup = true;   // delete every server afterwards and time it
    // "sqlite" (one cogsd) or "postgres" (`cogs dev --store postgres --replicas N`, a private
    // PostgreSQL with fsync on; the storm's requests are spread over every replica).
    std::string store = "sqlite";
    int replicas = 0;  // 0: `cogs dev`'s default (1 on sqlite, 3 on postgres)
    // The overcommit ratios cogsd places under (its defaults; `cogs dev` does not change them).
    double cpu_ratio = 4.0;
    double ram_ratio = 1.0;
    double disk_ratio = 1.0;
    // What runs the instances: "sim" (nothing) or "container" (`cogs dev --driver container`: real
    // containers under runc; root; no sim hosts; image busybox). With container, before the storm,
    // `boot_samples` single servers are created one at a time on the idle cloud (the boot time of
    // one instance), and after it the running instances' memory is measured (create_storm_real.h).
    std::string driver = "sim";
    int boot_samples = 10;
    // TLS on every link (`cogs dev`'s default; the storm's client verifies cogsd by the dev CA) or
    // plain HTTP (`cogs dev --no-tls`): the cost of TLS is the difference.
    bool tls = true;
    // Before the storm, with every host up: cogsd's CPU and the renewal load over this many seconds
    // (create_storm_idle.h); 0: not measured.
    int idle_s = 0;
    // Exit 3 unless every server ended ACTIVE and the checks found nothing (overcommit, duplicate or
    // missing addresses, cogsd's usage against the agents'): the benchmark as a test.
    bool check = false;
};

// Runs the benchmark; returns the process exit code (0 when it ran to the end and printed its
// figures, whatever they are; 1 if the cloud could not be started or set up).
int RunCreateStorm(const CreateStormOptions& options);

}  // namespace cogs::bench
