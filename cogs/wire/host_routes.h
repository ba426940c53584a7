// The agents' routes on cogsd that more than one component must recognise before routing: the
// admission lanes (cloud/api/admission.h), the log level and the audit log of an answer
// (cloud/api), a full disk's exceptions, a follower's forwarding (replica/forwarder.h) and a
// leader without a confirmed lease (apps/cogsd). One definition, so that they never disagree.
//
//   PUT  /v1/hosts/{name}              a host's registration
//   POST /v1/hosts/{name}/heartbeat    one host's lease renewal
//   POST /v1/heartbeats                many hosts' renewals in one request (docs/api.md "Hosts")
#pragma once

#include <string_view>

namespace cogs::wire {

inline constexpr std::string_view kBatchRenewalPath = "/v1/heartbeats";

// A lease renewal: one host's heartbeat or a batch of them.
inline bool IsLeaseRenewal(std::string_view method, std::string_view path) {
    constexpr std::string_view kHosts = "/v1/hosts/", kBeat = "/heartbeat";
    if (method != "POST") return false;
    if (path == kBatchRenewalPath) return true;
    return path.starts_with(kHosts) && path.ends_with(kBeat) && path.size() > kHosts.size() + kBeat.size() &&
           path.find('/', kHosts.size()) == path.size() - kBeat.size();
}

// A host's registration.
inline bool IsHostRegistration(std::string_view method, std::string_view path) {
    constexpr std::string_view kHosts = "/v1/hosts/";
    return method == "PUT" && path.starts_with(kHosts) && path.size() > kHosts.size() &&
           path.find('/', kHosts.size()) == std::string_view::npos;
}

}  // namespace cogs::wire
