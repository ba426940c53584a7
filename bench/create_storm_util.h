// What the parts of cogs-bench create-storm (create_storm.h) share: progress lines on stderr, times
// in figures, and readers of the API's JSON. Internal to the benchmark.
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/time.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench::storm {

namespace json = boost::json;
using testing::S;  // the string field `key` of an object ("" if absent)

template <typename... Args>
void Progress(fmt::format_string<Args...> f, Args&&... args) {
    fmt::print(stderr, "create-storm: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

inline double Ms(SteadyTime a, SteadyTime b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}
inline double Seconds(SteadyTime a, SteadyTime b) { return std::chrono::duration<double>(b - a).count(); }
inline double Round(double v, int digits = 1) {
    const double f = std::pow(10.0, digits);
    return std::round(v * f) / f;
}

// The field `key` of an object (null if absent), by reference: the polls read large pages.
inline const json::value& At(const json::value& v, std::string_view key) {
    static const json::value kNull;
    if (!v.is_object()) {
        return kNull;
    }
    const auto* f = v.as_object().if_contains(key);
    return f != nullptr ? *f : kNull;
}

// An integer field; 0 if absent or not a number.
inline int64_t I(const json::value& v, std::string_view key) {
    const json::value& f = At(v, key);
    boost::system::error_code ec;
    const auto n = f.to_number<int64_t>(ec);
    return ec ? 0 : n;
}

// An array field; empty if absent or not an array.
inline const json::array& Arr(const json::value& v, std::string_view key) {
    static const json::array kEmpty;
    const json::value& f = At(v, key);
    return f.is_array() ? f.as_array() : kEmpty;
}

// Every item of a paginated list (`limit=1000`, following next_marker); nullopt (and a message on
// stderr) on any answer but 200.
std::optional<std::vector<json::value>> ListAll(testing::ApiClient& api, const std::string& path,
                                                const std::string& key);

}  // namespace cogs::bench::storm
