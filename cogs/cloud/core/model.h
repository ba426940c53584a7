// The in-memory desired state of the cloud: every resource as a JSON object keyed by kind and id,
// the quota usage of every project, and the index from token hashes to tokens. Loaded from the
// store at start; every change is in the store before it is answered (Context::Persist and
// Context::StartWorkflow). Lives on the io thread: no locks, so quota checks and placement claims
// cannot race.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/cloud/core/status.h"
#include "cogs/store/records.h"
#include "cogs/wire/input.h"

namespace cogs::cloud {

namespace json = boost::json;
using wire::Bool;
using wire::Int;
using wire::Str;
using wire::StrList;
using wire::ToArray;

// One resource. Keys of `body` that start with '_' are internal (never shown by the API).
struct Res {
    std::string kind;
    std::string id;
    std::string project;
    json::object body;

    // The status, typed; nullopt if the body's is none of S's.
    template <typename S>
    std::optional<S> status() const {
        return ParseStatus<S>(Str(body, "status"));
    }
    template <typename S>
    bool is(S s) const {
        return status<S>() == s;
    }
    template <typename S>
    void set_status(S s) {
        body["status"] = ToString(s);
    }
    // The status before a transitional one ("_prev_status"), to revert to or settle back to.
    template <typename S>
    void set_prev(S s) {
        body["_prev_status"] = ToString(s);
    }
    std::string status_text() const { return Str(body, "status"); }
};

// What a resource holds of its project's quota: one count per kind a tenant creates, and the
// sizes (vcpus, ram, gigabytes) of servers and volumes.
struct Amount {
    int64_t servers = 0, vcpus = 0, ram_mb = 0, volumes = 0, volume_gb = 0, ports = 0;
    int64_t networks = 0, subnets = 0, server_groups = 0;
};

// Every quota by its API name, in the order the API lists them.
struct QuotaName {
    std::string_view name;
    int64_t Amount::*field;
};
inline constexpr QuotaName kQuotas[] = {
    {"servers", &Amount::servers},
    {"vcpus", &Amount::vcpus},
    {"ram_mb", &Amount::ram_mb},
    {"volumes", &Amount::volumes},
    {"volume_gb", &Amount::volume_gb},
    {"ports", &Amount::ports},
    {"networks", &Amount::networks},
    {"subnets", &Amount::subnets},
    {"server_groups", &Amount::server_groups},
};
Amount DefaultLimits();

class Model {
public:
    Res* Find(std::string_view kind, const std::string& id);
    const Res* Find(std::string_view kind, const std::string& id) const;
    // Inserts or replaces; returns the stored one (stable until erased).
    Res& Put(Res r);
    void Erase(std::string_view kind, const std::string& id);
    const std::map<std::string, Res>& All(std::string_view kind) const;
    // The first resource of `kind` whose body "name" is `name` (and project, if not empty).
    const Res* FindByName(std::string_view kind, const std::string& name,
                          const std::string& project = "") const;
    // By id, else (flavors and images) by name.
    Res* FindByIdOrName(std::string_view kind, const std::string& ref);

    // The durable form of a resource, or of its erasure.
    static store::ResourceWrite Write(const Res& r);
    static store::ResourceWrite EraseWrite(std::string_view kind, const std::string& id);

    // Quota: the amount a resource holds ("_quota" true in its body).
    static Amount HeldBy(const Res& r);
    const Amount& Usage(const std::string& project) const;
    Amount Limits(const std::string& project) const;
    // Reserves `a` for `project` if every limit allows it; else kPermissionDenied with reason
    // "quota_exceeded" and the details resource, limit, in_use and requested.
    Status Reserve(const std::string& project, const Amount& a);
    void Release(const std::string& project, const Amount& a);
    // Counts `a` as used without checking the limits (usage loaded from the store).
    void Add(const std::string& project, const Amount& a);

    // Token hash -> token id.
    std::unordered_map<std::string, std::string> token_by_hash;

private:
    std::map<std::string, std::map<std::string, Res>, std::less<>> kinds_;
    std::map<std::string, Amount> usage_;
};

// The API's view of a resource: its body without internal keys.
json::object View(const Res& r);

// A server's volumes as committed: the ids of its "volume_ids" whose volume record names it as its
// server ("server_id"). A volume attaching to it is listed from the attach's request on (as Nova
// lists a volume once its attachment is reserved); an id whose volume went elsewhere is not. What a
// workflow on the server acts on (a delete's detach, an evacuation's re-attach) and what a delete
// frees.
std::vector<std::string> AttachedVolumes(const Model& m, const Res& server);
// The first of AttachedVolumes(server) that a workflow is attaching or detaching, or nullptr. While
// there is one, nothing else may act on the server's volumes: its delete is refused (409), and it is
// not evacuated, migrated or repaired until that ends (each of those fixes its list when it starts).
const Res* VolumeInFlight(const Model& m, const Res& server);

}  // namespace cogs::cloud
