#include <boost/json/serialize.hpp>
#include <functional>
#include <map>
#include <set>

#include "cogs/services/kit/dispatch.h"
#include "cogs/services/volume/volume.h"
#include "cogs/wire/input.h"

namespace cogs::services::volume {
namespace {

namespace json = wire::json;
using wire::Input;

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

// What a record's strings may hold: a file driver's path may be long, a name may predate the
// refusal of control characters.
constexpr wire::Text kRecordText{.max_len = 4096, .allow_empty = true, .allow_controls = true};

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

    std::vector<kit::Action> actions() override {
        return {
            {"create_volume",
             {"id", "size_gb", "name", "project_id"},
             std::bind_front(&VolumeDomain::Create, this)},
            {"delete_volume", {"id"}, std::bind_front(&VolumeDomain::Delete, this)},
            {"attach_volumes",
             {"server_id", "volume_ids", "host"},
             std::bind_front(&VolumeDomain::Attach, this)},
            {"detach_volumes", {"server_id", "volume_ids"}, std::bind_front(&VolumeDomain::Detach, this)}};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view text) override {
        if (table != kTable) {
            return MakeError(ErrorCode::kInternal, "volume: unknown table '" + std::string(table) + "'");
        }
        auto v = ReadRecord(text);
        if (!v) {
            return MakeError(ErrorCode::kInternal,
                             "volume record " + std::string(id) + ": " + v.error().message);
        }
        if (v->id != id) {
            return MakeError(ErrorCode::kInternal,
                             "volume record " + std::string(id) + ": holds id " + v->id);
        }
        if (v->attached()) {
            servers_[v->server_id].insert(v->id);
        }
        volumes_[v->id] = std::move(*v);
        return Ok();
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
    static Result<Volume> ReadRecord(std::string_view text) {
        COGS_ASSIGN_OR_RETURN(
            const Input in,
            Input::Parse(text, {"id", "size_gb", "name", "project_id", "path", "server_id", "device", "host"},
                         "record"));
        Volume v;
        COGS_ASSIGN_OR_RETURN(v.id, in.Id("id"));
        COGS_ASSIGN_OR_RETURN(v.size_gb, in.Int("size_gb", 1));
        COGS_ASSIGN_OR_RETURN(v.name, in.OptionalString("name", kRecordText));
        COGS_ASSIGN_OR_RETURN(v.project_id, in.OptionalString("project_id", kRecordText));
        for (auto [field, out] : {std::pair{"path", &v.path}, std::pair{"server_id", &v.server_id},
                                  std::pair{"device", &v.device}, std::pair{"host", &v.host}}) {
            COGS_ASSIGN_OR_RETURN(auto value, in.OptionalString(field, kRecordText));
            *out = value.value_or("");
        }
        return v;
    }

    // What every view of a volume starts with.
    static json::object Basics(const Volume& v) {
        json::object o;
        o["id"] = v.id;
        o["size_gb"] = v.size_gb;
        o["name"] = OrNull(v.name);
        o["project_id"] = OrNull(v.project_id);
        o["status"] = v.status();
        return o;
    }

    // The inventory's and GET /v1/volumes/{id}'s view.
    json::object Describe(const Volume& v) const {
        json::object o = Basics(v);
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
        json::object o = Basics(v);
        if (!v.path.empty()) {
            o["path"] = v.path;
        }
        return json::serialize(o);
    }

    Result<kit::Done> Create(const Input& in, kit::Tx& tx) {
        Volume v;
        COGS_ASSIGN_OR_RETURN(v.id, in.Id("id"));
        COGS_ASSIGN_OR_RETURN(v.size_gb, in.Int("size_gb", 1));
        COGS_ASSIGN_OR_RETURN(v.name, in.OptionalString("name"));
        COGS_ASSIGN_OR_RETURN(v.project_id, in.OptionalString("project_id"));
        if (auto it = volumes_.find(v.id); it != volumes_.end()) {
            const Volume& old = it->second;
            if (old.size_gb != v.size_gb || old.name != v.name || old.project_id != v.project_id) {
                return MakeError(ErrorCode::kAlreadyExists, "volume " + v.id +
                                                                " exists with other values (size_gb " +
                                                                std::to_string(old.size_gb) + ")");
            }
            return kit::Done{CreateOutput(old)};
        }
        COGS_ASSIGN_OR_RETURN(v.path, driver_->Create(v.id, v.size_gb));
        tx.Put(kTable, v.id, Record(v));
        auto& stored = volumes_[v.id] = std::move(v);
        return kit::Done{CreateOutput(stored)};
    }

    Result<kit::Done> Delete(const Input& in, kit::Tx& tx) {
        COGS_ASSIGN_OR_RETURN(const std::string id, in.Id("id"));
        json::object out;
        out["id"] = id;
        auto it = volumes_.find(id);
        if (it == volumes_.end()) {
            out["deleted"] = false;
            return kit::Done{json::serialize(out)};
        }
        if (it->second.attached()) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "volume " + id + " is attached to server " + it->second.server_id);
        }
        COGS_TRY(driver_->Delete(id));
        volumes_.erase(it);
        tx.Erase(kTable, id);
        out["deleted"] = true;
        return kit::Done{json::serialize(out)};
    }

    Result<kit::Done> Attach(const Input& in, kit::Tx& tx) {
        COGS_ASSIGN_OR_RETURN(const std::string server, in.Id("server_id"));
        COGS_ASSIGN_OR_RETURN(const std::vector<std::string> ids, in.IdList("volume_ids"));
        COGS_ASSIGN_OR_RETURN(const auto host, in.OptionalString("host"));
        // Check every volume before changing any: all or nothing.
        for (const std::string& id : ids) {
            auto it = volumes_.find(id);
            if (it == volumes_.end()) {
                return MakeError(ErrorCode::kNotFound, "volume_ids: no volume '" + id + "'");
            }
            if (it->second.attached() && it->second.server_id != server) {
                return MakeError(ErrorCode::kFailedPrecondition,
                                 "volume " + id + " is attached to server " + it->second.server_id);
            }
        }
        std::set<std::string>& mine = servers_[server];
        std::set<std::string> used;
        for (const std::string& id : mine) {
            used.insert(volumes_.at(id).device);
        }
        json::array attachments;
        int next = 1;
        for (const std::string& id : ids) {
            Volume& v = volumes_.at(id);
            if (!v.attached()) {
                while (used.count(DeviceName(next)) != 0) {
                    ++next;
                }
                v.server_id = server;
                v.device = DeviceName(next);
                v.host = host.value_or("");
                used.insert(v.device);
                mine.insert(v.id);
                tx.Put(kTable, v.id, Record(v));
            }
            json::object a;
            a["volume_id"] = v.id;
            a["device"] = v.device;
            if (!v.path.empty()) {
                // Where the data is, for the host that mounts it (Cinder's connection info).
                a["path"] = v.path;
            }
            attachments.push_back(std::move(a));
        }
        if (mine.empty()) {
            servers_.erase(server);
        }
        json::object out;
        out["server_id"] = server;
        out["attachments"] = std::move(attachments);
        return kit::Done{json::serialize(out)};
    }

    Result<kit::Done> Detach(const Input& in, kit::Tx& tx) {
        COGS_ASSIGN_OR_RETURN(const std::string server, in.Id("server_id"));
        COGS_ASSIGN_OR_RETURN(const std::vector<std::string> ids, in.IdList("volume_ids"));
        json::array detached;
        auto mine = servers_.find(server);
        for (const std::string& id : ids) {
            auto it = volumes_.find(id);
            if (it == volumes_.end() || it->second.server_id != server) {
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
        out["server_id"] = server;
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
