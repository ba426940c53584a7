// Secrets: tokens are made from the kernel's random source and stored only as their SHA-256.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs {

// The SHA-256 of `data` as 64 lowercase hex characters.
std::string Sha256Hex(std::string_view data);

// The MD5 of `data` as 32 lowercase hex characters. Not for secrets (MD5 is broken for that): for
// the fingerprints others define with it, such as an SSH key pair's in Nova's API.
std::string Md5Hex(std::string_view data);

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

// `bytes` as 2*size lowercase hex characters.
std::string HexOf(std::string_view bytes);

// `bytes` random bytes from getrandom(2), as 2*bytes lowercase hex characters.
std::string RandomHex(size_t bytes);

// A new UUID, version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random bits, e.g.
// "019af3c2-5b1e-7a2e-9c3b-2d1e0f9a8b7c". Ids made close in time sort close together, so the
// stores' B-trees keyed by id take a batch's inserts on a few pages at their right edge instead of
// one random page each (decision 42). Unique, not secret: a secret is RandomHex.
std::string NewUuid();
// The same, made at `unix_ms`.
std::string NewUuidAt(uint64_t unix_ms);
// The milliseconds of a version-7 UUID in lowercase hex; nullopt for anything else.
std::optional<uint64_t> UuidV7Time(std::string_view id);

// Compares two strings in time that depends only on their lengths (for secrets and their hashes).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace cogs
