// Input: a JSON object from outside (an API request body, a micro-service action's input, a
// configuration file's section) read field by field. Every refusal is kInvalidArgument, its message
// "FIELD: what is wrong" and its detail "field" the field's full name, so the API's 400 names the
// field without anyone parsing the message: "name: required", "size_gb: must be between 1 and
// 16384", "typo: unknown field", and inside nested objects "request.fixed_ip: must be a string",
// "allocation_pools[1].start: required".
//
// Absent and null are the same (a workflow template renders a missing value as null). A number is
// an integer if its value is integral (4.0 from a tool that has only doubles is 4; 4.5 is not).
//
// One reader for cogsd and every service: nothing else in cogs turns outside JSON into values.
// Reading back what cogs itself wrote (records, inventories, step outputs) is the lenient family at
// the bottom (Str, Int, ...), where a missing or mistyped field reads as empty.
//
// Threading: plain values.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::wire {

namespace json = boost::json;

// What a string field may hold.
//
// Control characters — C0 (U+0000..U+001F: NUL, BEL, ESC, newline, tab, ...), DEL (U+007F) and C1
// (U+0080..U+009F) — are refused in every string of every input ("name: must not contain control
// characters (U+001B at byte 3)"): a name, a description or any other text shown in an operator's
// terminal must not be able to clear it, rewrite it (ESC and C1 CSI sequences), ring it (BEL) or
// cut what follows (NUL, newline). Only a reader of records cogs itself wrote, perhaps before they
// were refused, allows them.
struct Text {
    size_t max_len = 255;      // bytes
    bool allow_empty = false;  // a required "" is "required" unless allowed
    bool allow_controls = false;
};

// What a list of strings may hold.
struct List {
    size_t max_items = 64;
    Text item{};
    bool unique = false;  // a repeated item is refused ("lists X twice")
};

class Input {
public:
    // `text` must be a JSON object whose keys are all in `known` (none allowed when it is empty);
    // blank text is {}. `whole` names the text itself in its errors ("body: not JSON: ...").
    static Result<Input> Parse(std::string_view text, std::initializer_list<std::string_view> known,
                               std::string_view whole = "body");
    // The same with any keys (a record cogs wrote, or an input whose keys are checked later).
    static Result<Input> ParseAny(std::string_view text, std::string_view whole = "body");
    // An object already parsed; `path` prefixes every field name in errors ("request").
    explicit Input(json::object object, std::string path = "");

    // Refuses the first key not in `known`.
    Status Known(std::initializer_list<std::string_view> known) const;
    // The same for a list kept elsewhere (a micro-service's action table declares its fields).
    Status Known(std::span<const std::string_view> known) const;

    // A required string: absent, null or (unless allowed) "" is "required".
    Result<std::string> String(std::string_view field, Text rule = {}) const;
    // An optional string: absent or null is nullopt.
    Result<std::optional<std::string>> OptionalString(std::string_view field,
                                                      Text rule = {.allow_empty = true}) const;
    // A required integer in [min, max].
    Result<int64_t> Int(std::string_view field, int64_t min = std::numeric_limits<int64_t>::min(),
                        int64_t max = std::numeric_limits<int64_t>::max()) const;
    Result<std::optional<int64_t>> OptionalInt(std::string_view field,
                                               int64_t min = std::numeric_limits<int64_t>::min(),
                                               int64_t max = std::numeric_limits<int64_t>::max()) const;
    // An optional boolean: absent or null is `fallback`.
    Result<bool> OptionalBool(std::string_view field, bool fallback) const;
    // A list of strings; absent or null is empty.
    Result<std::vector<std::string>> StringList(std::string_view field, List rule = {}) const;

    // An identifier the services use as a key: 1..128 characters of [A-Za-z0-9._-], not starting
    // with '.' (ids name files and appear in URL paths). Required.
    Result<std::string> Id(std::string_view field) const;
    // A required array of such ids (absent is "required"); repeats dropped, order kept.
    Result<std::vector<std::string>> IdList(std::string_view field) const;

    // A required nested object, read with its own known keys; its errors name "FIELD.key".
    Result<Input> Object(std::string_view field, std::initializer_list<std::string_view> known = {}) const;
    Result<std::optional<Input>> OptionalObject(std::string_view field,
                                                std::initializer_list<std::string_view> known = {}) const;
    // An optional array of objects ("FIELD[i].key" in errors); absent or null is empty.
    Result<std::vector<Input>> Objects(std::string_view field,
                                       std::initializer_list<std::string_view> known = {},
                                       size_t max_items = 64) const;

    // The value, or nullptr when absent or null.
    const json::value* Find(std::string_view field) const;
    bool Has(std::string_view field) const { return Find(field) != nullptr; }
    // The field's full name as errors show it.
    std::string Name(std::string_view field) const;
    // FieldError(Name(field), what).
    Error Invalid(std::string_view field, std::string_view what) const;

    const json::object& object() const& { return object_; }
    json::object Take() && { return std::move(object_); }

private:
    json::object object_;
    std::string path_;
};

// Whether `id` is a valid identifier (see Input::Id).
bool ValidId(std::string_view id);

// The length in bytes (1, or 2 for a C1 character in UTF-8) of the control character `text` starts
// with (see Text), or 0. For whoever must show outside text safely (the CLI escapes them).
size_t ControlAt(std::string_view text);

// ---- reading back what cogs wrote: lenient, never an error ----

std::string Str(const json::object& o, std::string_view field);
int64_t Int(const json::object& o, std::string_view field);
bool Bool(const json::object& o, std::string_view field);
std::vector<std::string> StrList(const json::object& o, std::string_view field);
// The object at `field`, or an empty one.
json::object Obj(const json::object& o, std::string_view field);
// `text` parsed as an object, or an empty one.
json::object ParseObject(std::string_view text);
json::array ToArray(const std::vector<std::string>& v);

}  // namespace cogs::wire
