// HostAgent: registers the hosts this process serves with the control plane (cogsd), keeps them
// alive with heartbeats, which renew each host's lease, and fences a host whose lease runs out
// (docs/api.md, "Hosts (admin)"; the lease contract of issue 5).
//
// For every host, independently:
//   1. PUT {control}/v1/hosts/{name} {"url","availability_zone","vcpus","ram_mb","disk_gb","traits"}
//      until it answers 2xx. Failures are logged and retried with a capped exponential backoff
//      (min_backoff .. max_backoff); a 4xx other than 401/403/408/429 means the control plane refuses
//      this registration as it is (a bug or a misconfiguration, not a passing state): it is logged as
//      an error and retried every slow_retry. The agent never gives up and never crashes the process.
//      At most max_connections / 2 registrations are in flight (the others wait, in order), so that
//      many hosts registering at once leave connections to the renewals of those already registered.
//   2. POST {control}/v1/hosts/{name}/heartbeat at the control plane's pace (the renew_interval_ms
//      its last answer gave; before any, a third of lease_ttl), never slower than a third of the lease
//      TTL it answered and, if heartbeat_interval is set, never slower than that; body
//      link->HeartbeatBody (instance counts by state, unacknowledged reports; "{}" without a link).
//      A 404 means the control plane has forgotten the host: back to 1 at once. Other failures are
//      logged; the heartbeats go on at their pace. A 200 {"lease_ttl_ms": T, "acked_seq": N} sets the
//      lease TTL and acknowledges the reports up to N (link->Acknowledged); any other 2xx (an older
//      cogsd's 204, a body without them) renews without acknowledging.
//      With batch_renewals, the heartbeats due in the same turn of io go in one request instead,
//      POST {control}/v1/heartbeats {"hosts": [{"name", "token"?, <the heartbeat's body>}, ...]}, at
//      most 1000 hosts and 512 KiB a request (a host's own token rides in its entry, unless it is the
//      request's), and each host's due time is rounded down to a tenth of its interval, so that the
//      hosts of one process fall into at most ten batches per interval. The answer's entry for each
//      host is handled exactly as that host's own heartbeat's answer would be (its "error" as that
//      status); a failure of the whole request is each host's failure. A 404 for the whole request,
//      or a 2xx without "hosts" (a cogsd without the route, a stand-in that answers anything), turns
//      batching off for good: one heartbeat per host from then on.
// Every request carries `Authorization: Bearer <token>` (when the token is non-empty) and a deadline
// of request_timeout.
//
// Several control-plane addresses (cogsd replicas on one PostgreSQL database, docs/ha.md): any
// replica takes any request (a follower forwards it to the leader). The agent sends every request to
// its current address, one for all hosts. A transport failure (no connection, a broken one, the
// deadline) or an answer 502, 503 or 504 moves it to the next address of control_urls, round-robin,
// for the requests sent from then on (a failure of a request sent to an address already left moves
// nothing: a thousand hosts failing at once move it one step). Any other answer keeps it there. With
// more than one address a heartbeat that failed so is not left to wait for the next beat: it is sent
// again at once (to the next address), and once as many in a row have failed as there are addresses
// (a whole round), after min_backoff, doubling while the failures go on, up to half the interval and
// never later than the next beat would have gone: a lease must not run out while one replica could
// renew it. With one address the pace is the interval's, as above.
//
// The lease (with a link only): a host holds a lease until (the send time of the last request the
// control plane answered 2xx, registration or heartbeat) + T, T being the last lease_ttl_ms answered
// or options.lease_ttl before any. A timer fires at that moment: if no later answer has moved it, the
// host fences itself (link->SetFenced(host, true): a warn line, stats().fences). The next 2xx
// answer unfences it (link->SetFenced(host, false): an info line). Every host starts fenced (no lease
// yet); its first lease unfences it without a line above debug.
//
// Agents do not fence while the control plane, not the host, is cut off: an answer 503 with the JSON
// body {"code": "no_leader"} comes from a replica that reached the database and found no replica
// leading (a failover under way, or a leader that cannot confirm its own lease). No replica can declare
// a host down meanwhile, and a new leader waits out its restart grace (at least the leader lease TTL
// plus the fence window) before it declares anything down, so such an answer extends a lease the
// host holds exactly as a 2xx would (until its send time + T) — but it acknowledges no report, sets
// neither T nor the lease epoch, and does not give a lease to a fenced host (only the leader's own
// answer does: it may carry a new epoch). And only for a bounded time: a request sent more than
// no_leader_limit after the last renewal answered 2xx extends nothing (a replica that says no_leader
// for ever, from a stale view of the database, must not keep a host unfenced that a live leader
// cannot hear from). It still counts as a failed request (the host is not registered by it, the
// heartbeat is not answered by the leader). Every other failure renews
// nothing — 503 "not_leader" (a replica that may have been deposed) and "leader_unreachable" (a
// follower that cannot reach a leader which may well be alive, and may declare this host down) above
// all: the lease runs out and the host fences.
//
// The watchdog (with lease_dir; cogs-compute --driver container --control-url): at every renewal that
// moves a held lease's end (a 2xx, or a no_leader answer that extends it), before the host is
// unfenced, the agent writes that end to <lease_dir>/<host> (oci/lease_file.h; CLOCK_BOOTTIME, read
// before the agent's clock, so the end written is never later than the lease's). Every container of
// the host has its shim kill it once that end has passed: a host whose agent dies, freezes or loses
// the control plane stops its guests by itself at the end of its lease, at most the shims' check
// interval (100 ms) later, well inside the fence window after which the control plane declares the
// host down and rebuilds its servers elsewhere. Only a lease the host holds is written, never a
// longer one; nothing is written when the lease ends or the agent stops, and an agent that starts
// leaves the file as it is: one that restarts within its old lease keeps its guests (its first
// renewal extends it), one that does not come back loses them at the old end. A write that fails is
// logged (an error line; again when it works again): the guests will be killed at the last end
// written.
//
// Threading: created, used and destroyed on the thread that runs `io` (one thread). Destroying the
// agent (or Stop) cancels its timers and requests; nothing of it runs afterwards. It may be destroyed
// while `io` is stopped but must be destroyed before `io` and before the link.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"
#include "cogs/services/compute/compute.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::services::compute {

struct AgentOptions {
    // cogsd's addresses, "http://HOST:PORT" or "https://HOST:PORT" each (no path): one, or every
    // replica's (in the order they are tried, round-robin, from the first).
    std::vector<std::string> control_urls;
    std::string token;  // bearer token for the control plane; empty: none sent
    // Each host's own token (its host token, from its enrollment: a host token registers and renews
    // that host alone), by host name; a host not in it sends `token`.
    std::map<std::string, std::string> host_tokens;
    // For https control urls (required then): cogsd's certificate is verified by its CA and must name
    // the URL's host; the agent presents its client certificate (its host's: cogsd refuses a
    // registration or heartbeat for a host other than the one it names).
    std::shared_ptr<http::TlsContext> tls;
    std::string advertise_url;  // where the control plane reaches this process ("url" of every host)
    std::vector<HostSpec> hosts;
    // A cap on the heartbeat pace; zero: the control plane's (see 2. above).
    Duration heartbeat_interval = Duration::zero();
    // Renew the leases of every host due at once in one request (see 2. above).
    bool batch_renewals = false;
    Duration request_timeout =
        std::chrono::seconds(2);  // with several control_urls: at most half a heartbeat
    Duration min_backoff = std::chrono::milliseconds(100);  // also a failed heartbeat's (several urls)
    Duration max_backoff = std::chrono::seconds(2);
    Duration slow_retry = std::chrono::seconds(5);  // after a definitive refusal of a registration
    size_t max_connections = 8;                     // to the control plane, shared by every host
    // The hosts' instances (the compute domain; it must outlive the agent); null: heartbeats are
    // "{}" and there is no lease.
    HostLink* link = nullptr;
    Duration lease_ttl = std::chrono::seconds(3);  // until the control plane answers its own
    // How long after the send of the last renewal a leader answered no_leader answers may still
    // extend the lease (see above). Keep it below cogsd's --restart-grace-ms minus --lease-ttl-ms.
    Duration no_leader_limit = std::chrono::seconds(5);
    // The retry, heartbeat and lease timers and every reading of time (send times, lease ends); it
    // must outlive the agent. null: runtime::SystemClock(). The HTTP exchanges themselves, and so
    // request_timeout, run on the machine's clock (http::Client's deadlines).
    runtime::Clock* clock = nullptr;
    // The hosts' lease files, <lease_dir>/<host name> (see the watchdog above; the container
    // driver's ComputeDriverOptions::lease_dir), absolute; made at Start. "": none written.
    std::string lease_dir;
};

// Counters, summed over hosts (for tests and logs).
struct AgentStats {
    uint64_t registrations_sent = 0;  // PUTs sent; each ends as one of the next two (unless stopped)
    uint64_t registrations = 0;       // PUTs answered 2xx
    uint64_t registration_failures = 0;
    uint64_t heartbeats_sent = 0;     // each ends as one of the next two (unless stopped)
    uint64_t batches_sent = 0;        // batched renewal requests (each carries many heartbeats)
    uint64_t heartbeats = 0;          // heartbeats answered 2xx
    uint64_t heartbeat_failures = 0;  // 404s and no_leader answers included
    uint64_t no_leader = 0;           // requests answered 503 no_leader (held leases extended)
    uint64_t failovers = 0;           // moves to the next control url
    uint64_t reregistrations = 0;     // 404 answers to a heartbeat
    uint64_t fences = 0;              // hosts fenced because their lease ran out
    uint64_t unfences = 0;            // fenced hosts given a lease again (not the first lease)
    uint64_t lease_writes = 0;        // lease files written (watchdog pets)
    uint64_t lease_write_failures = 0;
};

class HostAgent {
public:
    // Starts registering every host at once (the first requests leave on io's next turn).
    // kInvalidArgument for no control url, one that is not http(s)://HOST:PORT (https without tls),
    // or no hosts; with a
    // lease_dir, for one that is not absolute, a host name that is no file name (empty, ".", "..",
    // a '/'), or no link; kFailedPrecondition if the directory cannot be made.
    static Result<std::unique_ptr<HostAgent>> Start(boost::asio::io_context& io, AgentOptions options);

    ~HostAgent();
    HostAgent(const HostAgent&) = delete;
    HostAgent& operator=(const HostAgent&) = delete;

    // Stops every timer and request; idempotent.
    void Stop();

    AgentStats stats() const;
    // Hosts registered and not since forgotten by the control plane.
    size_t registered_hosts() const;
    // Hosts fenced now (with a link: no lease yet, or it ran out).
    size_t fenced_hosts() const;
    // The control url requests go to now.
    const std::string& current_control_url() const;

private:
    class Impl;
    explicit HostAgent(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

// Parses "http://HOST:PORT" or "https://HOST:PORT" (an optional trailing '/'); kInvalidArgument
// otherwise.
Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url);

}  // namespace cogs::services::compute
