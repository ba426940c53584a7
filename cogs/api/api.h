// The REST API of cogsd over HTTP (docs/api.md): authentication, routing to the Cloud, admission
// control, the JSON error shape, and the request's trace (W3C traceparent). Beast never shows
// here: it rides on cogs/http.
//
// Every request gets a trace: the caller's `traceparent` header if it is valid (the API's work is
// a child span of it), else a new trace. The answer carries `traceparent` (the API's span), the
// workflows the request starts carry it, and every log line written while the request is handled
// carries its trace id (observe::LogScope).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "cogs/cloud/cloud.h"
#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"

namespace cogs::api {

struct ApiOptions {
    // Requests being served at once; beyond, 429 with Retry-After (never an unbounded queue).
    size_t max_inflight = 4096;
    // cogs_api_rejected_total{reason} goes here (docs/metrics.md); null: none. Request counts and
    // latencies are observe::Instrument's, around this handler.
    observe::Metrics* metrics = nullptr;
};

struct ApiStats {
    uint64_t requests = 0;
    uint64_t rejected_overload = 0;
    uint64_t unauthenticated = 0;
    size_t inflight = 0;
};

class Api {
public:
    Api(cloud::Cloud& cloud, ApiOptions options);
    // The handler to give http::StartServer; it must run on the cloud's io thread. It also serves
    // GET/PUT /v1/log-levels (admin tokens only).
    http::Handler Handler();
    ApiStats stats() const;

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace cogs::api
