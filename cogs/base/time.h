// Time as the rest of cogs sees it.
//
// Two clocks: SteadyTime for deadlines and timeouts inside one process (never jumps), and WallMs
// (milliseconds since the Unix epoch) for everything that is persisted or compared across
// processes: a deadline stored with a workflow survives a restart, a steady time point does not.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace cogs {

using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;
using Duration = std::chrono::nanoseconds;
using Millis = std::chrono::milliseconds;

// Milliseconds since the Unix epoch, now.
int64_t WallNowMs();

// Microseconds since the Unix epoch, now (ledger and trace timestamps).
int64_t WallNowUs();

// The steady time point at which the wall-clock instant `wall_ms` happens (for turning a
// persisted deadline back into a timer). Past instants map to now or earlier.
SteadyTime SteadyFromWallMs(int64_t wall_ms);

// RFC 3339 UTC with milliseconds: 2026-11-27T10:00:00.123Z (how the API shows every instant).
std::string Rfc3339(int64_t wall_ms);

}  // namespace cogs
