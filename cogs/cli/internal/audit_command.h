// `cogs audit [--token ID] [--project P] [--resource ID] [--since 1h|RFC3339] [--limit 100]`: the
// audit log (GET /v1/audit, admin; docs/api.md "Audit log"), newest first, following next_before
// page by page up to --limit. A table (TIME in UTC with milliseconds, STATUS, METHOD, PATH, RESOURCE,
// TOKEN, ROLE, PROJECT, PEER, TRACE); -o json prints {"audit": [...]}. --since takes a duration back
// from now (30m, 2h, 7d as 168h) or an RFC 3339 time. Internal to cogs/cli.
#pragma once

namespace CLI {
class App;
}

namespace cogs::cli {

class Invocation;

void AddAuditCommand(Invocation& inv, CLI::App& app);

}  // namespace cogs::cli
