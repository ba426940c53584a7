#include "cogs/services/sim/sim_http.h"

#include <boost/json.hpp>
#include <charconv>

#include "cogs/http/client.h"

namespace cogs::services::sim {
namespace {

namespace json = boost::json;
using workflow::ActionCall;
using workflow::ActionReply;
using workflow::ServiceClient;

constexpr std::string_view kActionsPrefix = "/v1/actions/";
constexpr auto kDefaultBudget = std::chrono::seconds(30);  // when a caller sends no X-Cogs-Deadline-Ms

// ---- server side ----

http::Response JsonResponse(int status, std::string body) {
    http::Response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

http::Response ErrorResponse(const Error& e) {
    json::object o;
    o["code"] = ToString(e.code);
    o["message"] = e.message;
    o["retryable"] = e.retryable;
    return JsonResponse(HttpStatus(e.code), json::serialize(o));
}

http::Response ErrorResponse(ErrorCode code, std::string message) {
    return ErrorResponse(Error(code, std::move(message)));
}

http::Response MethodNotAllowed(const std::string& method, const std::string& allowed) {
    http::Response r =
        ErrorResponse(ErrorCode::kInvalidArgument, "method " + method + " not allowed: use " + allowed);
    r.status = 405;
    r.headers.emplace_back("allow", allowed);
    return r;
}

// 200 {"output": ...}, 202 {"accepted": true}, or the error.
http::Response ReplyResponse(const Result<ActionReply>& reply) {
    if (!reply) {
        return ErrorResponse(reply.error());
    }
    if (reply->accepted) {
        return JsonResponse(202, R"({"accepted":true})");
    }
    // The output is JSON text made by the service: embed it as it is.
    return JsonResponse(200,
                        "{\"output\":" + (reply->output.empty() ? std::string("null") : reply->output) + "}");
}

// Parses the remaining budget in milliseconds; nullopt if malformed.
std::optional<SteadyTime> DeadlineFrom(const std::string& header, SteadyTime now) {
    if (header.empty()) {
        return now + kDefaultBudget;
    }
    int64_t ms = 0;
    auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), ms);
    if (ec != std::errc() || end != header.data() + header.size() || ms < 0) {
        return std::nullopt;
    }
    return now + std::chrono::milliseconds(ms);
}

void Respond(const http::Respond& respond, const Result<ActionReply>& reply) {
    respond(ReplyResponse(reply));
}

void HandleAction(SimService& service, http::Request req, http::Respond respond) {
    std::string action = req.Path().substr(kActionsPrefix.size());
    if (action.empty() || action.find('/') != std::string::npos) {
        respond(ErrorResponse(ErrorCode::kNotFound, "no route " + req.method + " " + req.Path()));
        return;
    }
    if (req.method != "POST") {
        respond(MethodNotAllowed(req.method, "POST"));
        return;
    }
    std::string key = req.Header("idempotency-key");
    if (key.empty()) {
        respond(ErrorResponse(ErrorCode::kInvalidArgument, "missing header Idempotency-Key"));
        return;
    }
    auto deadline = DeadlineFrom(req.Header("x-cogs-deadline-ms"), SteadyClock::now());
    if (!deadline) {
        respond(ErrorResponse(ErrorCode::kInvalidArgument,
                              "header X-Cogs-Deadline-Ms must be a non-negative integer (milliseconds)"));
        return;
    }
    if (req.body.empty()) {
        req.body = "{}";
    }
    boost::system::error_code ec;
    json::parse(req.body, ec);
    if (ec) {
        respond(ErrorResponse(ErrorCode::kInvalidArgument, "body: not JSON: " + ec.message()));
        return;
    }
    service.Handle(std::move(action), std::move(key), std::move(req.body), *deadline,
                   [respond = std::move(respond)](Result<ActionReply> reply) { Respond(respond, reply); });
}

void HandleStatus(SimService& service, const http::Request& req, http::Respond respond) {
    if (req.method != "GET") {
        respond(MethodNotAllowed(req.method, "GET"));
        return;
    }
    std::string key = req.Query("key");
    if (key.empty()) {
        respond(ErrorResponse(ErrorCode::kInvalidArgument, "missing query parameter key"));
        return;
    }
    service.Status(std::move(key),
                   [respond = std::move(respond)](Result<ActionReply> reply) { Respond(respond, reply); });
}

void Route(SimService& service, http::Request req, http::Respond respond) {
    const std::string path = req.Path();
    if (path == "/v1/actions/status") {
        HandleStatus(service, req, std::move(respond));
    } else if (path.starts_with(kActionsPrefix)) {
        HandleAction(service, std::move(req), std::move(respond));
    } else if (path == "/v1/faults" && req.method == "PUT") {
        auto faults = ParseFaultConfig(req.body);
        if (!faults) {
            respond(ErrorResponse(faults.error()));
            return;
        }
        service.SetFaults(std::move(*faults));
        respond(JsonResponse(200, ToJson(service.faults())));
    } else if (path == "/v1/faults" && req.method == "GET") {
        respond(JsonResponse(200, ToJson(service.faults())));
    } else if (path == "/v1/ledger" && req.method == "GET") {
        respond(JsonResponse(200, LedgerToJson(service.Ledger())));
    } else if (path == "/v1/stats" && req.method == "GET") {
        respond(JsonResponse(200, ToJson(service.stats())));
    } else if (path == "/healthz" && req.method == "GET") {
        respond(JsonResponse(200, R"({"status":"ok"})"));
    } else {
        respond(ErrorResponse(ErrorCode::kNotFound, "no route " + req.method + " " + path));
    }
}

// ---- client side ----

std::optional<ErrorCode> ParseCode(std::string_view s) {
    for (int i = 0; i <= static_cast<int>(ErrorCode::kInternal); ++i) {
        auto code = static_cast<ErrorCode>(i);
        if (ToString(code) == s) {
            return code;
        }
    }
    return std::nullopt;
}

Result<ActionReply> DecodeReply(const std::string& service, Result<http::Response> res) {
    if (!res) {
        Error e = std::move(res.error());
        e.message = service + ": " + e.message;
        return MakeError(std::move(e));
    }
    boost::system::error_code ec;
    json::value body = json::parse(res->body, ec);
    const json::object* obj = !ec && body.is_object() ? &body.get_object() : nullptr;
    if (res->status == 200) {
        const json::value* out = obj ? obj->if_contains("output") : nullptr;
        if (!out) {
            // Something answered, but not with the protocol: the outcome is unknown.
            return MakeError(Error(ErrorCode::kUnavailable, service + ": malformed 200 answer", true));
        }
        ActionReply reply;
        reply.output = json::serialize(*out);
        return reply;
    }
    if (res->status == 202) {
        ActionReply reply;
        reply.accepted = true;
        return reply;
    }
    ErrorCode code = FromHttpStatus(res->status);
    std::string message = "HTTP " + std::to_string(res->status);
    if (obj) {
        if (const auto* c = obj->if_contains("code"); c && c->is_string()) {
            code = ParseCode(c->get_string()).value_or(code);
        }
        if (const auto* m = obj->if_contains("message"); m && m->is_string()) {
            message = std::string(m->get_string());
        }
    }
    // The status decides retries, whatever the body says: 5xx and 429 (and 408) leave the outcome
    // unknown; any other 4xx is the service's definitive refusal.
    const bool retryable = res->status >= 500 || res->status == 429 || res->status == 408;
    return MakeError(Error(code, service + ": " + message, retryable));
}

class HttpServiceClient final : public ServiceClient {
public:
    HttpServiceClient(boost::asio::io_context& io, std::string host, uint16_t port, std::string service,
                      size_t max_connections)
        : service_(std::move(service)),
          client_(http::MakeClient(io, http::ClientOptions{std::move(host), port, max_connections})) {}

    void Invoke(ActionCall call, Callback done) override {
        http::Request req;
        req.method = "POST";
        req.target = std::string(kActionsPrefix) + http::UrlEncode(call.action);
        AddHeaders(req, call);
        req.headers.emplace_back("content-type", "application/json");
        req.body = call.input.empty() ? "{}" : std::move(call.input);
        Send(std::move(req), call.deadline, std::move(done));
    }

    void Status(ActionCall call, Callback done) override {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/actions/status?key=" + http::UrlEncode(call.idempotency_key);
        AddHeaders(req, call);
        Send(std::move(req), call.deadline, std::move(done));
    }

private:
    static void AddHeaders(http::Request& req, const ActionCall& call) {
        req.headers.emplace_back("idempotency-key", call.idempotency_key);
        // Rounded up: a call with 0.4 ms left is not expired yet.
        const auto budget = std::chrono::ceil<std::chrono::milliseconds>(call.deadline - SteadyClock::now());
        req.headers.emplace_back("x-cogs-deadline-ms", std::to_string(std::max<int64_t>(0, budget.count())));
        if (!call.traceparent.empty()) {
            req.headers.emplace_back("traceparent", call.traceparent);
        }
    }

    void Send(http::Request req, SteadyTime deadline, Callback done) {
        client_->Send(std::move(req), deadline,
                      [service = service_, done = std::move(done)](Result<http::Response> res) {
                          done(DecodeReply(service, std::move(res)));
                      });
    }

    std::string service_;
    std::unique_ptr<http::Client> client_;
};

}  // namespace

http::Handler MakeSimHttpHandler(SimService& service) {
    return [&service](http::Request req, http::Respond respond) {
        Route(service, std::move(req), std::move(respond));
    };
}

std::shared_ptr<ServiceClient> MakeHttpServiceClient(boost::asio::io_context& io, std::string host,
                                                     uint16_t port, std::string service_name,
                                                     size_t max_connections) {
    return std::make_shared<HttpServiceClient>(io, std::move(host), port, std::move(service_name),
                                               max_connections);
}

}  // namespace cogs::services::sim
