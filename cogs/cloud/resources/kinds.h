// The resource kinds declared in configuration (kind_spec.h; docs/extending.md): for each,
//
//   GET    /v1/<plural>                 list (the caller's project; an admin's: every project,
//                                       ?project_id=), with ?name, ?status, ?limit, ?marker
//   POST   /v1/<plural>                 create: the body's fields checked against the spec (400
//                                       naming the field: unknown, missing, wrong type, out of
//                                       range), a quota unit reserved, the record BUILD, the
//                                       kind's create workflow started; ACTIVE when it succeeds,
//                                       ERROR with the reason when it does not
//   GET    /v1/<plural>/{id}            show
//   DELETE /v1/<plural>/{id}            DELETING, the delete workflow; gone (the quota freed) or ERROR
//   GET    /v1/<plural>/{id}/events     its history
//
// with the tenancy, roles, Idempotency-Key, audit and events of every kind (the same functions:
// AdmitCreate, StartCreate, FindToChange, Reads, History). The workflows' input is {"id",
// "project_id", "<kind>": {the record's fields}}.
//
// Set() replaces the declared kinds, all or nothing: refused (naming the spec's file and line) when
// a kind or plural takes a built-in name or is declared twice, or when a kind that still has
// records would go (delete them first). A kind keeps its settle functions once declared, so a
// workflow that started before a reload still settles its record. (At start the kinds are set before
// the store is loaded: a kind whose file went while cogsd was down leaves its records in the store,
// unserved, until it is declared again.)
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "cogs/cloud/kind_spec.h"
#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Reads;
class History;

class Kinds {
public:
    Kinds(Context& ctx, Reads& reads, History& history);

    // `builtin` is every first segment of the API's own paths (servers, networks, whoami, ...).
    void SetBuiltinCollections(std::set<std::string> builtin) { builtin_ = std::move(builtin); }
    // Checks `specs`; with `apply`, takes them.
    Status Set(const std::vector<KindSpec>& specs, bool apply);

    // The routes' handlers: `collection` is the path's second segment; one that is no declared kind
    // answers 404 "no route".
    void List(Call call);
    void Create(Call call);
    void Show(Call call);
    void Delete(Call call);
    void Events(Call call);

private:
    const KindSpec* Of(const Call& call) const;
    // The record's fields from a request's body, or a 400 naming the field.
    Result<json::object> Fields(const KindSpec& spec, const wire::Input& in) const;
    void Settle(Settlement& s, const std::string& kind, bool create);

    Context& ctx_;
    Reads& reads_;
    History& history_;
    std::set<std::string> builtin_;
    std::map<std::string, KindSpec, std::less<>> by_plural_;
    std::set<std::string> settled_types_;  // workflow types whose settle function is registered
};

}  // namespace cogs::cloud
