// The kinds of resource the control plane keeps, and the statuses each moves through, as types.
//
// Statuses are stored in a record's body ("status") as the API shows them — servers, networks,
// subnets and ports in capitals as Nova and Neutron write them, volumes in lower case as Cinder
// does — but code names them by enum, never by string literal:
//
//   server   BUILD ─▶ ACTIVE ◀─▶ (STOPPING ▶ SHUTOFF ▶ STARTING) ; REBOOT ; REBUILD (evacuation) ;
//            MIGRATING (drain) ; DELETING ; ERROR
//   network, subnet, port   BUILD ─▶ ACTIVE ; DELETING ; ERROR
//   volume   creating ─▶ available ◀─▶ (attaching ▶ in-use ▶ detaching) ; deleting ; error
//
// A transitional status (BUILD, DELETING, STARTING, STOPPING, REBOOT, REBUILD, MIGRATING,
// creating, deleting, attaching, detaching) means a workflow is working on the resource: the API
// refuses other changes (409) and the reconcilers leave it alone until the workflow settles it.
#pragma once

#include <optional>
#include <string_view>

namespace cogs::cloud {

// Kinds, as stored (store::ResourceWrite::kind) and as events name them.
inline constexpr std::string_view kProject = "project";
inline constexpr std::string_view kToken = "token";
// One who logs in with a name and a password (docs/api.md "Users"); its tokens carry "user_id".
inline constexpr std::string_view kUser = "user";
inline constexpr std::string_view kFlavor = "flavor";
inline constexpr std::string_view kImage = "image";
inline constexpr std::string_view kHost = "host";
inline constexpr std::string_view kClaim = "claim";
inline constexpr std::string_view kGroup = "server_group";
// An SSH public key of a project, by a name unique in the project (docs/api.md "Key pairs").
inline constexpr std::string_view kKeypair = "keypair";
inline constexpr std::string_view kNetwork = "network";
inline constexpr std::string_view kSubnet = "subnet";
inline constexpr std::string_view kPort = "port";
inline constexpr std::string_view kVolume = "volume";
inline constexpr std::string_view kServer = "server";
inline constexpr std::string_view kIdempotency = "idempotency";

// Kinds whose records carry a status (and an event history of their workflows).
inline constexpr std::string_view kStatusKinds[] = {kNetwork, kSubnet, kPort, kVolume, kServer};

enum class ServerStatus {
    kBuild,
    kActive,
    kShutoff,
    kError,
    kDeleting,
    kStarting,
    kStopping,
    kReboot,
    kRebuild,    // being evacuated off a down host
    kMigrating,  // being moved off a draining host
};

// Networks, subnets and ports.
enum class NetStatus { kBuild, kActive, kError, kDeleting };

enum class VolumeStatus { kCreating, kAvailable, kAttaching, kInUse, kDetaching, kDeleting, kError };

std::string_view ToString(ServerStatus s);
std::string_view ToString(NetStatus s);
std::string_view ToString(VolumeStatus s);

// The status named `s`, if it is one of the type's.
template <typename S>
std::optional<S> ParseStatus(std::string_view s);
template <>
std::optional<ServerStatus> ParseStatus<ServerStatus>(std::string_view s);
template <>
std::optional<NetStatus> ParseStatus<NetStatus>(std::string_view s);
template <>
std::optional<VolumeStatus> ParseStatus<VolumeStatus>(std::string_view s);

bool Transitional(ServerStatus s);
bool Transitional(NetStatus s);
bool Transitional(VolumeStatus s);
// Whether `status`, as stored on a record of `kind`, is transitional (false for kinds without one).
// A kind declared in configuration has the network's statuses.
bool Transitional(std::string_view kind, std::string_view status);

}  // namespace cogs::cloud
