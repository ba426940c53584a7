// Boost.JSON helpers of the cloud component: reading request bodies field by field with errors
// that name the field, and writing timestamps. Internal: Boost.JSON stays inside cogs/cloud.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::cloud::internal {

namespace json = boost::json;

// kInvalidArgument "FIELD: WHAT"; the API turns the prefix into details.field.
Error FieldError(std::string_view field, std::string_view what);

// Parses a request body that must be a JSON object whose keys are all in `allowed` (an empty body
// is {}). Errors name the offending field.
Result<json::object> ParseBody(std::string_view body, std::initializer_list<std::string_view> allowed);

// Typed field readers. Required fields that are missing, and present fields of the wrong type or
// out of range, are kInvalidArgument naming the field.
Result<std::string> RequiredString(const json::object& o, std::string_view field, size_t max_len = 255);
Result<std::optional<std::string>> OptionalString(const json::object& o, std::string_view field,
                                                  size_t max_len = 255);
Result<int64_t> RequiredInt(const json::object& o, std::string_view field, int64_t min, int64_t max);
Result<std::optional<int64_t>> OptionalInt(const json::object& o, std::string_view field, int64_t min,
                                           int64_t max);
Result<std::vector<std::string>> OptionalStringList(const json::object& o, std::string_view field,
                                                    size_t max_items = 64);

// Reading fields of records the cloud itself wrote: a missing or mistyped field reads as empty/0.
std::string Str(const json::object& o, std::string_view field);
int64_t Int(const json::object& o, std::string_view field);
bool Bool(const json::object& o, std::string_view field);
std::vector<std::string> StrList(const json::object& o, std::string_view field);
json::array ToArray(const std::vector<std::string>& v);

// RFC 3339 UTC with milliseconds: 2026-11-27T10:00:00.123Z.
std::string Rfc3339(int64_t wall_ms);

// A random UUID (version 4).
std::string NewUuid();

}  // namespace cogs::cloud::internal
