// Child processes for cross-process tests: spawn, SIGKILL, wait.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace cogs::testing {

class Child {
public:
    Child() = default;
    // Starts argv[0] with the given arguments; stdout/stderr go to `log_path` (appended) if set.
    static Child Spawn(const std::vector<std::string>& argv, const std::string& log_path = "");
    ~Child();
    Child(Child&& o) noexcept : pid_(o.pid_), exit_status_(o.exit_status_) { o.pid_ = -1; }
    Child& operator=(Child&& o) noexcept;

    pid_t pid() const { return pid_; }
    bool Running();
    void Kill(int signal);
    // Waits for exit; returns the exit status (128+signal if killed), or -1 on timeout.
    int Wait(int timeout_ms = -1);

private:
    pid_t pid_ = -1;
    int exit_status_ = -1;
};

// The path of a sibling binary (same directory as the running one).
std::string SiblingBinary(const std::string& name);

}  // namespace cogs::testing
