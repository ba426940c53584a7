#include "cogs/observe/trace.h"

#include <random>

namespace cogs::observe {
namespace {

// Trace and span ids need to be unique, not secret: a per-thread generator seeded once from the OS.
std::mt19937_64& Rng() {
    thread_local std::mt19937_64 rng([] {
        std::random_device rd;
        return (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }());
    return rng;
}

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string& out, uint64_t v) {
    for (int shift = 60; shift >= 0; shift -= 4) {
        out.push_back(kHex[(v >> shift) & 0xf]);
    }
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

std::string RandomId(int words) {
    std::string s;
    do {  // an all-zero id is invalid (probability 2^-64, but cheap to rule out)
        s.clear();
        for (int i = 0; i < words; ++i) {
            AppendHex(s, Rng()());
        }
    } while (AllZero(s));
    return s;
}

bool IsLowerHex(std::string_view s) {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

}  // namespace

TraceContext TraceContext::New() { return TraceContext{RandomId(2), RandomId(1), 1}; }

TraceContext TraceContext::Child() const { return TraceContext{trace_id, RandomId(1), flags}; }

std::string TraceContext::ToTraceparent() const {
    std::string s = "00-";
    s.reserve(55);
    s += trace_id;
    s += '-';
    s += span_id;
    s += '-';
    s.push_back(kHex[(flags >> 4) & 0xf]);
    s.push_back(kHex[flags & 0xf]);
    return s;
}

std::optional<TraceContext> ParseTraceparent(std::string_view h) {
    // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
    while (!h.empty() && (h.front() == ' ' || h.front() == '\t')) {
        h.remove_prefix(1);
    }
    while (!h.empty() && (h.back() == ' ' || h.back() == '\t')) {
        h.remove_suffix(1);
    }
    if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') {
        return std::nullopt;
    }
    const auto version = h.substr(0, 2);
    if (!IsLowerHex(version) || version == "ff") {
        return std::nullopt;
    }
    // Version 00 is exactly 55 characters; a later version may append "-..." fields.
    if ((version == "00" && h.size() != 55) || (version != "00" && h.size() > 55 && h[55] != '-')) {
        return std::nullopt;
    }
    const auto trace = h.substr(3, 32);
    const auto span = h.substr(36, 16);
    const auto flags = h.substr(53, 2);
    if (!IsLowerHex(trace) || !IsLowerHex(span) || !IsLowerHex(flags) || AllZero(trace) || AllZero(span)) {
        return std::nullopt;
    }
    TraceContext t;
    t.trace_id = std::string(trace);
    t.span_id = std::string(span);
    t.flags = static_cast<uint8_t>(std::stoi(std::string(flags), nullptr, 16));
    return t;
}

std::string TraceIdOf(std::string_view traceparent) {
    auto t = ParseTraceparent(traceparent);
    return t ? t->trace_id : std::string();
}

}  // namespace cogs::observe
