#include "cogs/cloud/api/http_api.h"

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"

namespace cogs::cloud {
namespace {

// The resource id a path names, for the log context: /v1/<collection>/<id>[/...].
std::string ResourceIdOf(const std::vector<std::string>& path) {
    return path.size() >= 3 && path[1] != "workflows" && path[1] != "projects" ? path[2] : "";
}

// Answers with the request's traceparent, and logs the outcome (changes at info, reads at debug).
http::Respond Traced(http::Respond respond, std::string traceparent, std::string method, std::string path,
                     std::string resource_id) {
    return [respond = std::move(respond), traceparent = std::move(traceparent), method = std::move(method),
            path = std::move(path), resource_id = std::move(resource_id)](http::Response r) {
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        auto& log = observe::Log("api");
        // Reads and heartbeats (several a second per host) at debug: info is for changes.
        const bool quiet = method == "GET" || method == "HEAD" || path.ends_with("/heartbeat");
        // 507 (a full disk) is said once by the store, not per refused change.
        const auto level = r.status >= 500 && r.status != 507 ? spdlog::level::warn
                           : quiet                            ? spdlog::level::debug
                                                              : spdlog::level::info;
        log.log(level, "{} {} -> {}", method, path, r.status);
        r.headers.emplace_back("traceparent", traceparent);
        respond(std::move(r));
    };
}

}  // namespace

std::string_view BearerToken(std::string_view authorization) {
    // RFC 9110 §11.1: credentials = auth-scheme 1*SP token68; the scheme is case-insensitive.
    constexpr std::string_view kScheme = "bearer";
    const size_t space = authorization.find(' ');
    if (space != kScheme.size()) return {};
    for (size_t i = 0; i < space; ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return {};
    }
    std::string_view token = authorization.substr(space);
    token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
    return token;
}

struct HttpApi::State {
    State(boost::asio::io_context& i, const Router& r, Authenticator a, size_t max, observe::Metrics* m,
          HttpApi::Refusal w)
        : io(i), router(r), authenticate(std::move(a)), max_inflight(max), refusal(std::move(w)) {
        auto rejected =
            observe::CounterOf(m, "cogs_api_rejected_total",
                               "Requests refused before routing, by reason: overload, unauthenticated.");
        rejected_overload = rejected.With({{"reason", "overload"}});
        rejected_unauthenticated = rejected.With({{"reason", "unauthenticated"}});
    }
    boost::asio::io_context& io;
    const Router& router;
    Authenticator authenticate;
    size_t max_inflight;
    HttpApi::Refusal refusal;
    size_t inflight = 0;  // requests being served
    observe::Counter rejected_overload;
    observe::Counter rejected_unauthenticated;
};

HttpApi::HttpApi(boost::asio::io_context& io, const Router& router, Authenticator authenticate,
                 size_t max_inflight, observe::Metrics* metrics, Refusal writable)
    : state_(std::make_shared<State>(io, router, std::move(authenticate), max_inflight, metrics,
                                     std::move(writable))) {}

http::Handler HttpApi::Handler() {
    return [state = state_](http::Request req, http::Respond respond) {
        const std::string path = req.Path();
        // The API's span: a child of the caller's, or the root of a new trace.
        const auto parent = observe::ParseTraceparent(req.Header("traceparent"));
        const std::string traceparent =
            (parent ? parent->Child() : observe::TraceContext::New()).ToTraceparent();
        const std::string resource_id = ResourceIdOf(PathSegments(path));
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        respond = Traced(std::move(respond), traceparent, req.method, path, resource_id);
        const std::optional<Error> refusal = state->refusal ? state->refusal() : std::nullopt;
        if (path == "/healthz") {
            http::Response r;
            r.body = !refusal ? R"({"status":"ok"})"
                     : refusal->code == ErrorCode::kNoSpace
                         ? R"({"status":"degraded","store":"read-only: disk full"})"
                         : R"({"status":"degraded","store":"read-only: database unreachable"})";
            return respond(std::move(r));
        }
        if (!path.starts_with("/v1/") && path != "/v1") {
            return respond(
                wire::ApiError(Error(ErrorCode::kNotFound, "no route " + req.method + " " + path)));
        }
        if (state->inflight >= state->max_inflight) {
            state->rejected_overload.Inc();
            return respond(wire::ApiError(
                Error(ErrorCode::kResourceExhausted, "too many requests in flight: retry later")));
        }
        const std::string auth = req.Header("authorization");
        auto who = state->authenticate(BearerToken(auth));
        if (!who) {
            state->rejected_unauthenticated.Inc();
            http::Response r = wire::ApiError(Error(ErrorCode::kUnauthenticated, who.error().message));
            r.headers.emplace_back("www-authenticate", "Bearer");
            return respond(std::move(r));
        }
        if (path == "/v1/log-levels") {
            // Operators only: a level change affects every tenant's requests.
            if (!who->admin()) {
                return respond(wire::ApiError(
                    Error(ErrorCode::kPermissionDenied, "only an admin may read or change log levels")));
            }
            http::Response r = observe::HandleLogLevels(req);
            if (req.method == "PUT" && r.status == 200) {
                observe::Log("api").info("log levels changed: {}", req.body);
            }
            return respond(std::move(r));
        }
        // A full disk: refuse a change before it touches anything (docs/api.md "A full disk").
        // Heartbeats renew leases in memory: they go on (their reports wait for the agent's resend).
        if (refusal && req.method != "GET" && req.method != "HEAD" && !path.ends_with("/heartbeat")) {
            return respond(wire::ApiError(*refusal));
        }
        Call call;
        call.who = std::move(*who);
        // A replica's certificate vouches for the one its forwarded client showed; nobody else's does.
        call.peer_name = req.peer_name == "cogsd" ? req.Header("x-cogs-peer-name") : req.peer_name;
        call.method = req.method;
        call.path = path;
        for (auto& [k, v] : req.QueryParams()) {
            call.query[k] = v;
        }
        call.body = std::move(req.body);
        call.body_file = std::move(req.body_file);
        call.idempotency_key = req.Header("idempotency-key");
        call.traceparent = traceparent;
        ++state->inflight;
        // Never inline: the handler may be mid-parse when the route answers at once.
        call.respond = [state, respond = std::move(respond)](http::Response r) mutable {
            boost::asio::post(state->io, [state, respond = std::move(respond), r = std::move(r)]() mutable {
                --state->inflight;
                respond(std::move(r));
            });
        };
        state->router.Dispatch(std::move(call));
    };
}

}  // namespace cogs::cloud
