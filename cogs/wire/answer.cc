#include "cogs/wire/answer.h"

#include <boost/json/serialize.hpp>

namespace cogs::wire {

namespace {

// 405 with Allow, in the shape `answer` writes.
http::Response MethodNotAllowed(http::Response (*answer)(const Error&), std::string_view method,
                                std::string_view allowed) {
    http::Response r =
        answer(Error(ErrorCode::kInvalidArgument,
                     "method " + std::string(method) + " not allowed: use " + std::string(allowed)));
    r.status = 405;
    r.headers.emplace_back("allow", std::string(allowed));
    return r;
}

}  // namespace

http::Response Json(int status, const json::value& body) {
    http::Response r;
    r.status = status;
    r.body = json::serialize(body);
    return r;
}

http::Response Wrapped(int status, std::string_view key, json::object object) {
    json::object w;
    w[key] = std::move(object);
    return Json(status, w);
}

json::object ApiErrorObject(const Error& e) {
    json::object details;
    for (const auto& d : e.details) {
        if (const auto* s = std::get_if<std::string>(&d.value)) {
            details[d.key] = *s;
        } else {
            details[d.key] = std::get<int64_t>(d.value);
        }
    }
    return json::object{{"code", e.WireCode()}, {"message", e.message}, {"details", std::move(details)}};
}

http::Response ApiError(const Error& e) {
    http::Response r = Json(HttpStatus(e.code), ApiErrorObject(e));
    if (r.status == 429 || r.status == 503) {
        r.headers.emplace_back("retry-after", "1");
    }
    return r;
}

http::Response ApiMethodNotAllowed(std::string_view method, std::string_view allowed) {
    return MethodNotAllowed(ApiError, method, allowed);
}

http::Response ServiceError(const Error& e) {
    return Json(HttpStatus(e.code),
                json::object{{"code", e.WireCode()}, {"message", e.message}, {"retryable", e.retryable}});
}

http::Response ServiceMethodNotAllowed(std::string_view method, std::string_view allowed) {
    return MethodNotAllowed(ServiceError, method, allowed);
}

std::optional<ErrorCode> ParseErrorCode(std::string_view name) {
    for (int i = 0; i <= static_cast<int>(ErrorCode::kInternal); ++i) {
        const auto code = static_cast<ErrorCode>(i);
        if (ToString(code) == name) {
            return code;
        }
    }
    return std::nullopt;
}

Error ServiceErrorOf(int status, std::string_view body) {
    const json::object o = ParseObject(body);
    ErrorCode code = FromHttpStatus(status);
    if (auto named = ParseErrorCode(Str(o, "code"))) {
        code = *named;
    }
    std::string message = Str(o, "message");
    if (message.empty()) {
        message = "HTTP " + std::to_string(status);
    }
    const bool retryable = status >= 500 || status == 429 || status == 408;
    return Error(code, std::move(message), retryable);
}

}  // namespace cogs::wire
