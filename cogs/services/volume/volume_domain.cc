#include <boost/json.hpp>
#include <map>
#include <set>

#include "cogs/services/kit/input.h"
#include "cogs/services/volume/volume.h"

namespace cogs::services::volume {
namespace {

namespace json = boost::json;
using kit::Input;

constexpr std::string_view kTable = "volumes";
constexpr std::string_view kGetPrefix = "/v1/volumes/";

struct Volume {
    std::string id;
    int64_t size_gb = 0;
    std::optional<std::string> name;
    std::optional<std::string> project_id;
    std::string path;       // "" for a driver with nothing on disk
    std::string server_id;  // "" while available
    std::string device;
    std::string host;

    bool attached() const { return !server_id.empty(); }
    const char* status() const { return attached() ? "in-use" : "available"; }
};

json::value OrNull(const std::optional<std::string>& s) { return s ? json::value(*s) : json::value(nullptr); }
json::value OrNull(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

// The durable record: everything that defines the volume.
std::string Record(const Volume& v) {
    json::object o;
    o["id"] = v.id;
    o["size_gb"] = v.size_gb;
    o["name"] = OrNull(v.name);
    o["project_id"] = OrNull(v.project_id);
    o["path"] = v.path;
    o["server_id"] = v.server_id;
    o["device"] = v.device;
    o["host"] = v.host;
    return json::serialize(o);
}

// /dev/vdb for index 1 (vda, index 0, is the server's root disk), ..., /dev/vdz, /dev/vdaa, ...: the
// kernel's virtio-blk naming.
std::string DeviceName(int index) {
    std::string letters;
    for (int n = index;; n = n / 26 - 1) {
        letters.insert(letters.begin(), static_cast<char>('a' + n % 26));
        if (n < 26) {
            break;
        }
    }
    return "/dev/vd" + letters;
}

class VolumeDomain final : public kit::Domain {
public:
    explicit VolumeDomain(std::unique_ptr<VolumeDriver> driver) : driver_(std::move(driver)) {}

    std::string_view name() const override { return "volume"; }

    std::vector<std::string> actions() const override {
        return {"create_volume", "delete_volume", "attach_volumes", "detach_volumes"};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view text) override {
        if (table != kTable) {
            return MakeError(ErrorCode::kInternal, "volume: unknown table '" + std::string(table) + "'");
        }
        auto in = Input::Parse(
            text, {"id", "size_gb", "name", "project_id", "path", "server_id", "device", "host"});
        auto bad = [&](const Error& e) {
            return MakeError(ErrorCode::kInternal, "volume record " + std::string(id) + ": " + e.message);
        };
        if (!in) {
            return bad(in.error());
        }
        Volume v;
        auto vid = in->Id("id");
        auto size = in->Int("size_gb", 1);
        auto name = in->OptionalString("name");
        auto project = in->OptionalString("project_id");
        auto path = in->OptionalString("path");
        auto server = in->OptionalString("server_id");
        auto device = in->OptionalString("device");
        auto host = in->OptionalString("host");
        if (!vid) {
            return bad(vid.error());
        }
        if (!size) {
            return bad(size.error());
        }
        for (const auto* s : {&name, &project, &path, &server, &device, &host}) {
            if (!*s) {
                return bad(s->error());
            }
        }
        if (*vid != id) {
            return MakeError(ErrorCode::kInternal, "volume record " + std::string(id) + ": holds id " + *vid);
        }
        v.id = *vid;
        v.size_gb = *size;
        v.name = *name;
        v.project_id = *project;
        v.path = path->value_or("");
        v.server_id = server->value_or("");
        v.device = device->value_or("");
        v.host = host->value_or("");
        if (v.attached()) {
            servers_[v.server_id].insert(v.id);
        }
        volumes_[v.id] = std::move(v);
        return Ok();
    }

    Result<kit::Done> Perform(std::string_view action, std::string_view input, kit::Tx& tx) override {
        if (action == "create_volume") {
            return Create(input, tx);
        }
        if (action == "delete_volume") {
            return Delete(input, tx);
        }
        if (action == "attach_volumes") {
            return Attach(input, tx);
        }
        if (action == "detach_volumes") {
            return Detach(input, tx);
        }
        return MakeError(ErrorCode::kNotFound, "volume: no action '" + std::string(action) + "'");
    }

    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override {
        return {{std::string(kTable), static_cast<int64_t>(volumes_.size())}};
    }

    std::string Inventory() const override {
        json::array list;
        for (const auto& [id, v] : volumes_) {
            list.push_back(Describe(v));
        }
        json::object o;
        o["volumes"] = std::move(list);
        return json::serialize(o);
    }

    std::optional<http::Response> Get(const http::Request& request) const override {
        return kit::GetRecord(request, kGetPrefix, "volume", [this](const std::string& id) {
            auto it = volumes_.find(id);
            return it == volumes_.end() ? std::nullopt : std::optional<json::object>(Describe(it->second));
        });
    }

private:
    json::object Describe(const Volume& v) const {
        json::object o;
        o["id"] = v.id;
        o["size_gb"] = v.size_gb;
        o["name"] = OrNull(v.name);
        o["project_id"] = OrNull(v.project_id);
        o["status"] = v.status();
        o["server_id"] = OrNull(v.server_id);
        o["device"] = OrNull(v.device);
        o["host"] = OrNull(v.host);
        if (!v.path.empty()) {
            o["path"] = v.path;
        }
        if (auto allocated = driver_->AllocatedBytes(v.id)) {
            o["allocated_bytes"] = *allocated;
        }
        return o;
    }

    static std::string CreateOutput(const Volume& v) {
        json::object o;
        o["id"] = v.id;
        o["size_gb"] = v.size_gb;
        o["name"] = OrNull(v.name);
        o["project_id"] = OrNull(v.project_id);
        o["status"] = v.status();
        if (!v.path.empty()) {
            o["path"] = v.path;
        }
        return json::serialize(o);
    }

    Result<kit::Done> Create(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"id", "size_gb", "name", "project_id"});
        if (!in) {
            return MakeError(in.error());
        }
        Volume v;
        auto id = in->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto size = in->Int("size_gb", 1);
        if (!size) {
            return MakeError(size.error());
        }
        auto name = in->OptionalString("name");
        if (!name) {
            return MakeError(name.error());
        }
        auto project = in->OptionalString("project_id");
        if (!project) {
            return MakeError(project.error());
        }
        if (auto it = volumes_.find(*id); it != volumes_.end()) {
            const Volume& old = it->second;
            if (old.size_gb != *size || old.name != *name || old.project_id != *project) {
                return MakeError(ErrorCode::kAlreadyExists, "volume " + *id +
                                                                " exists with other values (size_gb " +
                                                                std::to_string(old.size_gb) + ")");
            }
            return kit::Done{CreateOutput(old)};
        }
        auto path = driver_->Create(*id, *size);
        if (!path) {
            return MakeError(path.error());
        }
        v.id = *id;
        v.size_gb = *size;
        v.name = *name;
        v.project_id = *project;
        v.path = *path;
        tx.Put(kTable, v.id, Record(v));
        auto& stored = volumes_[v.id] = std::move(v);
        return kit::Done{CreateOutput(stored)};
    }

    Result<kit::Done> Delete(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"id"});
        if (!in) {
            return MakeError(in.error());
        }
        auto id = in->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        json::object out;
        out["id"] = *id;
        auto it = volumes_.find(*id);
        if (it == volumes_.end()) {
            out["deleted"] = false;
            return kit::Done{json::serialize(out)};
        }
        if (it->second.attached()) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "volume " + *id + " is attached to server " + it->second.server_id);
        }
        if (auto deleted = driver_->Delete(*id); !deleted) {
            return MakeError(deleted.error());
        }
        volumes_.erase(it);
        tx.Erase(kTable, *id);
        out["deleted"] = true;
        return kit::Done{json::serialize(out)};
    }

    Result<kit::Done> Attach(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"server_id", "volume_ids", "host"});
        if (!in) {
            return MakeError(in.error());
        }
        auto server = in->Id("server_id");
        if (!server) {
            return MakeError(server.error());
        }
        auto ids = in->IdList("volume_ids");
        if (!ids) {
            return MakeError(ids.error());
        }
        auto host = in->OptionalString("host");
        if (!host) {
            return MakeError(host.error());
        }
        // Check every volume before changing any: all or nothing.
        for (const std::string& id : *ids) {
            auto it = volumes_.find(id);
            if (it == volumes_.end()) {
                return MakeError(ErrorCode::kNotFound, "volume_ids: no volume '" + id + "'");
            }
            if (it->second.attached() && it->second.server_id != *server) {
                return MakeError(ErrorCode::kFailedPrecondition,
                                 "volume " + id + " is attached to server " + it->second.server_id);
            }
        }
        std::set<std::string>& mine = servers_[*server];
        std::set<std::string> used;
        for (const std::string& id : mine) {
            used.insert(volumes_.at(id).device);
        }
        json::array attachments;
        int next = 1;
        for (const std::string& id : *ids) {
            Volume& v = volumes_.at(id);
            if (!v.attached()) {
                while (used.count(DeviceName(next)) != 0) {
                    ++next;
                }
                v.server_id = *server;
                v.device = DeviceName(next);
                v.host = host->value_or("");
                used.insert(v.device);
                mine.insert(v.id);
                tx.Put(kTable, v.id, Record(v));
            }
            json::object a;
            a["volume_id"] = v.id;
            a["device"] = v.device;
            attachments.push_back(std::move(a));
        }
        if (mine.empty()) {
            servers_.erase(*server);
        }
        json::object out;
        out["server_id"] = *server;
        out["attachments"] = std::move(attachments);
        return kit::Done{json::serialize(out)};
    }

    Result<kit::Done> Detach(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"server_id", "volume_ids"});
        if (!in) {
            return MakeError(in.error());
        }
        auto server = in->Id("server_id");
        if (!server) {
            return MakeError(server.error());
        }
        auto ids = in->IdList("volume_ids");
        if (!ids) {
            return MakeError(ids.error());
        }
        json::array detached;
        auto mine = servers_.find(*server);
        for (const std::string& id : *ids) {
            auto it = volumes_.find(id);
            if (it == volumes_.end() || it->second.server_id != *server) {
                continue;
            }
            Volume& v = it->second;
            v.server_id.clear();
            v.device.clear();
            v.host.clear();
            mine->second.erase(v.id);
            tx.Put(kTable, v.id, Record(v));
            detached.push_back(json::value(v.id));
        }
        if (mine != servers_.end() && mine->second.empty()) {
            servers_.erase(mine);
        }
        json::object out;
        out["server_id"] = *server;
        out["detached"] = std::move(detached);
        return kit::Done{json::serialize(out)};
    }

    std::unique_ptr<VolumeDriver> driver_;
    std::map<std::string, Volume, std::less<>> volumes_;
    // server id -> ids of the volumes attached to it (derived from volumes_).
    std::map<std::string, std::set<std::string>, std::less<>> servers_;
};

}  // namespace

std::unique_ptr<kit::Domain> MakeVolumeDomain(std::unique_ptr<VolumeDriver> driver) {
    return std::make_unique<VolumeDomain>(std::move(driver));
}

}  // namespace cogs::services::volume
