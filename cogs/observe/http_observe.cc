#include "cogs/observe/http_observe.h"

#include <map>
#include <memory>
#include <mutex>
#include <set>

#include <boost/json.hpp>

#include "cogs/base/time.h"
#include "cogs/observe/log.h"

namespace cogs::observe {
namespace {

constexpr size_t kMaxRoutes = 64;

std::string_view MethodLabel(std::string_view m) {
    for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
        if (m == known) {
            return known;
        }
    }
    return "other";
}

struct Instrumented {
    Metrics* metrics;
    CounterFamily requests;
    HistogramFamily duration;
    Gauge in_flight;
    std::mutex mu;  // the handler may run on several threads
    std::set<std::string, std::less<>> routes;
    std::map<std::string, Counter, std::less<>> counters;      // "route method code"
    std::map<std::string, Histogram, std::less<>> histograms;  // "route method"

    std::string Route(std::string_view path) {
        std::string route = RouteOf(path);
        std::lock_guard lock(mu);
        if (routes.count(route) != 0) {
            return route;
        }
        if (routes.size() >= kMaxRoutes) {
            return "other";
        }
        routes.insert(route);
        return route;
    }

    void Done(const std::string& route, std::string_view method, const http::Response& r, double seconds) {
        const std::string code = r.drop ? "dropped" : std::to_string(r.status);
        std::string key = route + ' ' + std::string(method);
        Counter c;
        Histogram h;
        {
            std::lock_guard lock(mu);
            auto hit = histograms.find(key);
            if (hit == histograms.end()) {
                hit = histograms
                          .emplace(key, duration.With({{"route", route}, {"method", std::string(method)}}))
                          .first;
            }
            h = hit->second;
            key += ' ';
            key += code;
            auto cit = counters.find(key);
            if (cit == counters.end()) {
                cit = counters
                          .emplace(key,
                                   requests.With(
                                       {{"route", route}, {"method", std::string(method)}, {"code", code}}))
                          .first;
            }
            c = cit->second;
        }
        c.Inc();
        h.Observe(seconds);
        in_flight.Dec();
    }
};

http::Response Json(int status, const boost::json::value& v) {
    http::Response r;
    r.status = status;
    r.body = boost::json::serialize(v);
    return r;
}

http::Response Invalid(const std::string& message, const std::string& field) {
    boost::json::object details;
    if (!field.empty()) {
        details["field"] = field;
    }
    return Json(
        400, boost::json::object{{"code", "invalid_argument"}, {"message", message}, {"details", details}});
}

boost::json::object LevelsJson() {
    boost::json::object o;
    for (const auto& [k, v] : Levels()) {
        o[k] = v;
    }
    return o;
}

}  // namespace

std::string RouteOf(std::string_view path) {
    std::string out;
    int index = 0;
    while (!path.empty()) {
        const auto slash = path.find('/');
        const std::string_view seg = path.substr(0, slash);
        path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
        if (seg.empty()) {
            continue;
        }
        out += '/';
        if (index >= 2 && index % 2 == 0) {
            out += "{id}";
        } else {
            out += seg;
        }
        ++index;
    }
    return out.empty() ? "/" : out;
}

http::Handler Instrument(http::Handler inner, Metrics* metrics) {
    if (metrics == nullptr) {
        return inner;
    }
    auto st = std::make_shared<Instrumented>();
    st->metrics = metrics;
    st->requests = metrics->Counter("cogs_http_requests_total",
                                    "HTTP requests answered, by route, method and status code.");
    st->duration =
        metrics->Histogram("cogs_http_request_duration_seconds",
                           "HTTP request received to answer handed to the server, by route and method.");
    st->in_flight =
        metrics->Gauge("cogs_http_requests_in_flight", "HTTP requests being handled now.").With({});
    return [st, inner = std::move(inner)](http::Request req, http::Respond respond) {
        const SteadyTime start = SteadyClock::now();
        st->in_flight.Inc();
        const std::string path = req.Path();
        const std::string_view method = MethodLabel(req.method);
        if (path == "/metrics" && req.method == "GET") {
            const std::string route = "/metrics";  // outside the route table: always its own series
            http::Response r;
            r.body = st->metrics->Render();
            r.content_type = kMetricsContentType;
            st->Done(route, method, r, std::chrono::duration<double>(SteadyClock::now() - start).count());
            respond(std::move(r));
            return;
        }
        const std::string route = st->Route(path);
        inner(std::move(req), [st, route, method, start, respond = std::move(respond)](http::Response r) {
            st->Done(route, method, r, std::chrono::duration<double>(SteadyClock::now() - start).count());
            respond(std::move(r));
        });
    };
}

http::Response HandleLogLevels(const http::Request& request) {
    if (request.method == "GET") {
        return Json(200, LevelsJson());
    }
    if (request.method != "PUT") {
        http::Response r = Json(405, boost::json::object{{"code", "invalid_argument"},
                                                         {"message", "use GET or PUT on /v1/log-levels"},
                                                         {"details", boost::json::object{}}});
        r.headers.emplace_back("Allow", "GET, PUT");
        return r;
    }
    boost::system::error_code ec;
    const boost::json::value body = boost::json::parse(request.body, ec);
    if (ec || !body.is_object()) {
        return Invalid("the body must be a JSON object of component: level", "");
    }
    // Check every entry before changing any, so a bad entry changes nothing.
    for (const auto& [k, v] : body.as_object()) {
        if (!v.is_string()) {
            return Invalid("the level of '" + std::string(k) + "' must be a string", std::string(k));
        }
        if (k.empty()) {
            return Invalid("a component name must not be empty", "");
        }
        if (auto ok = CheckLevel(v.as_string()); !ok) {
            return Invalid(ok.error().message, std::string(k));
        }
    }
    for (const auto& [k, v] : body.as_object()) {
        (void)SetLevel(std::string(k), std::string(v.as_string()));
    }
    return Json(200, LevelsJson());
}

}  // namespace cogs::observe
