// The files of a container's directory, which the shim writes and Containers reads (README.md,
// "A container's directory"), and the /proc readers both need: a process identity that survives pid
// reuse, the mount table.
//
// Threading: stateless; every function does file I/O (call off io threads).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::oci::internal {

inline constexpr std::string_view kBundleDir = "bundle";                // config.json (WriteBundle)
inline constexpr std::string_view kShimPidFile = "shim.pid";            // "PID\n", locked while it runs
inline constexpr std::string_view kRuncPidFile = "runc.pid";            // "PID START_TICKS\n"
inline constexpr std::string_view kContainerPidFile = "container.pid";  // runc's --pid-file
inline constexpr std::string_view kExitFile = "exit";                   // "STATUS\n"
inline constexpr std::string_view kConsoleLog = "console.log";          // and console.log.1
inline constexpr std::string_view kShimLog = "shim.log";                // the shim's own lines

// dir + "/" + name.
std::string PathIn(const std::string& dir, std::string_view name);

// The status in <dir>/exit: nullopt if there is no such file, -1 if it holds no number.
std::optional<int> ReadExitStatus(const std::string& dir);

// The pid in <dir>/shim.pid if a live shim holds that file's lock (flock), else nullopt. A dead shim
// holds no lock (the kernel drops it when the process ends, zombie or not), so this answer cannot be
// fooled by pid reuse or by a shim nobody has reaped yet.
std::optional<pid_t> LiveShim(const std::string& dir);

// A process named so that a reused pid is not taken for it: its pid and its start time (clock ticks
// after boot, field 22 of /proc/<pid>/stat).
struct ProcessId {
    pid_t pid = 0;
    uint64_t start_ticks = 0;
};
// The identity of a live process (not a zombie); nullopt if there is none with that pid.
std::optional<ProcessId> IdentifyProcess(pid_t pid);
bool ProcessAlive(const ProcessId& id);
// "PID START_TICKS\n" and back (nullopt for anything else).
std::string FormatProcessId(const ProcessId& id);
std::optional<ProcessId> ParseProcessId(std::string_view text);

// Mount points at `dir` or under it in this process's mount namespace (/proc/self/mountinfo),
// deepest first (the order to unmount them in).
std::vector<std::string> MountsUnder(const std::string& dir);

// Every cgroup hierarchy mounted in this mount namespace (v1: one per controller set, plus named
// ones such as name=systemd; v2: the unified one): its mount point and the cgroup path mounted there.
struct CgroupMount {
    std::string mount_point;  // /sys/fs/cgroup/memory
    std::string root;         // "/" unless this namespace sees only a subtree
};
std::vector<CgroupMount> CgroupMounts();

// The directories of cgroup `path` ("/cogs/<id>") that exist in the hierarchies mounted here.
std::vector<std::string> CgroupDirs(const std::string& path);

}  // namespace cogs::oci::internal
