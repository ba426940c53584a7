#include "cogs/wire/base64.h"

#include <array>

namespace cogs::wire {
namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> Values() {
    std::array<int8_t, 256> v{};
    for (auto& x : v) {
        x = -1;
    }
    for (size_t i = 0; i < kAlphabet.size(); ++i) {
        v[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
    }
    return v;
}
constexpr std::array<int8_t, 256> kValues = Values();

}  // namespace

std::optional<std::string> DecodeBase64(std::string_view text) {
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    size_t pad = 0;
    while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') {
        ++pad;
    }
    std::string out;
    out.reserve(text.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < text.size() - pad; ++i) {
        const int8_t v = kValues[static_cast<unsigned char>(text[i])];
        if (v < 0) {
            return std::nullopt;  // "=" inside, whitespace, or a character outside the alphabet
        }
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    // What is left must be the unused low bits of the last character, all zero.
    if ((acc & ((1u << bits) - 1)) != 0) {
        return std::nullopt;
    }
    return out;
}

std::string EncodeBase64(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                           (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                           static_cast<unsigned char>(bytes[i + 2]);
        for (int shift : {18, 12, 6, 0}) {
            out.push_back(kAlphabet[(n >> shift) & 63]);
        }
    }
    if (const size_t rest = bytes.size() - i; rest > 0) {
        uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) {
            n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        }
        out.push_back(kAlphabet[(n >> 18) & 63]);
        out.push_back(kAlphabet[(n >> 12) & 63]);
        out.push_back(rest == 2 ? kAlphabet[(n >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

Result<std::optional<std::string>> OptionalBase64(const Input& in, std::string_view field,
                                                  size_t max_decoded) {
    const json::value* v = in.Find(field);
    if (v == nullptr) {
        return std::optional<std::string>();
    }
    if (!v->is_string()) {
        return MakeError(in.Invalid(field, "must be a string"));
    }
    const std::string_view text = v->get_string();
    const auto too_big = [&] {
        return MakeError(
            in.Invalid(field, "must be at most " + std::to_string(max_decoded) + " bytes once decoded"));
    };
    if (text.size() / 4 * 3 > max_decoded + 2) {
        return too_big();  // before decoding: a huge text costs nothing
    }
    auto bytes = DecodeBase64(text);
    if (!bytes) {
        return MakeError(in.Invalid(field, "must be base64 (RFC 4648, one line)"));
    }
    if (bytes->size() > max_decoded) {
        return too_big();
    }
    return std::optional<std::string>(std::move(*bytes));
}

}  // namespace cogs::wire
