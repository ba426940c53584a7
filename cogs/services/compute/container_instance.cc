#include "cogs/services/compute/internal/container_instance.h"

#include <boost/json.hpp>

#include "cogs/linuxnet/host.h"
#include "cogs/netaddr/ipv4.h"
#include "cogs/services/compute/internal/instance_fields.h"

namespace cogs::services::compute::internal {
namespace {

namespace json = boost::json;

// The page server, or the user_data script and then idling; a TERM ends either at once.
constexpr const char* kServePage =
    "trap 'kill $child 2>/dev/null; exit 143' TERM INT\n"
    "echo \"cogs: $(hostname) booted, serving http on port 80\"\n"  // the console's first line
    "httpd -f -p 80 -h /www &\n"
    "child=$!\n"
    "wait $child\n";

constexpr const char* kRunUserData =
    "trap 'kill $child 2>/dev/null; exit 143' TERM INT\n"
    "echo \"cogs: $(hostname) booted, running its user_data\"\n"
    "/bin/sh /run/cogs/user-data &\n"
    "child=$!\n"
    "wait $child\n"
    "echo \"cogs: user_data exited with status $?\"\n"
    "while :; do sleep 3600 & child=$!; wait $child; done\n";

int PrefixLen(const std::string& cidr) {
    const netaddr::CidrParse parsed = netaddr::ParseCidr(cidr);
    return parsed.cidr ? parsed.cidr->prefix : 0;
}

}  // namespace

std::string NamespaceIdOf(const InstanceSpec& s) { return s.host + "." + s.id; }

std::string MetaJson(const InstanceSpec& s) {
    json::array addresses;
    if (!s.ip_address.empty() || !s.mac_address.empty()) {
        json::object a{{"port_id", s.port_id},
                       {"mac_address", s.mac_address},
                       {"ip_address", s.ip_address},
                       {"network_id", s.network_id},
                       {"cidr", s.cidr},
                       {"gateway_ip", s.gateway_ip}};
        a["prefix_len"] = s.cidr.empty() ? json::value(nullptr) : json::value(PrefixLen(s.cidr));
        addresses.push_back(std::move(a));
    }
    return json::serialize(
               json::object{{"id", s.id},
                            {"name", s.name},
                            {"project_id", s.project_id},
                            {"addresses", std::move(addresses)},
                            {"user_data", s.user_data},
                            {"public_keys", json::array(s.public_keys.begin(), s.public_keys.end())}}) +
           "\n";
}

std::string AuthorizedKeys(const InstanceSpec& s) {
    std::string text;
    for (const std::string& key : s.public_keys) {
        text += key + "\n";
    }
    return text;
}

std::vector<std::string> InitArgs(const InstanceSpec& s) {
    return {"/bin/sh", "-c", s.user_data.empty() ? kServePage : kRunUserData};
}

Status PlugInstancePort(linuxnet::Host& net, const InstanceSpec& s, SteadyTime deadline) {
    if (!PlugsPort(s)) {
        return Ok();
    }
    constexpr int kMtu = 1500;  // cogs-network's bridges have the same (no VXLAN yet)
    COGS_TRY(net.EnsureBridge(s.network_id, kMtu, deadline));
    return net.PlugPort(linuxnet::PortSpec{.port_id = s.port_id,
                                           .network_id = s.network_id,
                                           .namespace_id = NamespaceIdOf(s),
                                           .mac = s.mac_address,
                                           .address = s.ip_address + "/" + std::to_string(PrefixLen(s.cidr)),
                                           .gateway = s.gateway_ip,
                                           .mtu = kMtu},
                        deadline);
}

}  // namespace cogs::services::compute::internal
