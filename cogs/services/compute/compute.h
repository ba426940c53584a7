// cogs-compute: the compute micro-service's domain (a cogs::services::kit::Domain).
//
// It owns instances (virtual servers) on the hosts this process serves. One process may act as
// many hosts (scale tests run thousands of simulated hosts in one process); every action names its
// host, and the domain refuses a host it does not serve. Capacity is not checked here: placement in
// the control plane (cogsd) owns it.
//
// Actions (inputs and outputs are JSON objects; an unknown, missing or mistyped field is refused
// with kInvalidArgument naming it; ids are 1-128 characters of [A-Za-z0-9._-]):
//
//   create_instance {id, host, vcpus >= 1, ram_mb >= 1, disk_gb >= 0, image, port_id?, mac_address?,
//                    ip_address?, project_id?, name?, network_id?, cidr?, gateway_ip?, user_data?,
//                    public_keys?}
//        (the last five: internal/instance_fields.h; user_data base64, at most 64 KiB decoded;
//        public_keys a list of OpenSSH public key lines)
//        -> long action: {id, host, state: "ACTIVE"} once booted (202 until then).
//        The same id on the same host with the same values answers the same (no second instance;
//        202 until that instance's boot ends; its state if it is not running any more, e.g.
//        "SHUTOFF"); with other values kAlreadyExists; the id on another host kFailedPrecondition.
//   delete_instance {id, host} -> {id, deleted}   deleted: whether it existed on that host (an
//        instance of that id on another host is left alone).
//   start_instance  {id, host} -> long action to {id, host, state: "ACTIVE"}; a running instance is
//        answered at once (or when its current boot ends). From any other state (SHUTOFF, CRASHED,
//        FENCED, ERROR) it boots, and its crash history is cleared.
//   stop_instance   {id, host} -> {id, host, state: "SHUTOFF"} at once (from any state).
//   reboot_instance {id, host} -> long action: REBOOT, then {id, host, state: "ACTIVE"} (also from
//        a stopped state: a hard reboot starts it).
//   attach_volumes  {id, host, volumes: [{volume_id, path?, device?}]} -> long action while the
//        driver mounts them (SyncVolumes), then {id, host, volume_ids}. At most kMaxVolumes per
//        instance; the same volume from another path kFailedPrecondition; no such instance
//        kNotFound. README.md, "Volumes".
//   detach_volumes  {id, host, volume_ids} -> long action while the driver unmounts them, then
//        {id, host, volume_ids}; a volume busy inside: kFailedPrecondition (never unmounted lazily).
//        An instance not on that host: done at once.
//   start/stop/reboot of an instance not on that host: kNotFound (non-retryable).
//   create/start/reboot on a fenced host: kUnavailable (retryable) "host H is fenced: it holds no
//        lease from the control plane"; stop and delete still work there.
//
// States: BUILD (after create/start, and a supervisor restart) or REBOOT (after reboot) until its boot
// ends, then ACTIVE, derived from the clock (a driver that reports: until it reports the process
// running; the long actions then wait for that report, kit::Done::wait_for, and fail with the
// driver's error if it cannot boot for good); SHUTOFF (stopped by an action); CRASHED (died, a
// restart is pending); FENCED (stopped because its host lost its lease, or the host restarted);
// ERROR (crashed too often: the supervisor gave up; or could not boot for good).
//
// GET /v1/instances/{id}/console -> 200 {"id", "output"}: the last 64 KiB of its console (the
// driver's; "" for sim), or 404.
//
// The supervisor: POST /v1/instances/{id}/crash (a test route: ComputeOptions::test_routes, else
// it does not exist; a running instance; 404 unknown id, 409 not running) makes the instance CRASHED now (the
// sim driver's stand-in for a guest that dies; a real driver reports the end of a process itself,
// DriverEvents::Exited, to the same effect). On an unfenced host a CRASHED instance is booted again (as
// start_instance does) restart_backoff after the crash, doubling for every further crash within
// restart_window, capped at max_backoff; its restart_max-th crash within the window makes it ERROR instead,
// never restarted again. Every crash, restart and give-up is a report (HostLink) for the control plane. Needs
// Bind (the kit's context: timers and writes); without it crashes are kept but never restarted.
//
// Leases and fencing (HostLink): the agent (agent.h) fences a host when its lease from the control
// plane runs out: every running, booting or CRASHED instance of it becomes FENCED (the running ones
// powered off: ComputeDriver::PowerOff, no graceful stop). The next lease unfences the host; its
// FENCED instances stay FENCED until start_instance or delete_instance.
// With ComputeOptions.leased every host starts fenced (no lease yet) and every instance that was
// neither SHUTOFF nor ERROR is loaded FENCED (the host restarted: the control plane decides what
// runs again) — unless the driver adopts(): then the driver is asked (Adopt) and what still runs
// stays ACTIVE (only the agent restarted), what ended is CRASHED (FENCED on a fenced host), what is
// gone FENCED.
//
// Inventory: {"hosts": [{name, availability_zone, vcpus, ram_mb, disk_gb, traits, fenced}],
//             "instances": [{id, host, state, vcpus, ram_mb, disk_gb, image, port_id, mac_address,
//                            ip_address, project_id, name, created_at_ms, ready_at_ms, crashes,
//                            volumes: [{volume_id, path}]}]} in
//             id order; crashes: crashes within the restart window.
// GET /v1/instances/{id} -> 200 {"instance": {...as in the inventory}} or 404.
//
// Records: one per instance in table "instances", rewritten at every change of its state (actions,
// crashes, restarts, fencing), so a restarted process derives the same states and crash histories.
//
// Threading: the domain and its driver live on the service's io_context thread (domain.h); its
// timers run there (from Bind on), and so must the HostLink calls.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"
#include "cogs/services/kit/domain.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {
class Clock;
}

namespace cogs::services::compute {

// A host as this process offers it to the control plane.
struct HostSpec {
    std::string name{};
    std::string availability_zone = "nova";
    int64_t vcpus = 16;
    int64_t ram_mb = 65536;
    int64_t disk_gb = 1000;
    std::vector<std::string> traits{};
};

// A volume attached to an instance: its data is the file system in the file `path` on this host
// (the volume service's file driver answers the path at attach). The container driver mounts it at
// /volumes/<volume_id> inside the instance. path "" (a volume with nothing on disk, the volume
// service's sim driver): recorded only, nothing mounted.
struct VolumeMount {
    std::string volume_id{};
    std::string path{};
    bool operator==(const VolumeMount&) const = default;
};

// At most this many volumes per instance (a VM's virtio-blk slots are bounded too).
inline constexpr size_t kMaxVolumes = 64;

// Its actions, as workflows name them after "compute." (cogsd's catalog refuses any other).
inline constexpr std::array<std::string_view, 7> kActions = {
    "create_instance", "delete_instance", "start_instance", "stop_instance",
    "reboot_instance", "attach_volumes",  "detach_volumes"};

// What a driver needs to know of an instance.
struct InstanceSpec {
    std::string id{};
    std::string host{};
    int64_t vcpus = 0;
    int64_t ram_mb = 0;
    int64_t disk_gb = 0;
    std::string image{};
    std::string port_id{};
    std::string mac_address{};
    std::string ip_address{};
    std::string project_id{};
    std::string name{};  // the server's name (a real instance's hostname)
    // How its port is plugged (internal/instance_fields.h; "" when not given): the port's network,
    // its subnet ("10.0.0.0/24") and the subnet's gateway. And what it runs at boot: user_data, the
    // decoded bytes (create_instance carries them as base64).
    std::string network_id{};
    std::string cidr{};
    std::string gateway_ip{};
    std::string user_data{};
    // The SSH public keys it is given (its server's key pair's), one OpenSSH line each.
    std::vector<std::string> public_keys{};
    std::vector<VolumeMount> volumes{};  // attached (attach_volumes), in the order attached
};

// Boot's answer of a driver whose instances have a life of their own: the driver does not know
// how long the boot takes and reports its end (DriverEvents).
inline constexpr Millis kUntilReported{-1};

// What a driver whose instances run on their own tells the domain (ComputeDriver::Bind). Called on
// the domain's io thread, only about the driver's latest Boot or Adopt of that instance (the driver
// drops reports about an earlier one, or one stopped or deleted since).
class DriverEvents {
public:
    virtual ~DriverEvents() = default;
    // Its process runs: BUILD/REBOOT -> ACTIVE (the long actions waiting for it end), or stays ACTIVE
    // after Adopt.
    virtual void Running(const std::string& id) = 0;
    // It could not be started. Retryable: a crash (the supervisor boots it again after its backoff,
    // and gives up to ERROR); not retryable (an unknown image): ERROR at once, and the long actions
    // waiting for it fail with `error`.
    virtual void BootFailed(const std::string& id, Error error) = 0;
    // It ended on its own, or was killed from outside: CRASHED (the supervisor), FENCED on a fenced
    // host.
    virtual void Exited(const std::string& id, std::string why) = 0;
    // Adopt found nothing of it (the machine rebooted): FENCED, until the control plane starts it.
    virtual void Gone(const std::string& id) = 0;
    // The SyncVolumes call `ticket` about instance `id` ended: its volumes are mounted as its spec
    // said then (Ok), or not (the error: a file missing on this host, a volume busy inside).
    virtual void VolumesSynced(const std::string& id, uint64_t ticket, Status result) {
        (void)id;
        (void)ticket;
        (void)result;
    }
};

// What runs instances. Every call is idempotent and short, made on the domain's io thread: it starts
// work and never waits for it. A simulated driver says how long a boot takes (the domain derives
// the state from the clock); a real one answers kUntilReported and reports (DriverEvents).
class ComputeDriver {
public:
    virtual ~ComputeDriver() = default;
    virtual std::string_view name() const = 0;

    // Starts (or restarts: a reboot) `instance`; answers how long until it is ACTIVE, or
    // kUntilReported.
    virtual Result<Millis> Boot(const InstanceSpec& instance) = 0;
    // Powers it off (a real driver: soon after, in the order of the calls about that instance).
    virtual Status Stop(const InstanceSpec& instance) = 0;
    // Powers it off at once, without the graceful shutdown Stop allows (a real driver: SIGKILL, no
    // grace), as the fencing of a host that lost its lease must: the control plane may rebuild the
    // instance elsewhere a fence window after the lease's end. Stop for a driver that runs nothing.
    virtual Status PowerOff(const InstanceSpec& instance) { return Stop(instance); }
    // Removes it and everything it holds; absent is success.
    virtual Status Delete(const InstanceSpec& instance) = 0;

    // Whether instances outlive this process (real ones do). If so, at start the domain does not
    // assume that what ran has stopped: it asks (Adopt) and believes the reports.
    virtual bool adopts() const { return false; }
    // Given once by the domain (its Bind), before any other call but name() and adopts(): the io
    // thread and where the reports go (both outlive the driver).
    virtual void Bind(boost::asio::io_context& io, DriverEvents& events) {
        (void)io;
        (void)events;
    }
    // At start, for an instance the records say is running or booting: reports Running (it still
    // runs: adopted, not restarted), Exited (it ended meanwhile) or Gone (nothing of it is left).
    virtual void Adopt(const InstanceSpec& instance) { (void)instance; }
    // Once, at Bind, after the Adopt calls: the ids of every instance this process holds a record
    // of. A driver whose instances outlive it removes whatever it finds of any other instance: a
    // delete is answered (and its record gone) before the driver's removal has run, and a process
    // stopped or killed meanwhile must not leave that container on the machine for ever.
    virtual void CollectStrays(const std::set<std::string>& known) { (void)known; }
    // Makes what the instance has mounted match instance.volumes: mounts those missing, unmounts
    // those no longer listed (idempotent; in the order of the calls about that instance, after a
    // Boot queued before). Answers true if it reports the end (DriverEvents::VolumesSynced with
    // `ticket`), false if there is nothing to wait for (a driver that only records). Boot mounts
    // instance.volumes too (after a reboot of the machine they are gone), and Delete unmounts them.
    virtual Result<bool> SyncVolumes(const InstanceSpec& instance, uint64_t ticket) {
        (void)instance;
        (void)ticket;
        return false;
    }
    // Its console output, the last `max_bytes` of it ("" if there is none, or nothing runs). Reads
    // a few local files at most.
    virtual Result<std::string> Console(const InstanceSpec& instance, int64_t max_bytes) const {
        (void)instance;
        (void)max_bytes;
        return std::string();
    }
};

struct ComputeDriverOptions {
    Millis boot_time{200};  // sim: how long an instance is BUILD (or REBOOT); 0 allowed

    // container: each instance is an OCI container under runc (cogs/oci), in its own network
    // namespace (cogs/linuxnet).
    std::string instances_dir{};  // <dir>/<instance id>: the container's files and its rootfs. Absolute.
    std::string runc_root{};      // runc's state (a tmpfs, e.g. /run/cogs/<name>/runc). Absolute.
    Duration stop_grace = std::chrono::seconds(10);  // SIGTERM, then SIGKILL after this (not PowerOff)
    // The hosts' lease files, <lease_dir>/<host> (absolute; oci/lease_file.h), that the agent writes
    // at every renewal (AgentOptions::lease_dir, the same directory): every container of a host is
    // killed by its shim once that host's lease has ended, agent or no agent. "": no watchdog (no
    // lease: without --control-url).
    std::string lease_dir{};
    std::string netns_prefix = "cg";  // linuxnet's prefix: instance X of host H's namespace is <prefix>-H.X
    Duration poll_interval = std::chrono::milliseconds(200);  // how often running instances are checked
    int workers = 2;           // threads for runc calls (calls about one instance run in order)
    size_t max_queued = 1024;  // calls waiting for a worker; beyond: kUnavailable (retryable)
    std::string runc_binary = "/usr/sbin/runc";
    std::string shim_binary{};             // "": cogs-oci-shim beside the running binary
    std::string busybox = "/bin/busybox";  // the built-in image "busybox" is made from it
    // Every other image is downloaded from cogsd once per host into images_dir ("": <instances_dir>
    // /.images, the agent's own) and kept, at most max_cached_images of them, the least recently
    // used going first (internal/image_cache.h). No control url: only "busybox" boots.
    std::vector<std::string> control_urls{};
    std::string control_token{};
    std::shared_ptr<http::TlsContext> control_tls{};  // for https control urls (the agent's)
    std::string images_dir{};
    size_t max_cached_images = 8;
};

// The drivers by name: "sim" (nothing runs; a boot takes options.boot_time); "container" (README.md,
// "The container driver"; kInvalidArgument naming a bad option, kFailedPrecondition if runc or
// busybox is missing or a directory cannot be made). kInvalidArgument for another name.
Result<std::unique_ptr<ComputeDriver>> MakeComputeDriver(std::string name, ComputeDriverOptions options);

// The instance supervisor (restarts of CRASHED instances).
struct SupervisorOptions {
    Millis restart_backoff{250};  // the first restart, after a crash; 0 allowed
    int restart_max = 5;          // this many crashes within the window: ERROR
    Duration restart_window = std::chrono::minutes(10);
    Duration max_backoff = std::chrono::seconds(10);  // the doubling stops here
};

struct ComputeOptions {
    std::vector<HostSpec> hosts;  // the hosts this process serves; at least one, names unique
    // Every reading of time (states, boots, crash windows, reports) and the supervisor's restart
    // timer; it must outlive the domain. null: runtime::SystemClock().
    runtime::Clock* clock = nullptr;
    // Hosts hold leases from a control plane (cogs-compute --control-url): every host starts fenced
    // and instances load FENCED (see the top). false: no lease, nothing is ever fenced by itself.
    bool leased = false;
    SupervisorOptions supervisor{};
    // The test route POST /v1/instances/{id}/crash (cogs-compute --test-routes); false: it does not
    // exist (404).
    bool test_routes = false;
};

// What the agent (agent.h) asks of the hosts' instances. Called on the domain's io thread.
class HostLink {
public:
    virtual ~HostLink() = default;

    // Fences `host` (true): refuses create/start/reboot there, and every running, booting or CRASHED
    // instance of it becomes FENCED (stopped; recorded); answers how many. Unfences it (false):
    // accepts work again, its FENCED instances stay FENCED; answers 0. Again the same: nothing, 0.
    // A host this process does not serve: nothing, 0.
    virtual size_t SetFenced(std::string_view host, bool fenced) = 0;

    // The control plane's lease epoch of `host` (its renewal answers' "lease_epoch": when it last
    // took the host in, at its own start or when the host came back from down). A create, start or
    // reboot whose input carries an older "lease_epoch" was sent before that, and may have been
    // given up and undone without this agent (a down host's calls are): refused, retryable, so
    // that a thawed or reconnected agent never starts what is already running elsewhere. Only
    // grows; a call without "lease_epoch" is not checked.
    virtual void SetLeaseEpoch(std::string_view host, int64_t epoch) = 0;

    // The body of `host`'s heartbeat (docs: the lease renewal): {"instances": {"<STATE>": count, ...}
    // (states with at least one instance), "reports": [{seq, instance, type, message, at_ms}, ...]}
    // with the oldest 100 reports not yet acknowledged. type: "crashed", "restarted", "gave_up".
    // seq increases across the process's reports and across restarts of the process (a report's seq
    // is at least the wall time in µs at which it was made). At most 1000 reports per host are kept
    // (in memory only), the oldest dropped first.
    virtual std::string HeartbeatBody(std::string_view host) const = 0;

    // The control plane has recorded `host`'s reports up to `acked_seq`: they are dropped.
    virtual void Acknowledged(std::string_view host, uint64_t acked_seq) = 0;
};

// The domain, with the agent's face (HostLink).
class ComputeDomain : public kit::Domain, public HostLink {};

// The domain: name "compute", table "instances" (one record per instance, JSON). kInvalidArgument
// for no hosts, a host without a name, a name twice, or supervisor options out of range
// (restart_max < 1, negative backoff, window <= 0).
Result<std::unique_ptr<ComputeDomain>> MakeComputeDomain(ComputeOptions options,
                                                         std::unique_ptr<ComputeDriver> driver);

}  // namespace cogs::services::compute
