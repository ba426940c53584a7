// The supervisor behind `cogs dev` (internal/dev.h has the command's contract), one class cut by
// concern into four files:
//
//   dev.cc            the run: what starts in which order with which flags, supervision, the stop
//   dev_setup.cc      the cloud through its own API: the admin token, host enrollment, hosts up, the
//                     seed, the OpenStack clients' users
//   dev_postgres.cc   --store postgres: the cluster's start, restart and stop
//   dev_files.cc      what tools read: dev.json, the Prometheus targets and configuration, clouds.yaml
//
// Internal to cogs/cli.
#pragma once

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cogs/base/time.h"
#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/dev.h"
#include "cogs/cli/internal/dev_pki.h"
#include "cogs/pg/cluster.h"
#include "cogs/runtime/process.h"

namespace cogs::cli::devsup {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline constexpr Duration kStopGrace = 5s;
inline constexpr Duration kFirstBackoff = 500ms;
inline constexpr Duration kMaxBackoff = 30s;
inline constexpr Duration kStableRun =
    30s;  // a child that ran this long before dying restarts without delay growth
inline constexpr Duration kPgStopGrace = 10s;
// cogsd's exit code when it is deposed (a replica that lost its leader lease): an expected exit; it
// is restarted after kFirstBackoff, without delay growth, and comes back as a follower.
inline constexpr int kExitDeposed = 75;

// A user `cogs dev` keeps for the OpenStack clients, as clouds.yaml names it.
struct CloudUser {
    std::string cloud;  // the entry's name in clouds.yaml ("cogs-demo")
    std::string user;
    std::string project;  // by name, as the clients send it
    std::string password;
};

struct Proc : runtime::ServerChild {
    using ServerChild::ServerChild;

    uint16_t listen_port = 0;  // asked for at the next start: 0 at first, then the port it had
    SteadyTime started{};
    Duration backoff = kFirstBackoff;
    std::optional<SteadyTime> restart_at{};
    bool tls = false;  // serves https (cogs dev's default)

    std::string url() const {
        return port ? fmt::format("{}://127.0.0.1:{}", tls ? "https" : "http", port) : "";
    }
};

class Dev {
public:
    Dev(const DevOptions& o, std::ostream& out, std::ostream& err) : o_(o), out_(out), err_(err) {}

    int Run();

private:
    // True (and remembered) once SIGINT or SIGTERM arrived; waits up to `wait` for one.
    bool StopRequested(Duration wait = Duration::zero());
    bool Start(Proc& p);
    // Waits for p's port file; on failure prints why and the log tail.
    bool AwaitPort(Proc& p);
    bool AwaitAdminToken();
    // --store postgres: starts the cluster in D/postgres (initdb on the first start only).
    bool StartPostgres();
    // Restarts the cluster if its server died (at most once per backoff); true if it was restarted.
    bool SupervisePostgres();
    void StopPostgres();
    // POST /v1/hosts/{host}/enroll, its credentials written to dir/host.token and dir/agent.token.
    bool EnrollHost(ApiClient& api, const std::string& host, const std::string& dir);
    bool AwaitHostsUp(ApiClient& api);
    bool Seed(ApiClient& api);
    // The users admin (project admin) and demo (project demo, member), each with its password in
    // D/openstack/<user>.password, made once; remembered in cloud_users_ for WriteCloudsYaml. A
    // user that exists without its file is left alone and out. False (said why) if the API fails.
    bool EnsureCloudUsers(ApiClient& api);
    // D/clouds.yaml (0600): an entry per user of cloud_users_, for the OpenStack clients.
    void WriteCloudsYaml();
    // Whether every started child still runs; prints the first dead one's log tail otherwise.
    bool AllAlive();
    void Supervise();
    void StopAll();
    void WriteDevJson();
    void WritePrometheusConfig();
    void PrintLogTail(const Proc& p);
    std::string D(const std::string& name) const { return (dir_ / name).string(); }
    // The TLS flags of the process whose certificate is `cert` (dev_pki.h): it serves with it,
    // requires a certificate of the CA from its clients, and presents it when it calls others.
    // Empty with --no-tls.
    std::vector<std::string> TlsArgs(const std::string& cert) const;

    const DevOptions o_;
    std::ostream& out_;
    std::ostream& err_;
    fs::path dir_;
    std::vector<std::unique_ptr<Proc>> procs_;  // in start order
    std::vector<Proc*> replicas_;               // cogsd, or cogsd-1..N (postgres)
    std::unique_ptr<pg::Cluster> pg_;           // --store postgres
    Duration pg_backoff_ = kFirstBackoff;
    std::optional<SteadyTime> pg_restart_at_{};
    std::string admin_token_;
    std::vector<CloudUser> cloud_users_;
    std::string api_url_;
    std::string run_dir_;        // --driver container: runc's state of every host, /run/cogs/dev-<hash>
    std::optional<DevPki> pki_;  // TLS on (not --no-tls)
    bool stop_ = false;
    sigset_t signals_{};
};

}  // namespace cogs::cli::devsup
