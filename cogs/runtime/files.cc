#include "cogs/runtime/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "cogs/base/secret.h"

namespace cogs::runtime {

Result<std::string> ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (errno == ENOENT) {
            return MakeError(ErrorCode::kNotFound, fmt::format("{}: no such file", path));
        }
        return MakeError(ErrorCode::kUnavailable, fmt::format("{}: {}", path, std::strerror(errno)));
    }
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("{}: read failed", path));
    }
    return s.str();
}

Status WriteFileAtomic(const std::string& path, const std::string& content, unsigned mode) {
    // A unique temporary name: two writers must not interleave their bytes in one temporary file.
    const std::string tmp = path + ".tmp." + RandomHex(4);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("{}: {}", tmp, std::strerror(errno)));
    }
    // open(2) applies the umask; the caller asked for exactly `mode` (e.g. 0600 for a secret).
    ::fchmod(fd, mode);
    size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            const std::string why = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            return MakeError(ErrorCode::kUnavailable, fmt::format("{}: {}", tmp, why));
        }
        done += static_cast<size_t>(n);
    }
    // Synced before the rename: after a crash the name points at the whole content or the old one.
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        return MakeError(ErrorCode::kUnavailable, fmt::format("{}: {}", path, why));
    }
    return Ok();
}

std::string TailFile(const std::string& path, int lines) {
    std::ifstream in(path);
    std::deque<std::string> last;
    for (std::string line; std::getline(in, line);) {
        last.push_back(std::move(line));
        if (static_cast<int>(last.size()) > lines) {
            last.pop_front();
        }
    }
    std::string out;
    for (const auto& l : last) {
        out += l;
        out += '\n';
    }
    return out;
}

Result<std::string> ReadTokenFile(const std::string& path) {
    auto text = ReadFile(path);
    if (!text) {
        return MakeError(text.error());
    }
    const auto first = text->find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument, "token file " + path + " is empty");
    }
    return text->substr(first, text->find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace cogs::runtime
