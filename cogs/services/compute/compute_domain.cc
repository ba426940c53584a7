// The compute domain's actions, its records, Load and Bind (internal/compute_domain.h has the map of
// its files).
#include "cogs/services/compute/internal/compute_domain.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <functional>

#include "cogs/observe/log.h"
#include "cogs/services/compute/internal/container_driver.h"
#include "cogs/services/compute/internal/instance_fields.h"
#include "cogs/services/kit/dispatch.h"

namespace cogs::services::compute {
namespace internal {
namespace {

namespace json = wire::json;
using wire::Input;

constexpr std::string_view kPowerNames[] = {"on", "off", "crashed", "fenced", "error"};

std::string_view ToString(Power p) { return kPowerNames[static_cast<size_t>(p)]; }

std::optional<Power> PowerFrom(std::string_view s) {
    for (size_t i = 0; i < std::size(kPowerNames); ++i) {
        if (kPowerNames[i] == s) {
            return static_cast<Power>(i);
        }
    }
    return std::nullopt;
}

// The fields of an instance that create_instance takes (and its record holds). `text` reads the
// free text: a record's may predate the refusal of control characters.
Result<Instance> ReadInstance(const Input& in, wire::Text text = {.allow_empty = true}) {
    Instance i;
    COGS_ASSIGN_OR_RETURN(i.spec.id, in.Id("id"));
    COGS_ASSIGN_OR_RETURN(i.spec.host, in.String("host"));
    COGS_ASSIGN_OR_RETURN(i.spec.vcpus, in.Int("vcpus", 1));
    COGS_ASSIGN_OR_RETURN(i.spec.ram_mb, in.Int("ram_mb", 1));
    COGS_ASSIGN_OR_RETURN(i.spec.disk_gb, in.Int("disk_gb", 0));
    COGS_ASSIGN_OR_RETURN(i.spec.image, in.String("image"));
    for (auto [field, out] :
         {std::pair{"port_id", &i.spec.port_id}, std::pair{"mac_address", &i.spec.mac_address},
          std::pair{"ip_address", &i.spec.ip_address}, std::pair{"project_id", &i.spec.project_id},
          std::pair{"name", &i.spec.name}}) {
        COGS_ASSIGN_OR_RETURN(auto value, in.OptionalString(field, text));
        *out = value.value_or("");
    }
    COGS_TRY(ReadPlugFields(in, text, i.spec));
    return i;
}

// A stored instance (Record's shape). crashes and restart_at_us are absent from records written
// before the supervisor existed.
Result<Instance> ReadRecord(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(
        const Input in,
        Input::Parse(text,
                     {"id",      "host",        "vcpus",       "ram_mb",     "disk_gb",       "image",
                      "port_id", "mac_address", "ip_address",  "project_id", "name",          "created_at_ms",
                      "power",   "boot",        "ready_at_us", "crashes",    "restart_at_us", "network_id",
                      "cidr",    "gateway_ip",  "user_data",   "volumes",    "public_keys"},
                     "record"));
    COGS_ASSIGN_OR_RETURN(Instance i, ReadInstance(in, {.allow_empty = true, .allow_controls = true}));
    COGS_ASSIGN_OR_RETURN(i.created_at_ms, in.Int("created_at_ms", 0));
    COGS_ASSIGN_OR_RETURN(const std::string power, in.String("power"));
    const auto p = PowerFrom(power);
    if (!p) {
        return MakeError(in.Invalid("power", "unknown value '" + power + "'"));
    }
    i.power = *p;
    COGS_ASSIGN_OR_RETURN(const std::string boot, in.String("boot"));
    i.rebooting = boot == "reboot";
    COGS_ASSIGN_OR_RETURN(i.ready_at_us, in.Int("ready_at_us", 0));
    if (const json::value* crashes = in.Find("crashes")) {
        if (!crashes->is_array()) {
            return MakeError(in.Invalid("crashes", "must be an array of times"));
        }
        for (const json::value& at : crashes->get_array()) {
            if (!at.is_int64()) {
                return MakeError(in.Invalid("crashes", "must be an array of times"));
            }
            i.crashes.push_back(at.get_int64());
        }
    }
    COGS_ASSIGN_OR_RETURN(const auto restart_at, in.OptionalInt("restart_at_us"));
    i.restart_at_us = restart_at.value_or(0);
    COGS_ASSIGN_OR_RETURN(i.spec.volumes, ReadVolumes(in, "volumes", false));  // absent before volumes
    return i;
}

}  // namespace

std::string WaitName(std::string_view id) { return "instance/" + std::string(id); }

kit::Done Answer(const Instance& i, int64_t now) {
    json::object o;
    o["id"] = i.spec.id;
    o["host"] = i.spec.host;
    o["state"] = i.power == Power::kOn ? "ACTIVE" : i.State(now);
    const bool booting = i.power == Power::kOn && i.ready_at_us > now;
    if (booting && i.ready_at_us == kReportedUs) {
        return kit::Done{json::serialize(o), 0, WaitName(i.spec.id)};
    }
    return kit::Done{json::serialize(o), booting ? i.ready_at_us : 0};
}

const char* Instance::State(int64_t now_us) const {
    switch (power) {
        case Power::kOff: return "SHUTOFF";
        case Power::kCrashed: return "CRASHED";
        case Power::kFenced: return "FENCED";
        case Power::kError: return "ERROR";
        case Power::kOn: break;
    }
    if (now_us < ready_at_us) {
        return rebooting ? "REBOOT" : "BUILD";
    }
    return "ACTIVE";
}

int64_t Instance::CrashesSince(int64_t since_us) const {
    return std::count_if(crashes.begin(), crashes.end(), [&](int64_t at) { return at >= since_us; });
}

bool Instance::SameAs(const Instance& other) const {
    const InstanceSpec& a = spec;
    const InstanceSpec& b = other.spec;
    return a.vcpus == b.vcpus && a.ram_mb == b.ram_mb && a.disk_gb == b.disk_gb && a.image == b.image &&
           a.port_id == b.port_id && a.mac_address == b.mac_address && a.ip_address == b.ip_address &&
           a.project_id == b.project_id && a.name == b.name && SamePlugFields(a, b);
}

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
    o["project_id"] = i.spec.project_id;
    o["name"] = i.spec.name;
    o["created_at_ms"] = i.created_at_ms;
    o["power"] = ToString(i.power);
    o["boot"] = i.rebooting ? "reboot" : "boot";
    o["ready_at_us"] = i.ready_at_us;
    o["crashes"] = json::array(i.crashes.begin(), i.crashes.end());
    o["restart_at_us"] = i.restart_at_us;
    o["volumes"] = VolumesJson(i.spec.volumes);
    WritePlugFields(i.spec, o);
    return json::serialize(o);
}

void AddHostFields(const HostSpec& h, json::object& o) {
    o["availability_zone"] = h.availability_zone;
    o["vcpus"] = h.vcpus;
    o["ram_mb"] = h.ram_mb;
    o["disk_gb"] = h.disk_gb;
    o["traits"] = json::array(h.traits.begin(), h.traits.end());
}

ComputeDomainImpl::ComputeDomainImpl(std::map<std::string, HostSpec, std::less<>> hosts,
                                     runtime::Clock& clock, std::unique_ptr<ComputeDriver> driver,
                                     bool leased, SupervisorOptions supervisor)
    : hosts_(std::move(hosts)),
      clock_(clock),
      driver_(std::move(driver)),
      leased_(leased),
      supervisor_(supervisor) {
    if (leased_) {
        // No lease yet: the agent unfences each host at its first acknowledged renewal.
        for (const auto& [name, h] : hosts_) {
            fenced_.insert(name);
        }
    }
}

std::string_view ComputeDomainImpl::name() const { return "compute"; }

std::vector<kit::Action> ComputeDomainImpl::actions() {
    return {{"create_instance",
             {"id", "host", "vcpus", "ram_mb", "disk_gb", "image", "port_id", "mac_address", "ip_address",
              "project_id", "name", "lease_epoch", "network_id", "cidr", "gateway_ip", "user_data",
              "public_keys"},
             std::bind_front(&ComputeDomainImpl::Create, this)},
            {"delete_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Delete, this)},
            {"start_instance",
             {"id", "host", "lease_epoch"},
             std::bind_front(&ComputeDomainImpl::Start, this, false)},
            {"stop_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Stop, this)},
            {"reboot_instance",
             {"id", "host", "lease_epoch"},
             std::bind_front(&ComputeDomainImpl::Start, this, true)},
            {"attach_volumes",
             {"id", "host", "volumes"},
             std::bind_front(&ComputeDomainImpl::AttachVolumes, this)},
            {"detach_volumes",
             {"id", "host", "volume_ids"},
             std::bind_front(&ComputeDomainImpl::DetachVolumes, this)}};
}

Status ComputeDomainImpl::Load(std::string_view table, std::string_view id, std::string_view text) {
    if (table != kTable) {
        return MakeError(ErrorCode::kInternal, "compute: unknown table '" + std::string(table) + "'");
    }
    auto i = ReadRecord(text);
    if (!i || i->spec.id != id) {
        return MakeError(ErrorCode::kInternal, "instance record " + std::string(id) + ": " +
                                                   (i ? "holds id " + i->spec.id : i.error().message));
    }
    if (hosts_.count(i->spec.host) == 0) {
        // Kept (it is what this process holds, and the inventory says so), but no action reaches
        // it until the host is served again.
        observe::Log("compute").warn("instance {} is on host {}, which this process does not serve", id,
                                     i->spec.host);
    }
    if (driver_->adopts() && i->power == Power::kOn) {
        // It may well run on (only the agent restarted): the driver says at Bind. Adopted running on
        // a leased host too, which starts fenced: nothing new boots there until its lease.
        to_adopt_.push_back(i->spec.id);
    } else if (leased_ && (i->power == Power::kOn || i->power == Power::kCrashed)) {
        // The host restarted: what ran is stopped, and the control plane decides what runs again.
        i->power = Power::kFenced;
        i->rebooting = false;
        i->restart_at_us = 0;
        fenced_at_load_.push_back(i->spec.id);
    }
    by_host_[i->spec.host].insert(i->spec.id);
    instances_[i->spec.id] = std::move(*i);
    return Ok();
}

void ComputeDomainImpl::Bind(kit::DomainContext& context) {
    context_ = &context;
    restart_timer_ = clock_.NewTimer(context.io());
    driver_->Bind(context.io(), *this);
    for (const std::string& id : to_adopt_) {
        driver_->Adopt(instances_.at(id).spec);
    }
    if (!to_adopt_.empty()) {
        observe::Log("compute").info("agent start: asking the driver about {} instance(s) that ran",
                                     to_adopt_.size());
    }
    to_adopt_.clear();
    std::set<std::string> known;
    for (const auto& [id, instance] : instances_) {
        known.insert(id);
    }
    driver_->CollectStrays(known);
    kit::Tx tx;
    for (const std::string& id : fenced_at_load_) {
        tx.Put(kTable, id, Record(instances_.at(id)));
    }
    if (!fenced_at_load_.empty()) {
        observe::Log("compute").info("host restart: {} instance(s) stopped, FENCED until started again",
                                     fenced_at_load_.size());
    }
    fenced_at_load_.clear();
    for (const auto& [id, i] : instances_) {
        if (i.power == Power::kCrashed) {
            due_.emplace(i.restart_at_us, id);
        }
    }
    if (!tx.writes().empty()) {
        context_->Write(std::move(tx));
    }
    ArmRestartTimer();
}

std::vector<std::pair<std::string, int64_t>> ComputeDomainImpl::RecordCounts() const {
    return {{std::string(kTable), static_cast<int64_t>(instances_.size())}};
}

int64_t ComputeDomainImpl::WindowUs() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(supervisor_.restart_window).count();
}

Status ComputeDomainImpl::Served(const std::string& host) const {
    if (hosts_.count(host) == 0) {
        return MakeError(FieldError("host", "this process does not serve host '" + host + "'"));
    }
    return Ok();
}

Status ComputeDomainImpl::Leased(const std::string& host, const Input& in) const {
    if (fenced_.contains(host)) {
        return MakeError(Error(ErrorCode::kUnavailable,
                               "host " + host + " is fenced: it holds no lease from the control plane",
                               /*retry=*/true));
    }
    COGS_ASSIGN_OR_RETURN(const std::optional<int64_t> sent, in.OptionalInt("lease_epoch", 0));
    if (auto known = lease_epochs_.find(host);
        sent && known != lease_epochs_.end() && *sent < known->second) {
        return MakeError(Error(ErrorCode::kUnavailable,
                               "stale call: sent under lease epoch " + std::to_string(*sent) + " of host " +
                                   host + ", which the control plane took in again since (epoch " +
                                   std::to_string(known->second) + ")",
                               /*retry=*/true));
    }
    return Ok();
}

Result<Instance*> ComputeDomainImpl::Find(const std::string& id, const std::string& host) {
    auto it = instances_.find(id);
    if (it == instances_.end() || it->second.spec.host != host) {
        return MakeError(ErrorCode::kNotFound, "no instance '" + id + "' on host " + host);
    }
    return &it->second;
}

Result<int64_t> ComputeDomainImpl::Boot(const Instance& i, int64_t now) {
    auto duration = driver_->Boot(i.spec);
    if (!duration) {
        return MakeError(duration.error());
    }
    if (*duration == kUntilReported) {
        return kReportedUs;
    }
    return now + std::chrono::duration_cast<std::chrono::microseconds>(*duration).count();
}

Result<kit::Done> ComputeDomainImpl::Create(const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(Instance i, ReadInstance(in));
    COGS_TRY(Served(i.spec.host));
    COGS_TRY(Leased(i.spec.host, in));
    const int64_t now = clock_.WallUs();
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
    COGS_ASSIGN_OR_RETURN(i.ready_at_us, Boot(i, now));
    i.created_at_ms = now / 1000;
    tx.Put(kTable, i.spec.id, Record(i));
    by_host_[i.spec.host].insert(i.spec.id);
    const Instance& stored = instances_[i.spec.id] = std::move(i);
    return Answer(stored, now);
}

Result<kit::Done> ComputeDomainImpl::Delete(const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.Id("id"));
    COGS_ASSIGN_OR_RETURN(const std::string host, in.String("host"));
    COGS_TRY(Served(host));
    json::object out;
    out["id"] = id;
    auto found = Find(id, host);
    if (!found) {
        // Absent here. An instance of that id on another host is not this call's to delete: a
        // compensation of a create refused for that reason must not remove the other one.
        out["deleted"] = false;
        return kit::Done{json::serialize(out)};
    }
    COGS_TRY(driver_->Delete((*found)->spec));
    by_host_[host].erase(id);
    instances_.erase(id);
    tx.Erase(kTable, id);
    if (context_ != nullptr) {
        context_->Finish(WaitName(id), MakeError(ErrorCode::kFailedPrecondition,
                                                 "instance " + id + " was deleted before it booted"));
    }
    out["deleted"] = true;
    return kit::Done{json::serialize(out)};
}

Result<Instance*> ComputeDomainImpl::Target(const Input& in) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.Id("id"));
    COGS_ASSIGN_OR_RETURN(const std::string host, in.String("host"));
    COGS_TRY(Served(host));
    return Find(id, host);
}

Result<kit::Done> ComputeDomainImpl::Start(bool reboot, const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(Instance* const found, Target(in));
    Instance& i = *found;
    COGS_TRY(Leased(i.spec.host, in));
    const int64_t now = clock_.WallUs();
    if (!reboot && i.power == Power::kOn) {
        return Answer(i, now);
    }
    COGS_ASSIGN_OR_RETURN(const int64_t ready, Boot(i, now));
    if (i.power != Power::kOn) {
        // Started by the control plane: a fresh start, the supervisor counts its crashes anew.
        i.crashes.clear();
    }
    i.power = Power::kOn;
    i.rebooting = reboot;
    i.ready_at_us = ready;
    i.restart_at_us = 0;
    tx.Put(kTable, i.spec.id, Record(i));
    return Answer(i, now);
}

Result<kit::Done> ComputeDomainImpl::Stop(const Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(Instance* const found, Target(in));
    Instance& i = *found;
    if (i.power != Power::kOff) {
        if (i.power == Power::kOn) {
            COGS_TRY(driver_->Stop(i.spec));
        }
        i.power = Power::kOff;
        i.rebooting = false;
        i.restart_at_us = 0;
        tx.Put(kTable, i.spec.id, Record(i));
        Settle(i, clock_.WallUs());
    }
    return Answer(i, clock_.WallUs());
}

}  // namespace internal

namespace {

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
    if (name == "container") {
        return internal::MakeContainerDriver(std::move(options));
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "driver: unknown compute driver '" + name + "' (sim, container)");
}

Result<std::unique_ptr<ComputeDomain>> MakeComputeDomain(ComputeOptions options,
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
    const SupervisorOptions& sup = options.supervisor;
    if (sup.restart_max < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "restart max: must be >= 1");
    }
    if (sup.restart_backoff.count() < 0 || sup.max_backoff < sup.restart_backoff) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "restart backoff: must be >= 0 and <= the maximum backoff");
    }
    if (sup.restart_window <= Duration::zero()) {
        return MakeError(ErrorCode::kInvalidArgument, "restart window: must be > 0");
    }
    runtime::Clock& clock = options.clock != nullptr ? *options.clock : runtime::SystemClock();
    auto domain = std::make_unique<internal::ComputeDomainImpl>(std::move(hosts), clock, std::move(driver),
                                                                options.leased, options.supervisor);
    domain->set_test_routes(options.test_routes);
    return std::unique_ptr<ComputeDomain>(std::move(domain));
}

}  // namespace cogs::services::compute
