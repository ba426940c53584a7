#include "cogs/cloud/core/model.h"

#include <algorithm>
#include <array>
#include <boost/json/serialize.hpp>
#include <utility>

#include "cogs/base/check.h"

namespace cogs::cloud {

Amount DefaultLimits() {
    return Amount{.servers = 50,
                  .vcpus = 200,
                  .ram_mb = 409600,
                  .volumes = 100,
                  .volume_gb = 5000,
                  .ports = 100,
                  .networks = 100,
                  .subnets = 100,
                  .server_groups = 10};
}

// ---- indexes ----
//
// Each record has an entry in `filed_`: the values it is filed under, as pointers to the keys of
// the sets it is in (so that it is found there again, and nothing is copied twice). Refiling a
// record compares those with its body now and moves it where they differ.

namespace {

// A string field of `body`, or "".
std::string_view TextOf(const json::object& body, std::string_view field) {
    const json::value* v = body.if_contains(field);
    return v != nullptr && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

constexpr size_t MaxFieldsOfAKind() {
    size_t most = 0;
    for (const auto& f : kIndexedFields) {
        size_t n = 0;
        for (const auto& g : kIndexedFields) {
            n += g.kind == f.kind ? 1 : 0;
        }
        most = std::max(most, n);
    }
    return most;
}
constexpr size_t kMaxFields = MaxFieldsOfAKind();

// Gives `body` exactly the room of its fields. A body built field by field, or grown by a change in
// place, holds up to half as many empty slots again (boost::json grows an object by 1.5x, and its
// hash index with it): ~0.1-0.4 KiB a server record (the README's "Memory"). A copy reserves its
// size exactly; moving it in keeps the storage.
void Compact(json::object& body) {
    if (body.capacity() > body.size()) {
        json::object exact(body, body.storage());
        body = std::move(exact);
    }
}

bool CountsStatus(std::string_view kind) {
    return std::find(std::begin(kStatusKinds), std::end(kStatusKinds), kind) != std::end(kStatusKinds);
}

}  // namespace

class Model::Indexes {
public:
    using Records = std::map<std::string, std::map<std::string, Res>, std::less<>>;

    Indexes(const Records& records, std::function<void(std::function<void()>)> end_of_turn)
        : records_(records), end_of_turn_(std::move(end_of_turn)) {}

    // `r` is stored, new or changed: filed under what it holds now.
    void Refile(const Res& r) {
        OfKind& k = Kind(r.kind);
        Filed& f = filed_[&r];
        Move(k.by_project, f.project, r.project, r);
        for (size_t i = 0; i < k.fields.size(); ++i) {
            Move(k.by_field[i], f.fields[i], TextOf(r.body, k.fields[i]), r);
        }
        if (k.counts_status) {
            Count(k.by_status, f.status, TextOf(r.body, "status"));
        }
    }

    // `r` is about to be erased.
    void Unfile(const Res& r) {
        auto it = filed_.find(&r);
        if (it == filed_.end()) return;
        OfKind& k = Kind(r.kind);
        Filed& f = it->second;
        Move(k.by_project, f.project, "", r);
        for (size_t i = 0; i < k.fields.size(); ++i) {
            Move(k.by_field[i], f.fields[i], "", r);
        }
        Count(k.by_status, f.status, "");
        if (f.handed) std::erase(k.handed, &r);
        filed_.erase(it);
    }

    // `r` was handed out for change: refiled at every read until the end of this turn.
    void Handed(const Res& r) {
        Filed& f = filed_.at(&r);
        if (f.handed) return;
        f.handed = true;
        Kind(r.kind).handed.push_back(&r);
        if (!turn_ending_) {
            turn_ending_ = true;
            end_of_turn_([this] { EndTurn(); });
        }
    }

    const Ids& OfProject(std::string_view kind, std::string_view project) {
        OfKind& k = Kind(kind);
        CatchUp(k);
        return In(k.by_project, project);
    }

    const Ids& Having(std::string_view kind, std::string_view field, std::string_view value) {
        OfKind& k = Kind(kind);
        auto f = std::find(k.fields.begin(), k.fields.end(), field);
        COGS_CHECK(f != k.fields.end() && "Model::Having: a field the model does not index");
        CatchUp(k);
        return In(k.by_field[static_cast<size_t>(f - k.fields.begin())], value);
    }

    const std::map<std::string, int64_t, std::less<>>& StatusCounts(std::string_view kind) {
        OfKind& k = Kind(kind);
        CatchUp(k);
        return k.by_status;
    }

private:
    // Looked up by a string_view of the body without a copy.
    struct TextHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    // value -> the records that have it. Hashed: a lookup compares one key, not a tree's worth of
    // ids; nodes stay put, so Filed's pointers to the keys do too.
    using Sets = std::unordered_map<std::string, Ids, TextHash, std::equal_to<>>;

    struct Filed {  // where a record is: the keys of its sets (nullptr: in none)
        const std::string* project = nullptr;
        std::array<const std::string*, kMaxFields> fields{};
        const std::string* status = nullptr;
        bool handed = false;  // this turn
    };

    struct OfKind {
        Sets by_project;
        std::vector<std::string_view> fields;  // of kIndexedFields, in its order
        std::array<Sets, kMaxFields> by_field;
        bool counts_status = false;
        std::map<std::string, int64_t, std::less<>> by_status;
        // Records of this kind handed out for change this turn: refiled at each read of this
        // kind's indexes (a read of another kind's has nothing of them to see).
        std::vector<const Res*> handed;
    };

    OfKind& Kind(std::string_view kind) {
        auto it = kinds_.find(kind);
        if (it == kinds_.end()) {
            it = kinds_.emplace(std::string(kind), OfKind{}).first;
            for (const auto& f : kIndexedFields) {
                if (f.kind == kind) it->second.fields.push_back(f.field);
            }
            it->second.counts_status = CountsStatus(kind);
        }
        return it->second;
    }

    static const Ids& In(const Sets& sets, std::string_view value) {
        static const Ids kNone;
        auto it = sets.find(value);
        return it == sets.end() ? kNone : it->second;
    }

    // Moves `r` from the set `at` names to the one of `now` ("": none).
    static void Move(Sets& sets, const std::string*& at, std::string_view now, const Res& r) {
        if (at != nullptr && *at == now) return;
        if (at != nullptr) {
            auto it = sets.find(*at);
            it->second.erase(&r);
            if (it->second.empty()) sets.erase(it);  // no key is kept for a value nobody has
            at = nullptr;
        }
        if (!now.empty()) {
            auto it = sets.find(now);
            if (it == sets.end()) it = sets.emplace(std::string(now), Ids{}).first;
            it->second.insert(it->second.end(), &r);  // at start records come in id order: no search
            at = &it->first;
        }
    }

    static void Count(std::map<std::string, int64_t, std::less<>>& counts, const std::string*& at,
                      std::string_view now) {
        if (at != nullptr && *at == now) return;
        if (at != nullptr) {
            auto it = counts.find(*at);
            if (--it->second == 0) counts.erase(it);
            at = nullptr;
        }
        if (!now.empty()) {
            auto it = counts.find(now);
            if (it == counts.end()) it = counts.emplace(std::string(now), 0).first;
            ++it->second;
            at = &it->first;
        }
    }

    // What was changed in place in records of `k`'s kind since the last read is seen now.
    void CatchUp(OfKind& k) {
        for (const Res* r : k.handed) {
            Refile(*r);
        }
    }

    // The handler that obtained the pointers has returned: what it changed is seen, and nothing it
    // held can change any more.
    void EndTurn() {
        for (auto& [kind, k] : kinds_) {
            CatchUp(k);
        }
        COGS_DCHECK(Agree());
        for (auto& [kind, k] : kinds_) {
            for (const Res* r : k.handed) {
                filed_.at(r).handed = false;
                // Nothing holds into its body any more (a Res* ends with the handler): its room is
                // made exact again. (The model's own record: the const is the index's view of it.)
                Compact(const_cast<Res*>(r)->body);
            }
            k.handed.clear();
        }
        turn_ending_ = false;
    }

    // The indexes are those that filing every record afresh makes (debug builds).
    bool Agree() {
        Indexes fresh(records_, nullptr);
        for (const auto& [kind, records] : records_) {
            for (const auto& [id, r] : records) {
                fresh.Refile(r);
            }
        }
        for (const auto& [kind, k] : fresh.kinds_) {
            Kind(kind);
        }
        for (const auto& [kind, k] : kinds_) {
            const OfKind& want = fresh.Kind(kind);
            if (k.by_project != want.by_project || k.by_field != want.by_field ||
                k.by_status != want.by_status) {
                return false;
            }
        }
        auto same = [](const std::string* a, const std::string* b) {
            return a == nullptr ? b == nullptr : b != nullptr && *a == *b;
        };
        for (const auto& [r, want] : fresh.filed_) {
            auto f = filed_.find(r);
            if (f == filed_.end() || !same(f->second.project, want.project) ||
                !same(f->second.status, want.status)) {
                return false;
            }
            for (size_t i = 0; i < kMaxFields; ++i) {
                if (!same(f->second.fields[i], want.fields[i])) return false;
            }
        }
        return filed_.size() == fresh.filed_.size();
    }

    const Records& records_;
    std::function<void(std::function<void()>)> end_of_turn_;
    std::map<std::string, OfKind, std::less<>> kinds_;
    std::unordered_map<const Res*, Filed> filed_;
    bool turn_ending_ = false;
};

Model::Model(std::function<void(std::function<void()>)> end_of_turn)
    : indexes_(std::make_unique<Indexes>(kinds_, std::move(end_of_turn))) {}

Model::~Model() = default;

Res* Model::Handed(Res* r) {
    if (r != nullptr) indexes_->Handed(*r);
    return r;
}

Res* Model::Find(std::string_view kind, const std::string& id) {
    return Handed(const_cast<Res*>(std::as_const(*this).Find(kind, id)));
}

const Res* Model::Find(std::string_view kind, const std::string& id) const {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) {
        return nullptr;
    }
    auto it = k->second.find(id);
    return it == k->second.end() ? nullptr : &it->second;
}

Res& Model::Put(Res r) {
    auto it = kinds_[r.kind].try_emplace(r.id).first;
    it->second = std::move(r);
    Compact(it->second.body);
    indexes_->Refile(it->second);
    return *Handed(&it->second);
}

void Model::Erase(std::string_view kind, const std::string& id) {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) {
        return;
    }
    auto it = k->second.find(id);
    if (it != k->second.end()) {
        indexes_->Unfile(it->second);
        k->second.erase(it);
    }
}

const std::map<std::string, Res>& Model::All(std::string_view kind) const {
    static const std::map<std::string, Res> kEmpty;
    auto k = kinds_.find(kind);
    return k == kinds_.end() ? kEmpty : k->second;
}

const Res* Model::FindByName(std::string_view kind, const std::string& name,
                             const std::string& project) const {
    for (const auto& [id, r] : All(kind)) {
        if (Str(r.body, "name") == name && (project.empty() || r.project == project)) {
            return &r;
        }
    }
    return nullptr;
}

Res* Model::FindByIdOrName(std::string_view kind, const std::string& ref) {
    const Res* r = std::as_const(*this).Find(kind, ref);
    if (r == nullptr && (kind == kFlavor || kind == kImage)) {
        r = FindByName(kind, ref);
    }
    return Handed(const_cast<Res*>(r));
}

const Model::Ids& Model::OfProject(std::string_view kind, std::string_view project) const {
    return indexes_->OfProject(kind, project);
}

const Model::Ids& Model::Having(std::string_view kind, std::string_view field, std::string_view value) const {
    return indexes_->Having(kind, field, value);
}

bool Model::Indexed(std::string_view kind, std::string_view field) {
    return std::any_of(std::begin(kIndexedFields), std::end(kIndexedFields),
                       [&](const IndexedField& f) { return f.kind == kind && f.field == field; });
}

const std::map<std::string, int64_t, std::less<>>& Model::StatusCounts(std::string_view kind) const {
    return indexes_->StatusCounts(kind);
}

store::ResourceWrite Model::Write(const Res& r) {
    return store::ResourceWrite{r.kind, r.id, r.project, json::serialize(r.body), false};
}

store::ResourceWrite Model::EraseWrite(std::string_view kind, const std::string& id) {
    return store::ResourceWrite{std::string(kind), id, "", "", true};
}

Amount Model::HeldBy(const Res& r) {
    Amount a;
    if (!Bool(r.body, "_quota")) {
        return a;
    }
    if (r.kind == kServer) {
        a.servers = 1;
        a.vcpus = Int(r.body, "_vcpus");
        a.ram_mb = Int(r.body, "_ram_mb");
    } else if (r.kind == kVolume) {
        a.volumes = 1;
        a.volume_gb = Int(r.body, "size_gb");
    } else if (r.kind == kPort) {
        a.ports = 1;
    } else if (r.kind == kNetwork) {
        a.networks = 1;
    } else if (r.kind == kSubnet) {
        a.subnets = 1;
    } else if (r.kind == kGroup) {
        a.server_groups = 1;
    }
    return a;
}

const Amount& Model::Usage(const std::string& project) const {
    static const Amount kZero;
    auto it = usage_.find(project);
    return it == usage_.end() ? kZero : it->second;
}

Amount Model::Limits(const std::string& project) const {
    Amount limits = DefaultLimits();
    const Res* p = Find(kProject, project);
    if (p != nullptr) {
        if (const auto* q = p->body.if_contains("quotas"); q != nullptr && q->is_object()) {
            for (const auto& [name, field] : kQuotas) {
                if (q->get_object().contains(name)) {
                    limits.*field = Int(q->get_object(), name);
                }
            }
        }
    }
    return limits;
}

Status Model::Reserve(const std::string& project, const Amount& a) {
    Amount limits = Limits(project);
    Amount& used = usage_[project];
    for (const auto& [name, field] : kQuotas) {
        const int64_t req = a.*field;
        const int64_t limit = limits.*field;
        const int64_t in_use = used.*field;
        if (req > 0 && limit >= 0 && in_use + req > limit) {
            Error e(ErrorCode::kPermissionDenied,
                    "quota exceeded: " + std::string(name) + " limit " + std::to_string(limit) + ", in use " +
                        std::to_string(in_use) + ", requested " + std::to_string(req));
            e.reason = "quota_exceeded";
            e.With("resource", std::string(name))
                .With("limit", limit)
                .With("in_use", in_use)
                .With("requested", req);
            return MakeError(std::move(e));
        }
    }
    Add(project, a);
    return Ok();
}

void Model::Add(const std::string& project, const Amount& a) {
    Amount& used = usage_[project];
    for (const auto& q : kQuotas) {
        used.*q.field += a.*q.field;
    }
}

void Model::Release(const std::string& project, const Amount& a) {
    Amount& used = usage_[project];
    for (const auto& q : kQuotas) {
        used.*q.field -= a.*q.field;
    }
}

json::object View(const Res& r) {
    json::object o;
    for (const auto& kv : r.body) {
        if (!kv.key().starts_with("_")) {
            o.emplace(kv.key(), kv.value());
        }
    }
    return o;
}

std::vector<std::string> AttachedVolumes(const Model& m, const Res& server) {
    std::vector<std::string> ids;
    for (auto& id : StrList(server.body, "volume_ids")) {
        const Res* v = m.Find(kVolume, id);
        if (v != nullptr && Str(v->body, "server_id") == server.id) {
            ids.push_back(std::move(id));
        }
    }
    return ids;
}

const Res* VolumeInFlight(const Model& m, const Res& server) {
    for (const auto& id : AttachedVolumes(m, server)) {
        const Res* v = m.Find(kVolume, id);
        if (v->is(VolumeStatus::kAttaching) || v->is(VolumeStatus::kDetaching)) {
            return v;
        }
    }
    return nullptr;
}

}  // namespace cogs::cloud
