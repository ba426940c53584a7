// The observability commands. Internal to cogs/cli.
//
// `cogs top [--interval 2] [--once] [-o json]` scrapes cogsd's GET /metrics (at the settings' URL,
// without the token: the endpoint needs none) twice --interval apart and shows the figures top.h
// computes: workflows (in flight, started/finished per second, error rate, p50/p99, by type), the
// engine's calls per service (retries, timeouts, compensations, step and queue latency, bulkhead),
// the API (requests, 4xx/5xx/429 per second, p50/p99, the busiest routes without top's own
// scrapes), the store, placement, healing, and hosts by state, the hosts that are down or disabled
// named from GET /v1/hosts (which needs a token; without one the frame says so). It redraws every
// --interval (ANSI clear + home) until stopped; a failed scrape is shown and retried. --once prints
// one frame without escape sequences (exit 1 if a scrape fails); --once -o json the figures as JSON
// (a figure with no observation in the interval is null, "-" in a frame).
//
// `cogs events [--resource-kind K] [--resource-id ID] [--workflow ID]` reads GET /v1/events, and
// `cogs <resource> events REF` GET /v1/<collection>/<id>/events (a name is resolved while the
// resource exists; a deleted resource's history is read by its id; hosts by name), oldest first,
// following next_after page by page (an empty page ends the history). A table in fixed-width
// columns (TIME in UTC with milliseconds, KIND and RESOURCE unless scoped to one resource, TYPE,
// TRACE, MESSAGE) so the rows --follow adds line up; -o json prints {"events": [...]}, or with
// --follow one JSON object per line. --follow then asks every --interval for the events after the
// last one printed, until stopped (--limit does not go with it).
//
// `cogs log-level [get]` and `cogs log-level set COMPONENT LEVEL`: GET / PUT /v1/log-levels (admin),
// body {"COMPONENT": "LEVEL"} ("*": every component); prints the whole map answered. The services
// answer the same endpoint with their service token (--url, --token).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
}

namespace cogs::cli {

class Invocation;

// The options of a command that reads events.
struct EventsOptions {
    int limit = 0;               // at most this many, oldest first (not with follow)
    bool follow = false;         // then keep asking for what comes, until stopped
    std::string interval = "1";  // how often follow asks
};

// --limit, --follow and --interval on `c`.
void AddEventsOptions(CLI::App* c, EventsOptions& options);

// Prints the events at `path` (/v1/events or /v1/<collection>/<id>/events) matching `filters` (empty
// values ignored), oldest first, following next_after; `scoped`: of one resource (no KIND and
// RESOURCE columns). Returns the exit code (2 for a bad --interval or --limit with --follow).
int RunEvents(Invocation& inv, const std::string& path,
              const std::vector<std::pair<std::string, std::string>>& filters, const EventsOptions& options,
              bool scoped);

// `cogs events`, `cogs top` and `cogs log-level`, in that order.
void AddObserveCommands(Invocation& inv, CLI::App& app);

}  // namespace cogs::cli
