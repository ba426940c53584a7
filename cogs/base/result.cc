#include "cogs/base/result.h"

namespace cogs {

std::string_view ToString(ErrorCode code) {
    switch (code) {
        case ErrorCode::kInvalidArgument: return "invalid_argument";
        case ErrorCode::kNotFound: return "not_found";
        case ErrorCode::kAlreadyExists: return "already_exists";
        case ErrorCode::kConflict: return "conflict";
        case ErrorCode::kFailedPrecondition: return "failed_precondition";
        case ErrorCode::kPermissionDenied: return "permission_denied";
        case ErrorCode::kUnauthenticated: return "unauthenticated";
        case ErrorCode::kResourceExhausted: return "resource_exhausted";
        case ErrorCode::kUnavailable: return "unavailable";
        case ErrorCode::kDeadlineExceeded: return "deadline_exceeded";
        case ErrorCode::kFenced: return "fenced";
        case ErrorCode::kCancelled: return "cancelled";
        case ErrorCode::kNoSpace: return "no_space";
        case ErrorCode::kInternal: return "internal";
    }
    return "internal";
}

int HttpStatus(ErrorCode code) {
    switch (code) {
        case ErrorCode::kInvalidArgument: return 400;
        case ErrorCode::kUnauthenticated: return 401;
        case ErrorCode::kPermissionDenied: return 403;
        case ErrorCode::kNotFound: return 404;
        case ErrorCode::kAlreadyExists: return 409;
        case ErrorCode::kConflict: return 409;
        case ErrorCode::kFenced: return 409;
        case ErrorCode::kFailedPrecondition: return 422;
        case ErrorCode::kResourceExhausted: return 429;
        case ErrorCode::kCancelled: return 499;
        case ErrorCode::kInternal: return 500;
        case ErrorCode::kUnavailable: return 503;
        case ErrorCode::kDeadlineExceeded: return 504;
        case ErrorCode::kNoSpace: return 507;
    }
    return 500;
}

ErrorCode FromHttpStatus(int status) {
    switch (status) {
        case 400: return ErrorCode::kInvalidArgument;
        case 401: return ErrorCode::kUnauthenticated;
        case 403: return ErrorCode::kPermissionDenied;
        case 404: return ErrorCode::kNotFound;
        case 409: return ErrorCode::kConflict;
        case 412:
        case 422: return ErrorCode::kFailedPrecondition;
        case 429: return ErrorCode::kResourceExhausted;
        case 499: return ErrorCode::kCancelled;
        case 502:
        case 503: return ErrorCode::kUnavailable;
        case 504: return ErrorCode::kDeadlineExceeded;
        case 507: return ErrorCode::kNoSpace;
        default: return status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kFailedPrecondition;
    }
}

bool DefaultRetryable(ErrorCode code) {
    return code == ErrorCode::kUnavailable || code == ErrorCode::kDeadlineExceeded ||
           code == ErrorCode::kResourceExhausted || code == ErrorCode::kNoSpace;
}

Error& Error::With(std::string key, std::string value) & {
    for (auto& d : details) {
        if (d.key == key) {
            d.value = std::move(value);
            return *this;
        }
    }
    details.push_back(ErrorDetail{std::move(key), std::move(value)});
    return *this;
}

Error& Error::With(std::string key, int64_t value) & {
    for (auto& d : details) {
        if (d.key == key) {
            d.value = value;
            return *this;
        }
    }
    details.push_back(ErrorDetail{std::move(key), value});
    return *this;
}

std::string_view Error::Detail(std::string_view key) const {
    for (const auto& d : details) {
        if (d.key == key) {
            const auto* s = std::get_if<std::string>(&d.value);
            return s != nullptr ? std::string_view(*s) : std::string_view();
        }
    }
    return {};
}

int64_t Error::NumberDetail(std::string_view key) const {
    for (const auto& d : details) {
        if (d.key == key) {
            const auto* n = std::get_if<int64_t>(&d.value);
            return n != nullptr ? *n : 0;
        }
    }
    return 0;
}

Error FieldError(std::string_view field, std::string_view what) {
    Error e(ErrorCode::kInvalidArgument, std::string(field) + ": " + std::string(what));
    e.With("field", std::string(field));
    return e;
}

std::string Error::ToString() const {
    std::string s(cogs::ToString(code));
    s += ": ";
    s += message;
    return s;
}

}  // namespace cogs
