// The compute domain's volume actions (attach_volumes, detach_volumes), the volumes in an instance's
// record, and the driver's report of a SyncVolumes (internal/compute_domain.h has the map).
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/observe/log.h"
#include "cogs/services/compute/internal/compute_domain.h"

namespace cogs::services::compute::internal {
namespace {

namespace json = wire::json;
using wire::Input;

// A volume's path as the volume service answers it: an absolute file path.
constexpr wire::Text kPathText{.max_len = 4096, .allow_empty = true};

std::string VolumesWait(std::string_view id, uint64_t ticket) {
    return "volumes/" + std::string(id) + "/" + std::to_string(ticket);
}

json::array VolumeIds(const std::vector<std::string>& ids) { return json::array(ids.begin(), ids.end()); }

}  // namespace

json::array VolumesJson(const std::vector<VolumeMount>& volumes) {
    json::array out;
    for (const VolumeMount& v : volumes) {
        out.push_back(json::object{{"volume_id", v.volume_id}, {"path", v.path}});
    }
    return out;
}

Result<std::vector<VolumeMount>> ReadVolumes(const Input& in, std::string_view field, bool allow_device) {
    COGS_ASSIGN_OR_RETURN(auto items, allow_device
                                          ? in.Objects(field, {"volume_id", "path", "device"}, kMaxVolumes)
                                          : in.Objects(field, {"volume_id", "path"}, kMaxVolumes));
    std::vector<VolumeMount> out;
    for (const Input& item : items) {
        VolumeMount v;
        COGS_ASSIGN_OR_RETURN(v.volume_id, item.Id("volume_id"));
        COGS_ASSIGN_OR_RETURN(auto path, item.OptionalString("path", kPathText));
        v.path = path.value_or("");
        if (!v.path.empty() &&
            (v.path.front() != '/' || v.path.find("/../") != std::string::npos || v.path.ends_with("/.."))) {
            return MakeError(item.Invalid("path", "must be an absolute path without '..'"));
        }
        if (allow_device) {
            // The volume service's device name (/dev/vdb): a VM's; a container has none. Read to
            // refuse a wrong type, not used.
            COGS_TRY(item.OptionalString("device").transform([](auto&&) {}));
        }
        auto same = std::find_if(out.begin(), out.end(),
                                 [&](const VolumeMount& o) { return o.volume_id == v.volume_id; });
        if (same != out.end()) {
            if (same->path != v.path) {
                return MakeError(item.Invalid("volume_id", "'" + v.volume_id + "' twice with other paths"));
            }
            continue;
        }
        out.push_back(std::move(v));
    }
    return out;
}

Result<kit::Done> ComputeDomainImpl::AttachVolumes(const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(Instance* const found, Target(in));
    if (!in.Has("volumes")) {
        return MakeError(in.Invalid("volumes", "required"));
    }
    COGS_ASSIGN_OR_RETURN(const std::vector<VolumeMount> wanted, ReadVolumes(in, "volumes", true));
    Instance& i = *found;
    // Every check before any change: all or nothing.
    std::vector<VolumeMount> volumes = i.spec.volumes;
    std::vector<std::string> ids;
    for (const VolumeMount& v : wanted) {
        ids.push_back(v.volume_id);
        auto have = std::find_if(volumes.begin(), volumes.end(),
                                 [&](const VolumeMount& o) { return o.volume_id == v.volume_id; });
        if (have == volumes.end()) {
            volumes.push_back(v);
        } else if (have->path != v.path) {
            return MakeError(ErrorCode::kFailedPrecondition, "volume " + v.volume_id +
                                                                 " is attached to instance " + i.spec.id +
                                                                 " from another path (" + have->path + ")");
        }
    }
    if (volumes.size() > kMaxVolumes) {
        return MakeError(in.Invalid("volumes", "at most " + std::to_string(kMaxVolumes) + " per instance"));
    }
    json::object out{{"id", i.spec.id}, {"host", i.spec.host}, {"volume_ids", VolumeIds(ids)}};
    if (wanted.empty()) {
        // A server created without volumes: nothing to mount, no wait for the driver.
        return kit::Done{json::serialize(out)};
    }
    return SyncVolumes(i, std::move(volumes), json::serialize(out), tx);
}

Result<kit::Done> ComputeDomainImpl::DetachVolumes(const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.Id("id"));
    COGS_ASSIGN_OR_RETURN(const std::string host, in.String("host"));
    COGS_ASSIGN_OR_RETURN(const std::vector<std::string> ids, in.IdList("volume_ids"));
    COGS_TRY(Served(host));
    // The same answer however often it is sent: none of volume_ids is attached any more.
    json::object out{{"id", id}, {"host", host}, {"volume_ids", VolumeIds(ids)}};
    auto found = Find(id, host);
    if (!found) {
        // Deleted (which unmounted everything) or never here: nothing is mounted for it.
        return kit::Done{json::serialize(out)};
    }
    Instance& i = **found;
    std::vector<VolumeMount> volumes;
    for (const VolumeMount& v : i.spec.volumes) {
        if (std::find(ids.begin(), ids.end(), v.volume_id) == ids.end()) {
            volumes.push_back(v);
        }
    }
    // Synced even when nothing changes in the record: an earlier detach whose unmount failed (busy)
    // is tried again.
    return SyncVolumes(i, std::move(volumes), json::serialize(out), tx);
}

Result<kit::Done> ComputeDomainImpl::SyncVolumes(Instance& i, std::vector<VolumeMount> volumes,
                                                 std::string output, kit::Tx& tx) {
    next_volume_ticket_ = std::max(next_volume_ticket_ + 1, static_cast<uint64_t>(clock_.WallUs()));
    const uint64_t ticket = next_volume_ticket_;
    InstanceSpec spec = i.spec;
    spec.volumes = volumes;
    COGS_ASSIGN_OR_RETURN(const bool reports, driver_->SyncVolumes(spec, ticket));
    if (i.spec.volumes != volumes) {
        i.spec.volumes = std::move(volumes);
        tx.Put(kTable, i.spec.id, Record(i));
    }
    if (!reports) {
        return kit::Done{std::move(output)};
    }
    volume_waits_[{i.spec.id, ticket}] = std::move(output);
    return kit::Done{"{}", 0, VolumesWait(i.spec.id, ticket)};
}

void ComputeDomainImpl::VolumesSynced(const std::string& id, uint64_t ticket, Status result) {
    auto it = volume_waits_.find({id, ticket});
    if (it == volume_waits_.end()) {
        return;
    }
    std::string output = std::move(it->second);
    volume_waits_.erase(it);
    if (!result) {
        observe::Log("compute").warn("instance {}: its volumes: {}", id, result.error().ToString());
    }
    if (context_ != nullptr) {
        context_->Finish(VolumesWait(id, ticket),
                         result ? Result<std::string>(std::move(output)) : MakeError(result.error()));
    }
}

}  // namespace cogs::services::compute::internal
