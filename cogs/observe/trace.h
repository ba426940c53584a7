// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header that lets one
// request be followed across every process it touches.
//
//   traceparent: 00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>
//
// The API accepts a caller's traceparent or starts a new trace; the workflow keeps it; every
// service call carries a child span of it; every process logs the trace id (see log.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cogs::observe {

struct TraceContext {
    std::string trace_id;  // 32 lower-case hex digits, not all zero
    std::string span_id;   // 16 lower-case hex digits, not all zero
    uint8_t flags = 1;     // bit 0: sampled

    // A new trace with a random trace id and span id.
    static TraceContext New();
    // The same trace with a new random span id (a call this span makes).
    TraceContext Child() const;
    // "00-<trace>-<span>-<flags>".
    std::string ToTraceparent() const;
};

// Parses a traceparent header. nullopt if it is malformed, its version is ff, or an id is all zero
// (the spec says to start a new trace then). Versions above 00 are parsed by their first four
// fields, as the spec asks.
std::optional<TraceContext> ParseTraceparent(std::string_view header);

// The trace id of a traceparent header, or "" if it is malformed.
std::string TraceIdOf(std::string_view traceparent);

}  // namespace cogs::observe
