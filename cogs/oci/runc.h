// The runc command line, as values: `runc state`, `kill`, `delete` and `list` of the containers
// under one state root (`runc --root`), each call a separate runc process run to its end with a
// deadline (runtime::RunCommand). Starting a container is not here: runc's `run` stays in the
// foreground for the container's whole life, so the shim (shim.h) runs it.
//
// Errors carry runc's own words: "runc kill c1: container not running". runc logs its errors as
// JSON lines (--log-format json) on stderr; their messages are what the errors say.
//
//   kNotFound            runc said "container does not exist" (State, Kill)
//   kFailedPrecondition  runc said "container not running" (Kill of a stopped container)
//   kDeadlineExceeded    runc did not end within the call's deadline (it was killed); retryable
//   kUnavailable         anything else runc refused, or output that is not runc's; retryable
//   kInvalidArgument     an id that is not a container id (never passed to runc)
//
// Threading: a Runc is immutable; its methods block the calling thread for one runc process each
// (milliseconds; up to `timeout`) and may run concurrently from several threads. Call them from a
// worker thread, never from an io thread.
#pragma once

#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::oci {

struct RuncOptions {
    std::string binary = "/usr/sbin/runc";
    // runc's state directory (--root), one per agent: only the containers under it are seen. On a
    // tmpfs (/run/...), so that a rebooted machine has no state of containers that no longer run.
    std::string root;
    // The deadline of each call, from its start.
    Duration timeout = std::chrono::seconds(10);
};

enum class RuncStatus {
    kCreating,  // runc is making it (runc: "creating")
    kCreated,   // made, its process not started (`runc run` passes through this in milliseconds)
    kRunning,
    kPausing,
    kPaused,
    kStopped,  // its process ended; runc's state remains until `delete`
};
std::string_view ToString(RuncStatus status);

struct RuncState {
    std::string id;
    RuncStatus status = RuncStatus::kStopped;
    int pid = 0;  // the container's first process, as the host sees it (0 once stopped)
    std::string bundle;
};

class Runc {
public:
    explicit Runc(RuncOptions options) : options_(std::move(options)) {}

    const RuncOptions& options() const { return options_; }

    // `runc state ID`. Errors: kNotFound if no such container exists under the root.
    Result<RuncState> State(const std::string& id) const;

    // `runc kill [--all] ID SIGNAL`: the signal to the container's first process (with `all`, to
    // every process in its cgroup). Errors: kNotFound, kFailedPrecondition (not running).
    Status Kill(const std::string& id, int signal, bool all = false) const;

    // `runc delete [--force] ID`: removes runc's state and the container's cgroups; `force` kills a
    // container that still runs first (SIGKILL). A container that does not exist is success.
    // Errors: kUnavailable when runc refuses (e.g. a running container without `force`).
    Status Delete(const std::string& id, bool force) const;

    // `runc list --format json`: every container under the root, in runc's order (by id). A root that
    // does not exist (yet) holds none.
    Result<std::vector<RuncState>> List() const;

private:
    Result<std::string> Run(const std::vector<std::string>& args, const std::string& what) const;

    RuncOptions options_;
};

}  // namespace cogs::oci
