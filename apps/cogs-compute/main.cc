// cogs-compute: serves the compute domain (cogs/services/compute) with the micro-service kit until
// SIGTERM or SIGINT, as one host or as many (scale tests), and registers its hosts with cogsd.
//
//   cogs host enroll host-1 --out /etc/cogs/host-1      # by an operator: the host's credentials
//   cogs-compute --listen 127.0.0.1:0 --state /tmp/c/state.db --host host-1
//       --control-url http://127.0.0.1:8774 --control-token-file /etc/cogs/host-1/host.token
//       --token-file /etc/cogs/host-1/agent.token
//   cogs-compute --hosts 1000 --host-prefix sim- --boot-ms 0 --credentials-dir creds ...
//       # hosts sim-1 .. sim-1000, each enrolled: creds/sim-<i>/{host,agent}.token
//
// Credentials (docs/api.md "Hosts and their credentials"): a host registers and renews its lease
// with its own host token (it can do nothing else with it), and serves only calls carrying its own
// agent token (--token-file; with --credentials-dir, any of its hosts' agent tokens). Nothing it
// holds acts for another host or reaches the network or volume service.
//   cogs-compute ... --control-url http://10.0.0.1:8774,http://10.0.0.2:8774  # cogsd's replicas
//   cogs-compute --driver container --state /var/lib/cogs/host-1/state.db ...  # real instances (root)
//
// Without --control-url nothing is registered (the service still serves its actions) and there is no
// lease: nothing is fenced. With it, every host holds a lease from cogsd, renewed by its heartbeats,
// and fences itself when the lease runs out; at start every instance that was running is FENCED
// (the container driver's instances outlive the process: those still running are adopted instead).
// Several --control-url (repeated or comma-separated: every replica of cogsd) are tried round-robin
// when one fails (cogs/services/compute/agent.h).
//
// TLS (cogs/services/kit/tls.h): --tls-cert/--tls-key [--tls-client-ca] serve the agent over TLS
// (mutual with a client CA: only cogsd's certificate may call its actions); the agent then advertises
// https://. --tls-ca [--tls-client-cert/--tls-client-key, the host's certificate] is how it calls
// cogsd at https control urls (registration, heartbeats, image downloads).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>

#include "cogs/runtime/files.h"
#include "cogs/services/compute/agent.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/serve.h"

int main(int argc, char** argv) {
    using namespace cogs;
    using namespace cogs::services;
    CLI::App app{"cogs-compute: the cogs compute micro-service"};
    kit::ServeOptions options;
    kit::AddServeFlags(app, options);

    std::string host_name = "host-1";
    int host_count = 0;
    std::string host_prefix = "sim-";
    compute::HostSpec spec;
    int64_t boot_ms = 200;
    std::string driver_name = "sim";
    std::vector<std::string> control_urls;
    std::string control_token_file;
    std::string credentials_dir;
    int64_t heartbeat_ms = 0;
    bool batch_renewals = true;
    int64_t lease_ttl_ms = 3000;
    int64_t no_leader_max_ms = 5000;
    int64_t restart_backoff_ms = 250;
    int restart_max = 5;
    int64_t restart_window_s = 600;
    std::string advertise_url;
    compute::ComputeDriverOptions driver_options;
    int64_t stop_grace_ms = 10000;

    auto* host_opt = app.add_option("--host", host_name, "the name of the one host this process serves")
                         ->capture_default_str();
    app.add_option("--hosts", host_count, "serve N hosts named <prefix>1 .. <prefix>N instead of one")
        ->check(CLI::Range(1, 1000000))
        ->excludes(host_opt);
    app.add_option("--host-prefix", host_prefix, "name prefix of the --hosts hosts")->capture_default_str();
    app.add_option("--az", spec.availability_zone, "availability zone of every host")->capture_default_str();
    app.add_option("--vcpus", spec.vcpus, "vCPUs of every host")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--ram-mb", spec.ram_mb, "RAM of every host (MiB)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--disk-gb", spec.disk_gb, "disk of every host (GiB)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--trait", spec.traits, "a trait of every host (repeatable), e.g. CUSTOM_SSD");
    app.add_option("--boot-ms", boot_ms, "how long an instance is BUILD or REBOOT (sim driver)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--driver", driver_name,
                   "what runs instances: sim (nothing runs), container (OCI containers under runc; root)")
        ->check(CLI::IsMember({"sim", "container"}))
        ->capture_default_str();
    app.add_option("--instances-dir", driver_options.instances_dir,
                   "container: the instances' directories (default: instances/ beside the --state file)");
    app.add_option("--runc-root", driver_options.runc_root,
                   "container: runc's state, on a tmpfs (default: /run/cogs/<first host>/runc)");
    app.add_option("--max-cached-images", driver_options.max_cached_images,
                   "container: images downloaded from cogsd kept on this host (the least recently used go)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--stop-grace-ms", stop_grace_ms,
                   "container: after SIGTERM, how long an instance has to end before SIGKILL")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--netns-prefix", driver_options.netns_prefix,
                   "container: the instances' network namespaces are <prefix>-<host>.<instance id>")
        ->capture_default_str();
    app.add_option("--control-url", control_urls,
                   "cogsd's URL, http://HOST:PORT, to register the hosts with (default: no registration); "
                   "repeatable or comma-separated: every replica's, tried in turn when one fails")
        ->delimiter(',');
    auto* control_token_opt = app.add_option("--control-token-file", control_token_file,
                                             "file holding the host's token for cogsd (its host.token, from "
                                             "`cogs host enroll`)");
    app.add_option(
           "--credentials-dir", credentials_dir,
           "every host's credentials, DIR/<host>/host.token and DIR/<host>/agent.token (as `cogs host "
           "enroll <host> --out DIR/<host>` writes them): each host registers with its own token, and "
           "cogsd's calls must carry one of the hosts' agent tokens (instead of --control-token-file "
           "and --token-file)")
        ->excludes(control_token_opt);
    app.add_option("--heartbeat-ms", heartbeat_ms,
                   "at most this long between two heartbeats of a host (0: at cogsd's pace, its "
                   "renew_interval_ms: a third of a lease TTL that grows with the number of hosts)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--batch-renewals", batch_renewals,
                   "renew every host due at once in one request (POST /v1/heartbeats; an older cogsd "
                   "without it: one heartbeat per host)")
        ->capture_default_str();
    app.add_option("--lease-ttl-ms", lease_ttl_ms,
                   "a host's lease from cogsd until cogsd answers its own lease_ttl_ms (fencing)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--no-leader-max-ms", no_leader_max_ms,
                   "with cogsd replicas: how long after its last renewal by a leader a host's lease may be "
                   "extended by answers 503 no_leader (a failover); below cogsd's --restart-grace-ms minus "
                   "--lease-ttl-ms")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--restart-backoff-ms", restart_backoff_ms,
                   "wait before restarting a crashed instance, doubled per crash in the window (max 10 s)")
        ->check(CLI::Range(int64_t{0}, int64_t{10000}))
        ->capture_default_str();
    app.add_option("--restart-max", restart_max, "crashes within the window after which an instance is ERROR")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    app.add_option("--restart-window-s", restart_window_s, "the window (s) in which crashes are counted")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--advertise-url", advertise_url,
                   "the URL cogsd reaches this process at (default: http://<listen host>:<bound port>)");
    CLI11_PARSE(app, argc, argv);
    if (!kit::SetupProcessLogging(options, "cogs-compute")) {
        return 2;
    }
    // The agent's calls to cogsd (reloaded with the server's certificate by Serve).
    if (auto st = kit::CheckTlsOptions(options.tls); !st) {
        spdlog::critical("{}", st.error().message);
        return 2;
    }
    if (auto client_tls = kit::MakeClientTlsFrom(options.tls); client_tls) {
        options.client_tls = *client_tls;
    } else {
        spdlog::critical("tls: {}", client_tls.error().message);
        return 2;
    }

    compute::ComputeOptions compute_options;
    if (host_count > 0) {
        for (int i = 1; i <= host_count; ++i) {
            compute::HostSpec h = spec;
            h.name = host_prefix + std::to_string(i);
            compute_options.hosts.push_back(std::move(h));
        }
    } else {
        spec.name = host_name;
        compute_options.hosts.push_back(spec);
    }
    compute_options.leased = !control_urls.empty();
    compute_options.test_routes = options.test_routes;

    // Each host's own credentials (--credentials-dir): its host token for cogsd, its agent token
    // among those the service accepts.
    std::map<std::string, std::string> host_tokens;
    if (!credentials_dir.empty()) {
        if (!options.token_files.empty()) {
            spdlog::critical("--credentials-dir holds the agent tokens: give no --token-file with it");
            return 2;
        }
        for (const compute::HostSpec& h : compute_options.hosts) {
            const std::string dir = (std::filesystem::path(credentials_dir) / h.name).string();
            auto token = runtime::ReadTokenFile(dir + "/host.token");
            if (!token) {
                spdlog::critical("--credentials-dir: host {}: {}", h.name, token.error().message);
                return 2;
            }
            host_tokens[h.name] = *token;
            options.token_files.push_back(dir + "/agent.token");
        }
    }
    compute_options.supervisor.restart_backoff = Millis(restart_backoff_ms);
    compute_options.supervisor.restart_max = restart_max;
    compute_options.supervisor.restart_window = std::chrono::seconds(restart_window_s);

    driver_options.boot_time = Millis(boot_ms);
    driver_options.stop_grace = Millis(stop_grace_ms);
    if (driver_name == "container") {
        if (driver_options.instances_dir.empty()) {
            if (options.service.state_path.empty()) {
                spdlog::critical(
                    "--driver container: give --instances-dir or --state (the instances' "
                    "directories go beside it)");
                return 2;
            }
            driver_options.instances_dir =
                (std::filesystem::absolute(options.service.state_path).parent_path() / "instances").string();
        }
        if (driver_options.runc_root.empty()) {
            driver_options.runc_root = "/run/cogs/" + compute_options.hosts.front().name + "/runc";
        }
        if (!control_urls.empty()) {
            // The watchdog: the agent writes each host's lease here, the containers' shims read it
            // (a name that is no instance id: Containers never takes it for a container).
            driver_options.lease_dir = driver_options.instances_dir + "/.leases";
            // Images other than the built-in busybox come from cogsd, with the agent's token.
            driver_options.control_urls = control_urls;
            driver_options.control_tls = options.client_tls;
        }
        if (!control_token_file.empty()) {
            auto token = runtime::ReadTokenFile(control_token_file);
            if (!token) {
                spdlog::critical("--control-token-file: {}", token.error().message);
                return 2;
            }
            driver_options.control_token = *token;
        } else if (!host_tokens.empty()) {
            driver_options.control_token = host_tokens.begin()->second;
        }
    }
    auto driver = compute::MakeComputeDriver(driver_name, driver_options);
    if (!driver) {
        spdlog::critical("{}", driver.error().message);
        return 2;
    }
    const std::vector<compute::HostSpec> hosts = compute_options.hosts;
    auto domain = compute::MakeComputeDomain(std::move(compute_options), std::move(*driver));
    if (!domain) {
        spdlog::critical("{}", domain.error().message);
        return 2;
    }
    // Owned by the service, which Serve destroys after the hook that holds the agent.
    compute::HostLink* link = domain->get();

    // Everything the agent needs is checked before serving: a bad flag never leaves a half-started
    // service behind.
    compute::AgentOptions agent;
    if (!control_urls.empty()) {
        for (const std::string& control_url : control_urls) {
            if (auto url = compute::ParseHttpUrl(control_url); !url) {
                spdlog::critical("--control-url: {}", url.error().message);
                return 2;
            }
            if (control_url.starts_with("https://") && options.client_tls == nullptr) {
                spdlog::critical("--control-url {} is https: give --tls-ca", control_url);
                return 2;
            }
        }
        if (!control_token_file.empty()) {
            auto token = runtime::ReadTokenFile(control_token_file);
            if (!token) {
                spdlog::critical("--control-token-file: {}", token.error().message);
                return 2;
            }
            agent.token = *token;
        }
        agent.host_tokens = host_tokens;
        auto listen = kit::ParseListen(options.listen);
        if (!listen) {
            spdlog::critical("--listen: {}", listen.error().message);
            return 2;
        }
        agent.control_urls = control_urls;
        agent.tls = options.client_tls;
        agent.hosts = hosts;
        agent.heartbeat_interval = Millis(heartbeat_ms);
        agent.batch_renewals = batch_renewals;
        agent.link = link;
        agent.lease_ttl = Millis(lease_ttl_ms);
        agent.no_leader_limit = Millis(no_leader_max_ms);
        agent.lease_dir = driver_options.lease_dir;
        agent.advertise_url = advertise_url;
        if (agent.advertise_url.empty()) {
            // A wildcard address is no address to reach: loopback then (the local cloud's case).
            std::string host = listen->first;
            if (host.empty() || host == "0.0.0.0" || host == "::") {
                host = "127.0.0.1";
            } else if (host.find(':') != std::string::npos) {
                host = "[" + host + "]";
            }
            agent.advertise_url =
                (options.tls.serves_tls() ? "https://" : "http://") + host + ":";  // the port once bound
        }
    } else if (!control_token_file.empty()) {
        spdlog::warn("--control-token-file without --control-url: nothing to register with");
    }

    // The agent lives in the hook, which Serve destroys before its io_context: nothing else may hold
    // `running` (hence the init-capture and the move below).
    auto on_listening = [running = std::make_shared<std::unique_ptr<compute::HostAgent>>(), agent,
                         derive_port = advertise_url.empty()](boost::asio::io_context& io, uint16_t port) {
        if (agent.control_urls.empty()) {
            return;
        }
        compute::AgentOptions o = agent;
        if (derive_port) {
            o.advertise_url += std::to_string(port);
        }
        auto started = compute::HostAgent::Start(io, std::move(o));
        if (!started) {
            spdlog::error("cannot start the agent: {}", started.error().message);
            return;
        }
        std::string urls;
        for (const std::string& u : agent.control_urls) {
            urls += (urls.empty() ? "" : ", ") + u;
        }
        spdlog::info("registering {} host(s) with {} as {}", agent.hosts.size(), urls,
                     derive_port ? agent.advertise_url + std::to_string(port) : agent.advertise_url);
        *running = std::move(*started);
    };
    return kit::Serve(options, std::move(*domain), std::move(on_listening));
}
