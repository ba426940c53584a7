// cogs-bench api-rate: the REST API's request rate through a real local cloud (`cogs dev`, sim
// drivers), with TLS (cogs dev's default) or without (--tls false): what TLS costs a request.
//
// Two timed phases against cogsd, each `seconds` long, `connections` requests always in flight:
//   keep-alive:  GET `target` (an authenticated read; default /v1/flavors) over `connections` kept
//                connections: requests/s, latency p50/p99, cogsd's CPU per request;
//   handshakes:  the same request, each on a new connection (a new TCP — and TLS — handshake):
//                requests/s, latency p50/p99, cogsd's CPU per request.
// Progress on stderr; the last line of stdout is one JSON object of figures.
#pragma once

#include <string>

namespace cogs::bench {

struct ApiRateOptions {
    bool tls = true;
    int connections = 16;
    int seconds = 10;
    std::string target = "/v1/flavors";
};

// The process exit code: 0 when it ran and printed its figures, 1 if the cloud did not start.
int RunApiRate(const ApiRateOptions& options);

}  // namespace cogs::bench
