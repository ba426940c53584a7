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
// Cost: the known hosts are kept in both weighers' orders, so `ClaimFor` walks from the best host
// and stops at the first that passes every filter: O(log n) plus the hosts it skips (with a group
// policy, times log group size). A request that fails scans every host once, to count. `AddClaim`,
// `Release`, `UpsertHost`, `UsageOf`, `FindHost`, `SetEnabled`, `SetAlive`: O(log n); `ClaimOf`: O(1).
#pragma once

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
    explicit Placement(Ratios ratios = {});

    // Adds a host, or replaces its capacity, zone, traits, enabled and alive with `host`'s. The
    // claims on it stay (a shrunk host may end up overcommitted; it then takes nothing new).
    void UpsertHost(HostInfo host);
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
    //   host.
    //
    // `reason`, if not null, is set on every call: kNone when a claim is returned (new or the
    // existing one), else why there is none (see FailureReason). The counting costs nothing extra:
    // it comes from the scan a failure makes anyway.
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
    struct Filtering;  // placement.cc: the filters of one request

    // `slot` is the slot of claim.host, if the caller has it at hand.
    void Record(Claim claim, Slot* slot = nullptr);
    void Unrecord(const Claim& claim);
    void Index(Slot& slot);
    void Unindex(Slot& slot);
    // Gives a host that just registered a rank between its neighbours', renumbering if none is left.
    void Rank(std::map<std::string, Slot, std::less<>>::iterator it);

    Ratios ratios_;
    std::map<std::string, Slot, std::less<>> slots_;  // by host name
    size_t known_hosts_ = 0;
    std::set<Key, SpreadLess> spread_order_;         // known hosts, best for kSpread first
    std::set<Key, PackLess> pack_order_;             // known hosts, least free RAM first
    std::unordered_map<std::string, Claim> claims_;  // by server id
    // group id -> host name -> how many of the group's claims the host holds (entries > 0 only).
    std::map<std::string, std::map<std::string, int64_t, std::less<>>, std::less<>> groups_;
};

}  // namespace cogs::scheduler
