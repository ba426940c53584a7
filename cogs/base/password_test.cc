#include "cogs/base/password.h"

#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>

namespace cogs {
namespace {

// Few iterations: the tests check the scheme, not its cost.
constexpr int kFast = 1000;

TEST(Password, ARoundTripVerifiesAndAWrongPasswordDoesNot) {
    const std::string stored = HashPassword("correct horse battery staple", kFast);
    EXPECT_TRUE(std::regex_match(stored, std::regex(R"(pbkdf2-sha256\$1000\$[0-9a-f]{32}\$[0-9a-f]{64})")))
        << stored;
    EXPECT_EQ(stored.find("correct"), std::string::npos);
    EXPECT_TRUE(VerifyPassword("correct horse battery staple", stored));
    EXPECT_FALSE(VerifyPassword("correct horse battery stapl", stored));
    EXPECT_FALSE(VerifyPassword("correct horse battery staple ", stored));
    EXPECT_FALSE(VerifyPassword("", stored));

    const std::string empty = HashPassword("", kFast);
    EXPECT_TRUE(VerifyPassword("", empty));
    EXPECT_FALSE(VerifyPassword("x", empty));
}

// The stored form is PBKDF2-HMAC-SHA256 as everyone computes it (this vector is Python's
// hashlib.pbkdf2_hmac("sha256", b"correct horse battery staple", bytes(range(16)), 1000)).
TEST(Password, VerifiesAHashMadeElsewhere) {
    const std::string stored =
        "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$"
        "a69b179e3add3c1e0aaf227a0eb3aa2aa8645ab86fecf6ca00c17512697c719e";
    EXPECT_TRUE(VerifyPassword("correct horse battery staple", stored));
    EXPECT_FALSE(VerifyPassword("Correct horse battery staple", stored));
}

TEST(Password, TwoHashesOfOnePasswordDifferByTheirSalt) {
    const std::string a = HashPassword("hunter22", kFast);
    const std::string b = HashPassword("hunter22", kFast);
    EXPECT_NE(a, b);
    EXPECT_NE(a.substr(0, a.rfind('$')), b.substr(0, b.rfind('$')));  // the salts differ
    EXPECT_TRUE(VerifyPassword("hunter22", a));
    EXPECT_TRUE(VerifyPassword("hunter22", b));
}

TEST(Password, TheIterationsAreHonouredAndPartOfTheHash) {
    EXPECT_TRUE(HashPassword("pw", 1).starts_with("pbkdf2-sha256$1$"));
    EXPECT_TRUE(HashPassword("pw").starts_with("pbkdf2-sha256$600000$"));
    // The count is what the hash was made with: the same salt and hash with another count fail.
    const std::string stored = HashPassword("hunter22", kFast);
    std::string other = stored;
    other.replace(other.find("$1000$"), 6, "$1001$");
    EXPECT_FALSE(VerifyPassword("hunter22", other));
    EXPECT_TRUE(VerifyPassword("pw", HashPassword("pw", 1)));
}

TEST(Password, MalformedStoredStringsAreFalse) {
    const std::string salt = "000102030405060708090a0b0c0d0e0f";
    const std::string hash = "a69b179e3add3c1e0aaf227a0eb3aa2aa8645ab86fecf6ca00c17512697c719e";
    const std::string pw = "correct horse battery staple";
    ASSERT_TRUE(VerifyPassword(pw, "pbkdf2-sha256$1000$" + salt + "$" + hash));
    for (const std::string& bad : {
             std::string(),
             std::string("$$$"),
             "pbkdf2-sha256$1000$" + salt,                     // no hash
             "pbkdf2-sha256$1000$" + salt + "$" + hash + "$",  // a fifth part
             "pbkdf2-sha1$1000$" + salt + "$" + hash,          // another scheme
             "PBKDF2-SHA256$1000$" + salt + "$" + hash,        // (names are exact)
             "pbkdf2-sha256$$" + salt + "$" + hash,            // no count
             "pbkdf2-sha256$0$" + salt + "$" + hash,           // out of bounds
             "pbkdf2-sha256$01000$" + salt + "$" + hash,       // not canonical
             "pbkdf2-sha256$-1000$" + salt + "$" + hash,       // signs, exponents
             "pbkdf2-sha256$+1000$" + salt + "$" + hash,
             "pbkdf2-sha256$1e3$" + salt + "$" + hash,
             "pbkdf2-sha256$10000001$" + salt + "$" + hash,    // beyond kMaxPasswordIterations
             "pbkdf2-sha256$4294968296$" + salt + "$" + hash,  // would wrap an int
             "pbkdf2-sha256$99999999999999999999$" + salt + "$" + hash,
             "pbkdf2-sha256$1000$" + salt.substr(2) + "$" + hash,            // a short salt
             "pbkdf2-sha256$1000$" + salt + "00$" + hash,                    // a long one
             "pbkdf2-sha256$1000$" + salt + "$" + hash.substr(2),            // a short hash
             "pbkdf2-sha256$1000$" + salt + "$" + hash + "00",               // a long one
             "pbkdf2-sha256$1000$000102030405060708090A0B0C0D0E0F$" + hash,  // upper case
             "pbkdf2-sha256$1000$" + salt + "$" + std::string(64, 'g'),      // not hex
             "pbkdf2-sha256$1000$" + salt + "$" + hash.substr(0, 63) + " ",
         }) {
        EXPECT_FALSE(VerifyPassword(pw, bad)) << bad;
    }
    // A count out of bounds is refused before any work: this returns at once, not after ~20 s.
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(VerifyPassword(pw, "pbkdf2-sha256$99999999$" + salt + "$" + hash));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(Password, TheUnmatchableHashIsWellFormedAndMatchesNothing) {
    const std::string dummy = UnmatchablePasswordHash(kFast);
    EXPECT_TRUE(std::regex_match(dummy, std::regex(R"(pbkdf2-sha256\$1000\$0{32}\$0{64})"))) << dummy;
    for (const std::string& pw : {std::string(), std::string("password"), std::string(1, '\0')}) {
        EXPECT_FALSE(VerifyPassword(pw, dummy)) << pw;
    }
    EXPECT_TRUE(UnmatchablePasswordHash().starts_with("pbkdf2-sha256$600000$"));
}

}  // namespace
}  // namespace cogs
