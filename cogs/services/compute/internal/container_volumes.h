// How the container driver gives an instance its volumes: blocking host work, for the driver's
// WorkerPool (never an io thread).
//
// Every instance has a directory <instance dir>/volumes, bound onto itself and made a shared mount
// before its container starts; the container gets it at /volumes as a slave bind
// (oci::BindMount::receives_host_mounts). A volume is mounted on the host at
// <instance dir>/volumes/<volume id> (`mount -o loop`: a loop device with autoclear, freed by the
// kernel at the unmount), and mount propagation makes it appear inside the running container at
// /volumes/<volume id> without a restart; its unmount disappears from inside the same way.
//
// The mounts live in the host's mount namespace, not the container's: they outlive a stop, a
// reboot of the instance and a restart of the agent (adoption keeps them); a reboot of the machine
// loses them, and the next boot mounts the instance's volumes again (SyncHostVolumes). Deleting
// the container (oci::Containers::Remove) unmounts everything under its directory first, so its
// loop devices are freed and no volume's data is ever removed with the directory.
#pragma once

#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/services/compute/compute.h"

namespace cogs::services::compute::internal {

// `instance_dir`/volumes, made if missing, bound onto itself and shared (idempotent). Errors:
// kUnavailable (mkdir, mount(2)).
Result<std::string> EnsureVolumesDir(const std::string& instance_dir);

// Makes the mounts under `volumes_dir` (EnsureVolumesDir's) exactly `volumes`: mounts each one's
// file at volumes_dir/<volume_id> (ext4, nosuid, nodev) unless mounted there already; unmounts
// every other mount point there and removes its directory. A volume with path "" is skipped
// (nothing on disk). Everything is tried; the first error is answered: kFailedPrecondition for a
// file missing on this host or a volume that stays busy (a process inside uses it: it is retried
// for a few seconds, then left mounted, never detached lazily, so that the file system is never
// mounted twice), kUnavailable for a mount that failed.
Status SyncHostVolumes(const std::string& volumes_dir, const std::vector<VolumeMount>& volumes);

// Whether `path` is a mount point in this process's mount namespace (/proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace cogs::services::compute::internal
