// What a container is: its root filesystem, its process, its limits, its namespaces and what is
// mounted into it (`ContainerSpec`), and the writer of the OCI bundle that runc runs
// (`WriteBundle`: <bundle>/config.json, the runtime-spec 1.0 format).
//
// The spec is the driver's view; the bundle is runc's. Everything that names an OCI field stays in
// bundle.cc: a caller never sees the JSON. The defaults are those `runc spec` (runc 1.1) generates
// for a container without a terminal — namespaces pid, ipc, uts, mount and network; /proc, /dev,
// /dev/pts, /dev/shm, /dev/mqueue, /sys (read-only) and the container's own cgroups at
// /sys/fs/cgroup (read-only); runc's masked and read-only /proc and /sys paths; every device denied
// but runc's defaults (null, zero, full, random, urandom, tty, ptmx); capabilities CAP_AUDIT_WRITE,
// CAP_KILL and CAP_NET_BIND_SERVICE (so a guest can listen on port 80); RLIMIT_NOFILE 1024;
// no_new_privileges; uid and gid 0 — with the spec's limits and mounts added.
//
// Threading: stateless; safe from any thread. WriteBundle does file I/O: call it off io threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::oci {

// A host path made visible inside the container (a bind mount, recursive, nosuid, nodev):
// e.g. a directory holding meta.json at /run/cogs, a volume's mount at /volumes/<volume id>.
struct BindMount {
    std::string source;       // absolute host path of a file or directory that exists
    std::string destination;  // absolute path inside the container (runc creates it if missing)
    bool read_only = false;
    // Mounts made on the host under `source` after the container started appear inside too, and
    // their unmounts: the bind is a slave of the host's mount (rslave), which must be a shared
    // mount (e.g. a directory bound onto itself, then made shared). How a volume attached to a
    // running instance appears at /volumes/<id> without a restart. Mounts made inside never leak
    // out.
    bool receives_host_mounts = false;
};

// The CFS period every container gets; its quota is vcpus periods (vcpus CPUs' worth of time).
inline constexpr int64_t kCpuPeriodUs = 100000;

struct ContainerSpec {
    // runc's container id, the name of the container's directory and of its cgroup: 1-128
    // characters of [A-Za-z0-9._-], the first a letter or digit.
    std::string id;
    // The root filesystem: an absolute path to a directory the caller prepared (an image copy, an
    // overlay mount). The container writes into it unless readonly_rootfs.
    std::string rootfs;
    bool readonly_rootfs = false;

    // The container's first process: args[0] absolute or found through env's PATH (the default PATH
    // /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin is added when env has none).
    std::vector<std::string> args;
    std::vector<std::string> env;  // "NAME=value"
    std::string cwd = "/";         // absolute
    // 1-64 characters of [A-Za-z0-9._-] (the driver derives it from the server's name).
    std::string hostname;

    // Limits. vcpus >= 1: CFS quota vcpus * kCpuPeriodUs per kCpuPeriodUs. cpu_shares, if set, in
    // [2, 262144] (cgroup v1 cpu.shares; runc converts it to cpu.weight on v2). memory_mib >= 1: the
    // memory limit, and memory+swap the same (no swap). pids_limit >= 1: processes and threads.
    int vcpus = 1;
    std::optional<uint64_t> cpu_shares;
    int64_t memory_mib = 0;
    int64_t pids_limit = 1024;

    // The network namespace to join, e.g. /run/netns/<name> prepared by the network driver (absolute);
    // "" gives the container a new one with only a loopback interface.
    std::string netns_path;

    std::vector<BindMount> mounts;

    // The container's cgroup is /<cgroup_parent>/<id> in every hierarchy (v1: each controller's,
    // e.g. /sys/fs/cgroup/memory/cogs/<id>; v2: /sys/fs/cgroup/cogs/<id>). Relative, segments of
    // [A-Za-z0-9._-] separated by '/'.
    std::string cgroup_parent = "cogs";
    // The leaf of that path: "" for the id. Several agents of one machine may each run a container
    // of one id (an instance rebuilt on another host of the same machine), each with its own runc
    // root; their cgroups must differ as well (the compute driver names them "<host>.<id>").
    // [A-Za-z0-9._-], 1-128, not "." or "..".
    std::string cgroup_name{};

    // The host's lease file (lease_file.h), absolute, or "" for none. Not part of the bundle: the
    // container's shim watches it and kills the container once the lease has ended (shim.h, step 8);
    // Start refuses to run it without a lease.
    std::string lease_file;
};

// Whether `id` is a valid container id (see ContainerSpec::id). Such an id is also safe as a file
// name and as a command-line argument (it never starts with '-').
bool IsValidContainerId(std::string_view id);

// Checks every field. Errors: kInvalidArgument naming the field ("memory_mib: must be >= 1",
// "mounts[1].destination: must be an absolute path"), with the detail field set (FieldError).
Status ValidateSpec(const ContainerSpec& spec);

// The container's cgroup path as runc takes it: "/<cgroup_parent>/<cgroup_name or id>".
std::string CgroupsPath(const ContainerSpec& spec);

// The config.json text for `spec` (validated first: its errors are ValidateSpec's).
Result<std::string> BundleConfig(const ContainerSpec& spec);

// Validates `spec`, creates `bundle_dir` (and its parents) if missing and writes
// <bundle_dir>/config.json atomically (0600). Errors: ValidateSpec's; kUnavailable for the files.
Status WriteBundle(const ContainerSpec& spec, const std::string& bundle_dir);

}  // namespace cogs::oci
