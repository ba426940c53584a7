// The API's routes: one table of (method, path pattern, handler) for all of /v1 (docs/api.md).
// Each handler is a resource module's (resources/); this file is the index of where a route is
// handled.
#pragma once

#include <vector>

#include "cogs/cloud/api/router.h"

namespace cogs::cloud {

class Context;
class Reads;
class Catalog;
class Networks;
class Volumes;
class Servers;
class Hosts;
class History;
class Workflows;
class Consoles;
class IdempotencyKeys;
class ImageFiles;
class AuditLog;
class Kinds;

// The modules the routes lead to; they must outlive the routes.
struct RouteTargets {
    Context& ctx;
    Reads& reads;
    Catalog& catalog;
    Networks& networks;
    Volumes& volumes;
    Servers& servers;
    Hosts& hosts;
    History& history;
    Workflows& workflows;
    IdempotencyKeys& keys;  // admits every POST
    Consoles& consoles;
    ImageFiles& images;
    AuditLog& audit;  // GET /v1/audit
    Kinds& kinds;     // /v1/<plural> of the kinds declared in configuration, after every route of ours
};

std::vector<Route> ApiRoutes(RouteTargets t);

}  // namespace cogs::cloud
