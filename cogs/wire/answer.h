// The bodies cogs answers with, written once per wire shape.
//
//   API (cogsd's /v1, docs/api.md "Errors"):   {"code", "message", "details"}
//       code: Error::WireCode() (the code's name, or a finer reason such as "quota_exceeded");
//       details: Error::details as an object ({"field": "size_gb"}, {"resource", "limit", ...}).
//   Service protocol (docs/service-protocol.md): {"code", "message", "retryable"}
//
// Each comes with its HTTP status from cogs::HttpStatus (the one table), and the API's 429 and 503
// with Retry-After. ServiceError reads a service's answer back into an Error (the client side).
#pragma once

#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/http/server.h"
#include "cogs/wire/input.h"

namespace cogs::wire {

// 200-ish JSON: `status` with `body` serialized.
http::Response Json(int status, const json::value& body);
// {"<key>": object} with `status`.
http::Response Wrapped(int status, std::string_view key, json::object object);

// The API's error body and status (Retry-After: 1 on 429 and 503).
json::object ApiErrorObject(const Error& e);
http::Response ApiError(const Error& e);
// 405 with Allow, in the API's shape.
http::Response ApiMethodNotAllowed(std::string_view method, std::string_view allowed);

// The service protocol's error body and status.
http::Response ServiceError(const Error& e);
// 405 with Allow, in the service protocol's shape.
http::Response ServiceMethodNotAllowed(std::string_view method, std::string_view allowed);

// The ErrorCode named `name` ("not_found"), if any.
std::optional<ErrorCode> ParseErrorCode(std::string_view name);

// An error answer of a service read back: the code from the body's "code" (else from the status),
// the body's "message" (else "HTTP <status>"). Retryable exactly when the status leaves the outcome
// unknown (5xx, 429, 408), whatever the body says.
Error ServiceErrorOf(int status, std::string_view body);

}  // namespace cogs::wire
