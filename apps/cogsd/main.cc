// cogsd: the control plane. Serves the REST API (docs/api.md), runs every operation as a durable
// workflow (workflows/cloud/*.yaml) against the micro-services, places servers on hosts.
//
//   cogsd --data-dir .cogs --listen 127.0.0.1:8780 --network-url http://127.0.0.1:P
//         --volume-url http://127.0.0.1:P --service-token-file .cogs/service.token
//         --bootstrap-token-file .cogs/admin.token
//
// Observability: GET /metrics (no token) on the API's port, one Prometheus registry shared by the
// engine, the store, the cloud and the API (docs/metrics.md); JSON log lines on stderr
// (--log-format text for people); GET/PUT /v1/log-levels (admin) changes levels at run time.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>

#include "cogs/base/paths.h"
#include "cogs/cloud/cloud.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/files.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/store/store.h"
#include "cogs/store/store_metrics.h"
#include "cogs/wire/answer.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"

namespace {

using namespace cogs;

int Fail(const std::string& what) {
    spdlog::critical("{}", what);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cogsd: the cogs control plane"};
    std::string data_dir = ".cogs";
    std::string listen = "127.0.0.1:8780";
    std::string port_file, network_url, volume_url, service_token_file, bootstrap_token_file, workflows_dir;
    std::string log_level = "info";
    std::string log_format = "json";
    int64_t idempotency_ttl_s = 24 * 3600;
    int64_t lease_ttl_ms = 3000, fence_window_ms = 1000, restart_grace_ms = 10000, reconcile_ms = 10000,
            orphan_grace_ms = 60000;
    size_t max_inflight_workflows = 100000;
    workflow::EngineOptions engine_options;
    int64_t breaker_open_ms = 1000;
    size_t max_body = 1 << 20;
    cloud::CloudOptions cloud_options;
    app.add_option("--data-dir", data_dir, "where the store lives (cogsd.db)")->capture_default_str();
    app.add_option("--listen", listen, "HOST:PORT of the API (port 0: any free port)")->capture_default_str();
    app.add_option("--port-file", port_file, "write the bound port here once listening");
    app.add_option("--network-url", network_url, "the network service, http://HOST:PORT")->required();
    app.add_option("--volume-url", volume_url, "the volume service, http://HOST:PORT")->required();
    app.add_option("--service-token-file", service_token_file, "the token cogsd presents to the services");
    app.add_option("--bootstrap-token-file", bootstrap_token_file,
                   "on first start, write the admin token's secret here (mode 0600)");
    app.add_option("--workflows", workflows_dir,
                   "directory of workflow YAML (default: the project's workflows/cloud)");
    app.add_option("--lease-ttl-ms", lease_ttl_ms, "a host whose agent renews no lease this long is suspect")
        ->check(CLI::Range(int64_t{100}, int64_t{3600000}))
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
    app.add_option("--max-inflight-requests", cloud_options.max_inflight_requests, "beyond: 429")
        ->capture_default_str();
    app.add_option("--max-body-bytes", max_body, "largest request body")->capture_default_str();
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
    app.add_option("--idempotency-ttl-s", idempotency_ttl_s, "an Idempotency-Key is remembered this long")
        ->check(CLI::Range(int64_t{1}, int64_t{3650} * 24 * 3600))
        ->capture_default_str();
    app.add_option("--idempotency-max-per-project", cloud_options.idempotency_max_per_project,
                   "a project keeps at most this many Idempotency-Keys (the oldest go first)")
        ->check(CLI::Range(size_t{1}, size_t{1} << 30))
        ->capture_default_str();
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
    std::string service_token;
    if (!service_token_file.empty()) {
        auto t = runtime::ReadTokenFile(service_token_file);
        if (!t) return Fail("--service-token-file: " + t.error().message);
        service_token = *t;
    }
    cloud_options.service_token = service_token;
    std::error_code fs_ec;
    std::filesystem::create_directories(data_dir, fs_ec);
    if (fs_ec) return Fail("--data-dir " + data_dir + ": " + fs_ec.message());

    // One registry for the process: what GET /metrics shows. Declared before everything that
    // holds handles into it, so it outlives them.
    observe::Metrics metrics;
    store::SqliteOptions store_options;
    store_options.path = data_dir + "/cogsd.db";
    store_options.on_commit = store::CommitMetrics(&metrics);
    store_options.on_writable = store::WritableMetrics(&metrics);
    auto store = store::OpenSqliteStore(store_options);
    if (!store) return Fail("store: " + store.error().ToString());

    workflow::Registry registry(store->get());
    if (auto st = registry.LoadFromStore(); !st) return Fail("workflow versions: " + st.error().ToString());
    if (workflows_dir.empty()) {
        workflows_dir = base::FindProjectPath("workflows/cloud");
        if (workflows_dir.empty()) return Fail("cannot find workflows/cloud: pass --workflows DIR");
    }
    auto defs = workflow::LoadDefinitionsFromDirectory(workflows_dir);
    if (!defs) return Fail(defs.error().ToString());
    if (auto st = registry.RegisterAll(std::move(*defs)); !st) return Fail(st.error().ToString());

    boost::asio::io_context io(1);
    workflow::ServiceCatalog catalog;
    catalog.Add("network", services::kit::MakeHttpServiceClient(io, network_ep->host, network_ep->port,
                                                                "network", 256, service_token));
    catalog.Add("volume", services::kit::MakeHttpServiceClient(io, volume_ep->host, volume_ep->port, "volume",
                                                               256, service_token));
    engine_options.breaker.open_for = std::chrono::milliseconds(breaker_open_ms);
    engine_options.owner = "cogsd";
    engine_options.metrics = &metrics;
    engine_options.max_inflight = max_inflight_workflows;
    cloud_options.metrics = &metrics;
    workflow::Engine engine(io, **store, registry, catalog, engine_options);
    auto cloud = std::make_unique<cloud::Cloud>(io, **store, engine, registry, cloud_options);
    catalog.Add("scheduler", cloud->SchedulerService());
    catalog.Add("compute", cloud->ComputeService());

    if (auto st = engine.Recover(); !st) return Fail("recover: " + st.error().ToString());
    if (auto st = cloud->Load(); !st) return Fail("load: " + st.error().ToString());
    auto secret = cloud->Bootstrap();
    if (!secret) return Fail("bootstrap: " + secret.error().ToString());
    if (!secret->empty()) {
        if (bootstrap_token_file.empty()) {
            spdlog::warn("created an admin token but no --bootstrap-token-file to write it to: {}", *secret);
        } else if (auto st = runtime::WriteFileAtomic(bootstrap_token_file, *secret + "\n", 0600); !st) {
            return Fail("--bootstrap-token-file: " + st.error().message);
        } else {
            spdlog::info("admin token written to {}", bootstrap_token_file);
        }
    }

    cloud->Start();
    http::ServerOptions server_options;
    server_options.host = listen_ep->host;
    server_options.port = listen_ep->port;
    server_options.max_body_bytes = max_body;
    server_options.error_answer = wire::ApiError;  // 413, 414, 431, 400 in the API's error shape
    // /metrics is answered by Instrument on this io thread, where the cloud's sampled gauges live.
    auto server = http::StartServer(io, server_options, observe::Instrument(cloud->Handler(), &metrics));
    if (!server) return Fail("listen " + listen + ": " + server.error().ToString());
    const uint16_t port = (*server)->port();
    if (!port_file.empty()) {
        if (auto st = runtime::WriteFileAtomic(port_file, std::to_string(port) + "\n"); !st) {
            return Fail("--port-file: " + st.error().message);
        }
    }
    spdlog::info("serving http://{}:{} (store {}, {} workflow types)", listen_ep->host, port,
                 store_options.path, registry.Types().size());

    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) return;
        spdlog::info("signal {}, stopping", signo);
        (*server)->Stop();
        engine.Shutdown();
        boost::asio::post(io, [&io] { io.stop(); });
    });
    io.run();
    cloud->Stop();
    (*store)->Flush();
    cloud.reset();
    spdlog::info("stopped");
    return 0;
}
