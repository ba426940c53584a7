// `cogs dev [--data-dir .cogs] [--port 8780] [--hosts 3] [--boot-ms 200] [--volume-driver file]`:
// the one-command local cloud. Internal to cogs/cli.
//
// 1. Creates D/run, D/logs, and once D/service.token (32 random bytes as hex, mode 0600: the secret
//    cogsd presents to the services). Refuses to start if D/dev.json names a live supervisor.
// 2. Starts on 127.0.0.1, each with --port-file D/run/<name>.port and its log in D/logs/<name>.log,
//    waiting for each port file (--start-timeout; a child that dies or is late: its log tail is
//    printed, the others are stopped, exit 1): cogs-network (D/network.db), cogs-volume
//    (D/volume.db, D/volumes), cogsd (--listen 127.0.0.1:<port>, --data-dir D, the service URLs,
//    --bootstrap-token-file D/admin.token, written on its first start), then cogs-compute-1..N
//    (hosts host-1..N, AZ nova, --control-url cogsd, --control-token-file D/admin.token).
// 3. Waits until GET /v1/hosts shows the N hosts up, then seeds through the API, idempotently (by
//    name): flavors m1.tiny (1 vCPU, 512 MiB, 1 GiB) and m1.small (1, 2048, 20), image cirros,
//    project demo.
// 4. Prints the endpoint, the admin token and `export COGS_URL=... COGS_TOKEN=...`; writes D/dev.json
//    atomically: api_url, data_dir, admin_token_file, supervisor_pid, processes [{name, pid, url, log}].
// 5. Supervises in the foreground: a child that exits is logged (with its log tail) and restarted on
//    the same port after a backoff (0.5 s doubling to 30 s; reset after 30 s of good run), and
//    dev.json is rewritten. SIGINT/SIGTERM (or the parent's death): the children are stopped in
//    reverse order (SIGTERM, 5 s, SIGKILL), dev.json is removed, exit 0.
//
// Restarted on the same data directory it comes back with everything (the state is in the
// databases, the admin token in D/admin.token, the API on the same port unless --port 0, which picks
// a free one each time; tests use it and read dev.json).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace cogs::cli {

struct DevOptions {
    std::string data_dir = ".cogs";
    uint16_t port = 8780;  // the API's port; 0 picks a free one (written to <data-dir>/dev.json)
    int hosts = 3;
    int boot_ms = 200;
    std::string volume_driver = "file";
    int start_timeout_s = 60;             // per child: its port file, then the hosts up
    std::vector<std::string> cogsd_args;  // appended to cogsd's (e.g. --lease-ttl-ms=1000)
};

// Starts the services, cogsd and the compute hosts as children, seeds the catalog, prints the
// endpoint and admin token, then supervises until SIGINT/SIGTERM. Returns the exit code.
int RunDev(const DevOptions& options, std::ostream& out, std::ostream& err);

}  // namespace cogs::cli
