// Base64 fields: binary data carried in a JSON string, as OpenStack's `user_data` is (RFC 4648
// section 4, the standard alphabet "A-Za-z0-9+/" with "=" padding).
//
// Strict: the text's length is a multiple of 4, padding only at its end (at most two "="), no
// whitespace or line breaks (a wrapped `base64` output is refused: `base64 -w0` makes one line),
// and the unused bits of the last character are zero, so that one byte string has exactly one text.
//
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/wire/input.h"

namespace cogs::wire {

// The bytes `text` encodes; nullopt unless it is strict base64 (above). "" decodes to "".
std::optional<std::string> DecodeBase64(std::string_view text);
// The base64 text of `bytes`, padded.
std::string EncodeBase64(std::string_view bytes);

// An optional base64 field of `in` (absent or null: nullopt; "" is empty data), decoded. Refused
// with kInvalidArgument naming the field: not a string ("must be a string"), not base64 ("must be
// base64 (RFC 4648, one line)"), or more than `max_decoded` bytes once decoded ("must be at most N
// bytes once decoded"). The text is checked for its length before it is decoded.
Result<std::optional<std::string>> OptionalBase64(const Input& in, std::string_view field,
                                                  size_t max_decoded);

}  // namespace cogs::wire
