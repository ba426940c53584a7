#include "cogs/services/kit/dispatch.h"

#include <algorithm>

#include "cogs/base/check.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {

ActionTable::ActionTable(Domain& domain) : domain_name_(domain.name()), actions_(domain.actions()) {
    for (size_t i = 0; i < actions_.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            COGS_CHECK(actions_[i].name != actions_[j].name && "an action declared twice");
        }
    }
}

std::vector<std::string> ActionTable::names() const {
    std::vector<std::string> out;
    out.reserve(actions_.size());
    for (const Action& a : actions_) {
        out.push_back(a.name);
    }
    return out;
}

// A linear scan: a domain has a handful of actions, and no hash beats comparing a few short names.
bool ActionTable::Has(std::string_view action) const {
    return std::any_of(actions_.begin(), actions_.end(), [&](const Action& a) { return a.name == action; });
}

Error ActionTable::Unknown(std::string_view action) const {
    return Error(ErrorCode::kNotFound, domain_name_ + " has no action '" + std::string(action) + "'");
}

Result<Done> ActionTable::Perform(std::string_view action, std::string_view input, Tx& tx) const {
    auto it =
        std::find_if(actions_.begin(), actions_.end(), [&](const Action& a) { return a.name == action; });
    if (it == actions_.end()) {
        return MakeError(Unknown(action));
    }
    COGS_ASSIGN_OR_RETURN(const wire::Input in, wire::Input::ParseAny(input, "input"));
    COGS_TRY(in.Known(it->fields));
    return it->perform(in, tx);
}

std::optional<http::Response> GetRecord(
    const http::Request& request, std::string_view prefix, std::string_view key,
    const std::function<std::optional<wire::json::object>(const std::string&)>& find) {
    const std::string path = request.Path();
    if (request.method != "GET" || !path.starts_with(prefix) || path.size() == prefix.size() ||
        path.find('/', prefix.size()) != std::string::npos) {
        return std::nullopt;
    }
    const std::string id = http::UrlDecode(std::string_view(path).substr(prefix.size()));
    if (auto record = find(id)) {
        return wire::Wrapped(200, key, std::move(*record));
    }
    return wire::ServiceError(Error(ErrorCode::kNotFound, "no " + std::string(key) + " '" + id + "'"));
}

}  // namespace cogs::services::kit
