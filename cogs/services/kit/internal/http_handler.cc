// The server side of docs/service-protocol.md, for any ActionTarget (protocol.h).
#include <boost/json.hpp>
#include <charconv>

#include "cogs/base/secret.h"
#include "cogs/services/kit/protocol.h"

namespace cogs::services::kit {
namespace {

namespace json = boost::json;
using workflow::ActionReply;

constexpr std::string_view kActionsPrefix = "/v1/actions/";
constexpr std::string_view kBearer = "Bearer ";
constexpr auto kDefaultBudget = std::chrono::seconds(30);  // when a caller sends no X-Cogs-Deadline-Ms

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

ActionTarget::Callback Responder(http::Respond respond) {
    return [respond = std::move(respond)](Result<ActionReply> reply) { respond(ReplyResponse(reply)); };
}

void HandleAction(ActionTarget& target, http::Request req, http::Respond respond) {
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
    target.Handle(std::move(action), std::move(key), std::move(req.body), *deadline,
                  Responder(std::move(respond)));
}

void HandleStatus(ActionTarget& target, const http::Request& req, http::Respond respond) {
    if (req.method != "GET") {
        respond(MethodNotAllowed(req.method, "GET"));
        return;
    }
    std::string key = req.Query("key");
    if (key.empty()) {
        respond(ErrorResponse(ErrorCode::kInvalidArgument, "missing query parameter key"));
        return;
    }
    target.Status(std::move(key), Responder(std::move(respond)));
}

// Only the token's hash is held, so a memory dump does not give the token away; comparing hashes in
// constant time leaks nothing about how much of a guess was right.
bool Authorized(const http::Request& req, const std::string& token_sha256) {
    const std::string header = req.Header("authorization");
    if (header.size() <= kBearer.size() || std::string_view(header).substr(0, kBearer.size()) != kBearer) {
        return false;
    }
    return ConstantTimeEquals(Sha256Hex(std::string_view(header).substr(kBearer.size())), token_sha256);
}

void Route(ActionTarget& target, const std::string& token_sha256, http::Request req, http::Respond respond) {
    const std::string path = req.Path();
    if (path == "/healthz") {
        if (req.method != "GET") {
            respond(MethodNotAllowed(req.method, "GET"));
            return;
        }
        respond(JsonResponse(200, R"({"status":"ok"})"));
        return;
    }
    if (!token_sha256.empty() && !Authorized(req, token_sha256)) {
        http::Response r = ErrorResponse(ErrorCode::kUnauthenticated,
                                         "missing or wrong bearer token (header Authorization: Bearer <token>)");
        r.status = 401;
        r.headers.emplace_back("www-authenticate", "Bearer");
        respond(std::move(r));
        return;
    }
    if (path == "/v1/actions/status") {
        HandleStatus(target, req, std::move(respond));
    } else if (path.starts_with(kActionsPrefix)) {
        HandleAction(target, std::move(req), std::move(respond));
    } else if (path == "/v1/faults") {
        if (req.method == "PUT") {
            auto faults = ParseFaultConfig(req.body);
            if (!faults) {
                respond(ErrorResponse(faults.error()));
                return;
            }
            target.SetFaults(std::move(*faults));
            respond(JsonResponse(200, ToJson(target.faults())));
        } else if (req.method == "GET") {
            respond(JsonResponse(200, ToJson(target.faults())));
        } else {
            respond(MethodNotAllowed(req.method, "GET, PUT"));
        }
    } else if (path == "/v1/ledger" && req.method == "GET") {
        respond(JsonResponse(200, target.LedgerJson()));
    } else if (path == "/v1/stats" && req.method == "GET") {
        respond(JsonResponse(200, target.StatsJson()));
    } else if (req.method == "GET") {
        if (auto r = target.Get(req)) {
            respond(std::move(*r));
        } else {
            respond(ErrorResponse(ErrorCode::kNotFound, "no route GET " + path));
        }
    } else {
        respond(ErrorResponse(ErrorCode::kNotFound, "no route " + req.method + " " + path));
    }
}

}  // namespace

http::Handler MakeActionHttpHandler(ActionTarget& target, std::string token_sha256) {
    return [&target, token = std::move(token_sha256)](http::Request req, http::Respond respond) {
        Route(target, token, std::move(req), std::move(respond));
    };
}

}  // namespace cogs::services::kit
