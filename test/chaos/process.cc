#include "test/chaos/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace cogs::testing {

Child Child::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
    Child c;
    c.pid_ = ::fork();
    if (c.pid_ == 0) {
        if (!log_path.empty()) {
            int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
                ::close(fd);
            }
        }
        std::vector<char*> args;
        for (const auto& a : argv) {
            args.push_back(const_cast<char*>(a.c_str()));
        }
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    return c;
}

Child::~Child() {
    if (pid_ > 0 && Running()) {
        Kill(SIGKILL);
        Wait();
    }
}

Child& Child::operator=(Child&& o) noexcept {
    if (this != &o) {
        if (pid_ > 0 && Running()) {
            Kill(SIGKILL);
            Wait();
        }
        pid_ = o.pid_;
        exit_status_ = o.exit_status_;
        o.pid_ = -1;
    }
    return *this;
}

bool Child::Running() {
    if (pid_ <= 0) {
        return false;
    }
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == 0) {
        return true;
    }
    if (r == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    pid_ = -1;
    return false;
}

void Child::Kill(int signal) {
    if (pid_ > 0) {
        ::kill(pid_, signal);
    }
}

int Child::Wait(int timeout_ms) {
    if (pid_ <= 0) {
        return exit_status_;
    }
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid_) {
            pid_ = -1;
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return exit_status_;
        }
        if (r < 0) {
            pid_ = -1;
            return -1;
        }
        if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(timeout_ms)) {
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

std::string SiblingBinary(const std::string& name) {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return (exe.parent_path() / name).string();
}

}  // namespace cogs::testing
