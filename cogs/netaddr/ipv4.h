// IPv4 addresses, CIDR blocks and address ranges as cogs uses them: a 32-bit host-order integer per
// address, strict dotted-quad text (four decimal octets 0..255, no leading zeros, nothing else).
//
// Threading: pure functions and plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cogs::netaddr {

// "10.0.0.5" -> 0x0a000005; nullopt unless `text` is exactly a dotted quad. Leading zeros ("010")
// are refused: some parsers read them as octal, so the text would mean two different addresses.
std::optional<uint32_t> ParseIpv4(std::string_view text);

// 0x0a000005 -> "10.0.0.5".
std::string FormatIpv4(uint32_t ip);

// The prefix lengths a subnet may have: a /31 or /32 has no room for a gateway and a port, and a
// block wider than /8 is not a subnet anyone means.
inline constexpr int kMinPrefix = 8;
inline constexpr int kMaxPrefix = 30;

// A block "a.b.c.d/n" with kMinPrefix <= n <= kMaxPrefix, so network < first_host() <= last_host()
// < broadcast() always holds.
struct Cidr {
    uint32_t network = 0;  // host bits zero
    int prefix = 0;

    uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
    uint32_t broadcast() const { return network | ~mask(); }
    uint32_t first_host() const { return network + 1; }
    uint32_t last_host() const { return broadcast() - 1; }
    bool Contains(uint32_t ip) const { return (ip & mask()) == network; }
    bool IsHost(uint32_t ip) const { return Contains(ip) && ip != network && ip != broadcast(); }
    bool Overlaps(const Cidr& other) const {
        const int p = prefix < other.prefix ? prefix : other.prefix;
        const uint32_t m = p == 0 ? 0 : ~uint32_t{0} << (32 - p);
        return (network & m) == (other.network & m);
    }
    std::string ToString() const;  // "10.0.0.0/24"
    bool operator==(const Cidr&) const = default;
};

// What ParseCidr found: the block, or (cidr empty) why the text was refused, for an error message
// that names the field: "prefix length must be 8..30, got /33", "host bits must be zero (...)", ...
struct CidrParse {
    std::optional<Cidr> cidr;
    std::string problem;
};
CidrParse ParseCidr(std::string_view text);

// An inclusive range of addresses [first, last].
struct AddressRange {
    uint32_t first = 0;
    uint32_t last = 0;  // inclusive
    bool operator==(const AddressRange&) const = default;
};

}  // namespace cogs::netaddr
