// The REST API of cogsd over HTTP (docs/api.md): authentication, routing to the Cloud, admission
// control, and the JSON error shape. Beast never shows here: it rides on cogs/http.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "cogs/cloud/cloud.h"
#include "cogs/http/server.h"

namespace cogs::api {

struct ApiOptions {
    // Requests being served at once; beyond, 429 with Retry-After (never an unbounded queue).
    size_t max_inflight = 4096;
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
    // The handler to give http::StartServer; it must run on the cloud's io thread.
    http::Handler Handler();
    ApiStats stats() const;

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace cogs::api
