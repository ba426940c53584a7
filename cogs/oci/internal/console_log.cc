#include "cogs/oci/internal/console_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "cogs/runtime/files.h"

namespace cogs::oci::internal {
namespace {

int OpenAppend(const std::string& path, bool truncate) {
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
}

}  // namespace

Result<ConsoleLog> ConsoleLog::Open(std::string path, int64_t max_bytes) {
    if (max_bytes < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "console log: max_bytes must be >= 1");
    }
    const int fd = OpenAppend(path, false);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        const std::string why = std::strerror(errno);
        if (fd >= 0) {
            ::close(fd);
        }
        return MakeError(ErrorCode::kUnavailable, fmt::format("console log {}: {}", path, why));
    }
    ConsoleLog log(std::move(path), max_bytes, fd, st.st_size);
    if (log.size_ > max_bytes) {
        log.Rotate();
    }
    return log;
}

ConsoleLog::ConsoleLog(ConsoleLog&& o) noexcept
    : path_(std::move(o.path_)),
      max_bytes_(o.max_bytes_),
      fd_(std::exchange(o.fd_, -1)),
      size_(o.size_),
      dropped_(o.dropped_) {}

ConsoleLog& ConsoleLog::operator=(ConsoleLog&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        path_ = std::move(o.path_);
        max_bytes_ = o.max_bytes_;
        fd_ = std::exchange(o.fd_, -1);
        size_ = o.size_;
        dropped_ = o.dropped_;
    }
    return *this;
}

ConsoleLog::~ConsoleLog() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

void ConsoleLog::Rotate() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    // If the rename fails, the file is emptied in place instead: the bound holds either way.
    const bool renamed = ::rename(path_.c_str(), (path_ + ".1").c_str()) == 0;
    fd_ = OpenAppend(path_, !renamed);
    size_ = 0;
}

void ConsoleLog::Write(std::string_view data) {
    while (!data.empty()) {
        if (size_ >= max_bytes_) {
            Rotate();
        }
        if (fd_ < 0) {
            fd_ = OpenAppend(path_, false);  // a failed reopen is retried at the next write
            if (fd_ < 0) {
                dropped_ += static_cast<int64_t>(data.size());
                return;
            }
        }
        const size_t room = static_cast<size_t>(max_bytes_ - size_);
        const size_t chunk = std::min(room, data.size());
        const ssize_t n = ::write(fd_, data.data(), chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            dropped_ += static_cast<int64_t>(data.size());
            return;
        }
        size_ += n;
        data.remove_prefix(static_cast<size_t>(n));
    }
}

std::string ReadConsole(const std::string& path, int64_t max_bytes) {
    std::string text;
    if (auto older = runtime::ReadFile(path + ".1")) {
        text = std::move(*older);
    }
    if (auto current = runtime::ReadFile(path)) {
        text += *current;
    }
    if (max_bytes >= 0 && static_cast<int64_t>(text.size()) > max_bytes) {
        text.erase(0, text.size() - static_cast<size_t>(max_bytes));
    }
    return text;
}

}  // namespace cogs::oci::internal
