// AddressPool: the allocatable addresses of one subnet and which of them are free.
//
// The free addresses are kept as a sorted map of disjoint, non-adjacent ranges [first, last], so a
// take or a release is O(log r) for r free ranges (r <= allocated addresses + pools), whatever the
// size of the subnet. Allocation is next-fit: a cursor remembers where the last automatic take
// ended and the next one starts there, wrapping around once at the end, so an address released a
// moment ago is handed out again only after the rest of the pool has been used.
//
// Threading: a plain value; the owner serializes access.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "cogs/netaddr/ipv4.h"

namespace cogs::services::network::internal {

using netaddr::AddressRange;

class AddressPool {
public:
    AddressPool() = default;
    // `pools` must be disjoint and each first <= last (the caller validated them); all free.
    explicit AddressPool(std::vector<AddressRange> pools);

    // Whether `ip` lies in one of the pools (free or not).
    bool InPools(uint32_t ip) const;
    bool IsFree(uint32_t ip) const;

    // Takes `ip` if it is free; false (nothing changes) if it is taken or outside the pools.
    // Does not move the cursor: a requested address says nothing about where the next one goes.
    bool Take(uint32_t ip);

    // Takes the first free address at or after the cursor, wrapping around; moves the cursor past it.
    std::optional<uint32_t> TakeNext();

    // Returns a taken address to the free set; false (nothing changes) if it is free or outside.
    bool Release(uint32_t ip);

    uint64_t free_count() const { return free_count_; }
    uint64_t size() const { return size_; }  // addresses in the pools
    const std::vector<AddressRange>& pools() const { return pools_; }
    // The free ranges, ascending (for tests and diagnostics).
    std::vector<AddressRange> FreeRanges() const;

    uint32_t cursor() const { return cursor_; }
    void set_cursor(uint32_t cursor) { cursor_ = cursor; }

private:
    // The free range holding `ip`, or free_.end().
    std::map<uint32_t, uint32_t>::const_iterator FindFree(uint32_t ip) const;

    std::vector<AddressRange> pools_;    // ascending
    std::map<uint32_t, uint32_t> free_;  // first -> last
    uint64_t free_count_ = 0;
    uint64_t size_ = 0;
    uint32_t cursor_ = 0;
};

}  // namespace cogs::services::network::internal
