// Child processes for cross-process tests: the interface cogs-chaos was written against, now a thin
// layer over cogs/runtime/process.h (which `cogs dev` uses too). Behaviour is unchanged: children
// stay in the test's process group (a Ctrl-C stops the whole run), spawn failures show up as an
// exit status of 127, and a live child is SIGKILLed and reaped when its Child goes away.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "cogs/runtime/process.h"

namespace cogs::testing {

class Child {
public:
    Child() = default;
    // Starts argv[0] with the given arguments; stdout/stderr go to `log_path` (appended) if set.
    static Child Spawn(const std::vector<std::string>& argv, const std::string& log_path = "");

    pid_t pid() const { return child_.pid(); }
    bool Running() { return child_.Running(); }
    void Kill(int signal) { child_.Signal(signal); }
    // Waits for exit; returns the exit status (128+signal if killed), or -1 on timeout.
    int Wait(int timeout_ms = -1);

private:
    runtime::Child child_;
    bool spawn_failed_ = false;
};

using runtime::SiblingBinary;

}  // namespace cogs::testing
