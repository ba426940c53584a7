#include "cogs/base/time.h"

namespace cogs {

int64_t WallNowMs() {
    return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t WallNowUs() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

SteadyTime SteadyFromWallMs(int64_t wall_ms) { return SteadyClock::now() + Millis(wall_ms - WallNowMs()); }

}  // namespace cogs
