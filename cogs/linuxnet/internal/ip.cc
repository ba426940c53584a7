#include "cogs/linuxnet/internal/ip.h"

#include <net/if.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/runtime/process.h"

namespace cogs::linuxnet::internal {

namespace json = boost::json;

namespace {

// linux/magic.h's NSFS_MAGIC: what statfs says of a namespace file that is bound to a namespace.
constexpr long kNsfsMagic = 0x6e736673;

Error Unreadable(std::string_view what) {
    return Error(ErrorCode::kUnavailable, fmt::format("cannot read ip's output: {}", what));
}

std::string String(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::optional<int> Int(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (v->is_int64()) {
        return static_cast<int>(v->get_int64());
    }
    if (v->is_uint64()) {
        return static_cast<int>(v->get_uint64());
    }
    return std::nullopt;
}

// The top-level array `ip -json` prints (nothing at all counts as an empty one).
Result<json::array> ParseArray(std::string_view text) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return json::array();
    }
    json::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
        return MakeError(Unreadable(ec.message()));
    }
    if (!v.is_array()) {
        return MakeError(Unreadable("not a JSON array"));
    }
    return std::move(v.get_array());
}

bool HasFlag(const json::object& o, std::string_view flag) {
    const json::value* flags = o.if_contains("flags");
    if (flags == nullptr || !flags->is_array()) {
        return false;
    }
    const auto& a = flags->get_array();
    return std::any_of(a.begin(), a.end(),
                       [&](const json::value& f) { return f.is_string() && f.get_string() == flag; });
}

std::string Trimmed(std::string_view s) {
    const size_t first = s.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        return {};
    }
    return std::string(s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1));
}

std::string CommandText(const std::vector<std::string>& args) {
    std::string text = "ip";
    for (const auto& a : args) {
        text += ' ';
        text += a;
    }
    return text;
}

// A command that exited non-zero, named with what it printed.
Error Failed(const std::vector<std::string>& args, int exit_status, std::string_view output) {
    // The tool's last words are the useful ones (a listing that failed may have printed a lot first).
    constexpr size_t kMaxSaid = 1000;
    std::string said = Trimmed(output.size() > kMaxSaid ? output.substr(output.size() - kMaxSaid) : output);
    if (said.empty()) {
        said = fmt::format("exit status {}", exit_status);
    }
    // EPERM is the one answer that retrying cannot change (not root, no CAP_NET_ADMIN).
    const bool denied = said.find("Operation not permitted") != std::string::npos;
    return Error(denied ? ErrorCode::kPermissionDenied : ErrorCode::kUnavailable,
                 fmt::format("{}: {}", CommandText(args), said), !denied);
}

}  // namespace

Result<std::vector<Link>> ParseLinks(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(json::array array, ParseArray(text));
    std::vector<Link> links;
    for (const auto& v : array) {
        if (!v.is_object()) {
            return MakeError(Unreadable("a link that is not an object"));
        }
        const auto& o = v.get_object();
        Link l;
        l.ifindex = Int(o, "ifindex").value_or(0);
        l.name = String(o, "ifname");
        if (l.name.empty()) {
            return MakeError(Unreadable("a link without ifname"));
        }
        if (const json::value* info = o.if_contains("linkinfo"); info != nullptr && info->is_object()) {
            l.kind = String(info->get_object(), "info_kind");
        }
        l.alias = String(o, "ifalias");
        l.master = String(o, "master");
        l.mac = String(o, "address");
        l.mtu = Int(o, "mtu").value_or(0);
        l.up = HasFlag(o, "UP");
        l.noarp = HasFlag(o, "NOARP");
        l.addrgenmode = String(o, "inet6_addr_gen_mode");
        l.link_index = Int(o, "link_index").value_or(0);
        l.link_netnsid = Int(o, "link_netnsid");
        links.push_back(std::move(l));
    }
    return links;
}

Result<std::vector<NetnsEntry>> ParseNetns(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(json::array array, ParseArray(text));
    std::vector<NetnsEntry> entries;
    for (const auto& v : array) {
        if (!v.is_object() || String(v.get_object(), "name").empty()) {
            return MakeError(Unreadable("a namespace without a name"));
        }
        entries.push_back({String(v.get_object(), "name"), Int(v.get_object(), "id")});
    }
    return entries;
}

Result<std::vector<Address>> ParseAddresses(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(json::array array, ParseArray(text));
    std::vector<Address> addresses;
    for (const auto& v : array) {
        if (!v.is_object()) {
            return MakeError(Unreadable("a link that is not an object"));
        }
        const json::value* info = v.get_object().if_contains("addr_info");
        if (info == nullptr || !info->is_array()) {
            continue;
        }
        for (const auto& a : info->get_array()) {
            if (!a.is_object()) {
                return MakeError(Unreadable("an address that is not an object"));
            }
            const auto& o = a.get_object();
            addresses.push_back({String(o, "family"), String(o, "local"), Int(o, "prefixlen").value_or(0)});
        }
    }
    return addresses;
}

Result<std::vector<Route>> ParseRoutes(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(json::array array, ParseArray(text));
    std::vector<Route> routes;
    for (const auto& v : array) {
        if (!v.is_object()) {
            return MakeError(Unreadable("a route that is not an object"));
        }
        const auto& o = v.get_object();
        routes.push_back({String(o, "dst"), String(o, "gateway"), String(o, "dev")});
    }
    return routes;
}

Inventory BuildInventory(const Names& names, const std::vector<Link>& links,
                         const std::vector<NetnsEntry>& namespaces) {
    Inventory inv;
    std::map<int, std::string> namespace_ids;  // netns id -> the cogs id it was made for
    for (const auto& ns : namespaces) {
        auto id = names.ParseNamespace(ns.name);
        if (!id) {
            continue;
        }
        if (ns.id) {
            namespace_ids[*ns.id] = *id;
        }
        inv.namespaces.push_back({ns.name, *id, std::string(kNetnsDir) + "/" + ns.name});
    }
    std::map<std::string, std::string> bridge_networks;  // bridge name -> network id
    for (const auto& l : links) {
        const auto kind = names.ParseLink(l.name);
        if (!kind) {
            continue;  // not named in this prefix's pattern: not ours
        }
        const bool owned = names.Owns(l.name, l.alias);
        if (*kind == LinkKind::kBridge && owned && l.kind == "bridge") {
            inv.bridges.push_back({l.name, l.alias, l.mtu, l.up});
            bridge_networks[l.name] = l.alias;
        } else if (!(*kind == LinkKind::kPort && owned && l.kind == "veth")) {
            inv.strays.push_back(l.name);
        }
    }
    for (const auto& l : links) {
        if (names.ParseLink(l.name) != LinkKind::kPort || l.kind != "veth" || !names.Owns(l.name, l.alias)) {
            continue;
        }
        PortInfo p;
        p.name = l.name;
        p.port_id = l.alias;
        p.bridge = l.master;
        if (auto it = bridge_networks.find(l.master); it != bridge_networks.end()) {
            p.network_id = it->second;
        }
        if (l.link_netnsid) {
            if (auto it = namespace_ids.find(*l.link_netnsid); it != namespace_ids.end()) {
                p.namespace_id = it->second;
            }
        }
        inv.ports.push_back(std::move(p));
    }
    const auto by_name = [](const auto& a, const auto& b) { return a.name < b.name; };
    std::sort(inv.bridges.begin(), inv.bridges.end(), by_name);
    std::sort(inv.ports.begin(), inv.ports.end(), by_name);
    std::sort(inv.namespaces.begin(), inv.namespaces.end(), by_name);
    std::sort(inv.strays.begin(), inv.strays.end());
    return inv;
}

Result<std::string> Ip::Run(const std::vector<std::string>& args, SteadyTime deadline,
                            size_t max_output) const {
    std::vector<std::string> argv{path_};
    argv.insert(argv.end(), args.begin(), args.end());
    for (int attempt = 1;; ++attempt) {
        auto out = runtime::RunCommand(
            argv, deadline, {.env = {"LC_ALL=C"}, .max_output = max_output, .separate_stderr = true});
        if (!out) {
            Error e = std::move(out).error();
            if (e.code == ErrorCode::kDeadlineExceeded) {
                return MakeError(Error(ErrorCode::kDeadlineExceeded,
                                       fmt::format("{}: did not end within the deadline", CommandText(args)),
                                       true));
            }
            return MakeError(ErrorCode::kFailedPrecondition,
                             fmt::format("cannot run {}: {}", path_, e.message));
        }
        if (out->exit_status != 0) {
            return MakeError(Failed(args, out->exit_status, out->output + out->errors));
        }
        if (out->output.size() >= max_output) {
            // Cut: a listing must be read whole or not at all.
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("{}: printed more than {} bytes", CommandText(args), max_output));
        }
        // A dump that links or addresses changed under (another agent's port, a test's bridge) may
        // miss some or show one twice; iproute2 says so on stderr and still exits 0. Taken again, it
        // is whole: the kernel flags only a dump that a change crossed.
        if (out->errors.find(kDumpInterrupted) == std::string::npos) {
            return std::move(out->output);
        }
        if (attempt == kDumpAttempts) {
            return MakeError(ErrorCode::kUnavailable, fmt::format("{}: {} times: {}", CommandText(args),
                                                                  kDumpAttempts, kDumpInterrupted));
        }
    }
}

Result<std::string> Ip::RunListing(const std::vector<std::string>& args, SteadyTime deadline) const {
    // A busy host's `ip -json -details link show` is far more than the 64 KiB kept of other commands.
    return Run(args, deadline, kMaxListing);
}

Result<std::optional<Link>> Ip::ShowLink(std::string_view netns, std::string_view name,
                                         SteadyTime deadline) const {
    if (!netns.empty()) {
        // A namespace of ours holds a few links: list them rather than tell "no such device" from
        // another failure by the tool's wording.
        COGS_ASSIGN_OR_RETURN(std::vector<Link> links, Links(netns, deadline));
        for (auto& l : links) {
            if (l.name == name) {
                return std::optional<Link>(std::move(l));
            }
        }
        return std::optional<Link>();
    }
    // In this process's own namespace the kernel says whether the name exists (ENODEV), and `ip`
    // shows that one link only: a host may have thousands.
    const std::string n(name);
    if (::if_nametoindex(n.c_str()) == 0) {
        return std::optional<Link>();
    }
    auto out = Run({"-json", "-details", "link", "show", "dev", n}, deadline);
    if (!out) {
        if (::if_nametoindex(n.c_str()) == 0) {
            return std::optional<Link>();  // it went between the two looks
        }
        return MakeError(std::move(out).error());
    }
    COGS_ASSIGN_OR_RETURN(std::vector<Link> links, ParseLinks(*out));
    if (links.size() != 1 || links[0].name != name) {
        return MakeError(Unreadable(fmt::format("`ip link show dev {}` did not show that one link", n)));
    }
    return std::optional<Link>(std::move(links[0]));
}

Result<std::vector<Link>> Ip::Links(std::string_view netns, SteadyTime deadline) const {
    std::vector<std::string> args;
    if (!netns.empty()) {
        args = {"-n", std::string(netns)};
    }
    args.insert(args.end(), {"-json", "-details", "link", "show"});
    COGS_ASSIGN_OR_RETURN(std::string out, netns.empty() ? RunListing(args, deadline) : Run(args, deadline));
    return ParseLinks(out);
}

bool IsNamespaceMount(const std::string& path) {
    struct statfs fs {};
    return ::statfs(path.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == kNsfsMagic;
}

}  // namespace cogs::linuxnet::internal
