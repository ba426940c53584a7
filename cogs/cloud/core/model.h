// The in-memory desired state of the cloud: every resource as a JSON object keyed by kind and id,
// the quota usage of every project, the index from token hashes to tokens, and the indexes that
// answer the questions asked at every request without walking a whole kind (see "Indexes" below).
// Loaded from the store at start; every change is in the store before it is answered
// (Context::Persist and Context::StartWorkflow). Lives on the io thread: no locks, so quota checks
// and placement claims cannot race.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
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

// The fields of a kind that the model indexes (Model::Having): what deletes and lists ask by.
struct IndexedField {
    std::string_view kind;
    std::string_view field;
};
inline constexpr IndexedField kIndexedFields[] = {
    {kSubnet, "network_id"},       // a network's delete, a subnet's overlap check
    {kPort, "network_id"},         // a network's delete, a fixed IP's check
    {kPort, "subnet_id"},          // a subnet's delete
    {kServer, "host"},             // a host's drain and its servers
    {kServer, "server_group_id"},  // a server group's delete
    {kServer, "status"},           // lists by status (what is still BUILD, what is in ERROR)
    {kToken, "host"},              // a host's credential (its enrollment, core/credentials.h)
};

// Indexes. Besides the records, the model keeps answers to the questions asked on the io thread at
// every request, so that none of them walks every tenant's records:
//
//   OfProject(kind, project)    the records of one project (a tenant's list, a project's delete);
//   Having(kind, field, value)  the records whose body `field` is `value`, for kIndexedFields (a
//                               network's subnets and ports, a subnet's ports, a host's servers);
//   StatusCounts(kind)          how many records of a kind of kStatusKinds have each status (the
//                               cogs_resources gauge at a scrape).
//
// Sets are ordered by id (lists page through them with a marker) and hold pointers to the records,
// not copies: a server or a port costs ~200 bytes more (a set node per index it is in, and where it
// is filed), against ~2.6 KiB for the record itself (measured: the README's "Memory"). An empty value (a
// project-less record, a server without a host) is in no set.
//
// The indexes are the model's alone. Put and Erase keep them; so does a change made in place
// through a pointer the model handed out (Find, FindByIdOrName, Put's answer): such a record is
// looked at again at every read of its kind's indexes until the io-thread handler that obtained it
// has returned (the model hears of that through `end_of_turn`), so a change made before or after a
// read in the same handler is seen by the next read. What this asks of callers is what pointers into
// the model already asked (an erase ends them, and any later handler may erase): a Res* is not kept past the
// handler that obtained it; keep the id and Find it again. (Debug builds check every index against
// the records after each handler that changed one.)
//
// What still walks a whole kind, on purpose: the start-up load and settle (Cloud::Load), the
// reconciler's periodic pass and its stuck-work check, the periodic prune of Idempotency-Key records,
// admin lists without a project or an indexed filter (they stop after a page), and lookups by
// name in the small catalog kinds (projects, flavors, images).
class Model {
public:
    // Ordered by id; lookups by an id (a marker) without building a Res.
    struct ById {
        using is_transparent = void;
        bool operator()(const Res* a, const Res* b) const { return a->id < b->id; }
        bool operator()(const Res* a, std::string_view b) const { return a->id < b; }
        bool operator()(std::string_view a, const Res* b) const { return a < b->id; }
    };
    using Ids = std::set<const Res*, ById>;

    // `end_of_turn(fn)` runs `fn` on the io thread once the current handler has returned, never
    // inline, and not after the model is gone (Context passes its Post).
    explicit Model(std::function<void(std::function<void()>)> end_of_turn);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    Res* Find(std::string_view kind, const std::string& id);
    const Res* Find(std::string_view kind, const std::string& id) const;
    // Inserts or replaces; returns the stored one (stable until erased). A record's kind and id are
    // fixed once stored; its project changes by a Put (or in place, like any other field).
    //
    // Memory: a stored body holds exactly the room of its fields — made so here, and again at the
    // end of the turn for every record handed out for change (Find, FindByIdOrName, Put), whose
    // fields a change in place may have grown (boost::json grows an object by half again). So a
    // reference into a body (a json::value&, a string_view of it) is, like a Res*, not kept past the
    // handler that obtained it. What a server and a host cost: the README's "Memory".
    Res& Put(Res r);
    void Erase(std::string_view kind, const std::string& id);
    const std::map<std::string, Res>& All(std::string_view kind) const;
    // The first resource of `kind` whose body "name" is `name` (and project, if not empty). Walks
    // the kind: for the catalog's (projects, flavors, images).
    const Res* FindByName(std::string_view kind, const std::string& name,
                          const std::string& project = "") const;
    // By id, else (flavors and images) by name.
    Res* FindByIdOrName(std::string_view kind, const std::string& ref);

    // ---- indexes (see above) ----
    // A set answered stays valid until the next Put or Erase, or the next read after a change in
    // place (which refiles the record): do not change records while walking one.

    // The records of `kind` whose project is `project`.
    const Ids& OfProject(std::string_view kind, std::string_view project) const;
    // The records of `kind` whose body `field` is `value`; (kind, field) must be in kIndexedFields.
    const Ids& Having(std::string_view kind, std::string_view field, std::string_view value) const;
    // Whether (kind, field) is in kIndexedFields.
    static bool Indexed(std::string_view kind, std::string_view field);
    // Status -> how many records of `kind` have it (statuses no record has are left out).
    const std::map<std::string, int64_t, std::less<>>& StatusCounts(std::string_view kind) const;

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
    class Indexes;  // model.cc

    // A record handed out for change: looked at again at every index read of this turn.
    Res* Handed(Res* r);

    std::map<std::string, std::map<std::string, Res>, std::less<>> kinds_;
    std::map<std::string, Amount> usage_;
    std::unique_ptr<Indexes> indexes_;
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
