// `cogs top`'s arithmetic on hand-written exposition text: the parser (escapes, labels, values,
// errors), reset-aware increases, histogram_quantile against known distributions, and the figures of
// a frame from two scrapes of a cogsd-like /metrics.
#include "cogs/cli/internal/top.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/prom_text.h"

namespace cogs::cli::top {
namespace {

using ::testing::HasSubstr;

prom::Exposition Parse(const std::string& text) {
    auto x = prom::ParseText(text);
    EXPECT_TRUE(x) << x.error();
    return x ? *x : prom::Exposition{};
}

// The text of one histogram series: cumulative `counts` for `bounds` (+Inf added with `total`).
std::string HistogramText(const std::string& name, const std::string& labels,
                          const std::vector<double>& bounds, const std::vector<double>& counts, double total,
                          double sum) {
    std::string out;
    const std::string sep = labels.empty() ? "" : labels + ",";
    for (size_t i = 0; i < bounds.size(); ++i) {
        out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, sep, bounds[i], counts[i]);
    }
    out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, sep, total);
    out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum, name, labels, total);
    return out;
}

// ---- the parser ---------------------------------------------------------------------------------

TEST(PromTextTest, ParsesSamplesLabelsEscapesAndSpecialValues) {
    const auto x = Parse(
        "# HELP cogs_http_requests_total Requests answered.\n"
        "# TYPE cogs_http_requests_total counter\n"
        "cogs_http_requests_total{route=\"/v1/servers/{id}\",method=\"GET\",code=\"200\"} 42\n"
        "# a free comment\n"
        "\n"
        "odd{path=\"C:\\\\dir\\\\x\", msg=\"say \\\"hi\\\"\\nbye\" , empty=\"\",} 1.5e3 1700000000000\n"
        "up 1\r\n"
        "gauge_inf +Inf\n"
        "gauge_ninf -Inf\n"
        "gauge_nan NaN\n"
        "  spaced   { a = \"b\" }   -0.25  \n");
    ASSERT_EQ(x.samples.size(), 7u);
    EXPECT_EQ(x.types.at("cogs_http_requests_total"), "counter");
    const auto& r = x.samples[0];
    EXPECT_EQ(r.name, "cogs_http_requests_total");
    EXPECT_EQ(r.labels, (prom::Labels{{"route", "/v1/servers/{id}"}, {"method", "GET"}, {"code", "200"}}));
    EXPECT_EQ(r.value, 42);
    const auto& odd = x.samples[1];
    EXPECT_EQ(odd.labels.at("path"), "C:\\dir\\x");
    EXPECT_EQ(odd.labels.at("msg"), "say \"hi\"\nbye");
    EXPECT_EQ(odd.labels.at("empty"), "");
    EXPECT_EQ(odd.value, 1500);  // the timestamp is dropped
    EXPECT_EQ(x.samples[2].name, "up");
    EXPECT_TRUE(x.samples[2].labels.empty());
    EXPECT_TRUE(std::isinf(x.samples[3].value) && x.samples[3].value > 0);
    EXPECT_TRUE(std::isinf(x.samples[4].value) && x.samples[4].value < 0);
    EXPECT_TRUE(std::isnan(x.samples[5].value));
    EXPECT_EQ(x.samples[6].labels.at("a"), "b");
    EXPECT_EQ(x.samples[6].value, -0.25);

    EXPECT_EQ(x.Sum("cogs_http_requests_total", {{"method", "GET"}}), 42);
    EXPECT_EQ(x.Sum("cogs_http_requests_total", {{"method", "PUT"}}), 0);
    EXPECT_TRUE(x.Has("up"));
    EXPECT_FALSE(x.Has("down"));
}

TEST(PromTextTest, RefusesMalformedLinesNamingTheLine) {
    EXPECT_THAT(prom::ParseText("ok 1\nbad{a=\"x} 1\n").error(),
                HasSubstr("line 2: unterminated value of label 'a'"));
    EXPECT_THAT(prom::ParseText("x{a=\"\\t\"} 1").error(), HasSubstr("bad escape '\\t'"));
    EXPECT_THAT(prom::ParseText("x{a=b} 1").error(), HasSubstr("a quoted value expected for label 'a'"));
    EXPECT_THAT(prom::ParseText("x{a=\"1\",a=\"2\"} 1").error(), HasSubstr("label 'a' given twice"));
    EXPECT_THAT(prom::ParseText("x{a=\"1\" b=\"2\"} 1").error(), HasSubstr("',' or '}' expected"));
    EXPECT_THAT(prom::ParseText("x one").error(), HasSubstr("'one' is not a sample value"));
    EXPECT_THAT(prom::ParseText("x inf").error(), HasSubstr("'inf' is not a sample value"));
    EXPECT_THAT(prom::ParseText("x 1 2 3").error(), HasSubstr("unexpected"));
    EXPECT_THAT(prom::ParseText("# TYPE x countr\n").error(), HasSubstr("line 1: a TYPE line"));
    EXPECT_THAT(prom::ParseText("{a=\"b\"} 1").error(), HasSubstr("a metric name expected"));
}

// ---- increases and quantiles ----------------------------------------------------------------------

TEST(TopMathTest, CounterIncreaseSurvivesAResetAndCountsNewSeriesFromZero) {
    EXPECT_EQ(Increase(10, 15), 5);
    EXPECT_EQ(Increase(100, 7), 7);  // the process restarted: it counted 7 since
    const auto before = Parse(
        "c{type=\"a\",outcome=\"ok\"} 100\n"
        "c{type=\"a\",outcome=\"bad\"} 5\n"
        "c{type=\"b\",outcome=\"ok\"} 1\n");
    const auto after = Parse(
        "c{type=\"a\",outcome=\"ok\"} 3\n"    // reset: +3
        "c{type=\"a\",outcome=\"bad\"} 9\n"   // +4
        "c{type=\"b\",outcome=\"ok\"} 11\n"   // +10
        "c{type=\"c\",outcome=\"ok\"} 2\n");  // new: +2
    const auto by_type = CounterIncrease(before, after, "c", {"type"});
    EXPECT_EQ(by_type.at({{"type", "a"}}), 7);
    EXPECT_EQ(by_type.at({{"type", "b"}}), 10);
    EXPECT_EQ(by_type.at({{"type", "c"}}), 2);
    const auto all = CounterIncrease(before, after, "c", {});
    EXPECT_EQ(all.at({}), 19);
    const auto ok = CounterIncrease(before, after, "c", {}, {{"outcome", "ok"}});
    EXPECT_EQ(ok.at({}), 15);
}

TEST(TopMathTest, HistogramIncreaseOfAResetSeriesIsItsLaterBuckets) {
    const std::vector<double> bounds{0.1, 1};
    const auto before = Parse(HistogramText("h", "s=\"x\"", bounds, {50, 80}, 100, 40) +
                              HistogramText("h", "s=\"y\"", bounds, {5, 5}, 5, 0.1));
    const auto after = Parse(HistogramText("h", "s=\"x\"", bounds, {2, 3}, 4, 1) +   // reset
                             HistogramText("h", "s=\"y\"", bounds, {6, 9}, 10, 3));  // +1, +4, +5
    const auto inc = BucketIncrease(before, after, "h", {"s"});
    EXPECT_EQ(inc.at({{"s", "x"}}), (Buckets{{0.1, 2}, {1, 3}, {INFINITY, 4}}));
    EXPECT_EQ(inc.at({{"s", "y"}}), (Buckets{{0.1, 1}, {1, 4}, {INFINITY, 5}}));
    const auto all = BucketIncrease(before, after, "h", {});
    EXPECT_EQ(all.at({}), (Buckets{{0.1, 3}, {1, 7}, {INFINITY, 9}}));
}

TEST(TopMathTest, HistogramQuantileInterpolatesLikePromql) {
    // 1000 observations spread evenly over (0, 1]: ten buckets of 100.
    Buckets uniform;
    for (int i = 1; i <= 10; ++i) {
        uniform[i / 10.0] = 100.0 * i;
    }
    uniform[INFINITY] = 1000;
    EXPECT_NEAR(HistogramQuantile(0.5, uniform), 0.5, 1e-12);
    EXPECT_NEAR(HistogramQuantile(0.99, uniform), 0.99, 1e-12);
    EXPECT_NEAR(HistogramQuantile(0.05, uniform), 0.05, 1e-12);  // the first bucket starts at 0

    // Ranks in the +Inf bucket answer the highest finite bound.
    EXPECT_EQ(HistogramQuantile(0.99, Buckets{{0.1, 10}, {1, 50}, {INFINITY, 100}}), 1);
    // No observations, no +Inf bucket, a single bucket: nothing to say.
    EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, Buckets{{0.1, 0}, {INFINITY, 0}})));
    EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, Buckets{{0.1, 3}, {1, 5}})));
    EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, Buckets{{INFINITY, 5}})));
    EXPECT_TRUE(std::isinf(HistogramQuantile(1.5, uniform)));
    // A scrape that raced an observation (a lower count above a higher one) is made monotonic.
    EXPECT_NEAR(HistogramQuantile(0.5, Buckets{{1, 50}, {2, 40}, {4, 100}, {INFINITY, 100}}), 1, 1e-12);
}

TEST(TopMathTest, HistogramQuantileOfAKnownDistributionFallsInTheTrueQuantilesBucket) {
    // 100,000 exponentially distributed latencies (mean 20 ms) in cogs' latency buckets.
    const std::vector<double> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> latency(1 / 0.020);
    std::vector<double> samples(100'000);
    for (double& s : samples) {
        s = latency(rng);
    }
    Buckets b;
    for (double le : bounds) {
        b[le] = static_cast<double>(
            std::count_if(samples.begin(), samples.end(), [&](double s) { return s <= le; }));
    }
    b[INFINITY] = static_cast<double>(samples.size());
    std::sort(samples.begin(), samples.end());
    for (double q : {0.5, 0.9, 0.99}) {
        const double truth = samples[static_cast<size_t>(q * static_cast<double>(samples.size())) - 1];
        const auto upper = std::lower_bound(bounds.begin(), bounds.end(), truth);
        ASSERT_NE(upper, bounds.end());
        const double lower = upper == bounds.begin() ? 0 : *(upper - 1);
        const double estimate = HistogramQuantile(q, b);
        EXPECT_GE(estimate, lower) << "q=" << q << " truth=" << truth;
        EXPECT_LE(estimate, *upper) << "q=" << q << " truth=" << truth;
    }
    // The exponential median is 20 ms · ln 2 ≈ 13.9 ms; interpolation within 10–25 ms lands near it.
    EXPECT_NEAR(HistogramQuantile(0.5, b), 0.0139, 0.003);
}

// ---- the figures of a frame -------------------------------------------------------------------------

// Two scrapes of a cogsd 10 s apart.
std::string Cogsd(bool later) {
    const std::vector<double> b{0.01, 0.1, 1, 10};
    std::string t;
    t += "# TYPE cogs_workflows_in_flight gauge\n";
    t += fmt::format("cogs_workflows_in_flight {}\n", later ? 7 : 3);
    t += "# TYPE cogs_workflows_started_total counter\n";
    t += fmt::format("cogs_workflows_started_total{{type=\"server.create\"}} {}\n", later ? 150 : 100);
    t += fmt::format("cogs_workflows_started_total{{type=\"volume.create\"}} {}\n", later ? 30 : 20);
    t += "# TYPE cogs_workflows_finished_total counter\n";
    t += fmt::format("cogs_workflows_finished_total{{type=\"server.create\",outcome=\"succeeded\"}} {}\n",
                     later ? 130 : 90);
    t += fmt::format("cogs_workflows_finished_total{{type=\"server.create\",outcome=\"rolled_back\"}} {}\n",
                     later ? 12 : 4);
    t += fmt::format("cogs_workflows_finished_total{{type=\"volume.create\",outcome=\"succeeded\"}} {}\n",
                     later ? 30 : 20);
    t += "# TYPE cogs_workflow_duration_seconds histogram\n";
    // server.create: 40 + 8 finished in the interval, all between 0.1 s and 1 s.
    t += HistogramText("cogs_workflow_duration_seconds", "type=\"server.create\",outcome=\"succeeded\"", b,
                       later ? std::vector<double>{0, 0, 130, 130} : std::vector<double>{0, 0, 90, 90},
                       later ? 130 : 90, later ? 60 : 40);
    t += HistogramText("cogs_workflow_duration_seconds", "type=\"server.create\",outcome=\"rolled_back\"", b,
                       later ? std::vector<double>{0, 0, 12, 12} : std::vector<double>{0, 0, 4, 4},
                       later ? 12 : 4, later ? 6 : 2);
    // volume.create: 10 in the interval, all under 10 ms.
    t += HistogramText("cogs_workflow_duration_seconds", "type=\"volume.create\",outcome=\"succeeded\"", b,
                       later ? std::vector<double>{30, 30, 30, 30} : std::vector<double>{20, 20, 20, 20},
                       later ? 30 : 20, 0.1);
    t += "# TYPE cogs_service_calls_total counter\n";
    t += fmt::format("cogs_service_calls_total{{service=\"compute\",action=\"boot\",outcome=\"ok\"}} {}\n",
                     later ? 400 : 300);
    t += fmt::format(
        "cogs_service_calls_total{{service=\"compute\",action=\"boot\",outcome=\"retryable\"}} {}\n",
        later ? 20 : 10);
    t += fmt::format("cogs_step_retries_total{{service=\"compute\",action=\"boot\"}} {}\n", later ? 20 : 10);
    t += fmt::format("cogs_step_timeouts_total{{service=\"compute\",action=\"boot\"}} {}\n", later ? 3 : 3);
    t += fmt::format("cogs_compensations_total{{service=\"network\",action=\"delete_port\"}} {}\n",
                     later ? 8 : 0);
    t += HistogramText("cogs_step_duration_seconds",
                       "service=\"compute\",action=\"boot\",outcome=\"succeeded\"", b,
                       later ? std::vector<double>{0, 50, 150, 150} : std::vector<double>{0, 50, 50, 50},
                       later ? 150 : 50, 1);
    t += "cogs_bulkhead_in_use{service=\"compute\"} 5\ncogs_bulkhead_limit{service=\"compute\"} 16\n";
    t += "cogs_bulkhead_waiting{service=\"compute\"} 2\ncogs_bulkhead_limit{service=\"network\"} 16\n";
    t += "# TYPE cogs_http_requests_total counter\n";
    t += fmt::format("cogs_http_requests_total{{route=\"/v1/servers\",method=\"POST\",code=\"202\"}} {}\n",
                     later ? 150 : 100);
    t += fmt::format("cogs_http_requests_total{{route=\"/v1/servers\",method=\"POST\",code=\"429\"}} {}\n",
                     later ? 10 : 0);
    t += fmt::format(
        "cogs_http_requests_total{{route=\"/v1/servers/{{id}}\",method=\"GET\",code=\"200\"}} {}\n",
        later ? 1000 : 500);
    t += fmt::format(
        "cogs_http_requests_total{{route=\"/v1/servers/{{id}}\",method=\"GET\",code=\"500\"}} {}\n",
        later ? 5 : 0);
    t += fmt::format("cogs_http_requests_total{{route=\"/metrics\",method=\"GET\",code=\"200\"}} {}\n",
                     later ? 2 : 1);
    t += HistogramText(
        "cogs_http_request_duration_seconds", "route=\"/v1/servers\",method=\"POST\"", b,
        later ? std::vector<double>{160, 160, 160, 160} : std::vector<double>{100, 100, 100, 100},
        later ? 160 : 100, 1);
    t += HistogramText(
        "cogs_http_request_duration_seconds", "route=\"/v1/servers/{id}\",method=\"GET\"", b,
        later ? std::vector<double>{1005, 1005, 1005, 1005} : std::vector<double>{500, 500, 500, 500},
        later ? 1005 : 500, 1);
    t += HistogramText("cogs_http_request_duration_seconds", "route=\"/metrics\",method=\"GET\"", b,
                       later ? std::vector<double>{0, 0, 0, 2} : std::vector<double>{0, 0, 0, 1},
                       later ? 2 : 1, 1);
    t += fmt::format("cogs_store_commits_total {}\n", later ? 250 : 50);
    t += HistogramText("cogs_store_commit_groups", "", {1, 2, 4, 8},
                       later ? std::vector<double>{10, 110, 250, 250} : std::vector<double>{10, 10, 50, 50},
                       later ? 250 : 50, later ? 700 : 100);
    t += HistogramText("cogs_store_commit_duration_seconds", "", b,
                       later ? std::vector<double>{250, 250, 250, 250} : std::vector<double>{50, 50, 50, 50},
                       later ? 250 : 50, 1);
    t += fmt::format("cogs_placements_total{{outcome=\"placed\"}} {}\n", later ? 140 : 100);
    t += fmt::format("cogs_placements_total{{outcome=\"failed\"}} {}\n", later ? 5 : 0);
    t += fmt::format("cogs_placement_failures_total{{reason=\"ram\"}} {}\n", later ? 5 : 0);
    t += "cogs_placement_failures_total{reason=\"az\"} 2\n";
    t += "cogs_hosts{state=\"up\"} 2\ncogs_hosts{state=\"down\"} 1\ncogs_hosts{state=\"disabled\"} 0\n";
    // A host failed in the interval: 20 evacuations, 1 failed, all healed in 4-8 s.
    t += fmt::format("cogs_heal_host_failures_total {}\n", later ? 3 : 2);
    t += fmt::format("cogs_heal_moves_started_total{{type=\"server.evacuate\"}} {}\n", later ? 30 : 10);
    t += fmt::format("cogs_heal_move_failures_total{{type=\"server.evacuate\"}} {}\n", later ? 1 : 0);
    t += fmt::format("cogs_heal_repairs_total{{kind=\"delete_instance\"}} {}\n", later ? 7 : 2);
    t += "cogs_heal_repairs_total{kind=\"repair_port\"} 1\n";
    t += fmt::format("cogs_heal_instance_restarts_total {}\n", later ? 4 : 0);
    t += HistogramText("cogs_heal_duration_seconds", "", {1, 4, 8, 16},
                       later ? std::vector<double>{0, 0, 19, 19} : std::vector<double>{0, 0, 0, 0},
                       later ? 19 : 0, later ? 100 : 0);
    t += fmt::format("cogs_heal_evacuation_paused {}\n", later ? 1 : 0);
    return t;
}

TEST(TopFiguresTest, TwoScrapesGiveRatesErrorRatesAndQuantiles) {
    const Figures f = Compute(Parse(Cogsd(false)), Parse(Cogsd(true)), 10);
    EXPECT_EQ(f.in_flight, 7);
    EXPECT_DOUBLE_EQ(f.workflows.started_per_s, 6);      // (50 + 10) / 10 s
    EXPECT_DOUBLE_EQ(f.workflows.finished_per_s, 5.8);   // (40 + 8 + 10) / 10 s
    EXPECT_DOUBLE_EQ(f.workflows.error_rate, 8.0 / 58);  // rolled back / finished
    ASSERT_EQ(f.workflow_types.size(), 2u);
    const WorkflowFigures& server = f.workflow_types[0];  // the busiest first
    EXPECT_EQ(server.type, "server.create");
    EXPECT_DOUBLE_EQ(server.started_per_s, 5);
    EXPECT_DOUBLE_EQ(server.rolled_back_per_s, 0.8);
    EXPECT_DOUBLE_EQ(server.error_rate, 8.0 / 48);
    EXPECT_NEAR(server.p50_s, 0.1 + 0.9 * 0.5, 1e-9);  // 48 observations in (0.1, 1]
    EXPECT_NEAR(server.p99_s, 0.1 + 0.9 * 0.99, 1e-9);
    const WorkflowFigures& volume = f.workflow_types[1];
    EXPECT_EQ(volume.error_rate, 0);
    EXPECT_NEAR(volume.p99_s, 0.0099, 1e-9);  // 10 observations in (0, 0.01]

    ASSERT_EQ(f.services.size(), 2u);
    const ServiceFigures& compute = f.services[0];
    EXPECT_EQ(compute.service, "compute");
    EXPECT_DOUBLE_EQ(compute.calls_per_s, 11);
    EXPECT_DOUBLE_EQ(compute.retries_per_s, 1);
    EXPECT_DOUBLE_EQ(compute.timeouts_per_s, 0);
    EXPECT_NEAR(compute.step_p99_s, 0.1 + 0.9 * 0.99, 1e-9);  // the 100 new steps took 0.1–1 s
    EXPECT_EQ(compute.bulkhead_in_use, 5);
    EXPECT_EQ(compute.bulkhead_waiting, 2);
    EXPECT_EQ(compute.bulkhead_limit, 16);
    EXPECT_TRUE(std::isnan(compute.schedule_to_start_p99_s));
    EXPECT_EQ(f.services[1].service, "network");
    EXPECT_DOUBLE_EQ(f.services[1].compensations_per_s, 0.8);

    // The API without top's own scrapes of /metrics.
    EXPECT_DOUBLE_EQ(f.api.requests_per_s, 56.5);  // (50 + 10 + 500 + 5) / 10 s
    EXPECT_DOUBLE_EQ(f.api.client_errors_per_s, 1);
    EXPECT_DOUBLE_EQ(f.api.throttled_per_s, 1);
    EXPECT_DOUBLE_EQ(f.api.server_errors_per_s, 0.5);
    EXPECT_NEAR(f.api.p99_s, 0.0099, 1e-9);
    ASSERT_EQ(f.api.routes.size(), 2u);
    EXPECT_EQ(f.api.routes[0].route, "/v1/servers/{id}");
    EXPECT_EQ(f.api.routes[0].method, "GET");
    EXPECT_DOUBLE_EQ(f.api.routes[0].errors_per_s, 0.5);

    EXPECT_DOUBLE_EQ(f.store.commits_per_s, 20);
    EXPECT_DOUBLE_EQ(f.store.batch_mean, 3);     // 600 groups in 200 commits
    EXPECT_NEAR(f.store.batch_p99, 3.96, 1e-9);  // 100 commits of 2, 100 of 3–4
    EXPECT_DOUBLE_EQ(f.placement.placements_per_s, 4.5);
    EXPECT_DOUBLE_EQ(f.placement.failed_per_s, 0.5);
    EXPECT_EQ(f.placement.failures_per_s, (std::map<std::string, double>{{"ram", 0.5}}));
    EXPECT_EQ(f.hosts_by_state, (std::map<std::string, double>{{"disabled", 0}, {"down", 1}, {"up", 2}}));
    EXPECT_EQ(f.heal.host_failures, 1);
    EXPECT_EQ(f.heal.moves_per_s, (std::map<std::string, double>{{"server.evacuate", 2}}));
    EXPECT_DOUBLE_EQ(f.heal.move_failures_per_s, 0.1);
    EXPECT_EQ(f.heal.repairs_per_s, (std::map<std::string, double>{{"delete_instance", 0.5}}));
    EXPECT_DOUBLE_EQ(f.heal.restarts_per_s, 0.4);
    EXPECT_NEAR(f.heal.heal_p99_s, 4 + 4 * 0.99, 1e-9);  // 19 heals in (4, 8]
    EXPECT_TRUE(f.heal.evacuation_paused);

    Figures shown = f;
    shown.hosts = {{"host-1", "up", true}, {"host-2", "down", true}, {"host-3", "up", false}};
    const std::string frame = RenderFrame(shown, "cogs top");
    EXPECT_THAT(frame, HasSubstr("WORKFLOWS  in flight 7  started 6.0/s  finished 5.8/s  errors 13.8%"));
    EXPECT_THAT(frame,
                HasSubstr("server.create  5.0        4.8         4.0   0.8            0.0       16.7%"));
    EXPECT_THAT(frame, HasSubstr("API  requests 56.5/s  4xx 1.0/s  5xx 0.5/s  429 1.0/s"));
    EXPECT_THAT(frame, HasSubstr("5/16 (2 waiting)"));
    EXPECT_THAT(frame, HasSubstr("STORE  commits 20.0/s"));
    EXPECT_THAT(frame, HasSubstr("batch mean 3.0  p99 4.0"));
    EXPECT_THAT(frame, HasSubstr("PLACEMENT  4.5/s  failed 0.5/s"));
    EXPECT_THAT(frame, HasSubstr("ram 0.5/s"));
    EXPECT_THAT(frame, HasSubstr("HOSTS  disabled 0 down 1 up 2  (host-2 down; host-3 up, disabled)"));
    EXPECT_THAT(frame, HasSubstr("HEAL  host failures 1  restarts 0.4/s  move failures 0.1/s"));
    EXPECT_THAT(frame, HasSubstr("server.evacuate 2.0/s  delete_instance 0.5/s  EVACUATION PAUSED"));

    const json::value j = ToJson(shown);
    EXPECT_EQ(j.at("workflows").at("in_flight").as_double(), 7);
    EXPECT_EQ(j.at("workflows").at("by_type").at(0).at("type").as_string(), "server.create");
    EXPECT_TRUE(j.at("services").at(0).at("schedule_to_start_p99_s").is_null());  // NaN is null
    EXPECT_EQ(j.at("api").at("throttled_per_s").as_double(), 1);
    EXPECT_EQ(j.at("hosts").at("by_state").at("down").as_double(), 1);
    EXPECT_EQ(j.at("hosts").at("list").at(1).at("name").as_string(), "host-2");
    EXPECT_EQ(j.at("heal").at("moves_per_s").at("server.evacuate").as_double(), 2);
    EXPECT_TRUE(j.at("heal").at("evacuation_paused").as_bool());
}

TEST(TopFiguresTest, AnIdleOrRestartedCogsdGivesNoNonsense) {
    // Nothing happened: rates are 0, quantiles and the error rate are unknown.
    const Figures idle = Compute(Parse(Cogsd(false)), Parse(Cogsd(false)), 2);
    EXPECT_EQ(idle.workflows.started_per_s, 0);
    EXPECT_TRUE(std::isnan(idle.workflows.error_rate));
    EXPECT_TRUE(std::isnan(idle.workflows.p99_s));
    EXPECT_THAT(RenderFrame(idle, "t"), HasSubstr("errors -  p50 -  p99 -"));
    // cogsd restarted between the scrapes: its counters began again; increases are the new values.
    const Figures restarted = Compute(Parse(Cogsd(true)), Parse(Cogsd(false)), 10);
    EXPECT_DOUBLE_EQ(restarted.workflows.started_per_s, 12);  // (100 + 20) / 10 s
    EXPECT_DOUBLE_EQ(restarted.store.commits_per_s, 5);
    EXPECT_GE(restarted.workflows.p99_s, 0);
}

TEST(TopFormatTest, SecondsAndRates) {
    EXPECT_EQ(FormatSeconds(0.00085), "850µs");
    EXPECT_EQ(FormatSeconds(0.0025), "2.5ms");
    EXPECT_EQ(FormatSeconds(0.120), "120ms");
    EXPECT_EQ(FormatSeconds(1.25), "1.25s");
    EXPECT_EQ(FormatSeconds(125), "2m05s");
    EXPECT_EQ(FormatSeconds(NAN), "-");
    EXPECT_EQ(FormatRate(12.345), "12.3");
    EXPECT_EQ(FormatRate(NAN), "-");
}

}  // namespace
}  // namespace cogs::cli::top
