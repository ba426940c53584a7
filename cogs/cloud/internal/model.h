// The in-memory desired state of the cloud: every resource as a JSON object keyed by kind and id,
// the quota usage of every project, and the index from token hashes to tokens. Internal to
// cogs/cloud; lives on the io thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "cogs/cloud/internal/json_util.h"
#include "cogs/store/records.h"

namespace cogs::cloud::internal {

// Kinds, as stored (store::ResourceWrite::kind).
inline constexpr std::string_view kProject = "project";
inline constexpr std::string_view kToken = "token";
inline constexpr std::string_view kFlavor = "flavor";
inline constexpr std::string_view kImage = "image";
inline constexpr std::string_view kHost = "host";
inline constexpr std::string_view kClaim = "claim";
inline constexpr std::string_view kGroup = "server_group";
inline constexpr std::string_view kNetwork = "network";
inline constexpr std::string_view kSubnet = "subnet";
inline constexpr std::string_view kPort = "port";
inline constexpr std::string_view kVolume = "volume";
inline constexpr std::string_view kServer = "server";
inline constexpr std::string_view kIdempotency = "idempotency";

// One resource. Keys of `body` that start with '_' are internal (never shown by the API).
struct Res {
    std::string kind;
    std::string id;
    std::string project;
    json::object body;
};

// What a resource holds of its project's quota.
struct Amount {
    int64_t servers = 0, vcpus = 0, ram_mb = 0, volumes = 0, volume_gb = 0, ports = 0;
};

inline constexpr std::string_view kQuotaNames[] = {"servers", "vcpus", "ram_mb", "volumes", "volume_gb", "ports"};
int64_t& QuotaField(Amount& a, std::string_view name);
inline int64_t QuotaField(const Amount& a, std::string_view name) { return QuotaField(const_cast<Amount&>(a), name); }
Amount DefaultLimits();

class Model {
public:
    Res* Find(std::string_view kind, const std::string& id);
    const Res* Find(std::string_view kind, const std::string& id) const;
    // Inserts or replaces; returns the stored one.
    Res& Put(Res r);
    void Erase(std::string_view kind, const std::string& id);
    const std::map<std::string, Res>& All(std::string_view kind) const;
    // The first resource of `kind` whose body "name" is `name` (and project, if not empty).
    const Res* FindByName(std::string_view kind, const std::string& name, const std::string& project = "") const;

    // The durable form of a resource, or of its erasure.
    static store::ResourceWrite Write(const Res& r);
    static store::ResourceWrite EraseWrite(std::string_view kind, const std::string& id);

    // Quota: the amount a resource holds ("_quota" true in its body).
    static Amount HeldBy(const Res& r);
    const Amount& Usage(const std::string& project) const;
    Amount Limits(const std::string& project) const;
    // Reserves `a` for `project` if every limit allows it; else kFailedPrecondition-like
    // "quota_exceeded" error (code kPermissionDenied, message "quota exceeded: ...").
    Status Reserve(const std::string& project, const Amount& a);
    void Release(const std::string& project, const Amount& a);
    // Counts `a` as used without checking the limits (usage loaded from the store).
    void Add(const std::string& project, const Amount& a);

    // Token hash -> token id.
    std::unordered_map<std::string, std::string> token_by_hash;

private:
    std::map<std::string, std::map<std::string, Res>, std::less<>> kinds_;
    std::map<std::string, Amount> usage_;
};

// The API's view of a resource: its body without internal keys.
json::object View(const Res& r);

}  // namespace cogs::cloud::internal
