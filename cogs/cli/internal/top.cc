#include "cogs/cli/internal/top.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/output.h"

namespace cogs::cli::top {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

prom::Labels Project(const prom::Labels& labels, const std::vector<std::string>& by) {
    prom::Labels key;
    for (const auto& b : by) {
        auto it = labels.find(b);
        key[b] = it == labels.end() ? "" : it->second;
    }
    return key;
}

std::map<prom::Labels, double> SeriesOf(const prom::Exposition& x, std::string_view name,
                                        const prom::Labels& match) {
    std::map<prom::Labels, double> m;
    for (const prom::Sample* s : x.Select(name, match)) {
        m[s->labels] += s->value;
    }
    return m;
}

// Each series of histogram `name` (labels without `le`) with its buckets.
std::map<prom::Labels, Buckets> HistogramSeriesOf(const prom::Exposition& x, std::string_view name,
                                                  const prom::Labels& match) {
    std::map<prom::Labels, Buckets> m;
    for (const prom::Sample* s : x.Select(std::string(name) + "_bucket", match)) {
        prom::Labels labels = s->labels;
        auto le = labels.find("le");
        if (le == labels.end()) {
            continue;
        }
        const auto bound = prom::ParseValue(le->second);
        labels.erase(le);
        if (bound) {
            m[std::move(labels)][*bound] = s->value;
        }
    }
    return m;
}

// Sums the increase of each series of `after` over the same series in `before` (absent if the series
// is new) into the groups of the labels `by`: `add(was or nullptr, now, group)`.
template <typename Value, typename Add>
std::map<prom::Labels, Value> GroupedIncrease(const std::map<prom::Labels, Value>& before,
                                              const std::map<prom::Labels, Value>& after,
                                              const std::vector<std::string>& by, Add add) {
    std::map<prom::Labels, Value> out;
    for (const auto& [labels, now] : after) {
        auto it = before.find(labels);
        add(it == before.end() ? nullptr : &it->second, now, out[Project(labels, by)]);
    }
    return out;
}

double Ratio(double a, double b) { return b > 0 ? a / b : kNaN; }

// The value of group `key` in a grouped increase, 0 if absent.
double At(const std::map<prom::Labels, double>& m, const prom::Labels& key) {
    auto it = m.find(key);
    return it == m.end() ? 0 : it->second;
}

double QuantileAt(double q, const std::map<prom::Labels, Buckets>& m, const prom::Labels& key) {
    auto it = m.find(key);
    return it == m.end() ? kNaN : HistogramQuantile(q, it->second);
}

json::value Num(double v) { return std::isfinite(v) ? json::value(v) : json::value(nullptr); }

json::object Nums(const std::map<std::string, double>& values) {
    json::object o;
    for (const auto& [name, v] : values) {
        o[name] = Num(v);
    }
    return o;
}

std::string Percent(double ratio) { return std::isnan(ratio) ? "-" : fmt::format("{:.1f}%", ratio * 100); }

std::string Count(double v) { return std::isnan(v) ? "-" : fmt::format("{:g}", v); }

// "  reason 1.5/s" for each.
std::string RateList(const std::map<std::string, double>& rates) {
    std::string out;
    for (const auto& [name, r] : rates) {
        out += fmt::format("  {} {}/s", name, FormatRate(r));
    }
    return out;
}

std::string OneDecimal(double v) { return std::isnan(v) ? "-" : fmt::format("{:.1f}", v); }

}  // namespace

double Increase(double before, double after) { return after >= before ? after - before : after; }

double HistogramQuantile(double q, const Buckets& buckets) {
    if (std::isnan(q) || buckets.size() < 2 || !std::isinf(buckets.rbegin()->first)) {
        return kNaN;
    }
    if (q < 0) {
        return -std::numeric_limits<double>::infinity();
    }
    if (q > 1) {
        return std::numeric_limits<double>::infinity();
    }
    std::vector<std::pair<double, double>> b(buckets.begin(), buckets.end());
    double max = b.front().second;
    for (auto& [le, count] : b) {
        max = std::max(max, count);
        count = max;
    }
    const double observations = b.back().second;
    if (!(observations > 0)) {
        return kNaN;
    }
    double rank = q * observations;
    const size_t n = b.size();
    size_t i = 0;
    while (i < n - 1 && b[i].second < rank) {
        ++i;
    }
    if (i == n - 1) {
        return b[n - 2].first;
    }
    if (i == 0 && b[0].first <= 0) {
        return b[0].first;
    }
    double start = 0;
    double count = b[i].second;
    if (i > 0) {
        start = b[i - 1].first;
        count -= b[i - 1].second;
        rank -= b[i - 1].second;
    }
    return start + (b[i].first - start) * (rank / count);
}

std::map<prom::Labels, double> CounterIncrease(const prom::Exposition& before, const prom::Exposition& after,
                                               std::string_view name, const std::vector<std::string>& by,
                                               const prom::Labels& match) {
    return GroupedIncrease(
        SeriesOf(before, name, match), SeriesOf(after, name, match), by,
        [](const double* was, double now, double& sum) { sum += Increase(was ? *was : 0, now); });
}

std::map<prom::Labels, Buckets> BucketIncrease(const prom::Exposition& before, const prom::Exposition& after,
                                               std::string_view name, const std::vector<std::string>& by,
                                               const prom::Labels& match) {
    auto add = [](const Buckets* was, const Buckets& now, Buckets& group) {
        // A bucket that went down is a restarted process: then every bucket counts from 0.
        const bool reset = was && std::any_of(now.begin(), now.end(), [&](const auto& bucket) {
                               auto w = was->find(bucket.first);
                               return w != was->end() && bucket.second < w->second;
                           });
        for (const auto& [le, count] : now) {
            double prior = 0;
            if (was && !reset) {
                auto w = was->find(le);
                prior = w == was->end() ? 0 : w->second;
            }
            group[le] += count - prior;
        }
    };
    return GroupedIncrease(HistogramSeriesOf(before, name, match), HistogramSeriesOf(after, name, match), by,
                           add);
}

Figures Compute(const prom::Exposition& before, const prom::Exposition& after, double seconds,
                size_t max_routes) {
    Figures f;
    f.interval_s = seconds;
    auto rate = [&](double increase) { return seconds > 0 ? increase / seconds : kNaN; };
    // The rate of counter `name` by the value of `label`, for the values that rose.
    auto rates_by = [&](std::string_view name, const std::string& label) {
        std::map<std::string, double> rates;
        for (const auto& [k, v] : CounterIncrease(before, after, name, {label})) {
            if (v > 0) {
                rates[k.at(label)] = rate(v);
            }
        }
        return rates;
    };

    // Workflows.
    f.in_flight = after.Sum("cogs_workflows_in_flight");
    const auto started = CounterIncrease(before, after, "cogs_workflows_started_total", {"type"});
    const auto finished =
        CounterIncrease(before, after, "cogs_workflows_finished_total", {"type", "outcome"});
    const auto durations = BucketIncrease(before, after, "cogs_workflow_duration_seconds", {"type"});
    const auto all_durations = BucketIncrease(before, after, "cogs_workflow_duration_seconds", {});
    std::set<std::string> types;
    for (const auto& [k, v] : started) {
        types.insert(k.at("type"));
    }
    for (const auto& [k, v] : finished) {
        types.insert(k.at("type"));
    }
    auto workflow = [&](const std::string& type, bool all) {
        WorkflowFigures w;
        w.type = type;
        double st = 0, ok = 0, rb = 0, failed = 0;
        for (const auto& [k, v] : started) {
            if (all || k.at("type") == type) {
                st += v;
            }
        }
        for (const auto& [k, v] : finished) {
            if (!all && k.at("type") != type) {
                continue;
            }
            const std::string& outcome = k.at("outcome");
            (outcome == "succeeded" ? ok : outcome == "rolled_back" ? rb : failed) += v;
        }
        w.started_per_s = rate(st);
        w.finished_per_s = rate(ok + rb + failed);
        w.succeeded_per_s = rate(ok);
        w.rolled_back_per_s = rate(rb);
        w.failed_per_s = rate(failed);
        w.error_rate = Ratio(rb + failed, ok + rb + failed);
        const auto& m = all ? all_durations : durations;
        const prom::Labels key = all ? prom::Labels{} : prom::Labels{{"type", type}};
        w.p50_s = QuantileAt(0.5, m, key);
        w.p99_s = QuantileAt(0.99, m, key);
        return w;
    };
    f.workflows = workflow("", true);
    for (const auto& t : types) {
        f.workflow_types.push_back(workflow(t, false));
    }
    std::stable_sort(f.workflow_types.begin(), f.workflow_types.end(), [](const auto& a, const auto& b) {
        return a.started_per_s + a.finished_per_s > b.started_per_s + b.finished_per_s;
    });

    // The engine's calls, by service.
    const std::vector<std::string> by_service{"service"};
    const auto calls = CounterIncrease(before, after, "cogs_service_calls_total", by_service);
    const auto retries = CounterIncrease(before, after, "cogs_step_retries_total", by_service);
    const auto timeouts = CounterIncrease(before, after, "cogs_step_timeouts_total", by_service);
    const auto compensations = CounterIncrease(before, after, "cogs_compensations_total", by_service);
    const auto steps = BucketIncrease(before, after, "cogs_step_duration_seconds", by_service);
    const auto waits = BucketIncrease(before, after, "cogs_step_schedule_to_start_seconds", by_service);
    std::set<std::string> services;
    auto add_services = [&](const auto& grouped) {
        for (const auto& [k, v] : grouped) {
            services.insert(k.at("service"));
        }
    };
    add_services(calls);
    add_services(retries);
    add_services(steps);
    add_services(waits);
    for (const char* g : {"cogs_bulkhead_limit", "cogs_bulkhead_in_use", "cogs_bulkhead_waiting"}) {
        for (const prom::Sample* s : after.Select(g)) {
            if (auto it = s->labels.find("service"); it != s->labels.end()) {
                services.insert(it->second);
            }
        }
    }
    for (const auto& service : services) {
        const prom::Labels key{{"service", service}};
        ServiceFigures s;
        s.service = service;
        s.calls_per_s = rate(At(calls, key));
        s.retries_per_s = rate(At(retries, key));
        s.timeouts_per_s = rate(At(timeouts, key));
        s.compensations_per_s = rate(At(compensations, key));
        s.step_p50_s = QuantileAt(0.5, steps, key);
        s.step_p99_s = QuantileAt(0.99, steps, key);
        s.schedule_to_start_p99_s = QuantileAt(0.99, waits, key);
        s.bulkhead_in_use = after.Sum("cogs_bulkhead_in_use", key);
        s.bulkhead_waiting = after.Sum("cogs_bulkhead_waiting", key);
        s.bulkhead_limit = after.Sum("cogs_bulkhead_limit", key);
        f.services.push_back(std::move(s));
    }

    // The API. top's own scrapes of /metrics are not API traffic.
    const auto requests =
        CounterIncrease(before, after, "cogs_http_requests_total", {"route", "method", "code"});
    const auto latency =
        BucketIncrease(before, after, "cogs_http_request_duration_seconds", {"route", "method"});
    std::map<std::pair<std::string, std::string>, RouteFigures> routes;
    for (const auto& [k, v] : requests) {
        if (k.at("route") == "/metrics") {
            continue;
        }
        const std::string& code = k.at("code");
        RouteFigures& r = routes[{k.at("route"), k.at("method")}];
        r.route = k.at("route");
        r.method = k.at("method");
        r.requests_per_s += rate(v);
        f.api.requests_per_s += rate(v);
        if (!code.empty() && code[0] == '4') {
            f.api.client_errors_per_s += rate(v);
        }
        if (!code.empty() && code[0] == '5') {
            f.api.server_errors_per_s += rate(v);
            r.errors_per_s += rate(v);
        }
        if (code == "429") {
            f.api.throttled_per_s += rate(v);
        }
    }
    Buckets api_buckets;
    for (const auto& [k, b] : latency) {
        if (k.at("route") == "/metrics") {
            continue;
        }
        for (const auto& [le, count] : b) {
            api_buckets[le] += count;
        }
    }
    f.api.p50_s = HistogramQuantile(0.5, api_buckets);
    f.api.p99_s = HistogramQuantile(0.99, api_buckets);
    for (auto& [key, r] : routes) {
        r.p99_s = QuantileAt(0.99, latency, {{"method", key.second}, {"route", key.first}});
        if (r.requests_per_s > 0) {
            f.api.routes.push_back(r);
        }
    }
    std::stable_sort(f.api.routes.begin(), f.api.routes.end(),
                     [](const auto& a, const auto& b) { return a.requests_per_s > b.requests_per_s; });
    if (f.api.routes.size() > max_routes) {
        f.api.routes.resize(max_routes);
    }

    // The store.
    f.store.commits_per_s = rate(At(CounterIncrease(before, after, "cogs_store_commits_total", {}), {}));
    f.store.fenced_per_s = rate(At(CounterIncrease(before, after, "cogs_store_fenced_total", {}), {}));
    const auto commit = BucketIncrease(before, after, "cogs_store_commit_duration_seconds", {});
    f.store.commit_p50_s = QuantileAt(0.5, commit, {});
    f.store.commit_p99_s = QuantileAt(0.99, commit, {});
    const auto groups = BucketIncrease(before, after, "cogs_store_commit_groups", {});
    f.store.batch_p99 = QuantileAt(0.99, groups, {});
    f.store.batch_mean = Ratio(At(CounterIncrease(before, after, "cogs_store_commit_groups_sum", {}), {}),
                               At(CounterIncrease(before, after, "cogs_store_commit_groups_count", {}), {}));

    // Placement.
    const auto placements = CounterIncrease(before, after, "cogs_placements_total", {"outcome"});
    for (const auto& [k, v] : placements) {
        f.placement.placements_per_s += rate(v);
        if (k.at("outcome") == "failed") {
            f.placement.failed_per_s += rate(v);
        }
    }
    f.placement.p99_s =
        QuantileAt(0.99, BucketIncrease(before, after, "cogs_placement_duration_seconds", {}), {});
    f.placement.failures_per_s = rates_by("cogs_placement_failures_total", "reason");

    // Healing.
    f.heal.host_failures = At(CounterIncrease(before, after, "cogs_heal_host_failures_total", {}), {});
    f.heal.moves_per_s = rates_by("cogs_heal_moves_started_total", "type");
    for (const auto& [k, v] : CounterIncrease(before, after, "cogs_heal_move_failures_total", {"type"})) {
        f.heal.move_failures_per_s += rate(v);
    }
    f.heal.repairs_per_s = rates_by("cogs_heal_repairs_total", "kind");
    f.heal.restarts_per_s =
        rate(At(CounterIncrease(before, after, "cogs_heal_instance_restarts_total", {}), {}));
    f.heal.heal_p99_s = QuantileAt(0.99, BucketIncrease(before, after, "cogs_heal_duration_seconds", {}), {});
    for (const prom::Sample* s : after.Select("cogs_heal_evacuation_paused")) {
        f.heal.evacuation_paused = f.heal.evacuation_paused || s->value > 0;
    }

    // Hosts.
    for (const prom::Sample* s : after.Select("cogs_hosts")) {
        if (auto it = s->labels.find("state"); it != s->labels.end()) {
            f.hosts_by_state[it->second] += s->value;
        }
    }
    return f;
}

std::string FormatSeconds(double s) {
    if (std::isnan(s)) {
        return "-";
    }
    if (std::isinf(s)) {
        return s > 0 ? "+Inf" : "-Inf";
    }
    if (s < 1e-3) {
        return fmt::format("{:.0f}µs", s * 1e6);
    }
    if (s < 10e-3) {
        return fmt::format("{:.1f}ms", s * 1e3);
    }
    if (s < 1) {
        return fmt::format("{:.0f}ms", s * 1e3);
    }
    if (s < 10) {
        return fmt::format("{:.2f}s", s);
    }
    if (s < 60) {
        return fmt::format("{:.1f}s", s);
    }
    return FormatDurationMs(static_cast<int64_t>(s * 1000));
}

std::string FormatRate(double r) { return std::isnan(r) ? "-" : fmt::format("{:.1f}", r); }

std::string RenderFrame(const Figures& f, const std::string& title) {
    std::string out = title + "\n\n";
    const WorkflowFigures& w = f.workflows;
    out += fmt::format("WORKFLOWS  in flight {}  started {}/s  finished {}/s  errors {}  p50 {}  p99 {}\n",
                       Count(f.in_flight), FormatRate(w.started_per_s), FormatRate(w.finished_per_s),
                       Percent(w.error_rate), FormatSeconds(w.p50_s), FormatSeconds(w.p99_s));
    if (!f.workflow_types.empty()) {
        Table t(
            {"TYPE", "STARTED/S", "FINISHED/S", "OK/S", "ROLLED_BACK/S", "FAILED/S", "ERRORS", "P50", "P99"});
        for (const auto& x : f.workflow_types) {
            t.AddRow({x.type, FormatRate(x.started_per_s), FormatRate(x.finished_per_s),
                      FormatRate(x.succeeded_per_s), FormatRate(x.rolled_back_per_s),
                      FormatRate(x.failed_per_s), Percent(x.error_rate), FormatSeconds(x.p50_s),
                      FormatSeconds(x.p99_s)});
        }
        out += t.Render();
    }
    out += "\nSERVICES (the engine's calls)\n";
    if (f.services.empty()) {
        out += "  no calls yet\n";
    } else {
        Table t({"SERVICE", "CALLS/S", "RETRIES/S", "TIMEOUTS/S", "UNDO/S", "STEP_P50", "STEP_P99",
                 "QUEUE_P99", "BULKHEAD"});
        for (const auto& s : f.services) {
            t.AddRow({s.service, FormatRate(s.calls_per_s), FormatRate(s.retries_per_s),
                      FormatRate(s.timeouts_per_s), FormatRate(s.compensations_per_s),
                      FormatSeconds(s.step_p50_s), FormatSeconds(s.step_p99_s),
                      FormatSeconds(s.schedule_to_start_p99_s),
                      fmt::format("{}/{} ({} waiting)", Count(s.bulkhead_in_use), Count(s.bulkhead_limit),
                                  Count(s.bulkhead_waiting))});
        }
        out += t.Render();
    }
    const ApiFigures& a = f.api;
    out += fmt::format("\nAPI  requests {}/s  4xx {}/s  5xx {}/s  429 {}/s  p50 {}  p99 {}\n",
                       FormatRate(a.requests_per_s), FormatRate(a.client_errors_per_s),
                       FormatRate(a.server_errors_per_s), FormatRate(a.throttled_per_s),
                       FormatSeconds(a.p50_s), FormatSeconds(a.p99_s));
    if (!a.routes.empty()) {
        Table t({"ROUTE", "METHOD", "REQ/S", "5XX/S", "P99"});
        for (const auto& r : a.routes) {
            t.AddRow({r.route, r.method, FormatRate(r.requests_per_s), FormatRate(r.errors_per_s),
                      FormatSeconds(r.p99_s)});
        }
        out += t.Render();
    }
    const StoreFigures& s = f.store;
    out +=
        fmt::format("\nSTORE  commits {}/s  commit p50 {}  p99 {}  batch mean {}  p99 {}  fenced {}/s\n",
                    FormatRate(s.commits_per_s), FormatSeconds(s.commit_p50_s), FormatSeconds(s.commit_p99_s),
                    OneDecimal(s.batch_mean), OneDecimal(s.batch_p99), FormatRate(s.fenced_per_s));
    const PlacementFigures& p = f.placement;
    out += fmt::format("PLACEMENT  {}/s  failed {}/s  p99 {}", FormatRate(p.placements_per_s),
                       FormatRate(p.failed_per_s), FormatSeconds(p.p99_s));
    out += RateList(p.failures_per_s) + "\n";
    const HealFigures& h = f.heal;
    out += fmt::format("HEAL  host failures {}  restarts {}/s  move failures {}/s  heal p99 {}",
                       Count(h.host_failures), FormatRate(h.restarts_per_s),
                       FormatRate(h.move_failures_per_s), FormatSeconds(h.heal_p99_s));
    out += RateList(h.moves_per_s) + RateList(h.repairs_per_s);
    if (h.evacuation_paused) {
        out += "  EVACUATION PAUSED (most hosts look down: see cogs events --resource-kind alert)";
    }
    out += "\n";
    out += "HOSTS ";
    if (f.hosts_by_state.empty()) {
        out += " -";
    }
    for (const auto& [state, n] : f.hosts_by_state) {
        out += fmt::format(" {} {}", state, Count(n));
    }
    std::vector<std::string> attention;
    for (const auto& h : f.hosts) {
        if (h.state != "up" || !h.enabled) {
            attention.push_back(h.enabled ? fmt::format("{} {}", h.name, h.state)
                                          : fmt::format("{} {}, disabled", h.name, h.state));
        }
    }
    if (!attention.empty()) {
        out += "  (";
        for (size_t i = 0; i < attention.size(); ++i) {
            out += (i ? "; " : "") + attention[i];
        }
        out += ")";
    }
    if (!f.hosts_note.empty()) {
        out += "  (" + f.hosts_note + ")";
    }
    out += "\n";
    return out;
}

json::value ToJson(const Figures& f) {
    auto workflow = [](const WorkflowFigures& w) {
        json::object o{{"started_per_s", Num(w.started_per_s)},
                       {"finished_per_s", Num(w.finished_per_s)},
                       {"succeeded_per_s", Num(w.succeeded_per_s)},
                       {"rolled_back_per_s", Num(w.rolled_back_per_s)},
                       {"failed_per_s", Num(w.failed_per_s)},
                       {"error_rate", Num(w.error_rate)},
                       {"p50_s", Num(w.p50_s)},
                       {"p99_s", Num(w.p99_s)}};
        if (!w.type.empty()) {
            o["type"] = w.type;
        }
        return o;
    };
    json::object workflows = workflow(f.workflows);
    workflows["in_flight"] = Num(f.in_flight);
    json::array types;
    for (const auto& w : f.workflow_types) {
        types.push_back(workflow(w));
    }
    workflows["by_type"] = std::move(types);

    json::array services;
    for (const auto& s : f.services) {
        services.push_back(json::object{{"service", s.service},
                                        {"calls_per_s", Num(s.calls_per_s)},
                                        {"retries_per_s", Num(s.retries_per_s)},
                                        {"timeouts_per_s", Num(s.timeouts_per_s)},
                                        {"compensations_per_s", Num(s.compensations_per_s)},
                                        {"step_p50_s", Num(s.step_p50_s)},
                                        {"step_p99_s", Num(s.step_p99_s)},
                                        {"schedule_to_start_p99_s", Num(s.schedule_to_start_p99_s)},
                                        {"bulkhead_in_use", Num(s.bulkhead_in_use)},
                                        {"bulkhead_waiting", Num(s.bulkhead_waiting)},
                                        {"bulkhead_limit", Num(s.bulkhead_limit)}});
    }
    json::array routes;
    for (const auto& r : f.api.routes) {
        routes.push_back(json::object{{"route", r.route},
                                      {"method", r.method},
                                      {"requests_per_s", Num(r.requests_per_s)},
                                      {"errors_per_s", Num(r.errors_per_s)},
                                      {"p99_s", Num(r.p99_s)}});
    }
    json::object api{{"requests_per_s", Num(f.api.requests_per_s)},
                     {"client_errors_per_s", Num(f.api.client_errors_per_s)},
                     {"server_errors_per_s", Num(f.api.server_errors_per_s)},
                     {"throttled_per_s", Num(f.api.throttled_per_s)},
                     {"p50_s", Num(f.api.p50_s)},
                     {"p99_s", Num(f.api.p99_s)},
                     {"routes", std::move(routes)}};
    json::object store{
        {"commits_per_s", Num(f.store.commits_per_s)}, {"commit_p50_s", Num(f.store.commit_p50_s)},
        {"commit_p99_s", Num(f.store.commit_p99_s)},   {"batch_mean", Num(f.store.batch_mean)},
        {"batch_p99", Num(f.store.batch_p99)},         {"fenced_per_s", Num(f.store.fenced_per_s)}};
    json::object placement{{"placements_per_s", Num(f.placement.placements_per_s)},
                           {"failed_per_s", Num(f.placement.failed_per_s)},
                           {"p99_s", Num(f.placement.p99_s)},
                           {"failures_per_s", Nums(f.placement.failures_per_s)}};
    json::object heal{{"host_failures", Num(f.heal.host_failures)},
                      {"moves_per_s", Nums(f.heal.moves_per_s)},
                      {"move_failures_per_s", Num(f.heal.move_failures_per_s)},
                      {"repairs_per_s", Nums(f.heal.repairs_per_s)},
                      {"restarts_per_s", Num(f.heal.restarts_per_s)},
                      {"heal_p99_s", Num(f.heal.heal_p99_s)},
                      {"evacuation_paused", f.heal.evacuation_paused}};
    json::array list;
    for (const auto& h : f.hosts) {
        list.push_back(json::object{{"name", h.name}, {"state", h.state}, {"enabled", h.enabled}});
    }
    json::object hosts{{"by_state", Nums(f.hosts_by_state)}, {"list", std::move(list)}};
    if (!f.hosts_note.empty()) {
        hosts["note"] = f.hosts_note;
    }
    return json::object{{"interval_s", Num(f.interval_s)}, {"workflows", std::move(workflows)},
                        {"services", std::move(services)}, {"api", std::move(api)},
                        {"store", std::move(store)},       {"placement", std::move(placement)},
                        {"heal", std::move(heal)},         {"hosts", std::move(hosts)}};
}

}  // namespace cogs::cli::top
