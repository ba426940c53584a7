#include "cogs/services/network/internal/address_pool.h"

#include <algorithm>

namespace cogs::services::network::internal {

AddressPool::AddressPool(std::vector<AddressRange> pools) : pools_(std::move(pools)) {
    std::sort(pools_.begin(), pools_.end(),
              [](const AddressRange& a, const AddressRange& b) { return a.first < b.first; });
    for (const auto& r : pools_) {
        // Adjacent pools make one free range: the ranges stay non-adjacent, as Release keeps them.
        if (!free_.empty() && std::prev(free_.end())->second + uint64_t{1} == r.first) {
            std::prev(free_.end())->second = r.last;
        } else {
            free_.emplace(r.first, r.last);
        }
        size_ += uint64_t{r.last} - r.first + 1;
    }
    free_count_ = size_;
    cursor_ = pools_.empty() ? 0 : pools_.front().first;
}

bool AddressPool::InPools(uint32_t ip) const {
    auto it = std::upper_bound(pools_.begin(), pools_.end(), ip,
                               [](uint32_t v, const AddressRange& r) { return v < r.first; });
    return it != pools_.begin() && std::prev(it)->last >= ip;
}

std::map<uint32_t, uint32_t>::const_iterator AddressPool::FindFree(uint32_t ip) const {
    auto it = free_.upper_bound(ip);
    if (it == free_.begin()) {
        return free_.end();
    }
    --it;
    return it->second >= ip ? it : free_.end();
}

bool AddressPool::IsFree(uint32_t ip) const { return FindFree(ip) != free_.end(); }

bool AddressPool::Take(uint32_t ip) {
    auto it = FindFree(ip);
    if (it == free_.end()) {
        return false;
    }
    const uint32_t first = it->first;
    const uint32_t last = it->second;
    free_.erase(it);
    if (first < ip) {
        free_.emplace(first, ip - 1);
    }
    if (ip < last) {
        free_.emplace(ip + 1, last);
    }
    --free_count_;
    return true;
}

std::optional<uint32_t> AddressPool::TakeNext() {
    if (free_.empty()) {
        return std::nullopt;
    }
    uint32_t ip = 0;
    auto it = free_.upper_bound(cursor_);
    if (it != free_.begin() && std::prev(it)->second >= cursor_) {
        ip = cursor_;
    } else if (it != free_.end()) {
        ip = it->first;
    } else {
        ip = free_.begin()->first;  // wrap around
    }
    Take(ip);
    // ip is at most a subnet's last host, so ip + 1 (its broadcast address at most) cannot overflow.
    cursor_ = ip + 1;
    return ip;
}

bool AddressPool::Release(uint32_t ip) {
    if (!InPools(ip) || IsFree(ip)) {
        return false;
    }
    uint32_t first = ip;
    uint32_t last = ip;
    auto next = free_.upper_bound(ip);
    if (next != free_.end() && next->first == ip + 1) {
        last = next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        if (prev->second + 1 == ip) {
            first = prev->first;
            free_.erase(prev);
        }
    }
    free_.emplace(first, last);
    ++free_count_;
    return true;
}

std::vector<AddressRange> AddressPool::FreeRanges() const {
    std::vector<AddressRange> out;
    out.reserve(free_.size());
    for (const auto& [first, last] : free_) {
        out.push_back({first, last});
    }
    return out;
}

}  // namespace cogs::services::network::internal
