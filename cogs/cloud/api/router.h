// Router: the API's routes as one table of (method, path pattern, handler), matched per request.
//
// A pattern is a path of literal segments and {name} segments ("/v1/servers/{id}/events"); a
// {name} matches any one non-empty segment and is handed to the handler as Call::params[name].
// Matching a path picks, among the patterns that match it, the most specific ones (the most
// literal segments), then the first of those whose method matches:
//   none match the path                     404 not_found "no route METHOD PATH"
//   the most specific ones lack the method  405 with Allow listing their methods, in table order
// so that /v1/projects/{id}/quotas (GET, PUT) wins over /v1/projects/{id}/{action} (POST).
// A matched route is then refused (403) to a host token it is not allowed to (access.h HostMay):
// the one place that decides what a host's credential reaches.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cogs/cloud/api/call.h"

namespace cogs::cloud {

struct Route {
    std::string method;
    std::string pattern;
    std::function<void(Call)> handler;
};

class Router {
public:
    explicit Router(std::vector<Route> routes);

    // Routes `call` (call.method, call.path) to its handler, or answers 404 / 405.
    void Dispatch(Call call) const;

    const std::vector<Route>& routes() const { return routes_; }

private:
    struct Compiled {
        std::vector<std::string> segments;  // "{name}" for a parameter
        int literals = 0;
    };
    std::vector<Route> routes_;
    std::vector<Compiled> compiled_;
};

// The decoded segments of `path` ("/v1/servers/a%20b" -> {"v1", "servers", "a b"}).
std::vector<std::string> PathSegments(std::string_view path);

}  // namespace cogs::cloud
