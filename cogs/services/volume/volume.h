// cogs-volume: the block-volume micro-service's domain (a cogs::services::kit::Domain).
//
// It owns volumes and their attachments to servers. The kit around it (cogs/services/kit) gives it
// the action protocol, the idempotency ledger, durable state and HTTP; this header is what the
// binary (apps/cogs-volume) and the tests wire together.
//
// Actions (inputs and outputs are JSON objects; an unknown, missing or mistyped field is refused
// with kInvalidArgument naming it; ids are 1-128 characters of [A-Za-z0-9._-]):
//
//   create_volume  {id, size_gb >= 1, name?, project_id?}
//                  -> {id, size_gb, name, project_id, status, path?}
//                  The same id with the same size_gb/name/project_id answers the same; with other
//                  values kAlreadyExists.
//   delete_volume  {id} -> {id, deleted}   deleted: whether it existed; kFailedPrecondition while
//                  attached.
//   attach_volumes {server_id, volume_ids: [...], host?}
//                  -> {server_id, attachments: [{volume_id, device, path?}]}
//                  path: where the volume's data is (the file driver's file, an ext4 file system),
//                  for the host that mounts it; absent when nothing on disk stands for it.
//                  All or nothing: every volume must exist (kNotFound) and be available or already
//                  attached to server_id (answered with its device); attached to another server:
//                  kFailedPrecondition. Devices /dev/vdb, /dev/vdc, ... per server (vda is the root
//                  disk), the lowest free one first.
//   detach_volumes {server_id, volume_ids: [...]} -> {server_id, detached: [...]}
//                  volumes absent or not attached to server_id are skipped.
//
// Inventory: {"volumes": [{id, size_gb, name, project_id, status: "available"/"in-use",
//             server_id, device, host, path?, allocated_bytes?}]} in id order.
// GET /v1/volumes/{id} -> 200 {"volume": {...as in the inventory}} or 404.
//
// Threading: the domain and its driver live on the service's io_context thread (domain.h). The
// file driver's calls are short metadata operations (open, ftruncate, unlink, stat) and one
// mkfs.ext4 of a sparse file (tens of ms, killed at a 20 s deadline) made there.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/services/kit/domain.h"

namespace cogs::services::volume {

// Its actions, as workflows name them after "volume." (cogsd's catalog refuses any other).
inline constexpr std::array<std::string_view, 4> kActions = {"create_volume", "delete_volume",
                                                             "attach_volumes", "detach_volumes"};

// What backs a volume. Calls must be idempotent: Create of an existing volume with its size and
// Delete of an absent one succeed.
class VolumeDriver {
public:
    virtual ~VolumeDriver() = default;
    virtual std::string_view name() const = 0;

    // Makes the backing store of volume `id` (size_gb GiB). Answers the path of what it made, or
    // "" if nothing on disk stands for it. Errors: kResourceExhausted (no space), kInvalidArgument
    // naming size_gb (too large for the store), kFailedPrecondition (permissions), kUnavailable.
    virtual Result<std::string> Create(std::string_view id, int64_t size_gb) = 0;

    // Removes it; absent is success.
    virtual Status Delete(std::string_view id) = 0;

    // Bytes actually allocated to it (a sparse file: far fewer than its size), if the driver knows.
    virtual std::optional<int64_t> AllocatedBytes(std::string_view id) const {
        (void)id;
        return std::nullopt;
    }
};

// The drivers by name: "sim" (records only, nothing on disk) and "file" (a sparse file
// <dir>/<id>.img of size_gb GiB, made with ftruncate, carrying an ext4 file system made with
// mkfs.ext4; `dir` is created if missing). kInvalidArgument for another name or a "file" driver
// whose dir cannot be made; kFailedPrecondition for a "file" driver without mkfs.ext4.
Result<std::unique_ptr<VolumeDriver>> MakeVolumeDriver(std::string name, std::string dir);

// The domain: name "volume", table "volumes" (one record per volume, JSON).
std::unique_ptr<kit::Domain> MakeVolumeDomain(std::unique_ptr<VolumeDriver> driver);

}  // namespace cogs::services::volume
