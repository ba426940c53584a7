// Small file helpers for processes that hand files to each other: port files, token files, state
// summaries (`cogs dev`'s dev.json). Writers replace a file atomically, so a reader polling for it
// sees either nothing or the whole content, never a half-written file.
//
// Threading: stateless; safe from any thread (two writers of the same path race like rename(2) does:
// the last rename wins).
#pragma once

#include <string>

#include "cogs/base/result.h"

namespace cogs::runtime {

// The whole content of `path`. Errors: kNotFound if it does not exist, kUnavailable if unreadable.
Result<std::string> ReadFile(const std::string& path);

// A secret (a token) stored alone in a file: its content without surrounding whitespace.
// Errors: kNotFound / kUnavailable as ReadFile; kInvalidArgument if the file holds only whitespace.
Result<std::string> ReadTokenFile(const std::string& path);

// Writes `content` to `path` atomically: a temporary file beside it with permissions `mode`, synced,
// then renamed over `path`. The parent directory must exist. Errors: kUnavailable.
Status WriteFileAtomic(const std::string& path, const std::string& content, unsigned mode = 0644);

// The last `lines` lines of `path` ("" if it does not exist), for showing why a child failed.
std::string TailFile(const std::string& path, int lines);

}  // namespace cogs::runtime
