// Placement: which host a new server goes to, and the claims that hold each host's resources.
//
// `Placement` keeps the known hosts (capacity, availability zone, traits, enabled, alive), one
// claim per placed server, and per host the sum of its claims. `ClaimFor` filters the hosts,
// weighs the survivors, and records the claim in the same call, so that a caller that serialises
// its calls can never overcommit a host: the check and the claim are one step.
//
// Filters, in this order (each one sees only the hosts that passed the ones before it):
//   enabled            the operator has not disabled the host
//   alive              its heartbeats arrive (the caller decides, through `SetAlive`)
//   availability_zone  the request names none, or the host's zone is that one
//   traits             every required trait is on the host
//   vcpus, ram, disk   the request fits the free amount: floor(capacity * ratio) - used
//   affinity           (policy kAffinity, group_id set) if the group has members anywhere, only hosts
//                      holding one; a group without members accepts any host
//   anti-affinity      (policy kAntiAffinity, group_id set) only hosts holding no member of the group
// Weighers, among the hosts that passed:
//   kSpread  most free RAM, then most free vCPU, then the smallest name
//   kPack    least free RAM, then the smallest name
// ("free" is measured before the new claim, under the ratios.)
//
// Claims that overcommit a host can exist (`AddClaim` of a claim made before the host shrank);
// such a host has a negative free amount and takes no new claim, not even one of zero size.
//
// Threading: not thread-safe. One owner (cogsd's io thread) makes every call; nothing here blocks
// or does I/O. Pointers returned by `FindHost` and `ClaimOf` stay valid until the next call that
// changes that host or that claim (`UpsertHost`, `ClaimFor` / `AddClaim` / `Release`).
//
// Indexes (what keeps a decision from scanning every host). Only the hosts that are enabled and
// alive are indexed ("eligible"); the others are counted, not walked. Each eligible host is filed in
// a shelf of the whole cloud, in the shelf of its availability zone and in the shelf of each of its
// traits. A shelf holds both weighers' orders, split by free-vCPU class: class 0 holds the
// "starved" hosts (free vCPU <= 0 or free disk <= 0), class c >= 1 those with free vCPU in
// [2^(c-1), 2^c - 1], the last class everything above. `ClaimFor` picks the smallest of the shelves
// the request names (its zone's, or the cloud's, and each required trait's), skips the classes that
// cannot hold the request's vCPUs (and class 0 when it asks for vCPUs and disk), walks each other
// class in its weigher's order from the best host (spread stops, pack starts, where free RAM runs
// out) up to its first host that passes every filter, and takes the best of these firsts under the
// weigher. A request with the affinity policy whose group has members walks only the hosts holding
// a member. What a walk can still skip: hosts of the walked shelf outside the zone or lacking
// another required trait, hosts in the class that holds the request's vCPU count with fewer free
// vCPUs than asked, hosts short of disk but not starved, and hosts holding an anti-affinity member.
//
// Bound (`PlacementLimits::max_examined`, kube-scheduler's 100-node floor): once a decision has
// examined that many hosts and already holds a candidate that passes every filter, it stops and
// takes the best candidate found (the classes are walked from the most free vCPUs down, so those
// that cannot fail on vCPUs come first; a class's walk also stops at its first host worse than the
// best candidate, which cannot change the answer).
// Filters are never relaxed: the host taken passes all of them, a group member's host is never
// taken for anti-affinity, no host is overcommitted. What the bound can cost is the weigher's
// optimum only: a better host deeper in a walk than the bound reaches is not seen. It never
// causes a failure: without a candidate the walks go on to their end, so a "no valid host" is
// always exact. With the default bound the choice is the weigher's exact best unless more than
// 100 hosts of one decision's walks fail a filter that no index answers.
//
// Cost: `ClaimFor` O(classes x log n) plus the hosts the walks skip (above), bounded by
// `max_examined` once a candidate is found; a failing request walks what its shelves still hold
// with enough free RAM and vCPU class: O(classes) when no host is big enough. Its message counts
// are exact up to `exact_failure_scan_hosts` known hosts (a scan of every host, as before) and
// estimates from the indexes above it (see ClaimFor). `AddClaim`, `Release`, `UpsertHost`,
// `SetEnabled`, `SetAlive`: O((1 + traits of the host) x log n); `UsageOf`, `FindHost`: O(log n);
// `ClaimOf`: O(1). Memory: README.md, "How it stays fast".
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::scheduler {

struct HostInfo {
    std::string name;
    std::string availability_zone;
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;  // physical capacity
    std::vector<std::string> traits;
    bool enabled = true;  // an operator may disable a host
    bool alive = true;    // heartbeats arrive (the caller decides and sets it)
};

// Overcommit ratios: usable = floor(capacity * ratio). Must be finite and >= 0 (a fatal check).
struct Ratios {
    double cpu = 4.0, ram = 1.0, disk = 1.0;
};

// Bounds on the cost of one decision (see "Bound" above).
struct PlacementLimits {
    // Hosts a decision examines before it settles for the best candidate found so far (only if it
    // has one). 0: no bound (always the weigher's exact best).
    size_t max_examined = 100;
    // Up to this many known hosts, a failure's message and reason come from a scan of every host
    // (exact counts); above, from the indexes (estimates, see ClaimFor).
    size_t exact_failure_scan_hosts = 1000;
};

enum class GroupPolicy { kNone, kAffinity, kAntiAffinity };
enum class Weigher { kSpread, kPack };

struct PlacementRequest {
    std::string server_id;  // must not be empty
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
    std::string availability_zone;             // "" : any
    std::vector<std::string> required_traits;  // every one must be on the host
    std::string group_id;                      // "" : none; the claim joins this group
    GroupPolicy policy = GroupPolicy::kNone;   // applies only with a group_id
    Weigher weigher = Weigher::kSpread;
};

// The resources one server holds on one host. `group_id` ("" : none) is what the group policies of
// later requests look at.
struct Claim {
    std::string server_id, host;
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
    std::string group_id;
};

// The sum of the claims on one host, and how many there are.
struct Usage {
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0, servers = 0;
};

// Why `ClaimFor` placed nothing: the filter that eliminated the last candidates, that is the last
// filter, in filter order, that eliminated any host (every host it saw failed it or a later one
// found none left). kNoHosts: no host is known at all. kInvalid: the request itself was refused.
// It is the label of cogsd's cogs_placement_failures_total{reason} (docs/metrics.md).
enum class FailureReason {
    kNone,  // placed
    kInvalid,
    kNoHosts,
    kEnabled,
    kAlive,
    kAvailabilityZone,
    kTraits,
    kVcpus,
    kRam,
    kDisk,
    kAffinity,
    kAntiAffinity,
};

// "invalid", "no_hosts", "enabled", "alive", "az", "traits", "vcpus", "ram", "disk", "affinity",
// "anti_affinity"; "" for kNone.
std::string_view ToString(FailureReason reason);

class Placement {
public:
    explicit Placement(Ratios ratios = {}, PlacementLimits limits = {});

    // Adds a host, or replaces its capacity, zone, traits, enabled and alive with `host`'s. The
    // claims on it stay (a shrunk host may end up overcommitted; it then takes nothing new).
    void UpsertHost(HostInfo host);
    // Forgets a host (deleted): it takes nothing new and no longer counts among the hosts. Claims
    // still on it stay counted under its name, as for a host that never registered, until
    // released. No-op for a host that is not known.
    void RemoveHost(const std::string& name);
    // No-ops for a host that is not known.
    void SetEnabled(const std::string& host, bool enabled);
    void SetAlive(const std::string& host, bool alive);

    // nullptr if not known.
    const HostInfo* FindHost(const std::string& name) const;
    // Every known host, sorted by name.
    std::vector<HostInfo> Hosts() const;

    // Chooses a host for `request` and records the claim, in one step.
    // - Idempotent: a server that already holds a claim gets that claim back unchanged, whatever
    //   the request says now.
    // - vcpus / ram_mb / disk_gb < 0, or an empty server_id: kInvalidArgument.
    // - No host passes every filter: kFailedPrecondition, not retryable, whose message counts
    //   what each filter eliminated, in filter order, e.g.
    //     "no valid host for 4 vcpus, 8192 MiB, 20 GiB: 3 hosts; enabled: 1 eliminated; alive: 0
    //     eliminated; availability_zone: 0 eliminated; traits: 0 eliminated; vcpus: 2 eliminated;
    //     ram: 0 eliminated; disk: 0 eliminated; anti-affinity: 0 eliminated"
    //   (one line). The last entry is "affinity: …" or "anti-affinity: …" after the request's
    //   policy, and is absent for a request without a group policy. "N hosts" counts every known
    //   host. With more known hosts than `exact_failure_scan_hosts`, the counts of enabled, alive
    //   and availability_zone stay exact; traits is the zone's (or the cloud's) eligible hosts
    //   minus the walked trait shelf's; the walked shelf's hosts are counted by the filter that
    //   eliminated them when the walk examined them (a host outside the zone or lacking another
    //   trait under "traits"), as "vcpus" when their class was skipped (a starved host short of
    //   disk included) and as "ram" when the walk stopped short of them for free RAM.
    //   An affinity request walking its members counts the rest of the shelf under "affinity".
    //   The counts still add up to the host count.
    //
    // `reason`, if not null, is set on every call: kNone when a claim is returned (new or the
    // existing one), else why there is none (see FailureReason), from the same counts as the
    // message.
    Result<Claim> ClaimFor(const PlacementRequest& request, FailureReason* reason = nullptr);

    // Records an existing claim (at start-up, from the durable store) without any filter, even if
    // it overcommits its host (it was valid when made; capacity may have shrunk since). The host
    // need not be known yet: usage is tracked per host name and counts once it registers. A claim
    // for a server that already holds one replaces it.
    void AddClaim(Claim claim);

    // Frees the server's claim; false if it had none.
    bool Release(const std::string& server_id);

    // nullptr if the server holds no claim.
    const Claim* ClaimOf(const std::string& server_id) const;

    // The sum of the claims on `host` (known or not); zeros if there are none.
    Usage UsageOf(const std::string& host) const;

    Ratios ratios() const { return ratios_; }

    // Hosts examined by the last `ClaimFor` that reached the filters (for tests and benchmarks).
    size_t last_examined() const { return last_examined_; }

private:
    // Everything about one host name: the host, if it registered, and its claims' sum, which
    // exists as soon as a claim names the host.
    struct Slot {
        bool known = false;
        HostInfo info;
        std::vector<std::string> sorted_traits;
        int64_t usable_vcpus = 0, usable_ram_mb = 0, usable_disk_gb = 0;
        Usage used;
        uint64_t rank = 0;  // known hosts: ascending in name order, with gaps

        int64_t FreeVcpus() const { return usable_vcpus - used.vcpus; }
        int64_t FreeRam() const { return usable_ram_mb - used.ram_mb; }
        int64_t FreeDisk() const { return usable_disk_gb - used.disk_gb; }
    };
    // A known host's place in a weigher's order (the name tie-break compares ranks). The values
    // are copies: a slot is taken out of the orders before they change and put back after.
    struct Key {
        int64_t free_ram = 0, free_vcpus = 0;
        uint64_t rank = 0;
        Slot* slot = nullptr;
    };
    struct SpreadLess {
        bool operator()(const Key& a, const Key& b) const;
    };
    struct PackLess {
        bool operator()(const Key& a, const Key& b) const;
    };
    // 0: starved; c in 1..kClasses-2: free vCPU in [2^(c-1), 2^c - 1]; kClasses-1: 2^(kClasses-2) up.
    static constexpr int kClasses = 10;
    // The eligible hosts of one index (the cloud, a zone, a trait) in both orders, by vCPU class.
    struct Shelf {
        std::set<Key, SpreadLess> spread[kClasses];
        std::set<Key, PackLess> pack[kClasses];
        size_t size = 0;
    };
    struct Filtering;  // placement.cc: the filters of one request

    // `slot` is the slot of claim.host, if the caller has it at hand.
    void Record(Claim claim, Slot* slot = nullptr);
    void Unrecord(const Claim& claim);
    // File a known slot in (take it out of) the shelves, or count it as disabled / dead.
    void Index(Slot& slot);
    void Unindex(Slot& slot);
    // Gives a host that just registered a rank between its neighbours', renumbering if none is left.
    void Rank(std::map<std::string, Slot, std::less<>>::iterator it);
    // The "no valid host" error; `counts` (per filter) null: scan every host to count exactly.
    Result<Claim> Fail(const PlacementRequest& request, const Filtering& filtering, FailureReason& why,
                       const int64_t* counts);

    Ratios ratios_;
    PlacementLimits limits_;
    std::map<std::string, Slot, std::less<>> slots_;  // by host name
    size_t known_hosts_ = 0;
    size_t disabled_ = 0;                               // known hosts not enabled
    size_t dead_ = 0;                                   // known hosts enabled but not alive
    Shelf all_;                                         // every eligible host
    std::map<std::string, Shelf, std::less<>> zones_;   // by availability zone (not ""); none empty
    std::map<std::string, Shelf, std::less<>> traits_;  // by trait; none empty
    size_t last_examined_ = 0;
    std::unordered_map<std::string, Claim> claims_;  // by server id
    // group id -> host name -> how many of the group's claims the host holds (entries > 0 only).
    std::map<std::string, std::map<std::string, int64_t, std::less<>>, std::less<>> groups_;
};

}  // namespace cogs::scheduler
