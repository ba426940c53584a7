#include "cogs/cli/internal/dev_pki.h"

#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "cogs/pki/pki.h"

namespace cogs::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr Duration kCaValidity = std::chrono::hours(24 * 3650);
constexpr Duration kLeafValidity = std::chrono::hours(24 * 365);
constexpr Duration kRenewBefore = std::chrono::hours(24 * 30);
constexpr const char* kCaName = "cogs dev CA";

struct Leaf {
    std::string name;  // the files' stem
    std::string cn;
    std::vector<std::string> dns;
    std::vector<std::string> ips;
};

Leaf LeafOf(const std::string& name) {
    if (name.starts_with("host-")) {
        return {name, name, {name}, {"127.0.0.1"}};
    }
    if (name == "network" || name == "volume") {
        return {name, "cogs-" + name, {"localhost"}, {"127.0.0.1"}};
    }
    if (name == "prometheus") {
        return {name, name, {"localhost"}, {}};
    }
    return {name, name, {"localhost"}, {"127.0.0.1"}};  // cogsd
}

Status IssueLeaf(const DevPki& pki, const Leaf& l) {
    return pki::Issue(pki::CaFiles{pki.ca(), pki.key("ca")}, pki.cert(l.name), pki.key(l.name), l.cn, l.dns,
                      l.ips, kLeafValidity);
}

// Whether `l`'s files can be kept: both there, issued by our CA, not ending within kRenewBefore.
bool Usable(const DevPki& pki, const Leaf& l) {
    if (!fs::exists(pki.key(l.name))) return false;
    auto info = pki::ReadCertificate(pki.cert(l.name));
    if (!info) return false;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    return info->issuer_cn == kCaName && info->subject_cn == l.cn &&
           info->not_after_ms - now_ms >
               std::chrono::duration_cast<std::chrono::milliseconds>(kRenewBefore).count();
}

}  // namespace

Result<DevPki> EnsureDevPki(const std::string& data_dir, int hosts) {
    DevPki pki{(fs::path(data_dir) / "pki").string()};
    std::error_code ec;
    fs::create_directories(pki.dir, ec);
    if (ec) return MakeError(ErrorCode::kUnavailable, "cannot make " + pki.dir + ": " + ec.message());
    fs::permissions(pki.dir, fs::perms::owner_all, ec);
    bool fresh_ca = false;
    if (!fs::exists(pki.ca()) || !fs::exists(pki.key("ca")) || !pki::ReadCertificate(pki.ca())) {
        COGS_TRY(pki::MakeCa(pki.ca(), pki.key("ca"), kCaName, kCaValidity));
        fresh_ca = true;
    }
    std::vector<std::string> names{"cogsd", "network", "volume", "prometheus"};
    for (int i = 1; i <= hosts; ++i) {
        names.push_back(fmt::format("host-{}", i));
    }
    for (const std::string& name : names) {
        const Leaf l = LeafOf(name);
        if (fresh_ca || !Usable(pki, l)) {
            if (auto st = IssueLeaf(pki, l); !st) {
                return MakeError(st.error().code, name + " certificate: " + st.error().message);
            }
        }
    }
    return pki;
}

}  // namespace cogs::cli
