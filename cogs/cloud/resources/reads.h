// Reads of the desired state, for every kind alike: GET /v1/<collection> (filters and pages) and
// GET /v1/<collection>/{id}, plus GET /v1/whoami. Answered from memory, filtered by what the
// caller may see (core/access.h): a resource of another project is not found.
//
// Lists: ?limit (1..1000, default 100), ?marker (the last id of the previous page; the answer's
// next_marker), and the filters name, status, host, project_id, network_id, server_id (a volume's
// server or a port's device); any other parameter is 400. A tenant's list walks its project's
// records only, an admin's those of the project or the network or host it names (the model's
// indexes, core/model.h), in id order either way.
#pragma once

#include <initializer_list>
#include <utility>

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Reads {
public:
    explicit Reads(const Context& ctx) : ctx_(ctx) {}

    void Whoami(Call call) const;
    // `collection` names the list's key ("server-groups" lists as "server_groups").
    void List(Call call, std::string_view collection, std::string_view kind) const;
    // A flavor or an image also by name; tokens to admins only.
    void Show(Call call, std::string_view kind) const;

private:
    // The index a list walks, or nullptr for the whole kind.
    using Filter = std::pair<std::string_view, std::string_view>;  // field, value ("": none)
    const Model::Ids* Candidates(const Principal& who, std::string_view kind, std::string_view project,
                                 std::initializer_list<Filter> filters) const;

    const Context& ctx_;
};

}  // namespace cogs::cloud
