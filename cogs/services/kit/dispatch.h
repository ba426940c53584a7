// What the kit derives from a domain's declarations (domain.h), for the service and for the
// domains' own tests: ActionTable, the list and the dispatch of its actions, and GetRecord, a read
// route for one kind of record.
//
// Shows Boost.JSON (through wire/input.h): include it from .cc files only.
//
// Threading: like the domain, on its service's io thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/http/server.h"
#include "cogs/services/kit/domain.h"
#include "cogs/wire/input.h"

namespace cogs::services::kit {

class ActionTable {
public:
    // Takes `domain`'s table (Domain::actions()); the domain must outlive it. A name declared twice
    // is a programming error (a fatal check).
    explicit ActionTable(Domain& domain);

    // The action names, in the table's order.
    std::vector<std::string> names() const;
    // Whether `action` is one of them.
    bool Has(std::string_view action) const;
    // kNotFound "<domain> has no action 'X'": the answer to any other name.
    Error Unknown(std::string_view action) const;

    // Reads `input` (JSON text; blank is {}) as an object of the action's fields and performs it.
    // Errors: Unknown(action); kInvalidArgument naming the field ("input: must be a JSON object",
    // "typo: unknown field"); whatever the action answers.
    Result<Done> Perform(std::string_view action, std::string_view input, Tx& tx) const;

private:
    std::string domain_name_;
    std::vector<Action> actions_;
};

// A Domain::Get route for one kind of record: GET <prefix><id> (the id percent-decoded, without a
// further '/') answers 200 {"<key>": <the record>} when `find(id)` has it, else the service's 404
// (wire::ServiceError) "no <key> '<id>'"; any other request is not this route (nullopt).
std::optional<http::Response> GetRecord(
    const http::Request& request, std::string_view prefix, std::string_view key,
    const std::function<std::optional<wire::json::object>(const std::string&)>& find);

}  // namespace cogs::services::kit
