#include "cogs/wire/base64.h"

#include <gtest/gtest.h>

namespace cogs::wire {
namespace {

TEST(WireBase64, DecodesWhatItEncodesAndTheRfcVectors) {
    // RFC 4648 section 10.
    const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                           {"f", "Zg=="},
                                                           {"fo", "Zm8="},
                                                           {"foo", "Zm9v"},
                                                           {"foob", "Zm9vYg=="},
                                                           {"fooba", "Zm9vYmE="},
                                                           {"foobar", "Zm9vYmFy"}};
    for (auto [plain, encoded] : vectors) {
        EXPECT_EQ(EncodeBase64(plain), encoded);
        EXPECT_EQ(DecodeBase64(encoded), std::optional<std::string>(plain)) << encoded;
    }
    std::string all;
    for (int c = 0; c < 256; ++c) {
        all.push_back(static_cast<char>(c));
    }
    EXPECT_EQ(DecodeBase64(EncodeBase64(all)), all);
}

TEST(WireBase64, RefusesWhatIsNotStrictBase64) {
    for (const char* bad :
         {"Zg", "Zg=", "Z===", "Zm9v\n", "Zm 9v", "Zm=v", "Zh==", "Zm9-", "====", "Zm9vYg==Zg=="}) {
        EXPECT_EQ(DecodeBase64(bad), std::nullopt) << bad;
    }
}

TEST(WireBase64, OptionalBase64NamesTheFieldAndChecksTheDecodedSize) {
    auto in = Input::Parse(R"({"ok":"aGk=","empty":"","bad":"hi!","num":3,"big":"YWFhYQ=="})",
                           {"ok", "empty", "bad", "num", "big"});
    ASSERT_TRUE(in);
    EXPECT_EQ(*OptionalBase64(*in, "ok", 4), std::optional<std::string>("hi"));
    EXPECT_EQ(*OptionalBase64(*in, "empty", 4), std::optional<std::string>(""));
    EXPECT_EQ(*OptionalBase64(*in, "absent", 4), std::nullopt);
    EXPECT_EQ(*OptionalBase64(*in, "big", 4), std::optional<std::string>("aaaa"));
    auto big = OptionalBase64(*in, "big", 3);
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().message, "big: must be at most 3 bytes once decoded");
    auto bad = OptionalBase64(*in, "bad", 4);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message, "bad: must be base64 (RFC 4648, one line)");
    auto num = OptionalBase64(*in, "num", 4);
    ASSERT_FALSE(num);
    EXPECT_EQ(num.error().message, "num: must be a string");
}

}  // namespace
}  // namespace cogs::wire
