#include "cogs/linuxnet/host.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "cogs/linuxnet/internal/ip.h"
#include "cogs/netaddr/ipv4.h"

namespace cogs::linuxnet {

using internal::Ip;
using internal::Link;

namespace {

// IPv4's minimum MTU, and the largest a bridge or veth takes.
constexpr int kMinMtu = 68;
constexpr int kMaxMtu = 65535;

Status ValidateMtu(int mtu) {
    if (mtu < kMinMtu || mtu > kMaxMtu) {
        return MakeError(FieldError("mtu", fmt::format("must be {}..{}, got {}", kMinMtu, kMaxMtu, mtu)));
    }
    return Ok();
}

// "FA:16:3e:..." -> "fa:16:3e:...", as the kernel prints it; refuses multicast and all-zero MACs,
// which no interface may carry.
Result<std::string> NormalizeMac(std::string_view mac) {
    const auto bad = [] {
        return MakeError(FieldError("mac", "must be a unicast MAC like fa:16:3e:12:34:56"));
    };
    if (mac.size() != 17) {
        return bad();
    }
    std::string out(mac);
    for (size_t i = 0; i < out.size(); ++i) {
        const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(out[i])));
        const bool ok = i % 3 == 2 ? c == ':' : std::isxdigit(static_cast<unsigned char>(c)) != 0;
        if (!ok) {
            return bad();
        }
        out[i] = c;
    }
    const int first = std::stoi(out.substr(0, 2), nullptr, 16);
    if ((first & 1) != 0 || out == "00:00:00:00:00:00") {
        return bad();
    }
    return out;
}

struct Addressing {
    std::string ip;           // "10.20.0.5"
    int prefix = 0;           // 24
    std::string gateway;      // "" for none
    std::string with_prefix;  // "10.20.0.5/24"
};

// The port's address must be a host address of a block cogs allows for a subnet, and the gateway
// another host address of the same block: the kernel would take a default route via a gateway it
// cannot reach on the link only with `onlink`, which hides a wrong spec instead of refusing it.
Result<Addressing> ParseAddressing(std::string_view address, std::string_view gateway) {
    const size_t slash = address.find('/');
    const auto ip = netaddr::ParseIpv4(address.substr(0, slash));
    int prefix = -1;
    if (slash != std::string_view::npos) {
        const std::string_view digits = address.substr(slash + 1);
        if (!digits.empty() && digits.size() <= 2 &&
            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            prefix = std::stoi(std::string(digits));
        }
    }
    if (!ip || prefix < netaddr::kMinPrefix || prefix > netaddr::kMaxPrefix) {
        return MakeError(
            FieldError("address", fmt::format("must be an IPv4 address with a prefix length {}..{} "
                                              "like 10.20.0.5/24, got '{}'",
                                              netaddr::kMinPrefix, netaddr::kMaxPrefix, address)));
    }
    const netaddr::Cidr block{*ip & (~uint32_t{0} << (32 - prefix)), prefix};
    if (!block.IsHost(*ip)) {
        return MakeError(FieldError("address", fmt::format("{} is not a host address of {}",
                                                           netaddr::FormatIpv4(*ip), block.ToString())));
    }
    Addressing out{netaddr::FormatIpv4(*ip), prefix, "",
                   fmt::format("{}/{}", netaddr::FormatIpv4(*ip), prefix)};
    if (!gateway.empty()) {
        const auto gw = netaddr::ParseIpv4(gateway);
        if (!gw) {
            return MakeError(
                FieldError("gateway", fmt::format("must be an IPv4 address, got '{}'", gateway)));
        }
        if (!block.IsHost(*gw) || *gw == *ip) {
            return MakeError(FieldError("gateway", fmt::format("must be another host address of {}, got {}",
                                                               block.ToString(), gateway)));
        }
        out.gateway = netaddr::FormatIpv4(*gw);
    }
    return out;
}

Status CheckDeadline(SteadyTime deadline, std::string_view what) {
    if (SteadyClock::now() >= deadline) {
        return MakeError(
            Error(ErrorCode::kDeadlineExceeded, fmt::format("{}: the deadline has passed", what), true));
    }
    return Ok();
}

// Whether the link at our name for `id` is that id's object (or one whose creation stopped before
// its alias was set: it is adopted); anything else there is not ours to change.
Status CheckIdentity(const Link& link, std::string_view kind, std::string_view id) {
    if (link.kind != kind || (!link.alias.empty() && link.alias != id)) {
        return MakeError(ErrorCode::kAlreadyExists,
                         fmt::format("{} is not the {} of '{}': it is a {} with alias '{}'", link.name, kind,
                                     id, link.kind.empty() ? "device" : link.kind, link.alias));
    }
    return Ok();
}

bool Exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// Deletes link `name` of namespace `netns` ("" for ours); success if it is gone, also when it went
// by itself meanwhile (its peer was deleted, its namespace went).
Status DeleteLink(const Ip& ip, std::string_view netns, const std::string& name, SteadyTime deadline) {
    std::vector<std::string> args;
    if (!netns.empty()) {
        args = {"-n", std::string(netns)};
    }
    args.insert(args.end(), {"link", "delete", "dev", name});
    auto deleted = ip.Run(args, deadline);
    if (deleted) {
        return Ok();
    }
    COGS_ASSIGN_OR_RETURN(auto still, ip.ShowLink(netns, name, deadline));
    if (!still) {
        return Ok();
    }
    return MakeError(std::move(deleted).error());
}

}  // namespace

Result<Host> Host::Make(HostOptions options) {
    COGS_ASSIGN_OR_RETURN(Names names, Names::Make(options.prefix));
    return Host(std::move(options), std::move(names));
}

Status Host::EnsureBridge(std::string_view network_id, int mtu, SteadyTime deadline) {
    COGS_TRY(ValidateId("network_id", network_id));
    COGS_TRY(ValidateMtu(mtu));
    const std::string name = names_.Bridge(network_id);
    COGS_TRY(CheckDeadline(deadline, "EnsureBridge " + name));
    const Ip ip(options_.ip);
    const std::string id(network_id);
    const std::string mtu_text = std::to_string(mtu);
    COGS_ASSIGN_OR_RETURN(auto link, ip.ShowLink("", name, deadline));
    if (!link) {
        // The kernel ignores an alias given to `ip link add`: it is set below, and until then the
        // bridge is a stray in a listing. ARP is off from the start: the host never answers on it.
        auto added = ip.Run(
            {"link", "add", "name", name, "mtu", mtu_text, "arp", "off", "type", "bridge", "stp_state", "0"},
            deadline);
        COGS_ASSIGN_OR_RETURN(link, ip.ShowLink("", name, deadline));
        if (!link) {
            return added ? MakeError(ErrorCode::kUnavailable, name + " vanished right after it was made")
                         : MakeError(std::move(added).error());
        }
    }
    COGS_TRY(CheckIdentity(*link, "bridge", id));
    // addrgenmode none before the first up: no IPv6 link-local address, so the host never speaks on a
    // cogs bridge (no neighbour discovery, no MLD) and has no address of any family there.
    COGS_TRY(ip.Run(
        {"link", "set", "dev", name, "alias", id, "addrgenmode", "none", "arp", "off", "mtu", mtu_text},
        deadline));
    COGS_TRY(ip.Run({"link", "set", "dev", name, "up"}, deadline));
    return Ok();
}

Status Host::DeleteBridge(std::string_view network_id, SteadyTime deadline) {
    COGS_TRY(ValidateId("network_id", network_id));
    const std::string name = names_.Bridge(network_id);
    COGS_TRY(CheckDeadline(deadline, "DeleteBridge " + name));
    const Ip ip(options_.ip);
    COGS_ASSIGN_OR_RETURN(auto link, ip.ShowLink("", name, deadline));
    if (!link) {
        return Ok();
    }
    COGS_TRY(CheckIdentity(*link, "bridge", network_id));
    return DeleteLink(ip, "", name, deadline);
}

Result<std::string> Host::EnsureNamespace(std::string_view id, SteadyTime deadline) {
    COGS_TRY(names_.ValidateNamespaceId("id", id));
    const std::string name = names_.Namespace(id);
    const std::string path = names_.NamespacePath(id);
    COGS_TRY(CheckDeadline(deadline, "EnsureNamespace " + name));
    const Ip ip(options_.ip);
    if (!internal::IsNamespaceMount(path)) {
        if (Exists(path)) {
            // `ip netns add` creates the file, then binds the new namespace onto it: a file that is no
            // namespace is what an add that died half-way left. `ip netns delete` unlinks it.
            COGS_TRY(ip.Run({"netns", "delete", name}, deadline));
        }
        auto added = ip.Run({"netns", "add", name}, deadline);
        if (!internal::IsNamespaceMount(path)) {
            return added ? MakeError(ErrorCode::kUnavailable,
                                     fmt::format("ip netns add {} made no namespace", name))
                         : MakeError(std::move(added).error());
        }
    }
    COGS_TRY(ip.Run({"-n", name, "link", "set", "dev", "lo", "up"}, deadline));
    return path;
}

Status Host::DeleteNamespace(std::string_view id, SteadyTime deadline) {
    COGS_TRY(names_.ValidateNamespaceId("id", id));
    const std::string name = names_.Namespace(id);
    const std::string path = names_.NamespacePath(id);
    COGS_TRY(CheckDeadline(deadline, "DeleteNamespace " + name));
    const Ip ip(options_.ip);
    if (!Exists(path)) {
        return Ok();
    }
    if (internal::IsNamespaceMount(path)) {
        // Removing the name does not remove the namespace while a process is in it, and even then the
        // kernel tears it down later: delete the veths first, so that their host ends go now.
        COGS_ASSIGN_OR_RETURN(std::vector<Link> links, ip.Links(name, deadline));
        for (const auto& l : links) {
            if (l.kind == "veth") {
                COGS_TRY(DeleteLink(ip, name, l.name, deadline));
            }
        }
    }
    auto deleted = ip.Run({"netns", "delete", name}, deadline);
    if (Exists(path)) {
        return deleted
                   ? MakeError(ErrorCode::kUnavailable, fmt::format("ip netns delete {} left {}", name, path))
                   : MakeError(std::move(deleted).error());
    }
    return Ok();
}

Status Host::PlugPort(const PortSpec& spec, SteadyTime deadline) {
    COGS_TRY(ValidateId("port_id", spec.port_id));
    COGS_TRY(ValidateId("network_id", spec.network_id));
    COGS_TRY(names_.ValidateNamespaceId("namespace_id", spec.namespace_id));
    COGS_ASSIGN_OR_RETURN(const std::string mac, NormalizeMac(spec.mac));
    COGS_ASSIGN_OR_RETURN(const Addressing addressing, ParseAddressing(spec.address, spec.gateway));
    COGS_TRY(ValidateMtu(spec.mtu));
    COGS_TRY(ValidateInterfaceName("interface", spec.interface));
    const std::string bridge = names_.Bridge(spec.network_id);
    const std::string host_end = names_.Port(spec.port_id);
    const std::string ns = names_.Namespace(spec.namespace_id);
    const std::string& inner = spec.interface;
    const std::string mtu = std::to_string(spec.mtu);
    COGS_TRY(CheckDeadline(deadline, "PlugPort " + host_end));
    const Ip ip(options_.ip);

    COGS_ASSIGN_OR_RETURN(auto br, ip.ShowLink("", bridge, deadline));
    if (!br || br->kind != "bridge" || br->alias != spec.network_id) {
        return MakeError(
            ErrorCode::kFailedPrecondition,
            fmt::format("network '{}' has no bridge ({}) on this host", spec.network_id, bridge));
    }
    if (!internal::IsNamespaceMount(names_.NamespacePath(spec.namespace_id))) {
        return MakeError(ErrorCode::kFailedPrecondition, fmt::format("namespace {} does not exist", ns));
    }
    COGS_ASSIGN_OR_RETURN(auto host, ip.ShowLink("", host_end, deadline));
    if (host) {
        COGS_TRY(CheckIdentity(*host, "veth", spec.port_id));
    }
    COGS_ASSIGN_OR_RETURN(std::vector<Link> inside, ip.Links(ns, deadline));
    const auto peer =
        std::find_if(inside.begin(), inside.end(), [&](const Link& l) { return l.name == inner; });
    // Each end of a veth pair names the other's ifindex: the pair is ours exactly when both agree.
    const bool paired = host && peer != inside.end() && peer->kind == "veth" &&
                        host->link_index == peer->ifindex && peer->link_index == host->ifindex;
    if (peer != inside.end() && !paired) {
        return MakeError(ErrorCode::kAlreadyExists,
                         fmt::format("namespace {} already has an interface {} that is not port '{}'", ns,
                                     inner, spec.port_id));
    }
    if (!paired) {
        if (host) {
            // The port's pair with its other end elsewhere (another namespace, or gone): a move.
            COGS_TRY(DeleteLink(ip, "", host_end, deadline));
        }
        // The inner end is made inside the namespace under its final name: no moment with a second
        // "eth0" in the host's namespace, nor a rename.
        COGS_TRY(ip.Run({"link", "add", "name", host_end, "mtu", mtu, "arp", "off", "type", "veth", "peer",
                         "name", inner, "netns", ns, "address", mac, "mtu", mtu},
                        deadline));
    }
    COGS_TRY(ip.Run({"link", "set", "dev", host_end, "alias", spec.port_id, "addrgenmode", "none", "arp",
                     "off", "mtu", mtu, "master", bridge},
                    deadline));
    COGS_TRY(ip.Run({"link", "set", "dev", host_end, "up"}, deadline));

    COGS_TRY(ip.Run({"-n", ns, "link", "set", "dev", "lo", "up"}, deadline));
    COGS_TRY(ip.Run({"-n", ns, "link", "set", "dev", inner, "address", mac, "mtu", mtu, "up"}, deadline));
    COGS_ASSIGN_OR_RETURN(std::string addr_json,
                          ip.Run({"-n", ns, "-json", "addr", "show", "dev", inner}, deadline));
    COGS_ASSIGN_OR_RETURN(auto addresses, internal::ParseAddresses(addr_json));
    bool has = false;
    for (const auto& a : addresses) {
        if (a.family != "inet") {
            continue;
        }
        if (a.local == addressing.ip && a.prefixlen == addressing.prefix) {
            has = true;
        } else {
            COGS_TRY(
                ip.Run({"-n", ns, "addr", "delete", fmt::format("{}/{}", a.local, a.prefixlen), "dev", inner},
                       deadline));
        }
    }
    if (!has) {
        COGS_TRY(ip.Run({"-n", ns, "addr", "add", addressing.with_prefix, "broadcast", "+", "dev", inner},
                        deadline));
    }
    COGS_ASSIGN_OR_RETURN(std::string route_json,
                          ip.Run({"-n", ns, "-json", "route", "show", "default"}, deadline));
    COGS_ASSIGN_OR_RETURN(auto routes, internal::ParseRoutes(route_json));
    if (!addressing.gateway.empty()) {
        const bool right =
            routes.size() == 1 && routes[0].gateway == addressing.gateway && routes[0].dev == inner;
        if (!right) {
            COGS_TRY(
                ip.Run({"-n", ns, "route", "replace", "default", "via", addressing.gateway, "dev", inner},
                       deadline));
        }
    } else {
        for (size_t i = 0; i < routes.size(); ++i) {
            COGS_TRY(ip.Run({"-n", ns, "route", "delete", "default"}, deadline));
        }
    }
    return Ok();
}

Status Host::UnplugPort(std::string_view port_id, SteadyTime deadline) {
    COGS_TRY(ValidateId("port_id", port_id));
    const std::string name = names_.Port(port_id);
    COGS_TRY(CheckDeadline(deadline, "UnplugPort " + name));
    const Ip ip(options_.ip);
    COGS_ASSIGN_OR_RETURN(auto link, ip.ShowLink("", name, deadline));
    if (!link) {
        return Ok();
    }
    COGS_TRY(CheckIdentity(*link, "veth", port_id));
    return DeleteLink(ip, "", name, deadline);  // its peer goes with it
}

Result<Inventory> Host::List(SteadyTime deadline) {
    COGS_TRY(CheckDeadline(deadline, "List"));
    const Ip ip(options_.ip);
    // Two commands, not one snapshot: a port plugged into a namespace made between them shows no
    // namespace_id, which tells a reconciler "unknown", never "orphan".
    COGS_ASSIGN_OR_RETURN(std::string netns_json, ip.RunListing({"-json", "netns", "list"}, deadline));
    COGS_ASSIGN_OR_RETURN(auto namespaces, internal::ParseNetns(netns_json));
    COGS_ASSIGN_OR_RETURN(auto links, ip.Links("", deadline));
    return internal::BuildInventory(names_, links, namespaces);
}

Status Host::DeleteStray(std::string_view name, SteadyTime deadline) {
    const auto kind = names_.ParseLink(name);
    if (!kind) {
        return MakeError(
            FieldError("name", fmt::format("'{}' is not a link name of prefix {}", name, names_.prefix())));
    }
    COGS_TRY(CheckDeadline(deadline, fmt::format("DeleteStray {}", name)));
    const Ip ip(options_.ip);
    const std::string n(name);
    COGS_ASSIGN_OR_RETURN(auto link, ip.ShowLink("", n, deadline));
    if (!link) {
        return Ok();
    }
    const std::string_view expected = *kind == LinkKind::kBridge ? "bridge" : "veth";
    if (names_.Owns(n, link->alias) && link->kind == expected) {
        return MakeError(ErrorCode::kAlreadyExists,
                         fmt::format("{} is no stray: it is the {} of '{}'", n, link->kind, link->alias));
    }
    return DeleteLink(ip, "", n, deadline);
}

}  // namespace cogs::linuxnet
