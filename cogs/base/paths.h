// Locating files shipped with the project (workflow definitions) from any working directory.
#pragma once

#include <string>

namespace cogs::base {

// `relative` (e.g. "workflows") found under the working directory, else beside the running binary's
// build tree (<exe dir>/../../relative), else under /usr/share/cogs. Returns "" if none exists.
std::string FindProjectPath(const std::string& relative);

// Resident set size of this process in KiB (from /proc/self/statm).
long ResidentKib();

}  // namespace cogs::base
