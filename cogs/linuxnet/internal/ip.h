// iproute2 inside cogs/linuxnet: running `ip` (through runtime::RunCommand) and reading what
// `ip -json` prints. Nothing outside this component sees a command line or the tool's JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/linuxnet/host.h"
#include "cogs/linuxnet/names.h"

namespace cogs::linuxnet::internal {

// One link as `ip -json -d link show` prints it: the fields cogs reads.
struct Link {
    int ifindex = 0;
    std::string name;    // ifname
    std::string kind;    // linkinfo.info_kind: "bridge", "veth", "" (a plain device)
    std::string alias;   // ifalias; "" if none
    std::string master;  // the bridge it is a port of; "" if none
    std::string mac;     // address
    int mtu = 0;
    bool up = false;                  // UP among its flags (administratively up)
    bool noarp = false;               // NOARP among its flags
    std::string addrgenmode;          // inet6_addr_gen_mode: "none", "eui64", ...
    int link_index = 0;               // a veth's peer's ifindex (in the peer's namespace); 0 if none
    std::optional<int> link_netnsid;  // the peer's namespace as this namespace numbers it
};

// One entry of `ip -json netns list`: a name under /run/netns and, if the namespace has one in the
// caller's namespace, its id (the number links' link_netnsid use).
struct NetnsEntry {
    std::string name;
    std::optional<int> id;
};

// One address of `ip -json addr show dev X`.
struct Address {
    std::string family;  // "inet", "inet6"
    std::string local;
    int prefixlen = 0;
};

// One route of `ip -json route show ...`.
struct Route {
    std::string dst;  // "default", "10.0.0.0/24"
    std::string gateway;
    std::string dev;
};

// Errors: kUnavailable "cannot read ip's output: ..." for output that is not what `ip -json` prints.
// Empty output is an empty list (`ip -json netns list` prints nothing when /run/netns is missing).
Result<std::vector<Link>> ParseLinks(std::string_view json);
Result<std::vector<NetnsEntry>> ParseNetns(std::string_view json);
// The addresses of every link in the output (`addr show dev X`: that link's).
Result<std::vector<Address>> ParseAddresses(std::string_view json);
Result<std::vector<Route>> ParseRoutes(std::string_view json);

// The cogs objects of `names`'s prefix among what `ip -json -d link show` and `ip -json netns list`
// printed (Host::List, without the commands): pure, so its rules are tested without root.
Inventory BuildInventory(const Names& names, const std::vector<Link>& links,
                         const std::vector<NetnsEntry>& namespaces);

// Runs `ip` (argv[0] = path) with LC_ALL=C.
class Ip {
public:
    explicit Ip(std::string path) : path_(std::move(path)) {}

    // `ip ARGS...`: its stdout. A listing that changes interrupted (kDumpInterrupted on stderr) is
    // taken again, up to kDumpAttempts times. Errors: kPermissionDenied (EPERM) or kUnavailable
    // (retryable) "ip ARGS...: what it printed" for a non-zero exit; kDeadlineExceeded;
    // kFailedPrecondition if `ip` cannot be run at all; kUnavailable if it printed `max_output`
    // bytes or more (what is read is read whole, never cut) or every attempt was interrupted. The
    // default suits commands that print little (changes, one link, one namespace's links,
    // addresses, routes).
    static constexpr std::string_view kDumpInterrupted = "Dump was interrupted and may be inconsistent";
    static constexpr int kDumpAttempts = 5;
    Result<std::string> Run(const std::vector<std::string>& args, SteadyTime deadline,
                            size_t max_output = 64 * 1024) const;
    // As Run, for a listing of every link of the host: up to kMaxListing.
    static constexpr size_t kMaxListing = 64 * 1024 * 1024;
    Result<std::string> RunListing(const std::vector<std::string>& args, SteadyTime deadline) const;

    // The link `name` (in namespace `netns`, "" for the caller's), or nullopt if there is none.
    Result<std::optional<Link>> ShowLink(std::string_view netns, std::string_view name,
                                         SteadyTime deadline) const;
    // Every link of namespace `netns` ("" for the caller's, however many).
    Result<std::vector<Link>> Links(std::string_view netns, SteadyTime deadline) const;

private:
    std::string path_;
};

// Whether `path` is a network namespace (a bind mount of nsfs), not just a file.
bool IsNamespaceMount(const std::string& path);

}  // namespace cogs::linuxnet::internal
