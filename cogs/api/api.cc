#include "cogs/api/api.h"

#include <string>
#include <string_view>

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

}  // namespace

struct Api::State {
    cloud::Cloud& cloud;
    ApiOptions options;
    ApiStats stats;
};

Api::Api(cloud::Cloud& cloud, ApiOptions options) : state_(std::make_shared<State>(State{cloud, options, {}})) {}

ApiStats Api::stats() const { return state_->stats; }

http::Handler Api::Handler() {
    return [state = state_](http::Request req, http::Respond respond) {
        ++state->stats.requests;
        const std::string path = req.Path();
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
            http::Response r = Error(401, "unauthenticated", who.error().message);
            r.headers.emplace_back("www-authenticate", "Bearer");
            return respond(std::move(r));
        }
        cloud::ApiRequest call;
        call.method = req.method;
        call.path = Segments(std::string_view(path).substr(3));
        for (auto& [k, v] : req.QueryParams()) {
            call.query[k] = v;
        }
        call.body = std::move(req.body);
        call.idempotency_key = req.Header("idempotency-key");
        call.traceparent = req.Header("traceparent");
        ++state->stats.inflight;
        state->cloud.Handle(*who, std::move(call), [state, respond = std::move(respond)](cloud::ApiAnswer a) {
            --state->stats.inflight;
            respond(ToResponse(std::move(a)));
        });
    };
}

}  // namespace cogs::api
