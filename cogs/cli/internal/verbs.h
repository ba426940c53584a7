// The generic verbs, written once over the resource table (resources.h): `cogs <resource> create |
// list | show | delete | <action> | events`, their options and what each sends and prints.
//
//   create  POST /v1/<collection> with the body of its flags; prints the resource (FIELD/VALUE, or
//           the API's JSON); --wait follows it to the verb's status first.
//   list    GET /v1/<collection>?<filters>, every page (--limit N: at most N); a table of the
//           resource's columns, or {"<list key>": [...]}.
//   show    GET /v1/<collection>/<id>.
//   delete  DELETE /v1/<collection>/<id>?<flags>: "<noun> <ref> deleted", or its status and
//           workflow while it is being deleted; --wait follows it until the resource answers 404.
//   action  POST /v1/<collection>/<id>/<verb> with the body of its flags; prints the resource.
//   events  the resource's history (observe_commands.h).
//
// A REF is resolved to an id as the resource's Naming says. Internal to cogs/cli.
#pragma once

#include <string>

#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/resources.h"

namespace cogs::cli {

class Invocation;

// Adds the command group of `resource` and the commands of its verbs to `app`.
void AddResourceCommands(Invocation& inv, CLI::App& app, const Resource& resource);

// The id in the resource's path for `ref`, as its Naming says.
ApiResult<std::string> ResolveRef(Invocation& inv, const Resource& resource, const std::string& ref);

// After a mutation was accepted (`reply` is the resource as answered): with `wait`, follows it to
// `expect` (progress on stderr, `label` or else its id naming it) and prints the resource as it then
// is; without, prints the answer. Returns the exit code.
int FinishAccepted(Invocation& inv, const Resource& resource, const json::value& reply, bool wait,
                   const std::string& expect, const std::string& label);

}  // namespace cogs::cli
