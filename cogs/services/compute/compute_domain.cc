#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/compute.h"
#include "cogs/services/kit/dispatch.h"
#include "cogs/wire/answer.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {
namespace {

namespace json = wire::json;
using wire::Input;

constexpr std::string_view kTable = "instances";
constexpr std::string_view kGetPrefix = "/v1/instances/";

constexpr std::string_view kCrashSuffix = "/crash";
constexpr size_t kMaxReports = 1000;          // kept per host, unacknowledged
constexpr size_t kMaxReportsPerBeat = 100;    // sent in one heartbeat

// What an instance is doing apart from the boot clock (kOn: BUILD/REBOOT until ready_at_us, then ACTIVE).
enum class Power { kOn, kOff, kCrashed, kFenced, kError };

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

struct Instance {
    InstanceSpec spec;
    std::string project_id;
    std::string name;
    int64_t created_at_ms = 0;
    Power power = Power::kOn;
    bool rebooting = false;  // the current boot is a reboot (REBOOT rather than BUILD until ready)
    int64_t ready_at_us = 0;
    std::vector<int64_t> crashes;  // when it crashed (µs), oldest first: those of the last window
    int64_t restart_at_us = 0;     // kCrashed: when the supervisor boots it again

    const char* State(int64_t now_us) const {
        switch (power) {
            case Power::kOff:
                return "SHUTOFF";
            case Power::kCrashed:
                return "CRASHED";
            case Power::kFenced:
                return "FENCED";
            case Power::kError:
                return "ERROR";
            case Power::kOn:
                break;
        }
        if (now_us < ready_at_us) {
            return rebooting ? "REBOOT" : "BUILD";
        }
        return "ACTIVE";
    }

    int64_t CrashesSince(int64_t since_us) const {
        return std::count_if(crashes.begin(), crashes.end(), [&](int64_t at) { return at >= since_us; });
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

// An instance event the control plane has not acknowledged yet (HostLink::HeartbeatBody).
struct Report {
    uint64_t seq = 0;
    std::string instance;
    std::string_view type;  // "crashed", "restarted", "gave_up"
    std::string message;
    int64_t at_ms = 0;
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
    o["power"] = ToString(i.power);
    o["boot"] = i.rebooting ? "reboot" : "boot";
    o["ready_at_us"] = i.ready_at_us;
    o["crashes"] = json::array(i.crashes.begin(), i.crashes.end());
    o["restart_at_us"] = i.restart_at_us;
    return json::serialize(o);
}

// The fields of an instance that create_instance takes (and its record holds).
Result<Instance> ReadInstance(const Input& in) {
    Instance i;
    COGS_ASSIGN_OR_RETURN(i.spec.id, in.Id("id"));
    COGS_ASSIGN_OR_RETURN(i.spec.host, in.String("host"));
    COGS_ASSIGN_OR_RETURN(i.spec.vcpus, in.Int("vcpus", 1));
    COGS_ASSIGN_OR_RETURN(i.spec.ram_mb, in.Int("ram_mb", 1));
    COGS_ASSIGN_OR_RETURN(i.spec.disk_gb, in.Int("disk_gb", 0));
    COGS_ASSIGN_OR_RETURN(i.spec.image, in.String("image"));
    for (auto [field, out] : {std::pair{"port_id", &i.spec.port_id}, std::pair{"mac_address", &i.spec.mac_address},
                              std::pair{"ip_address", &i.spec.ip_address}, std::pair{"project_id", &i.project_id},
                              std::pair{"name", &i.name}}) {
        COGS_ASSIGN_OR_RETURN(auto value, in.OptionalString(field));
        *out = value.value_or("");
    }
    return i;
}

// A stored instance (Record's shape). crashes and restart_at_us are absent from records written
// before the supervisor existed.
Result<Instance> ReadRecord(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(const Input in,
                          Input::Parse(text,
                                       {"id", "host", "vcpus", "ram_mb", "disk_gb", "image", "port_id", "mac_address",
                                        "ip_address", "project_id", "name", "created_at_ms", "power", "boot",
                                        "ready_at_us", "crashes", "restart_at_us"},
                                       "record"));
    COGS_ASSIGN_OR_RETURN(Instance i, ReadInstance(in));
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
    return i;
}

class ComputeDomainImpl final : public ComputeDomain {
public:
    ComputeDomainImpl(std::map<std::string, HostSpec, std::less<>> hosts, runtime::Clock& clock,
                      std::unique_ptr<ComputeDriver> driver, bool leased, SupervisorOptions supervisor)
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

    std::string_view name() const override { return "compute"; }

    std::vector<kit::Action> actions() override {
        return {{"create_instance",
                 {"id", "host", "vcpus", "ram_mb", "disk_gb", "image", "port_id", "mac_address", "ip_address",
                  "project_id", "name"},
                 std::bind_front(&ComputeDomainImpl::Create, this)},
                {"delete_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Delete, this)},
                {"start_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Start, this, false)},
                {"stop_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Stop, this)},
                {"reboot_instance", {"id", "host"}, std::bind_front(&ComputeDomainImpl::Start, this, true)}};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view text) override {
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
        if (leased_ && (i->power == Power::kOn || i->power == Power::kCrashed)) {
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

    // From here on the supervisor has timers and writes records of its own.
    void Bind(kit::DomainContext& context) override {
        context_ = &context;
        restart_timer_ = clock_.NewTimer(context.io());
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

    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override {
        return {{std::string(kTable), static_cast<int64_t>(instances_.size())}};
    }

    // cogs_compute_instances{host,state}, from the clock like every state. A host and state seen at
    // an earlier scrape and empty now is set to 0 rather than left at its last value. The handles
    // are kept (per registry) so a scrape of thousands of hosts does not look each one up again.
    // Also cogs_compute_host_fenced{host} and the supervisor's and fencing's counters, which count
    // in the domain and are brought up to date here (a counter only goes up by what is new).
    void Collect(observe::Metrics& metrics) const override {
        if (gauges_for_ != &metrics) {
            gauges_.clear();
            gauges_for_ = &metrics;
            family_ = observe::GaugeOf(&metrics, "cogs_compute_instances",
                                       "Instances this process holds, by host and state.");
            const observe::GaugeFamily fenced =
                observe::GaugeOf(&metrics, "cogs_compute_host_fenced",
                                 "1 while the host is fenced (it holds no lease from the control plane), "
                                 "else 0.");
            fenced_gauges_.clear();
            for (const auto& [name, h] : hosts_) {
                fenced_gauges_.push_back(fenced.With({{"host", name}}));
            }
            const observe::CounterFamily restarts = observe::CounterOf(
                &metrics, "cogs_compute_restarts_total",
                "Supervisor outcomes for crashed instances: restarted, or gave_up (the instance went to "
                "ERROR).");
            restarted_counter_ = restarts.With({{"outcome", "restarted"}});
            gave_up_counter_ = restarts.With({{"outcome", "gave_up"}});
            fences_counter_ = observe::CounterOf(&metrics, "cogs_compute_fences_total",
                                                 "Times a host fenced itself when its lease ran out.")
                                  .With({});
            counted_ = Counts{};
        }
        const int64_t now = clock_.WallUs();
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
        size_t k = 0;
        for (const auto& [name, h] : hosts_) {
            fenced_gauges_[k++].Set(fenced_.contains(name) ? 1.0 : 0.0);
        }
        restarted_counter_.Inc(static_cast<double>(counts_.restarted - counted_.restarted));
        gave_up_counter_.Inc(static_cast<double>(counts_.gave_up - counted_.gave_up));
        fences_counter_.Inc(static_cast<double>(counts_.fences - counted_.fences));
        counted_ = counts_;
    }

    std::string Inventory() const override {
        const int64_t now = clock_.WallUs();
        json::array hosts;
        for (const auto& [name, h] : hosts_) {
            json::object o;
            o["name"] = h.name;
            o["availability_zone"] = h.availability_zone;
            o["vcpus"] = h.vcpus;
            o["ram_mb"] = h.ram_mb;
            o["disk_gb"] = h.disk_gb;
            o["traits"] = json::array(h.traits.begin(), h.traits.end());
            o["fenced"] = fenced_.contains(name);
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
            return it == instances_.end() ? std::nullopt : std::optional<json::object>(Describe(it->second, clock_.WallUs()));
        });
    }

    // POST /v1/instances/{id}/crash: the instance dies now; answered once that is recorded.
    bool Post(const http::Request& request, const http::Respond& respond) override {
        const std::string path = request.Path();
        if (!path.starts_with(kGetPrefix) || !path.ends_with(kCrashSuffix) ||
            path.size() <= kGetPrefix.size() + kCrashSuffix.size()) {
            return false;
        }
        const size_t id_size = path.size() - kGetPrefix.size() - kCrashSuffix.size();
        const std::string id = http::UrlDecode(std::string_view(path).substr(kGetPrefix.size(), id_size));
        auto it = instances_.find(id);
        if (it == instances_.end()) {
            respond(wire::ServiceError(Error(ErrorCode::kNotFound, "no instance '" + id + "'")));
            return true;
        }
        Instance& i = it->second;
        const int64_t now = clock_.WallUs();
        if (i.power != Power::kOn) {
            respond(wire::ServiceError(Error(ErrorCode::kConflict, "instance " + id + " is not running (state " +
                                                                       i.State(now) + "): nothing to crash")));
            return true;
        }
        kit::Tx tx;
        Crash(i, now, tx);
        json::object body;
        body["instance"] = Describe(i, now);
        http::Response ok;
        ok.body = json::serialize(body);
        if (context_ == nullptr) {
            respond(std::move(ok));
            return true;
        }
        context_->Write(std::move(tx), [respond, ok = std::move(ok)]() mutable { respond(std::move(ok)); });
        return true;
    }

    // ---- HostLink ----

    size_t SetFenced(std::string_view host, bool fenced) override {
        if (hosts_.find(host) == hosts_.end()) {
            return 0;
        }
        if (!fenced) {
            if (auto it = fenced_.find(host); it != fenced_.end()) {
                fenced_.erase(it);
            }
            return 0;
        }
        if (!fenced_.emplace(host).second) {
            return 0;
        }
        ++counts_.fences;
        kit::Tx tx;
        size_t stopped = 0;
        if (auto ids = by_host_.find(host); ids != by_host_.end()) {
            for (const std::string& id : ids->second) {
                Instance& i = instances_.at(id);
                if (i.power != Power::kOn && i.power != Power::kCrashed) {
                    continue;
                }
                if (i.power == Power::kOn) {
                    if (auto s = driver_->Stop(i.spec); !s) {
                        // It is fenced all the same: nothing of it may run without a lease.
                        observe::Log("compute").error("fencing: stopping instance {} failed: {}", id,
                                                      s.error().ToString());
                    }
                }
                i.power = Power::kFenced;
                i.rebooting = false;
                i.restart_at_us = 0;
                tx.Put(kTable, id, Record(i));
                ++stopped;
            }
        }
        if (context_ != nullptr && !tx.writes().empty()) {
            context_->Write(std::move(tx));
        }
        return stopped;
    }

    std::string HeartbeatBody(std::string_view host) const override {
        const int64_t now = clock_.WallUs();
        json::object counts;
        if (auto ids = by_host_.find(host); ids != by_host_.end()) {
            for (const std::string& id : ids->second) {
                const char* state = instances_.at(id).State(now);
                if (json::value* n = counts.if_contains(state)) {
                    *n = n->as_int64() + 1;
                } else {
                    counts[state] = 1;
                }
            }
        }
        json::array reports;
        if (auto q = reports_.find(host); q != reports_.end()) {
            for (size_t k = 0; k < q->second.size() && k < kMaxReportsPerBeat; ++k) {
                const Report& r = q->second[k];
                json::object o;
                o["seq"] = r.seq;
                o["instance"] = r.instance;
                o["type"] = r.type;
                o["message"] = r.message;
                o["at_ms"] = r.at_ms;
                reports.push_back(std::move(o));
            }
        }
        json::object o;
        o["instances"] = std::move(counts);
        o["reports"] = std::move(reports);
        return json::serialize(o);
    }

    void Acknowledged(std::string_view host, uint64_t acked_seq) override {
        auto q = reports_.find(host);
        if (q == reports_.end()) {
            return;
        }
        while (!q->second.empty() && q->second.front().seq <= acked_seq) {
            q->second.pop_front();
        }
    }

private:
    static json::object Describe(const Instance& i, int64_t now, int64_t window_us) {
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
        o["crashes"] = i.CrashesSince(now - window_us);
        return o;
    }
    json::object Describe(const Instance& i, int64_t now) const { return Describe(i, now, WindowUs()); }

    // The answer of an action on `i`: ACTIVE once the current boot (if any) has ended, ready then; the
    // state of an instance that is not running.
    static kit::Done Answer(const Instance& i, int64_t now) {
        json::object o;
        o["id"] = i.spec.id;
        o["host"] = i.spec.host;
        o["state"] = i.power == Power::kOn ? "ACTIVE" : i.State(now);
        const bool booting = i.power == Power::kOn && i.ready_at_us > now;
        return kit::Done{json::serialize(o), booting ? i.ready_at_us : 0};
    }

    int64_t WindowUs() const {
        return std::chrono::duration_cast<std::chrono::microseconds>(supervisor_.restart_window).count();
    }

    // Refuses a host this process does not serve.
    Status Served(const std::string& host) const {
        if (hosts_.count(host) == 0) {
            return MakeError(FieldError("host", "this process does not serve host '" + host + "'"));
        }
        return Ok();
    }

    // Work that starts an instance needs the host's lease.
    Status Leased(const std::string& host) const {
        if (fenced_.contains(host)) {
            return MakeError(Error(ErrorCode::kUnavailable,
                                   "host " + host + " is fenced: it holds no lease from the control plane",
                                   /*retry=*/true));
        }
        return Ok();
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

    Result<kit::Done> Create(const Input& in, kit::Tx& tx) {
        COGS_ASSIGN_OR_RETURN(Instance i, ReadInstance(in));
        COGS_TRY(Served(i.spec.host));
        COGS_TRY(Leased(i.spec.host));
        const int64_t now = clock_.WallUs();
        if (auto it = instances_.find(i.spec.id); it != instances_.end()) {
            const Instance& old = it->second;
            if (old.spec.host != i.spec.host) {
                return MakeError(ErrorCode::kFailedPrecondition,
                                 "instance " + i.spec.id + " exists on host " + old.spec.host);
            }
            if (!old.SameAs(i)) {
                return MakeError(ErrorCode::kAlreadyExists, "instance " + i.spec.id + " exists with other values");
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

    Result<kit::Done> Delete(const Input& in, kit::Tx& tx) {
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
        out["deleted"] = true;
        return kit::Done{json::serialize(out)};
    }

    // The instance an {id, host} input names.
    Result<Instance*> Target(const Input& in) {
        COGS_ASSIGN_OR_RETURN(const std::string id, in.Id("id"));
        COGS_ASSIGN_OR_RETURN(const std::string host, in.String("host"));
        COGS_TRY(Served(host));
        return Find(id, host);
    }

    // start_instance (reboot false) and reboot_instance.
    Result<kit::Done> Start(bool reboot, const Input& in, kit::Tx& tx) {
        COGS_ASSIGN_OR_RETURN(Instance* const found, Target(in));
        Instance& i = *found;
        COGS_TRY(Leased(i.spec.host));
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

    Result<kit::Done> Stop(const Input& in, kit::Tx& tx) {
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
        }
        return Answer(i, clock_.WallUs());
    }

    // ---- the supervisor ----

    // The wait before the restart after the n-th crash within the window (n >= 1).
    int64_t BackoffUs(size_t n) const {
        using std::chrono::microseconds;
        const int64_t cap = std::chrono::duration_cast<microseconds>(supervisor_.max_backoff).count();
        int64_t wait = std::chrono::duration_cast<microseconds>(supervisor_.restart_backoff).count();
        for (size_t k = 1; k < n && wait < cap; ++k) {
            wait *= 2;
        }
        return std::min(wait, cap);
    }

    void Crash(Instance& i, int64_t now, kit::Tx& tx) {
        const observe::LogScope scope(observe::LogContext{"", "", i.spec.id});
        const int64_t since = now - WindowUs();
        std::erase_if(i.crashes, [&](int64_t at) { return at < since; });
        i.crashes.push_back(now);
        const size_t n = i.crashes.size();
        const std::string window = std::to_string(WindowUs() / 1'000'000) + " s";
        i.rebooting = false;
        if (static_cast<int64_t>(n) >= supervisor_.restart_max) {
            i.power = Power::kError;
            i.restart_at_us = 0;
            ++counts_.gave_up;
            AddReport(i, "crashed", "instance crashed (" + std::to_string(n) + " in " + window + ")", now);
            AddReport(i, "gave_up",
                      "instance crashed " + std::to_string(n) + " times in " + window +
                          ": not restarted again",
                      now);
            observe::Log("compute").warn(
                "instance {} on host {} crashed {} times in {}: ERROR, not restarted", i.spec.id, i.spec.host,
                n, window);
        } else {
            const int64_t wait = BackoffUs(n);
            i.power = Power::kCrashed;
            i.restart_at_us = now + wait;
            AddReport(i, "crashed",
                      "instance crashed (" + std::to_string(n) + " in " + window + "): restart in " +
                          std::to_string(wait / 1000) + " ms",
                      now);
            observe::Log("compute").info("instance {} on host {} crashed ({} in {}): restart in {} ms",
                                         i.spec.id, i.spec.host, n, window, wait / 1000);
            due_.emplace(i.restart_at_us, i.spec.id);
            ArmRestartTimer();
        }
        tx.Put(kTable, i.spec.id, Record(i));
    }

    // One timer for every pending restart, set for the earliest.
    void ArmRestartTimer() {
        if (restart_timer_ == nullptr || due_.empty()) {
            return;
        }
        const int64_t at = due_.begin()->first;
        if (armed_for_.has_value() && *armed_for_ <= at) {
            return;
        }
        armed_for_ = at;
        // The timer is the domain's: destroyed with it, its callback never runs afterwards.
        restart_timer_->ArmAfter(std::chrono::microseconds(std::max<int64_t>(0, at - clock_.WallUs())), [this] {
            armed_for_.reset();
            RestartDue();
        });
    }

    void RestartDue() {
        const int64_t now = clock_.WallUs();
        kit::Tx tx;
        while (!due_.empty() && due_.begin()->first <= now) {
            const auto [at, id] = *due_.begin();
            due_.erase(due_.begin());
            auto it = instances_.find(id);
            // Started, stopped, fenced, deleted or crashed again since: that restart is not due.
            if (it == instances_.end() || it->second.power != Power::kCrashed ||
                it->second.restart_at_us != at || fenced_.contains(it->second.spec.host)) {
                continue;
            }
            Restart(it->second, now, tx);
        }
        if (context_ != nullptr && !tx.writes().empty()) {
            context_->Write(std::move(tx));
        }
        ArmRestartTimer();
    }

    void Restart(Instance& i, int64_t now, kit::Tx& tx) {
        const observe::LogScope scope(observe::LogContext{"", "", i.spec.id});
        auto ready = Boot(i, now);
        if (!ready) {
            const int64_t wait = BackoffUs(i.crashes.size());
            observe::Log("compute").warn("restarting instance {} failed: {} (again in {} ms)", i.spec.id,
                                         ready.error().ToString(), wait / 1000);
            i.restart_at_us = now + wait;
            due_.emplace(i.restart_at_us, i.spec.id);
        } else {
            i.power = Power::kOn;
            i.rebooting = false;
            i.ready_at_us = *ready;
            i.restart_at_us = 0;
            ++counts_.restarted;
            AddReport(i, "restarted",
                      "instance restarted after crash " + std::to_string(i.crashes.size()), now);
            observe::Log("compute").info("instance {} on host {} restarted", i.spec.id, i.spec.host);
        }
        tx.Put(kTable, i.spec.id, Record(i));
    }

    void AddReport(const Instance& i, std::string_view type, std::string message, int64_t now) {
        // Above the wall clock in µs: a restarted process goes on above what the last one sent.
        last_seq_ = std::max<uint64_t>(last_seq_ + 1, static_cast<uint64_t>(std::max<int64_t>(now, 0)));
        std::deque<Report>& q = reports_[i.spec.host];
        q.push_back(Report{last_seq_, i.spec.id, type, std::move(message), now / 1000});
        if (q.size() > kMaxReports) {
            q.pop_front();
        }
    }

    struct Counts {
        uint64_t restarted = 0;
        uint64_t gave_up = 0;
        uint64_t fences = 0;
    };

    std::map<std::string, HostSpec, std::less<>> hosts_;
    runtime::Clock& clock_;
    std::unique_ptr<ComputeDriver> driver_;
    const bool leased_;
    const SupervisorOptions supervisor_;
    std::map<std::string, Instance, std::less<>> instances_;
    std::map<std::string, std::set<std::string>, std::less<>> by_host_;  // host -> its instances' ids
    std::set<std::string, std::less<>> fenced_;                          // hosts fenced now
    std::vector<std::string> fenced_at_load_;  // loaded FENCED (leased): recorded so at Bind
    std::map<std::string, std::deque<Report>, std::less<>> reports_;  // per host, oldest first
    uint64_t last_seq_ = 0;
    Counts counts_;

    kit::DomainContext* context_ = nullptr;
    std::unique_ptr<runtime::Timer> restart_timer_;
    std::optional<int64_t> armed_for_;                 // the restart time the timer waits for
    std::set<std::pair<int64_t, std::string>> due_;    // pending restarts: (restart_at_us, id)

    // Collect's handles, for the registry gauges_for_: {host, state} -> gauge, and the others.
    mutable std::map<std::pair<std::string, std::string>, observe::Gauge> gauges_;
    mutable const observe::Metrics* gauges_for_ = nullptr;
    mutable observe::GaugeFamily family_;
    mutable std::vector<observe::Gauge> fenced_gauges_;  // hosts_ order
    mutable observe::Counter restarted_counter_;
    mutable observe::Counter gave_up_counter_;
    mutable observe::Counter fences_counter_;
    mutable Counts counted_;  // what the counters of gauges_for_ already hold
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
    return std::unique_ptr<ComputeDomain>(std::make_unique<ComputeDomainImpl>(
        std::move(hosts), clock, std::move(driver), options.leased, options.supervisor));
}

}  // namespace cogs::services::compute
