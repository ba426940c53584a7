// A local cloud supervised by a chaos run: cogs-network, cogs-volume, cogsd (SQLite) and one
// cogs-compute agent per host, each a child process on 127.0.0.1 with an ephemeral port, started
// like `cogs dev` starts them (cogs/cli/dev.cc) but never restarted behind the run's back: the run
// kills a process and decides when it comes back (on the same port, so every URL stays valid).
//
// Every agent talks to cogsd, and cogsd to it, through a TCP relay of a RelayHub (relay.h): the
// agent's --control-url is relay A (-> cogsd), its --advertise-url relay B (-> the agent), so a
// host can be cut off from the control plane while it keeps running. Readers (the chaos sampler)
// reach agents directly, never through a relay. A workload may reach cogsd through client_url(),
// one more relay that loses replies at `reply_drop_rate`.
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
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/runtime/process.h"
#include "test/chaos/relay.h"

namespace cogs::testing {

struct ChaosCloudOptions {
    std::string dir;  // working directory: data, tokens, port files, logs/<process>.log
    int hosts = 6;
    int boot_ms = 50;
    int agent_vcpus = 16;
    int agent_ram_mb = 65536;
    // Extra cogsd flags, name -> value (e.g. {"--reconcile-ms", "2000"}).
    std::map<std::string, std::string> cogsd_flags;
    // The same for every cogs-compute agent (e.g. {"--restart-backoff-ms", "250"}).
    std::map<std::string, std::string> agent_flags;
    int start_timeout_s = 60;
    double reply_drop_rate = 0;  // of client_url()'s relay
    uint64_t seed = 1;           // of its losses
};

class ChaosCloud {
public:
    // Process handles. Agents are kAgent + host index (0-based; host i is named "host-<i+1>").
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
    const std::string& api_url() const { return api_url_; }
    // cogsd through the relay that loses replies (ChaosCloudOptions::reply_drop_rate).
    const std::string& client_url() const { return client_url_; }
    RelayHub::Stats client_relay_stats() { return relays_->stats(client_relay_); }
    const std::string& admin_token() const { return admin_token_; }
    const std::string& service_token() const { return service_token_; }
    std::string ProcessUrl(int proc) const;  // direct, e.g. ProcessUrl(kAgent + 2)
    std::string ProcessName(int proc) const;
    std::string LogPath(int proc) const;
    // The optional flags that were actually passed (for the report).

    // SIGKILL; the process stays dead until Restart. No-op if already dead. A frozen one dies too.
    void Kill(int proc);
    // SIGSTOP / SIGCONT: the process stays alive, holds its sockets and runs nothing until thawed
    // (the kernel still accepts connections on its port; nobody answers them).
    void Freeze(int proc);
    void Thaw(int proc);
    bool Frozen(int proc) const { return frozen_.at(proc); }
    // Starts a dead process again on its port and waits for its port file.
    Status Restart(int proc);
    bool Running(int proc);
    // Cuts host `host` off from cogsd (both directions) or heals it.
    void SetPartitioned(int host, bool partitioned);
    bool Partitioned(int host) const { return partitioned_.at(host); }
    // Thaws every frozen process, restarts every dead one and heals every partition.
    Status RestoreAll();
    void Stop();

private:
    // A process; its `port` is 0 until it first listens, then every restart asks for the same one.
    using Proc = runtime::ServerChild;
    ChaosCloud() = default;
    Status StartProc(Proc& p);
    Status AwaitPort(Proc& p);

    ChaosCloudOptions options_;
    std::vector<std::unique_ptr<Proc>> procs_;
    std::unique_ptr<RelayHub> relays_;
    std::vector<int> control_relay_;  // per host: relay A (agent -> cogsd)
    std::vector<int> agent_relay_;    // per host: relay B (cogsd -> agent)
    std::vector<bool> partitioned_;
    std::vector<bool> frozen_;  // per process
    int client_relay_ = -1;
    std::string api_url_;
    std::string client_url_;
    std::string admin_token_;
    std::string service_token_;
};

}  // namespace cogs::testing
