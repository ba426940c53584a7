// `cogs top`: the figures of a live view of a cloud, computed from two scrapes of cogsd's /metrics
// (docs/metrics.md) taken some seconds apart, the way Prometheus would compute them — rate() of
// counters and histogram_quantile() over the increase of histogram buckets — and rendered as a
// terminal frame or as JSON. Internal to cogs/cli; pure functions, safe from any thread.
//
// Between two scrapes a counter series may go down: the process restarted and its counters began
// again at 0 (a "counter reset"). As PromQL's increase(), the increase is then the later value. A
// series absent from the first scrape counts from 0 (cogs creates series on first use).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "cogs/cli/internal/prom_text.h"

namespace cogs::cli::top {

namespace json = boost::json;

// Cumulative histogram buckets: upper bound (`le`, +Inf included) → observations at or below it.
using Buckets = std::map<double, double>;

// The increase of one counter value from `before` to `after` (reset-aware, see above).
double Increase(double before, double after);

// PromQL's histogram_quantile(q, buckets): the bucket holding the q-th observation, interpolated
// linearly within it (from 0 for the first bucket). NaN when there are no observations or no +Inf
// bucket; the highest finite bound when the rank falls into the +Inf bucket. Non-monotonic counts
// (a scrape racing an observation) are lifted to be monotonic first, as Prometheus does.
double HistogramQuantile(double q, const Buckets& buckets);

// The increase of every series of counter `name` between the scrapes, among series whose labels
// include `match`, summed per value of the labels `by` ({} = one group, keyed by empty labels).
std::map<prom::Labels, double> CounterIncrease(const prom::Exposition& before, const prom::Exposition& after,
                                               std::string_view name, const std::vector<std::string>& by,
                                               const prom::Labels& match = {});

// The same for histogram `name` (its `name_bucket` series): per group, the bucket increases summed
// over the group's series. A series whose buckets went down was reset; it adds its later buckets.
std::map<prom::Labels, Buckets> BucketIncrease(const prom::Exposition& before, const prom::Exposition& after,
                                               std::string_view name, const std::vector<std::string>& by,
                                               const prom::Labels& match = {});

// ---- the figures of one frame -------------------------------------------------------------------
// Rates are per second over the interval; durations in seconds; NaN where there is nothing to
// compute from (no observation in the interval, nothing finished) — "-" in a frame, null in JSON.

struct WorkflowFigures {
    std::string type;  // "" for all types together
    double started_per_s = 0;
    double finished_per_s = 0;
    double succeeded_per_s = 0;
    double rolled_back_per_s = 0;
    double failed_per_s = 0;
    double error_rate = 0;  // (rolled_back + failed) / finished, over the interval
    double p50_s = 0;
    double p99_s = 0;
};

struct ServiceFigures {  // the engine's calls to one service
    std::string service;
    double calls_per_s = 0;
    double retries_per_s = 0;
    double timeouts_per_s = 0;
    double compensations_per_s = 0;
    double step_p50_s = 0;
    double step_p99_s = 0;
    double schedule_to_start_p99_s = 0;
    double bulkhead_in_use = 0;  // gauges, as of the second scrape
    double bulkhead_waiting = 0;
    double bulkhead_limit = 0;
};

struct RouteFigures {
    std::string route;
    std::string method;
    double requests_per_s = 0;
    double errors_per_s = 0;  // 5xx
    double p99_s = 0;
};

struct ApiFigures {
    double requests_per_s = 0;
    double client_errors_per_s = 0;  // 4xx (429 included)
    double server_errors_per_s = 0;  // 5xx
    double throttled_per_s = 0;      // 429
    double p50_s = 0;
    double p99_s = 0;
    std::vector<RouteFigures> routes;  // the busiest first
};

struct StoreFigures {
    double commits_per_s = 0;
    double commit_p50_s = 0;
    double commit_p99_s = 0;
    double batch_mean = 0;  // write groups per commit
    double batch_p99 = 0;
    double fenced_per_s = 0;
};

struct PlacementFigures {
    double placements_per_s = 0;
    double failed_per_s = 0;
    double p99_s = 0;
    std::map<std::string, double> failures_per_s;  // by reason
};

struct HealFigures {                            // cogs_heal_* (docs/healing.md)
    double host_failures = 0;                   // hosts that lost their lease in the interval
    std::map<std::string, double> moves_per_s;  // started, by workflow type
    double move_failures_per_s = 0;
    std::map<std::string, double> repairs_per_s;  // reconciler actions, by kind
    double restarts_per_s = 0;
    double heal_p99_s = 0;  // last renewal of a down host -> its server ACTIVE elsewhere
    bool evacuation_paused = false;
};

struct HostRow {  // from GET /v1/hosts
    std::string name;
    std::string state;
    bool enabled = true;
};

struct Figures {
    double interval_s = 0;
    double in_flight = 0;
    WorkflowFigures workflows;                    // all types
    std::vector<WorkflowFigures> workflow_types;  // by type, the busiest first
    std::vector<ServiceFigures> services;         // by service name
    ApiFigures api;
    StoreFigures store;
    PlacementFigures placement;
    HealFigures heal;
    std::map<std::string, double> hosts_by_state;  // cogs_hosts{state}
    std::vector<HostRow> hosts;                    // filled by the caller when /v1/hosts answered
    std::string hosts_note;                        // why `hosts` is empty, if it is for a reason
};

// The figures from two scrapes `seconds` apart (seconds > 0). `max_routes` bounds api.routes.
Figures Compute(const prom::Exposition& before, const prom::Exposition& after, double seconds,
                size_t max_routes = 8);

// A frame for a terminal (no escape sequences; the caller clears the screen). `title` is its first
// line.
std::string RenderFrame(const Figures& f, const std::string& title);

// The figures as JSON (NaN as null); the keys are those of the structs above.
json::value ToJson(const Figures& f);

// "-" for NaN, else "850µs", "12ms", "1.25s", "2m05s".
std::string FormatSeconds(double s);
// "-" for NaN, else a rate with one decimal ("12.5").
std::string FormatRate(double r);

}  // namespace cogs::cli::top
