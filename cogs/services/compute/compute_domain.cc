#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <map>

#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/input.h"

namespace cogs::services::compute {
namespace {

namespace json = boost::json;
using kit::Input;

constexpr std::string_view kTable = "instances";
constexpr std::string_view kGetPrefix = "/v1/instances/";

struct Instance {
    InstanceSpec spec;
    std::string project_id;
    std::string name;
    int64_t created_at_ms = 0;
    bool powered = true;     // false: SHUTOFF
    bool rebooting = false;  // the current boot is a reboot (REBOOT rather than BUILD until ready)
    int64_t ready_at_us = 0;

    const char* State(int64_t now_us) const {
        if (!powered) {
            return "SHUTOFF";
        }
        if (now_us < ready_at_us) {
            return rebooting ? "REBOOT" : "BUILD";
        }
        return "ACTIVE";
    }

    // Whether a create with `other`'s values asks for this very instance.
    bool SameAs(const Instance& other) const {
        const InstanceSpec& a = spec;
        const InstanceSpec& b = other.spec;
        return a.vcpus == b.vcpus && a.ram_mb == b.ram_mb && a.disk_gb == b.disk_gb && a.image == b.image &&
               a.port_id == b.port_id && a.mac_address == b.mac_address && a.ip_address == b.ip_address &&
               project_id == other.project_id && name == other.name;
    }
};

json::value OrNull(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

std::string Record(const Instance& i) {
    json::object o;
    o["id"] = i.spec.id;
    o["host"] = i.spec.host;
    o["vcpus"] = i.spec.vcpus;
    o["ram_mb"] = i.spec.ram_mb;
    o["disk_gb"] = i.spec.disk_gb;
    o["image"] = i.spec.image;
    o["port_id"] = i.spec.port_id;
    o["mac_address"] = i.spec.mac_address;
    o["ip_address"] = i.spec.ip_address;
    o["project_id"] = i.project_id;
    o["name"] = i.name;
    o["created_at_ms"] = i.created_at_ms;
    o["power"] = i.powered ? "on" : "off";
    o["boot"] = i.rebooting ? "reboot" : "boot";
    o["ready_at_us"] = i.ready_at_us;
    return json::serialize(o);
}

// Reads the fields of one input or record into `out`, stopping at the first bad one.
class Reader {
public:
    explicit Reader(const Input& in) : in_(in) {}
    Reader& Id(std::string_view f, std::string& out) { return Take(in_.Id(f), out); }
    Reader& String(std::string_view f, std::string& out) { return Take(in_.String(f), out); }
    Reader& Int(std::string_view f, int64_t min, int64_t& out) { return Take(in_.Int(f, min), out); }
    Reader& Optional(std::string_view f, std::string& out) {
        auto v = in_.OptionalString(f);
        if (ok() && !v) {
            error_ = v.error();
        } else if (ok()) {
            out = v->value_or("");
        }
        return *this;
    }
    bool ok() const { return !error_.has_value(); }
    const Error& error() const { return *error_; }

private:
    template <typename T>
    Reader& Take(Result<T> v, T& out) {
        if (ok() && !v) {
            error_ = v.error();
        } else if (ok()) {
            out = std::move(*v);
        }
        return *this;
    }

    const Input& in_;
    std::optional<Error> error_;
};

class ComputeDomain final : public kit::Domain {
public:
    ComputeDomain(std::map<std::string, HostSpec, std::less<>> hosts, std::function<int64_t()> now_us,
                  std::unique_ptr<ComputeDriver> driver)
        : hosts_(std::move(hosts)), now_us_(std::move(now_us)), driver_(std::move(driver)) {}

    std::string_view name() const override { return "compute"; }

    std::vector<std::string> actions() const override {
        return {"create_instance", "delete_instance", "start_instance", "stop_instance", "reboot_instance"};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view text) override {
        if (table != kTable) {
            return MakeError(ErrorCode::kInternal, "compute: unknown table '" + std::string(table) + "'");
        }
        auto bad = [&](const std::string& why) {
            return MakeError(ErrorCode::kInternal, "instance record " + std::string(id) + ": " + why);
        };
        auto in = Input::Parse(
            text, {"id", "host", "vcpus", "ram_mb", "disk_gb", "image", "port_id", "mac_address",
                   "ip_address", "project_id", "name", "created_at_ms", "power", "boot", "ready_at_us"});
        if (!in) {
            return bad(in.error().message);
        }
        Instance i;
        std::string power;
        std::string boot;
        Reader r(*in);
        r.Id("id", i.spec.id)
            .String("host", i.spec.host)
            .Int("vcpus", 1, i.spec.vcpus)
            .Int("ram_mb", 1, i.spec.ram_mb)
            .Int("disk_gb", 0, i.spec.disk_gb)
            .String("image", i.spec.image)
            .Optional("port_id", i.spec.port_id)
            .Optional("mac_address", i.spec.mac_address)
            .Optional("ip_address", i.spec.ip_address)
            .Optional("project_id", i.project_id)
            .Optional("name", i.name)
            .Int("created_at_ms", 0, i.created_at_ms)
            .String("power", power)
            .String("boot", boot)
            .Int("ready_at_us", 0, i.ready_at_us);
        if (!r.ok()) {
            return bad(r.error().message);
        }
        if (i.spec.id != id) {
            return bad("holds id " + i.spec.id);
        }
        i.powered = power == "on";
        i.rebooting = boot == "reboot";
        if (hosts_.count(i.spec.host) == 0) {
            // Kept (it is what this process holds, and the inventory says so), but no action reaches
            // it until the host is served again.
            observe::Log("compute").warn("instance {} is on host {}, which this process does not serve", id,
                                         i.spec.host);
        }
        instances_[i.spec.id] = std::move(i);
        return Ok();
    }

    Result<kit::Done> Perform(std::string_view action, std::string_view input, kit::Tx& tx) override {
        if (action == "create_instance") {
            return Create(input, tx);
        }
        if (action == "delete_instance") {
            return Delete(input, tx);
        }
        if (action == "start_instance") {
            return Start(input, tx, /*reboot=*/false);
        }
        if (action == "reboot_instance") {
            return Start(input, tx, /*reboot=*/true);
        }
        if (action == "stop_instance") {
            return Stop(input, tx);
        }
        return MakeError(ErrorCode::kNotFound, "compute: no action '" + std::string(action) + "'");
    }

    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override {
        return {{std::string(kTable), static_cast<int64_t>(instances_.size())}};
    }

    // cogs_compute_instances{host,state}, from the clock like every state. A host and state seen at
    // an earlier scrape and empty now is set to 0 rather than left at its last value. The handles
    // are kept (per registry) so a scrape of thousands of hosts does not look each one up again.
    void Collect(observe::Metrics& metrics) const override {
        if (gauges_for_ != &metrics) {
            gauges_.clear();
            gauges_for_ = &metrics;
            family_ = observe::GaugeOf(&metrics, "cogs_compute_instances",
                                       "Instances this process holds, by host and state.");
        }
        const int64_t now = now_us_();
        std::map<std::pair<std::string_view, std::string_view>, int64_t> by_host_state;
        for (const auto& [id, i] : instances_) {
            ++by_host_state[{i.spec.host, i.State(now)}];
        }
        for (auto& [key, gauge] : gauges_) {
            auto it = by_host_state.find({key.first, key.second});
            gauge.Set(it == by_host_state.end() ? 0.0 : static_cast<double>(it->second));
        }
        for (const auto& [key, n] : by_host_state) {
            std::pair<std::string, std::string> labels{std::string(key.first), std::string(key.second)};
            if (!gauges_.contains(labels)) {
                observe::Gauge g = family_.With({{"host", labels.first}, {"state", labels.second}});
                g.Set(static_cast<double>(n));
                gauges_.emplace(std::move(labels), g);
            }
        }
    }

    std::string Inventory() const override {
        const int64_t now = now_us_();
        json::array hosts;
        for (const auto& [name, h] : hosts_) {
            json::object o;
            o["name"] = h.name;
            o["availability_zone"] = h.availability_zone;
            o["vcpus"] = h.vcpus;
            o["ram_mb"] = h.ram_mb;
            o["disk_gb"] = h.disk_gb;
            o["traits"] = json::array(h.traits.begin(), h.traits.end());
            hosts.push_back(std::move(o));
        }
        json::array instances;
        for (const auto& [id, i] : instances_) {
            instances.push_back(Describe(i, now));
        }
        json::object o;
        o["hosts"] = std::move(hosts);
        o["instances"] = std::move(instances);
        return json::serialize(o);
    }

    std::optional<http::Response> Get(const http::Request& request) const override {
        return kit::GetRecord(request, kGetPrefix, "instance", [this](const std::string& id) {
            auto it = instances_.find(id);
            return it == instances_.end() ? std::nullopt : std::optional<json::object>(Describe(it->second, now_us_()));
        });
    }

private:
    static json::object Describe(const Instance& i, int64_t now) {
        json::object o;
        o["id"] = i.spec.id;
        o["host"] = i.spec.host;
        o["state"] = i.State(now);
        o["vcpus"] = i.spec.vcpus;
        o["ram_mb"] = i.spec.ram_mb;
        o["disk_gb"] = i.spec.disk_gb;
        o["image"] = i.spec.image;
        o["port_id"] = OrNull(i.spec.port_id);
        o["mac_address"] = OrNull(i.spec.mac_address);
        o["ip_address"] = OrNull(i.spec.ip_address);
        o["project_id"] = OrNull(i.project_id);
        o["name"] = OrNull(i.name);
        o["created_at_ms"] = i.created_at_ms;
        o["ready_at_ms"] = i.ready_at_us / 1000;
        return o;
    }

    // The answer of an action on `i`: its state once the current boot (if any) has ended, ready then.
    static kit::Done Answer(const Instance& i, int64_t now) {
        json::object o;
        o["id"] = i.spec.id;
        o["host"] = i.spec.host;
        o["state"] = i.powered ? "ACTIVE" : "SHUTOFF";
        return kit::Done{json::serialize(o), i.powered && i.ready_at_us > now ? i.ready_at_us : 0};
    }

    // Reads "host" and checks that this process serves it.
    Result<std::string> Host(const Input& in) const {
        auto host = in.String("host");
        if (host && hosts_.count(*host) == 0) {
            return MakeError(ErrorCode::kInvalidArgument,
                             "host: this process does not serve host '" + *host + "'");
        }
        return host;
    }

    // The instance `id` on `host`, or kNotFound.
    Result<Instance*> Find(const std::string& id, const std::string& host) {
        auto it = instances_.find(id);
        if (it == instances_.end() || it->second.spec.host != host) {
            return MakeError(ErrorCode::kNotFound, "no instance '" + id + "' on host " + host);
        }
        return &it->second;
    }

    Result<int64_t> Boot(const Instance& i, int64_t now) {
        auto duration = driver_->Boot(i.spec);
        if (!duration) {
            return MakeError(duration.error());
        }
        return now + std::chrono::duration_cast<std::chrono::microseconds>(*duration).count();
    }

    Result<kit::Done> Create(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"id", "host", "vcpus", "ram_mb", "disk_gb", "image", "port_id",
                                       "mac_address", "ip_address", "project_id", "name"});
        if (!in) {
            return MakeError(in.error());
        }
        Instance i;
        Reader r(*in);
        r.Id("id", i.spec.id);
        if (!r.ok()) {
            return MakeError(r.error());
        }
        auto host = Host(*in);
        if (!host) {
            return MakeError(host.error());
        }
        i.spec.host = *host;
        r.Int("vcpus", 1, i.spec.vcpus)
            .Int("ram_mb", 1, i.spec.ram_mb)
            .Int("disk_gb", 0, i.spec.disk_gb)
            .String("image", i.spec.image)
            .Optional("port_id", i.spec.port_id)
            .Optional("mac_address", i.spec.mac_address)
            .Optional("ip_address", i.spec.ip_address)
            .Optional("project_id", i.project_id)
            .Optional("name", i.name);
        if (!r.ok()) {
            return MakeError(r.error());
        }
        const int64_t now = now_us_();
        if (auto it = instances_.find(i.spec.id); it != instances_.end()) {
            const Instance& old = it->second;
            if (old.spec.host != i.spec.host) {
                return MakeError(ErrorCode::kFailedPrecondition,
                                 "instance " + i.spec.id + " exists on host " + old.spec.host);
            }
            if (!old.SameAs(i)) {
                return MakeError(ErrorCode::kAlreadyExists,
                                 "instance " + i.spec.id + " exists with other values");
            }
            return Answer(old, now);
        }
        auto ready = Boot(i, now);
        if (!ready) {
            return MakeError(ready.error());
        }
        i.created_at_ms = now / 1000;
        i.ready_at_us = *ready;
        tx.Put(kTable, i.spec.id, Record(i));
        const Instance& stored = instances_[i.spec.id] = std::move(i);
        return Answer(stored, now);
    }

    Result<kit::Done> Delete(std::string_view input, kit::Tx& tx) {
        auto in = Input::Parse(input, {"id", "host"});
        if (!in) {
            return MakeError(in.error());
        }
        auto id = in->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto host = Host(*in);
        if (!host) {
            return MakeError(host.error());
        }
        json::object out;
        out["id"] = *id;
        auto found = Find(*id, *host);
        if (!found) {
            // Absent here. An instance of that id on another host is not this call's to delete: a
            // compensation of a create refused for that reason must not remove the other one.
            out["deleted"] = false;
            return kit::Done{json::serialize(out)};
        }
        if (auto deleted = driver_->Delete((*found)->spec); !deleted) {
            return MakeError(deleted.error());
        }
        instances_.erase(*id);
        tx.Erase(kTable, *id);
        out["deleted"] = true;
        return kit::Done{json::serialize(out)};
    }

    // The instance an {id, host} input names.
    Result<Instance*> Target(std::string_view input) {
        auto in = Input::Parse(input, {"id", "host"});
        if (!in) {
            return MakeError(in.error());
        }
        auto id = in->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto host = Host(*in);
        if (!host) {
            return MakeError(host.error());
        }
        return Find(*id, *host);
    }

    Result<kit::Done> Start(std::string_view input, kit::Tx& tx, bool reboot) {
        auto found = Target(input);
        if (!found) {
            return MakeError(found.error());
        }
        Instance& i = **found;
        const int64_t now = now_us_();
        if (!reboot && i.powered) {
            return Answer(i, now);
        }
        auto ready = Boot(i, now);
        if (!ready) {
            return MakeError(ready.error());
        }
        i.powered = true;
        i.rebooting = reboot;
        i.ready_at_us = *ready;
        tx.Put(kTable, i.spec.id, Record(i));
        return Answer(i, now);
    }

    Result<kit::Done> Stop(std::string_view input, kit::Tx& tx) {
        auto found = Target(input);
        if (!found) {
            return MakeError(found.error());
        }
        Instance& i = **found;
        if (i.powered) {
            if (auto stopped = driver_->Stop(i.spec); !stopped) {
                return MakeError(stopped.error());
            }
            i.powered = false;
            i.rebooting = false;
            tx.Put(kTable, i.spec.id, Record(i));
        }
        return Answer(i, now_us_());
    }

    std::map<std::string, HostSpec, std::less<>> hosts_;
    std::function<int64_t()> now_us_;
    std::unique_ptr<ComputeDriver> driver_;
    std::map<std::string, Instance, std::less<>> instances_;
    // Collect's handles: {host, state} -> gauge, for the registry gauges_for_.
    mutable std::map<std::pair<std::string, std::string>, observe::Gauge> gauges_;
    mutable const observe::Metrics* gauges_for_ = nullptr;
    mutable observe::GaugeFamily family_;
};

class SimDriver final : public ComputeDriver {
public:
    explicit SimDriver(Millis boot_time) : boot_time_(boot_time) {}
    std::string_view name() const override { return "sim"; }
    Result<Millis> Boot(const InstanceSpec&) override { return boot_time_; }
    Status Stop(const InstanceSpec&) override { return Ok(); }
    Status Delete(const InstanceSpec&) override { return Ok(); }

private:
    Millis boot_time_;
};

}  // namespace

Result<std::unique_ptr<ComputeDriver>> MakeComputeDriver(std::string name, ComputeDriverOptions options) {
    if (name == "sim") {
        if (options.boot_time.count() < 0) {
            return MakeError(ErrorCode::kInvalidArgument, "boot time: must be >= 0");
        }
        return std::unique_ptr<ComputeDriver>(std::make_unique<SimDriver>(options.boot_time));
    }
    return MakeError(ErrorCode::kInvalidArgument, "driver: unknown compute driver '" + name + "' (sim)");
}

Result<std::unique_ptr<kit::Domain>> MakeComputeDomain(ComputeOptions options,
                                                       std::unique_ptr<ComputeDriver> driver) {
    if (options.hosts.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "hosts: at least one host is required");
    }
    std::map<std::string, HostSpec, std::less<>> hosts;
    for (HostSpec& h : options.hosts) {
        if (h.name.empty()) {
            return MakeError(ErrorCode::kInvalidArgument, "hosts: a host without a name");
        }
        const std::string name = h.name;
        if (!hosts.emplace(name, std::move(h)).second) {
            return MakeError(ErrorCode::kInvalidArgument, "hosts: host '" + name + "' twice");
        }
    }
    if (!options.now_us) {
        options.now_us = [] { return WallNowUs(); };
    }
    return std::unique_ptr<kit::Domain>(
        std::make_unique<ComputeDomain>(std::move(hosts), std::move(options.now_us), std::move(driver)));
}

}  // namespace cogs::services::compute
