// A container's console output kept within a bound: <path> grows up to max_bytes, then is renamed
// to <path>.1 (replacing the older one) and starts again empty. Neither file ever holds more than
// max_bytes, so the two never hold more than 2 * max_bytes, whatever the guest prints.
//
// The shim is its only writer (one thread); readers take ReadConsole's snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs::oci::internal {

class ConsoleLog {
public:
    // Opens (creating it 0640 if missing) `path` for appending; a file already larger than max_bytes
    // (a smaller bound than before) is rotated first. Errors: kInvalidArgument for max_bytes < 1,
    // kUnavailable if the file cannot be opened.
    static Result<ConsoleLog> Open(std::string path, int64_t max_bytes);

    ConsoleLog(ConsoleLog&& o) noexcept;
    ConsoleLog& operator=(ConsoleLog&& o) noexcept;
    ConsoleLog(const ConsoleLog&) = delete;
    ConsoleLog& operator=(const ConsoleLog&) = delete;
    ~ConsoleLog();

    // Appends `data`, rotating whenever the file would pass the bound (a write larger than the bound
    // is cut over several rotations: only its last max_bytes to 2 * max_bytes survive). A write that
    // fails (disk full) drops its bytes and is counted: the console never stops the container.
    void Write(std::string_view data);

    int64_t size() const { return size_; }
    int64_t dropped_bytes() const { return dropped_; }

private:
    ConsoleLog(std::string path, int64_t max_bytes, int fd, int64_t size)
        : path_(std::move(path)), max_bytes_(max_bytes), fd_(fd), size_(size) {}
    void Rotate();

    std::string path_;
    int64_t max_bytes_ = 0;
    int fd_ = -1;
    int64_t size_ = 0;
    int64_t dropped_ = 0;
};

// The last `max_bytes` of <path>.1 followed by <path> ("" if neither exists). A snapshot taken while
// the shim writes may miss or repeat the chunk written across a rotation.
std::string ReadConsole(const std::string& path, int64_t max_bytes);

}  // namespace cogs::oci::internal
