#include "cogs/base/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

#include "cogs/base/check.h"
#include "cogs/base/secret.h"

namespace cogs {
namespace {

constexpr std::string_view kScheme = "pbkdf2-sha256";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;  // SHA-256's output: more would only cost the defender

// Lowercase hex of exactly `bytes` bytes, decoded; nullopt for anything else.
std::optional<std::string> FromHex(std::string_view hex, size_t bytes) {
    if (hex.size() != 2 * bytes) {
        return std::nullopt;
    }
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    std::string out(bytes, '\0');
    for (size_t i = 0; i < bytes; ++i) {
        const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out[i] = static_cast<char>(hi << 4 | lo);
    }
    return out;
}

// Decimal digits without a leading zero, in [1, kMaxPasswordIterations]; nullopt for anything else.
std::optional<int> ParseIterations(std::string_view s) {
    if (s.empty() || s.size() > 8 || s[0] == '0') {
        return std::nullopt;
    }
    int n = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        n = n * 10 + (c - '0');
    }
    if (n > kMaxPasswordIterations) {
        return std::nullopt;
    }
    return n;
}

std::string Derive(std::string_view password, std::string_view salt, int iterations) {
    unsigned char out[kHashBytes];
    // Fails only on allocation failure or a broken OpenSSL: not an expected failure.
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                          reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                          iterations, EVP_sha256(), static_cast<int>(kHashBytes), out) != 1) {
        throw std::runtime_error("PKCS5_PBKDF2_HMAC(sha256) failed");
    }
    return std::string(reinterpret_cast<const char*>(out), kHashBytes);
}

std::string Format(int iterations, std::string_view salt, std::string_view hash) {
    return fmt::format("{}${}${}${}", kScheme, iterations, HexOf(salt), HexOf(hash));
}

}  // namespace

std::string HashPassword(std::string_view password, int iterations) {
    COGS_CHECK(iterations >= 1 && iterations <= kMaxPasswordIterations);
    // PKCS5_PBKDF2_HMAC takes the password's length as an int.
    COGS_CHECK(password.size() <= static_cast<size_t>(INT32_MAX));
    const std::string salt = *FromHex(RandomHex(kSaltBytes), kSaltBytes);
    return Format(iterations, salt, Derive(password, salt, iterations));
}

bool VerifyPassword(std::string_view password, std::string_view stored) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (parts.size() < 5) {
        const size_t end = stored.find('$', start);
        parts.push_back(
            stored.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    if (parts.size() != 4 || parts[0] != kScheme || password.size() > static_cast<size_t>(INT32_MAX)) {
        return false;
    }
    const std::optional<int> iterations = ParseIterations(parts[1]);
    const std::optional<std::string> salt = FromHex(parts[2], kSaltBytes);
    const std::optional<std::string> hash = FromHex(parts[3], kHashBytes);
    if (!iterations || !salt || !hash) {
        return false;
    }
    const std::string derived = Derive(password, *salt, *iterations);
    return CRYPTO_memcmp(derived.data(), hash->data(), kHashBytes) == 0;
}

std::string UnmatchablePasswordHash(int iterations) {
    COGS_CHECK(iterations >= 1 && iterations <= kMaxPasswordIterations);
    // A hash of all zeros: PBKDF2 gives it for no password we could find (2^-256).
    return Format(iterations, std::string(kSaltBytes, '\0'), std::string(kHashBytes, '\0'));
}

}  // namespace cogs
