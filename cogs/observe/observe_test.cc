#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/observe/trace.h"

namespace cogs::observe {
namespace {

// The value of one series in Prometheus text, or -1 if absent. `series` is the name with its labels
// exactly as rendered, e.g. `cogs_x_total{a="b"}`.
double Value(const std::string& text, const std::string& series) {
    size_t pos = 0;
    while ((pos = text.find(series + " ", pos)) != std::string::npos) {
        if (pos == 0 || text[pos - 1] == '\n') {
            return std::stod(text.substr(pos + series.size() + 1));
        }
        pos += series.size();
    }
    return -1;
}

TEST(MetricsTest, RendersCountersGaugesHistograms) {
    Metrics m;
    auto requests = m.Counter("cogs_test_requests_total", "Requests.");
    requests.With({{"route", "/a"}}).Inc();
    requests.With({{"route", "/a"}}).Inc(2);
    m.Counter("cogs_test_requests_total", "Requests.").With({{"route", "/b"}}).Inc();  // same family
    m.Gauge("cogs_test_in_flight", "In flight.").With({}).Set(7);
    auto h = m.Histogram("cogs_test_duration_seconds", "Durations.").With({{"service", "net"}});
    h.Observe(0.003);
    h.Observe(0.2);
    h.Observe(100);  // beyond the last bucket: only +Inf
    const std::string text = m.Render();
    EXPECT_EQ(Value(text, R"(cogs_test_requests_total{route="/a"})"), 3);
    EXPECT_EQ(Value(text, R"(cogs_test_requests_total{route="/b"})"), 1);
    EXPECT_EQ(Value(text, "cogs_test_in_flight"), 7);
    EXPECT_EQ(Value(text, R"(cogs_test_duration_seconds_bucket{service="net",le="0.005"})"), 1);
    EXPECT_EQ(Value(text, R"(cogs_test_duration_seconds_bucket{service="net",le="0.25"})"), 2);
    EXPECT_EQ(Value(text, R"(cogs_test_duration_seconds_bucket{service="net",le="60"})"), 2);
    EXPECT_EQ(Value(text, R"(cogs_test_duration_seconds_bucket{service="net",le="+Inf"})"), 3);
    EXPECT_EQ(Value(text, R"(cogs_test_duration_seconds_count{service="net"})"), 3);
    EXPECT_NE(text.find("# TYPE cogs_test_requests_total counter"), std::string::npos);
    EXPECT_NE(text.find("# TYPE cogs_test_duration_seconds histogram"), std::string::npos);
    EXPECT_GT(Value(text, "process_resident_memory_bytes"), 1 << 20);
    EXPECT_GT(Value(text, "process_start_time_seconds"), 1.7e9);
    EXPECT_GE(Value(text, "process_cpu_seconds_total"), 0);
    EXPECT_GE(Value(text, "process_open_fds"), 3);
}

TEST(MetricsTest, TheAllocatorsCountIsExportedWhereItCanBeRead) {
    Metrics m;
    const std::optional<AllocatorStats> before = Allocator();
    if (!before) {  // a sanitized build: its allocator is the sanitizer's, which says nothing here
        EXPECT_EQ(m.Render().find("cogs_allocator_"), std::string::npos);
        return;
    }
    EXPECT_GT(before->allocated_bytes, 0);
    EXPECT_GE(before->mapped_bytes, before->allocated_bytes);
    // 16 MiB held: the count follows, and the scrape shows it.
    std::vector<std::unique_ptr<char[]>> held;
    for (int i = 0; i < 256; ++i) {
        held.push_back(std::make_unique<char[]>(64 * 1024));
        held.back()[0] = 1;
    }
    const std::string text = m.Render();
    EXPECT_GE(Value(text, "cogs_allocator_allocated_bytes"), before->allocated_bytes + (16 << 20));
    EXPECT_GE(Value(text, "cogs_allocator_mapped_bytes"), Value(text, "cogs_allocator_allocated_bytes"));
    held.clear();
    EXPECT_LT(Allocator()->allocated_bytes, before->allocated_bytes + (16 << 20));
}

TEST(MetricsTest, SamplersRunAtRender) {
    Metrics m;
    auto g = m.Gauge("cogs_test_queue", "Queue.").With({});
    int calls = 0;
    m.OnCollect([&] { g.Set(++calls * 10); });
    EXPECT_EQ(Value(m.Render(), "cogs_test_queue"), 10);
    EXPECT_EQ(Value(m.Render(), "cogs_test_queue"), 20);
}

TEST(MetricsTest, NullRegistryGivesNoOpHandles) {
    CounterOf(nullptr, "x_total", "x").With({{"a", "b"}}).Inc();
    GaugeOf(nullptr, "y", "y").With({}).Set(3);
    HistogramOf(nullptr, "z_seconds", "z").With({}).Observe(1);
    Counter c;
    c.Inc();  // a default handle too
    SUCCEED();
}

TEST(TraceTest, ParsesValidTraceparent) {
    auto t = ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->trace_id, "0af7651916cd43dd8448eb211c80319c");
    EXPECT_EQ(t->span_id, "b7ad6b7169203331");
    EXPECT_EQ(t->flags, 1);
    EXPECT_EQ(t->ToTraceparent(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    // A later version may carry more fields; its first four are read.
    EXPECT_TRUE(ParseTraceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-extra"));
}

TEST(TraceTest, RefusesMalformedTraceparent) {
    for (const char* bad : {"", "00", "garbage",
                            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  // v00 is exact
                            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",        // version ff
                            "00-00000000000000000000000000000000-b7ad6b7169203331-01",        // zero trace
                            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",        // zero span
                            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",        // upper case
                            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01"}) {
        EXPECT_FALSE(ParseTraceparent(bad)) << bad;
    }
    EXPECT_EQ(TraceIdOf("nope"), "");
}

TEST(TraceTest, NewAndChildSpans) {
    const TraceContext a = TraceContext::New();
    const TraceContext b = TraceContext::New();
    EXPECT_NE(a.trace_id, b.trace_id);
    const TraceContext child = a.Child();
    EXPECT_EQ(child.trace_id, a.trace_id);
    EXPECT_NE(child.span_id, a.span_id);
    auto parsed = ParseTraceparent(child.ToTraceparent());
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->span_id, child.span_id);
    EXPECT_EQ(TraceIdOf(child.ToTraceparent()), a.trace_id);
}

boost::json::object LastJsonLine(const std::string& out) {
    auto end = out.find_last_not_of('\n');
    auto start = out.rfind('\n', end);
    start = start == std::string::npos ? 0 : start + 1;
    return boost::json::parse(out.substr(start, end - start + 1)).as_object();
}

TEST(LogTest, JsonLinesCarryTheScopesIds) {
    ASSERT_TRUE(SetupLogging({.process = "cogs-test", .format = LogFormat::kJson, .level = "info"}));
    testing::internal::CaptureStderr();
    {
        LogScope outer(
            {.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", .workflow_id = "wf-1", .resource_id = ""});
        LogScope inner({.trace_id = "", .workflow_id = "", .resource_id = "srv-9"});
        Log("engine").info("step {} done, \"quoted\"\n", "boot");
    }
    Log("engine").info("outside");
    Log("engine").debug("not shown at info");
    const std::string out = testing::internal::GetCapturedStderr();
    std::istringstream lines(out);
    std::string first;
    std::getline(lines, first);
    auto o = boost::json::parse(first).as_object();
    EXPECT_EQ(o.at("level").as_string(), "info");
    EXPECT_EQ(o.at("process").as_string(), "cogs-test");
    EXPECT_EQ(o.at("component").as_string(), "engine");
    EXPECT_EQ(o.at("msg").as_string(), "step boot done, \"quoted\"\n");
    EXPECT_EQ(o.at("trace_id").as_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(o.at("workflow_id").as_string(), "wf-1");
    EXPECT_EQ(o.at("resource_id").as_string(), "srv-9");
    EXPECT_EQ(std::string(o.at("ts").as_string()).back(), 'Z');
    auto last = LastJsonLine(out);
    EXPECT_EQ(last.at("msg").as_string(), "outside");
    EXPECT_FALSE(last.contains("trace_id"));  // the scopes ended
    EXPECT_EQ(out.find("not shown"), std::string::npos);
}

TEST(LogTest, LevelsPerComponentAtRunTime) {
    ASSERT_TRUE(SetupLogging({.process = "cogs-test", .format = LogFormat::kText, .level = "info"}));
    ASSERT_TRUE(SetLevel("store", "debug"));
    testing::internal::CaptureStderr();
    Log("store").debug("store detail");
    Log("engine").debug("engine detail");
    {
        LogScope s({.trace_id = "abc", .workflow_id = "", .resource_id = ""});
        Log("engine").warn("a warning");
    }
    const std::string out = testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find("debug store: store detail"), std::string::npos) << out;
    EXPECT_EQ(out.find("engine detail"), std::string::npos);
    EXPECT_NE(out.find("warn engine: a warning trace=abc"), std::string::npos) << out;
    EXPECT_EQ(Levels().at("store"), "debug");
    EXPECT_EQ(Levels().at("*"), "info");
    EXPECT_FALSE(SetLevel("store", "loud"));
    EXPECT_EQ(Levels().at("store"), "debug");
    ASSERT_TRUE(SetLevel("*", "warn"));
    EXPECT_EQ(Levels().at("store"), "warn");
    EXPECT_EQ(Levels().at("*"), "warn");
    EXPECT_FALSE(ParseLogFormat("xml"));
}

http::Response Call(const http::Handler& h, const std::string& method, const std::string& target,
                    const std::string& body = "") {
    http::Response out;
    bool answered = false;
    h(http::Request{method, target, {}, body}, [&](http::Response r) {
        out = std::move(r);
        answered = true;
    });
    EXPECT_TRUE(answered);
    return out;
}

TEST(InstrumentTest, RoutesOfPaths) {
    EXPECT_EQ(RouteOf("/v1/servers"), "/v1/servers");
    EXPECT_EQ(RouteOf("/v1/servers/6f1c2a/actions"), "/v1/servers/{id}/actions");
    EXPECT_EQ(RouteOf("/v1/projects/p1/quotas/x"), "/v1/projects/{id}/quotas/{id}");
    EXPECT_EQ(RouteOf("/healthz"), "/healthz");
    EXPECT_EQ(RouteOf("//v1//hosts/h1/"), "/v1/hosts/{id}");
    EXPECT_EQ(RouteOf(""), "/");
}

TEST(InstrumentTest, CountsRequestsAndServesMetrics) {
    Metrics m;
    http::Handler inner = [](http::Request req, http::Respond respond) {
        http::Response r;
        r.status = req.Path() == "/v1/servers/missing" ? 404 : 200;
        r.drop = req.Path() == "/v1/drop";
        respond(std::move(r));
    };
    auto h = Instrument(inner, &m);
    Call(h, "GET", "/v1/servers/a1");
    Call(h, "GET", "/v1/servers/b2?x=1");
    Call(h, "GET", "/v1/servers/missing");
    Call(h, "BREW", "/v1/drop");
    for (int i = 0; i < 100; ++i) {  // a scan of random paths
        Call(h, "GET", "/scan" + std::to_string(i));
    }
    auto metrics = Call(h, "GET", "/metrics");
    EXPECT_EQ(metrics.status, 200);
    EXPECT_EQ(metrics.content_type, kMetricsContentType);
    const std::string& text = metrics.body;
    EXPECT_EQ(Value(text, R"(cogs_http_requests_total{code="200",method="GET",route="/v1/servers/{id}"})"),
              2);
    EXPECT_EQ(Value(text, R"(cogs_http_requests_total{code="404",method="GET",route="/v1/servers/{id}"})"),
              1);
    EXPECT_EQ(Value(text, R"(cogs_http_requests_total{code="dropped",method="other",route="/v1/drop"})"), 1);
    EXPECT_EQ(
        Value(text, R"(cogs_http_request_duration_seconds_count{method="GET",route="/v1/servers/{id}"})"), 3);
    // 64 routes at most: the scan ends up in "other" once the table is full.
    EXPECT_GT(Value(text, R"(cogs_http_requests_total{code="200",method="GET",route="other"})"), 30);
    EXPECT_EQ(Value(text, "cogs_http_requests_in_flight"), 1);  // the /metrics request itself
}

TEST(InstrumentTest, LogLevelsEndpoint) {
    ASSERT_TRUE(SetupLogging({.process = "cogs-test", .format = LogFormat::kJson, .level = "info"}));
    auto get = HandleLogLevels(http::Request{"GET", "/v1/log-levels", {}, ""});
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(boost::json::parse(get.body).at("*").as_string(), "info");
    auto put =
        HandleLogLevels(http::Request{"PUT", "/v1/log-levels", {}, R"({"engine":"debug","api":"warn"})"});
    EXPECT_EQ(put.status, 200);
    EXPECT_EQ(boost::json::parse(put.body).at("engine").as_string(), "debug");
    EXPECT_EQ(Levels().at("api"), "warn");
    // One bad entry changes nothing and names itself.
    auto bad =
        HandleLogLevels(http::Request{"PUT", "/v1/log-levels", {}, R"({"engine":"info","store":"loud"})"});
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(boost::json::parse(bad.body).at("details").at("field").as_string(), "store");
    EXPECT_EQ(Levels().at("engine"), "debug");
    EXPECT_EQ(HandleLogLevels(http::Request{"PUT", "/v1/log-levels", {}, "[1]"}).status, 400);
    EXPECT_EQ(HandleLogLevels(http::Request{"DELETE", "/v1/log-levels", {}, ""}).status, 405);
}

}  // namespace
}  // namespace cogs::observe
