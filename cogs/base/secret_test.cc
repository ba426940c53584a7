#include "cogs/base/secret.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

namespace cogs {
namespace {

TEST(Secret, Sha256OfKnownVectors) {
    // FIPS 180-2 test vectors.
    EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Secret, Md5OfKnownVectors) {
    // RFC 1321's test suite.
    EXPECT_EQ(Md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    EXPECT_EQ(Md5Hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
}

TEST(Secret, HmacSha256OfAKnownVector) {
    EXPECT_EQ(HmacSha256Hex("key", "The quick brown fox jumps over the lazy dog"),
              "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    EXPECT_NE(HmacSha256Hex("key", "a"), HmacSha256Hex("kez", "a"));
}

TEST(Secret, RandomHexHasTheLengthAndDiffers) {
    const std::string a = RandomHex(32);
    const std::string b = RandomHex(32);
    EXPECT_EQ(a.size(), 64u);
    EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_NE(a, b);
}

TEST(Secret, UuidsAreVersion7AndSortByTheMillisecondTheyWereMadeIn) {
    const std::regex v7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    // 2026-12-06 11:30:00.123 UTC.
    const uint64_t t = 1796556600123;
    std::set<std::string> earlier, later;
    for (int i = 0; i < 500; ++i) {
        earlier.insert(NewUuidAt(t));
        later.insert(NewUuidAt(t + 1));
    }
    ASSERT_EQ(earlier.size(), 500u);  // the random part tells ids of the same millisecond apart
    ASSERT_EQ(later.size(), 500u);
    EXPECT_LT(*earlier.rbegin(), *later.begin());
    for (const std::string& id : earlier) {
        EXPECT_TRUE(std::regex_match(id, v7)) << id;
        EXPECT_EQ(UuidV7Time(id), t) << id;
        EXPECT_EQ(id.substr(0, 13), "01a24b1e-333b") << id;  // 0x01a24b1e333b == t
    }
    const std::string now = NewUuid();
    EXPECT_TRUE(std::regex_match(now, v7)) << now;

    // Only a version-7 UUID in lowercase hex has a time.
    EXPECT_EQ(UuidV7Time("0b5e6c1a-4f7d-4a2e-9c3b-2d1e0f9a8b7c"), std::nullopt);  // version 4
    EXPECT_EQ(UuidV7Time("019af3c2-2d7b-8a2e-9c3b-2d1e0f9a8b7c"), std::nullopt);  // version 8
    EXPECT_EQ(UuidV7Time("019af3c2-2d7b-7a2e-cc3b-2d1e0f9a8b7c"), std::nullopt);  // variant 110x
    EXPECT_EQ(UuidV7Time("019AF3C2-2D7B-7A2E-9C3B-2D1E0F9A8B7C"), std::nullopt);
    EXPECT_EQ(UuidV7Time("019af3c2-2d7b-7a2e-9c3b-2d1e0f9a8b7"), std::nullopt);
    EXPECT_EQ(UuidV7Time("019af3c2x2d7b-7a2e-9c3b-2d1e0f9a8b7c"), std::nullopt);
    EXPECT_EQ(UuidV7Time("019af3c2-2d7b-7a2e-9c3b-2d1e0f9a8b7g"), std::nullopt);
    EXPECT_EQ(UuidV7Time("wf-1"), std::nullopt);
}

TEST(Secret, ConstantTimeEquals) {
    EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
    EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
    EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(Secret, Sha256HasherInPiecesEqualsTheWhole) {
    const std::string data(3 * 1000 + 7, 'x');
    Sha256Hasher h;
    h.Update(std::string_view(data).substr(0, 1000));
    h.Update(std::string_view(data).substr(1000));
    EXPECT_EQ(h.HexDigest(), Sha256Hex(data));
    Sha256Hasher empty;
    EXPECT_EQ(empty.HexDigest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace cogs
