// `cogs dev [--data-dir .cogs] [--port 8780] [--hosts 3] [--boot-ms 200] [--volume-driver file]
//           [--store sqlite|postgres] [--replicas N] [--driver sim|container]`:
// the one-command local cloud. Internal to cogs/cli.
//
// 1. Creates D/run, D/logs, and once D/network.token, D/volume.token and D/agent.key (32 random
//    bytes as hex each, mode 0600: the tokens cogsd presents to the network and volume services, the
//    key every agent's token is derived from), and D/config/{services,workflows,hooks,kinds}.d: cogsd's
//    --config-dir, shared by every replica (docs/extending.md: files dropped there are applied by
//    `cogs extension reload`). Refuses to start if D/dev.json names a live supervisor.
//    Unless --no-tls, makes or completes the private CA D/pki (internal/dev_pki.h) and gives every
//    process below its certificate (--tls-cert, --tls-key), the CA as client CA (--tls-client-ca:
//    mutual TLS; cogsd's API asks without requiring) and as the CA of what it calls (--tls-ca), and
//    its certificate again as client certificate: every URL is then https.
// 2. Starts on 127.0.0.1, each with --port-file D/run/<name>.port and its log in D/logs/<name>.log,
//    waiting for each port file (--start-timeout; a child that dies or is late: its log tail is
//    printed, the others are stopped, exit 1): cogs-network (D/network.db, --token-file
//    D/network.token), cogs-volume (D/volume.db, D/volumes, --token-file D/volume.token), cogsd
//    (--listen 127.0.0.1:<port>, --data-dir D, the service URLs, the two token files and
//    --agent-key-file D/agent.key, --bootstrap-token-file D/admin.token, written on its first start
//    and renewed by a start when it nears its expiry: `cogs dev` waits until the file's token answers
//    GET /v1/whoami), then for each host: enrolls it through the API with the admin token (POST
//    /v1/hosts/host-<i>/enroll, at every start: the earlier credentials are revoked), writing its
//    credentials to D/hosts/host-<i>/host.token and agent.token (0600), and starts cogs-compute-<i>
//    (host host-<i>, AZ nova, --control-url cogsd, --control-token-file that host.token, --token-file
//    that agent.token): no agent holds the admin token. Every service is started with --test-routes
//    (fault injection, ledgers, the crash route: what tests and the chaos suite use).
//    With --store postgres (replicas, docs/ha.md): first a private PostgreSQL cluster in D/postgres
//    (pg::Cluster: initdb on the first start only, so the data survives `cogs dev` restarts; its
//    log D/logs/postgres.log, its port in D/run/postgres.port), then --replicas N (3) cogsd
//    cogsd-1..N instead of the one cogsd: --store <the cluster's connection string, database cogs>
//    --replica-id cogsd-<i> --data-dir D/cogsd-<i>, port file D/run/cogsd-<i>.port, cogsd-1 on
//    --port and the others on free ports (kept across their restarts), each with
//    --bootstrap-token-file D/admin.token (the first leader writes it), and --leader-ttl-ms 1000
//    --leader-renew-ms 200 unless --cogsd-arg sets either; every compute agent gets every replica's
//    URL (--control-url, repeated), so its heartbeats follow a failover.
// 3. Waits until GET /v1/hosts shows the N hosts up, then seeds through the API, idempotently (by
//    name): flavors m1.tiny (1 vCPU, 512 MiB, 1 GiB) and m1.small (1, 2048, 20), images cirros and
//    busybox (with --driver container the only one that boots), project demo. Then the users the
//    OpenStack clients log in as (cogs/cloud/openstack/face.h): admin (project admin, role admin) and
//    demo (project demo, role member), each with a random password made once and kept in
//    D/openstack/<user>.password (0600; the file is written before the user is created, so a stop in
//    between reuses it). A user that exists without its file is left alone and left out (said on
//    stderr): only its hash is kept server-side. Writes D/clouds.yaml (0600) with the clouds
//    cogs-admin and cogs-demo: auth {auth_url <api>/v3, username, password, project_name,
//    user_domain_name and project_domain_name Default}, region_name RegionOne, identity_api_version
//    3, interface public and, with TLS, cacert D/pki/ca.crt.
// 4. Prints the endpoint, the admin token and `export COGS_URL=... COGS_TOKEN=... COGS_CACERT=D/pki/ca.crt`
//    (COGS_CACERT only with TLS; with replicas: every replica's URL, any of which serves the API, and
//    the database), and `OS_CLIENT_CONFIG_FILE=D/clouds.yaml openstack --os-cloud cogs-demo server
//    list` (the OpenStack clients; with the clouds clouds.yaml has); writes D/dev.json
//    atomically: api_url (the first replica's), api_urls (every replica's), store, data_dir,
//    admin_token_file, ca_file (D/pki/ca.crt; "" with --no-tls), supervisor_pid, processes [{name, pid, url,
//    log}] and, with postgres, postgres {dir, data_dir, port, pid, log, conninfo, url}; with --driver
//    container, run_dir
//    (/run/cogs/dev-<hash>: host-<i>/runc is each agent's runc root).
// 5. Supervises in the foreground: a child that exits is logged (with its log tail) and restarted on
//    the same port after a backoff (0.5 s doubling to 30 s; reset after 30 s of good run), and
//    dev.json is rewritten. A replica that exits 75 (deposed: it lost its leader lease) is restarted
//    after 0.5 s, without delay growth, and comes back as a follower. A PostgreSQL server that dies
//    is restarted the same way (same port and directory; pg::Cluster::Restart).
//    SIGINT/SIGTERM (or the parent's death): the children are stopped in reverse order (SIGTERM,
//    5 s, SIGKILL), then PostgreSQL (fast shutdown, 10 s, then killed), dev.json is removed, exit 0.
//    A `cogs dev` that is SIGKILLed cannot stop PostgreSQL (which runs in its own process group):
//    the next `cogs dev` on that directory says so (kill -INT <pid> from D/postgres/data/postmaster.pid).
//
// --driver container (real instances, cogs/services/compute README "Drivers"): first checks for root,
// runc, /bin/busybox (busybox-static) and ip (iproute2) and, if any is missing, says which (and the
// package) and exits 1 before starting anything. Then gives every cogs-compute-i --driver container
// --instances-dir D/instances/host-i --runc-root /run/cogs/dev-<hash of D>/host-i/runc (a tmpfs;
// unique per data dir, so two local clouds never share runc state), cogs-network --driver linux, and
// once the hosts are up uploads the image "busybox" (internal/builtin_image.h; once per D), which
// the agents download from cogsd at its first boot on each host. The instances are containers that
// outlive their agents: Ctrl-C leaves them running and the next `cogs dev` on D adopts them; delete
// the servers first to leave nothing behind.
//
// --log-level LEVEL is passed to every child (cogs-network, cogs-volume, cogsd, cogs-compute-i).
// Secrets stay out of D/logs at every level: the admin token is printed on the terminal only
// (test/integration/secrets_test.cc greps every log for every secret of a run).
//
// Restarted on the same data directory it comes back with everything (the state is in the
// databases, the admin token in D/admin.token, the API on the same port unless --port 0, which picks
// a free one each time; tests use it and read dev.json). --store must stay the same: the SQLite and the
// PostgreSQL stores of one data dir are two separate clouds.
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
    // Given to every child as --log-level (trace, debug, info, ...); "" leaves each its default.
    std::string log_level;
    std::string store = "sqlite";  // or "postgres": replicas on a private PostgreSQL cluster
    int replicas = 0;              // cogsd replicas; 0: 1 with sqlite (more refused), 3 with postgres
    bool postgres_fsync = true;    // off: faster commits, lost only if the machine crashes
    // What runs the instances: "sim" (nothing runs) or "container" (real instances: every
    // cogs-compute --driver container; needs root, runc, /bin/busybox and ip).
    std::string driver = "sim";
    // TLS on every link (internal/dev_pki.h: a private CA in <data dir>/pki); false: plain HTTP.
    bool tls = true;
};

// What the machine lacks to run `cogs dev --driver container`, one line per missing thing, each
// saying how to get it (the Debian package); empty when nothing is missing. Blocking (stat calls).
std::vector<std::string> MissingForContainers();

// Starts the services, cogsd and the compute hosts as children, seeds the catalog, prints the
// endpoint and admin token, then supervises until SIGINT/SIGTERM. Returns the exit code.
int RunDev(const DevOptions& options, std::ostream& out, std::ostream& err);

}  // namespace cogs::cli
