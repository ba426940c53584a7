// ComputeDomainImpl: the ComputeDomain behind MakeComputeDomain (compute.h has the contract).
// Declared once here, its methods spread over files by concern:
//
//   compute_domain.cc      the action table and the actions, the records, Load and Bind
//   compute_supervisor.cc  crashes (the crash route) and the restarts: backoff, give-up, reports
//   compute_hosts.cc       the hosts: fencing and the heartbeat (HostLink), inventory, read route,
//                          metrics
//
// Threading: like every Domain, on its service's io thread; the restart timer runs there too.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/compute.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute::internal {

inline constexpr std::string_view kTable = "instances";
inline constexpr std::string_view kInstancesPrefix = "/v1/instances/";
// ready_at_us of a boot whose end the driver reports (Boot answered kUntilReported): BUILD until
// then, whatever the clock says.
inline constexpr int64_t kReportedUs = std::numeric_limits<int64_t>::max();
// How much console output GET /v1/instances/{id}/console answers at most.
inline constexpr int64_t kConsoleBytes = 64 * 1024;

// What the long actions of instance `id` wait for while its driver boots it (kit::Done::wait_for).
std::string WaitName(std::string_view id);

// What an instance is doing apart from the boot clock (kOn: BUILD/REBOOT until ready_at_us, then
// ACTIVE).
enum class Power { kOn, kOff, kCrashed, kFenced, kError };

struct Instance {
    InstanceSpec spec;
    int64_t created_at_ms = 0;
    Power power = Power::kOn;
    bool rebooting = false;  // the current boot is a reboot (REBOOT rather than BUILD until ready)
    int64_t ready_at_us = 0;
    std::vector<int64_t> crashes;  // when it crashed (µs), oldest first: those of the last window
    int64_t restart_at_us = 0;     // kCrashed: when the supervisor boots it again

    // "BUILD", "ACTIVE", "SHUTOFF", ... at wall time `now_us`.
    const char* State(int64_t now_us) const;
    int64_t CrashesSince(int64_t since_us) const;
    // Whether a create with `other`'s values asks for this very instance.
    bool SameAs(const Instance& other) const;
};

// An instance event the control plane has not acknowledged yet (HostLink::HeartbeatBody).
struct Report {
    uint64_t seq = 0;
    std::string instance;
    std::string_view type;  // "crashed", "restarted", "gave_up"
    std::string message;
    int64_t at_ms = 0;
};

// The stored record of an instance (table kTable), rewritten at every change of its state.
std::string Record(const Instance& i);

// The answer of an action on `i`: ACTIVE once the current boot (if any) has ended (long until then:
// ready_at_us, or waiting for WaitName(id) when the driver reports the end); the state of an
// instance that is not running.
kit::Done Answer(const Instance& i, int64_t now);

// The fields of a host as the control plane and the inventory see it: availability_zone, vcpus,
// ram_mb, disk_gb, traits (the agent's registration adds "url", the inventory "name" and "fenced").
void AddHostFields(const HostSpec& h, wire::json::object& o);

// ---- compute_volumes.cc ----
// An instance's volumes as its record and the inventory hold them: [{volume_id, path}].
wire::json::array VolumesJson(const std::vector<VolumeMount>& volumes);
// The array of objects `field` of `in` ({volume_id, path?}; with `allow_device`, also the volume
// service's device, ignored: its attach answer's attachments go as they are); at most kMaxVolumes,
// a volume_id twice with one path once, with two paths refused.
Result<std::vector<VolumeMount>> ReadVolumes(const wire::Input& in, std::string_view field,
                                             bool allow_device);

class ComputeDomainImpl final : public ComputeDomain, private DriverEvents {
public:
    ComputeDomainImpl(std::map<std::string, HostSpec, std::less<>> hosts, runtime::Clock& clock,
                      std::unique_ptr<ComputeDriver> driver, bool leased, SupervisorOptions supervisor);
    // ComputeOptions::test_routes: whether Post serves the crash route.
    void set_test_routes(bool on) { test_routes_ = on; }

    // ---- compute_domain.cc ----
    std::string_view name() const override;
    std::vector<kit::Action> actions() override;
    Status Load(std::string_view table, std::string_view id, std::string_view text) override;
    // From here on the supervisor has a timer and writes records of its own.
    void Bind(kit::DomainContext& context) override;
    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override;

    // ---- compute_supervisor.cc ----
    // POST /v1/instances/{id}/crash: the instance dies now; answered once that is recorded.
    bool Post(const http::Request& request, const http::Respond& respond) override;

    // What the driver reports (DriverEvents), on the io thread: the end of a boot, a process that
    // ended, an instance adoption found gone.
    void Running(const std::string& id) override;
    void BootFailed(const std::string& id, Error error) override;
    void Exited(const std::string& id, std::string why) override;
    void Gone(const std::string& id) override;
    // ---- compute_volumes.cc ----
    // A SyncVolumes ended: the attach or detach waiting for it answers (or fails with `result`).
    void VolumesSynced(const std::string& id, uint64_t ticket, Status result) override;

    // ---- compute_hosts.cc ----
    size_t SetFenced(std::string_view host, bool fenced) override;
    void SetLeaseEpoch(std::string_view host, int64_t epoch) override;
    std::string HeartbeatBody(std::string_view host) const override;
    void Acknowledged(std::string_view host, uint64_t acked_seq) override;
    std::string Inventory() const override;
    std::optional<http::Response> Get(const http::Request& request) const override;
    void Collect(observe::Metrics& metrics) const override;

private:
    // ---- compute_domain.cc: the actions ----
    Result<kit::Done> Create(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> Delete(const wire::Input& in, kit::Tx& tx);
    // start_instance (reboot false) and reboot_instance.
    Result<kit::Done> Start(bool reboot, const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> Stop(const wire::Input& in, kit::Tx& tx);
    // ---- compute_volumes.cc ----
    // attach_volumes {id, host, volumes: [{volume_id, path?, device?}]}: adds them to the instance
    // and has the driver mount them; detach_volumes {id, host, volume_ids}: removes them, and has
    // the driver unmount them. Long actions while the driver works (SyncVolumes).
    Result<kit::Done> AttachVolumes(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> DetachVolumes(const wire::Input& in, kit::Tx& tx);
    // Records `volumes` as i's and asks the driver to mount exactly those; answers `output` once
    // the driver has (at once for a driver that only records).
    Result<kit::Done> SyncVolumes(Instance& i, std::vector<VolumeMount> volumes, std::string output,
                                  kit::Tx& tx);
    // The instance an {id, host} input names.
    Result<Instance*> Target(const wire::Input& in);
    // The instance `id` on `host`, or kNotFound.
    Result<Instance*> Find(const std::string& id, const std::string& host);
    // Refuses a host this process does not serve.
    Status Served(const std::string& host) const;
    // Work that starts an instance needs the host's lease, and a call sent under its current
    // lease epoch (or one that names none).
    Status Leased(const std::string& host, const wire::Input& in) const;
    // Boots `i` at `now`: when it will be ACTIVE (µs).
    Result<int64_t> Boot(const Instance& i, int64_t now);
    int64_t WindowUs() const;

    // ---- compute_supervisor.cc ----
    // The wait before the restart after the n-th crash within the window (n >= 1).
    int64_t BackoffUs(size_t n) const;
    void Crash(Instance& i, int64_t now, kit::Tx& tx);
    // One timer for every pending restart, set for the earliest.
    void ArmRestartTimer();
    void RestartDue();
    void Restart(Instance& i, int64_t now, kit::Tx& tx);
    void AddReport(const Instance& i, std::string_view type, std::string message, int64_t now);
    // The instance reported by the driver, if it is running or booting (else the report is late).
    Instance* Reported(const std::string& id);
    // Ends the long actions waiting for `i` once it no longer boots: ACTIVE, SHUTOFF, FENCED (their
    // answer), ERROR (a refusal saying `why`); not while it boots or is CRASHED (the supervisor
    // boots it again).
    void Settle(const Instance& i, int64_t now, std::string_view why = {});
    // Commits the domain's own writes with the next group commit.
    void Commit(kit::Tx tx);

    // ---- compute_hosts.cc ----
    // The instance as the inventory and GET /v1/instances/{id} show it.
    wire::json::object Describe(const Instance& i, int64_t now) const;

    struct Counts {
        uint64_t restarted = 0;
        uint64_t gave_up = 0;
        uint64_t fences = 0;
    };

    std::map<std::string, HostSpec, std::less<>> hosts_;
    runtime::Clock& clock_;
    std::unique_ptr<ComputeDriver> driver_;
    const bool leased_;
    bool test_routes_ = false;
    const SupervisorOptions supervisor_;
    std::map<std::string, Instance, std::less<>> instances_;
    std::map<std::string, std::set<std::string>, std::less<>> by_host_;  // host -> its instances' ids
    std::set<std::string, std::less<>> fenced_;                          // hosts fenced now
    std::map<std::string, int64_t, std::less<>> lease_epochs_;           // host -> latest epoch
    std::vector<std::string> fenced_at_load_;  // loaded FENCED (leased): recorded so at Bind
    std::vector<std::string> to_adopt_;        // loaded running, driver adopts(): asked at Bind
    std::map<std::string, std::deque<Report>, std::less<>> reports_;  // per host, oldest first
    uint64_t last_seq_ = 0;
    Counts counts_;
    // SyncVolumes calls the driver reports: (instance, ticket) -> the answer once it has. Tickets
    // start at the wall time in µs, so that a restarted process never reuses the wait name of an
    // action a former one left pending.
    uint64_t next_volume_ticket_ = 0;
    std::map<std::pair<std::string, uint64_t>, std::string> volume_waits_;

    kit::DomainContext* context_ = nullptr;
    std::unique_ptr<runtime::Timer> restart_timer_;  // made at Bind
    std::optional<int64_t> armed_for_;               // the restart time the timer waits for
    std::set<std::pair<int64_t, std::string>> due_;  // pending restarts: (restart_at_us, id)

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

}  // namespace cogs::services::compute::internal
