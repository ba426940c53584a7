// Passwords: kept only as a salted, slow hash (PBKDF2-HMAC-SHA256), never in clear.
//
// The stored form describes itself, so that a record hashed with fewer iterations still verifies
// after the default grows:
//
//   pbkdf2-sha256$<iterations>$<salt: 16 random bytes, 32 lowercase hex>$<hash: 32 bytes, 64 hex>
//
// Cost: one hash or one verification runs `iterations` HMAC-SHA256 pairs, ~0.3 s at the default on
// this project's machines — on purpose (it is what makes a stolen store slow to brute-force). Never
// call these on a thread that must stay responsive (cogsd's io thread: Context::OffThread).
//
// Threading: stateless; any thread.
#pragma once

#include <string>
#include <string_view>

namespace cogs {

// OWASP's recommendation for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet, 2023).
inline constexpr int kPasswordIterations = 600'000;
// What a stored string may ask for: a corrupted or hostile record cannot make a verification run
// for minutes (10,000,000 is ~5 s).
inline constexpr int kMaxPasswordIterations = 10'000'000;

// The stored form of `password`, with a new random salt. `iterations` must be in
// [1, kMaxPasswordIterations] (else a fatal check: it is the caller's constant, not input).
std::string HashPassword(std::string_view password, int iterations = kPasswordIterations);

// Whether `password` is the one `stored` (HashPassword's form) was made from. The comparison takes
// the same time wherever the hashes differ; false for a malformed `stored` (another scheme, a count
// of iterations out of bounds, a salt or hash that is not lowercase hex of the right length).
bool VerifyPassword(std::string_view password, std::string_view stored);

// A well-formed stored string that no password matches, costing `iterations` to verify like a real
// one: verify against it when the user is unknown, so that the time taken does not tell which names
// exist.
std::string UnmatchablePasswordHash(int iterations = kPasswordIterations);

}  // namespace cogs
