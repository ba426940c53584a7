// FNV-1a (64 bits): a fast hash that never changes across versions or machines, for values derived
// from a name (an id, a MAC, an entity tag). Not for anything an attacker may choose to collide.
#pragma once

#include <cstdint>
#include <string_view>

namespace cogs::base {

// FNV-1a's offset basis.
inline constexpr uint64_t kFnv1aBasis = 14695981039346656037ull;
// The basis the first versions of cogs used (one digit short of FNV's). Kept where the hash is
// persisted or names something that outlives the process (a port's MAC, a simulated service's ids,
// a local cloud's runc state directory), so that an upgraded cogs derives the same values.
inline constexpr uint64_t kFnv1aFirstBasis = 1469598103934665603ull;

constexpr uint64_t Fnv1a64(std::string_view s, uint64_t basis = kFnv1aBasis) {
    uint64_t h = basis;
    for (unsigned char c : s) {
        h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

}  // namespace cogs::base
