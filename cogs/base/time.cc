#include "cogs/base/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>

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

std::string Rfc3339(int64_t wall_ms) {
    const int64_t floor_s = wall_ms >= 0 ? wall_ms / 1000 : -((-wall_ms + 999) / 1000);
    const auto secs = static_cast<std::time_t>(floor_s);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(wall_ms - floor_s * 1000));
    return buf;
}

std::optional<int64_t> ParseRfc3339(std::string_view text) {
    int y, mo, d, h, mi, sec;
    int consumed = 0;
    const std::string str(text);
    if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6 &&
        std::sscanf(str.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
    size_t i = static_cast<size_t>(consumed);
    if (i < str.size() && str[i] == '.') {
        int64_t frac = 0;
        int digits = 0;
        for (++i; i < str.size() && std::isdigit(static_cast<unsigned char>(str[i])); ++i, ++digits) {
            if (digits < 3) {
                frac = frac * 10 + (str[i] - '0');
            }
        }
        for (; digits < 3; ++digits) {
            frac *= 10;
        }
        ms += frac;
    }
    if (i < str.size() && (str[i] == '+' || str[i] == '-')) {
        int oh = 0, om = 0;
        if (std::sscanf(str.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2) {
            return std::nullopt;
        }
        const int64_t offset = (oh * 60 + om) * 60000LL;
        ms += str[i] == '+' ? -offset : offset;
    }
    return ms;
}

}  // namespace cogs
