// Containers: the OCI containers of one agent, each run by runc under its own shim — what the
// compute driver `container` is built on.
//
//   oci::Containers containers({.dir = "/var/lib/cogs/host-1/containers",
//                               .runc_root = "/run/cogs/host-1/runc"});
//   auto started = containers.Start(spec);      // writes the bundle, starts the shim, waits for runc
//   auto status = containers.Status("i-1");     // running / exited(status) / absent
//   containers.Stop("i-1", 10s);                // SIGTERM, SIGKILL after the grace
//   containers.Remove("i-1");                   // nothing of it left: state, cgroups, mounts, files
//   auto all = containers.List();               // after an agent restart: what runs, what is left
//
// Each container has a directory <dir>/<id> (README.md, "A container's directory"): its bundle, the
// shim's pid file and log, runc's pid file and log, the console log and, once it has ended, its exit
// status. A container outlives the process that started it: its shim is detached, so the agent may
// exit, crash or restart while its containers run on, and a new Containers on the same directories
// sees them again (List, Status): that is adoption. Nothing here is kept in memory.
//
// What each status means to the driver:
//   kCreating  the shim runs runc, the container's process has not started yet  -> BUILD
//   kRunning   its process runs (or is paused)                                   -> ACTIVE
//   kExited    its process ended: on its own, killed from outside, or stopped    -> CRASHED (or SHUTOFF
//              after Stop); exit_status is its status as a shell reports it (3; 137 for SIGKILL), -1
//              when unknown (its shim was killed before it could write the status)
//   kAbsent    no directory and no runc state: nothing to remove
//
// Threading: a Containers is immutable after construction. Every method blocks the calling thread:
// on runc (one process per call, milliseconds) and on polling the container's files, each call
// bounded by the deadlines below. Call them from a worker thread, never from an io thread. Calls for
// different ids may run concurrently; calls for one id must not (the driver runs one action per
// instance at a time).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/oci/bundle.h"
#include "cogs/oci/runc.h"

namespace cogs::oci {

struct ContainersOptions {
    // The containers' directories, <dir>/<id> (created as needed). Absolute.
    std::string dir;
    // runc's state root (--root). Absolute; a tmpfs such as /run/cogs/<host>/runc, so that after a
    // reboot no state claims containers that no longer exist.
    std::string runc_root;
    std::string runc_binary = "/usr/sbin/runc";
    // "" = cogs-oci-shim beside the running binary (runtime::SiblingBinary).
    std::string shim_binary;
    // Bytes per console file (>= kMinConsoleBytes): console.log and console.log.1 never hold more
    // than twice this.
    int64_t console_max_bytes = 1 << 20;
    // The deadline of each runc call, of the shim's launch, and of a wait for a shim to write an
    // exit status or to end.
    Duration call_timeout = std::chrono::seconds(10);
    // How long Start waits for the container's process to run (runc sets up namespaces, cgroups and
    // mounts first: tens of milliseconds on an idle machine).
    Duration start_timeout = std::chrono::seconds(30);
    // After the SIGKILL of Stop, how long to wait for the container to be gone.
    Duration kill_timeout = std::chrono::seconds(10);
    // How often a container's shim reads its lease file (ContainerSpec::lease_file; ShimOptions).
    Duration lease_check = std::chrono::milliseconds(100);
};

enum class ContainerState { kAbsent, kCreating, kRunning, kExited };
std::string_view ToString(ContainerState state);

struct ContainerStatus {
    ContainerState state = ContainerState::kAbsent;
    int exit_status = -1;  // kExited: the status (-1: unknown)
    pid_t pid = 0;         // kRunning: the container's first process, as the host sees it
    bool shim_alive = false;

    bool operator==(const ContainerStatus&) const = default;
};

struct ContainerInfo {
    std::string id;
    ContainerStatus status;
    bool has_dir = false;  // <dir>/<id> exists
    bool in_runc = false;  // runc holds state for it
};

class Containers {
public:
    explicit Containers(ContainersOptions options);

    const ContainersOptions& options() const { return options_; }
    // <dir>/<id>.
    std::string DirOf(const std::string& id) const;

    // Writes <dir>/<id>/bundle/config.json, starts the container's shim and waits until the
    // container's process runs (kRunning), or has already ended (kExited: a process that exits at
    // once is a start that worked and a crash, for the driver to handle as one). With
    // spec.lease_file the shim is also the container's watchdog (shim.h, step 8): it kills the
    // container once that lease has ended, and does not start it without a lease (kUnavailable,
    // "the host holds no lease"). An earlier run's
    // files are replaced, its console log kept (appended to, as a machine's serial log is).
    // Errors: ValidateSpec's (kInvalidArgument naming the field); kInvalidArgument naming the field
    // if the rootfs, a mount source or the netns does not exist (nothing written); kAlreadyExists if the
    // container is creating or running; kFailedPrecondition if runc could not create it (runc's words: a
    // missing program, a bad rootfs; nothing left running); kDeadlineExceeded if it did not run within
    // start_timeout (it may still start: Stop or Remove it); kUnavailable for the shim or the files.
    Result<ContainerStatus> Start(const ContainerSpec& spec) const;

    // What the container is doing now (see the table above). While its shim lives, answered from
    // the container's files without running runc (so it lags a process's end by the moment the
    // shim takes to write the status); otherwise from `runc state`. A container whose process has
    // ended while its shim is still writing the status is waited for (up to call_timeout).
    // Errors: kInvalidArgument for a bad id; runc's (kUnavailable, kDeadlineExceeded).
    Result<ContainerStatus> Status(const std::string& id) const;

    // Stops the container: SIGTERM to its first process, up to `grace` for it to end, then SIGKILL to
    // every process in it and up to kill_timeout for it to be gone. Answers its final status
    // (kExited: what the process exited with, or 137 after SIGKILL). The first process is PID 1 of
    // its pid namespace: the kernel delivers SIGTERM to it only if it handles SIGTERM (a shell with a
    // trap does; `sleep` or `httpd -f` run directly do not, and are killed after the grace). A grace
    // <= 0 is a power-off: SIGKILL at once, no SIGTERM (fencing). A container already ended answers
    // its status at once. Errors: kNotFound if absent;
    // kDeadlineExceeded if it still runs after the SIGKILL's wait; runc's.
    Result<ContainerStatus> Stop(const std::string& id, Duration grace) const;

    // Removes everything of the container: kills it if it runs (runc delete --force), waits for its
    // shim and runc to end (SIGKILL to a shim still alive after call_timeout), removes any cgroup
    // directory left of it, unmounts whatever is mounted at or under its directory (e.g. a rootfs
    // mount the caller made there) and removes the directory. Absent: success (idempotent).
    // A rootfs outside the directory is the caller's to remove. Errors: kUnavailable /
    // kDeadlineExceeded when something could not be removed (the message names it); retrying is safe.
    ::cogs::Status Remove(const std::string& id) const;

    // Every container known here: a directory under `dir` or a state under runc's root, by id, with
    // its status. After an agent restart: kRunning ones are adopted as they are; kExited ones are
    // crashes that happened meanwhile; ones without a directory (in_runc only) are leftovers. (A
    // Start of the same id meanwhile may show as in_runc only: take the list before starting.)
    Result<std::vector<ContainerInfo>> List() const;

    // The container's console output: the last `max_bytes` of console.log.1 and console.log ("" if
    // there is none). Errors: kInvalidArgument for a bad id.
    Result<std::string> Console(const std::string& id, int64_t max_bytes) const;

private:
    // `ran`: whether runc's pid file existed before `state` was read (see StatusFrom).
    Result<ContainerStatus> StatusFrom(const std::string& id, bool ran, const Result<RuncState>& state) const;
    bool Ran(const std::string& id) const;
    Result<ContainerStatus> WaitForExit(const std::string& id, SteadyTime deadline) const;
    ::cogs::Status WaitForShimEnd(const std::string& id, SteadyTime deadline) const;

    ContainersOptions options_;
    Runc runc_;
};

}  // namespace cogs::oci
