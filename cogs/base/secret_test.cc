#include "cogs/base/secret.h"

#include <gtest/gtest.h>

namespace cogs {
namespace {

TEST(Secret, Sha256OfKnownVectors) {
    // FIPS 180-2 test vectors.
    EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
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
