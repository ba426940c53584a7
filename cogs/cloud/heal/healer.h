// Healer: where servers are moved to where they can run — the self-healing of failed hosts and the
// maintenance of draining ones (docs/healing.md).
//
//   evacuation  every ACTIVE or SHUTOFF server of a down host goes through server.evacuate
//               (status REBUILD): rebuilt elsewhere with the same id, port, address and volumes;
//               a failed evacuation (its new host failed too) puts it back and tries again, at most
//               kMaxEvacuations times, then ERROR;
//   migration   every server of a draining host goes through server.migrate (MIGRATING); the host
//               is drained (an event) once none is left;
//   reschedule  a server.create rolled back because its host failed during the build is started
//               again with the same server, port and volumes, at most kMaxReschedules times;
//   pause       while more than max_down_fraction of the hosts are suspect, down or late at once,
//               no evacuation starts (an `evacuation_paused` alert event, and one when it resumes).
//
// Level-triggered: Heal() queues every server that should move and starts as many as
// evacuation_parallelism allows; it runs when a host goes down, when a move ends, on every
// reconcile pass and when a drain starts. It also settles the moves it starts (server.evacuate,
// server.migrate and the reconcilers' server.repair).
//
// Start() lets moves start; Stop() holds new ones (those in flight finish and settle).
// Threading: the io thread.
#pragma once

#include <deque>
#include <map>
#include <set>
#include <string>

#include "cogs/cloud/core/context.h"
#include "cogs/cloud/health/host_monitor.h"

namespace cogs::cloud::heal {

// Builds of one server started again after its host failed during the build.
inline constexpr int64_t kMaxReschedules = 2;
// Evacuations of one server before it is left in ERROR (each may fail because its new host failed).
inline constexpr int64_t kMaxEvacuations = 3;

class Healer {
public:
    // Registers the settle functions of server.evacuate, server.migrate and server.repair.
    Healer(Context& ctx, health::HostMonitor& hosts);

    void Start();
    void Stop();

    // Queues every server that should move and starts what the parallelism allows.
    void Heal();
    // A host changed state (from the HostMonitor); Tick() runs after each of its ticks.
    void OnHostChange(const health::Liveness::Change& c);
    void OnTick();
    // A host deleted (it held no server): forgotten.
    void Forget(const std::string& host);
    // Rebuilds `s` where it is (its instance is missing there): server.repair.
    void Repair(Res& s);
    // Whether `id` is being moved (its workflow is in flight): the reconcilers leave it alone.
    bool Moving(const std::string& id) const { return moving_.contains(id); }
    // See the top: called by the settle of `st`, a server.create that rolled back, on its server
    // `s`. Returns whether the create starts again (the server stays BUILD); then the new build
    // takes `s` over within that settle (Settlement::Then), and any other delivery of the same end
    // finds `s` no longer waiting for it.
    bool Reschedule(Settlement& st, Res& s);
    // A server still present when cogsd restarted mid-move: its workflow resumes.
    void Resumed(const std::string& id) { moving_.insert(id); }
    bool paused() const { return paused_; }

private:
    struct Move {
        std::string server_id, from_host, type;  // type: server.evacuate, server.migrate or server.repair
    };
    bool Movable(const Res& s) const;
    bool ReadyToMove(const Res& s);
    void Pump();
    void StartMove(Res& s, const Move& mv);
    void SettleMove(Settlement& st);
    void FinishDrains();
    void UpdatePause();

    Context& ctx_;
    health::HostMonitor& hosts_;
    bool running_ = false;
    bool paused_ = false;
    bool pending_ = false;                          // Heal() at the next tick
    std::map<std::string, SteadyTime> down_since_;  // down hosts: their last renewal (time to heal)
    std::deque<Move> moves_;                        // waiting for a slot (evacuation_parallelism)
    std::set<std::string> queued_;                  // server ids in moves_
    std::set<std::string> moving_;                  // servers whose move runs
    struct {
        observe::Gauge paused;
        observe::CounterFamily started, failures;
        observe::Counter evacuated, migrated;
        observe::Histogram duration;
    } metrics_;
};

}  // namespace cogs::cloud::heal
