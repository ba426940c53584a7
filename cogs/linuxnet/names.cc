#include "cogs/linuxnet/names.h"

#include <algorithm>

#include <fmt/format.h>

#include "cogs/base/secret.h"

namespace cogs::linuxnet {

namespace {

// NAME_MAX: a namespace's name is a file name under /run/netns.
constexpr size_t kMaxFileName = 255;

bool IsHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

Status ValidateId(std::string_view field, std::string_view id) {
    if (id.empty()) {
        return MakeError(FieldError(field, "required"));
    }
    if (id.size() > kMaxId) {
        return MakeError(FieldError(field, fmt::format("at most {} bytes, got {}", kMaxId, id.size())));
    }
    for (char c : id) {
        if (c < 0x21 || c > 0x7e) {
            return MakeError(FieldError(field, "only printable ASCII characters, no spaces"));
        }
    }
    return Ok();
}

Status ValidateInterfaceName(std::string_view field, std::string_view name) {
    if (name.empty() || name.size() > kMaxInterfaceName) {
        return MakeError(FieldError(field, fmt::format("1..{} characters", kMaxInterfaceName)));
    }
    if (name == "." || name == "..") {
        return MakeError(FieldError(field, "not an interface name"));
    }
    for (char c : name) {
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == ':') {
            return MakeError(FieldError(field, "printable ASCII without '/', ':' or spaces"));
        }
    }
    return Ok();
}

Names::Names() : prefix_(kDefaultPrefix) {}

Result<Names> Names::Make(std::string_view prefix) {
    const bool ok = !prefix.empty() && prefix.size() <= kMaxPrefix && prefix[0] >= 'a' && prefix[0] <= 'z' &&
                    std::all_of(prefix.begin(), prefix.end(),
                                [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
    if (!ok) {
        return MakeError(
            FieldError("prefix", fmt::format("1..{} characters of [a-z0-9] starting with a letter, got '{}'",
                                             kMaxPrefix, prefix)));
    }
    return Names(std::string(prefix));
}

std::string Names::Link(LinkKind kind, std::string_view id) const {
    return fmt::format("{}-{}{}", prefix_, static_cast<char>(kind), Sha256Hex(id).substr(0, HexDigits()));
}

std::optional<LinkKind> Names::ParseLink(std::string_view ifname) const {
    if (ifname.size() != kMaxInterfaceName || !ifname.starts_with(prefix_) || ifname[prefix_.size()] != '-') {
        return std::nullopt;
    }
    const std::string_view hex = ifname.substr(prefix_.size() + 2);
    if (!std::all_of(hex.begin(), hex.end(), IsHexDigit)) {
        return std::nullopt;
    }
    switch (ifname[prefix_.size() + 1]) {
        case static_cast<char>(LinkKind::kBridge): return LinkKind::kBridge;
        case static_cast<char>(LinkKind::kPort): return LinkKind::kPort;
        default: return std::nullopt;
    }
}

bool Names::Owns(std::string_view ifname, std::string_view alias) const {
    const auto kind = ParseLink(ifname);
    return kind && ValidateId("alias", alias) && Link(*kind, alias) == ifname;
}

std::string Names::Namespace(std::string_view id) const { return fmt::format("{}-{}", prefix_, id); }

std::string Names::NamespacePath(std::string_view id) const {
    return fmt::format("{}/{}", kNetnsDir, Namespace(id));
}

std::optional<std::string> Names::ParseNamespace(std::string_view name) const {
    if (name.size() <= prefix_.size() + 1 || !name.starts_with(prefix_) || name[prefix_.size()] != '-') {
        return std::nullopt;
    }
    std::string id(name.substr(prefix_.size() + 1));
    if (!ValidateNamespaceId("namespace", id)) {
        return std::nullopt;
    }
    return id;
}

Status Names::ValidateNamespaceId(std::string_view field, std::string_view id) const {
    COGS_TRY(ValidateId(field, id));
    if (id.find('/') != std::string_view::npos) {
        return MakeError(FieldError(field, "no '/' (it names a file under /run/netns)"));
    }
    if (prefix_.size() + 1 + id.size() > kMaxFileName) {
        return MakeError(
            FieldError(field, fmt::format("at most {} bytes (with the prefix it names a file under {})",
                                          kMaxFileName - prefix_.size() - 1, kNetnsDir)));
    }
    return Ok();
}

}  // namespace cogs::linuxnet
