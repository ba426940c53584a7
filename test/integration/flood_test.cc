// Priority and fairness under a flood (issue 15), with real processes (`cogs dev`, three hosts):
// a reader token sends cheap reads (GET /v1/servers) as fast as it can from 32 connections for 60 s
// (COGS_FLOOD_SECONDS to change it) while the agents heartbeat with a 1 s lease (their renewals
// every third of it). What an operator would check, with bounds wide enough for a loaded 2-core
// machine, never a rate or a time that depends on its speed:
//   - no host went suspect or down: every host "up" each time it was looked at, no suspect/down
//     event, no agent fenced itself (cogs_compute_fences_total), no heartbeat answered but 200;
//   - the flood was refused: 429s with Retry-After, counted in cogs_api_rejected_total;
//   - another project's requests, a few a second meanwhile, all succeeded, their p99 under 2 s.
// It prints the figures (bench/README.md quotes them).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cogs/http/client.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr int kFloodConnections = 32;
constexpr int kHosts = 3;

std::string S(const json::value& v, std::string_view key) {
    if (!v.is_object()) return "";
    const json::value* f = v.as_object().if_contains(key);
    return f != nullptr && f->is_string() ? std::string(f->as_string()) : "";
}

const json::value& At(const json::value& v, std::string_view key) {
    static const json::value kNull;
    if (!v.is_object()) return kNull;
    const json::value* f = v.as_object().if_contains(key);
    return f != nullptr ? *f : kNull;
}

// The sum of every series of `name` on a Prometheus text page whose labels contain each of `labels`
// (`key="value"` strings).
double Series(const std::string& text, const std::string& name, const std::vector<std::string>& labels = {}) {
    double sum = 0;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        const std::string_view line(text.data() + at, end - at);
        at = end + 1;
        if (!line.starts_with(name) || line.size() <= name.size() ||
            (line[name.size()] != '{' && line[name.size()] != ' ')) {
            continue;
        }
        bool all = true;
        for (const auto& l : labels)
            all = all && line.find(l) != std::string_view::npos;
        if (all) sum += std::stod(std::string(line.substr(line.rfind(' ') + 1)));
    }
    return sum;
}

double Percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The suspect and down events of `hosts`, oldest first.
std::vector<std::string> HostFailures(ApiClient& admin, const std::vector<std::string>& hosts) {
    std::vector<std::string> out;
    for (const auto& h : hosts) {
        ApiReply ev = admin.Must("GET", "/v1/hosts/" + h + "/events");
        EXPECT_EQ(ev.status, 200) << ev.text;
        if (!At(ev.body, "events").is_array()) continue;
        for (const auto& e : At(ev.body, "events").as_array()) {
            if (S(e, "type") == "suspect" || S(e, "type") == "down") {
                out.push_back(h + ": " + json::serialize(e));  // (with its time and sequence: unique)
            }
        }
    }
    return out;
}

int FloodSeconds() {
    const char* env = std::getenv("COGS_FLOOD_SECONDS");
    return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 60;
}

TEST(FloodTest, AReaderFloodNeitherFencesAHostNorStarvesAnotherProject) {
    const int seconds = FloodSeconds();
    // The tenant lane is made smaller than the flood's connections, and a project's share half of it:
    // with one cap for everything (as before the lanes) the flood alone would fill it, and the
    // heartbeats would be refused with it. The token rates are cogsd's defaults.
    std::vector<std::string> args = {"--cogsd-arg=--lease-ttl-ms=1000", "--cogsd-arg=--fence-window-ms=500",
                                     "--cogsd-arg=--max-inflight-requests=16",
                                     "--cogsd-arg=--max-inflight-per-project=8"};
    // More cogsd flags, space-separated (a comparison by hand: "--rate-per-token=0" floods unlimited).
    if (const char* more = std::getenv("COGS_FLOOD_COGSD_ARGS")) {
        std::istringstream words(more);
        for (std::string w; words >> w;)
            args.push_back("--cogsd-arg=" + w);
    }
    auto started = DevCloud::Start(DevOptions{kHosts, 20, args});
    ASSERT_TRUE(started) << started.error().ToString();
    std::unique_ptr<DevCloud> dev = std::move(*started);
    ApiClient admin = dev->Admin();
    auto project = [&](const std::string& name, const std::string& role) {
        ApiReply p = admin.Must("POST", "/v1/projects", R"({"name":")" + name + R"("})");
        EXPECT_EQ(p.status, 201) << p.text;
        ApiReply t = admin.Must(
            "POST", "/v1/tokens",
            R"({"project_id":")" + S(At(p.body, "project"), "id") + R"(","role":")" + role + R"("})");
        EXPECT_EQ(t.status, 201) << t.text;
        return S(At(t.body, "token"), "secret");
    };
    const std::string flooder = project("flood", "reader");
    const std::string calm = project("calm", "member");
    ASSERT_FALSE(flooder.empty());
    ASSERT_FALSE(calm.empty());
    // Every host up (registered, leased) before the flood.
    const std::vector<std::string> hosts = {"host-1", "host-2", "host-3"};
    for (const auto& h : hosts) {
        bool up = false;
        for (int i = 0; i < 300 && !up; ++i) {
            up = S(At(admin.Must("GET", "/v1/hosts/" + h).body, "host"), "state") == "up";
            if (!up) std::this_thread::sleep_for(100ms);
        }
        ASSERT_TRUE(up) << h << " never came up";
    }
    ApiClient anonymous(dev->api_url(), "");
    auto fences = [&] {
        double n = 0;
        for (int i = 1; i <= kHosts; ++i) {
            ApiClient agent(dev->ServiceUrl("compute-" + std::to_string(i)), "");
            n += Series(agent.Must("GET", "/metrics").text, "cogs_compute_fences_total");
        }
        return n;
    };
    // (A host that was late while the cloud started is not the flood's doing.)
    const std::vector<std::string> failures_before = HostFailures(admin, hosts);
    const std::string metrics_before = anonymous.Must("GET", "/metrics").text;
    const double fences_before = fences();
    // A host's renewals: one request per host, or a batch (the agents' default, one host each here).
    const std::vector<std::string> beat_routes = {R"(route="/v1/hosts/{id}/heartbeat")",
                                                  R"(route="/v1/heartbeats")"};

    // The flood: one thread driving 32 keep-alive connections, each sending its next request as soon
    // as the last is answered (as a load generator on another machine would; 32 threads of blocking
    // clients would take the two cores from cogsd by their number alone).
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> flood_ok{0}, flood_429{0}, flood_other{0}, flood_failed{0}, flood_no_retry_after{0};
    boost::asio::io_context flood_io;
    int flood_loops = kFloodConnections;  // on the flood's thread
    const auto endpoint = http::ParseHttpUrl(dev->api_url());
    ASSERT_TRUE(endpoint) << dev->api_url();
    http::ClientOptions flood_options{endpoint->host, endpoint->port, kFloodConnections};
    if (endpoint->tls) {  // cogs dev's TLS: a tenant trusts the dev CA and shows no certificate
        auto tls = http::MakeClientTls({.ca_file = dev->ca_file()});
        ASSERT_TRUE(tls) << tls.error().ToString();
        flood_options.tls = *tls;
    }
    auto flood_client = http::MakeClient(flood_io, flood_options);
    std::function<void()> send = [&] {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/servers";
        req.headers.emplace_back("authorization", "Bearer " + flooder);
        flood_client->Send(std::move(req), SteadyClock::now() + 10s, [&](Result<http::Response> r) {
            if (!r) {
                ++flood_failed;  // (then the next at once too: a load generator does not back off)
            } else if (r->status == 200) {
                ++flood_ok;
            } else if (r->status == 429) {
                ++flood_429;
                if (r->Header("retry-after").empty()) ++flood_no_retry_after;
            } else {
                ++flood_other;
            }
            if (!stop) {
                send();
            } else if (--flood_loops == 0) {
                flood_io.stop();  // its idle connections would keep run() going
            }
        });
    };
    for (int i = 0; i < kFloodConnections; ++i)
        send();
    std::thread flood([&] { flood_io.run(); });
    // The other project: a request every 50 ms, each timed.
    std::vector<double> calm_ms;
    std::map<int, int> calm_status;
    std::thread calm_thread([&] {
        ApiClient c(dev->api_url(), calm);
        while (!stop) {
            const auto t0 = SteadyClock::now();
            auto r = c.Call("GET", "/v1/servers", "", {}, 10s);
            calm_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
            ++calm_status[r ? r->status : 0];
            std::this_thread::sleep_for(50ms);
        }
    });
    // The hosts, as an operator watches them (admin, twice a second).
    std::vector<std::string> not_up;
    const auto until = SteadyClock::now() + std::chrono::seconds(seconds);
    int looks = 0;
    while (SteadyClock::now() < until) {
        ApiReply list = admin.Must("GET", "/v1/hosts");
        if (list.status == 200) {
            ++looks;
            for (const auto& h : At(list.body, "hosts").as_array()) {
                if (S(h, "state") != "up") not_up.push_back(S(h, "name") + " " + S(h, "state"));
            }
        } else {
            not_up.push_back("GET /v1/hosts answered " + std::to_string(list.status) + ": " + list.text);
        }
        std::this_thread::sleep_for(500ms);
    }
    stop = true;
    flood.join();  // every loop ends with its request in flight
    calm_thread.join();

    const std::string metrics_after = anonymous.Must("GET", "/metrics").text;
    const double fences_after = fences();
    std::vector<std::string> host_events;
    for (auto& e : HostFailures(admin, hosts)) {
        if (std::find(failures_before.begin(), failures_before.end(), e) == failures_before.end()) {
            host_events.push_back(std::move(e));
        }
    }
    auto delta = [&](const std::string& name, const std::vector<std::string>& labels) {
        return Series(metrics_after, name, labels) - Series(metrics_before, name, labels);
    };
    auto beats_with = [&](const std::string& name, const std::string& label) {
        double n = 0;
        for (const auto& route : beat_routes) {
            std::vector<std::string> labels = {route, R"(method="POST")"};
            if (!label.empty()) labels.push_back(label);
            n += delta(name, labels);
        }
        return n;
    };
    const double beats = beats_with("cogs_http_requests_total", "");
    const double beats_ok = beats_with("cogs_http_requests_total", R"(code="200")");
    const double beats_under_100ms = beats_with("cogs_http_request_duration_seconds_bucket", R"(le="0.1")");
    const double renewals = delta("cogs_host_renewals_total", {});
    const double rate_limited = delta("cogs_api_rejected_total", {R"(reason="rate_limited")"});
    const double project_overload = delta("cogs_api_rejected_total", {R"(reason="project_overload")"});
    const double rejected = delta("cogs_api_rejected_total", {});
    const double p50 = Percentile(calm_ms, 0.50), p99 = Percentile(calm_ms, 0.99);
    const double max = calm_ms.empty() ? 0 : *std::max_element(calm_ms.begin(), calm_ms.end());
    const uint64_t sent = flood_ok + flood_429 + flood_other + flood_failed;

    std::printf(
        "flood: %d s, %d connections: %llu requests (%.0f/s), %llu 200, %llu 429 (%.0f%%), %llu other, %llu "
        "failed; cogs_api_rejected_total +%.0f (rate_limited +%.0f, project_overload +%.0f)\n",
        seconds, kFloodConnections, static_cast<unsigned long long>(sent),
        static_cast<double>(sent) / seconds, static_cast<unsigned long long>(flood_ok.load()),
        static_cast<unsigned long long>(flood_429.load()),
        sent == 0 ? 0.0 : 100.0 * static_cast<double>(flood_429) / static_cast<double>(sent),
        static_cast<unsigned long long>(flood_other.load()),
        static_cast<unsigned long long>(flood_failed.load()), rejected, rate_limited, project_overload);
    std::printf("other project: %zu requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", calm_ms.size(), p50,
                p99, max);
    std::printf(
        "heartbeats: %.0f answered (%.0f with 200, %.0f within 100 ms in cogsd), %.0f leases renewed; hosts "
        "looked at %d times; fences %.0f; suspect/down events %zu\n",
        beats, beats_ok, beats_under_100ms, renewals, looks, fences_after - fences_before,
        host_events.size());
    std::printf(
        "{\"flood_s\":%d,\"flood_requests\":%llu,\"flood_429\":%llu,\"calm_requests\":%zu,\"calm_p50_ms\":%."
        "1f,"
        "\"calm_p99_ms\":%.1f,\"calm_max_ms\":%.1f,\"heartbeats\":%.0f,\"heartbeats_ok\":%.0f,"
        "\"heartbeats_under_100ms\":%.0f,\"fences\":%.0f,\"suspect_or_down\":%zu}\n",
        seconds, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(flood_429.load()),
        calm_ms.size(), p50, p99, max, beats, beats_ok, beats_under_100ms, fences_after - fences_before,
        host_events.size());

    // No host went suspect, down or fenced; every heartbeat was answered 200.
    EXPECT_TRUE(not_up.empty()) << not_up.size() << " looks saw a host not up, the first: " << not_up.front();
    EXPECT_TRUE(host_events.empty()) << host_events.front();
    EXPECT_EQ(fences_after, fences_before) << "an agent fenced its host";
    EXPECT_GT(looks, 0);
    // At least one renewal per host per second went through (the agents send three).
    EXPECT_GE(renewals, kHosts * seconds) << "leases renewed";
    EXPECT_GE(beats_ok, kHosts * seconds) << "heartbeats answered 200 (one host each)";
    EXPECT_EQ(beats_ok, beats) << "a heartbeat answered other than 200";
    // The flood was refused, with Retry-After, and counted.
    EXPECT_GT(flood_429.load(), 0u);
    EXPECT_EQ(flood_no_retry_after.load(), 0u);
    EXPECT_GT(flood_ok.load(), 0u) << "its share still served";
    EXPECT_GE(rejected, static_cast<double>(flood_429.load()));
    EXPECT_GT(rate_limited, 0) << "the token's rate";
    // The other project: every request answered 200, within a bound.
    EXPECT_EQ(calm_status.size(), 1u);
    EXPECT_EQ(calm_status[200], static_cast<int>(calm_ms.size()));
    EXPECT_GT(calm_ms.size(), static_cast<size_t>(seconds)) << "at least one a second";
    EXPECT_LT(p99, 2000.0) << "p99 of the other project's requests (ms)";
}

}  // namespace
}  // namespace cogs::testing
