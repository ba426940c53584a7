#include "cogs/oci/lease_file.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "cogs/runtime/files.h"

namespace cogs::oci {
namespace {

constexpr std::string_view kTag = "cogs-lease";

// This boot's id, read once per process (it cannot change while the process lives).
const std::string& BootId() {
    static const std::string id = [] {
        auto text = runtime::ReadFile("/proc/sys/kernel/random/boot_id");
        std::string s = text ? *text : std::string();
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
            s.pop_back();
        }
        return s;
    }();
    return id;
}

}  // namespace

Duration BootTimeNow() {
    timespec ts{};
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

Status WriteLeaseFile(const std::string& path, Duration end) {
    if (BootId().empty()) {
        return MakeError(ErrorCode::kUnavailable, "lease file " + path + ": this boot's id is unreadable");
    }
    const std::string line = fmt::format("{} {} {}\n", kTag, BootId(), end.count());
    // No fsync (runtime::WriteFileAtomic syncs): an agent pets every second, and the file is void
    // after a reboot anyway. The temporary name is the writer's: one writer per host.
    const std::string tmp = fmt::format("{}.{}.tmp", path, ::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("lease file {}: {}", tmp, std::strerror(errno)));
    }
    const ssize_t n = ::write(fd, line.data(), line.size());
    const int write_errno = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(line.size()) || ::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(n < 0 ? write_errno : errno);
        ::unlink(tmp.c_str());
        return MakeError(ErrorCode::kUnavailable, fmt::format("lease file {}: {}", path, why));
    }
    return Ok();
}

Result<Duration> ReadLeaseFile(const std::string& path) {
    COGS_ASSIGN_OR_RETURN(const std::string text, runtime::ReadFile(path));
    auto invalid = [&](std::string_view why) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("lease file {}: {}", path, why));
    };
    // "cogs-lease <boot id> <end ns>\n"
    std::string_view s = text;
    if (!s.starts_with(kTag) || s.size() <= kTag.size() || s[kTag.size()] != ' ') {
        return invalid("not a lease file");
    }
    s.remove_prefix(kTag.size() + 1);
    const size_t space = s.find(' ');
    if (space == std::string_view::npos) {
        return invalid("not a lease file");
    }
    if (BootId().empty() || s.substr(0, space) != BootId()) {
        return invalid("written before the last boot");
    }
    s.remove_prefix(space + 1);
    int64_t ns = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), ns);
    if (ec != std::errc() || end == s.data() || std::string_view(end, s.data() + s.size() - end) != "\n") {
        return invalid("not a lease file");
    }
    return Duration(ns);
}

}  // namespace cogs::oci
