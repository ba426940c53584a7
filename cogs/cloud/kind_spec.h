// A resource kind declared in configuration (cogsd's kinds.d, parsed by cogs/extend;
// docs/extending.md), as a Kubernetes CRD with workflows for its controllers: cogsd serves
// /v1/<plural> for it with the same tenancy, roles, quotas, Idempotency-Key, validation, events and
// settling as a built-in kind (cogs/cloud/resources/kinds.h does).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

namespace cogs::cloud {

// One field of a record of the kind, as a request gives it and the record keeps it.
struct FieldSpec {
    enum class Type { kString, kInteger, kBoolean, kStrings };
    std::string name;
    Type type = Type::kString;
    bool required = false;
    int64_t max_length = 255;                                   // kString, and each item of kStrings
    std::vector<std::string> one_of;                            // kString: the values allowed (empty: any)
    int64_t minimum = std::numeric_limits<int64_t>::min() / 4;  // kInteger
    int64_t maximum = std::numeric_limits<int64_t>::max() / 4;  // kInteger
    int64_t max_items = 64;                                     // kStrings
    std::optional<boost::json::value> default_value;            // what an absent optional field takes
};

struct KindSpec {
    std::string kind;    // singular: the records' kind, the events' resource_kind, {"<kind>": ...}
    std::string plural;  // the collection (/v1/<plural>), the list's key and the quota's name
    std::vector<FieldSpec> fields;
    int64_t quota = -1;  // records per project unless the project's quotas say otherwise; -1: none
    // Workflow types (workflows.d): their input is {"id", "project_id", "<kind>": {the fields}}.
    std::string create_workflow;
    std::string delete_workflow;
    std::string origin;  // "<file>:<line>"
};

}  // namespace cogs::cloud
