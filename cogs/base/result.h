// Result<T>: the value of an operation that can fail in an expected way.
//
// Expected failures (a service said no, a write was fenced out, input was bad) travel as values,
// never as exceptions. An Error carries a code, a human message and whether the failure is
// retryable: the workflow engine and, later, the reconcilers decide retries from that bit alone.
//
// A retryable error also means "the outcome is unknown" (a timeout, a dropped connection): the
// action may have been applied. A non-retryable error is a definitive answer: nothing was applied.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace cogs {

enum class ErrorCode {
    kInvalidArgument,     // the caller sent something malformed; 400
    kNotFound,            // 404
    kAlreadyExists,       // 409
    kConflict,            // 409: state does not allow the operation
    kFailedPrecondition,  // 412/409: e.g. a definitive refusal by a service
    kPermissionDenied,    // 403
    kUnauthenticated,     // 401
    kResourceExhausted,   // 429: overload or quota
    kUnavailable,         // 503: try again
    kDeadlineExceeded,    // 504: no answer in time; outcome unknown
    kFenced,              // a newer owner holds the lease: this writer must stop
    kCancelled,           // the operation was cancelled
    kInternal,            // 500: a bug or a broken invariant
};

std::string_view ToString(ErrorCode code);

// The HTTP status that stands for `code` (the one table that maps them).
int HttpStatus(ErrorCode code);

// The code for an HTTP status received from a peer.
ErrorCode FromHttpStatus(int status);

// Whether an error of this code is worth retrying by default.
bool DefaultRetryable(ErrorCode code);

struct Error {
    ErrorCode code = ErrorCode::kInternal;
    std::string message;
    bool retryable = false;

    Error() = default;
    Error(ErrorCode c, std::string msg) : code(c), message(std::move(msg)), retryable(DefaultRetryable(c)) {}
    Error(ErrorCode c, std::string msg, bool retry) : code(c), message(std::move(msg)), retryable(retry) {}

    // "not_found: no such workflow"
    std::string ToString() const;
};

template <typename T>
using Result = tl::expected<T, Error>;

using Status = Result<void>;

inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
    return tl::unexpected<Error>(Error(code, std::move(message)));
}
inline tl::unexpected<Error> MakeError(Error e) { return tl::unexpected<Error>(std::move(e)); }

inline Status Ok() { return {}; }

}  // namespace cogs
