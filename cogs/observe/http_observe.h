// What every process serves the same way: GET /metrics, GET/PUT /v1/log-levels, and request
// metrics around its HTTP handler.
#pragma once

#include <string>

#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"

namespace cogs::observe {

// Wraps a handler with request metrics:
//   cogs_http_requests_total{route,method,code}, cogs_http_request_duration_seconds{route,method},
//   cogs_http_requests_in_flight.
// `route` is the path with ids replaced ("/v1/servers/{id}/actions"): path segments at even
// positions from the third on ("/v1/<collection>/<id>/<sub>/<id>") become "{id}". At most 64
// distinct routes are kept; later ones count as "other", so a scan of random paths cannot grow the
// series without bound. GET /metrics is answered here (no authentication: Prometheus scrapes it).
// A request whose handler never answers stays counted in cogs_http_requests_in_flight (as it is
// still held). With a null `metrics` the handler is returned as is.
http::Handler Instrument(http::Handler inner, Metrics* metrics);

// The route label of a path, as described above (without the 64-route cap).
std::string RouteOf(std::string_view path);

// GET /v1/log-levels → {"*":"info","engine":"debug",...}; PUT with a JSON object of
// component → level changes them and answers the new map. 400 names a bad level or body; 405 for
// another method. The caller authenticates first (operators only).
http::Response HandleLogLevels(const http::Request& request);

}  // namespace cogs::observe
