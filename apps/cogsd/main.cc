// cogsd: the control plane. Serves the REST API (docs/api.md), runs every operation as a durable
// workflow (workflows/cloud/*.yaml) against the micro-services, places servers on hosts.
//
//   cogsd --data-dir .cogs --listen 127.0.0.1:8780 --network-url http://127.0.0.1:P
//         --volume-url http://127.0.0.1:P --network-token-file .cogs/network.token
//         --volume-token-file .cogs/volume.token --agent-key-file .cogs/agent.key
//         --bootstrap-token-file .cogs/admin.token
//
// Credentials (docs/api.md "Hosts and their credentials"): cogsd presents the network and the volume
// service each its own token, and each compute host's agent that agent's own token, derived from
// the agent key (the same file on every replica). Without all three files it refuses to start,
// unless --insecure (development only: it then presents none of those it lacks).
//
// Replicas (docs/ha.md): with --store postgresql://... several cogsd share one database. Each runs
// an election (cogs/store/leadership.h); a follower serves /healthz and /metrics and forwards every
// other request to the leader (cogs/replica/forwarder.h). The replica that is elected builds the
// leader's stack — its store fenced by its leader token, the engine (which resumes every workflow in
// flight), the cloud (loaded from the store, its loops started after the restart grace) — and serves
// the API itself while its lease is valid. A leader that is deposed exits at once (code 75): its
// supervisor starts it again, as a follower; nothing of its memory decides anything any more.
//
// Secrets: the bootstrap admin token goes to --bootstrap-token-file (default DATA_DIR/admin.token,
// mode 0600), renewed at a start when it nears its expiry (--admin-token-ttl-hours), and never to
// the log. Every change asked of the API is in the audit log (GET /v1/audit; --audit-retention-hours,
// --audit-max).
// TLS (cogs/services/kit/tls.h; docs/runbook.md "Certificates"): --tls-cert/--tls-key serve the API
// over TLS only; --tls-client-ca asks every client for a certificate without requiring one (agents
// show their host's, which must name the host they register or heartbeat for; tenants need none).
// --tls-ca (and --tls-client-cert/--tls-client-key, cogsd's own certificate, CN "cogsd") is how
// cogsd calls the network and volume services, every agent (whose certificate must name its host)
// and the other replicas. Every certificate is reloaded on SIGHUP and when its files change.
//
// Extensions (docs/extending.md, cogs/extend): --config-dir (default DATA_DIR/config) holds the
// operator's services.d, workflows.d and hooks.d; applied at start (a bad file keeps cogsd from
// starting, naming it) and again on SIGHUP or POST /v1/extensions/reload, all or nothing.
//
// Observability: GET /metrics (no token) on the API's port, one Prometheus registry shared by the
// engine, the store, the cloud and the API (docs/metrics.md); JSON log lines on stderr
// (--log-format text for people); GET/PUT /v1/log-levels (admin) changes levels at run time.
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <functional>
#include <thread>

#include "cogs/base/paths.h"
#include "cogs/cloud/cloud.h"
#include "cogs/extend/host.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/replica/forwarder.h"
#include "cogs/runtime/files.h"
#include "cogs/scheduler/scheduler_service.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/services/kit/tls_flags.h"
#include "cogs/services/network/network.h"
#include "cogs/services/volume/volume.h"
#include "cogs/store/leadership.h"
#include "cogs/store/store.h"
#include "cogs/store/store_metrics.h"
#include "cogs/wire/answer.h"
#include "cogs/wire/host_routes.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"

namespace {

using namespace cogs;

int Fail(const std::string& what) {
    spdlog::critical("{}", what);
    return 1;
}

// A deposed leader, or a leader that cannot build its stack: out at once, without running
// destructors that could still write or answer (the supervisor restarts it as a follower).
constexpr int kExitDeposed = 75;  // EX_TEMPFAIL
[[noreturn]] void ExitNow(const std::string& why) {
    spdlog::critical("{}: exiting (code {}) so that nothing this replica holds in memory acts again", why,
                     kExitDeposed);
    spdlog::default_logger()->flush();
    std::_Exit(kExitDeposed);
}

bool IsPostgresUrl(const std::string& s) {
    return s.starts_with("postgresql://") || s.starts_with("postgres://") || s.find('=') != std::string::npos;
}

// Everything a leader runs: its store, the workflow versions, the engine, the cloud. With SQLite the
// one process builds it at start; a replica builds it when it is elected.
struct Leader {
    std::unique_ptr<store::Store> store;
    std::unique_ptr<workflow::Registry> registry;
    workflow::ServiceCatalog catalog;
    std::unique_ptr<workflow::Engine> engine;
    std::unique_ptr<extend::ExtensionHost> extensions;  // the catalog's configured part, the versions
    std::unique_ptr<cloud::Cloud> cloud;
    http::Handler api;  // the cloud's
};

struct LeaderConfig {
    std::string workflows_dir;
    std::string config_dir;  // services.d, workflows.d, hooks.d (cogs/extend)
    std::string bootstrap_token_file;
    std::string network_token, volume_token;
    std::shared_ptr<http::TlsContext> service_tls;  // cogsd's client context; null: plain HTTP
    http::Endpoint network, volume;
    workflow::EngineOptions engine_options;
    cloud::CloudOptions cloud_options;
};

template <size_t N>
std::vector<std::string> Names(const std::array<std::string_view, N>& actions) {
    return {actions.begin(), actions.end()};
}

// Applies the workflows and the configuration directory again (extend/host.h), and says so.
Result<std::string> ReloadExtensions(extend::ExtensionHost& host) {
    auto r = host.Reload();
    if (!r) {
        spdlog::error("configuration refused, nothing changed: {}", r.error().message);
    } else {
        spdlog::info("configuration applied: {}", *r);
    }
    return r;
}

Result<std::unique_ptr<Leader>> BuildLeader(boost::asio::io_context& io, const LeaderConfig& config,
                                            std::unique_ptr<store::Store> store) {
    auto l = std::make_unique<Leader>();
    l->store = std::move(store);
    l->registry = std::make_unique<workflow::Registry>(l->store.get());
    if (auto st = l->registry->LoadFromStore(); !st) {
        return MakeError(st.error().code, "workflow versions: " + st.error().ToString());
    }
    l->catalog.Add("network",
                   services::kit::MakeHttpServiceClient(io, config.network.host, config.network.port,
                                                        "network", 256, config.network_token,
                                                        config.network.tls ? config.service_tls : nullptr),
                   Names(services::network::kActions));
    l->catalog.Add("volume",
                   services::kit::MakeHttpServiceClient(io, config.volume.host, config.volume.port, "volume",
                                                        256, config.volume_token,
                                                        config.volume.tls ? config.service_tls : nullptr),
                   Names(services::volume::kActions));
    l->engine =
        std::make_unique<workflow::Engine>(io, *l->store, *l->registry, l->catalog, config.engine_options);
    extend::HostOptions host_options{config.workflows_dir, config.config_dir, config.service_tls};
    host_options.kinds = [leader = l.get()](const std::vector<cloud::KindSpec>& kinds, bool apply) {
        return leader->cloud->SetKinds(kinds, apply);
    };
    l->extensions =
        std::make_unique<extend::ExtensionHost>(io, host_options, l->catalog, *l->engine, *l->registry);
    cloud::CloudOptions cloud_options = config.cloud_options;
    cloud_options.extensions.describe = [host = l->extensions.get()] { return host->Describe(); };
    cloud_options.extensions.reload = [host = l->extensions.get()] { return ReloadExtensions(*host); };
    l->cloud = std::make_unique<cloud::Cloud>(io, *l->store, *l->engine, *l->registry, cloud_options);
    l->catalog.Add("scheduler", l->cloud->SchedulerService(), Names(scheduler::kServiceActions));
    l->catalog.Add("compute", l->cloud->ComputeService(), Names(services::compute::kActions));
    // The workflows (with the configuration's hooks) and the configured services: a workflow that
    // names a service or an action cogsd does not have is refused here, naming its file and line,
    // before any version of it is stored (the constructors above only keep references).
    if (auto applied = ReloadExtensions(*l->extensions); !applied) return MakeError(applied.error());
    if (auto st = l->engine->Recover(); !st)
        return MakeError(st.error().code, "recover: " + st.error().ToString());
    if (auto st = l->cloud->Load(); !st) return MakeError(st.error().code, "load: " + st.error().ToString());
    // The bootstrap admin token lives in its file alone (0600, on the control plane's disk: the root
    // of trust); a log line names the file, never the secret. Renewed here when it has expired or
    // is about to (cloud.h, Bootstrap).
    auto current = runtime::ReadTokenFile(config.bootstrap_token_file);
    auto secret = l->cloud->Bootstrap(current ? *current : std::string());
    if (!secret) return MakeError(secret.error().code, "bootstrap: " + secret.error().ToString());
    if (!secret->empty()) {
        if (auto st = runtime::WriteFileAtomic(config.bootstrap_token_file, *secret + "\n", 0600); !st) {
            return MakeError(st.error().code, "--bootstrap-token-file: " + st.error().message);
        }
        spdlog::info("a new bootstrap admin token is in {}", config.bootstrap_token_file);
    }
    l->cloud->Start();
    l->api = l->cloud->Handler();
    return l;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cogsd: the cogs control plane"};
    std::string data_dir = ".cogs";
    std::string listen = "127.0.0.1:8780";
    std::string port_file, network_url, volume_url, bootstrap_token_file, workflows_dir, config_dir;
    std::string network_token_file, volume_token_file, agent_key_file;
    bool insecure = false;
    std::string log_level = "info";
    std::string log_format = "json";
    int64_t idempotency_ttl_s = 24 * 3600;
    int64_t lease_ttl_ms = 3000, fence_window_ms = 1000, restart_grace_ms = 10000, reconcile_ms = 10000,
            orphan_grace_ms = 60000;
    size_t max_inflight_workflows = 100000;
    workflow::EngineOptions engine_options;
    int64_t breaker_open_ms = 1000;
    size_t max_body = 1 << 20;
    size_t max_connections = 10000, max_connections_per_address = 1000;
    cloud::CloudOptions cloud_options;
    std::string store_url;
    std::string replica_id, advertise_url;
    int64_t leader_ttl_ms = 1000, leader_renew_ms = 200;
    app.add_option("--data-dir", data_dir, "where the store lives (cogsd.db)")->capture_default_str();
    app.add_option("--store", store_url,
                   "the store: empty for SQLite in --data-dir; postgresql://USER@HOST:PORT/DB (or a libpq "
                   "connection string) for replicas on PostgreSQL (docs/ha.md; a password goes in ~/.pgpass "
                   "or PGPASSWORD)");
    app.add_option("--replica-id", replica_id,
                   "this replica's name among those of one database (default: HOSTNAME:PORT)");
    app.add_option("--advertise-url", advertise_url,
                   "where the other replicas reach this one's API (default: http://LISTEN_HOST:PORT)");
    app.add_option("--leader-ttl-ms", leader_ttl_ms,
                   "a leader that has not renewed its lease this long is replaced (replicas only)")
        ->check(CLI::Range(int64_t{200}, int64_t{600000}))
        ->capture_default_str();
    app.add_option("--leader-renew-ms", leader_renew_ms,
                   "how often the leader renews its lease and followers look for one (replicas only)")
        ->check(CLI::Range(int64_t{20}, int64_t{60000}))
        ->capture_default_str();
    app.add_option("--listen", listen, "HOST:PORT of the API (port 0: any free port)")->capture_default_str();
    app.add_option("--port-file", port_file, "write the bound port here once listening");
    app.add_option("--network-url", network_url, "the network service, http://HOST:PORT")->required();
    app.add_option("--volume-url", volume_url, "the volume service, http://HOST:PORT")->required();
    app.add_option("--network-token-file", network_token_file,
                   "the token cogsd presents to the network service (its --token-file)");
    app.add_option("--volume-token-file", volume_token_file,
                   "the token cogsd presents to the volume service (its --token-file)");
    app.add_option("--agent-key-file", agent_key_file,
                   "the key each compute agent's token is derived from (the same on every replica; "
                   "POST /v1/hosts/{name}/enroll gives a host its token)");
    app.add_flag(
        "--insecure", insecure,
        "start without the credential files above (development only: what is missing is not presented)");
    app.add_option("--bootstrap-token-file", bootstrap_token_file,
                   "the bootstrap admin token's secret (mode 0600): written on the first start, and again "
                   "when it has expired or has less than half its TTL left (default: DATA_DIR/admin.token)");
    services::kit::AddDurationFlag<std::ratio<3600>>(
        app, "--admin-token-ttl-hours", cloud_options.admin_token_ttl,
        "an admin token created without expires_in_s (the bootstrap token too) expires after this (0: never)",
        "720");
    app.add_option("--workflows", workflows_dir,
                   "directory of workflow YAML (default: the project's workflows/cloud)");
    app.add_option(
        "--config-dir", config_dir,
        "the operator's extensions: services.d/, workflows.d/, hooks.d/ of YAML (docs/extending.md), "
        "applied again on SIGHUP or POST /v1/extensions/reload (default: DATA_DIR/config)");
    app.add_option("--lease-ttl-ms", lease_ttl_ms, "a host whose agent renews no lease this long is suspect")
        ->check(CLI::Range(int64_t{100}, int64_t{3600000}))
        ->capture_default_str();
    app.add_option(
           "--max-renewals-per-s", cloud_options.max_renewals_per_s,
           "host lease renewals a second the TTL is sized for: TTL = max(--lease-ttl-ms, 3 x hosts / this) "
           "(0: the TTL is --lease-ttl-ms whatever the number of hosts)")
        ->check(CLI::Range(int64_t{0}, int64_t{1000000}))
        ->capture_default_str();
    app.add_option("--fence-window-ms", fence_window_ms,
                   "a suspect host is down (and evacuated) this much later: its agent has fenced itself")
        ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
        ->capture_default_str();
    app.add_option("--restart-grace-ms", restart_grace_ms, "no host is declared down this long after start")
        ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
        ->capture_default_str();
    app.add_option("--max-down-fraction", cloud_options.max_down_fraction,
                   "more hosts than this fraction suspect or down at once pauses evacuation")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--evacuation-parallelism", cloud_options.evacuation_parallelism,
                   "evacuations and migrations in flight at once")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--reconcile-ms", reconcile_ms,
                   "how often the reconcilers compare inventories with the desired state")
        ->check(CLI::Range(int64_t{100}, int64_t{86400000}))
        ->capture_default_str();
    app.add_option("--reconcile-records-per-s", cloud_options.reconcile_records_per_s,
                   "records (servers, ports, volumes, networks, subnets) a second the pass interval is "
                   "sized for: interval = max(--reconcile-ms, records / this) (0: --reconcile-ms "
                   "whatever the cloud's size)")
        ->check(CLI::Range(int64_t{0}, int64_t{100000000}))
        ->capture_default_str();
    app.add_option("--orphan-grace-ms", orphan_grace_ms, "what nothing owns is removed after this long")
        ->check(CLI::Range(int64_t{0}, int64_t{86400000}))
        ->capture_default_str();
    app.add_option("--breaker-failures", engine_options.breaker.failure_threshold,
                   "failed calls in a row that open a service endpoint's circuit breaker")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    app.add_option(
           "--breaker-open-ms", breaker_open_ms,
           "an open breaker lets a probe through after this long (doubling to 30 s while probes fail)")
        ->check(CLI::Range(int64_t{1}, int64_t{3600000}))
        ->capture_default_str();
    app.add_option("--max-inflight-workflows", max_inflight_workflows,
                   "workflows running at once; beyond, requests that start one get 429")
        ->check(CLI::Range(size_t{1}, size_t{10000000}))
        ->capture_default_str();
    app.add_option("--cpu-ratio", cloud_options.cpu_ratio, "vCPU overcommit")
        ->check(CLI::Range(0.1, 64.0))
        ->capture_default_str();
    app.add_option("--ram-ratio", cloud_options.ram_ratio, "RAM overcommit")
        ->check(CLI::Range(0.1, 64.0))
        ->capture_default_str();
    app.add_option("--disk-ratio", cloud_options.disk_ratio, "disk overcommit")
        ->check(CLI::Range(0.1, 64.0))
        ->capture_default_str();
    // Admission (docs/api.md "Admission: lanes and limits"): the defaults and why are there.
    cloud::AdmissionOptions& admission = cloud_options.admission;
    admission.max_inflight_per_project = 1024;
    admission.rate = 200;
    admission.burst = 1000;
    admission.admin_rate = 1000;
    admission.admin_burst = 5000;
    cloud_options.max_inflight_workflows_per_project = 2000;
    app.add_option("--max-inflight-requests", admission.max_inflight,
                   "tenant requests in flight at once (every route but the agents' registrations and "
                   "heartbeats); beyond: 429")
        ->check(CLI::Range(size_t{1}, size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--max-inflight-system", admission.max_inflight_system,
                   "hosts' registrations and heartbeats in flight at once, a lane of their own that tenant "
                   "traffic cannot fill; beyond: 429")
        ->check(CLI::Range(size_t{1}, size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--max-inflight-per-project", admission.max_inflight_per_project,
                   "requests of one project in flight at once (0: no limit); beyond: 429")
        ->check(CLI::Range(size_t{0}, size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--max-inflight-workflows-per-project", cloud_options.max_inflight_workflows_per_project,
                   "workflows of one project running at once (0: no limit); beyond, requests that start one "
                   "get 429")
        ->check(CLI::Range(size_t{0}, size_t{10000000}))
        ->capture_default_str();
    app.add_option("--max-servers-per-request", cloud_options.max_servers_per_request,
                   "the most servers one POST /v1/servers may ask for (its max_count); beyond: 400")
        ->check(CLI::Range(int64_t{1}, int64_t{100000}))
        ->capture_default_str();
    app.add_option("--rate-per-token", admission.rate,
                   "requests per second a member or reader token may make, on average (0: no limit); beyond: "
                   "429 with Retry-After")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    app.add_option("--burst-per-token", admission.burst,
                   "requests such a token may make at once after a pause")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    app.add_option("--admin-rate-per-token", admission.admin_rate,
                   "requests per second an admin token may make, on average (0: no limit)")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    app.add_option("--admin-burst-per-token", admission.admin_burst,
                   "requests an admin token may make at once after a pause")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    app.add_option(
           "--max-connections", max_connections,
           "open connections to the API at once, at most the process's descriptor limit less 512 (0: that "
           "much); beyond, a new one is closed at once")
        ->capture_default_str();
    app.add_option("--max-connections-per-address", max_connections_per_address,
                   "open connections from one client address at once (0: no limit); beyond, a new one is "
                   "closed at once")
        ->capture_default_str();
    app.add_option("--max-body-bytes", max_body, "largest request body")->capture_default_str();
    app.add_option("--max-image-bytes", cloud_options.max_image_bytes,
                   "largest image archive an upload may be (PUT /v1/images/{id}/file; beyond: 413)")
        ->capture_default_str();
    app.add_option("--log-level", log_level,
                   "trace, debug, info, warn, error (every component; change at run "
                   "time with PUT /v1/log-levels)")
        ->capture_default_str();
    app.add_option("--log-format", log_format, "json (one object per line) or text")
        ->check(CLI::IsMember({"json", "text"}))
        ->capture_default_str();
    // --NAME-retention-hours and --NAME-max: what is kept of `what`, by age then by count.
    const auto retention = [&app](const std::string& name, const std::string& what, Duration& keep_for,
                                  int64_t& keep_at_most, int64_t min_kept, const std::string& hours) {
        services::kit::AddDurationFlag<std::ratio<3600>>(app, "--" + name + "-retention-hours", keep_for,
                                                         what + " older than this are pruned", hours)
            ->check(CLI::Range(0.01, 24.0 * 3650));
        app.add_option("--" + name + "-max", keep_at_most,
                       "at most this many " + what + " are kept (the oldest go first)")
            ->check(CLI::Range(min_kept, int64_t{1} << 40))
            ->capture_default_str();
    };
    retention("event", "events", cloud_options.event_retention, cloud_options.event_max, 1, "168");
    retention("workflow", "ended workflows (succeeded, rolled back)",
              cloud_options.workflow_retention.keep_for, cloud_options.workflow_retention.keep_at_most, 0,
              "168");
    retention("failed-workflow", "failed workflows (waiting for an operator's retry)",
              cloud_options.workflow_retention.failed_keep_for,
              cloud_options.workflow_retention.failed_keep_at_most, 0, "720");
    retention("audit", "audit log entries", cloud_options.audit_retention, cloud_options.audit_max, 1,
              "2160");
    app.add_option("--idempotency-ttl-s", idempotency_ttl_s, "an Idempotency-Key is remembered this long")
        ->check(CLI::Range(int64_t{1}, int64_t{3650} * 24 * 3600))
        ->capture_default_str();
    app.add_option("--idempotency-max-per-project", cloud_options.idempotency_max_per_project,
                   "a project keeps at most this many Idempotency-Keys (the oldest go first)")
        ->check(CLI::Range(size_t{1}, size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--idempotency-max", cloud_options.idempotency_max,
                   "the cloud keeps at most this many Idempotency-Keys, of every project (the oldest go "
                   "first; 0: no cloud-wide cap)")
        ->check(CLI::Range(size_t{0}, size_t{1} << 30))
        ->capture_default_str();
    services::kit::TlsOptions tls;
    services::kit::AddTlsFlags(app, tls, /*allowed_clients=*/false);
    CLI11_PARSE(app, argc, argv);
    {
        auto format = observe::ParseLogFormat(log_format);
        if (!format) return Fail("--log-format: " + format.error().message);
        observe::LogOptions log_options;
        log_options.process = "cogsd";
        log_options.format = *format;
        log_options.level = log_level;
        if (auto st = observe::SetupLogging(log_options); !st) {
            return Fail("--log-level: " + st.error().message);
        }
        // Made now so that GET /v1/log-levels lists them before their first line.
        for (const char* component : {"api", "cloud", "scheduler", "engine"}) {
            observe::Log(component);
        }
    }
    if (bootstrap_token_file.empty()) bootstrap_token_file = data_dir + "/admin.token";
    cloud_options.idempotency_ttl = std::chrono::seconds(idempotency_ttl_s);
    cloud_options.lease_ttl = std::chrono::milliseconds(lease_ttl_ms);
    cloud_options.fence_window = std::chrono::milliseconds(fence_window_ms);
    cloud_options.restart_grace = std::chrono::milliseconds(restart_grace_ms);
    cloud_options.reconcile_every = std::chrono::milliseconds(reconcile_ms);
    cloud_options.orphan_grace = std::chrono::milliseconds(orphan_grace_ms);
    cloud_options.inventory_urls = {{"network", network_url}, {"volume", volume_url}};

    auto listen_ep = http::ParseHostPort(listen);
    auto network_ep = http::ParseHttpUrl(network_url);
    auto volume_ep = http::ParseHttpUrl(volume_url);
    if (!listen_ep) return Fail("--listen: expected HOST:PORT, got '" + listen + "'");
    if (!network_ep) return Fail("--network-url: expected http://HOST:PORT, got '" + network_url + "'");
    if (!volume_ep) return Fail("--volume-url: expected http://HOST:PORT, got '" + volume_url + "'");
    for (auto [flag, file, into] :
         {std::tuple{"--network-token-file", &network_token_file, &cloud_options.network_token},
          std::tuple{"--volume-token-file", &volume_token_file, &cloud_options.volume_token},
          std::tuple{"--agent-key-file", &agent_key_file, &cloud_options.agent_key}}) {
        if (file->empty()) {
            if (!insecure) {
                return Fail(std::string("no ") + flag +
                            ": cogsd needs the network and volume services' tokens and the agents' key (or "
                            "--insecure, for development only)");
            }
            spdlog::warn("--insecure: no {}: none is presented where it would be", flag);
            continue;
        }
        auto t = runtime::ReadTokenFile(*file);
        if (!t) return Fail(std::string(flag) + ": " + t.error().message);
        *into = *t;
    }
    if (auto st = services::kit::CheckTlsOptions(tls); !st) return Fail(st.error().message);
    // Tenants come without a certificate: asked for, not required (a wrong one is still refused).
    auto server_tls = services::kit::MakeServerTlsFrom(tls, /*require_client_cert=*/false);
    if (!server_tls) return Fail("tls: " + server_tls.error().message);
    auto client_tls = services::kit::MakeClientTlsFrom(tls);
    if (!client_tls) return Fail("tls: " + client_tls.error().message);
    for (const auto& [flag, ep] :
         {std::pair{"--network-url", &*network_ep}, std::pair{"--volume-url", &*volume_ep}}) {
        if (ep->tls && *client_tls == nullptr) return Fail(std::string(flag) + " is https: give --tls-ca");
    }
    // Each service, agent and replica is called over TLS exactly when its URL is https.
    cloud_options.service_tls = *client_tls;
    cloud_options.api_tls = *server_tls != nullptr;
    std::error_code fs_ec;
    std::filesystem::create_directories(data_dir, fs_ec);
    if (fs_ec) return Fail("--data-dir " + data_dir + ": " + fs_ec.message());
    // Image uploads and downloads pass through files here (cogs/cloud/resources/images.h); what a
    // crash left is garbage.
    const std::string spool_dir = data_dir + "/spool";
    std::filesystem::remove_all(spool_dir, fs_ec);
    std::filesystem::create_directories(spool_dir, fs_ec);
    if (fs_ec) return Fail("--data-dir " + data_dir + ": cannot make " + spool_dir + ": " + fs_ec.message());
    cloud_options.image_spool_dir = spool_dir;
    const bool replicated = !store_url.empty();
    if (replicated && !IsPostgresUrl(store_url)) {
        return Fail("--store: expected postgresql://USER@HOST:PORT/DB or a libpq connection string, got '" +
                    store_url + "'");
    }
    if (replicated && leader_renew_ms * 2 > leader_ttl_ms) {
        return Fail("--leader-renew-ms must be at most half of --leader-ttl-ms");
    }
    // A dead leader's lease must run out (and the followers say no_leader, which agents take as a
    // renewal) before the hosts' leases do, counting an agent's heartbeat period (a third of the
    // lease) since its last renewal: else every agent fences itself during a failover.
    if (replicated && leader_ttl_ms + leader_renew_ms + lease_ttl_ms / 3 >= lease_ttl_ms) {
        return Fail(
            "--leader-ttl-ms + --leader-renew-ms must be below two thirds of --lease-ttl-ms (docs/ha.md)");
    }

    // One registry for the process: what GET /metrics shows. Declared before everything that
    // holds handles into it, so it outlives them.
    observe::Metrics metrics;
    LeaderConfig config;
    config.bootstrap_token_file = bootstrap_token_file;
    config.network_token = cloud_options.network_token;
    config.volume_token = cloud_options.volume_token;
    config.service_tls = *client_tls;
    config.network = *network_ep;
    config.volume = *volume_ep;
    if (workflows_dir.empty()) {
        workflows_dir = base::FindProjectPath("workflows/cloud");
        if (workflows_dir.empty()) return Fail("cannot find workflows/cloud: pass --workflows DIR");
    }
    config.workflows_dir = workflows_dir;
    config.config_dir = config_dir.empty() ? data_dir + "/config" : config_dir;
    engine_options.breaker.open_for = std::chrono::milliseconds(breaker_open_ms);
    // One owner name for every replica: a new leader's lease supersedes the old one's at once, so
    // the workflows it left are claimable without waiting for that lease to run out (its writes
    // are fenced by the leader token anyway).
    engine_options.owner = "cogsd";
    engine_options.metrics = &metrics;
    engine_options.max_inflight = max_inflight_workflows;
    cloud_options.metrics = &metrics;
    config.engine_options = engine_options;

    boost::asio::io_context io(1);
    std::unique_ptr<Leader> leader;
    std::unique_ptr<store::Elector> elector;
    std::unique_ptr<replica::Forwarder> forwarder;
    std::string store_name = data_dir + "/cogsd.db";

    // The API: the leader's own while it leads and its lease is confirmed, else the forwarder's.
    // A leader that has not confirmed its lease for longer than its TTL (the database is out of
    // reach) may have been replaced: it answers everything 503 no_leader. A heartbeat still renews
    // the host's lease in its memory (so that, if it goes on leading, the gap is not taken for a
    // dead host), but the agent is told no_leader (docs/ha.md: it keeps its lease for a bounded
    // time and tries the other replicas meanwhile).
    http::Handler api = [&](http::Request req, http::Respond respond) {
        if (leader != nullptr) {
            if (elector == nullptr || elector->LeaseValid()) {
                return leader->api(std::move(req), std::move(respond));
            }
            Error e(ErrorCode::kUnavailable,
                    "this replica led but has not confirmed its lease with the database for longer than its "
                    "TTL: it answers nothing until it has (another replica may be taking over)");
            e.reason = "no_leader";
            if (wire::IsLeaseRenewal(req.method, req.Path())) {
                return leader->api(std::move(req), [respond = std::move(respond), e](http::Response) {
                    respond(wire::ApiError(e));
                });
            }
            return respond(wire::ApiError(e));
        }
        if (forwarder != nullptr) {
            return forwarder->Handler()(std::move(req), std::move(respond));
        }
        respond(wire::ApiError(Error(ErrorCode::kUnavailable, "starting")));
    };

    if (!replicated) {
        store::SqliteOptions store_options;
        store_options.path = store_name;
        store_options.on_commit = store::CommitMetrics(&metrics);
        store_options.on_writable = store::WritableMetrics(&metrics);
        auto store = store::OpenSqliteStore(store_options);
        if (!store) return Fail("store: " + store.error().ToString());
        config.cloud_options = cloud_options;
        auto built = BuildLeader(io, config, std::move(*store));
        if (!built) return Fail(built.error().ToString());
        leader = std::move(*built);
    }

    http::ServerOptions server_options;
    server_options.host = listen_ep->host;
    server_options.port = listen_ep->port;
    server_options.max_body_bytes = max_body;
    server_options.spool_body = cloud::IsImageUpload;  // on a follower too: it forwards the file
    server_options.spool_dir = spool_dir;
    server_options.max_spooled_body_bytes = cloud_options.max_image_bytes;
    server_options.error_answer = wire::ApiError;  // 413, 414, 431, 400 in the API's error shape
    {
        // A cap above what the process may open would never act (accept fails first, for every
        // client alike): raise the descriptor limit to its hard limit, and keep the cap under it with
        // room for the store, the services' and agents' connections and the logs.
        rlimit nofile{};
        if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
            if (nofile.rlim_cur < nofile.rlim_max) {
                rlimit raised = nofile;
                raised.rlim_cur = nofile.rlim_max;
                if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
            }
            constexpr rlim_t kReserved = 512;
            const rlim_t room =
                nofile.rlim_cur > 2 * kReserved ? nofile.rlim_cur - kReserved : nofile.rlim_cur / 2;
            if (nofile.rlim_cur != RLIM_INFINITY && (max_connections == 0 || max_connections > room)) {
                spdlog::warn("--max-connections {} lowered to {}: the process may open {} descriptors",
                             max_connections, room, nofile.rlim_cur);
                max_connections = static_cast<size_t>(room);
            }
        }
    }
    server_options.max_connections = max_connections;
    server_options.max_connections_per_address = max_connections_per_address;
    {
        auto refused = observe::CounterOf(&metrics, "cogs_http_connections_refused_total",
                                          "API connections closed at accept, by the cap they were over: "
                                          "total, per_address.");
        server_options.on_connection_refused =
            [total = refused.With({{"reason", "total"}}),
             per_address = refused.With({{"reason", "per_address"}})](bool over_total) mutable {
                (over_total ? total : per_address).Inc();
            };
    }
    server_options.tls = *server_tls;
    const std::string scheme = server_options.tls != nullptr ? "https" : "http";
    // /metrics is answered by Instrument on this io thread, where the cloud's sampled gauges live.
    auto server = http::StartServer(io, server_options, observe::Instrument(api, &metrics));
    if (!server) return Fail("listen " + listen + ": " + server.error().ToString());
    const uint16_t port = (*server)->port();

    if (replicated) {
        if (replica_id.empty()) {
            char host[256] = {};
            ::gethostname(host, sizeof host - 1);
            replica_id = std::string(host) + ":" + std::to_string(port);
        }
        if (advertise_url.empty()) {
            advertise_url = scheme + "://" + listen_ep->host + ":" + std::to_string(port);
        }
        store_name = "postgresql (replica " + replica_id + ")";
        auto is_leader =
            observe::GaugeOf(&metrics, "cogs_leader", "1 on the replica that leads, else 0.").With({});
        auto changes =
            observe::CounterOf(&metrics, "cogs_leader_changes_total",
                               "Changes of leader this replica has seen (its own elections included).")
                .With({});
        metrics.OnCollect([&elector, is_leader, changes, seen = uint64_t{0}]() mutable {
            if (elector == nullptr) return;
            is_leader.Set(elector->IsLeader() ? 1 : 0);
            const uint64_t now = elector->leader_changes();
            if (now > seen) changes.Inc(static_cast<double>(now - seen));
            seen = now;
        });
        store::ElectorOptions eo;
        eo.conninfo = store_url;
        eo.replica_id = replica_id;
        eo.address = advertise_url;
        eo.version = cloud_options.version;
        eo.ttl = std::chrono::milliseconds(leader_ttl_ms);
        eo.renew_every = std::chrono::milliseconds(leader_renew_ms);
        eo.statement_timeout = std::chrono::milliseconds(std::max<int64_t>(leader_ttl_ms / 2, 200));
        eo.on_deposed = [](const std::string& why) { ExitNow("deposed: " + why); };
        eo.on_elected = [&](uint64_t token) {
            boost::asio::post(io, [&, token] {
                spdlog::info("elected leader (token {}): loading the desired state and resuming workflows",
                             token);
                store::PgOptions po;
                po.conninfo = store_url;
                po.leader_token = token;
                po.idle_in_transaction_timeout = std::chrono::milliseconds(leader_ttl_ms);
                po.on_commit = store::CommitMetrics(&metrics);
                po.on_writable = store::WritableMetrics(&metrics);
                po.on_deposed = [](const Error& why) { ExitNow("deposed: " + why.message); };
                auto store = store::OpenPgStore(po);
                if (!store) ExitNow("elected, but the store cannot be opened: " + store.error().ToString());
                store::WriteGroup elected;
                elected.events.push_back(store::EventRecord{0, WallNowMs(), "", "replica", replica_id, "",
                                                            "leader_elected",
                                                            "replica " + replica_id + " (" + advertise_url +
                                                                ") leads with token " + std::to_string(token),
                                                            ""});
                (*store)->Commit(std::move(elected), [](Status) {});
                config.cloud_options = cloud_options;
                config.cloud_options.replicas = [&elector] { return elector->Replicas(); };
                config.cloud_options.lease_epoch_base = static_cast<int64_t>(token) << 42;
                auto built = BuildLeader(io, config, std::move(*store));
                if (!built) ExitNow("elected, but cannot lead: " + built.error().ToString());
                leader = std::move(*built);
                spdlog::info("leading: serving the API at {}", advertise_url);
            });
        };
        // A database that is not there yet (starting, failing over) is waited for: a replica is
        // of no use without it, and a supervisor restarting it in a loop would only add noise.
        for (int attempt = 0;; ++attempt) {
            auto started = store::Elector::Start(eo);
            if (started) {
                elector = std::move(*started);
                break;
            }
            if (started.error().code != ErrorCode::kUnavailable &&
                started.error().code != ErrorCode::kDeadlineExceeded) {
                return Fail("store: " + started.error().ToString());
            }
            if (attempt % 10 == 0) spdlog::warn("waiting for the database: {}", started.error().ToString());
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        replica::ForwarderOptions fo;
        fo.replica_id = replica_id;
        fo.leader = [&elector] { return elector->Leader(); };
        fo.stale_after = std::chrono::milliseconds(leader_ttl_ms);
        fo.download_dir = spool_dir;  // images pass through files, as on the leader
        fo.tls = *client_tls;         // the leader's https address (advertised by it)
        forwarder = std::make_unique<replica::Forwarder>(io, fo);
    }
    if (!port_file.empty()) {
        if (auto st = runtime::WriteFileAtomic(port_file, std::to_string(port) + "\n"); !st) {
            return Fail("--port-file: " + st.error().message);
        }
    }
    spdlog::info("serving {}://{}:{} (store {}{}{})", scheme, listen_ep->host, port, store_name,
                 replicated ? ", replica " + replica_id : "",
                 tls.client_ca_file.empty() ? "" : "; client certificates asked for");
    auto tls_reloader =
        services::kit::StartTlsReloader(io, {{"server", server_options.tls}, {"client", *client_tls}});

    // SIGHUP applies the configuration directory again (the TLS reloader takes it too).
    boost::asio::signal_set hangups(io, SIGHUP);
    std::function<void()> on_hangup = [&] {
        hangups.async_wait([&](boost::system::error_code ec, int) {
            if (ec) return;
            if (leader != nullptr) (void)ReloadExtensions(*leader->extensions);
            on_hangup();
        });
    };
    on_hangup();
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) return;
        spdlog::info("signal {}, stopping", signo);
        (*server)->Stop();
        hangups.cancel();
        if (leader != nullptr) leader->engine->Shutdown();
        boost::asio::post(io, [&io] { io.stop(); });
    });
    io.run();
    if (leader != nullptr) {
        leader->cloud->Stop();
        leader->store->Flush();
        leader->cloud.reset();
    }
    elector.reset();  // a leader gives its lease up: a follower takes over without waiting it out
    spdlog::info("stopped");
    return 0;
}
