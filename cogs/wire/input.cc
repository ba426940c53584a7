#include "cogs/wire/input.h"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cmath>
#include <cstdio>

namespace cogs::wire {
namespace {

constexpr std::string_view kIdRule = "must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'";

// The integral value of `v`, if it is an integral number.
std::optional<int64_t> Integral(const json::value& v) {
    if (v.is_int64()) return v.get_int64();
    if (v.is_uint64()) {
        if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
        return static_cast<int64_t>(v.get_uint64());
    }
    if (v.is_double()) {
        const double d = v.get_double();
        if (!std::isfinite(d) || d != std::trunc(d) || std::fabs(d) > 9.0e15) return std::nullopt;
        return static_cast<int64_t>(d);
    }
    return std::nullopt;
}

// The refusal of `s` under `rule`: "must not contain control characters (U+001B at byte 3)", or ""
// when it may be taken.
std::string ControlProblem(std::string_view s, const Text& rule) {
    if (rule.allow_controls) {
        return "";
    }
    for (size_t i = 0; i < s.size(); ++i) {
        const size_t n = ControlAt(s.substr(i));
        if (n == 0) {
            continue;
        }
        const unsigned code =
            n == 1 ? static_cast<unsigned char>(s[i]) : static_cast<unsigned char>(s[i + 1]);
        char hex[8];
        std::snprintf(hex, sizeof hex, "U+%04X", code);
        return std::string("must not contain control characters (") + hex + " at byte " + std::to_string(i) +
               ")";
    }
    return "";
}

}  // namespace

size_t ControlAt(std::string_view text) {
    if (text.empty()) {
        return 0;
    }
    const auto c = static_cast<unsigned char>(text[0]);
    if (c < 0x20 || c == 0x7f) {
        return 1;
    }
    if (c == 0xc2 && text.size() > 1) {
        const auto next = static_cast<unsigned char>(text[1]);
        return next >= 0x80 && next <= 0x9f ? 2 : 0;
    }
    return 0;
}

bool ValidId(std::string_view id) {
    if (id.empty() || id.size() > 128 || id.front() == '.') {
        return false;
    }
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
}

Input::Input(json::object object, std::string path) : object_(std::move(object)), path_(std::move(path)) {}

Result<Input> Input::ParseAny(std::string_view text, std::string_view whole) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return Input(json::object{});
    }
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
        return MakeError(FieldError(whole, "not JSON: " + ec.message()));
    }
    if (!v.is_object()) {
        return MakeError(FieldError(whole, "must be a JSON object"));
    }
    return Input(std::move(v.get_object()));
}

Result<Input> Input::Parse(std::string_view text, std::initializer_list<std::string_view> known,
                           std::string_view whole) {
    COGS_ASSIGN_OR_RETURN(Input in, ParseAny(text, whole));
    COGS_TRY(in.Known(known));
    return in;
}

Status Input::Known(std::initializer_list<std::string_view> known) const {
    return Known(std::span<const std::string_view>(known.begin(), known.size()));
}

Status Input::Known(std::span<const std::string_view> known) const {
    for (const auto& kv : object_) {
        if (std::find(known.begin(), known.end(), std::string_view(kv.key())) == known.end()) {
            return MakeError(Invalid(kv.key(), "unknown field"));
        }
    }
    return Ok();
}

std::string Input::Name(std::string_view field) const {
    if (path_.empty()) return std::string(field);
    return path_ + "." + std::string(field);
}

Error Input::Invalid(std::string_view field, std::string_view what) const {
    return FieldError(Name(field), what);
}

const json::value* Input::Find(std::string_view field) const {
    const json::value* v = object_.if_contains(field);
    return v == nullptr || v->is_null() ? nullptr : v;
}

Result<std::optional<std::string>> Input::OptionalString(std::string_view field, Text rule) const {
    const json::value* v = Find(field);
    if (v == nullptr) {
        return std::optional<std::string>();
    }
    if (!v->is_string()) {
        return MakeError(Invalid(field, "must be a string"));
    }
    const auto& s = v->get_string();
    if (s.size() > rule.max_len) {
        return MakeError(Invalid(field, "longer than " + std::to_string(rule.max_len) + " characters"));
    }
    if (s.empty() && !rule.allow_empty) {
        return MakeError(Invalid(field, "must not be empty"));
    }
    if (auto problem = ControlProblem(s, rule); !problem.empty()) {
        return MakeError(Invalid(field, problem));
    }
    return std::optional<std::string>(std::string(s));
}

Result<std::string> Input::String(std::string_view field, Text rule) const {
    const json::value* v = Find(field);
    if (v == nullptr || (v->is_string() && v->get_string().empty() && !rule.allow_empty)) {
        return MakeError(Invalid(field, "required"));
    }
    if (!v->is_string()) {
        return MakeError(Invalid(field, "must be a string"));
    }
    if (v->get_string().size() > rule.max_len) {
        return MakeError(Invalid(field, "longer than " + std::to_string(rule.max_len) + " characters"));
    }
    if (auto problem = ControlProblem(v->get_string(), rule); !problem.empty()) {
        return MakeError(Invalid(field, problem));
    }
    return std::string(v->get_string());
}

Result<std::optional<int64_t>> Input::OptionalInt(std::string_view field, int64_t min, int64_t max) const {
    const json::value* v = Find(field);
    if (v == nullptr) {
        return std::optional<int64_t>();
    }
    const auto n = Integral(*v);
    if (!n) {
        return MakeError(Invalid(field, "must be an integer"));
    }
    if (*n < min || *n > max) {
        if (max == std::numeric_limits<int64_t>::max()) {
            return MakeError(Invalid(field, "must be an integer >= " + std::to_string(min)));
        }
        return MakeError(
            Invalid(field, "must be between " + std::to_string(min) + " and " + std::to_string(max)));
    }
    return std::optional<int64_t>(*n);
}

Result<int64_t> Input::Int(std::string_view field, int64_t min, int64_t max) const {
    COGS_ASSIGN_OR_RETURN(auto n, OptionalInt(field, min, max));
    if (!n) {
        return MakeError(Invalid(field, "required"));
    }
    return *n;
}

Result<bool> Input::OptionalBool(std::string_view field, bool fallback) const {
    const json::value* v = Find(field);
    if (v == nullptr) {
        return fallback;
    }
    if (!v->is_bool()) {
        return MakeError(Invalid(field, "must be true or false"));
    }
    return v->get_bool();
}

Result<std::vector<std::string>> Input::StringList(std::string_view field, List rule) const {
    std::vector<std::string> out;
    const json::value* v = Find(field);
    if (v == nullptr) {
        return out;
    }
    if (!v->is_array()) {
        return MakeError(Invalid(field, "must be an array of strings"));
    }
    if (v->get_array().size() > rule.max_items) {
        return MakeError(Invalid(field, "more than " + std::to_string(rule.max_items) + " items"));
    }
    for (const auto& item : v->get_array()) {
        if (!item.is_string() || (item.get_string().empty() && !rule.item.allow_empty) ||
            item.get_string().size() > rule.item.max_len) {
            return MakeError(Invalid(field, rule.item.allow_empty ? "must be an array of strings"
                                                                  : "must be an array of non-empty strings"));
        }
        if (auto problem = ControlProblem(item.get_string(), rule.item); !problem.empty()) {
            return MakeError(Invalid(field, problem));
        }
        std::string s(item.get_string());
        if (rule.unique && std::find(out.begin(), out.end(), s) != out.end()) {
            return MakeError(Invalid(field, "lists " + s + " twice"));
        }
        out.push_back(std::move(s));
    }
    return out;
}

Result<std::string> Input::Id(std::string_view field) const {
    COGS_ASSIGN_OR_RETURN(auto s, String(field, Text{.max_len = 128}));
    if (!ValidId(s)) {
        return MakeError(Invalid(field, kIdRule));
    }
    return s;
}

Result<std::vector<std::string>> Input::IdList(std::string_view field) const {
    const json::value* v = Find(field);
    if (v == nullptr) {
        return MakeError(Invalid(field, "required"));
    }
    if (!v->is_array()) {
        return MakeError(Invalid(field, "must be an array of ids"));
    }
    std::vector<std::string> out;
    for (const json::value& e : v->get_array()) {
        if (!e.is_string() || !ValidId(e.get_string())) {
            return MakeError(Invalid(field, "every element " + std::string(kIdRule)));
        }
        std::string id(e.get_string());
        if (std::find(out.begin(), out.end(), id) == out.end()) {
            out.push_back(std::move(id));
        }
    }
    return out;
}

Result<std::optional<Input>> Input::OptionalObject(std::string_view field,
                                                   std::initializer_list<std::string_view> known) const {
    const json::value* v = Find(field);
    if (v == nullptr) {
        return std::optional<Input>();
    }
    if (!v->is_object()) {
        return MakeError(Invalid(field, "must be an object"));
    }
    Input nested(v->get_object(), Name(field));
    if (known.size() > 0) {
        COGS_TRY(nested.Known(known));
    }
    return std::optional<Input>(std::move(nested));
}

Result<Input> Input::Object(std::string_view field, std::initializer_list<std::string_view> known) const {
    COGS_ASSIGN_OR_RETURN(auto nested, OptionalObject(field, known));
    if (!nested) {
        return MakeError(Invalid(field, "required"));
    }
    return std::move(*nested);
}

Result<std::vector<Input>> Input::Objects(std::string_view field,
                                          std::initializer_list<std::string_view> known,
                                          size_t max_items) const {
    std::vector<Input> out;
    const json::value* v = Find(field);
    if (v == nullptr) {
        return out;
    }
    if (!v->is_array()) {
        return MakeError(Invalid(field, "must be an array of objects"));
    }
    if (v->get_array().size() > max_items) {
        return MakeError(Invalid(field, "more than " + std::to_string(max_items) + " items"));
    }
    size_t i = 0;
    for (const auto& item : v->get_array()) {
        const std::string name = Name(field) + "[" + std::to_string(i++) + "]";
        if (!item.is_object()) {
            return MakeError(FieldError(name, "must be an object"));
        }
        Input nested(item.get_object(), name);
        if (known.size() > 0) {
            COGS_TRY(nested.Known(known));
        }
        out.push_back(std::move(nested));
    }
    return out;
}

// ---- lenient ----

std::string Str(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

int64_t Int(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    if (v == nullptr) return 0;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
    if (v->is_double()) return static_cast<int64_t>(v->get_double());
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
            if (item.is_string()) out.emplace_back(item.get_string());
        }
    }
    return out;
}

json::object Obj(const json::object& o, std::string_view field) {
    const json::value* v = o.if_contains(field);
    return v != nullptr && v->is_object() ? v->get_object() : json::object{};
}

json::object ParseObject(std::string_view text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    return !ec && v.is_object() ? std::move(v.get_object()) : json::object{};
}

json::array ToArray(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v)
        a.emplace_back(s);
    return a;
}

}  // namespace cogs::wire
