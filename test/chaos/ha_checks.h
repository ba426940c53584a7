// What the chaos runs against cogsd's replicas (`cogs-chaos ha`, docs/ha.md) measure and check,
// apart from the cloud's own audit (cloud_audit.h):
//   - who leads: GET /v1/replicas on any live replica (LeaderId, test/support/cloud_api.h), and each
//     replica's own view (its /metrics gauge cogs_leader);
//   - elections and their fencing tokens: the leader_elected events (GET /v1/events?resource_kind=
//     replica: "replica ID (URL) leads with token N") and the "elected leader (token N)" lines of the
//     replicas' logs. Two replicas with one token is split brain: the store fences writes by token,
//     so both could write;
//   - failovers: the moment a leader is lost (SIGKILL, SIGSTOP) to the first mutation sent after it
//     and answered 2xx (FailoverClock), with a prober that sends one every 100 ms through every
//     replica while a failover is being timed;
//   - false evacuations: hosts declared down, or servers evacuated from hosts, that the run never
//     killed, froze or partitioned (the control plane's own failover must not evacuate anyone).
//
// Threading: FailoverClock and MutationProber are safe from any thread; the free functions block
// their caller (one ApiClient per thread, as everywhere in cogs-chaos).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "test/chaos/chaos_cloud.h"
#include "test/support/cloud_api.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {

// The load average of the machine, "[1 min,5 min,15 min]" (a JSON array), for reports: timings
// from a loaded machine are read differently.
std::string LoadAverage();

// Whether a replica's own /metrics says it leads (cogs_leader 1); nullopt when it did not answer.
std::optional<bool> ClaimsToLead(ApiClient& replica, Duration timeout);

// The tokens a replica's log says it was elected with ("elected leader (token N)"), oldest first
// (every life of the process: the log is appended to).
std::vector<uint64_t> ElectedTokensInLog(const std::string& log_path);

// One leader_elected event.
struct Election {
    std::string replica;
    uint64_t token = 0;
    int64_t time_ms = 0;
};
// Every leader_elected event, oldest first. Errors: a read that failed.
Result<std::vector<Election>> ReadElections(ControlPlaneClient& api);

// Tokens held by more than one replica: from the events and from the logs (replica id -> its log's
// tokens). Each such token is one finding.
struct TokenAudit {
    int elections = 0;     // distinct tokens seen (events and logs)
    int split_tokens = 0;  // tokens two replicas were elected with
    std::vector<std::string> findings;
};
TokenAudit AuditTokens(const std::vector<Election>& events,
                       const std::map<std::string, std::vector<uint64_t>>& logged);

// A host the run cut off (agent killed or frozen, host partitioned) from `from_ms` to `to_ms`
// (wall clock; to_ms: when it was back, or the end of the run).
struct HostOutage {
    std::string host;
    int64_t from_ms = 0;
    int64_t to_ms = 0;
};
struct EvacuationAudit {
    int host_downs = 0;         // "down" events of hosts
    int evacuations = 0;        // "evacuated" and "evacuation_retry" events of servers
    int false_host_downs = 0;   // a host declared down outside every outage of it (plus a margin)
    int false_evacuations = 0;  // a server evacuated from a host the run never cut off
    std::vector<std::string> findings;
};
// Reads every host and server event after `since_ms` and judges them against the run's outages.
// `margin_ms`: how long after an outage's end (and before its start: clocks) a "down" may still
// belong to it. Errors: a read that failed.
Result<EvacuationAudit> AuditEvacuations(ControlPlaneClient& api, const std::vector<HostOutage>& outages,
                                         int64_t since_ms, int64_t margin_ms);

// Every replica's elected tokens from its log (replica id -> tokens, oldest first).
std::map<std::string, std::vector<uint64_t>> LoggedTokens(const ChaosCloud& cloud);

// Both audits above, through any replica of `cloud`, with every replica's log.
struct ControlPlaneAudit {
    std::vector<Election> elections;  // the events
    std::set<uint64_t> tokens;        // every token seen (events and logs)
    TokenAudit token_audit;
    EvacuationAudit evacuations;
    std::vector<std::string> findings;  // of both
};
Result<ControlPlaneAudit> AuditControlPlane(const ChaosCloud& cloud, const std::vector<HostOutage>& outages,
                                            int64_t since_ms, int64_t margin_ms);

// Failovers being timed: a leader lost at `at` until the first mutation sent after `at` is
// answered 2xx (by whichever replica leads by then).
class FailoverClock {
public:
    struct Failover {
        std::string kind;  // "leader_kill", "leader_freeze", "pg_kill", ...
        SteadyTime at{};
        std::optional<SteadyTime> ended{};
        std::string by;  // what ended it: "probe", "workload"
    };
    // Starts timing one; returns its index.
    size_t Lost(const std::string& kind, SteadyTime at);
    // A mutation sent at `sent` was answered 2xx at `answered`: ends every failover lost before `sent`.
    void Mutated(SteadyTime sent, SteadyTime answered, const char* by);
    bool Pending() const;
    // Waits until nothing is pending or `timeout`; true if nothing is.
    bool AwaitIdle(Duration timeout) const;
    std::vector<Failover> failovers() const;

private:
    mutable std::mutex mu_;
    std::vector<Failover> failovers_;
    size_t pending_ = 0;
};

// While any of its clocks is pending, sends POST /v1/flavors (a new flavor "probe-<pid>-<n>": a
// synchronous store write, no workflow) every 100 ms to every replica, each from a thread of its own
// (so that a probe stuck on a frozen replica, or on a follower still forwarding to a frozen leader,
// delays no other), and tells the clocks of every 2xx. Stops (and joins its probes) in its destructor.
class MutationProber {
public:
    MutationProber(const std::vector<std::string>& replica_urls, const std::string& token,
                   std::vector<FailoverClock*> clocks);
    ~MutationProber();
    uint64_t sent() const { return sent_; }

private:
    void Run();
    void Probe(const std::string& url);
    const std::vector<std::string> urls_;
    const std::string token_;
    const std::vector<FailoverClock*> clocks_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> sent_{0};
    std::atomic<uint64_t> seq_{0};
    std::thread scheduler_;
};

}  // namespace cogs::testing
