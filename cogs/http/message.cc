// Request and Response accessors: plain string work, no Beast, so that every user of the HTTP types
// does not pay for Beast's compile time.
#include <unistd.h>
#include <cctype>

#include <charconv>

#include "cogs/base/hash.h"
#include "cogs/http/client.h"
#include "cogs/http/conditional.h"
#include "cogs/http/server.h"

namespace cogs::http {
namespace {

bool EqualsIgnoreCase(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

std::string FindHeader(const std::vector<std::pair<std::string, std::string>>& headers,
                       const std::string& name) {
    for (const auto& [k, v] : headers) {
        if (EqualsIgnoreCase(k, name)) {
            return v;
        }
    }
    return "";
}

int HexValue(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// application/x-www-form-urlencoded decoding: '+' is a space, %XY a byte; a malformed escape is kept
// as it is rather than rejected (a query parameter is a hint, never trusted input).
std::string Decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
            out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace

BodyFile::~BodyFile() {
    if (temporary) {
        ::unlink(path.c_str());
    }
}

std::string Request::Header(const std::string& name) const { return FindHeader(headers, name); }

std::string Request::Path() const {
    auto q = target.find('?');
    return q == std::string::npos ? target : target.substr(0, q);
}

std::vector<std::pair<std::string, std::string>> Request::QueryParams() const {
    std::vector<std::pair<std::string, std::string>> out;
    auto q = target.find('?');
    if (q == std::string::npos) {
        return out;
    }
    std::string_view rest(target);
    rest.remove_prefix(q + 1);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        out.emplace_back(Decode(pair.substr(0, eq)),
                         eq == std::string_view::npos ? "" : Decode(pair.substr(eq + 1)));
    }
    return out;
}

std::string Request::Query(const std::string& name) const {
    for (auto& [k, v] : QueryParams()) {
        if (k == name) {
            return v;
        }
    }
    return "";
}

std::string UrlDecode(std::string_view s) { return Decode(s); }

std::string EntityTag(std::string_view content) {
    const uint64_t h = base::Fnv1a64(content);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string tag(18, '"');
    for (int i = 0; i < 16; ++i) {
        tag[1 + i] = kHex[(h >> (60 - 4 * i)) & 0xf];
    }
    return tag;
}

bool NoneMatchHits(std::string_view if_none_match, std::string_view tag) {
    while (!if_none_match.empty()) {
        const size_t comma = if_none_match.find(',');
        std::string_view one = if_none_match.substr(0, comma);
        if_none_match =
            comma == std::string_view::npos ? std::string_view() : if_none_match.substr(comma + 1);
        while (!one.empty() && (one.front() == ' ' || one.front() == '\t'))
            one.remove_prefix(1);
        while (!one.empty() && (one.back() == ' ' || one.back() == '\t'))
            one.remove_suffix(1);
        if (one.starts_with("W/")) one.remove_prefix(2);
        if (one == "*" || one == tag) return true;
    }
    return false;
}

std::string Response::Header(const std::string& name) const {
    if (EqualsIgnoreCase(name, "content-type")) {
        std::string v = FindHeader(headers, name);
        return v.empty() ? content_type : v;
    }
    return FindHeader(headers, name);
}

std::string UrlEncode(std::string_view s) {
    static const char* kHex = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::optional<Endpoint> ParseHostPort(std::string_view s) {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == s.size() || s.size() - colon - 1 > 5) {
        return std::nullopt;
    }
    const std::string_view digits = s.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() || port > 65535) {
        return std::nullopt;
    }
    std::string_view host = s.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    return Endpoint{std::string(host), static_cast<uint16_t>(port)};
}

std::optional<Endpoint> ParseHttpUrl(std::string_view url) {
    const bool tls = url.starts_with("https://");
    if (!tls && !url.starts_with("http://")) {
        return std::nullopt;
    }
    url.remove_prefix(tls ? 8 : 7);
    auto e = ParseHostPort(url.substr(0, url.find('/')));
    if (!e || e->port == 0) {
        return std::nullopt;
    }
    e->tls = tls;
    return e;
}

}  // namespace cogs::http
