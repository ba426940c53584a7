// cogs-chaos cloud: three threads over one ChaosCloud.
//   - the workload (this thread): API operations at a seeded rate through the relay that loses
//     replies, each request re-sent with its Idempotency-Key until answered, some answered POSTs
//     sent once more with it (an echo: the answer must be the first one), each accepted request
//     tracked until its resource is terminal; on the faults thread's order, a burst of requests
//     sent at once from threads of their own, cogsd killed amid them;
//   - the faults thread: a seeded schedule of injections and their undoing (restarts, heals, thaws);
//   - the sampler: every ~200 ms the agents' inventories (directly; a frozen agent is not read),
//     hosts, servers and volumes; it counts split brain and times detection and healing.
// They share `Shared` under one mutex; only the faults thread touches processes during the run (a
// burst's kill is made by the burst's thread it hands it to, while it waits: one at a time).
// Once the requests settle, the audit (cloud_audit.h) runs until it finds nothing or its deadline.
#include "test/chaos/cloud_chaos.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "test/chaos/chaos_cloud.h"
#include "test/chaos/ha_checks.h"
#include "test/support/cloud_api.h"
#include "test/support/cloud_audit.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// How long a partition or a killed host takes to be declared down by the control plane: the lease
// TTL plus the fencing window (protocol.md), or today's --host-timeout-s.
constexpr double kHostDownWindowS = 4.0;

struct ServerView {
    std::string status;
    std::string host;
};

struct Snapshot {
    SteadyTime started{};
    SteadyTime finished{};
    bool servers_ok = false;
    bool volumes_ok = false;
    bool hosts_ok = false;
    std::map<std::string, ServerView> servers;
    std::map<std::string, std::string> volumes;     // id -> status
    std::map<std::string, std::string> host_state;  // name -> up / suspect / down
    std::vector<std::optional<std::map<std::string, InstanceView>>> inventories;  // per host
};

struct HostFailure {
    std::string kind;  // "agent_kill" | "partition" | "agent_freeze"
    int host = 0;
    SteadyTime at{};
    std::set<std::string> servers;  // ACTIVE on the host at the injection, still to heal
    size_t initial_servers = 0;
    std::optional<SteadyTime> detected;
    std::optional<SteadyTime> healed;
    std::optional<SteadyTime> recovered;  // the agent restarted or thawed / the partition healed
};

// A burst the faults thread orders and the workload sends: `kill` (SIGKILL cogsd) is called by
// whichever of the burst's threads sees the `kill_after`-th try come back (answered or not), or at
// once after sending when it is 0, so that the kill lands amid the burst whatever the machine's
// speed (a thread woken afterwards could find every try back). The faults thread waits meanwhile:
// processes are still touched by one thread at a time.
enum class BurstKind { kCreates, kChanges };
struct BurstOrder {
    BurstKind kind = BurstKind::kCreates;
    int kill_after = 0;  // at most the burst's size - 1
    std::function<void()> kill;
};
struct BurstDone {
    int size = 0;
    bool killed = false;
    int back_at_kill = 0;
};

// What happened to cogsd's replicas (`ha`), for the report.
struct ReplicaCounts {
    int thawed = 0;                    // leaders frozen and thawed
    int thawed_exited = 0;             // ... that exited 75 by themselves, as they must
    int thawed_bad_exit = 0;           // ... that exited otherwise
    int thawed_alive = 0;              // ... still running `kThawDeadline` after the thaw (killed then)
    int thawed_leading = 0;            // ... of which still claimed to lead
    std::vector<double> thaw_exit_s;   // thaw -> exit 75
    std::map<std::string, int> exits;  // exits the run did not cause, by status ("75": deposed)
    int crashes = 0;                   // of which not 75
    std::set<uint64_t> split_leaders;  // tokens two replicas claimed to lead with at once
    int leader_overlaps = 0;           // rounds where two replicas claimed to lead (tokens differ)
};

struct Shared {
    std::mutex mu;
    std::shared_ptr<const Snapshot> latest;
    std::set<std::string> split_brain;
    std::vector<HostFailure> failures;
    std::set<std::string> user_changed;   // servers the workload stopped or deleted (they drop out of heals)
    std::map<std::string, int> injected;  // kind -> count
    uint64_t samples = 0;
    uint64_t incoherent_samples = 0;
    std::set<int> frozen;           // hosts whose agent is frozen: the sampler does not read them
    std::set<int> frozen_replicas;  // replicas of cogsd frozen (SIGSTOP): not read either
    ReplicaCounts replicas;
    FailoverClock failovers;   // a leader lost -> a mutation answered (thread-safe on its own)
    FailoverClock pg_outages;  // PostgreSQL killed or stopped -> a mutation answered
    // A burst: the faults thread sets `burst_order`, the workload takes it, sends it, sets
    // `burst_done` and notifies `burst_cv`.
    std::optional<BurstOrder> burst_order;
    std::optional<BurstDone> burst_done;
    std::condition_variable burst_cv;
    std::atomic<bool> stop_sampler{false};
    std::atomic<bool> stop_faults{false};
};

class Logger {
public:
    explicit Logger(SteadyTime t0) : t0_(t0) {}
    template <typename... Args>
    void operator()(fmt::format_string<Args...> f, Args&&... args) const {
        const std::string line = fmt::format(f, std::forward<Args>(args)...);
        std::lock_guard lock(mu_);
        fmt::print(stderr, "[{:8.3f}s] {}\n", Seconds(SteadyClock::now() - t0_), line);
    }
    SteadyTime t0() const { return t0_; }

private:
    SteadyTime t0_;
    mutable std::mutex mu_;
};

// --- Sampler -------------------------------------------------------------------------------

void UpdateFailure(HostFailure& f, const Snapshot& s, const std::set<std::string>& user_changed) {
    if (s.started < f.at) {
        return;
    }
    if (!f.detected && s.hosts_ok) {
        auto it = s.host_state.find(ChaosCloud::HostName(f.host));
        if (it != s.host_state.end() && (it->second == "suspect" || it->second == "down")) {
            f.detected = s.finished;
        }
    }
    if (f.healed || !s.servers_ok || f.initial_servers == 0) {
        return;
    }
    bool all = true;
    for (auto it = f.servers.begin(); it != f.servers.end();) {
        if (user_changed.count(*it) != 0) {
            it = f.servers.erase(it);  // stopped or deleted on purpose meanwhile
            continue;
        }
        auto sv = s.servers.find(*it);
        bool ok = false;
        if (sv != s.servers.end() && sv->second.status == "ACTIVE" &&
            (sv->second.host != ChaosCloud::HostName(f.host) || f.recovered)) {
            for (const auto& inv : s.inventories) {
                if (inv) {
                    auto i = inv->find(*it);
                    ok = ok || (i != inv->end() && i->second.host == sv->second.host &&
                                i->second.state == "ACTIVE");
                }
            }
        }
        all = all && ok;
        ++it;
    }
    if (all) {
        f.healed = s.finished;
    }
}

// Replicas: which of them claim to lead now (their own /metrics; a frozen one is not read). Two at
// once is expected for a moment (a thawed leader that has not yet found it was replaced: it can no
// longer write); two with one token would be split brain. Their tokens come from their logs.
void JudgeLeaders(const ChaosCloud& cloud, std::vector<ApiClient>& replicas, const std::set<int>& frozen,
                  Shared& sh, const Logger& log) {
    std::vector<int> claim;
    for (int r = 0; r < static_cast<int>(replicas.size()); ++r) {
        if (frozen.count(r) == 0 && ClaimsToLead(replicas[r], 500ms).value_or(false)) {
            claim.push_back(r);
        }
    }
    if (claim.size() < 2) {
        return;
    }
    std::map<uint64_t, std::vector<std::string>> by_token;
    for (int r : claim) {
        const auto tokens = ElectedTokensInLog(cloud.LogPath(cloud.ReplicaProc(r)));
        by_token[tokens.empty() ? 0 : tokens.back()].push_back(cloud.ReplicaId(r));
    }
    std::lock_guard lock(sh.mu);
    ++sh.replicas.leader_overlaps;
    for (const auto& [token, ids] : by_token) {
        if (ids.size() > 1 && sh.replicas.split_leaders.insert(token).second) {
            log("SPLIT BRAIN: {} claim to lead with one token {}", fmt::join(ids, " and "), token);
        }
    }
    if (by_token.size() > 1) {
        std::vector<std::string> who;
        for (const auto& [token, ids] : by_token) {
            who.push_back(fmt::format("{} (token {})", fmt::join(ids, ", "), token));
        }
        log("two replicas claim to lead: {}", fmt::join(who, " and "));
    }
}

void RunSampler(const ChaosCloud& cloud, Shared& sh, const Logger& log) {
    ControlPlaneClient api(cloud.api_urls(), cloud.admin_token());
    std::vector<ApiClient> agents;
    for (int i = 0; i < cloud.hosts(); ++i) {
        agents.emplace_back(cloud.ProcessUrl(ChaosCloud::kAgent + i),
                            cloud.ServiceToken(ChaosCloud::kAgent + i));
    }
    std::vector<ApiClient> replicas;
    for (int r = 0; cloud.replicated() && r < cloud.replicas(); ++r) {
        replicas.emplace_back(cloud.ProcessUrl(cloud.ReplicaProc(r)), "");
    }
    while (!sh.stop_sampler) {
        auto snap = std::make_shared<Snapshot>();
        snap->started = SteadyClock::now();
        std::set<int> frozen;
        std::set<int> frozen_replicas;
        {
            std::lock_guard lock(sh.mu);
            frozen = sh.frozen;
            frozen_replicas = sh.frozen_replicas;
        }
        if (!replicas.empty()) {
            JudgeLeaders(cloud, replicas, frozen_replicas, sh, log);
            snap->started = SteadyClock::now();
        }
        for (size_t h = 0; h < agents.size(); ++h) {
            // A frozen agent runs nothing (its instances neither) and would only stall the round.
            auto inv = frozen.count(static_cast<int>(h)) != 0
                           ? Result<std::map<std::string, InstanceView>>(
                                 MakeError(ErrorCode::kUnavailable, "frozen"))
                           : ComputeInventory(agents[h], 1s);
            snap->inventories.push_back(inv ? std::optional(std::move(*inv)) : std::nullopt);
        }
        // Inventories read too far apart cannot tell "at the same moment"; such rounds do not count.
        const bool coherent = SteadyClock::now() - snap->started < 500ms;
        if (auto r = api.Call("GET", "/v1/hosts", "", {}, 2s); r && r->status == 200 && r->body.is_object()) {
            snap->hosts_ok = true;
            for (const auto& h : r->body.as_object().at("hosts").as_array()) {
                snap->host_state[Str(h.as_object(), "name")] = Str(h.as_object(), "state");
            }
        }
        if (auto servers = ListAll(api, "/v1/servers", "servers")) {
            snap->servers_ok = true;
            for (const auto& s : *servers) {
                snap->servers[Str(s, "id")] = ServerView{Str(s, "status"), Str(s, "host")};
            }
        }
        if (auto volumes = ListAll(api, "/v1/volumes", "volumes")) {
            snap->volumes_ok = true;
            for (const auto& v : *volumes) {
                snap->volumes[Str(v, "id")] = Str(v, "status");
            }
        }
        snap->finished = SteadyClock::now();
        std::map<std::string, std::set<std::string>> running;  // server -> hosts running it
        for (const auto& inv : snap->inventories) {
            if (inv) {
                for (const auto& [id, i] : *inv) {
                    if (InstanceRunning(i.state)) {
                        running[id].insert(i.host);
                    }
                }
            }
        }
        {
            std::lock_guard lock(sh.mu);
            ++sh.samples;
            if (!coherent) {
                ++sh.incoherent_samples;
            } else {
                for (const auto& [id, hosts] : running) {
                    if (hosts.size() > 1 && sh.split_brain.insert(id).second) {
                        log("SPLIT BRAIN: server {} runs on {}", id, fmt::join(hosts, ", "));
                    }
                }
            }
            for (auto& f : sh.failures) {
                const bool was_detected = f.detected.has_value();
                const bool was_healed = f.healed.has_value();
                UpdateFailure(f, *snap, sh.user_changed);
                if (!was_detected && f.detected) {
                    log("detected {} of {}: {:.2f}s", f.kind, ChaosCloud::HostName(f.host),
                        Seconds(*f.detected - f.at));
                }
                if (!was_healed && f.healed) {
                    log("healed {} of {}: {} servers ACTIVE again after {:.2f}s", f.kind,
                        ChaosCloud::HostName(f.host), f.initial_servers, Seconds(*f.healed - f.at));
                }
            }
            sh.latest = snap;
        }
        std::this_thread::sleep_until(snap->started + 200ms);
    }
}

// --- Faults --------------------------------------------------------------------------------

enum class Inject {
    kAgentKill,
    kAgentFreeze,
    kPartition,
    kCogsdKill,
    kBurstKill,
    kNetworkKill,
    kVolumeKill,
    kServiceFaults,
    kCrash,
    // `ha` only (cogsd's replicas on PostgreSQL), instead of kCogsdKill and kBurstKill:
    kLeaderKill,
    kLeaderFreeze,
    kLeaderBurstKill,
    kFollowerKill,
    kPgRestart
};

const char* Name(Inject k) {
    switch (k) {
        case Inject::kAgentKill: return "agent_kill";
        case Inject::kAgentFreeze: return "agent_freeze";
        case Inject::kPartition: return "partition";
        case Inject::kCogsdKill: return "cogsd_kill";
        case Inject::kBurstKill: return "cogsd_burst_kill";
        case Inject::kNetworkKill: return "network_kill";
        case Inject::kVolumeKill: return "volume_kill";
        case Inject::kServiceFaults: return "service_faults";
        case Inject::kCrash: return "instance_crash";
        case Inject::kLeaderKill: return "leader_kill";
        case Inject::kLeaderFreeze: return "leader_freeze";
        case Inject::kLeaderBurstKill: return "leader_burst_kill";
        case Inject::kFollowerKill: return "follower_kill";
        case Inject::kPgRestart: return "pg_restart";
    }
    return "?";
}

// A failover slower than this fails an `ha` run (the issue's target is 5 s; a loaded machine gets slack).
constexpr double kFailoverLimitS = 15;

// How long a thawed leader may take to find it was replaced and exit (75): its next lease renewal
// comes at once, one statement timeout at most; a loaded machine gets slack.
constexpr Duration kThawDeadline = 10s;

class Faults {
public:
    Faults(ChaosCloud& cloud, Shared& sh, const Logger& log, const CloudChaosOptions& o)
        : cloud_(cloud),
          sh_(sh),
          log_(log),
          o_(o),
          rng_(o.seed ^ 0x9e3779b97f4a7c15ULL),
          api_(cloud.api_urls(), cloud.admin_token()),
          killed_(cloud.hosts(), false),
          frozen_(cloud.hosts(), false),
          replica_(cloud.replicas(), Replica::kUp) {
        for (int r = 0; r < cloud.replicas(); ++r) {
            replica_api_.emplace_back(cloud.ProcessUrl(cloud.ReplicaProc(r)), cloud.admin_token());
        }
        // Injections from 5 s to 5 s before the end, 1.5-4 s apart, in seeded shuffled rounds of
        // every kind (so that even a short run injects each kind once; bursts of both kinds). With
        // replicas, the control plane's faults and the others alternate (each list shuffled), so that
        // a short run has its share of both.
        std::vector<Inject> order;
        double at = 5;
        while (at < o.duration_s - 5) {
            if (order.empty()) {
                order = Round();
            }
            const Inject kind = order.back();
            order.pop_back();
            Schedule(at, [this, kind] { Do(kind); });
            at += std::uniform_real_distribution<double>(1.5, 4.0)(rng_);
        }
    }

    // Runs the schedule until stop_faults; pending undo actions are left to RestoreAll.
    void Run() {
        while (!sh_.stop_faults && !queue_.empty()) {
            SuperviseReplicas();
            const auto due = log_.t0() + std::chrono::duration_cast<Duration>(
                                             std::chrono::duration<double>(queue_.top().at));
            if (SteadyClock::now() < due) {
                std::this_thread::sleep_for(std::min<Duration>(due - SteadyClock::now(), 20ms));
                continue;
            }
            auto fn = queue_.top().fn;
            queue_.pop();
            fn();
        }
    }

    // Replicas (`ha`): restarts one that exited by itself (a deposed leader exits 75 and comes back as
    // a follower, as under `cogs dev`), counting its exit status; at most every 100 ms.
    void SuperviseReplicas() {
        if (!cloud_.replicated() || SteadyClock::now() < next_supervise_) {
            return;
        }
        next_supervise_ = SteadyClock::now() + 100ms;
        for (int r = 0; r < cloud_.replicas(); ++r) {
            const int proc = cloud_.ReplicaProc(r);
            if (replica_[r] == Replica::kUp && !cloud_.Running(proc)) {
                const int status = cloud_.ExitStatus(proc).value_or(-1);
                {
                    std::lock_guard lock(sh_.mu);
                    ++sh_.replicas.exits[std::to_string(status)];
                    sh_.replicas.crashes += status == 75 ? 0 : 1;
                }
                log_("{} exited by itself (status {}{}); restarting it", cloud_.ReplicaId(r), status,
                     status == 75 ? ": deposed" : ", NOT the deposed leader's 75");
                replica_[r] = Replica::kKilled;
                RestartReplicaLater(r, 0.5);
            }
        }
    }

    // The end of an `ha` run (the schedule stopped): thaws a frozen replica and waits until each
    // thawed one exited (or kThawDeadline), as during the run. RestoreAll restarts them afterwards.
    void FinishReplicas() {
        for (int r = 0; r < cloud_.replicas(); ++r) {
            if (replica_[r] == Replica::kFrozen) {
                Thaw(r);
            }
        }
        for (int r = 0; r < cloud_.replicas(); ++r) {
            while (replica_[r] == Replica::kThawed && !CheckThawed(r)) {
                std::this_thread::sleep_for(100ms);
            }
        }
    }

    // After ChaosCloud::RestoreAll: every replica runs again (and is supervised as such).
    void ReplicasRestored() { replica_.assign(replica_.size(), Replica::kUp); }

private:
    struct Item {
        double at;
        uint64_t seq;
        std::function<void()> fn;
        bool operator>(const Item& o) const { return at != o.at ? at > o.at : seq > o.seq; }
    };

    void Schedule(double at, std::function<void()> fn) { queue_.push(Item{at, seq_++, std::move(fn)}); }

    // One round of injections, shuffled: every kind once (twice: bursts, crashes). With replicas, the
    // control plane's own faults alternate with the others.
    std::vector<Inject> Round() {
        if (!cloud_.replicated()) {
            std::vector<Inject> round = {Inject::kAgentKill,   Inject::kAgentFreeze, Inject::kPartition,
                                         Inject::kCogsdKill,   Inject::kBurstKill,   Inject::kBurstKill,
                                         Inject::kNetworkKill, Inject::kVolumeKill,  Inject::kServiceFaults,
                                         Inject::kCrash,       Inject::kCrash};
            std::shuffle(round.begin(), round.end(), rng_);
            return round;
        }
        std::vector<Inject> control = {Inject::kLeaderKill, Inject::kLeaderFreeze, Inject::kLeaderBurstKill,
                                       Inject::kFollowerKill, Inject::kPgRestart};
        std::vector<Inject> other = {Inject::kAgentKill,   Inject::kAgentFreeze, Inject::kPartition,
                                     Inject::kNetworkKill, Inject::kVolumeKill,  Inject::kServiceFaults,
                                     Inject::kCrash};
        std::shuffle(control.begin(), control.end(), rng_);
        std::shuffle(other.begin(), other.end(), rng_);
        if (rounds_++ == 0) {
            // A short run (the ctest's) loses its leader both ways: those two go first (to the back,
            // where the round takes them from).
            std::stable_partition(control.begin(), control.end(), [](Inject k) {
                return k != Inject::kLeaderKill && k != Inject::kLeaderFreeze;
            });
        }
        std::vector<Inject> round;  // taken from the back: control first
        while (!control.empty() || !other.empty()) {
            for (auto* list : {&control, &other}) {
                if (!list->empty()) {
                    round.push_back(list->back());
                    list->pop_back();
                }
            }
        }
        std::reverse(round.begin(), round.end());
        return round;
    }

    // Injects `k` again 2 s later if the run goes on that long (a kind whose turn came at a bad moment).
    void Later(Inject k, const std::string& why) {
        const bool again = Now() + 2 < o_.duration_s - 5;
        log_("skip {}: {}{}", Name(k), why, again ? " (again in 2s)" : "");
        if (again) {
            Schedule(Now() + 2, [this, k] { Do(k); });
        }
    }

    int LiveReplicas() const {
        return static_cast<int>(std::count(replica_.begin(), replica_.end(), Replica::kUp));
    }

    // Why a fault of the control plane must wait ("" if it may go now): each is timed alone.
    std::string ControlPlaneBusy(Inject k) {
        if (sh_.failovers.Pending()) {
            return "a failover is being timed";
        }
        if (sh_.pg_outages.Pending() || !cloud_.PostgresRunning()) {
            return "PostgreSQL is down";
        }
        const bool frozen = std::any_of(replica_.begin(), replica_.end(), [](Replica r) {
            return r == Replica::kFrozen || r == Replica::kThawed;
        });
        if ((k == Inject::kPgRestart || k == Inject::kLeaderFreeze) && frozen) {
            return "a replica is frozen";  // its thaw is judged with its database up
        }
        if (k != Inject::kPgRestart && LiveReplicas() < 2) {
            return "only one replica runs";
        }
        return "";
    }

    // The replica that leads, as any live replica answers GET /v1/replicas; -1 if none does (or the
    // one named is not one the run keeps up).
    int FindLeader() {
        for (int r = 0; r < cloud_.replicas(); ++r) {
            if (replica_[r] != Replica::kUp) {
                continue;
            }
            auto id = LeaderId(replica_api_[r], 2s);
            if (!id) {
                continue;
            }
            const int leader = cloud_.ReplicaIndex(*id);
            return leader >= 0 && replica_[leader] == Replica::kUp ? leader : -1;
        }
        return -1;
    }

    void RestartReplicaLater(int r, double after) {
        Schedule(Now() + after, [this, r] {
            // A replica waits for its database before it listens: not while PostgreSQL is down.
            if (!cloud_.PostgresRunning()) {
                RestartReplicaLater(r, 0.5);
                return;
            }
            if (auto s = cloud_.Restart(cloud_.ReplicaProc(r)); !s) {
                log_("restart of {} FAILED: {}", cloud_.ReplicaId(r), s.error().message);
                RestartReplicaLater(r, 1);
                return;
            }
            replica_[r] = Replica::kUp;
            log_("restarted {}", cloud_.ReplicaId(r));
        });
    }

    void Thaw(int r) {
        cloud_.Thaw(cloud_.ReplicaProc(r));
        {
            std::lock_guard lock(sh_.mu);
            sh_.frozen_replicas.erase(r);
            ++sh_.replicas.thawed;
        }
        replica_[r] = Replica::kThawed;
        thawed_at_[r] = SteadyClock::now();
        log_("thawed {} (SIGCONT): it must find it was replaced and exit 75", cloud_.ReplicaId(r));
    }

    // A thawed leader: true once judged (it exited, or kThawDeadline passed: then it is killed), its
    // restart scheduled.
    bool CheckThawed(int r) {
        const int proc = cloud_.ReplicaProc(r);
        const double after = Seconds(SteadyClock::now() - thawed_at_[r]);
        if (!cloud_.Running(proc)) {
            const int status = cloud_.ExitStatus(proc).value_or(-1);
            {
                std::lock_guard lock(sh_.mu);
                if (status == 75) {
                    ++sh_.replicas.thawed_exited;
                    sh_.replicas.thaw_exit_s.push_back(after);
                } else {
                    ++sh_.replicas.thawed_bad_exit;
                }
            }
            log_("thawed {} exited {:.2f}s after SIGCONT with status {}{}", cloud_.ReplicaId(r), after,
                 status, status == 75 ? " (deposed), as it must" : ": NOT 75");
        } else if (SteadyClock::now() - thawed_at_[r] > kThawDeadline) {
            ApiClient direct(cloud_.ProcessUrl(proc), "");
            const std::optional<bool> leads = ClaimsToLead(direct, 2s);
            {
                std::lock_guard lock(sh_.mu);
                ++sh_.replicas.thawed_alive;
                sh_.replicas.thawed_leading += leads.value_or(false) ? 1 : 0;
            }
            log_("THAWED LEADER DID NOT EXIT: {} still runs {:.1f}s after SIGCONT ({}); killing it",
                 cloud_.ReplicaId(r), after,
                 !leads   ? "its /metrics does not answer"
                 : *leads ? "it STILL CLAIMS TO LEAD"
                          : "as a follower");
            cloud_.Kill(proc);
        } else {
            return false;
        }
        replica_[r] = Replica::kKilled;
        RestartReplicaLater(r, 0.5);
        return true;
    }

    void WatchThawed(int r) {
        if (!CheckThawed(r)) {
            Schedule(Now() + 0.1, [this, r] { WatchThawed(r); });
        }
    }

    // The control plane's faults (`ha`); false if skipped.
    bool DoControlPlane(Inject k) {
        if (const std::string busy = ControlPlaneBusy(k); !busy.empty()) {
            Later(k, busy);
            return false;
        }
        if (k == Inject::kPgRestart) {
            const bool kill = rng_() % 2 == 0;
            const double pause = Uniform(0.5, 3.0);
            Status stopped;
            if (kill) {
                cloud_.KillPostgres();
            } else {
                stopped = cloud_.StopPostgres(5s);
            }
            // Timed from the moment it is down (a commit it made while going down may still be
            // answered after the kill began).
            sh_.pg_outages.Lost(kill ? "pg_kill" : "pg_stop", SteadyClock::now());
            log_("inject pg_restart: {} PostgreSQL{}, back in {:.1f}s",
                 kill ? "SIGKILL" : "stop (fast shutdown)",
                 stopped ? "" : " (" + stopped.error().message + ")", pause);
            RestartPostgresLater(pause);
            return true;
        }
        const int leader = FindLeader();
        if (leader < 0) {
            Later(k, "no replica leads");
            return false;
        }
        if (k == Inject::kFollowerKill) {
            std::vector<int> followers;
            for (int r = 0; r < cloud_.replicas(); ++r) {
                if (r != leader && replica_[r] == Replica::kUp) {
                    followers.push_back(r);
                }
            }
            const int r = followers[rng_() % followers.size()];  // LiveReplicas() >= 2
            cloud_.Kill(cloud_.ReplicaProc(r));
            replica_[r] = Replica::kKilled;
            const double pause = Uniform(1.0, 5.0);
            log_("inject follower_kill: SIGKILL {} (follower of {}), back in {:.1f}s", cloud_.ReplicaId(r),
                 cloud_.ReplicaId(leader), pause);
            RestartReplicaLater(r, pause);
            return true;
        }
        const int proc = cloud_.ReplicaProc(leader);
        if (k == Inject::kLeaderKill) {
            cloud_.Kill(proc);
            sh_.failovers.Lost(Name(k), SteadyClock::now());
            replica_[leader] = Replica::kKilled;
            const double pause = Uniform(0.5, 3.0);
            log_("inject leader_kill: SIGKILL {} (the leader), back in {:.1f}s", cloud_.ReplicaId(leader),
                 pause);
            RestartReplicaLater(leader, pause);
            return true;
        }
        if (k == Inject::kLeaderFreeze) {
            {
                std::lock_guard lock(sh_.mu);
                sh_.frozen_replicas.insert(leader);
            }
            cloud_.Freeze(proc);
            sh_.failovers.Lost(Name(k), SteadyClock::now());
            replica_[leader] = Replica::kFrozen;
            const double length = Uniform(5, 15);
            log_("inject leader_freeze: SIGSTOP {} (the leader) for {:.1f}s", cloud_.ReplicaId(leader),
                 length);
            Schedule(Now() + length, [this, leader] {
                Thaw(leader);
                WatchThawed(leader);
            });
            return true;
        }
        // kLeaderBurstKill: the leader dies amid a burst of the workload's (as kBurstKill).
        const BurstKind kind = bursts_++ % 2 == 0 ? BurstKind::kCreates : BurstKind::kChanges;
        std::optional<BurstDone> done;
        {
            std::unique_lock lock(sh_.mu);
            sh_.burst_done.reset();
            sh_.burst_order =
                BurstOrder{kind, static_cast<int>(rng_() % static_cast<uint64_t>(o_.burst)), [this, proc] {
                               cloud_.Kill(proc);
                               sh_.failovers.Lost("leader_burst_kill", SteadyClock::now());
                           }};
            sh_.burst_cv.wait_for(lock, 60s, [&] { return sh_.burst_done || sh_.stop_faults; });
            sh_.burst_order.reset();
            done = sh_.burst_done;
        }
        if (!done || !done->killed) {
            log_("skip {}: the workload sent no burst", Name(k));
            return false;
        }
        replica_[leader] = Replica::kKilled;
        const double pause = Uniform(0.5, 3.0);
        log_("inject {} (SIGKILL {}, the leader, once {} of a burst of {} {} came back; back in {:.1f}s)",
             Name(k), cloud_.ReplicaId(leader), done->back_at_kill, done->size,
             kind == BurstKind::kCreates ? "creates" : "deletes, attaches, detaches and power actions",
             pause);
        RestartReplicaLater(leader, pause);
        return true;
    }

    void RestartPostgresLater(double after) {
        Schedule(Now() + after, [this] {
            if (auto s = cloud_.RestartPostgres(); !s) {
                log_("restart of PostgreSQL FAILED: {}; again in 1s", s.error().message);
                RestartPostgresLater(1);
                return;
            }
            log_("restarted PostgreSQL");
        });
    }
    double Now() const { return Seconds(SteadyClock::now() - log_.t0()); }
    double Uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

    void Count(Inject k) {
        std::lock_guard lock(sh_.mu);
        ++sh_.injected[Name(k)];
    }

    std::vector<int> AliveHosts() const {
        std::vector<int> out;
        for (int h = 0; h < cloud_.hosts(); ++h) {
            if (!killed_[h] && !frozen_[h] && !cloud_.Partitioned(h)) {
                out.push_back(h);
            }
        }
        return out;
    }

    // Servers ACTIVE on host h according to cogsd now (or the latest sample if cogsd is down).
    std::set<std::string> ActiveServersOn(int h) {
        std::set<std::string> out;
        const std::string name = ChaosCloud::HostName(h);
        if (auto list = ListAll(api_, "/v1/servers?host=" + name, "servers")) {
            for (const auto& s : *list) {
                if (Str(s, "status") == "ACTIVE" && Str(s, "host") == name) {
                    out.insert(Str(s, "id"));
                }
            }
            return out;
        }
        std::lock_guard lock(sh_.mu);
        if (sh_.latest) {
            for (const auto& [id, s] : sh_.latest->servers) {
                if (s.status == "ACTIVE" && s.host == name) {
                    out.insert(id);
                }
            }
        }
        return out;
    }

    size_t AddFailure(Inject k, int h) {
        HostFailure f;
        f.kind = Name(k);
        f.host = h;
        f.servers = ActiveServersOn(h);
        f.initial_servers = f.servers.size();
        f.at = SteadyClock::now();
        std::lock_guard lock(sh_.mu);
        sh_.failures.push_back(std::move(f));
        return sh_.failures.size() - 1;
    }

    void Recovered(size_t failure) {
        std::lock_guard lock(sh_.mu);
        sh_.failures[failure].recovered = SteadyClock::now();
    }

    void RestartLater(int proc, double after) {
        Schedule(Now() + after, [this, proc] {
            if (auto s = cloud_.Restart(proc); !s) {
                log_("restart of {} FAILED: {}", cloud_.ProcessName(proc), s.error().message);
            } else {
                log_("restarted {}", cloud_.ProcessName(proc));
            }
        });
    }

    void Do(Inject k) {
        switch (k) {
            case Inject::kLeaderKill:
            case Inject::kLeaderFreeze:
            case Inject::kLeaderBurstKill:
            case Inject::kFollowerKill:
            case Inject::kPgRestart:
                if (!DoControlPlane(k)) {
                    return;
                }
                break;
            case Inject::kAgentKill:
            case Inject::kAgentFreeze:
            case Inject::kPartition: {
                auto alive = AliveHosts();
                // Keep more than half of the hosts alive (and connected).
                if (alive.empty() || (static_cast<int>(alive.size()) - 1) * 2 <= cloud_.hosts()) {
                    // Again later, so that a run injects every kind it can.
                    const bool again = Now() + 2 < o_.duration_s - 5;
                    log_("skip {}: only {} of {} hosts alive{}", Name(k), alive.size(), cloud_.hosts(),
                         again ? " (again in 2s)" : "");
                    if (again) {
                        Schedule(Now() + 2, [this, k] { Do(k); });
                    }
                    return;
                }
                const int h = alive[rng_() % alive.size()];
                const size_t failure = AddFailure(k, h);
                const size_t servers = sh_.failures[failure].initial_servers;  // only this thread appends
                if (k == Inject::kAgentKill) {
                    cloud_.Kill(ChaosCloud::kAgent + h);
                    killed_[h] = true;
                    const bool never = never_restarted_ == 0 && rng_() % 4 == 0;
                    log_("inject agent_kill {} ({} ACTIVE servers){}", ChaosCloud::HostName(h), servers,
                         never ? ", not restarted during the run" : "");
                    if (never) {
                        ++never_restarted_;
                    } else {
                        Schedule(Now() + Uniform(6, 15), [this, h, failure] {
                            if (auto s = cloud_.Restart(ChaosCloud::kAgent + h); !s) {
                                log_("restart of {} FAILED: {}", cloud_.ProcessName(ChaosCloud::kAgent + h),
                                     s.error().message);
                                return;
                            }
                            killed_[h] = false;
                            Recovered(failure);
                            log_("restarted agent of {}", ChaosCloud::HostName(h));
                        });
                    }
                } else if (k == Inject::kAgentFreeze) {
                    {
                        std::lock_guard lock(sh_.mu);
                        sh_.frozen.insert(h);
                    }
                    cloud_.Freeze(ChaosCloud::kAgent + h);
                    frozen_[h] = true;
                    const double length = Uniform(o_.freeze_min_s, o_.freeze_max_s);
                    log_("inject agent_freeze {} (SIGSTOP) for {:.1f}s ({} ACTIVE servers)",
                         ChaosCloud::HostName(h), length, servers);
                    Schedule(Now() + length, [this, h, failure] {
                        cloud_.Thaw(ChaosCloud::kAgent + h);
                        {
                            std::lock_guard lock(sh_.mu);
                            sh_.frozen.erase(h);
                        }
                        frozen_[h] = false;
                        Recovered(failure);
                        log_("thawed agent of {} (SIGCONT)", ChaosCloud::HostName(h));
                    });
                } else {
                    cloud_.SetPartitioned(h, true);
                    const double length = kHostDownWindowS + Uniform(2, 6);
                    log_("inject partition {} for {:.1f}s ({} ACTIVE servers)", ChaosCloud::HostName(h),
                         length, servers);
                    Schedule(Now() + length, [this, h, failure] {
                        cloud_.SetPartitioned(h, false);
                        Recovered(failure);
                        log_("healed partition of {}", ChaosCloud::HostName(h));
                    });
                }
                break;
            }
            case Inject::kCogsdKill:
            case Inject::kNetworkKill:
            case Inject::kVolumeKill: {
                const int proc = k == Inject::kCogsdKill     ? ChaosCloud::kCogsd
                                 : k == Inject::kNetworkKill ? ChaosCloud::kNetwork
                                                             : ChaosCloud::kVolume;
                if (!cloud_.Running(proc)) {
                    log_("skip {}: already down", Name(k));
                    return;
                }
                cloud_.Kill(proc);
                const double pause = Uniform(0.3, 2.0);
                log_("inject {} (SIGKILL {}, back in {:.1f}s)", Name(k), cloud_.ProcessName(proc), pause);
                RestartLater(proc, pause);
                break;
            }
            case Inject::kBurstKill: {
                if (!cloud_.Running(ChaosCloud::kCogsd)) {
                    log_("skip {}: cogsd is down", Name(k));
                    return;
                }
                const BurstKind kind = bursts_++ % 2 == 0 ? BurstKind::kCreates : BurstKind::kChanges;
                std::optional<BurstDone> done;
                {
                    std::unique_lock lock(sh_.mu);
                    sh_.burst_done.reset();
                    sh_.burst_order =
                        BurstOrder{kind, static_cast<int>(rng_() % static_cast<uint64_t>(o_.burst)),
                                   [this] { cloud_.Kill(ChaosCloud::kCogsd); }};
                    // A burst ends within a try's deadline (5 s) after the kill; the workload takes
                    // the order between two requests (a few tries at most).
                    sh_.burst_cv.wait_for(lock, 60s, [&] { return sh_.burst_done || sh_.stop_faults; });
                    sh_.burst_order.reset();
                    done = sh_.burst_done;
                }
                if (!done || !done->killed) {
                    log_("skip {}: the workload sent no burst", Name(k));
                    return;
                }
                const double pause = Uniform(0.3, 2.0);
                log_(
                    "inject {} (SIGKILL cogsd once {} of a burst of {} {} came back; back in {:.1f}s)",
                    Name(k), done->back_at_kill, done->size,
                    kind == BurstKind::kCreates ? "creates" : "deletes, attaches, detaches and power actions",
                    pause);
                RestartLater(ChaosCloud::kCogsd, pause);
                break;
            }
            case Inject::kServiceFaults: {
                const int proc = rng_() % 2 == 0 ? ChaosCloud::kNetwork : ChaosCloud::kVolume;
                const std::string faults =
                    R"({"error_rate":0.1,"hang_rate":0.02,"lost_reply_rate":0.05,"permanent_rate":0.01,"latency_ms":5})";
                ApiClient svc(cloud_.ProcessUrl(proc), cloud_.ServiceToken(proc));
                auto r = svc.Call("PUT", "/v1/faults", faults, {}, 2s);
                if (!r || r->status != 200) {
                    log_("skip service_faults on {}: {}", cloud_.ProcessName(proc),
                         r ? r->text : r.error().message);
                    return;
                }
                const double length = Uniform(3, 8);
                log_("inject service_faults on {} for {:.1f}s: {}", cloud_.ProcessName(proc), length, faults);
                Schedule(Now() + length, [this, proc] {
                    ApiClient s(cloud_.ProcessUrl(proc), cloud_.ServiceToken(proc));
                    auto off = s.Call("PUT", "/v1/faults", "{}", {}, 2s);
                    log_("service_faults off on {}: {}", cloud_.ProcessName(proc),
                         off && off->status == 200 ? "ok" : "failed (a restart clears them anyway)");
                });
                break;
            }
            case Inject::kCrash: {
                std::vector<std::pair<int, std::string>> candidates;
                {
                    std::lock_guard lock(sh_.mu);
                    if (sh_.latest) {
                        for (int h : AliveHosts()) {
                            const auto& inv = sh_.latest->inventories[h];
                            if (inv) {
                                for (const auto& [id, i] : *inv) {
                                    if (i.state == "ACTIVE") {
                                        candidates.emplace_back(h, id);
                                    }
                                }
                            }
                        }
                    }
                }
                if (candidates.empty()) {
                    log_("skip instance_crash: no ACTIVE instance on a live host");
                    return;
                }
                const auto [h, id] = candidates[rng_() % candidates.size()];
                ApiClient agent(cloud_.ProcessUrl(ChaosCloud::kAgent + h),
                                cloud_.ServiceToken(ChaosCloud::kAgent + h));
                auto r = agent.Call("POST", "/v1/instances/" + id + "/crash", "", {}, 2s);
                log_("inject instance_crash {} on {}: {}", id, ChaosCloud::HostName(h),
                     r ? fmt::format("{} {}", r->status, r->text) : r.error().message);
                if (!r || r->status / 100 != 2) {
                    std::lock_guard lock(sh_.mu);
                    ++sh_.injected["instance_crash_refused"];
                    return;
                }
                break;
            }
        }
        Count(k);
    }

    ChaosCloud& cloud_;
    Shared& sh_;
    const Logger& log_;
    const CloudChaosOptions& o_;
    std::mt19937_64 rng_;
    ControlPlaneClient api_;
    std::vector<bool> killed_;
    std::vector<bool> frozen_;
    int never_restarted_ = 0;
    int bursts_ = 0;
    int rounds_ = 0;
    // Replicas (`ha`): what the run did to each (kKilled: dead, a restart scheduled).
    enum class Replica { kUp, kKilled, kFrozen, kThawed };
    std::vector<Replica> replica_;
    std::map<int, SteadyTime> thawed_at_;
    std::vector<ApiClient> replica_api_;  // each replica directly, admin token
    SteadyTime next_supervise_{};
    uint64_t seq_ = 0;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_;
};

// --- Workload ------------------------------------------------------------------------------

enum class OpKind {
    kCreateServer,
    kDeleteServer,
    kStartServer,
    kStopServer,
    kRebootServer,
    kCreateVolume,
    kDeleteVolume,
    kAttach,
    kDetach
};

const char* Name(OpKind k) {
    switch (k) {
        case OpKind::kCreateServer: return "server.create";
        case OpKind::kDeleteServer: return "server.delete";
        case OpKind::kStartServer: return "server.start";
        case OpKind::kStopServer: return "server.stop";
        case OpKind::kRebootServer: return "server.reboot";
        case OpKind::kCreateVolume: return "volume.create";
        case OpKind::kDeleteVolume: return "volume.delete";
        case OpKind::kAttach: return "volume.attach";
        case OpKind::kDetach: return "volume.detach";
    }
    return "?";
}

// The status an operation asks for ("deleted": gone).
const char* Wanted(OpKind k) {
    switch (k) {
        case OpKind::kCreateServer:
        case OpKind::kStartServer:
        case OpKind::kRebootServer: return "ACTIVE";
        case OpKind::kStopServer: return "SHUTOFF";
        case OpKind::kCreateVolume:
        case OpKind::kDetach: return "available";
        case OpKind::kAttach: return "in-use";
        case OpKind::kDeleteServer:
        case OpKind::kDeleteVolume: return "deleted";
    }
    return "?";
}

bool OnServer(OpKind k) {
    return k == OpKind::kCreateServer || k == OpKind::kDeleteServer || k == OpKind::kStartServer ||
           k == OpKind::kStopServer || k == OpKind::kRebootServer;
}

// An action whose workflow the audit follows (cloud_audit.h: one per answered request).
bool IsAction(OpKind k) {
    return k == OpKind::kStartServer || k == OpKind::kStopServer || k == OpKind::kRebootServer ||
           k == OpKind::kAttach || k == OpKind::kDetach;
}

// What a 2xx answer names: the resource ({"server": {...}} or {"volume": {...}}) and its workflow.
struct Answered {
    int status = 0;
    std::string id;
    std::string workflow_id;
    bool operator==(const Answered&) const = default;
    std::string ToString() const { return fmt::format("{} {} (workflow {})", status, id, workflow_id); }
};

Answered ReadAnswer(int status, const json::object& body) {
    Answered a{status, "", ""};
    for (const char* kind : {"server", "volume"}) {
        if (const auto* o = body.if_contains(kind); o != nullptr && o->is_object()) {
            a.id = Str(o->as_object(), "id");
            a.workflow_id = Str(o->as_object(), "workflow_id");
        }
    }
    return a;
}

// How long a request (or its echo) is re-sent before it counts as never answered.
constexpr Duration kGiveUp = 120s;

struct Op {
    OpKind kind{};
    std::string method, target, body, key;
    std::string trace_id;              // sent in every try's traceparent (cogsd's workflow carries it)
    std::string name;                  // a create's name (unique in the run)
    std::string server_id, volume_id;  // what it acts on (a create's id comes with its answer)
    SteadyTime first_sent{}, next_send{}, accepted_at{};
    int attempts = 0;
    enum State { kSending, kAccepted, kRefused, kUnanswered } state = kSending;
    bool terminal = false;
    std::string outcome;
    bool burst = false;
    int replica = 0;                 // the replica its next try (or echo) goes to
    std::optional<Answered> answer;  // the first 2xx answer
    // An echo: the request sent once more with its key after its 2xx answer; the answer must be the
    // same. Due at echo_at while echo_due.
    bool echo_due = false;
    SteadyTime echo_at{};
    SteadyTime echo_first{};
    int echo_attempts = 0;
};

struct ServerModel {
    bool busy = false;
    std::string last_op;     // create / start / stop / reboot / delete: the last ACCEPTED operation
    bool last_done = false;  // it ended as it asked (a start may fail: its host is down)
    bool gone = false;
};

struct VolumeModel {
    bool busy = false;
    bool gone = false;
};

struct WorkloadCounts {
    int resends = 0;            // requests sent again after no answer, a 5xx, a 429 or a 409 in flight
    int echoes = 0;             // echoes answered
    int echo_mismatches = 0;    // echoes answered otherwise than the first answer
    int echoes_unanswered = 0;  // echoes given up
    int bursts = 0;             // bursts sent
    int burst_ops = 0;          // requests in them
    int burst_unanswered = 0;   // of which the first try got no answer (cogsd died under it)
    std::map<std::string, int> refused;  // "<operation> <status>" -> count
};

class Workload {
public:
    Workload(const ChaosCloud& cloud, Shared& sh, const Logger& log, const Seeded& seeded,
             const CloudChaosOptions& o)
        : sh_(sh),
          log_(log),
          seeded_(seeded),
          o_(o),
          rng_(o.seed),
          urls_(cloud.client_urls()),
          token_(cloud.admin_token()),
          hosts_(cloud.hosts()) {
        for (const std::string& url : urls_) {
            apis_.emplace_back(url, token_);
        }
        avoid_until_.assign(urls_.size(), SteadyTime{});
    }

    // Starts a new operation chosen from what exists now.
    void StartOne() {
        if (auto op = Choose(Mix::kAny)) {
            ops_.push_back(std::move(*op));
            Send(ops_.back());
        }
    }

    // Sends up to `burst` new operations at once, each from a thread of its own, kills cogsd amid
    // them as `order` says, and handles their answers (or their lack) once every try is back.
    BurstDone Burst(const BurstOrder& order) {
        const BurstKind kind = order.kind;
        std::vector<size_t> burst;
        for (int i = 0; i < o_.burst; ++i) {
            if (auto op = Choose(kind == BurstKind::kCreates ? Mix::kCreates : Mix::kChanges)) {
                op->burst = true;
                ops_.push_back(std::move(*op));
                burst.push_back(ops_.size() - 1);
            }
        }
        BurstDone done;
        done.size = static_cast<int>(burst.size());
        if (burst.empty()) {
            return done;
        }
        const int kill_after = std::min(order.kill_after, done.size - 1);
        std::vector<std::optional<Result<ApiReply>>> replies(burst.size());
        std::vector<SteadyTime> sent(burst.size());
        std::latch go(1);
        std::atomic<int> back{0};
        std::vector<std::thread> threads;
        for (size_t i = 0; i < burst.size(); ++i) {
            threads.emplace_back(
                [this, &go, &replies, &sent, &back, &order, kill_after, i, op = ops_[burst[i]]] {
                    ApiClient api(urls_[op.replica], token_);
                    go.wait();
                    sent[i] = SteadyClock::now();
                    replies[i] = Attempt(api, op);
                    if (++back == kill_after) {
                        order.kill();
                    }
                });
        }
        go.count_down();
        if (kill_after == 0) {
            order.kill();
        }
        for (auto& t : threads) {
            t.join();
        }
        done.killed = true;
        done.back_at_kill = kill_after;
        ++counts_.bursts;
        int unanswered = 0;
        for (size_t i = 0; i < burst.size(); ++i) {
            Op& op = ops_[burst[i]];
            ++op.attempts;
            unanswered += *replies[i] ? 0 : 1;
            Handle(op, *replies[i], sent[i]);
        }
        counts_.burst_ops += static_cast<int>(burst.size());
        counts_.burst_unanswered += unanswered;
        log_("burst of {} requests: {} answered, {} not (sent again with their keys)", burst.size(),
             burst.size() - unanswered, unanswered);
        return done;
    }

    // Re-sends what is due, sends the echoes that are due and notes what reached a terminal status.
    // Answers whether anything accepted is still in progress or being sent.
    bool Poll() {
        const auto now = SteadyClock::now();
        for (auto& op : ops_) {
            if (op.state == Op::kSending && op.next_send <= now) {
                Send(op);
            }
            if (op.echo_due && op.echo_at <= now) {
                Echo(op);
            }
        }
        auto snap = Latest();
        bool busy = false;
        for (auto& op : ops_) {
            busy = busy || op.state == Op::kSending || op.echo_due ||
                   (op.state == Op::kAccepted && !op.terminal);
            if (op.state != Op::kAccepted || op.terminal || !snap || snap->started <= op.accepted_at ||
                !snap->servers_ok || !snap->volumes_ok) {
                continue;
            }
            std::optional<std::string> status;
            if (OnServer(op.kind)) {
                if (auto s = snap->servers.find(op.server_id); s != snap->servers.end()) {
                    status = s->second.status;
                }
            } else if (auto v = snap->volumes.find(op.volume_id); v != snap->volumes.end()) {
                status = v->second;
            }
            if (!status) {
                // Gone: the end of a delete; for a create, only if we deleted it since (else it
                // vanished, and stays unfinished: `lost`).
                const bool deleted = OnServer(op.kind) ? servers_[op.server_id].last_op == "delete"
                                                       : volumes_[op.volume_id].gone;
                if (op.kind == OpKind::kCreateServer || op.kind == OpKind::kCreateVolume) {
                    if (!deleted) {
                        continue;
                    }
                }
                Finish(op, "deleted");
            } else if (!Transitional(*status)) {
                Finish(op, *status);
            }
        }
        return busy;
    }

    // What the audit needs of what was asked.
    Requested Asked() const {
        Requested r;
        for (const auto& op : ops_) {
            if (IsAction(op.kind) && op.state != Op::kSending) {
                using Act = Requested::Action;
                r.actions.push_back({Name(op.kind), OnServer(op.kind) ? op.server_id : op.volume_id,
                                     op.trace_id,
                                     op.answer                     ? Act::kAccepted
                                     : op.state == Op::kUnanswered ? Act::kUnanswered
                                                                   : Act::kRefused,
                                     op.answer ? op.answer->workflow_id : ""});
            }
            const bool create = op.kind == OpKind::kCreateServer || op.kind == OpKind::kCreateVolume;
            if (create && (op.answer || op.state == Op::kRefused)) {
                r.creates.push_back({op.kind == OpKind::kCreateServer ? "servers" : "volumes", op.name,
                                     op.answer ? op.answer->id : ""});
            }
        }
        for (const auto& [id, m] : servers_) {
            if ((m.last_op == "create" || m.last_op == "start" || m.last_op == "reboot") && m.last_done) {
                r.wants_active[id] = m.last_op;
            }
        }
        return r;
    }

    const std::vector<Op>& ops() const { return ops_; }
    const WorkloadCounts& counts() const { return counts_; }

private:
    enum class Mix { kAny, kCreates, kChanges };

    std::shared_ptr<const Snapshot> Latest() {
        std::lock_guard lock(sh_.mu);
        return sh_.latest;
    }

    // A new operation on what exists now (its resources marked busy), or nullopt when there is
    // nothing to do within the caps. kCreates: only creates; kChanges: deletes, attaches, detaches,
    // power actions (a create when nothing fits).
    std::optional<Op> Choose(Mix mix) {
        auto snap = Latest();
        if (!snap || !snap->servers_ok || !snap->volumes_ok) {
            return std::nullopt;
        }
        auto server_with = [&](std::initializer_list<const char*> statuses) -> std::string {
            std::vector<std::string> c;
            for (const auto& [id, m] : servers_) {
                auto s = snap->servers.find(id);
                if (m.busy || m.gone || m.last_op == "delete" || s == snap->servers.end()) {
                    continue;
                }
                for (const char* st : statuses) {
                    if (s->second.status == st) {
                        c.push_back(id);
                    }
                }
            }
            return c.empty() ? "" : c[rng_() % c.size()];
        };
        auto volume_with = [&](const char* status) -> std::string {
            std::vector<std::string> c;
            for (const auto& [id, m] : volumes_) {
                auto s = snap->volumes.find(id);
                if (!m.busy && !m.gone && s != snap->volumes.end() && s->second == status) {
                    c.push_back(id);
                }
            }
            return c.empty() ? "" : c[rng_() % c.size()];
        };
        size_t live_servers = 0, live_volumes = 0;
        for (const auto& [id, m] : servers_) {
            live_servers += m.gone || m.last_op == "delete" ? 0 : 1;
        }
        for (const auto& [id, m] : volumes_) {
            live_volumes += m.gone ? 0 : 1;
        }
        static const std::vector<std::pair<OpKind, int>> kWeights = {
            {OpKind::kCreateServer, 30}, {OpKind::kDeleteServer, 12}, {OpKind::kCreateVolume, 15},
            {OpKind::kDeleteVolume, 6},  {OpKind::kAttach, 10},       {OpKind::kDetach, 8},
            {OpKind::kStopServer, 8},    {OpKind::kStartServer, 8},   {OpKind::kRebootServer, 5}};
        auto allowed = [mix](OpKind k) {
            const bool create = k == OpKind::kCreateServer || k == OpKind::kCreateVolume;
            return mix == Mix::kAny || (mix == Mix::kCreates) == create;
        };
        int total = 0;
        for (const auto& [k, w] : kWeights) {
            total += allowed(k) ? w : 0;
        }
        int pick = static_cast<int>(rng_() % static_cast<uint64_t>(total));
        OpKind kind = OpKind::kCreateServer;
        for (const auto& [k, w] : kWeights) {
            if (!allowed(k)) {
                continue;
            }
            if (pick < w) {
                kind = k;
                break;
            }
            pick -= w;
        }
        // A burst of creates may go past the caps by its own size.
        const size_t slack = mix == Mix::kCreates ? static_cast<size_t>(o_.burst) : 0;
        const bool servers_full = live_servers >= static_cast<size_t>(hosts_) * 6 + slack;
        const bool volumes_full = live_volumes >= static_cast<size_t>(hosts_) * 4 + slack;
        Op op;
        op.kind = kind;
        switch (kind) {
            case OpKind::kDeleteServer:
                op.server_id = server_with({"ACTIVE", "SHUTOFF", "ERROR"});
                op.method = "DELETE";
                op.target = "/v1/servers/" + op.server_id;
                break;
            case OpKind::kStartServer:
            case OpKind::kStopServer:
            case OpKind::kRebootServer: {
                const bool start = kind == OpKind::kStartServer;
                op.server_id = server_with({start ? "SHUTOFF" : "ACTIVE"});
                op.method = "POST";
                op.target = "/v1/servers/" + op.server_id +
                            (start                         ? "/start"
                             : kind == OpKind::kStopServer ? "/stop"
                                                           : "/reboot");
                op.body = "{}";
                break;
            }
            case OpKind::kDeleteVolume:
                op.volume_id = volume_with("available");
                op.method = "DELETE";
                op.target = "/v1/volumes/" + op.volume_id;
                break;
            case OpKind::kAttach:
                op.volume_id = volume_with("available");
                op.server_id = server_with({"ACTIVE", "SHUTOFF"});
                op.method = "POST";
                op.target = "/v1/volumes/" + op.volume_id + "/attach";
                op.body = json::serialize(json::object{{"server_id", op.server_id}});
                if (op.server_id.empty()) {
                    op.volume_id.clear();
                }
                break;
            case OpKind::kDetach:
                op.volume_id = volume_with("in-use");
                op.method = "POST";
                op.target = "/v1/volumes/" + op.volume_id + "/detach";
                op.body = "{}";
                break;
            default: break;
        }
        const bool wants_volume = kind == OpKind::kCreateVolume || kind == OpKind::kDeleteVolume ||
                                  kind == OpKind::kAttach || kind == OpKind::kDetach;
        const bool missing = (wants_volume && op.volume_id.empty()) ||
                             (!wants_volume && kind != OpKind::kCreateServer && op.server_id.empty());
        if (missing || kind == OpKind::kCreateVolume || kind == OpKind::kCreateServer) {
            // Nothing to act on (or a create was drawn): create something, within the caps.
            const bool volume = kind == OpKind::kCreateVolume || (servers_full && !volumes_full);
            if (volume ? volumes_full : servers_full) {
                return std::nullopt;
            }
            op = Op{};
            op.method = "POST";
            if (volume) {
                op.kind = OpKind::kCreateVolume;
                op.name = fmt::format("cv{}", ops_.size());
                op.target = "/v1/volumes";
                op.body = json::serialize(json::object{{"name", op.name}, {"size_gb", 1}});
            } else {
                op.kind = OpKind::kCreateServer;
                op.name = fmt::format("cs{}", ops_.size());
                op.target = "/v1/servers";
                json::object body{{"name", op.name},
                                  {"flavor", seeded_.flavor},
                                  {"image", seeded_.image},
                                  {"network_id", seeded_.network_id}};
                if (rng_() % 10 < 3) {
                    op.volume_id = volume_with("available");
                    if (!op.volume_id.empty()) {
                        body["volume_ids"] = json::array{json::value(op.volume_id)};
                    }
                }
                op.body = json::serialize(body);
            }
        }
        op.key = fmt::format("chaos-{}-{}", o_.seed, ops_.size());
        op.replica = Pick(next_replica_++);
        op.trace_id = fmt::format("{:016x}{:016x}", o_.seed + 1, ops_.size() + 1);
        op.first_sent = SteadyClock::now();
        SetBusy(op, true);
        return op;
    }

    // The replica `from` (mod their number), or the next one that has not timed out lately: what a
    // load balancer's passive health check does. A frozen replica accepts connections and answers
    // nothing: without this, every try sent there would stall the workload for its whole deadline.
    int Pick(int from) const {
        const int n = static_cast<int>(apis_.size());
        const auto now = SteadyClock::now();
        for (int i = 0; i < n; ++i) {
            const int r = (from + i) % n;
            if (now >= avoid_until_[r]) {
                return r;
            }
        }
        return from % n;
    }

    void Judge(int replica, const Result<ApiReply>& r, SteadyTime now) {
        if (!r && r.error().code == ErrorCode::kDeadlineExceeded && apis_.size() > 1) {
            avoid_until_[replica] = now + 3s;
        }
    }

    void SetBusy(const Op& op, bool busy) {
        if (!op.server_id.empty()) {
            servers_[op.server_id].busy = busy;
        }
        if (!op.volume_id.empty()) {
            volumes_[op.volume_id].busy = busy;
        }
    }

    static Result<ApiReply> Attempt(ApiClient& api, const Op& op) {
        return api.Call(
            op.method, op.target, op.body,
            {{"idempotency-key", op.key}, {"traceparent", "00-" + op.trace_id + "-00000000000000c5-01"}}, 5s);
    }

    void Send(Op& op) {
        ++op.attempts;
        const SteadyTime sent = SteadyClock::now();
        Handle(op, Attempt(apis_[op.replica], op), sent);
    }

    // What an attempt's reply (to a try sent at `sent`) means for its operation.
    void Handle(Op& op, const Result<ApiReply>& r, SteadyTime sent) {
        const auto now = SteadyClock::now();
        Judge(op.replica, r, now);
        if (r && r->status / 100 == 2) {
            // A change the leader committed: the end of a failover or an outage of the database.
            sh_.failovers.Mutated(sent, now, "workload");
            sh_.pg_outages.Mutated(sent, now, "workload");
        }
        if (SendAgain(r)) {
            // With replicas, the next try goes to the next one, as a client behind no load balancer
            // would do.
            op.replica = Pick(op.replica + 1);
            if (now - op.first_sent > kGiveUp) {
                op.state = Op::kUnanswered;
                SetBusy(op, false);
                log_("{} {} never answered after {} attempts", Name(op.kind), op.target, op.attempts);
                return;
            }
            op.next_send = now + Backoff(r, op.attempts);
            ++counts_.resends;
            return;
        }
        if (r->status / 100 == 2 && r->body.is_object()) {
            op.answer = ReadAnswer(r->status, r->body.as_object());
            Accept(op, r->body.as_object(), now);
            if (op.method == "POST" &&
                (op.burst || std::uniform_real_distribution<double>(0, 1)(rng_) < o_.echo_rate)) {
                // Late enough that a burst's echo crosses cogsd's restart.
                op.echo_due = true;
                op.echo_at = now + std::chrono::milliseconds(2500 + rng_() % 2000);
                op.echo_first = op.echo_at;
            }
        } else if (op.method == "DELETE" && op.attempts > 1 && (r->status == 404 || r->status == 409)) {
            // The first DELETE may have been applied with its answer lost: it is gone (404) or
            // being deleted (409). Track it as accepted.
            Accept(op, json::object{}, now);
            if (r->status == 404) {
                Finish(op, "deleted");
            }
        } else {
            op.state = Op::kRefused;
            ++counts_.refused[fmt::format("{} {}", Name(op.kind), r->status)];
            SetBusy(op, false);
        }
    }

    // The request once more with its key: it must be answered exactly as the first time, whatever
    // happened since (cogsd killed and restarted, the resource changed or gone).
    void Echo(Op& op) {
        ++op.echo_attempts;
        auto r = Attempt(apis_[op.replica], op);
        const auto now = SteadyClock::now();
        Judge(op.replica, r, now);
        if (SendAgain(r)) {
            op.replica = Pick(op.replica + 1);
            if (now - op.echo_first > kGiveUp) {
                op.echo_due = false;
                ++counts_.echoes_unanswered;
                log_("echo of {} {} (key {}) never answered", Name(op.kind), op.target, op.key);
            } else {
                op.echo_at = now + Backoff(r, op.echo_attempts);
            }
            return;
        }
        op.echo_due = false;
        ++counts_.echoes;
        const Answered again =
            r->body.is_object() ? ReadAnswer(r->status, r->body.as_object()) : Answered{r->status, "", ""};
        if (r->status / 100 != 2 || again != *op.answer) {
            ++counts_.echo_mismatches;
            log_("ECHO ANSWERED OTHERWISE: {} {} (key {}{}) was answered {}, then {}{}", Name(op.kind),
                 op.target, op.key, op.burst ? ", in a burst" : "", op.answer->ToString(), again.ToString(),
                 r->status / 100 == 2 ? "" : ": " + r->text);
        }
    }

    void Accept(Op& op, const json::object& body, SteadyTime now) {
        op.state = Op::kAccepted;
        op.accepted_at = now;
        if (op.kind == OpKind::kCreateServer && body.contains("server")) {
            op.server_id = Str(body.at("server").as_object(), "id");
            servers_[op.server_id].busy = true;
        }
        if (op.kind == OpKind::kCreateVolume && body.contains("volume")) {
            op.volume_id = Str(body.at("volume").as_object(), "id");
            volumes_[op.volume_id].busy = true;
        }
        if (OnServer(op.kind)) {
            static const std::map<OpKind, std::string> kLast = {{OpKind::kCreateServer, "create"},
                                                                {OpKind::kStartServer, "start"},
                                                                {OpKind::kStopServer, "stop"},
                                                                {OpKind::kRebootServer, "reboot"},
                                                                {OpKind::kDeleteServer, "delete"}};
            servers_[op.server_id].last_op = kLast.at(op.kind);
            servers_[op.server_id].last_done = false;
            if (op.kind == OpKind::kStopServer || op.kind == OpKind::kDeleteServer) {
                std::lock_guard lock(sh_.mu);
                sh_.user_changed.insert(op.server_id);
            } else if (op.kind == OpKind::kStartServer) {
                std::lock_guard lock(sh_.mu);
                sh_.user_changed.erase(op.server_id);
            }
        }
    }

    void Finish(Op& op, const std::string& outcome) {
        op.terminal = true;
        op.outcome = outcome;
        SetBusy(op, false);
        if (OnServer(op.kind)) {
            // The server's last operation (no other starts on it before this one ended).
            servers_[op.server_id].last_done = outcome == Wanted(op.kind);
        }
        if (outcome == "deleted") {
            if (OnServer(op.kind)) {
                servers_[op.server_id].gone = true;
            } else {
                volumes_[op.volume_id].gone = true;
            }
        }
    }

    Shared& sh_;
    const Logger& log_;
    Seeded seeded_;
    const CloudChaosOptions& o_;
    std::mt19937_64 rng_;
    const std::vector<std::string> urls_;  // cogsd (each replica) through the relays that lose replies
    const std::string token_;
    std::vector<ApiClient> apis_;          // one per url
    int next_replica_ = 0;                 // new operations go to the replicas in turn
    std::vector<SteadyTime> avoid_until_;  // per replica: a try there timed out; none before this
    int hosts_;
    std::vector<Op> ops_;  // only appended (Send holds a reference; a burst's threads hold copies)
    std::map<std::string, ServerModel> servers_;
    std::map<std::string, VolumeModel> volumes_;
    WorkloadCounts counts_;
};

}  // namespace

ChaosCloudOptions ChaosCloudOptionsFor(const CloudChaosOptions& o, const std::string& dir) {
    ChaosCloudOptions co;
    co.dir = dir;
    co.hosts = o.hosts;
    co.boot_ms = 50;
    co.cogsd_flags = {{"--reconcile-ms", "2000"},
                      {"--orphan-grace-ms", "5000"},
                      {"--lease-ttl-ms", "3000"},
                      {"--fence-window-ms", "1000"},
                      {"--restart-grace-ms", "3000"}};
    if (o.replicas > 0) {
        co.replicas = o.replicas;
        co.cogsd_flags["--leader-ttl-ms"] = std::to_string(o.leader_ttl_ms);
        co.cogsd_flags["--leader-renew-ms"] = std::to_string(o.leader_renew_ms);
    }
    co.agent_flags = {{"--restart-backoff-ms", "250"}};
    co.reply_drop_rate = o.reply_drop_rate;
    co.seed = o.seed;
    return co;
}

int RunCloudChaos(const CloudChaosOptions& o) {
    const bool ha = o.replicas > 0;
    const char* test = ha ? "ha" : "cloud";
    const std::string load_start = LoadAverage();
    const fs::path dir = o.dir.empty() ? fs::temp_directory_path() /
                                             fmt::format("cogs-chaos-{}-{}-{}", test, o.seed, ::getpid())
                                       : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    fmt::print(
        stderr, "cogs-chaos {}: seed {}, {} s, {} hosts{}, working directory {}\n", test, o.seed,
        o.duration_s, o.hosts,
        ha ? fmt::format(", {} replicas of cogsd on PostgreSQL (leader lease {} ms, renewed every {} ms)",
                         o.replicas, o.leader_ttl_ms, o.leader_renew_ms)
           : "",
        dir.string());
    const ChaosCloudOptions co = ChaosCloudOptionsFor(o, dir.string());
    auto started = ChaosCloud::Start(co);
    if (!started) {
        fmt::print(stderr, "the cloud did not start: {}\nlogs in {}\n", started.error().message,
                   dir.string());
        fmt::print("{{\"test\":\"{}\",\"seed\":{},\"error\":\"the cloud did not start\",\"dir\":\"{}\"}}\n",
                   test, o.seed, dir.string());
        return 2;
    }
    ChaosCloud& cloud = **started;
    fmt::print(stderr, "cogs-chaos {}: up\n", test);
    ControlPlaneClient admin(cloud.api_urls(), cloud.admin_token());
    auto seeded = SeedCloud(admin);
    if (!seeded) {
        fmt::print(stderr, "seeding failed: {}\n", seeded.error().message);
        fmt::print("{{\"test\":\"{}\",\"seed\":{},\"error\":\"seeding failed\",\"dir\":\"{}\"}}\n", test,
                   o.seed, dir.string());
        return 2;
    }

    const SteadyTime t0 = SteadyClock::now();
    const int64_t wall_t0 = WallNowMs();
    std::set<uint64_t> tokens_at_start;  // the first election's (replicas' logs)
    for (const auto& [id, tokens] : LoggedTokens(cloud)) {
        tokens_at_start.insert(tokens.begin(), tokens.end());
    }
    Logger log(t0);
    Shared sh;
    std::thread sampler([&] { RunSampler(cloud, sh, log); });
    Faults faults(cloud, sh, log, o);
    std::thread faulter([&] { faults.Run(); });
    Workload workload(cloud, sh, log, *seeded, o);
    // While a failover or an outage of the database is timed: a mutation every 100 ms per replica.
    std::unique_ptr<MutationProber> prober;
    if (ha) {
        prober = std::make_unique<MutationProber>(cloud.api_urls(), cloud.admin_token(),
                                                  std::vector<FailoverClock*>{&sh.failovers, &sh.pg_outages});
    }
    WaitUntil(
        [&] {
            std::lock_guard lock(sh.mu);
            return sh.latest != nullptr;
        },
        30s);

    // Run: operations at `rate` (exponential gaps) and the bursts the faults thread asks for,
    // re-sends, echoes, terminal tracking.
    std::mt19937_64 rng(o.seed + 1);
    std::exponential_distribution<double> gap(o.rate);
    double next_op = 0;
    const SteadyTime end = t0 + std::chrono::seconds(o.duration_s);
    while (SteadyClock::now() < end) {
        std::optional<BurstOrder> order;
        {
            std::lock_guard lock(sh.mu);
            if (sh.burst_order && !sh.burst_done) {
                order = sh.burst_order;
            }
        }
        if (order) {
            const BurstDone done = workload.Burst(*order);
            std::lock_guard lock(sh.mu);
            sh.burst_done = done;
            sh.burst_cv.notify_all();
        }
        if (SteadyClock::now() >=
            t0 + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(next_op))) {
            workload.StartOne();
            next_op += gap(rng);
        }
        workload.Poll();
        std::this_thread::sleep_for(20ms);
    }

    // End: stop injecting, bring everything back, let the accepted requests finish.
    {
        std::lock_guard lock(sh.mu);
        sh.stop_faults = true;
        sh.burst_cv.notify_all();
    }
    faulter.join();
    log("injection over: thawing and restoring every process, healing partitions, clearing service faults");
    faults.FinishReplicas();  // the faults thread is over: this one touches the processes now
    Status restored = cloud.RestoreAll();
    faults.ReplicasRestored();
    for (int proc : {ChaosCloud::kNetwork, ChaosCloud::kVolume}) {
        ApiClient svc(cloud.ProcessUrl(proc), cloud.ServiceToken(proc));
        (void)svc.Call("PUT", "/v1/faults", "{}", {}, 5s);
    }
    {
        std::lock_guard lock(sh.mu);
        sh.frozen.clear();
        for (auto& f : sh.failures) {
            if (!f.recovered) {
                f.recovered = SteadyClock::now();
            }
        }
    }
    if (!restored) {
        log("RESTORE FAILED: {}", restored.error().message);
    }
    const SteadyTime run_end = SteadyClock::now();
    const SteadyTime settle_end = run_end + std::chrono::seconds(o.settle_s);
    bool settled = false;
    // Also until every failover and outage of the database was timed (the prober goes on meanwhile).
    for (;;) {
        settled = !workload.Poll();
        const bool timing = sh.failovers.Pending() || sh.pg_outages.Pending();
        if ((settled && !timing) || SteadyClock::now() >= settle_end) {
            break;
        }
        faults.SuperviseReplicas();
        std::this_thread::sleep_for(50ms);
    }
    prober.reset();
    log("{}", settled ? "requests settled; auditing until the cloud agrees with itself"
                      : "REQUESTS DID NOT SETTLE within --settle; auditing what there is");

    // The audit, until it finds the present state right (the reconcilers repair drift meanwhile)
    // twice, a reconcilers' round apart (the orphan grace plus two reconcile periods: whatever they
    // would still do to it, they have done), or its deadline.
    const Requested asked = workload.Asked();
    const SteadyTime audit_start = SteadyClock::now();
    const SteadyTime converge_end = audit_start + std::chrono::seconds(o.converge_s);
    constexpr Duration kReconcileRound = 9s;
    Result<Audit> audit = AuditCloud(Endpoints(cloud), asked);
    int audits = 1;
    std::optional<SteadyTime> right_since;
    double converge_s = 0;
    for (;;) {
        const SteadyTime now = SteadyClock::now();
        if (audit && audit->Converged()) {
            if (!right_since) {
                right_since = now;
                converge_s = Seconds(now - audit_start);
            } else if (now - *right_since >= kReconcileRound) {
                break;
            }
        } else {
            right_since.reset();
        }
        if (now >= converge_end) {
            break;
        }
        std::this_thread::sleep_for(right_since ? std::min<Duration>(kReconcileRound, converge_end - now)
                                                : 1s);
        audit = AuditCloud(Endpoints(cloud), asked);
        ++audits;
    }
    if (!audit || !audit->Converged()) {
        converge_s = Seconds(SteadyClock::now() - audit_start);
    }
    if (!audit) {
        log("AUDIT FAILED: {}", audit.error().message);
    } else {
        for (const auto& line : audit->findings) {
            log("{}", line);
        }
        if (!audit->Converged()) {
            log("DID NOT CONVERGE within --converge {} s ({} audits): {}", o.converge_s, audits,
                fmt::join(audit->Failing(), ", "));
        } else if (!audit->Clean()) {
            log("converged after {:.1f}s ({} audits), but the audit of what happened found: {}", converge_s,
                audits, fmt::join(audit->Failing(), ", "));
        } else {
            log("the audit found nothing from {:.1f}s on ({} audits)", converge_s, audits);
        }
    }
    sh.stop_sampler = true;
    sampler.join();

    // The control plane's own checks (`ha`; the evacuations in `cloud` too, reported only): one
    // token per election, nobody evacuated for the control plane's own failovers.
    std::vector<HostOutage> outages;
    for (const auto& f : sh.failures) {
        auto wall = [&](SteadyTime t) {
            return wall_t0 + std::chrono::duration_cast<std::chrono::milliseconds>(t - t0).count();
        };
        outages.push_back({ChaosCloud::HostName(f.host), wall(f.at), wall(f.recovered.value_or(run_end))});
    }
    // A host goes down the lease TTL plus the fence window after it was cut off, and may still be
    // declared so until the restart grace after the control plane's restart: 10 s covers both.
    auto cp = AuditControlPlane(cloud, outages, wall_t0, 10'000);
    if (!cp) {
        log("AUDIT OF THE CONTROL PLANE FAILED: {}", cp.error().message);
    } else {
        for (const auto& line : cp->findings) {
            log("{}", line);
        }
    }

    // --- Report -------------------------------------------------------------------------------
    int accepted = 0, terminal = 0, lost = 0, failed = 0, unanswered = 0;
    std::map<std::string, std::map<std::string, int>> outcomes;
    for (const auto& op : workload.ops()) {
        if (op.state == Op::kUnanswered) {
            ++unanswered;
        }
        if (op.state != Op::kAccepted) {
            continue;
        }
        ++accepted;
        if (op.terminal) {
            ++terminal;
            ++outcomes[Name(op.kind)][op.outcome];
            failed += op.outcome == Wanted(op.kind) ? 0 : 1;
        } else {
            ++lost;
            log("LOST: {} {} (resource {}{}) accepted {:.1f}s into the run, never terminal", Name(op.kind),
                op.target, op.server_id, op.volume_id.empty() ? "" : " volume " + op.volume_id,
                Seconds(op.accepted_at - t0));
        }
    }
    std::vector<double> detect, heal;
    int undetected = 0, unhealed = 0;
    std::string failures_json;
    for (const auto& f : sh.failures) {
        if (f.detected) {
            detect.push_back(Seconds(*f.detected - f.at));
        } else {
            ++undetected;
        }
        if (f.initial_servers > 0) {
            if (f.healed) {
                heal.push_back(Seconds(*f.healed - f.at));
            } else {
                ++unhealed;
            }
        }
        failures_json += fmt::format(
            "{}{{\"kind\":\"{}\",\"host\":\"{}\",\"at_s\":{:.3f},\"servers\":{},\"detect_s\":{},\"heal_s\":{}"
            "}}",
            failures_json.empty() ? "" : ",", f.kind, ChaosCloud::HostName(f.host), Seconds(f.at - t0),
            f.initial_servers, f.detected ? JsonNumber(Seconds(*f.detected - f.at)) : "null",
            f.healed ? JsonNumber(Seconds(*f.healed - f.at)) : "null");
    }
    auto object = [](const std::map<std::string, int>& m) {
        std::string s;
        for (const auto& [k, n] : m) {
            s += fmt::format("{}\"{}\":{}", s.empty() ? "" : ",", k, n);
        }
        return "{" + s + "}";
    };
    std::string outcomes_json;
    for (const auto& [k, m] : outcomes) {
        outcomes_json += fmt::format("{}\"{}\":{}", outcomes_json.empty() ? "" : ",", k, object(m));
    }
    const WorkloadCounts& wc = workload.counts();
    const int split_brain_servers = static_cast<int>(sh.split_brain.size());
    const Audit none;
    const Audit& a = audit ? *audit : none;
    const int leaked = audit ? a.leaks() : -1;
    const int dup = audit ? a.duplicate_addresses : -1;
    const int desired = audit ? a.desired_not_active : -1;

    // The control plane's figures (`ha`).
    const ControlPlaneAudit no_cp;
    const ControlPlaneAudit& c = cp ? *cp : no_cp;
    const int split_brain_tokens = c.token_audit.split_tokens;
    const int split_brain_leaders = static_cast<int>(sh.replicas.split_leaders.size());
    const int split_brain = split_brain_servers + split_brain_tokens + split_brain_leaders;
    const int duplicate_effects = audit ? a.actions.not_done_once + a.actions.extra_workflows +
                                              a.second_resources + a.duplicate_addresses
                                        : -1;
    int leader_changes = 0;
    for (uint64_t t : c.tokens) {
        leader_changes += tokens_at_start.count(t) == 0 ? 1 : 0;
    }
    auto timed = [&](const FailoverClock& clock, std::vector<double>& seconds, int& unmeasured) {
        std::string list;
        for (const auto& f : clock.failovers()) {
            if (f.ended) {
                seconds.push_back(Seconds(*f.ended - f.at));
            } else {
                ++unmeasured;
                log("NOT TIMED: {} at {:.1f}s: no mutation was answered 2xx after it", f.kind,
                    Seconds(f.at - t0));
            }
            list += fmt::format("{}{{\"kind\":\"{}\",\"at_s\":{:.3f},\"seconds\":{},\"by\":\"{}\"}}",
                                list.empty() ? "" : ",", f.kind, Seconds(f.at - t0),
                                f.ended ? JsonNumber(Seconds(*f.ended - f.at)) : "null", f.by);
        }
        return "[" + list + "]";
    };
    std::vector<double> failover_s, pg_recover_s;
    int unmeasured_failovers = 0, unmeasured_pg = 0;
    const std::string failovers_json = timed(sh.failovers, failover_s, unmeasured_failovers);
    const std::string pg_json = timed(sh.pg_outages, pg_recover_s, unmeasured_pg);
    const double failover_max = failover_s.empty() ? 0 : Percentile(failover_s, 1.0);
    const ReplicaCounts& rc = sh.replicas;
    const bool ha_ok = cp && split_brain == 0 && duplicate_effects == 0 &&
                       c.evacuations.false_evacuations == 0 && c.evacuations.false_host_downs == 0 &&
                       rc.thawed_alive == 0 && rc.thawed_bad_exit == 0 && rc.crashes == 0 &&
                       unmeasured_failovers == 0 && unmeasured_pg == 0 && failover_max <= kFailoverLimitS;
    if (ha && failover_max > kFailoverLimitS) {
        log("FAILOVER TOO SLOW: {:.1f}s (limit {:.0f}s)", failover_max, kFailoverLimitS);
    }
    const bool ok = audit && audit->Clean() && restored && settled && lost == 0 && split_brain_servers == 0 &&
                    wc.echo_mismatches == 0 && (!ha || ha_ok);
    const uint64_t replies_lost = cloud.client_relay_stats().replies_lost;
    cloud.Stop();
    if (ok && !o.keep) {
        fs::remove_all(dir);
    } else {
        fmt::print(stderr, "cogs-chaos {}: {}; logs of every process in {}/logs\n", test,
                   ok ? "passed" : "FAILED", dir.string());
    }
    std::string ha_json;
    if (ha) {
        ha_json = fmt::format(
            "\"replicas\":{},\"leader_ttl_ms\":{},\"leader_renew_ms\":{},\"leader_changes\":{},"
            "\"elections\":{},\"failover_p50_s\":{},\"failover_max_s\":{},\"unmeasured_failovers\":{},"
            "\"failovers\":{},\"pg_restarts\":{},\"pg_recover_p50_s\":{},\"pg_recover_max_s\":{},"
            "\"pg_outages\":{},\"split_brain_servers\":{},\"split_brain_tokens\":{},"
            "\"split_brain_leaders\":{},\"leader_overlaps\":{},\"duplicate_effects\":{},"
            "\"false_evacuations\":{},\"false_host_downs\":{},\"evacuations\":{},\"host_downs\":{},"
            "\"thawed_leaders\":{{\"thawed\":{},\"exited_75\":{},\"bad_exit\":{},\"not_exited\":{},"
            "\"still_leading\":{},\"exit_p50_s\":{},\"exit_max_s\":{}}},\"replica_exits\":{},"
            "\"replica_crashes\":{},\"loadavg_start\":{},\"loadavg_end\":{},",
            o.replicas, o.leader_ttl_ms, o.leader_renew_ms, leader_changes, c.tokens.size(),
            JsonNumber(Percentile(failover_s, 0.5)), JsonNumber(Percentile(failover_s, 1.0)),
            unmeasured_failovers, failovers_json, sh.pg_outages.failovers().size(),
            JsonNumber(Percentile(pg_recover_s, 0.5)), JsonNumber(Percentile(pg_recover_s, 1.0)), pg_json,
            split_brain_servers, split_brain_tokens, split_brain_leaders, rc.leader_overlaps,
            duplicate_effects, c.evacuations.false_evacuations, c.evacuations.false_host_downs,
            c.evacuations.evacuations, c.evacuations.host_downs, rc.thawed, rc.thawed_exited,
            rc.thawed_bad_exit, rc.thawed_alive, rc.thawed_leading,
            JsonNumber(Percentile(rc.thaw_exit_s, 0.5)), JsonNumber(Percentile(rc.thaw_exit_s, 1.0)),
            object(rc.exits), rc.crashes, load_start, LoadAverage());
    }
    std::string flags;
    for (const auto& [flag, value] : co.cogsd_flags) {
        flags += fmt::format("{}\"{}={}\"", flags.empty() ? "" : ",", flag, value);
    }
    const AttachmentAudit& at = a.attachments;
    const ActionAudit& ac = a.actions;
    fmt::print(
        "{{\"test\":\"{}\",\"seed\":{},\"duration_s\":{},\"hosts\":{},\"ops\":{},\"accepted\":{},"
        "\"terminal\":{},\"lost\":{},\"failed\":{},\"unanswered\":{},\"resends\":{},\"replies_lost\":{},"
        "\"refused\":{},\"outcomes\":{{{}}},"
        "\"bursts\":{{\"count\":{},\"requests\":{},\"unanswered_at_kill\":{}}},"
        "\"echoes\":{{\"answered\":{},\"mismatched\":{},\"unanswered\":{}}},"
        "\"second_resources\":{},"
        "\"actions\":{{\"checked\":{},\"extra_workflows\":{},\"missing_workflows\":{},\"not_done_once\":{}}},"
        "\"attachments\":{{\"volumes\":{},\"in_use\":{},\"available\":{},\"other\":{},\"mismatched\":{},"
        "\"on_deleted_server\":{}}},"
        "\"leaked\":{},\"leaked_by_kind\":{},\"duplicate_addresses\":{},\"split_brain\":{},"
        "\"desired_not_active\":{},\"converged\":{},\"converge_s\":{:.1f},\"running_workflows\":{},"
        "\"host_failures\":{},\"undetected\":{},\"unhealed\":{},\"detect_p50_s\":{},"
        "\"detect_max_s\":{},\"heal_p50_s\":{},\"heal_max_s\":{},\"failures\":[{}],\"faults\":{},"
        "{}\"samples\":{},\"incoherent_samples\":{},\"flags\":[{}],\"checks\":\"{}\",\"dir\":\"{}\"}}\n",
        test, o.seed, o.duration_s, o.hosts, workload.ops().size(), accepted, terminal, lost, failed,
        unanswered, wc.resends, replies_lost, object(wc.refused), outcomes_json, wc.bursts, wc.burst_ops,
        wc.burst_unanswered, wc.echoes, wc.echo_mismatches, wc.echoes_unanswered, a.second_resources,
        ac.checked, ac.extra_workflows, ac.missing_workflows, ac.not_done_once, at.volumes, at.in_use,
        at.available, at.other, at.mismatched, at.on_deleted_server, leaked, object(a.leaked), dup,
        split_brain, desired, audit && audit->Converged(), converge_s, a.running_workflows,
        sh.failures.size(), undetected, unhealed, JsonNumber(Percentile(detect, 0.5)),
        JsonNumber(Percentile(detect, 1.0)), JsonNumber(Percentile(heal, 0.5)),
        JsonNumber(Percentile(heal, 1.0)), failures_json, object(sh.injected), ha_json, sh.samples,
        sh.incoherent_samples, flags, audit ? "done" : "failed", ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
