#include "cogs/netaddr/ipv4.h"

#include <charconv>

namespace cogs::netaddr {
namespace {

// One decimal number of at most three digits without a leading zero, no sign; nullopt otherwise.
std::optional<uint32_t> ParseSmallDecimal(std::string_view s, uint32_t max) {
    if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) {
        return std::nullopt;
    }
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
    }
    uint32_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    if (v > max) {
        return std::nullopt;
    }
    return v;
}

}  // namespace

std::optional<uint32_t> ParseIpv4(std::string_view text) {
    uint32_t ip = 0;
    for (int i = 0; i < 4; ++i) {
        const size_t dot = i < 3 ? text.find('.') : text.size();
        if (dot == std::string_view::npos) {
            return std::nullopt;
        }
        auto octet = ParseSmallDecimal(text.substr(0, dot), 255);
        if (!octet) {
            return std::nullopt;
        }
        ip = (ip << 8) | *octet;
        text.remove_prefix(i < 3 ? dot + 1 : dot);
    }
    return text.empty() ? std::optional<uint32_t>(ip) : std::nullopt;
}

std::string FormatIpv4(uint32_t ip) {
    return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
           std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff);
}

std::string Cidr::ToString() const { return FormatIpv4(network) + "/" + std::to_string(prefix); }

CidrParse ParseCidr(std::string_view text) {
    CidrParse out;
    const size_t slash = text.find('/');
    if (slash == std::string_view::npos) {
        out.problem = "must be a.b.c.d/n";
        return out;
    }
    auto ip = ParseIpv4(text.substr(0, slash));
    if (!ip && text.substr(0, slash).find(':') != std::string_view::npos) {
        out.problem = "IPv6 is not supported: must be an IPv4 block a.b.c.d/n";
        return out;
    }
    if (!ip) {
        out.problem = "must be a.b.c.d/n with an IPv4 address";
        return out;
    }
    auto prefix = ParseSmallDecimal(text.substr(slash + 1), 999);
    if (!prefix) {
        out.problem = "must be a.b.c.d/n with a prefix length";
        return out;
    }
    if (*prefix < kMinPrefix || *prefix > kMaxPrefix) {
        out.problem = "prefix length must be " + std::to_string(kMinPrefix) + ".." +
                      std::to_string(kMaxPrefix) + ", got /" + std::to_string(*prefix);
        return out;
    }
    Cidr c{*ip, static_cast<int>(*prefix)};
    if ((*ip & c.mask()) != *ip) {
        out.problem =
            "host bits must be zero (" + FormatIpv4(*ip & c.mask()) + "/" + std::to_string(*prefix) + "?)";
        return out;
    }
    out.cidr = c;
    return out;
}

}  // namespace cogs::netaddr
