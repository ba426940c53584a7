// Fields: reads an action's JSON input (or a stored record) field by field, with errors that name
// the field, as docs/service-protocol.md asks: "unknown field 'typo'", "missing field 'id'",
// "field 'name' must be a string". Boost.JSON stays behind this header's users (internal/ only).
//
// Optional fields: absent and null are the same (a workflow template renders a missing value as
// null), so `{"fixed_ip": null}` means "no fixed_ip".
//
// Threading: a plain value.
#pragma once

#include <boost/json.hpp>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs::services::network::internal {

// Longest id accepted; ids appear in URLs and SQLite keys, and nothing needs more.
inline constexpr size_t kMaxIdBytes = 255;

class Fields {
public:
    // `text` must be a JSON object. With `allowed` non-empty, any other key is refused; empty:
    // every key is accepted (stored records, which a newer version may have extended).
    static Result<Fields> Parse(std::string_view text, std::initializer_list<std::string_view> allowed);
    explicit Fields(boost::json::object obj, std::string prefix = "")
        : obj_(std::move(obj)), prefix_(std::move(prefix)) {}

    // A required non-empty string of at most kMaxIdBytes.
    Result<std::string> Id(std::string_view name) const;
    // A required string (may be empty).
    Result<std::string> String(std::string_view name) const;
    // An optional string: nullopt when absent or null; with `empty_is_absent`, "" too.
    Result<std::optional<std::string>> OptionalString(std::string_view name,
                                                      bool empty_is_absent = false) const;
    // The value, or nullptr when absent or null.
    const boost::json::value* Find(std::string_view name) const;

    // The name as error messages show it: "allocation_pools[1].start" inside a nested object.
    std::string Name(std::string_view name) const { return prefix_ + std::string(name); }
    Error Invalid(std::string_view name, std::string_view problem) const;

private:
    boost::json::object obj_;
    std::string prefix_;
};

// kInvalidArgument "unknown field 'X'" for the first key of `obj` not in `allowed`.
Status CheckKnown(const boost::json::object& obj, std::initializer_list<std::string_view> allowed,
                  std::string_view prefix = "");

}  // namespace cogs::services::network::internal
