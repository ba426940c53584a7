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
#include <unordered_set>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/cloud/core/frozen.h"
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
    // The workflow whose end this record waits for, or "": the one it names while its status is
    // transitional, or a failed one an admin retried ("_retry_of", Workflows::Retry).
    std::string awaited_workflow() const {
        std::string wf = Str(body, "workflow_id");
        return !wf.empty() && (Transitional(kind, status_text()) || Str(body, "_retry_of") == wf) ? wf : "";
    }
};

// What a resource holds of its project's quota: one count per kind a tenant creates, and the
// sizes (vcpus, ram, gigabytes) of servers and volumes.
struct Amount {
    int64_t servers = 0, vcpus = 0, ram_mb = 0, volumes = 0, volume_gb = 0, ports = 0;
    int64_t networks = 0, subnets = 0, server_groups = 0;
    // Records of the kinds declared in configuration (kinds.h), by their plural (the quota's name).
    std::map<std::string, int64_t, std::less<>> kinds{};
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
    {kToken, "user_id"},           // a user's tokens (its delete revokes them)
    {kUser, "name"},               // a password login's lookup (FindByName)
    {kKeypair, "name"},            // a key pair by name in its project (a server's key_name)
};

// Frozen records. Between turns the model keeps each record frozen (core/frozen.h: ~0.3 KiB for a
// server, not 2.6), and thaws it into a Res when a handler asks for it: Find, FindByIdOrName,
// FindByName, Put, and each member of an index set as it is reached. A thawed record is the same
// Res (the same pointer) for the rest of the handler, whoever asks; when the handler has returned
// (the model hears of that through `end_of_turn`) the records handed out for change (Find,
// FindByIdOrName, Put) are frozen again, with whatever was changed in them, and every thawed Res is
// freed. So a Res* — or a reference into its body — is not kept past the handler that obtained
// it: keep the id and Find it again. (What pointers into the model always asked, since any later
// handler may erase; now a kept one is freed memory, which the sanitizer build reports.)
//
// A walk over a whole kind (All) does not thaw into the handler's records: it thaws each record in
// turn into the walk's own, valid until the walk moves on (a record already thawed this turn is
// given as it is, changes and all). So a pass over every server holds one thawed record at a time.
//
// Indexes. Besides the records, the model keeps answers to the questions asked on the io thread at
// every request, so that none of them walks every tenant's records:
//
//   OfProject(kind, project)    the records of one project (a tenant's list, a project's delete);
//   Having(kind, field, value)  the records whose body `field` is `value`, for kIndexedFields (a
//                               network's subnets and ports, a subnet's ports, a host's servers);
//   StatusCounts(kind)          how many records of a kind of kStatusKinds have each status (the
//                               cogs_resources gauge at a scrape).
//
// Sets are ordered by id (lists page through them with a marker) and hold pointers to the stored
// records, not copies; a member is thawed only when it is reached. An empty value (a project-less
// record, a server without a host) is in no set.
//
// The indexes are the model's alone. Put and Erase keep them; so does a change made in place
// through a pointer the model handed out (Find, FindByIdOrName, Put's answer): such a record is
// looked at again at every read of its kind's indexes until the end of the turn, so a change made
// before or after a read in the same handler is seen by the next read. (Debug builds check every
// index against the records after each handler that changed one.)
//
// What still walks a whole kind, on purpose: the start-up settle (Cloud::Load), the reconciler's
// periodic pass and its stuck-work check, the periodic prune of Idempotency-Key records, admin lists
// without a project or an indexed filter (they stop after a page), and lookups by name in the small
// catalog kinds (projects, flavors, images).
class Model {
    class Indexes;  // model.cc

public:
    // A stored record: frozen, and thawed while a handler has it.
    struct Slot {
        Frozen frozen;
        mutable std::unique_ptr<Res> thawed;  // this turn's, if any
    };
    using Records = std::map<std::string, Slot, std::less<>>;  // one kind's, by id
    using Stored = Records::value_type;

    // An index's set: records ordered by id, each thawed as an iterator reaches it (a const Res*,
    // valid until the end of the turn); lookups by an id (a marker) without thawing.
    class Ids {
        struct ById {
            using is_transparent = void;
            bool operator()(const Stored* a, const Stored* b) const { return a->first < b->first; }
            bool operator()(const Stored* a, std::string_view b) const { return a->first < b; }
            bool operator()(std::string_view a, const Stored* b) const { return a < b->first; }
        };
        using Set = std::set<const Stored*, ById>;

    public:
        class const_iterator {
        public:
            using iterator_category = std::bidirectional_iterator_tag;
            using value_type = const Res*;
            using difference_type = std::ptrdiff_t;
            using pointer = void;
            using reference = const Res*;

            const_iterator() = default;
            const Res* operator*() const { return ids_->model_->Thaw(ids_->kind_, **it_); }
            const_iterator& operator++() {
                ++it_;
                return *this;
            }
            const_iterator operator++(int) {
                auto was = *this;
                ++it_;
                return was;
            }
            bool operator==(const const_iterator& o) const { return it_ == o.it_; }

        private:
            friend class Ids;
            const_iterator(const Ids* ids, Set::const_iterator it) : ids_(ids), it_(it) {}
            const Ids* ids_ = nullptr;
            Set::const_iterator it_;
        };

        const_iterator begin() const { return {this, set_.begin()}; }
        const_iterator end() const { return {this, set_.end()}; }
        const_iterator upper_bound(std::string_view id) const { return {this, set_.upper_bound(id)}; }
        size_t size() const { return set_.size(); }
        bool empty() const { return set_.empty(); }
        bool operator==(const Ids& o) const { return set_ == o.set_; }

    private:
        friend class Indexes;
        Set set_;
        const Model* model_ = nullptr;
        std::string_view kind_;
    };

    // A kind's records in id order, each thawed when reached into the walk's own Res (valid until the
    // iterator moves on; one thawed this turn is given as it is). `*it` is {id, record}, so
    // `for (const auto& [id, r] : model.All(kind))` reads as a map's walk.
    class Walk {
    public:
        struct Entry {
            const std::string& first;
            const Res& second;
        };
        class const_iterator {
        public:
            const_iterator(const Walk* walk, Records::const_iterator it) : walk_(walk), it_(it) {}
            const_iterator(const const_iterator& o) : walk_(o.walk_), it_(o.it_) {}
            const_iterator& operator=(const const_iterator& o) {
                walk_ = o.walk_;
                it_ = o.it_;
                temp_.reset();
                return *this;
            }
            Entry operator*() const;
            struct Arrow {
                Entry e;
                const Entry* operator->() const { return &e; }
            };
            Arrow operator->() const { return {**this}; }
            const_iterator& operator++() {
                ++it_;
                return *this;
            }
            bool operator==(const const_iterator& o) const { return it_ == o.it_; }

        private:
            const Walk* walk_;
            Records::const_iterator it_;
            mutable std::unique_ptr<Res> temp_;  // the record reached, thawed for this walk
            mutable const Stored* temp_of_ = nullptr;
        };

        const_iterator begin() const { return {this, records_->begin()}; }
        const_iterator end() const { return {this, records_->end()}; }
        const_iterator lower_bound(std::string_view id) const { return {this, records_->lower_bound(id)}; }
        const_iterator upper_bound(std::string_view id) const { return {this, records_->upper_bound(id)}; }
        size_t size() const { return records_->size(); }
        bool empty() const { return records_->empty(); }

    private:
        friend class Model;
        Walk(const Model* model, std::string_view kind, const Records* records)
            : model_(model), kind_(kind), records_(records) {}
        const Model* model_;
        std::string_view kind_;
        const Records* records_;
    };

    // `end_of_turn(fn)` runs `fn` on the io thread once the current handler has returned, never
    // inline, and not after the model is gone (Context passes its Post).
    explicit Model(std::function<void(std::function<void()>)> end_of_turn);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    Res* Find(std::string_view kind, const std::string& id);
    const Res* Find(std::string_view kind, const std::string& id) const;
    // Whether a record is there, without thawing it (a heartbeat's check of its host).
    bool Has(std::string_view kind, std::string_view id) const { return Lookup(kind, id) != nullptr; }
    // Inserts or replaces; returns the stored one (this turn's: see "Frozen records"). A record's
    // kind and id are fixed once stored; its project changes by a Put (or in place, like any other
    // field). A record replaced in the turn it was thawed keeps its Res (the same pointer).
    Res& Put(Res r);
    // As Put, for the start-up load: the record is frozen at once and not handed out, so that a
    // whole store's records are never thawed at the same time.
    void Load(Res r);
    void Erase(std::string_view kind, const std::string& id);
    Walk All(std::string_view kind) const;
    // The first resource of `kind` whose body "name" is `name` (and project, if not empty). Walks
    // the kind (for the catalog's: projects, flavors, images), but for a kind whose "name" is in
    // kIndexedFields (users, key pairs), which it finds by the index.
    const Res* FindByName(std::string_view kind, const std::string& name,
                          const std::string& project = "") const;
    // By id, else (flavors and images) by name; a key pair by name in `project` (names are unique
    // in a project only).
    Res* FindByIdOrName(std::string_view kind, const std::string& ref, const std::string& project = "");

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
    // The default limits of the kinds declared in configuration (plural -> records per project; -1:
    // none), which a project's "quotas" override like any other.
    void SetKindLimits(std::map<std::string, int64_t, std::less<>> limits) {
        kind_limits_ = std::move(limits);
    }
    const std::map<std::string, int64_t, std::less<>>& kind_limits() const { return kind_limits_; }

    // Token hash -> token id.
    std::unordered_map<std::string, std::string> token_by_hash;

private:
    const Stored* Lookup(std::string_view kind, std::string_view id) const;
    // `s` thawed for the rest of the turn.
    Res* Thaw(std::string_view kind, const Stored& s) const;
    // `s` thawed into `out` (a walk's, not the turn's).
    void ThawInto(std::string_view kind, const Stored& s, Res& out) const;
    // `s` thawed for the turn and handed out for change.
    Res* Hand(std::string_view kind, const Stored* s);
    void TurnBegun() const;
    void EndTurn();

    std::function<void(std::function<void()>)> end_of_turn_;
    std::map<std::string, Records, std::less<>> kinds_;
    std::map<std::string, Amount> usage_;
    std::map<std::string, int64_t, std::less<>> kind_limits_;
    mutable FrozenKeys keys_;
    std::unique_ptr<Indexes> indexes_;
    mutable std::unordered_set<const Stored*> thawed_;  // this turn's
    mutable bool turn_ending_ = false;
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
