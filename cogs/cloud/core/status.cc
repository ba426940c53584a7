#include "cogs/cloud/core/status.h"

#include <array>
#include <utility>

namespace cogs::cloud {
namespace {

template <typename S, size_t N>
std::string_view Name(const std::array<std::pair<S, std::string_view>, N>& table, S s) {
    for (const auto& [value, name] : table) {
        if (value == s) return name;
    }
    return "UNKNOWN";
}

template <typename S, size_t N>
std::optional<S> Parse(const std::array<std::pair<S, std::string_view>, N>& table, std::string_view s) {
    for (const auto& [value, name] : table) {
        if (name == s) return value;
    }
    return std::nullopt;
}

constexpr std::array<std::pair<ServerStatus, std::string_view>, 10> kServerNames{{
    {ServerStatus::kBuild, "BUILD"},
    {ServerStatus::kActive, "ACTIVE"},
    {ServerStatus::kShutoff, "SHUTOFF"},
    {ServerStatus::kError, "ERROR"},
    {ServerStatus::kDeleting, "DELETING"},
    {ServerStatus::kStarting, "STARTING"},
    {ServerStatus::kStopping, "STOPPING"},
    {ServerStatus::kReboot, "REBOOT"},
    {ServerStatus::kRebuild, "REBUILD"},
    {ServerStatus::kMigrating, "MIGRATING"},
}};

constexpr std::array<std::pair<NetStatus, std::string_view>, 4> kNetNames{{
    {NetStatus::kBuild, "BUILD"},
    {NetStatus::kActive, "ACTIVE"},
    {NetStatus::kError, "ERROR"},
    {NetStatus::kDeleting, "DELETING"},
}};

constexpr std::array<std::pair<VolumeStatus, std::string_view>, 7> kVolumeNames{{
    {VolumeStatus::kCreating, "creating"},
    {VolumeStatus::kAvailable, "available"},
    {VolumeStatus::kAttaching, "attaching"},
    {VolumeStatus::kInUse, "in-use"},
    {VolumeStatus::kDetaching, "detaching"},
    {VolumeStatus::kDeleting, "deleting"},
    {VolumeStatus::kError, "error"},
}};

}  // namespace

std::string_view ToString(ServerStatus s) { return Name(kServerNames, s); }
std::string_view ToString(NetStatus s) { return Name(kNetNames, s); }
std::string_view ToString(VolumeStatus s) { return Name(kVolumeNames, s); }

template <>
std::optional<ServerStatus> ParseStatus<ServerStatus>(std::string_view s) {
    return Parse(kServerNames, s);
}
template <>
std::optional<NetStatus> ParseStatus<NetStatus>(std::string_view s) {
    return Parse(kNetNames, s);
}
template <>
std::optional<VolumeStatus> ParseStatus<VolumeStatus>(std::string_view s) {
    return Parse(kVolumeNames, s);
}

bool Transitional(ServerStatus s) {
    switch (s) {
        case ServerStatus::kBuild:
        case ServerStatus::kDeleting:
        case ServerStatus::kStarting:
        case ServerStatus::kStopping:
        case ServerStatus::kReboot:
        case ServerStatus::kRebuild:
        case ServerStatus::kMigrating: return true;
        case ServerStatus::kActive:
        case ServerStatus::kShutoff:
        case ServerStatus::kError: return false;
    }
    return false;
}

bool Transitional(NetStatus s) { return s == NetStatus::kBuild || s == NetStatus::kDeleting; }

bool Transitional(VolumeStatus s) {
    return s == VolumeStatus::kCreating || s == VolumeStatus::kAttaching || s == VolumeStatus::kDetaching ||
           s == VolumeStatus::kDeleting;
}

bool Transitional(std::string_view kind, std::string_view status) {
    if (kind == kServer) {
        auto s = ParseStatus<ServerStatus>(status);
        return s && Transitional(*s);
    }
    if (kind == kVolume) {
        auto s = ParseStatus<VolumeStatus>(status);
        return s && Transitional(*s);
    }
    // Networks, subnets, ports, and the kinds declared in configuration (resources/kinds.h), which
    // share their vocabulary (BUILD, ACTIVE, ERROR, DELETING); no other kind's status parses as one.
    auto s = ParseStatus<NetStatus>(status);
    return s && Transitional(*s);
}

}  // namespace cogs::cloud
