#include "cogs/base/secret.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>

namespace cogs {
namespace {

std::string ToHex(const unsigned char* p, size_t n) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(n * 2, '0');
    for (size_t i = 0; i < n; ++i) {
        out[2 * i] = kHex[p[i] >> 4];
        out[2 * i + 1] = kHex[p[i] & 15];
    }
    return out;
}

}  // namespace

std::string HexOf(std::string_view bytes) {
    return ToHex(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

std::string Sha256Hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    // EVP_Digest fails only on allocation failure or a broken OpenSSL: not an expected failure.
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(sha256) failed");
    }
    return ToHex(digest, len);
}

std::string Md5Hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(md5) failed");
    }
    return ToHex(digest, len);
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &len) == nullptr) {
        throw std::runtime_error("HMAC(sha256) failed");
    }
    return ToHex(digest, len);
}

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
    }
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Hasher::Update(std::string_view data) {
    if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()) != 1) {
        throw std::runtime_error("EVP_DigestUpdate failed");
    }
}

std::string Sha256Hasher::HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &len) != 1) {
        throw std::runtime_error("EVP_DigestFinal_ex failed");
    }
    return ToHex(digest, len);
}

std::string RandomHex(size_t bytes) {
    std::string raw(bytes, '\0');
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error("getrandom failed");
        }
        got += static_cast<size_t>(n);
    }
    return ToHex(reinterpret_cast<const unsigned char*>(raw.data()), bytes);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    }
    return diff == 0;
}

std::string NewUuidAt(uint64_t unix_ms) {
    std::string h = fmt::format("{:012x}", unix_ms & 0xffffffffffffULL) + RandomHex(10);
    h[12] = '7';
    static constexpr char kVariant[] = "89ab";
    h[16] = kVariant[(h[16] >= 'a' ? h[16] - 'a' + 10 : h[16] - '0') & 3];
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
           h.substr(20);
}

std::string NewUuid() {
    return NewUuidAt(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count()));
}

std::optional<uint64_t> UuidV7Time(std::string_view id) {
    if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' || id[14] != '7' ||
        std::string_view("89ab").find(id[19]) == std::string_view::npos) {
        return std::nullopt;
    }
    uint64_t ms = 0;
    for (size_t i = 0; i < 36; ++i) {
        const char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            continue;
        }
        const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (!hex) {
            return std::nullopt;
        }
        if (i < 13) {
            ms = ms << 4 | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
        }
    }
    return ms;
}

}  // namespace cogs
