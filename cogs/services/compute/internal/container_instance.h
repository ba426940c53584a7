// What the container driver puts into an instance besides its image: its port, plugged into the
// network's bridge (cogs/linuxnet), the files under /run/cogs, and its first process (the page
// server, or the server's user_data run as a shell script). Split from container_driver.cc, which
// runs these on its worker pool.
//
// Threading: pure functions, and PlugInstancePort, which blocks for a few `ip` commands (the pool's).
#pragma once

#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/services/compute/compute.h"

namespace cogs::linuxnet {
class Host;
}

namespace cogs::services::compute::internal {

// The id of the instance's network namespace (linuxnet: /run/netns/<prefix>-<this>):
// "<host>.<instance id>". The host is in it because several agents may serve hosts on one machine
// (`cogs dev`): an instance evacuated from host-1 to host-2 there has two namespaces, and the old
// host's delete must not remove the new copy's. Bridges and ports' veths stay named by network and
// port alone, shared by the agents of a machine: a port plugged on the new host is moved out of the
// old namespace (linuxnet::Host::PlugPort), and instances of one network on any of them share its
// bridge.
std::string NamespaceIdOf(const InstanceSpec& s);

// Where the instance finds its user_data (the decoded bytes, as written), beside meta.json.
inline constexpr const char* kUserDataPath = "/run/cogs/user-data";
// Where it finds its SSH public keys, one per line (as ~/.ssh/authorized_keys), when it has any.
inline constexpr const char* kAuthorizedKeysPath = "/run/cogs/authorized_keys";
// That file's text: each key and a newline.
std::string AuthorizedKeys(const InstanceSpec& s);

// /run/cogs/meta.json: {id, name, project_id, addresses: [{port_id, mac_address, ip_address,
// prefix_len, cidr, gateway_ip, network_id}] (none without a port), user_data (the decoded text),
// public_keys: [OpenSSH public key lines] ([] for none)}.
std::string MetaJson(const InstanceSpec& s);

// The container's argv: /bin/sh running the page server (httpd on port 80 serving /www) or, when
// the instance has user_data, `/bin/sh /run/cogs/user-data` as cloud-init runs a user-data script,
// after which it idles (the instance keeps running, as a VM does once its script is done: the end of
// the script is no crash). Either way SIGTERM ends it at once (PID 1 of a pid namespace gets SIGTERM
// only if it handles it), and the script's output goes to the console.
std::vector<std::string> InitArgs(const InstanceSpec& s);

// Plugs the instance's port if it has one (PlugsPort): the network's bridge (made if missing, as
// Neutron's linuxbridge agent makes it on a host; cogs-network --driver linux makes it too), then
// a veth pair with the port's MAC, ip_address/prefix of cidr and a default route via gateway_ip
// inside its namespace, NamespaceIdOf(s) (linuxnet::Host::PlugPort: converges a port plugged already).
// Without a port: nothing. Errors: linuxnet::Host's.
Status PlugInstancePort(linuxnet::Host& net, const InstanceSpec& s, SteadyTime deadline);

}  // namespace cogs::services::compute::internal
