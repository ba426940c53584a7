#include "cogs/services/kit/input.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>

namespace cogs::services::kit {
namespace {

namespace json = boost::json;

tl::unexpected<Error> Invalid(std::string_view field, std::string_view problem) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(field) + ": " + std::string(problem));
}

constexpr std::string_view kIdRule = "must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'";

}  // namespace

bool ValidId(std::string_view id) {
    if (id.empty() || id.size() > 128 || id.front() == '.') {
        return false;
    }
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
}

Result<Input> Input::Parse(std::string_view text, std::initializer_list<std::string_view> known) {
    boost::system::error_code ec;
    json::value v = json::parse(text.empty() ? std::string_view("{}") : text, ec);
    if (ec) {
        return MakeError(ErrorCode::kInvalidArgument, "body: not JSON: " + ec.message());
    }
    if (!v.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, "body: must be a JSON object");
    }
    for (const auto& field : v.get_object()) {
        if (std::find(known.begin(), known.end(), std::string_view(field.key())) == known.end()) {
            return MakeError(ErrorCode::kInvalidArgument, "unknown field '" + std::string(field.key()) + "'");
        }
    }
    return Input(std::move(v.get_object()));
}

Result<std::string> Input::String(std::string_view field) const {
    const json::value* v = object_.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return MakeError(ErrorCode::kInvalidArgument, "missing field '" + std::string(field) + "'");
    }
    if (!v->is_string()) {
        return Invalid(field, "must be a string");
    }
    if (v->get_string().empty()) {
        return Invalid(field, "must not be empty");
    }
    return std::string(v->get_string());
}

Result<std::string> Input::Id(std::string_view field) const {
    auto s = String(field);
    if (s && !ValidId(*s)) {
        return Invalid(field, kIdRule);
    }
    return s;
}

Result<std::optional<std::string>> Input::OptionalString(std::string_view field) const {
    const json::value* v = object_.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return std::optional<std::string>();
    }
    if (!v->is_string()) {
        return Invalid(field, "must be a string");
    }
    return std::optional<std::string>(std::string(v->get_string()));
}

Result<int64_t> Input::Int(std::string_view field, int64_t min) const {
    const json::value* v = object_.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return MakeError(ErrorCode::kInvalidArgument, "missing field '" + std::string(field) + "'");
    }
    const std::string rule = "must be an integer >= " + std::to_string(min);
    int64_t n = 0;
    if (v->is_int64()) {
        n = v->get_int64();
    } else if (v->is_uint64()) {
        if (v->get_uint64() > static_cast<uint64_t>(INT64_MAX)) {
            return Invalid(field, "too large");
        }
        n = static_cast<int64_t>(v->get_uint64());
    } else if (v->is_double()) {
        // 4.0 is an integer written by a tool that has only doubles; 4.5 is not.
        const double d = v->get_double();
        if (!std::isfinite(d) || d != std::trunc(d) || std::fabs(d) > 9.0e15) {
            return Invalid(field, rule);
        }
        n = static_cast<int64_t>(d);
    } else {
        return Invalid(field, rule);
    }
    if (n < min) {
        return Invalid(field, rule);
    }
    return n;
}

Result<std::vector<std::string>> Input::IdList(std::string_view field) const {
    const json::value* v = object_.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return MakeError(ErrorCode::kInvalidArgument, "missing field '" + std::string(field) + "'");
    }
    if (!v->is_array()) {
        return Invalid(field, "must be an array of ids");
    }
    std::vector<std::string> out;
    for (const json::value& e : v->get_array()) {
        if (!e.is_string() || !ValidId(e.get_string())) {
            return Invalid(field, "every element " + std::string(kIdRule));
        }
        std::string id(e.get_string());
        if (std::find(out.begin(), out.end(), id) == out.end()) {
            out.push_back(std::move(id));
        }
    }
    return out;
}

std::optional<http::Response> GetRecord(const http::Request& request, std::string_view prefix, std::string_view key,
                                        const std::function<std::optional<boost::json::object>(const std::string&)>& find) {
    const std::string path = request.Path();
    if (request.method != "GET" || !path.starts_with(prefix) || path.size() == prefix.size()) {
        return std::nullopt;
    }
    const std::string id = http::UrlDecode(std::string_view(path).substr(prefix.size()));
    http::Response r;
    boost::json::object body;
    if (auto record = find(id)) {
        body[key] = std::move(*record);
    } else {
        r.status = HttpStatus(ErrorCode::kNotFound);
        body["code"] = ToString(ErrorCode::kNotFound);
        body["message"] = "no " + std::string(key) + " '" + id + "'";
    }
    r.body = boost::json::serialize(body);
    return r;
}

}  // namespace cogs::services::kit
