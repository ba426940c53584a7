// The names cogs gives the Linux objects of its networks: bridges, the host ends of ports' veth
// pairs, and network namespaces. Pure functions of a prefix and an id, so that any process finds an
// object from the id alone and a listing of the machine maps every object back to its id.
//
// Links (bridges, veths) carry the kernel's 15-character limit on interface names, too short for an
// id, so a link is named
//
//     <prefix> "-" <kind> <the first hex digits of SHA-256(id)>      cg-b3f1c9a07d2e  (15 characters)
//
// and the FULL id is stored in the link's alias (`ip link set dev X alias ID`, up to 255 bytes). A
// link is cogs's object for an id exactly when its name is the name of its alias: the hash in the
// name and the id in the alias vouch for each other, so an interface named in the pattern by chance,
// or by another cloud on the machine, is never taken for one of ours. Anyone can find a link by hand:
// `printf %s "$ID" | sha256sum`.
//
// A namespace is a file under /run/netns, whose name can hold the id itself:
//
//     <prefix> "-" <id>                                              cg-1e543fbb-5ebb-4445-a1f1-...
//
// The prefix (1..5 characters of [a-z0-9], a letter first; default "cg") separates clouds, and test
// runs, on one machine: a prefix never contains "-", so "cg-" is no other prefix's beginning, and two
// prefixes never see each other's objects even when one is the beginning of the other ("cg", "cgt").
//
// Threading: values and pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs::linuxnet {

// IFNAMSIZ - 1: the longest interface name the kernel takes.
inline constexpr size_t kMaxInterfaceName = 15;
// A prefix leaves at least 8 hex digits (32 bits) of hash in a link's name.
inline constexpr size_t kMaxPrefix = 5;
// IFALIASZ - 1: the longest alias, hence the longest id.
inline constexpr size_t kMaxId = 255;
inline constexpr std::string_view kDefaultPrefix = "cg";
inline constexpr std::string_view kNetnsDir = "/run/netns";

// What a link under a prefix stands for (the letter after "<prefix>-").
enum class LinkKind : char {
    kBridge = 'b',  // a network's bridge; alias = the network id
    kPort = 'p',    // the host end of a port's veth pair; alias = the port id
};

// An id cogs names an object after: 1..kMaxId printable ASCII characters (0x21..0x7e: no space, no
// control character). Errors: kInvalidArgument naming `field`.
Status ValidateId(std::string_view field, std::string_view id);

// An interface name as the kernel takes it: 1..15 bytes, no "/", ":" or whitespace, not "." or "..".
// Errors: kInvalidArgument naming `field`.
Status ValidateInterfaceName(std::string_view field, std::string_view name);

class Names {
public:
    // The default prefix, kDefaultPrefix.
    Names();

    // Errors: kInvalidArgument naming "prefix" unless it is 1..kMaxPrefix characters of [a-z0-9]
    // starting with a letter.
    static Result<Names> Make(std::string_view prefix);

    const std::string& prefix() const { return prefix_; }

    // The link name of an id: "<prefix>-<kind><hex>", exactly 15 characters. The id is not
    // validated here (any string has a name); Host validates ids before it names them.
    std::string Link(LinkKind kind, std::string_view id) const;
    std::string Bridge(std::string_view network_id) const { return Link(LinkKind::kBridge, network_id); }
    std::string Port(std::string_view port_id) const { return Link(LinkKind::kPort, port_id); }

    // The kind of a link named in this prefix's pattern (prefix, "-", a kind letter, hex digits to
    // 15 characters); nullopt for any other name. Says nothing about the alias: see Owns.
    std::optional<LinkKind> ParseLink(std::string_view ifname) const;

    // Whether `ifname` is this prefix's link for the id in `alias`: Link(kind, alias) == ifname with
    // ValidateId(alias). False for an empty alias (a link whose creation was interrupted before its
    // alias was set) and for an alias that does not hash to the name.
    bool Owns(std::string_view ifname, std::string_view alias) const;

    // The namespace of an id: "<prefix>-<id>". Host checks with ValidateNamespaceId first.
    std::string Namespace(std::string_view id) const;
    // /run/netns/<Namespace(id)>: the path runc joins.
    std::string NamespacePath(std::string_view id) const;
    // The id of a namespace named by this prefix; nullopt for any other name.
    std::optional<std::string> ParseNamespace(std::string_view name) const;
    // ValidateId, and no "/" (the name is a file name), and the name fits NAME_MAX.
    Status ValidateNamespaceId(std::string_view field, std::string_view id) const;

private:
    explicit Names(std::string prefix) : prefix_(std::move(prefix)) {}
    // How many hex digits of the hash a link name holds: 15 - |prefix| - 2.
    size_t HexDigits() const { return kMaxInterfaceName - prefix_.size() - 2; }

    std::string prefix_;
};

}  // namespace cogs::linuxnet
