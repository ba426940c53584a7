#include "cogs/oci/internal/layout.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cogs/runtime/files.h"

namespace cogs::oci::internal {
namespace {

std::string Trim(std::string_view s) {
    const size_t first = s.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        return "";
    }
    return std::string(s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1));
}

template <typename T>
std::optional<T> ParseNumber(std::string_view s) {
    T v{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
        return std::nullopt;
    }
    return v;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            const std::string_view oct = s.substr(i + 1, 3);
            if (std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
                out += static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0'));
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

struct MountEntry {
    std::string root;
    std::string mount_point;
    std::string fs_type;
};

// /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
std::vector<MountEntry> ReadMountInfo() {
    std::vector<MountEntry> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, point, options, word;
        if (!(fields >> id >> parent >> dev >> root >> point >> options)) {
            continue;
        }
        while (fields >> word && word != "-") {
        }
        std::string fs_type;
        fields >> fs_type;
        out.push_back({Unescape(root), Unescape(point), fs_type});
    }
    return out;
}

}  // namespace

std::string PathIn(const std::string& dir, std::string_view name) { return dir + "/" + std::string(name); }

std::optional<int> ReadExitStatus(const std::string& dir) {
    auto text = runtime::ReadFile(PathIn(dir, kExitFile));
    if (!text) {
        return text.error().code == ErrorCode::kNotFound ? std::nullopt : std::optional<int>(-1);
    }
    return ParseNumber<int>(Trim(*text)).value_or(-1);
}

std::optional<pid_t> LiveShim(const std::string& dir) {
    const std::string path = PathIn(dir, kShimPidFile);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    // A shared probe: it conflicts with the shim's exclusive lock only, never with other probes.
    const bool locked = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (!locked) {
        return std::nullopt;
    }
    auto text = runtime::ReadFile(path);
    const auto pid = text ? ParseNumber<pid_t>(Trim(*text)) : std::nullopt;
    // Locked but unreadable: the shim is alive; 0 says "alive, pid unknown" and is never signalled.
    return pid.value_or(0);
}

std::optional<ProcessId> IdentifyProcess(pid_t pid) {
    if (pid <= 0) {
        return std::nullopt;
    }
    auto stat = runtime::ReadFile("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) {
        return std::nullopt;
    }
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so fields count from the
    // last ')'. STATE is field 3, start time field 22.
    const size_t close = stat->rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(stat->substr(close + 1));
    std::string field;
    std::vector<std::string> rest;
    while (fields >> field) {
        rest.push_back(field);
    }
    if (rest.size() < 20 || rest[0] == "Z" || rest[0] == "X") {
        return std::nullopt;
    }
    const auto ticks = ParseNumber<uint64_t>(rest[19]);
    if (!ticks) {
        return std::nullopt;
    }
    return ProcessId{pid, *ticks};
}

bool ProcessAlive(const ProcessId& id) {
    const auto now = IdentifyProcess(id.pid);
    return now && now->start_ticks == id.start_ticks;
}

std::string FormatProcessId(const ProcessId& id) {
    return std::to_string(id.pid) + " " + std::to_string(id.start_ticks) + "\n";
}

std::optional<ProcessId> ParseProcessId(std::string_view text) {
    const std::string t = Trim(text);
    const size_t space = t.find(' ');
    if (space == std::string::npos) {
        return std::nullopt;
    }
    const auto pid = ParseNumber<pid_t>(std::string_view(t).substr(0, space));
    const auto ticks = ParseNumber<uint64_t>(std::string_view(t).substr(space + 1));
    if (!pid || !ticks || *pid <= 0) {
        return std::nullopt;
    }
    return ProcessId{*pid, *ticks};
}

std::vector<std::string> MountsUnder(const std::string& dir) {
    std::string prefix = std::filesystem::path(dir).lexically_normal().string();
    while (prefix.size() > 1 && prefix.back() == '/') {
        prefix.pop_back();
    }
    std::vector<std::string> out;
    for (const MountEntry& m : ReadMountInfo()) {
        if (m.mount_point == prefix || m.mount_point.starts_with(prefix + "/")) {
            out.push_back(m.mount_point);
        }
    }
    // Deeper first; of equal paths (a mount stacked on another) the later one first, as the table
    // lists them in mount order.
    std::reverse(out.begin(), out.end());
    std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
        return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
    });
    return out;
}

std::vector<CgroupMount> CgroupMounts() {
    std::vector<CgroupMount> out;
    for (const MountEntry& m : ReadMountInfo()) {
        if (m.fs_type == "cgroup" || m.fs_type == "cgroup2") {
            out.push_back({m.mount_point, m.root});
        }
    }
    return out;
}

std::vector<std::string> CgroupDirs(const std::string& path) {
    std::vector<std::string> out;
    for (const CgroupMount& m : CgroupMounts()) {
        std::string relative;
        if (m.root == "/") {
            relative = path;
        } else if (path.starts_with(m.root + "/")) {
            relative = path.substr(m.root.size());
        } else {
            continue;
        }
        const std::string dir = m.mount_point + relative;
        std::error_code ec;
        if (std::filesystem::is_directory(dir, ec)) {
            out.push_back(dir);
        }
    }
    return out;
}

}  // namespace cogs::oci::internal
