// Leadership: which of several cogsd replicas on one PostgreSQL database leads. The leader runs
// the engine, placement, host liveness, evacuation and the reconcilers; the followers forward the
// API to it and take over when it is lost. (On SQLite there is one process: it always leads.)
//
// The lease is one row (table `leader`): the replica that holds it, its address, a fencing token
// and an expiry on the database's clock. A candidate takes the row when its lease has expired
// (or when it names the candidate itself: a restarted replica need not wait out its own lease),
// with a new token from the counter the engines' leases use, so tokens only grow. The leader
// renews it every `renew_every`; a renewal that finds another token means it was deposed.
//
// Fencing. The leader opens its store with PgOptions::leader_token = its token: every write
// transaction of that store first takes a share lock on the row if, and only if, it still carries
// that token (else the whole transaction is refused, kFenced). A takeover updates the row, so it
// waits for a transaction that holds the lock and is seen by every later one: a leader that was
// paused, partitioned or slow can never write after another one took over. It finds out at its
// next write (or renewal) and must stop at once: cogsd exits and its supervisor starts it again as a
// follower, as Kubernetes' controllers do when they lose their lease.
//
// A leader that cannot renew (the database is unreachable) keeps its role until its lease could
// have expired: LeaseValid() turns false `ttl` after the last renewal it sent that succeeded. From
// then on it must not vouch for anything (cogsd stops acknowledging host heartbeats, so that the
// agents turn to another replica); if it reaches the database again and its token is still there
// (nobody could take over), it simply goes on.
//
// Threading: the elector runs on its own thread with its own connection; every method may be called
// from any thread. The callbacks run on that thread: quick, and they must not call the elector.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::store {

struct ReplicaInfo {
    std::string id;
    std::string address;  // where its API is reached ("http://host:port")
    std::string version;
    bool leader = false;
    int64_t started_ms = 0;  // database clock
    int64_t seen_ms = 0;     // its last election round (database clock)
    int64_t age_ms = 0;      // now - seen_ms, by the database's clock
};

struct LeaderInfo {
    std::string id;  // "" if nobody ever led
    std::string address;
    uint64_t token = 0;
    int64_t since_ms = 0;
    bool alive = false;    // its lease had not expired at the last read
    SteadyTime read_at{};  // when that read was made (this process's steady clock)
};

struct ElectorOptions {
    std::string conninfo;  // as PgOptions::conninfo
    std::string replica_id;
    std::string address;
    std::string version;
    Duration ttl = std::chrono::milliseconds(1000);
    Duration renew_every = std::chrono::milliseconds(200);  // also how often a follower looks
    Duration statement_timeout = std::chrono::seconds(2);
    // Called when this replica becomes the leader, with its token, and when it is deposed (a
    // renewal found another token in the row). Stopping the elector gives the lease up silently.
    std::function<void(uint64_t token)> on_elected{};
    std::function<void(const std::string& why)> on_deposed{};
    // Only for candidates that want to follow for now (tests).
    bool candidate = true;
};

class Elector {
public:
    // Connects (creating or migrating the schema, as OpenPgStore), records this replica and starts
    // the election thread. kUnavailable if the database cannot be reached.
    static Result<std::unique_ptr<Elector>> Start(ElectorOptions options);
    // Stops the thread; a leader gives its lease up (expires it at once) so that a follower takes
    // over without waiting for it to expire.
    ~Elector();
    Elector(const Elector&) = delete;
    Elector& operator=(const Elector&) = delete;

    // Runs a round now instead of at the next tick (cogsd, when its store says it was deposed).
    void Poke();

    bool IsLeader() const;
    uint64_t token() const;  // while leading
    // On the leader: its last successful renewal was sent less than `ttl` ago.
    bool LeaseValid() const;
    // The leader as last read (followers forward there); nullopt before the first read.
    std::optional<LeaderInfo> Leader() const;
    // Successful database rounds so far (tests wait on them).
    uint64_t rounds() const;
    // Leaders seen to change (counting this replica's own elections).
    uint64_t leader_changes() const;

    // Every replica that ran an election round in the last `within`, the leader marked. Blocking.
    Result<std::vector<ReplicaInfo>> Replicas(Duration within = std::chrono::hours(1));

    class Impl;

private:
    explicit Elector(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogs::store
