// Secrets: tokens are made from the kernel's random source and stored only as their SHA-256.
#pragma once

#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs {

// The SHA-256 of `data` as 64 lowercase hex characters.
std::string Sha256Hex(std::string_view data);

// The SHA-256 of data given in pieces (a file read in chunks): Update as often as needed, then
// HexDigest once.
class Sha256Hasher {
public:
    Sha256Hasher();
    ~Sha256Hasher();
    Sha256Hasher(const Sha256Hasher&) = delete;
    Sha256Hasher& operator=(const Sha256Hasher&) = delete;

    void Update(std::string_view data);
    // The digest of everything given, as 64 lowercase hex characters; the hasher is spent after.
    std::string HexDigest();

private:
    void* ctx_;  // an EVP_MD_CTX (OpenSSL stays in secret.cc)
};

// HMAC-SHA256 of `data` under `key`, as 64 lowercase hex characters.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// `bytes` random bytes from getrandom(2), as 2*bytes lowercase hex characters.
std::string RandomHex(size_t bytes);

// A random UUID (version 4), e.g. "0b5e6c1a-4f7d-4a2e-9c3b-2d1e0f9a8b7c".
std::string NewUuid();

// Compares two strings in time that depends only on their lengths (for secrets and their hashes).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace cogs
