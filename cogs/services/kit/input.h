// Checked access to an action's input: a JSON object whose every field must be known, and whose
// fields are read with their expected types. Every refusal is kInvalidArgument naming the field, as
// docs/service-protocol.md asks ("unknown field 'typo'", "size_gb: must be an integer >= 1").
//
// For domains (cogs/services/*): include it from .cc files only, since it shows Boost.JSON.
#pragma once

#include <boost/json/object.hpp>
#include <functional>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/http/server.h"

namespace cogs::services::kit {

class Input {
public:
    // `text` must be a JSON object whose fields are all in `known`.
    static Result<Input> Parse(std::string_view text, std::initializer_list<std::string_view> known);

    // A required identifier: 1..128 characters of [A-Za-z0-9._-], not starting with '.' (ids name
    // files and appear in URL paths).
    Result<std::string> Id(std::string_view field) const;
    // A required non-empty string.
    Result<std::string> String(std::string_view field) const;
    // An optional string: absent or null is nullopt.
    Result<std::optional<std::string>> OptionalString(std::string_view field) const;
    // A required integer >= min (a JSON number with an integral value).
    Result<int64_t> Int(std::string_view field, int64_t min) const;
    // A required array of ids (each checked like Id), duplicates removed, order kept.
    Result<std::vector<std::string>> IdList(std::string_view field) const;

private:
    explicit Input(boost::json::object o) : object_(std::move(o)) {}
    boost::json::object object_;
};

// Whether `id` is a valid identifier (see Input::Id).
bool ValidId(std::string_view id);

// A Domain::Get route for one kind of record: GET <prefix><id> answers 200 {"<key>": <the record>}
// when `find(id)` has it, else 404 {code, message}; any other request is not this route (nullopt).
std::optional<http::Response> GetRecord(const http::Request& request, std::string_view prefix, std::string_view key,
                                        const std::function<std::optional<boost::json::object>(const std::string&)>& find);

}  // namespace cogs::services::kit
