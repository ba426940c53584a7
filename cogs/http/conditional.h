// Conditional requests (RFC 9110 §13.1.2): the entity tag of a body and the If-None-Match test,
// for any handler that lets clients revalidate what they hold (cogsd's /v1 reads, the web console's
// files).
#pragma once

#include <string>
#include <string_view>

namespace cogs::http {

// A strong entity tag of `content`: "\"<16 hex digits>\"", FNV-1a 64, so the same content has the
// same tag in every process of every version.
std::string EntityTag(std::string_view content);

// Whether an If-None-Match value ("*" or a comma-separated list of tags, weak "W/" or strong)
// names `tag`, compared weakly.
bool NoneMatchHits(std::string_view if_none_match, std::string_view tag);

}  // namespace cogs::http
