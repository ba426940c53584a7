#include "cogs/services/network/internal/fields.h"

#include <algorithm>

namespace cogs::services::network::internal {

namespace json = boost::json;

Status CheckKnown(const json::object& obj, std::initializer_list<std::string_view> allowed,
                  std::string_view prefix) {
    for (const auto& kv : obj) {
        const std::string_view key = kv.key();
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            return MakeError(ErrorCode::kInvalidArgument,
                             "unknown field '" + std::string(prefix) + std::string(key) + "'");
        }
    }
    return Ok();
}

Result<Fields> Fields::Parse(std::string_view text, std::initializer_list<std::string_view> allowed) {
    boost::system::error_code ec;
    json::value v = json::parse(text.empty() ? std::string_view("{}") : text, ec);
    if (ec) {
        return MakeError(ErrorCode::kInvalidArgument, "input: not JSON: " + ec.message());
    }
    if (!v.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, "input: must be a JSON object");
    }
    if (allowed.size() > 0) {
        if (auto known = CheckKnown(v.get_object(), allowed); !known) {
            return MakeError(known.error());
        }
    }
    return Fields(std::move(v.get_object()));
}

Error Fields::Invalid(std::string_view name, std::string_view problem) const {
    return Error(ErrorCode::kInvalidArgument, "field '" + Name(name) + "' " + std::string(problem));
}

const json::value* Fields::Find(std::string_view name) const {
    const json::value* v = obj_.if_contains(name);
    return v == nullptr || v->is_null() ? nullptr : v;
}

Result<std::string> Fields::Id(std::string_view name) const {
    const json::value* v = Find(name);
    if (v == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument, "missing field '" + Name(name) + "'");
    }
    if (!v->is_string() || v->get_string().empty()) {
        return MakeError(Invalid(name, "must be a non-empty string"));
    }
    if (v->get_string().size() > kMaxIdBytes) {
        return MakeError(Invalid(name, "must be at most " + std::to_string(kMaxIdBytes) + " bytes"));
    }
    return std::string(v->get_string());
}

Result<std::string> Fields::String(std::string_view name) const {
    const json::value* v = Find(name);
    if (v == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument, "missing field '" + Name(name) + "'");
    }
    if (!v->is_string()) {
        return MakeError(Invalid(name, "must be a string"));
    }
    return std::string(v->get_string());
}

Result<std::optional<std::string>> Fields::OptionalString(std::string_view name, bool empty_is_absent) const {
    const json::value* v = Find(name);
    if (v == nullptr) {
        return std::optional<std::string>();
    }
    if (!v->is_string()) {
        return MakeError(Invalid(name, "must be a string"));
    }
    if (empty_is_absent && v->get_string().empty()) {
        return std::optional<std::string>();
    }
    return std::optional<std::string>(std::string(v->get_string()));
}

}  // namespace cogs::services::network::internal
