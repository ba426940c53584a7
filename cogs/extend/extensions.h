// What an operator adds to cogsd without rebuilding it: a configuration directory (cogsd
// --config-dir; docs/extending.md) of
//
//   services.d/*.yaml    micro-services that speak docs/service-protocol.md, beside the built-in ones
//   workflows.d/*.yaml   workflows of the operator's own (the shipped files' format, definition.h)
//   hooks.d/*.yaml       steps added to workflows without editing them (workflow::Hook)
//   kinds.d/*.yaml       resource kinds served at /v1/<plural>, with workflows for controllers
//
// A services.d file holds one service, or a list under `services:`:
//
//   service: dns                        # the name workflows call it by: dns.register
//   url: http://127.0.0.1:8790          # https: called with cogsd's --tls-ca and client certificate
//   token_file: dns.token               # the token cogsd presents (relative: to this file's directory)
//   actions: [register, unregister]     # every action it has; a workflow naming another is refused
//   timeout: 5s                         # optional: no attempt waits longer, whatever its step says
//   max_inflight: 64                    # optional: the bulkhead, calls in flight at once (64)
//   max_connections: 32                 # optional: the connection pool (32)
//   breaker: {failures: 5, open_for: 1s, max_open_for: 30s}   # optional: its circuit breakers
//   insecure: true                      # development only: no token_file, no credential presented
//
// A kinds.d file holds one kind, or a list under `kinds:` (cogs/cloud/kind_spec.h):
//
//   kind: dns_zone                      # the records' kind: {"dns_zone": {...}}, events, the CLI
//   plural: dns_zones                   # served at /v1/dns_zones; the quota's name
//   quota: 10                           # records per project by default (absent: no limit)
//   create: dns_zone.create             # workflows (workflows.d) given {id, project_id, dns_zone: {fields}}
//   delete: dns_zone.delete
//   fields:                             # what a create may carry; anything else is refused (400)
//     name:  {type: string, required: true, max_length: 253}
//     ttl:   {type: integer, minimum: 60, maximum: 86400, default: 3600}
//     kind:  {type: string, enum: [primary, secondary], default: primary}
//     tags:  {type: strings, max_items: 16, max_length: 64}
//     dnssec: {type: boolean, default: false}
//
// Every file is parsed here, and every refusal names the file and line. A directory that is
// missing holds nothing; a token file that cannot be read refuses its service.
#pragma once

#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/cloud/kind_spec.h"
#include "cogs/http/client.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"

namespace cogs::extend {

struct ServiceEntry {
    std::string name;
    std::string url;
    http::Endpoint endpoint;
    std::string token_file;  // as resolved ("" with insecure)
    std::string token;       // the secret itself: presented, never shown or logged
    bool insecure = false;
    std::vector<std::string> actions;
    Duration timeout{0};  // 0: the step's own
    int max_inflight = 64;
    int max_connections = 32;
    workflow::EngineOptions::BreakerOptions breaker;
    std::string origin;  // "<file>:<line>"
};

struct Extensions {
    std::vector<ServiceEntry> services;
    std::vector<workflow::Definition> workflows;
    std::vector<workflow::Hook> hooks;
    std::vector<cloud::KindSpec> kinds;
};

// Parses kinds from YAML text (`source` names it in errors).
Result<std::vector<cloud::KindSpec>> LoadKindsFromString(const std::string& text, const std::string& source);

// Parses services from YAML text (`source` names it in errors; relative token files are read from
// `base_dir`).
Result<std::vector<ServiceEntry>> LoadServicesFromString(const std::string& text, const std::string& source,
                                                         const std::string& base_dir);

// Everything under `dir` (its services.d, workflows.d, hooks.d, kinds.d). All or nothing.
Result<Extensions> LoadExtensions(const std::string& dir);

}  // namespace cogs::extend
