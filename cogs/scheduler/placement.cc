#include "cogs/scheduler/placement.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
#include <limits>
#include <utility>

#include "cogs/base/check.h"

namespace cogs::scheduler {
namespace {

// floor(capacity * ratio), clamped to +-2^62: no host comes near, and the clamp keeps
// `usable - used` and the casts from double far from int64 overflow (undefined behaviour).
int64_t Usable(int64_t capacity, double ratio) {
    constexpr int64_t kLimit = int64_t{1} << 62;
    const double usable = std::floor(static_cast<double>(capacity) * ratio);
    if (usable >= static_cast<double>(kLimit)) {
        return kLimit;
    }
    if (usable <= -static_cast<double>(kLimit)) {
        return -kLimit;
    }
    return static_cast<int64_t>(usable);
}

bool ValidRatio(double r) { return std::isfinite(r) && r >= 0; }

// Distance between the ranks of hosts registered in name order (the usual case: appended last).
constexpr uint64_t kRankGap = uint64_t{1} << 32;

// The filters in the order they run; the names are the labels of the "no valid host" message.
enum Filter { kEnabled, kAlive, kZone, kTraits, kVcpus, kRam, kDisk, kGroup, kFilterCount };
constexpr const char* kFilterNames[kFilterCount] = {
    "enabled", "alive", "availability_zone", "traits", "vcpus", "ram", "disk", "group"};

}  // namespace

std::string_view ToString(FailureReason reason) {
    switch (reason) {
        case FailureReason::kNone: return "";
        case FailureReason::kInvalid: return "invalid";
        case FailureReason::kNoHosts: return "no_hosts";
        case FailureReason::kEnabled: return "enabled";
        case FailureReason::kAlive: return "alive";
        case FailureReason::kAvailabilityZone: return "az";
        case FailureReason::kTraits: return "traits";
        case FailureReason::kVcpus: return "vcpus";
        case FailureReason::kRam: return "ram";
        case FailureReason::kDisk: return "disk";
        case FailureReason::kAffinity: return "affinity";
        case FailureReason::kAntiAffinity: return "anti_affinity";
    }
    return "";
}

Placement::Placement(Ratios ratios, PlacementLimits limits) : ratios_(ratios), limits_(limits) {
    COGS_CHECK(ValidRatio(ratios.cpu) && ValidRatio(ratios.ram) && ValidRatio(ratios.disk));
}

void Placement::UpsertHost(HostInfo host) {
    auto it = slots_.find(host.name);
    if (it == slots_.end()) {
        it = slots_.emplace(host.name, Slot{}).first;
    }
    Slot& slot = it->second;
    const bool is_new = !slot.known;
    if (!is_new) {
        Unindex(slot);
    }
    // Filters run once per host per request: keep what they need precomputed.
    slot.sorted_traits = host.traits;
    std::sort(slot.sorted_traits.begin(), slot.sorted_traits.end());
    slot.usable_vcpus = Usable(host.vcpus, ratios_.cpu);
    slot.usable_ram_mb = Usable(host.ram_mb, ratios_.ram);
    slot.usable_disk_gb = Usable(host.disk_gb, ratios_.disk);
    slot.info = std::move(host);
    if (is_new) {
        slot.known = true;
        ++known_hosts_;
        Rank(it);
    }
    Index(slot);
}

void Placement::RemoveHost(const std::string& name) {
    auto it = slots_.find(name);
    if (it == slots_.end() || !it->second.known) {
        return;
    }
    Unindex(it->second);
    --known_hosts_;
    if (it->second.used.servers == 0) {
        slots_.erase(it);
        return;
    }
    Slot& slot = it->second;
    slot.known = false;
    slot.info = HostInfo{};
    slot.sorted_traits.clear();
    slot.usable_vcpus = slot.usable_ram_mb = slot.usable_disk_gb = 0;
}

// Ranks stand for names in the weighers' tie-break: comparing strings on every step down the
// orders was most of a claim's cost in Debug builds, where the sanitizer tests run.
void Placement::Rank(std::map<std::string, Slot, std::less<>>::iterator it) {
    uint64_t lo = 0, hi = 0;
    bool has_lo = false, has_hi = false;
    for (auto prev = it; prev != slots_.begin();) {
        if ((--prev)->second.known) {
            lo = prev->second.rank;
            has_lo = true;
            break;
        }
    }
    for (auto next = std::next(it); next != slots_.end(); ++next) {
        if (next->second.known) {
            hi = next->second.rank;
            has_hi = true;
            break;
        }
    }
    if (!has_hi) {
        if (!has_lo) {
            it->second.rank = kRankGap;
            return;
        }
        if (lo <= std::numeric_limits<uint64_t>::max() - kRankGap) {
            it->second.rank = lo + kRankGap;
            return;
        }
    } else if (hi - lo >= 2) {
        it->second.rank = lo + (hi - lo) / 2;  // lo is 0 with no host before: ranks start at 1
        return;
    }
    // No room left between the neighbours: renumber every host, and rebuild the indexes (the slot
    // being ranked is not in them yet).
    all_ = Shelf{};
    zones_.clear();
    traits_.clear();
    disabled_ = 0;
    dead_ = 0;
    uint64_t rank = 0;
    for (auto& [name, slot] : slots_) {
        if (slot.known) {
            rank += kRankGap;
            slot.rank = rank;
            if (&slot != &it->second) {
                Index(slot);
            }
        }
    }
}

void Placement::SetEnabled(const std::string& host, bool enabled) {
    auto it = slots_.find(host);
    if (it != slots_.end() && it->second.known && it->second.info.enabled != enabled) {
        Unindex(it->second);
        it->second.info.enabled = enabled;
        Index(it->second);
    }
}

void Placement::SetAlive(const std::string& host, bool alive) {
    auto it = slots_.find(host);
    if (it != slots_.end() && it->second.known && it->second.info.alive != alive) {
        Unindex(it->second);
        it->second.info.alive = alive;
        Index(it->second);
    }
}

const HostInfo* Placement::FindHost(const std::string& name) const {
    auto it = slots_.find(name);
    return it != slots_.end() && it->second.known ? &it->second.info : nullptr;
}

std::vector<HostInfo> Placement::Hosts() const {
    std::vector<HostInfo> hosts;
    hosts.reserve(known_hosts_);
    for (const auto& [name, slot] : slots_) {
        if (slot.known) {
            hosts.push_back(slot.info);
        }
    }
    return hosts;
}

// The filters of one request, with what they need prepared once rather than per host.
struct Placement::Filtering {
    const PlacementRequest& request;
    bool has_group = false;
    // The group's members by host; null when the group has none (or no policy applies).
    const std::map<std::string, int64_t, std::less<>>* members = nullptr;
    std::vector<std::string> required;  // sorted, unique

    // The first filter that eliminates the host, or kFilterCount if it passes them all.
    int Check(const Slot& slot) const {
        const HostInfo& host = slot.info;
        if (!host.enabled) {
            return kEnabled;
        }
        if (!host.alive) {
            return kAlive;
        }
        if (!request.availability_zone.empty() && host.availability_zone != request.availability_zone) {
            return kZone;
        }
        if (!std::includes(slot.sorted_traits.begin(), slot.sorted_traits.end(), required.begin(),
                           required.end())) {
            return kTraits;
        }
        if (request.vcpus > slot.FreeVcpus()) {
            return kVcpus;
        }
        if (request.ram_mb > slot.FreeRam()) {
            return kRam;
        }
        if (request.disk_gb > slot.FreeDisk()) {
            return kDisk;
        }
        if (has_group) {
            const bool holds_member = members != nullptr && members->contains(host.name);
            const bool passes =
                request.policy == GroupPolicy::kAffinity ? members == nullptr || holds_member : !holds_member;
            if (!passes) {
                return kGroup;
            }
        }
        return kFilterCount;
    }
};

bool Placement::SpreadLess::operator()(const Key& a, const Key& b) const {
    if (a.free_ram != b.free_ram) {
        return a.free_ram > b.free_ram;
    }
    if (a.free_vcpus != b.free_vcpus) {
        return a.free_vcpus > b.free_vcpus;
    }
    return a.rank < b.rank;
}

bool Placement::PackLess::operator()(const Key& a, const Key& b) const {
    if (a.free_ram != b.free_ram) {
        return a.free_ram < b.free_ram;
    }
    return a.rank < b.rank;
}

namespace {

// The vCPU class of a host (placement.h, "Indexes").
template <int kClasses>
int ClassOf(int64_t free_vcpus, int64_t free_disk) {
    if (free_vcpus <= 0 || free_disk <= 0) {
        return 0;
    }
    return std::min(static_cast<int>(std::bit_width(static_cast<uint64_t>(free_vcpus))), kClasses - 1);
}

// Whether class `c` can hold a host that passes the vcpus and disk filters for this request.
template <int kClasses>
bool ClassMayFit(int c, int64_t vcpus, int64_t disk_gb) {
    if (c == 0) {
        return vcpus <= 0 || disk_gb <= 0;
    }
    return c == kClasses - 1 || (int64_t{1} << c) - 1 >= vcpus;
}

}  // namespace

void Placement::Index(Slot& slot) {
    if (!slot.info.enabled) {
        ++disabled_;
        return;
    }
    if (!slot.info.alive) {
        ++dead_;
        return;
    }
    const Key key{slot.FreeRam(), slot.FreeVcpus(), slot.rank, &slot};
    const int c = ClassOf<kClasses>(slot.FreeVcpus(), slot.FreeDisk());
    auto file = [&key, c](Shelf& shelf) {
        shelf.spread[c].insert(key);
        shelf.pack[c].insert(key);
        ++shelf.size;
    };
    file(all_);
    if (!slot.info.availability_zone.empty()) {
        file(zones_[slot.info.availability_zone]);
    }
    for (size_t t = 0; t < slot.sorted_traits.size(); ++t) {
        if (t == 0 || slot.sorted_traits[t] != slot.sorted_traits[t - 1]) {
            file(traits_[slot.sorted_traits[t]]);
        }
    }
}

void Placement::Unindex(Slot& slot) {
    if (!slot.info.enabled) {
        --disabled_;
        return;
    }
    if (!slot.info.alive) {
        --dead_;
        return;
    }
    const Key key{slot.FreeRam(), slot.FreeVcpus(), slot.rank, &slot};
    const int c = ClassOf<kClasses>(slot.FreeVcpus(), slot.FreeDisk());
    auto unfile = [&key, c](Shelf& shelf) {
        COGS_CHECK(shelf.spread[c].erase(key) == 1);
        COGS_CHECK(shelf.pack[c].erase(key) == 1);
        return --shelf.size == 0;
    };
    unfile(all_);
    if (!slot.info.availability_zone.empty()) {
        auto zone = zones_.find(slot.info.availability_zone);
        COGS_CHECK(zone != zones_.end());
        if (unfile(zone->second)) {
            zones_.erase(zone);
        }
    }
    for (size_t t = 0; t < slot.sorted_traits.size(); ++t) {
        if (t == 0 || slot.sorted_traits[t] != slot.sorted_traits[t - 1]) {
            auto trait = traits_.find(slot.sorted_traits[t]);
            COGS_CHECK(trait != traits_.end());
            if (unfile(trait->second)) {
                traits_.erase(trait);
            }
        }
    }
}

Result<Claim> Placement::ClaimFor(const PlacementRequest& request, FailureReason* reason) {
    FailureReason ignored = FailureReason::kNone;
    FailureReason& why = reason != nullptr ? *reason : ignored;
    why = FailureReason::kInvalid;
    if (request.server_id.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "placement request without a server id");
    }
    if (request.vcpus < 0 || request.ram_mb < 0 || request.disk_gb < 0) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "negative resources requested for server " + request.server_id + ": " +
                             std::to_string(request.vcpus) + " vcpus, " + std::to_string(request.ram_mb) +
                             " MiB, " + std::to_string(request.disk_gb) + " GiB");
    }
    if (auto it = claims_.find(request.server_id); it != claims_.end()) {
        why = FailureReason::kNone;
        return it->second;
    }

    Filtering filtering{request, false, nullptr, {}};
    filtering.has_group = !request.group_id.empty() && request.policy != GroupPolicy::kNone;
    if (filtering.has_group) {
        if (auto g = groups_.find(request.group_id); g != groups_.end()) {
            filtering.members = &g->second;
        }
    }
    filtering.required = request.required_traits;
    std::sort(filtering.required.begin(), filtering.required.end());
    filtering.required.erase(std::unique(filtering.required.begin(), filtering.required.end()),
                             filtering.required.end());

    // The shelves the request names: its zone's (or the cloud's) and each required trait's; the
    // smallest is walked. A shelf that does not exist holds no eligible host: nothing passes.
    const Shelf* zone = &all_;
    if (!request.availability_zone.empty()) {
        auto z = zones_.find(request.availability_zone);
        zone = z != zones_.end() ? &z->second : nullptr;
    }
    const Shelf* walked = zone;
    for (const std::string& trait : filtering.required) {
        auto t = traits_.find(trait);
        if (t == traits_.end()) {
            walked = nullptr;
            break;
        }
        if (walked != nullptr && t->second.size < walked->size) {
            walked = &t->second;
        }
    }

    const bool spread = request.weigher == Weigher::kSpread;
    auto better = [spread](const Key& a, const Key& b) {
        return spread ? SpreadLess{}(a, b) : PackLess{}(a, b);
    };
    Key best;
    bool have = false;
    size_t examined = 0;
    // What eliminated each host the walks examined (kZone and kTraits under kTraits), for the
    // estimated counts of a failure.
    int64_t seen[kFilterCount + 1] = {};
    int64_t skipped_vcpus = 0, short_of_ram = 0;
    auto consider = [&](const Key& key) {
        ++examined;
        int f = filtering.Check(*key.slot);
        if (f == kFilterCount) {
            if (!have || better(key, best)) {
                best = key;
                have = true;
            }
            return true;
        }
        ++seen[f == kZone ? kTraits : f];
        return false;
    };

    const bool by_members =
        filtering.has_group && request.policy == GroupPolicy::kAffinity && filtering.members != nullptr;
    if (by_members) {
        // Only a host holding a member can pass: look at those alone.
        for (const auto& [host, count] : *filtering.members) {
            auto it = slots_.find(host);
            if (it != slots_.end() && it->second.known) {
                Slot& slot = it->second;
                consider(Key{slot.FreeRam(), slot.FreeVcpus(), slot.rank, &slot});
            }
        }
    } else if (walked != nullptr) {
        // Each class's first passing host is its best; the best of those is the answer. Walk the
        // classes that cannot fail on vCPUs first, so the bound cuts the one that can.
        const size_t bound = limits_.max_examined;
        // One class's order from `it`, while free RAM lasts: true if the bound stopped it.
        auto walk = [&](auto it, auto end, size_t size) {
            int64_t visited = 0;
            bool stopped = false;
            for (; it != end && it->free_ram >= request.ram_mb; ++it) {
                if (have && bound > 0 && examined >= bound) {
                    stopped = true;
                    break;
                }
                if (have && !better(*it, best)) {
                    break;  // this class has nothing better left
                }
                ++visited;
                if (consider(*it)) {
                    break;
                }
            }
            // Only read if nothing passed: then each walk ran until free RAM ran out.
            short_of_ram += static_cast<int64_t>(size) - visited;
            return stopped;
        };
        bool cut = false;
        for (int c = kClasses - 1; c >= 0 && !cut; --c) {
            if (!ClassMayFit<kClasses>(c, request.vcpus, request.disk_gb)) {
                skipped_vcpus += static_cast<int64_t>(walked->spread[c].size());
                continue;
            }
            if (spread) {
                const auto& order = walked->spread[c];
                cut = walk(order.begin(), order.end(), order.size());
            } else {
                const auto& order = walked->pack[c];
                cut = walk(order.lower_bound(Key{request.ram_mb, 0, 0, nullptr}), order.end(), order.size());
            }
        }
    }
    last_examined_ = examined;

    if (!have) {
        if (known_hosts_ <= limits_.exact_failure_scan_hosts) {
            return Fail(request, filtering, why, nullptr);
        }
        // Estimates from the indexes (placement.h, ClaimFor): they add up to the host count.
        const int64_t eligible = static_cast<int64_t>(all_.size);
        const int64_t zone_size = zone != nullptr ? static_cast<int64_t>(zone->size) : 0;
        const int64_t walked_size =
            walked != nullptr && zone != nullptr ? static_cast<int64_t>(walked->size) : 0;
        int64_t counts[kFilterCount + 1] = {};
        counts[kEnabled] = static_cast<int64_t>(disabled_);
        counts[kAlive] = static_cast<int64_t>(dead_);
        counts[kZone] = eligible - zone_size;
        counts[kTraits] = zone_size - walked_size;
        if (by_members) {
            int64_t rest = walked_size;
            for (int f = kVcpus; f < kGroup; ++f) {
                counts[f] = seen[f];
                rest -= seen[f];
            }
            counts[kGroup] = std::max<int64_t>(rest, 0);
        } else {
            for (int f = kTraits; f <= kGroup; ++f) {
                counts[f] += seen[f];
            }
            counts[kVcpus] += skipped_vcpus;
            counts[kRam] += short_of_ram;
        }
        return Fail(request, filtering, why, counts);
    }

    Slot* chosen = best.slot;
    Claim claim{request.server_id, chosen->info.name, request.vcpus,
                request.ram_mb,    request.disk_gb,   request.group_id};
    Record(claim, chosen);
    why = FailureReason::kNone;
    return claim;
}

Result<Claim> Placement::Fail(const PlacementRequest& request, const Filtering& filtering, FailureReason& why,
                              const int64_t* counts) {
    int64_t eliminated[kFilterCount + 1] = {};
    if (counts != nullptr) {
        std::copy(counts, counts + kFilterCount + 1, eliminated);
    } else {
        // Few hosts: a pass over every host, for exact counts (and a check of the indexes).
        for (const auto& [name, slot] : slots_) {
            if (slot.known) {
                ++eliminated[filtering.Check(slot)];
            }
        }
        COGS_CHECK(eliminated[kFilterCount] == 0);
    }
    why = FailureReason::kNoHosts;
    for (int f = kFilterCount - 1; f >= 0; --f) {
        if (eliminated[f] > 0) {
            static constexpr FailureReason kReasons[kFilterCount] = {
                FailureReason::kEnabled, FailureReason::kAlive,   FailureReason::kAvailabilityZone,
                FailureReason::kTraits,  FailureReason::kVcpus,   FailureReason::kRam,
                FailureReason::kDisk,    FailureReason::kAffinity};
            why = kReasons[f];
            if (f == kGroup && request.policy == GroupPolicy::kAntiAffinity) {
                why = FailureReason::kAntiAffinity;
            }
            break;
        }
    }
    std::string msg = "no valid host for " + std::to_string(request.vcpus) + " vcpus, " +
                      std::to_string(request.ram_mb) + " MiB, " + std::to_string(request.disk_gb) +
                      " GiB: " + std::to_string(known_hosts_) + " hosts";
    for (int f = 0; f < kFilterCount; ++f) {
        const char* label = kFilterNames[f];
        if (f == kGroup) {
            if (!filtering.has_group) {
                break;
            }
            label = request.policy == GroupPolicy::kAffinity ? "affinity" : "anti-affinity";
        }
        msg += "; ";
        msg += label;
        msg += ": " + std::to_string(eliminated[f]) + " eliminated";
    }
    return MakeError(Error(ErrorCode::kFailedPrecondition, std::move(msg), /*retry=*/false));
}

void Placement::AddClaim(Claim claim) {
    COGS_EXPECT(!claim.server_id.empty());
    Release(claim.server_id);
    Record(std::move(claim));
}

bool Placement::Release(const std::string& server_id) {
    auto it = claims_.find(server_id);
    if (it == claims_.end()) {
        return false;
    }
    Unrecord(it->second);
    claims_.erase(it);
    return true;
}

const Claim* Placement::ClaimOf(const std::string& server_id) const {
    auto it = claims_.find(server_id);
    return it != claims_.end() ? &it->second : nullptr;
}

Usage Placement::UsageOf(const std::string& host) const {
    auto it = slots_.find(host);
    return it != slots_.end() ? it->second.used : Usage{};
}

void Placement::Record(Claim claim, Slot* known_slot) {
    Slot& slot = known_slot != nullptr ? *known_slot : slots_[claim.host];
    if (slot.known) {
        Unindex(slot);
    }
    slot.used.vcpus += claim.vcpus;
    slot.used.ram_mb += claim.ram_mb;
    slot.used.disk_gb += claim.disk_gb;
    ++slot.used.servers;
    if (slot.known) {
        Index(slot);
    }
    if (!claim.group_id.empty()) {
        ++groups_[claim.group_id][claim.host];
    }
    std::string server_id = claim.server_id;
    claims_.insert_or_assign(std::move(server_id), std::move(claim));
}

void Placement::Unrecord(const Claim& claim) {
    auto slot = slots_.find(claim.host);
    COGS_CHECK(slot != slots_.end());
    const bool known = slot->second.known;
    if (known) {
        Unindex(slot->second);
    }
    Usage& used = slot->second.used;
    used.vcpus -= claim.vcpus;
    used.ram_mb -= claim.ram_mb;
    used.disk_gb -= claim.disk_gb;
    --used.servers;
    COGS_DCHECK(used.servers >= 0);
    if (known) {
        Index(slot->second);
    } else if (used.servers == 0) {
        // A host that never registered exists only for its claims: forget it with the last one.
        slots_.erase(slot);
    }
    if (!claim.group_id.empty()) {
        auto group = groups_.find(claim.group_id);
        COGS_CHECK(group != groups_.end());
        auto member = group->second.find(claim.host);
        COGS_CHECK(member != group->second.end());
        if (--member->second == 0) {
            group->second.erase(member);
            if (group->second.empty()) {
                groups_.erase(group);
            }
        }
    }
}

}  // namespace cogs::scheduler
