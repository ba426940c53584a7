#include "cogs/cloud/core/model.h"

#include <boost/json/serialize.hpp>

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

Res* Model::Find(std::string_view kind, const std::string& id) {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) {
        return nullptr;
    }
    auto it = k->second.find(id);
    return it == k->second.end() ? nullptr : &it->second;
}

const Res* Model::Find(std::string_view kind, const std::string& id) const {
    return const_cast<Model*>(this)->Find(kind, id);
}

Res& Model::Put(Res r) {
    auto& slot = kinds_[r.kind][r.id];
    slot = std::move(r);
    return slot;
}

void Model::Erase(std::string_view kind, const std::string& id) {
    auto k = kinds_.find(kind);
    if (k != kinds_.end()) {
        k->second.erase(id);
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
    Res* r = Find(kind, ref);
    if (r == nullptr && (kind == kFlavor || kind == kImage)) {
        r = const_cast<Res*>(FindByName(kind, ref));
    }
    return r;
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
