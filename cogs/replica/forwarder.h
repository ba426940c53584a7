// Forwarder: the API of a follower replica. A client or a load balancer may talk to any replica;
// a follower answers /healthz itself and forwards every other request to the leader it last read
// from the store (cogs/store/leadership.h), unchanged (method, target, headers, body), and hands
// the leader's answer back unchanged. The leader authenticates, validates and decides: a follower
// holds no model and writes nothing.
//
// When there is no live leader (its lease expired: a failover is under way) the answer is 503
// {"code":"no_leader"} with Retry-After: 1 — also when a forward failed and the leader's lease has
// run out meanwhile; when the leader cannot be reached, 503 {"code":"leader_unreachable"} (until
// its lease runs out, a dead leader is that); when the last
// read of the store is too old to say, 503 {"code":"leader_unknown"} — the outcome of a request that was sent
// is then unknown (as for any lost reply: resend it with its Idempotency-Key). A request that was already
// forwarded once (header x-cogs-forwarded) is never forwarded again: two replicas that disagree on who leads
// cannot bounce a request between them.
//
// The distinction matters to compute agents (docs/ha.md): "no_leader" comes from a replica that
// read the store and found nobody who could act on a host, so no host can be declared down meanwhile
// (a new leader waits out its restart grace first); an agent may take it as a renewal.
//
// The agents' registrations and heartbeats (PUT /v1/hosts/{name}, POST /v1/hosts/{name}/heartbeat:
// the leader's system lane, cogs/cloud/api/admission.h) go through a connection pool of their own,
// `system_max_connections`: a tenant's flood that fills the pool (its requests then wait for a
// connection) never delays a renewal.
//
// Threading: on the io thread of the server that calls the handler (two connection pools per leader
// address, made on that thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "cogs/base/time.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/store/leadership.h"

namespace boost::asio {
class io_context;
}

namespace cogs::replica {

struct ForwarderOptions {
    std::string replica_id;  // this replica (x-cogs-forwarded names it)
    // The leader as last read; nullopt: not read yet.
    std::function<std::optional<store::LeaderInfo>()> leader;
    Duration timeout = std::chrono::seconds(30);  // a forwarded request's deadline
    // A forwarded heartbeat's (POST /v1/hosts/{name}/heartbeat): below an agent's own deadline per
    // try (half its heartbeat period, 500 ms), so that the agent hears this replica's answer rather
    // than time out on a frozen leader, and moves on at once.
    Duration heartbeat_timeout = std::chrono::milliseconds(300);
    // A read of the leader older than this (the follower cannot reach the database) says nothing:
    // 503 leader_unknown, which agents count as a failure — a follower cut off from the database
    // must not keep telling them no_leader.
    Duration stale_after = std::chrono::seconds(2);
    size_t max_connections = 256;        // to the leader
    size_t system_max_connections = 64;  // to the leader, for registrations and heartbeats only
    // The replicas' TLS (cogsd's client context, its certificate "cogsd"): null, plain HTTP; else the
    // leader is called at its https address, its certificate verified by the address's host. The
    // client certificate a request came with (Request::peer_name: an agent's host) travels to the
    // leader in x-cogs-peer-name, which the leader believes only from a client whose certificate
    // is "cogsd" (cogs/cloud/api/http_api.h).
    std::shared_ptr<http::TlsContext> tls{};
    // An image's content (GET /v1/images/{id}/file) passes through a temporary file in this
    // directory, never whole in memory, within download_timeout; "": read into memory like any
    // answer (64 MiB at most, the HTTP client's limit).
    std::string download_dir{};
    Duration download_timeout = std::chrono::minutes(10);
};

struct ForwarderStats {
    uint64_t forwarded = 0;    // answered by the leader
    uint64_t no_leader = 0;    // 503 no_leader
    uint64_t unreachable = 0;  // 503 leader_unreachable
};

class Forwarder {
public:
    Forwarder(boost::asio::io_context& io, ForwarderOptions options);
    ~Forwarder();

    // /healthz: {"status":"ok","role":"follower","leader":"<id>"}; everything else forwarded.
    http::Handler Handler();
    ForwarderStats stats() const;

    class State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace cogs::replica
