// A local cloud supervised by a chaos run: cogs-network, cogs-volume, cogsd and one cogs-compute
// agent per host, each a child process on 127.0.0.1 with an ephemeral port, started like `cogs dev`
// starts them (cogs/cli/dev.cc) but never restarted behind the run's back: the run kills a process
// and decides when it comes back (on the same port, so every URL stays valid).
//
// cogsd is one process on SQLite (`replicas` 0), or N replicas cogsd-1..N on a private PostgreSQL
// cluster (pg::Cluster, cogs/pg/cluster.h) in <dir>/postgres, fsync on, each with --store,
// --replica-id cogsd-<r+1> and a data dir of its own (docs/ha.md). The cluster is this object's too:
// KillPostgres / StopPostgres / RestartPostgres.
//
// Every agent talks to cogsd, and cogsd to it, through TCP relays of a RelayHub (relay.h): the
// agent's --control-url is relay A (-> cogsd; one per replica, each given as a --control-url), its
// --advertise-url relay B (-> the agent), so a host can be cut off from the control plane while it
// keeps running. Readers (the chaos sampler) reach agents and replicas directly, never through a
// relay. A workload may reach cogsd through client_urls(), one more relay per replica that loses
// replies at `reply_drop_rate`.
//
// New cogsd / agent flags of issue 5 (lease, fencing, reconcile, orphan grace...) are passed only
// when the binary's --help lists them, so the run works against binaries with and without them.
//
// Threading: the process methods (Kill, Restart, SetPartitioned, RestoreAll, Stop) must be called
// from one thread at a time; the URL and token accessors are immutable after Start and safe from
// any thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/pg/cluster.h"
#include "cogs/runtime/process.h"
#include "test/chaos/relay.h"
#include "test/support/cloud_api.h"

namespace cogs::testing {

struct ChaosCloudOptions {
    std::string dir;  // working directory: data, tokens, port files, logs/<process>.log
    int hosts = 6;
    // Hosts served by one cogs-compute process (`cogs-compute --hosts K --credentials-dir`, each
    // host with its own credentials): 1 is `cogs dev`'s one agent per host. With K > 1 agent a
    // serves hosts "host-<a+1>-1" .. "host-<a+1>-K" (the last one fewer if K does not divide
    // `hosts`), so that killing one agent fails K hosts at once (cogs-chaos host-failure --failing).
    int hosts_per_agent = 1;
    int boot_ms = 50;
    int agent_vcpus = 16;
    int agent_ram_mb = 65536;
    // Extra cogsd flags, name -> value (e.g. {"--reconcile-ms", "2000"}).
    std::map<std::string, std::string> cogsd_flags;
    // The same for every cogs-compute agent (e.g. {"--restart-backoff-ms", "250"}).
    std::map<std::string, std::string> agent_flags;
    int start_timeout_s = 60;
    double reply_drop_rate = 0;  // of client_urls()' relays
    uint64_t seed = 1;           // of their losses
    // 0: one cogsd on SQLite. N >= 1: N replicas on a private PostgreSQL (cogsd_flags go to each; the
    // leader lease flags too: {"--leader-ttl-ms", ...}).
    int replicas = 0;
    bool postgres_fsync = true;
};

class ChaosCloud {
public:
    // Process handles. Agents are kAgent + agent index (0-based; with one host per agent, the host
    // index, and host i is named "host-<i+1>"; see ChaosCloudOptions::hosts_per_agent). kCogsd
    // is cogsd, or its first replica; ReplicaProc(r) every replica's (the others come after the
    // agents, so that these handles do not depend on the number of replicas).
    static constexpr int kNetwork = 0;
    static constexpr int kVolume = 1;
    static constexpr int kCogsd = 2;
    static constexpr int kAgent = 3;

    // Starts everything and waits until every host is `up` in GET /v1/hosts. Errors name the process
    // that failed and carry its log tail.
    static Result<std::unique_ptr<ChaosCloud>> Start(const ChaosCloudOptions& options);
    ~ChaosCloud();  // stops every process (SIGTERM, then SIGKILL)

    int hosts() const { return options_.hosts; }
    static std::string HostName(int host) { return "host-" + std::to_string(host + 1); }
    // Agent processes, the agent serving host `host` (0-based both), and that host's name: with one
    // host per agent `hosts()`, `host` and HostName(host).
    int agents() const { return static_cast<int>(agent_relay_.size()); }
    int AgentOf(int host) const { return host / options_.hosts_per_agent; }
    std::string HostNameOf(int host) const;
    // Replicas of cogsd: 1 with SQLite.
    int replicas() const { return static_cast<int>(replica_proc_.size()); }
    bool replicated() const { return options_.replicas > 0; }
    int ReplicaProc(int replica) const { return replica_proc_.at(replica); }
    // "cogsd-<r+1>" (its --replica-id, as GET /v1/replicas names it), or "cogsd"; -1 for an unknown id.
    std::string ReplicaId(int replica) const;
    int ReplicaIndex(const std::string& id) const;
    // cogsd (its first replica) directly; every replica directly, in order.
    const std::string& api_url() const { return api_url_; }
    std::vector<std::string> api_urls() const;
    // cogsd through the relays that lose replies (ChaosCloudOptions::reply_drop_rate): one per
    // replica, in order; client_url() is the first.
    const std::string& client_url() const { return client_urls_.front(); }
    const std::vector<std::string>& client_urls() const { return client_urls_; }
    RelayHub::Stats client_relay_stats();
    const std::string& admin_token() const { return admin_token_; }
    // The token process `proc` checks, as cogsd presents it: cogs-network's and cogs-volume's own, an
    // agent's the agent token of its host's enrollment; "" for cogsd.
    std::string ServiceToken(int proc) const;
    std::string ProcessUrl(int proc) const;  // direct, e.g. ProcessUrl(kAgent + 2)
    std::string ProcessName(int proc) const;
    std::string LogPath(int proc) const;
    // The optional flags that were actually passed (for the report).

    // SIGKILL; the process stays dead until Restart. No-op if already dead. A frozen one dies too.
    // Safe from another thread while the one that owns the process methods waits for it (a burst).
    void Kill(int proc);
    // SIGKILL to every one of `procs` first, then reaps them: they die within microseconds of each
    // other (K hosts failing at once).
    void Kill(const std::vector<int>& procs);
    // SIGSTOP / SIGCONT: the process stays alive, holds its sockets and runs nothing until thawed
    // (the kernel still accepts connections on its port; nobody answers them).
    void Freeze(int proc);
    void Thaw(int proc);
    bool Frozen(int proc) const { return frozen_.at(proc); }
    // Starts a dead process again on its port and waits for its port file.
    Status Restart(int proc);
    // Whether it runs (a frozen one does); reaps it if it exited, and then ExitStatus says how.
    bool Running(int proc);
    // The exit status of a process that exited (or was killed: 128 + 9) and was not restarted since.
    std::optional<int> ExitStatus(int proc) const;
    // The PostgreSQL cluster of a replicated cloud (null otherwise). Kill: SIGKILL every process of
    // it; Stop: a fast shutdown (SIGKILL after `grace`); Restart: on the same port, waiting until it
    // accepts connections. Only from the thread that owns the other process methods.
    pg::Cluster* postgres() { return pg_.get(); }
    void KillPostgres();
    Status StopPostgres(Duration grace);
    Status RestartPostgres();
    bool PostgresRunning();
    // Cuts host `host` off from cogsd (both directions) or heals it; with several hosts per agent,
    // `host` is an agent index and every host of that agent is cut off.
    void SetPartitioned(int host, bool partitioned);
    bool Partitioned(int host) const { return partitioned_.at(host); }
    // Restarts PostgreSQL if it is down, thaws every frozen process, restarts every dead one and heals
    // every partition.
    Status RestoreAll();
    // Stops every process (SIGTERM, then SIGKILL), then PostgreSQL.
    void Stop();

private:
    // A process; its `port` is 0 until it first listens, then every restart asks for the same one.
    using Proc = runtime::ServerChild;
    ChaosCloud() = default;
    Status StartProc(Proc& p);
    Status AwaitPort(Proc& p);

    ChaosCloudOptions options_;
    std::vector<std::unique_ptr<Proc>> procs_;
    std::vector<int> replica_proc_;  // per replica: its process handle
    std::unique_ptr<pg::Cluster> pg_;
    std::unique_ptr<RelayHub> relays_;
    std::vector<std::vector<int>> control_relay_;  // per agent, per replica: relay A (agent -> cogsd)
    std::vector<int> agent_relay_;                 // per agent: relay B (cogsd -> agent)
    std::vector<bool> partitioned_;
    std::vector<bool> frozen_;       // per process
    std::vector<int> client_relay_;  // per replica
    std::string api_url_;
    std::vector<std::string> client_urls_;
    std::string admin_token_;
    std::string network_token_, volume_token_;
    std::vector<std::string> agent_tokens_;  // per agent (with several hosts: its first host's)
};

// Every process directly (never through a relay), for the audit (test/support/cloud_audit.h).
CloudEndpoints Endpoints(const ChaosCloud& cloud);

}  // namespace cogs::testing
