// Result<T>: the value of an operation that can fail in an expected way.
//
// Expected failures (a service said no, a write was fenced out, input was bad) travel as values,
// never as exceptions. An Error carries a code, a human message and whether the failure is
// retryable: the workflow engine and the reconcilers decide retries from that bit alone.
//
// A retryable error also means "the outcome is unknown" (a timeout, a dropped connection): the
// action may have been applied. A non-retryable error is a definitive answer: nothing was applied.
//
// An Error also carries structured details for whoever answers it on the wire: the input field at
// fault, the quota numbers of a refusal. They are set where the error is made (FieldError,
// Error::With) and read from there (Error::field(), Error::details); nothing parses a message.
//
// Result is [[nodiscard]]: dropping one on the floor is a compile error (-Werror=unused-result).
// Where a failure really does not matter, say why and write `(void)`.
//
// Propagating: inside a function that returns a Result,
//     COGS_TRY(store.Check(x));                       // returns its error, if any
//     COGS_ASSIGN_OR_RETURN(auto name, in.String("name"));   // declares `name`, or returns the error
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

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
    kNoSpace,             // 507: the disk is full; nothing was written (store: writes resume by themselves)
    kInternal,            // 500: a bug or a broken invariant
};

std::string_view ToString(ErrorCode code);

// The HTTP status that stands for `code` (the one table that maps them).
int HttpStatus(ErrorCode code);

// The code for an HTTP status received from a peer.
ErrorCode FromHttpStatus(int status);

// Whether an error of this code is worth retrying by default.
bool DefaultRetryable(ErrorCode code);

// One structured detail of an error: {"field": "size_gb"}, {"limit": 10}.
struct ErrorDetail {
    std::string key;
    std::variant<std::string, int64_t> value;
    bool operator==(const ErrorDetail&) const = default;
};

struct Error {
    ErrorCode code = ErrorCode::kInternal;
    std::string message;
    bool retryable = false;
    // A finer name than the code for the wire's "code" ("quota_exceeded" for a kPermissionDenied);
    // empty: ToString(code).
    std::string reason;
    // Shown as the API error body's "details", in this order.
    std::vector<ErrorDetail> details;

    Error() = default;
    Error(ErrorCode c, std::string msg) : code(c), message(std::move(msg)), retryable(DefaultRetryable(c)) {}
    Error(ErrorCode c, std::string msg, bool retry) : code(c), message(std::move(msg)), retryable(retry) {}

    // Adds a detail (replacing one of the same key); chains: Error(...).With("limit", 10).
    Error& With(std::string key, std::string value) &;
    Error& With(std::string key, int64_t value) &;
    Error&& With(std::string key, std::string value) && {
        return std::move(With(std::move(key), std::move(value)));
    }
    Error&& With(std::string key, int64_t value) && { return std::move(With(std::move(key), value)); }
    Error&& With(std::string key, const char* value) && {
        return std::move(*this).With(std::move(key), std::string(value));
    }
    Error&& With(std::string key, int value) && {
        return std::move(*this).With(std::move(key), int64_t{value});
    }

    // The detail `key` if it is a string ("" otherwise); field() is Detail("field").
    std::string_view Detail(std::string_view key) const;
    std::string_view field() const { return Detail("field"); }
    // The detail `key` if it is a number (0 otherwise).
    int64_t NumberDetail(std::string_view key) const;

    // The wire's code: `reason`, or the code's name.
    std::string_view WireCode() const {
        return reason.empty() ? cogs::ToString(code) : std::string_view(reason);
    }

    // "not_found: no such workflow"
    std::string ToString() const;
};

// kInvalidArgument "FIELD: WHAT" with the detail field = FIELD (a dotted path for a nested field,
// "request.fixed_ip", "allocation_pools[1].start").
Error FieldError(std::string_view field, std::string_view what);

// Result<T>: a tl::expected<T, Error> that must be used.
template <typename T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
public:
    using Base = tl::expected<T, Error>;
    using Base::Base;
    Result() = default;
    Result(Base b) : Base(std::move(b)) {}  // NOLINT: from tl::expected's own combinators
    Base& base() & { return *this; }
    const Base& base() const& { return *this; }
};

using Status = Result<void>;

inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
    return tl::unexpected<Error>(Error(code, std::move(message)));
}
inline tl::unexpected<Error> MakeError(Error e) { return tl::unexpected<Error>(std::move(e)); }

inline Status Ok() { return {}; }

}  // namespace cogs

#define COGS_CONCAT_INNER_(a, b) a##b
#define COGS_CONCAT_(a, b) COGS_CONCAT_INNER_(a, b)

// Returns the error of `expr` (any Result) from the enclosing function, which returns a Result.
#define COGS_TRY(expr)                                                     \
    do {                                                                   \
        if (auto cogs_try_result_ = (expr); !cogs_try_result_) {           \
            return ::cogs::MakeError(std::move(cogs_try_result_).error()); \
        }                                                                  \
    } while (0)

// `lhs` (a declaration, `auto x`, or an lvalue) takes the value of `expr` (a Result<T>); its error
// is returned from the enclosing function instead. A statement, not an expression.
#define COGS_ASSIGN_OR_RETURN(lhs, expr) \
    COGS_ASSIGN_OR_RETURN_IMPL_(COGS_CONCAT_(cogs_aor_, __LINE__), lhs, expr)
#define COGS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)       \
    auto tmp = (expr);                                    \
    if (!tmp) {                                           \
        return ::cogs::MakeError(std::move(tmp).error()); \
    }                                                     \
    lhs = std::move(*tmp)
