#include "cogs/base/paths.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace cogs::base {

std::string FindProjectPath(const std::string& relative) {
    namespace fs = std::filesystem;
    std::error_code ec;
    std::vector<fs::path> candidates = {fs::current_path(ec) / relative};
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        candidates.push_back(exe.parent_path() / ".." / ".." / relative);
    }
    candidates.push_back(fs::path("/usr/share/cogs") / relative);
    for (const auto& c : candidates) {
        if (fs::exists(c, ec)) {
            return fs::weakly_canonical(c, ec).string();
        }
    }
    return "";
}

long ResidentKib() {
    std::ifstream in("/proc/self/statm");
    long size = 0, resident = 0;
    in >> size >> resident;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace cogs::base
