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

bool CountsStatus(std::string_view kind) {
    return std::find(std::begin(kStatusKinds), std::end(kStatusKinds), kind) != std::end(kStatusKinds);
}

}  // namespace

class Model::Indexes {
public:
    explicit Indexes(const Model& model) : model_(model) {}

    // `s` is stored, new or changed, and `r` is what it holds now: filed under that.
    void Refile(const Stored& s, const Res& r) {
        OfKind& k = Kind(r.kind);
        Filed& f = filed_[&s];
        Move(k, k.by_project, f.project, r.project, s);
        for (size_t i = 0; i < k.fields.size(); ++i) {
            Move(k, k.by_field[i], f.fields[i], TextOf(r.body, k.fields[i]), s);
        }
        if (k.counts_status) {
            Count(k.by_status, f.status, TextOf(r.body, "status"));
        }
    }

    // `s` is about to be erased.
    void Unfile(std::string_view kind, const Stored& s) {
        auto it = filed_.find(&s);
        if (it == filed_.end()) return;
        OfKind& k = Kind(kind);
        Filed& f = it->second;
        Move(k, k.by_project, f.project, "", s);
        for (size_t i = 0; i < k.fields.size(); ++i) {
            Move(k, k.by_field[i], f.fields[i], "", s);
        }
        Count(k.by_status, f.status, "");
        if (f.handed) std::erase(k.handed, &s);
        filed_.erase(it);
    }

    // `s` (thawed) was handed out for change: refiled at every read until the end of this turn.
    void Handed(std::string_view kind, const Stored& s) {
        Filed& f = filed_.at(&s);
        if (f.handed) return;
        f.handed = true;
        Kind(kind).handed.push_back(&s);
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

    // The handler that obtained the records has returned: what it changed is seen, and `freeze` is
    // given each record it had for change.
    template <typename Freeze>
    void EndTurn(Freeze freeze) {
        for (auto& [kind, k] : kinds_) {
            CatchUp(k);
        }
        COGS_DCHECK(Agree());
        for (auto& [kind, k] : kinds_) {
            for (const Stored* s : k.handed) {
                filed_.at(s).handed = false;
                freeze(*s);
            }
            k.handed.clear();
        }
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
        std::string_view kind;  // the key of kinds_ it is under
        Sets by_project;
        std::vector<std::string_view> fields;  // of kIndexedFields, in its order
        std::array<Sets, kMaxFields> by_field;
        bool counts_status = false;
        std::map<std::string, int64_t, std::less<>> by_status;
        // Records of this kind handed out for change this turn: refiled at each read of this
        // kind's indexes (a read of another kind's has nothing of them to see).
        std::vector<const Stored*> handed;
    };

    OfKind& Kind(std::string_view kind) {
        auto it = kinds_.find(kind);
        if (it == kinds_.end()) {
            it = kinds_.emplace(std::string(kind), OfKind{}).first;
            it->second.kind = it->first;
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

    // Moves `s` from the set `at` names to the one of `now` ("": none).
    void Move(const OfKind& k, Sets& sets, const std::string*& at, std::string_view now, const Stored& s) {
        if (at != nullptr && *at == now) return;
        if (at != nullptr) {
            auto it = sets.find(*at);
            it->second.set_.erase(&s);
            if (it->second.empty()) sets.erase(it);  // no key is kept for a value nobody has
            at = nullptr;
        }
        if (!now.empty()) {
            auto it = sets.find(now);
            if (it == sets.end()) {
                it = sets.emplace(std::string(now), Ids{}).first;
                it->second.model_ = &model_;
                it->second.kind_ = k.kind;
            }
            it->second.set_.insert(it->second.set_.end(),
                                   &s);  // at start records come in id order: no search
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
        for (const Stored* s : k.handed) {
            Refile(*s, *s->second.thawed);
        }
    }

    // The indexes are those that filing every record afresh makes (debug builds).
    // Every record thawed this turn is filed where its body says (debug builds). Only those: a
    // record nobody thawed is as it was frozen, filed then; one thawed read-only and changed
    // anyway (through a cast, or a pointer kept from an earlier turn) shows here. Filing every
    // record afresh at every turn made the sanitizer build's io thread several times slower.
    bool Agree() {
        auto same = [](const std::string* a, std::string_view b) {
            return a == nullptr ? b.empty() : !b.empty() && *a == b;
        };
        for (const Stored* s : model_.thawed_) {
            const Res& r = *s->second.thawed;
            auto f = filed_.find(s);
            if (f == filed_.end()) return false;
            OfKind& k = Kind(r.kind);
            if (!same(f->second.project, r.project)) return false;
            for (size_t i = 0; i < k.fields.size(); ++i) {
                if (!same(f->second.fields[i], TextOf(r.body, k.fields[i]))) return false;
            }
            if (k.counts_status && !same(f->second.status, TextOf(r.body, "status"))) return false;
        }
        return true;
    }

    const Model& model_;
    std::map<std::string, OfKind, std::less<>> kinds_;
    std::unordered_map<const Stored*, Filed> filed_;
};

Model::Model(std::function<void(std::function<void()>)> end_of_turn)
    : end_of_turn_(std::move(end_of_turn)), indexes_(std::make_unique<Indexes>(*this)) {}

Model::~Model() = default;

const Model::Stored* Model::Lookup(std::string_view kind, std::string_view id) const {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) return nullptr;
    auto it = k->second.find(id);
    return it == k->second.end() ? nullptr : &*it;
}

void Model::ThawInto(std::string_view kind, const Stored& s, Res& out) const {
    out.kind = kind;
    out.id = s.first;
    s.second.frozen.Thaw(keys_, out.project, out.body);
}

Res* Model::Thaw(std::string_view kind, const Stored& s) const {
    if (s.second.thawed == nullptr) {
        s.second.thawed = std::make_unique<Res>();
        ThawInto(kind, s, *s.second.thawed);
        thawed_.insert(&s);
        TurnBegun();
    }
    return s.second.thawed.get();
}

Res* Model::Hand(std::string_view kind, const Stored* s) {
    if (s == nullptr) return nullptr;
    Res* r = Thaw(kind, *s);
    indexes_->Handed(kind, *s);
    return r;
}

void Model::TurnBegun() const {
    if (!turn_ending_) {
        turn_ending_ = true;
        end_of_turn_([this] { const_cast<Model*>(this)->EndTurn(); });
    }
}

void Model::EndTurn() {
    turn_ending_ = false;
    indexes_->EndTurn([this](const Stored& s) {
        // Nothing holds into it any more (a Res* ends with the handler).
        // (The model's own record: the const is the index's view of it.)
        const_cast<Slot&>(s.second).frozen = Frozen(s.second.thawed->project, s.second.thawed->body, keys_);
    });
    for (const Stored* s : thawed_) {
        s->second.thawed.reset();
    }
    thawed_.clear();
}

Model::Walk::Entry Model::Walk::const_iterator::operator*() const {
    const Stored& s = *it_;
    if (s.second.thawed != nullptr) return {s.first, *s.second.thawed};
    if (temp_of_ != &s || temp_ == nullptr) {
        if (temp_ == nullptr) temp_ = std::make_unique<Res>();
        walk_->model_->ThawInto(walk_->kind_, s, *temp_);
        temp_of_ = &s;
    }
    return {s.first, *temp_};
}

Res* Model::Find(std::string_view kind, const std::string& id) { return Hand(kind, Lookup(kind, id)); }

const Res* Model::Find(std::string_view kind, const std::string& id) const {
    const Stored* s = Lookup(kind, id);
    return s == nullptr ? nullptr : Thaw(kind, *s);
}

Res& Model::Put(Res r) {
    auto& records = kinds_[r.kind];
    Stored& s = *records.try_emplace(r.id).first;
    const std::string_view kind = kinds_.find(r.kind)->first;
    if (s.second.thawed != nullptr) {
        *s.second.thawed = std::move(r);  // the same Res: a pointer to it this turn stays good
    } else {
        s.second.thawed = std::make_unique<Res>(std::move(r));
        thawed_.insert(&s);
        TurnBegun();
    }
    indexes_->Refile(s, *s.second.thawed);
    return *Hand(kind, &s);
}

void Model::Load(Res r) {
    auto& records = kinds_[r.kind];
    Stored& s = *records.try_emplace(r.id).first;
    if (s.second.thawed != nullptr) {
        Put(std::move(r));
        return;
    }
    indexes_->Refile(s, r);
    s.second.frozen = Frozen(r.project, r.body, keys_);
}

void Model::Erase(std::string_view kind, const std::string& id) {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) {
        return;
    }
    auto it = k->second.find(id);
    if (it != k->second.end()) {
        indexes_->Unfile(kind, *it);
        thawed_.erase(&*it);
        k->second.erase(it);
    }
}

Model::Walk Model::All(std::string_view kind) const {
    static const Records kEmpty;
    auto k = kinds_.find(kind);
    return k == kinds_.end() ? Walk(this, kind, &kEmpty) : Walk(this, k->first, &k->second);
}

const Res* Model::FindByName(std::string_view kind, const std::string& name,
                             const std::string& project) const {
    if (Indexed(kind, "name")) {
        for (const Res* r : Having(kind, "name", name)) {
            if (project.empty() || r->project == project) {
                return r;  // thawed for the turn, as Find's
            }
        }
        return nullptr;
    }
    const Walk all = All(kind);
    for (auto it = all.begin(); it != all.end(); ++it) {
        const auto [id, r] = *it;
        if (Str(r.body, "name") == name && (project.empty() || r.project == project)) {
            return Find(kind, id);
        }
    }
    return nullptr;
}

Res* Model::FindByIdOrName(std::string_view kind, const std::string& ref, const std::string& project) {
    const Res* r = std::as_const(*this).Find(kind, ref);
    if (r == nullptr && (kind == kFlavor || kind == kImage)) {
        r = FindByName(kind, ref);
    } else if (r == nullptr && kind == kKeypair && !project.empty()) {
        r = FindByName(kind, ref, project);
    }
    return r == nullptr ? nullptr : Hand(kind, Lookup(kind, r->id));
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
    } else if (const std::string plural = Str(r.body, "_quota_as"); !plural.empty()) {
        a.kinds[plural] = 1;  // a kind declared in configuration
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
    limits.kinds = kind_limits_;
    const Res* p = Find(kProject, project);
    if (p != nullptr) {
        if (const auto* q = p->body.if_contains("quotas"); q != nullptr && q->is_object()) {
            for (const auto& [name, field] : kQuotas) {
                if (q->get_object().contains(name)) {
                    limits.*field = Int(q->get_object(), name);
                }
            }
            for (auto& [name, limit] : limits.kinds) {
                if (q->get_object().contains(name)) limit = Int(q->get_object(), name);
            }
        }
    }
    return limits;
}

namespace {

Error QuotaExceeded(std::string_view name, int64_t limit, int64_t in_use, int64_t req) {
    Error e(ErrorCode::kPermissionDenied, "quota exceeded: " + std::string(name) + " limit " +
                                              std::to_string(limit) + ", in use " + std::to_string(in_use) +
                                              ", requested " + std::to_string(req));
    e.reason = "quota_exceeded";
    e.With("resource", std::string(name)).With("limit", limit).With("in_use", in_use).With("requested", req);
    return e;
}

int64_t Of(const std::map<std::string, int64_t, std::less<>>& m, std::string_view name, int64_t absent) {
    auto it = m.find(name);
    return it == m.end() ? absent : it->second;
}

}  // namespace

Status Model::Reserve(const std::string& project, const Amount& a) {
    Amount limits = Limits(project);
    Amount& used = usage_[project];
    for (const auto& [name, field] : kQuotas) {
        const int64_t req = a.*field;
        const int64_t limit = limits.*field;
        const int64_t in_use = used.*field;
        if (req > 0 && limit >= 0 && in_use + req > limit) {
            return MakeError(QuotaExceeded(name, limit, in_use, req));
        }
    }
    for (const auto& [name, req] : a.kinds) {
        const int64_t limit = Of(limits.kinds, name, -1);
        const int64_t in_use = Of(used.kinds, name, 0);
        if (req > 0 && limit >= 0 && in_use + req > limit) {
            return MakeError(QuotaExceeded(name, limit, in_use, req));
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
    for (const auto& [name, n] : a.kinds) {
        used.kinds[name] += n;
    }
}

void Model::Release(const std::string& project, const Amount& a) {
    Amount& used = usage_[project];
    for (const auto& q : kQuotas) {
        used.*q.field -= a.*q.field;
    }
    for (const auto& [name, n] : a.kinds) {
        used.kinds[name] -= n;
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
