// The built-in image `cogs dev` registers at start: "busybox", a root filesystem of Debian's
// busybox-static (/bin/busybox and its shell), so that a local cloud has an image with real content
// from its first minute. Internal to cogs/cli.
#pragma once

#include <ostream>
#include <string>

#include "cogs/cli/internal/api.h"

namespace cogs::cli {

// The path of busybox-static's binary this machine has ("" if none).
std::string FindBusybox();

// Writes a gzip'd tar of a root filesystem made of `busybox` (bin/busybox, bin/sh -> busybox) to
// `archive`, working in `work_dir` (made if missing). An error message if tar fails.
tl::expected<void, std::string> MakeBusyboxRootfs(const std::string& busybox, const std::string& work_dir,
                                                  const std::string& archive);

// Makes sure the image "busybox" exists with content: created if missing, its archive uploaded
// while it has none (an image that already has content is left as it is: images are immutable).
// Progress and problems go to `err`; false only when the API refused or could not be reached. A
// machine without busybox-static is not an error: it says so and registers nothing.
bool RegisterBusyboxImage(ApiClient& api, const std::string& work_dir, std::ostream& err);

}  // namespace cogs::cli
