#include "cogs/api/api.h"

#include <spdlog/logger.h>

#include <string>
#include <string_view>
#include <vector>

#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"

namespace cogs::api {
namespace {

http::Response ToResponse(cloud::ApiAnswer a) {
    http::Response r;
    r.status = a.status;
    r.body = std::move(a.body);
    r.headers = std::move(a.headers);
    return r;
}

// The error shape of docs/api.md, for the few errors answered before the cloud sees a request.
http::Response Error(int status, std::string_view code, std::string_view message) {
    http::Response r;
    r.status = status;
    r.body = "{\"code\":\"" + std::string(code) + "\",\"message\":\"" + std::string(message) + "\",\"details\":{}}";
    return r;
}

std::vector<std::string> Segments(std::string_view path) {
    std::vector<std::string> out;
    while (!path.empty()) {
        auto slash = path.find('/');
        std::string_view seg = path.substr(0, slash);
        if (!seg.empty()) {
            out.push_back(http::UrlDecode(seg));
        }
        path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    }
    return out;
}

// The resource id a path names, for the log context: /v1/<collection>/<id>[/...].
std::string ResourceIdOf(const std::vector<std::string>& path) {
    return path.size() >= 2 && path[0] != "workflows" && path[0] != "projects" ? path[1] : "";
}

}  // namespace

struct Api::State {
    State(cloud::Cloud& c, ApiOptions o) : cloud(c), options(o) {
        auto rejected =
            observe::CounterOf(options.metrics, "cogs_api_rejected_total",
                               "Requests refused before routing, by reason: overload, unauthenticated.");
        rejected_overload = rejected.With({{"reason", "overload"}});
        rejected_unauthenticated = rejected.With({{"reason", "unauthenticated"}});
    }
    cloud::Cloud& cloud;
    ApiOptions options;
    ApiStats stats;
    observe::Counter rejected_overload;
    observe::Counter rejected_unauthenticated;
};

namespace {

// Answers with the request's traceparent, and logs the outcome (changes at info, reads at debug).
http::Respond Traced(http::Respond respond, std::string traceparent, std::string method, std::string path,
                     std::string resource_id) {
    return [respond = std::move(respond), traceparent = std::move(traceparent), method = std::move(method),
            path = std::move(path), resource_id = std::move(resource_id)](http::Response r) {
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        auto& log = observe::Log("api");
        // Reads and heartbeats (several a second per host) at debug: info is for changes.
        const bool quiet = method == "GET" || method == "HEAD" || path.ends_with("/heartbeat");
        const auto level = r.status >= 500 ? spdlog::level::warn
                           : quiet         ? spdlog::level::debug
                                           : spdlog::level::info;
        log.log(level, "{} {} -> {}", method, path, r.status);
        r.headers.emplace_back("traceparent", traceparent);
        respond(std::move(r));
    };
}

}  // namespace

Api::Api(cloud::Cloud& cloud, ApiOptions options) : state_(std::make_shared<State>(cloud, options)) {}

ApiStats Api::stats() const { return state_->stats; }

http::Handler Api::Handler() {
    return [state = state_](http::Request req, http::Respond respond) {
        ++state->stats.requests;
        const std::string path = req.Path();
        // The API's span: a child of the caller's, or the root of a new trace.
        const auto parent = observe::ParseTraceparent(req.Header("traceparent"));
        const std::string traceparent =
            (parent ? parent->Child() : observe::TraceContext::New()).ToTraceparent();
        std::vector<std::string> segments = path.starts_with("/v1/")
                                                ? Segments(std::string_view(path).substr(3))
                                                : std::vector<std::string>{};
        const std::string resource_id = ResourceIdOf(segments);
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        respond = Traced(std::move(respond), traceparent, req.method, path, resource_id);
        if (path == "/healthz") {
            http::Response r;
            r.body = R"({"status":"ok"})";
            return respond(std::move(r));
        }
        if (!path.starts_with("/v1/") && path != "/v1") {
            return respond(Error(404, "not_found", "no route " + req.method + " " + path));
        }
        if (state->stats.inflight >= state->options.max_inflight) {
            ++state->stats.rejected_overload;
            state->rejected_overload.Inc();
            http::Response r = Error(429, "resource_exhausted", "too many requests in flight: retry later");
            r.headers.emplace_back("retry-after", "1");
            return respond(std::move(r));
        }
        std::string auth = req.Header("authorization");
        std::string_view token = auth;
        if (token.starts_with("Bearer ")) {
            token.remove_prefix(7);
        } else {
            token = {};
        }
        auto who = state->cloud.Authenticate(token);
        if (!who) {
            ++state->stats.unauthenticated;
            state->rejected_unauthenticated.Inc();
            http::Response r = Error(401, "unauthenticated", who.error().message);
            r.headers.emplace_back("www-authenticate", "Bearer");
            return respond(std::move(r));
        }
        if (path == "/v1/log-levels") {
            // Operators only: a level change affects every tenant's requests.
            if (!who->admin()) {
                return respond(
                    Error(403, "permission_denied", "only an admin may read or change log levels"));
            }
            http::Response r = observe::HandleLogLevels(req);
            if (req.method == "PUT" && r.status == 200) {
                observe::Log("api").info("log levels changed: {}", req.body);
            }
            return respond(std::move(r));
        }
        cloud::ApiRequest call;
        call.method = req.method;
        call.path = std::move(segments);
        for (auto& [k, v] : req.QueryParams()) {
            call.query[k] = v;
        }
        call.body = std::move(req.body);
        call.idempotency_key = req.Header("idempotency-key");
        call.traceparent = traceparent;
        ++state->stats.inflight;
        state->cloud.Handle(*who, std::move(call), [state, respond = std::move(respond)](cloud::ApiAnswer a) {
            --state->stats.inflight;
            respond(ToResponse(std::move(a)));
        });
    };
}

}  // namespace cogs::api
