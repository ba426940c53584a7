// Time as the rest of cogs sees it.
//
// Two clocks: SteadyTime for deadlines and timeouts inside one process (never jumps), and WallMs
// (milliseconds since the Unix epoch) for everything that is persisted or compared across
// processes: a deadline stored with a workflow survives a restart, a steady time point does not.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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

// RFC 3339 UTC with milliseconds: 2026-11-27T10:00:00.123Z (how the API shows every instant);
// instants before the epoch too (-1 is 1969-12-31T23:59:59.999Z).
std::string Rfc3339(int64_t wall_ms);

// Milliseconds since the Unix epoch of an RFC 3339 time: "2026-11-26T10:00:00.123Z", any number of
// fraction digits (milliseconds kept), an offset "+01:00"; a space instead of the T too (as people
// type it). nullopt if `text` is not one.
std::optional<int64_t> ParseRfc3339(std::string_view text);

}  // namespace cogs
