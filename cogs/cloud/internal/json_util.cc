#include "cogs/cloud/internal/json_util.h"

#include <ctime>

#include "cogs/base/secret.h"

namespace cogs::cloud::internal {

Error FieldError(std::string_view field, std::string_view what) {
    return Error(ErrorCode::kInvalidArgument, std::string(field) + ": " + std::string(what));
}

Result<json::object> ParseBody(std::string_view body, std::initializer_list<std::string_view> allowed) {
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return json::object{};
    }
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) {
        return MakeError(FieldError("body", "not JSON: " + ec.message()));
    }
    if (!v.is_object()) {
        return MakeError(FieldError("body", "must be a JSON object"));
    }
    for (const auto& kv : v.get_object()) {
        bool known = false;
        for (auto a : allowed) {
            known = known || kv.key() == a;
        }
        if (!known) {
            return MakeError(FieldError(kv.key(), "unknown field"));
        }
    }
    return std::move(v.get_object());
}

Result<std::optional<std::string>> OptionalString(const json::object& o, std::string_view field,
                                                  size_t max_len) {
    const json::value* v = o.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return std::optional<std::string>{};
    }
    if (!v->is_string()) {
        return MakeError(FieldError(field, "must be a string"));
    }
    const auto& s = v->get_string();
    if (s.size() > max_len) {
        return MakeError(FieldError(field, "longer than " + std::to_string(max_len) + " characters"));
    }
    return std::optional<std::string>(std::string(s));
}

Result<std::string> RequiredString(const json::object& o, std::string_view field, size_t max_len) {
    auto s = OptionalString(o, field, max_len);
    if (!s) {
        return MakeError(s.error());
    }
    if (!*s || (*s)->empty()) {
        return MakeError(FieldError(field, "required"));
    }
    return std::move(**s);
}

Result<std::optional<int64_t>> OptionalInt(const json::object& o, std::string_view field, int64_t min,
                                           int64_t max) {
    const json::value* v = o.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return std::optional<int64_t>{};
    }
    int64_t n = 0;
    if (v->is_int64()) {
        n = v->get_int64();
    } else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
        n = static_cast<int64_t>(v->get_uint64());
    } else {
        return MakeError(FieldError(field, "must be an integer"));
    }
    if (n < min || n > max) {
        return MakeError(
            FieldError(field, "must be between " + std::to_string(min) + " and " + std::to_string(max)));
    }
    return std::optional<int64_t>(n);
}

Result<int64_t> RequiredInt(const json::object& o, std::string_view field, int64_t min, int64_t max) {
    auto n = OptionalInt(o, field, min, max);
    if (!n) {
        return MakeError(n.error());
    }
    if (!*n) {
        return MakeError(FieldError(field, "required"));
    }
    return **n;
}

Result<std::vector<std::string>> OptionalStringList(const json::object& o, std::string_view field,
                                                    size_t max_items) {
    std::vector<std::string> out;
    const json::value* v = o.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return out;
    }
    if (!v->is_array()) {
        return MakeError(FieldError(field, "must be an array of strings"));
    }
    if (v->get_array().size() > max_items) {
        return MakeError(FieldError(field, "more than " + std::to_string(max_items) + " items"));
    }
    for (const auto& item : v->get_array()) {
        if (!item.is_string() || item.get_string().empty() || item.get_string().size() > 255) {
            return MakeError(FieldError(field, "must be an array of non-empty strings"));
        }
        out.emplace_back(item.get_string());
    }
    return out;
}

std::string Str(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

int64_t Int(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    if (v == nullptr) {
        return 0;
    }
    if (v->is_int64()) {
        return v->get_int64();
    }
    if (v->is_uint64()) {
        return static_cast<int64_t>(v->get_uint64());
    }
    if (v->is_double()) {
        return static_cast<int64_t>(v->get_double());
    }
    return 0;
}

bool Bool(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    return v != nullptr && v->is_bool() && v->get_bool();
}

std::vector<std::string> StrList(const json::object& o, std::string_view field) {
    std::vector<std::string> out;
    const json::value* v = o.if_contains(field);
    if (v != nullptr && v->is_array()) {
        for (const auto& item : v->get_array()) {
            if (item.is_string()) {
                out.emplace_back(item.get_string());
            }
        }
    }
    return out;
}

json::array ToArray(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) {
        a.emplace_back(s);
    }
    return a;
}

std::string Rfc3339(int64_t wall_ms) {
    std::time_t secs = static_cast<std::time_t>(wall_ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(wall_ms % 1000));
    return buf;
}

std::string NewUuid() {
    std::string h = RandomHex(16);
    h[12] = '4';
    static constexpr char kVariant[] = "89ab";
    h[16] = kVariant[(h[16] >= 'a' ? h[16] - 'a' + 10 : h[16] - '0') & 3];
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
           h.substr(20);
}

}  // namespace cogs::cloud::internal
