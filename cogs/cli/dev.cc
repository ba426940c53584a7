// `cogs dev`: starts the local cloud as children of this process and supervises them.
//
// Signals: SIGINT and SIGTERM are blocked in this process and taken with sigtimedwait, so the
// supervisor notices them between steps instead of being interrupted inside one; the children start
// with an empty mask and their own process groups (cogs/runtime), so a Ctrl-C reaches only us and
// we stop them in reverse order. The parent's death is a SIGTERM too (PR_SET_PDEATHSIG).
//
// With --store postgres the PostgreSQL server is not one of the Procs: pg::Cluster starts it (as the
// postgres user when we are root), owns it and stops it, after every cogs process, and the
// supervision loop restarts it with Cluster::Restart if it dies.
#include "cogs/cli/internal/dev.h"
#include "cogs/cli/internal/dev_supervisor.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <filesystem>
#include <ostream>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/base/hash.h"
#include "cogs/base/secret.h"
#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/builtin_image.h"
#include "cogs/cli/internal/dev_pki.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/pg/cluster.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"

namespace cogs::cli {
namespace {

// The first of `candidates` that is an executable file, or "".
std::string FindTool(std::initializer_list<const char*> candidates) {
    for (const char* path : candidates) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return "";
}

// A short stable name for a data directory (FNV-1a of its absolute path), for runc's state under
// /run/cogs: two local clouds on one machine never share it.
std::string DirTag(const std::string& dir) {
    const uint64_t h = base::Fnv1a64(dir, base::kFnv1aFirstBasis);
    return fmt::format("dev-{:08x}", static_cast<uint32_t>(h ^ (h >> 32)));
}

}  // namespace

namespace devsup {

bool Dev::StopRequested(Duration wait) {
    if (stop_) {
        return true;
    }
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    siginfo_t info;
    const int sig = ::sigtimedwait(&signals_, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
        err_ << fmt::format("cogs dev: {}, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
        stop_ = true;
    }
    return stop_;
}

void Dev::PrintLogTail(const Proc& p) {
    err_ << fmt::format("---- last lines of {} ----\n{}----\n", p.log, runtime::TailFile(p.log, 25));
}

std::vector<std::string> Dev::TlsArgs(const std::string& cert) const {
    if (!pki_) return {};
    return {"--tls-cert",        pki_->cert(cert), "--tls-key",        pki_->key(cert),
            "--tls-client-ca",   pki_->ca(),       "--tls-ca",         pki_->ca(),
            "--tls-client-cert", pki_->cert(cert), "--tls-client-key", pki_->key(cert)};
}

bool Dev::Start(Proc& p) {
    if (auto s = p.Spawn(p.listen_port); !s) {
        err_ << fmt::format("cogs dev: {}\n", s.error().message);
        return false;
    }
    p.started = SteadyClock::now();
    p.restart_at.reset();
    return true;
}

bool Dev::AwaitPort(Proc& p) {
    const SteadyTime deadline = SteadyClock::now() + std::chrono::seconds(o_.start_timeout_s);
    for (;;) {
        // In slices, so that a Ctrl-C during start-up is honoured promptly.
        auto port =
            runtime::WaitForPortFile(p.port_file, std::min(deadline, SteadyClock::now() + 200ms), &p.child);
        if (port) {
            p.port = *port;
            p.listen_port = *port;
            err_ << fmt::format("cogs dev: {} listening on 127.0.0.1:{} (pid {}, log {})\n", p.name, p.port,
                                p.child.pid(), p.log);
            return true;
        }
        if (StopRequested()) {
            return false;
        }
        if (port.error().code != ErrorCode::kDeadlineExceeded || SteadyClock::now() >= deadline) {
            err_ << fmt::format("cogs dev: {} did not start: {}\n", p.name, port.error().message);
            PrintLogTail(p);
            return false;
        }
    }
}

bool Dev::AllAlive() {
    for (auto& p : procs_) {
        if (!p->child.Running()) {
            err_ << fmt::format("cogs dev: {} exited during start-up (status {})\n", p->name,
                                p->child.exit_status().value_or(-1));
            PrintLogTail(*p);
            return false;
        }
    }
    return true;
}

void Dev::Supervise() {
    while (!StopRequested(200ms)) {
        bool changed = SupervisePostgres();
        for (auto& p : procs_) {
            if (!p->restart_at && !p->child.Running()) {
                const Duration ran = SteadyClock::now() - p->started;
                const int status = p->child.exit_status().value_or(-1);
                const bool deposed = status == kExitDeposed && p->binary == "cogsd";
                if (ran >= kStableRun || deposed) {
                    p->backoff = kFirstBackoff;
                }
                const std::string after = FormatDurationMs(std::chrono::duration_cast<Millis>(ran).count());
                const std::string wait =
                    FormatDurationMs(std::chrono::duration_cast<Millis>(p->backoff).count());
                if (deposed) {
                    // Expected: it lost its leader lease and left; another replica leads.
                    err_ << fmt::format(
                        "cogs dev: {} was deposed (status {}) after {}; restarting it as a "
                        "follower in {}\n",
                        p->name, status, after, wait);
                    p->restart_at = SteadyClock::now() + p->backoff;
                    continue;
                }
                err_ << fmt::format("cogs dev: {} exited (status {}) after {}; restarting in {}\n", p->name,
                                    status, after, wait);
                PrintLogTail(*p);
                p->restart_at = SteadyClock::now() + p->backoff;
                p->backoff = std::min(p->backoff * 2, kMaxBackoff);
            }
            if (p->restart_at && SteadyClock::now() >= *p->restart_at) {
                // Same port as before: cogsd and the computes keep the URLs they were given.
                if (Start(*p)) {
                    err_ << fmt::format("cogs dev: restarted {} (pid {})\n", p->name, p->child.pid());
                    changed = true;
                } else {
                    p->restart_at = SteadyClock::now() + p->backoff;
                    p->backoff = std::min(p->backoff * 2, kMaxBackoff);
                }
            }
        }
        if (changed) {
            WriteDevJson();
        }
    }
}

void Dev::StopAll() {
    for (auto it = procs_.rbegin(); it != procs_.rend(); ++it) {
        Proc& p = **it;
        if (p.child.pid() > 0) {
            const int st = p.child.Stop(kStopGrace);
            err_ << fmt::format("cogs dev: stopped {} (status {})\n", p.name, st);
        }
    }
}

int Dev::Run() {
    if (o_.driver != "sim" && o_.driver != "container") {
        err_ << fmt::format("cogs dev: --driver {}: expected sim or container\n", o_.driver);
        return 2;
    }
    const bool containers = o_.driver == "container";
    if (containers) {
        // Before anything starts: a cloud whose agents cannot boot anything is no use.
        const std::vector<std::string> missing = MissingForContainers();
        if (!missing.empty()) {
            err_ << "cogs dev: --driver container cannot run on this machine:\n";
            for (const std::string& m : missing) {
                err_ << "  - " << m << "\n";
            }
            err_ << "(scripts/install-deps installs the packages; or run with --driver sim)\n";
            return 1;
        }
    }
    if (o_.store != "sqlite" && o_.store != "postgres") {
        err_ << fmt::format("cogs dev: --store {}: expected sqlite or postgres\n", o_.store);
        return 2;
    }
    if (o_.store == "sqlite" && o_.replicas > 1) {
        err_ << fmt::format(
            "cogs dev: --replicas {} needs --store postgres (replicas share one PostgreSQL database; "
            "SQLite serves a single cogsd)\n",
            o_.replicas);
        return 2;
    }
    std::error_code ec;
    dir_ = fs::absolute(o_.data_dir, ec);
    if (containers) {
        run_dir_ = "/run/cogs/" + DirTag(dir_.string());
    }
    fs::create_directories(dir_ / "run", ec);
    fs::create_directories(dir_ / "logs", ec);
    // The operator's extensions, shared by every replica (docs/extending.md): files dropped here are
    // applied by `cogs extension reload` (or SIGHUP to cogsd).
    for (const char* sub : {"config/services.d", "config/workflows.d", "config/hooks.d", "config/kinds.d"}) {
        fs::create_directories(dir_ / sub, ec);
    }
    if (ec) {
        err_ << fmt::format("cogs dev: cannot create {}: {}\n", dir_.string(), ec.message());
        return 1;
    }
    // One supervisor per data directory: two would fight over the same databases.
    if (auto prev = runtime::ReadFile(D("dev.json")); prev) {
        boost::system::error_code jec;
        json::value v = json::parse(*prev, jec);
        if (!jec && v.is_object()) {
            if (auto* pid = v.as_object().if_contains("supervisor_pid"); pid && pid->is_int64()) {
                const auto other = static_cast<pid_t>(pid->as_int64());
                if (other != ::getpid() && ::kill(other, 0) == 0) {
                    err_ << fmt::format("cogs dev: already running on {} (pid {})\n", dir_.string(), other);
                    return 1;
                }
            }
        }
    }
    // The services' tokens and the agents' key, each its own secret (made once; the agents' own
    // credentials come from their enrollment, below).
    for (const char* secret : {"network.token", "volume.token", "agent.key"}) {
        if (fs::exists(dir_ / secret)) {
            continue;
        }
        if (auto s = runtime::WriteFileAtomic(D(secret), RandomHex(32) + "\n", 0600); !s) {
            err_ << fmt::format("cogs dev: {}\n", s.error().message);
            return 1;
        }
    }

    if (o_.tls) {
        auto pki = EnsureDevPki(dir_.string(), o_.hosts);
        if (!pki) {
            err_ << fmt::format("cogs dev: the private CA in {}: {}\n", D("pki"), pki.error().message);
            return 1;
        }
        pki_ = *pki;
    }

    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigset_t old_mask;
    ::pthread_sigmask(SIG_BLOCK, &signals_, &old_mask);
    // If whoever started us dies (a closed terminal, a crashed test), stop the cloud as on Ctrl-C
    // rather than leave it running orphaned. The check after prctl covers a parent already gone.
    const pid_t parent = ::getppid();
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
        ::kill(::getpid(), SIGTERM);
    }

    auto make = [&](std::string name, std::string binary, auto args) {
        std::function<std::vector<std::string>(uint16_t)> with_level = [args,
                                                                        level = o_.log_level](uint16_t port) {
            std::vector<std::string> a = args(port);
            if (!level.empty()) a.insert(a.end(), {"--log-level", level});
            return a;
        };
        procs_.push_back(
            std::make_unique<Proc>(std::move(name), std::move(binary), dir_, std::move(with_level)));
        procs_.back()->tls = pki_.has_value();
        return procs_.back().get();
    };
    auto listen = [](uint16_t port) { return fmt::format("127.0.0.1:{}", port); };

    int rc = 1;
    [&] {
        Proc* network = make("cogs-network", "cogs-network", [=, this](uint16_t port) {
            std::vector<std::string> args{
                "--listen",     listen(port),    "--port-file",  D("run/cogs-network.port"),
                "--state",      D("network.db"), "--token-file", D("network.token"),
                "--test-routes"};
            if (containers) {  // a bridge per network for the real instances' ports
                args.insert(args.end(), {"--driver", "linux"});
            }
            const auto tls = TlsArgs("network");
            args.insert(args.end(), tls.begin(), tls.end());
            return args;
        });
        if (!Start(*network) || !AwaitPort(*network)) {
            return;
        }
        Proc* volume = make("cogs-volume", "cogs-volume", [=, this](uint16_t port) {
            std::vector<std::string> args{
                "--listen",       listen(port),   "--port-file",     D("run/cogs-volume.port"), "--state",
                D("volume.db"),   "--token-file", D("volume.token"), "--test-routes",           "--driver",
                o_.volume_driver, "--volume-dir", D("volumes")};
            const auto tls = TlsArgs("volume");
            args.insert(args.end(), tls.begin(), tls.end());
            return args;
        });
        if (!Start(*volume) || !AwaitPort(*volume)) {
            return;
        }
        // cogsd: one on SQLite in D, or N replicas on the PostgreSQL cluster in D/postgres (each with
        // its own data dir and port; the first on --port).
        const bool postgres = o_.store == "postgres";
        if (postgres && !StartPostgres()) {
            return;
        }
        const int replicas = postgres ? (o_.replicas > 0 ? o_.replicas : 3) : 1;
        for (int i = 1; i <= replicas; ++i) {
            const std::string name = postgres ? fmt::format("cogsd-{}", i) : "cogsd";
            Proc* cogsd = make(name, "cogsd", [=, this](uint16_t port) {
                std::vector<std::string> args{"--listen",
                                              listen(port),
                                              "--port-file",
                                              D("run/" + name + ".port"),
                                              "--data-dir",
                                              postgres ? D(name) : dir_.string(),
                                              "--network-url",
                                              network->url(),
                                              "--volume-url",
                                              volume->url(),
                                              "--network-token-file",
                                              D("network.token"),
                                              "--volume-token-file",
                                              D("volume.token"),
                                              "--agent-key-file",
                                              D("agent.key"),
                                              "--bootstrap-token-file",
                                              D("admin.token"),
                                              "--config-dir",
                                              D("config")};
                if (postgres) {
                    // The connection string as of this start (the cluster keeps its port on a
                    // restart, but `cogs dev` may have picked another one since the last run).
                    args.insert(args.end(), {"--store", pg_->ConnInfo(), "--replica-id", name});
                }
                const auto tls = TlsArgs("cogsd");
                args.insert(args.end(), tls.begin(), tls.end());
                args.insert(args.end(), o_.cogsd_args.begin(), o_.cogsd_args.end());
                return args;
            });
            if (i == 1) {
                cogsd->listen_port = o_.port;
            }
            replicas_.push_back(cogsd);
            if (!Start(*cogsd)) {
                return;
            }
        }
        for (Proc* r : replicas_) {
            if (!AwaitPort(*r)) {
                return;
            }
        }
        // The first leader writes the admin token (on the first start of the data dir).
        if (!AwaitAdminToken()) {
            return;
        }
        api_url_ = replicas_.front()->url();
        auto endpoint = ParseUrl(api_url_);
        ApiClient api(*endpoint, admin_token_, 10s, pki_ ? pki_->ca() : "");
        const std::string run_root = run_dir_;
        std::vector<Proc*> computes;
        for (int i = 1; i <= o_.hosts; ++i) {
            const std::string name = fmt::format("cogs-compute-{}", i);
            const std::string creds = D(fmt::format("hosts/host-{}", i));
            // The host's own credentials, from the API (never the admin token: docs/api.md).
            if (!EnrollHost(api, fmt::format("host-{}", i), creds)) {
                return;
            }
            computes.push_back(make(name, "cogs-compute", [=, this](uint16_t port) {
                std::vector<std::string> args{"--listen",
                                              listen(port),
                                              "--port-file",
                                              D("run/" + name + ".port"),
                                              "--state",
                                              D(fmt::format("compute-{}.db", i)),
                                              "--token-file",
                                              creds + "/agent.token",
                                              "--test-routes",
                                              "--host",
                                              fmt::format("host-{}", i),
                                              "--az",
                                              "nova",
                                              "--control-token-file",
                                              creds + "/host.token",
                                              "--boot-ms",
                                              std::to_string(o_.boot_ms)};
                if (containers) {
                    const std::string host = fmt::format("host-{}", i);
                    args.insert(args.end(),
                                {"--driver", "container", "--instances-dir", D("instances/" + host),
                                 "--runc-root", run_root + "/" + host + "/runc"});
                }
                const auto tls = TlsArgs(fmt::format("host-{}", i));
                args.insert(args.end(), tls.begin(), tls.end());
                // Every replica's URL: the agent's heartbeats follow a failover of the leader.
                for (const Proc* r : replicas_) {
                    args.insert(args.end(), {"--control-url", r->url()});
                }
                return args;
            }));
            if (!Start(*computes.back())) {
                return;
            }
        }
        for (Proc* c : computes) {
            if (!AwaitPort(*c)) {
                return;
            }
        }
        // The built-in image's content (busybox-static), uploaded once per data dir.
        if (!AwaitHostsUp(api) || !Seed(api) || !RegisterBusyboxImage(api, D("run"), err_) ||
            !EnsureCloudUsers(api)) {
            return;
        }
        WriteCloudsYaml();  // before dev.json, which tells waiting tools everything is ready
        WriteDevJson();
        // With replicas: every replica's URL and the database (SQLite: as it always was).
        std::string api_line = api_url_;
        if (postgres) {
            api_line += "\n  replicas:   ";
            for (const Proc* r : replicas_) {
                api_line += " " + r->url();
            }
            api_line += " (any replica serves the API)";
            api_line += fmt::format("\n  store:       PostgreSQL in {}, 127.0.0.1:{} (psql \"{}\")",
                                    pg_->socket_dir(), pg_->port(), pg_->ConnInfo());
        }
        // The OpenStack clients, as the demo tenant when clouds.yaml has it.
        std::string openstack_line;
        if (!cloud_users_.empty()) {
            std::string clouds, cloud = cloud_users_.front().cloud;
            for (const CloudUser& u : cloud_users_) {
                clouds += (clouds.empty() ? "" : ", ") + u.cloud;
                if (u.user == "demo") cloud = u.cloud;
            }
            openstack_line = fmt::format(
                "OS_CLIENT_CONFIG_FILE={} openstack --os-cloud {} server list  # the OpenStack API; clouds "
                "{}\n",
                D("clouds.yaml"), cloud, clouds);
        }
        out_ << fmt::format(
            "cogs dev: the local cloud is up ({} hosts, driver {}; data in {}, logs in {}/logs)\n"
            "  API:         {}\n"
            "  admin token: {}\n"
            "  console:     {}/ui/ (sign in with a token)\n"
            "  metrics:     {}/metrics (every process; `prometheus --config.file {}/prometheus.yml` scrapes "
            "them all)\n"
            "Use it from another terminal with:\n"
            "export COGS_URL={} COGS_TOKEN={}{}\n"
            "{}"
            "Ctrl-C stops everything; `cogs dev` on the same --data-dir brings it all back.\n",
            o_.hosts, containers ? "container (real instances under runc)" : "sim (nothing runs)",
            dir_.string(), dir_.string(), api_line, admin_token_, api_url_, api_url_, dir_.string(), api_url_,
            admin_token_, pki_ ? " COGS_CACERT=" + pki_->ca() : "", openstack_line);
        out_.flush();
        Supervise();
        rc = 0;
    }();
    if (rc != 0 && stop_) {
        rc = 0;  // interrupted during start-up: a requested stop, not a failure
    }
    StopAll();
    StopPostgres();  // after every replica: none of them is left without its database
    fs::remove(dir_ / "dev.json", ec);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (rc == 0) {
        err_ << "cogs dev: stopped\n";
    }
    return rc;
}

}  // namespace devsup

std::vector<std::string> MissingForContainers() {
    std::vector<std::string> missing;
    if (::geteuid() != 0) {
        missing.push_back("root: runc, network namespaces and cgroups need it (run as root, e.g. with sudo)");
    }
    if (FindTool({"/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc", "/bin/runc"}).empty()) {
        missing.push_back("runc (Debian package runc)");
    }
    if (FindTool({"/bin/busybox"}).empty()) {
        missing.push_back("/bin/busybox, the built-in image's program (Debian package busybox-static)");
    }
    if (FindTool({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}).empty()) {
        missing.push_back("ip (Debian package iproute2)");
    }
    return missing;
}

int RunDev(const DevOptions& options, std::ostream& out, std::ostream& err) {
    devsup::Dev dev(options, out, err);
    return dev.Run();
}

}  // namespace cogs::cli
