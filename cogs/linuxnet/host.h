// Host: the Linux networking of one machine as cogs uses it — a bridge per network, a network
// namespace per instance, a veth pair per port — made, removed and listed through iproute2's `ip`.
//
// The model (README.md has the why):
//
//     namespace cg-<instance id>                 root namespace
//     +-----------------------------+            +---------------------------------------+
//     | lo (up)                     |            |  cg-p<hash(port id)> --+               |
//     | eth0: port's MAC, fixed IP, |== veth ====|  (alias: port id)      |-- cg-b<hash>  |
//     |       default via gateway   |            |                        |   (alias:     |
//     +-----------------------------+            |  other ports ----------+    network id)|
//                                                +---------------------------------------+
//
// A bridge is a pure layer-2 switch: no address, ARP off, no IPv6 address, so the host takes no part
// in any cogs network and routes nothing into one, whatever net.ipv4.ip_forward says. Instances on one
// bridge reach each other; instances on different bridges cannot reach each other, even when their
// subnets overlap or the host forwards. The gateway address is not on the host (README.md, "The
// gateway"): a default route points at it for the day a router port answers there.
//
// Every operation is idempotent: doing it again converges the object to what was asked and succeeds
// (a re-plugged port gets the MAC, address and route of its latest spec). Every operation takes a
// deadline that covers all the `ip` commands it runs; a command still running then is killed, and
// the operation answers kDeadlineExceeded (retryable: the object may be half made; doing the
// operation again finishes it). An operation runs a handful of `ip` commands (~1-3 ms each) and
// blocks its thread: call it from a blocking pool, never from an io thread.
//
// Errors (every message names the object and, for a failed command, the command and what `ip` said):
//   kInvalidArgument     a malformed id, MAC, address, gateway, MTU or interface name (the field named)
//   kFailedPrecondition  PlugPort: the network's bridge or the namespace does not exist
//   kAlreadyExists       the name an id maps to is taken by something that is not that id's object
//                        (a hash collision, or someone else's interface); nothing was changed
//   kPermissionDenied    `ip` was refused (not root / no CAP_NET_ADMIN)
//   kUnavailable         `ip` failed for another reason, or cannot be run (retryable)
//   kDeadlineExceeded    the deadline passed (retryable)
//
// Threading: a Host holds only its options; its methods may run on any threads at once, but calls
// about the same object (one network's bridge, one port, one namespace) must not overlap: the caller
// serializes them per object, as a driver does per resource.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/linuxnet/names.h"

namespace cogs::linuxnet {

struct HostOptions {
    // Names every object (names.h); one prefix per cloud, and per test run.
    std::string prefix = std::string(kDefaultPrefix);
    // iproute2's `ip`.
    std::string ip = "/usr/sbin/ip";
};

// A port as PlugPort makes it.
struct PortSpec {
    std::string port_id;
    std::string network_id;          // its bridge must exist (EnsureBridge)
    std::string namespace_id;        // the id its namespace was made for (EnsureNamespace)
    std::string mac;                 // "fa:16:3e:12:34:56": unicast, not all zeros
    std::string address;             // the fixed IP with the subnet's prefix length: "10.20.0.5/24"
    std::string gateway;             // "10.20.0.1", inside `address`'s subnet; "" for no default route
    int mtu = 1500;                  // both ends of the pair
    std::string interface = "eth0";  // its name inside the namespace
};

// What List found. Everything is sorted by name.
struct BridgeInfo {
    std::string name;
    std::string network_id;
    int mtu = 0;
    bool up = false;
};

struct PortInfo {
    std::string name;  // the host end of the veth pair
    std::string port_id;
    std::string bridge;      // its master's name; "" if it is on no bridge
    std::string network_id;  // the network of that bridge, if the bridge is one of ours; else ""
    // Where its other end is, if that is one of our namespaces; "" if not (or not known: the listing
    // is two commands, and a namespace made between them is missed). "" is no proof of an orphan.
    std::string namespace_id;
};

struct NamespaceInfo {
    std::string name;
    std::string id;
    std::string path;
};

struct Inventory {
    std::vector<BridgeInfo> bridges;
    std::vector<PortInfo> ports;
    std::vector<NamespaceInfo> namespaces;
    // Links named in this prefix's pattern that carry no id: a create interrupted between `ip link
    // add` and setting the alias (the kernel ignores an alias given to `ip link add`), or a link whose
    // alias someone changed. Nobody can own them; a reconciler removes them with DeleteStray after a
    // grace (a create in progress shows one for a few milliseconds).
    std::vector<std::string> strays;
};

class Host {
public:
    // Errors: kInvalidArgument naming "prefix" (names.h).
    static Result<Host> Make(HostOptions options);

    const Names& names() const { return names_; }

    // The bridge of a network: names().Bridge(network_id), alias network_id, `mtu`, up, no address,
    // ARP off, no IPv6 address (addrgenmode none), STP off. An existing one gets the MTU and settings.
    Status EnsureBridge(std::string_view network_id, int mtu, SteadyTime deadline);
    // Removes the bridge; success if there is none. Ports still on it stay, on no bridge (their
    // PortInfo::bridge is ""), until UnplugPort.
    Status DeleteBridge(std::string_view network_id, SteadyTime deadline);

    // A network namespace as `ip netns add` makes it (a bind mount of the namespace at
    // /run/netns/<name>, which runc joins by path), with lo up; answers its path. A file left there by
    // an interrupted add (not a namespace) is replaced.
    Result<std::string> EnsureNamespace(std::string_view id, SteadyTime deadline);
    // Removes every veth pair inside the namespace (their host ends go at once, not whenever the
    // kernel tears the namespace down), then the namespace's name; success if there is none. The
    // namespace itself lives on while a process is still in it: stop the instance first.
    Status DeleteNamespace(std::string_view id, SteadyTime deadline);

    // Plugs a port: a veth pair, the host end names().Port(port_id) (alias port_id, ARP off, no IPv6
    // address) on the network's bridge and up; the other end made inside the namespace as
    // spec.interface with spec.mac and spec.mtu, up, holding spec.address as its only IPv4 address;
    // lo up; the default route via spec.gateway (none if it is ""). A port already plugged into
    // another namespace is moved (its old pair removed); one already here is converged to `spec`.
    // Errors (besides the above): kFailedPrecondition if the bridge or the namespace is missing;
    // kAlreadyExists if the namespace's spec.interface is some other interface.
    Status PlugPort(const PortSpec& spec, SteadyTime deadline);
    // Removes the port's veth pair (both ends); success if there is none.
    Status UnplugPort(std::string_view port_id, SteadyTime deadline);

    // The cogs objects of this prefix on the machine, each mapped back to its id: for the orphan
    // reconciler, which removes those no network, port or instance owns. Objects of other prefixes
    // and everything else on the machine are left out.
    Result<Inventory> List(SteadyTime deadline);
    // Removes a stray link (Inventory::strays); success if it is gone. kInvalidArgument for a name
    // outside this prefix's pattern; kAlreadyExists if it has become an object with an id.
    Status DeleteStray(std::string_view name, SteadyTime deadline);

private:
    Host(HostOptions options, Names names) : options_(std::move(options)), names_(std::move(names)) {}

    HostOptions options_;
    Names names_;
};

}  // namespace cogs::linuxnet
