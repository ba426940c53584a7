// Child processes: spawn, signal, wait, find sibling binaries, wait for a server's port file.
//
// Used by `cogs dev` (a supervisor of the cogs services) and by the cross-process tests. A child's
// stdout and stderr are appended to a log file, its stdin is /dev/null, and by default it gets its
// own process group: a Ctrl-C typed in the terminal then reaches only the supervisor, which stops
// its children in the order it chooses instead of all of them dying at once.
//
// Threading: a Child is a plain value owned by one thread; none of its methods may be called
// concurrently. Spawning is safe from a multi-threaded process (posix_spawn: nothing but exec runs
// in the child). Waiting reaps the child with waitpid(2), so a process that uses Child must not
// reap its children any other way (no SIGCHLD handler that calls wait, no SIG_IGN for SIGCHLD).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::runtime {

struct SpawnOptions {
    // stdout and stderr are appended to this file (created 0644 if missing); "" keeps the parent's.
    std::string log_path{};
    // With log_path: stderr goes to this file instead (created 0644 if missing), stdout alone to
    // log_path.
    std::string stderr_path{};
    // Or (when >= 0, and log_path is "") stdout and stderr go to this descriptor of the caller's (a
    // pipe it reads); the caller keeps it.
    int output_fd = -1;
    // Put the child in a new process group (its pid is the group id), away from the terminal's
    // foreground group, so terminal signals (Ctrl-C, Ctrl-\) do not reach it.
    bool new_process_group = true;
    // Extra environment entries "NAME=value" added to (or replacing in) the parent's environment.
    std::vector<std::string> env{};
};

// Exit status convention: the exit code for a normal exit, 128 + signal number if killed by a signal
// (as a shell reports it).
class Child {
public:
    Child() = default;

    // Starts argv[0] (a path; not looked up in PATH) with argv as its arguments. The child starts
    // with default dispositions for SIGINT, SIGTERM, SIGPIPE and SIGCHLD and an empty signal mask,
    // whatever the parent's are.
    // Errors: kInvalidArgument for an empty argv; kNotFound if argv[0] does not exist or cannot be
    // executed; kUnavailable if the log file cannot be opened or the fork fails.
    static Result<Child> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

    // A live child is killed with SIGKILL and reaped when its Child is destroyed or assigned over:
    // no orphans and no zombies are left behind by accident. Use Release() to let it live.
    ~Child();
    Child(Child&& o) noexcept;
    Child& operator=(Child&& o) noexcept;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    // The child's pid while it has not been reaped; -1 after (or for a default-constructed Child).
    pid_t pid() const { return pid_; }
    // Whether the child has not exited yet (reaps it if it has; its status is then exit_status()).
    bool Running();
    // Sends `signal` to the child (not to its group). No-op once it has been reaped.
    void Signal(int signal);
    // Waits up to `timeout` for the child to exit; returns its exit status, or nullopt if it still
    // runs at the deadline. A child already reaped answers its status at once.
    std::optional<int> Wait(Duration timeout);
    // Waits without a deadline.
    int Wait();
    // SIGTERM, up to `grace` for it to exit, then SIGKILL; returns the exit status.
    int Stop(Duration grace);
    // The exit status once reaped, else nullopt.
    std::optional<int> exit_status() const { return exit_status_; }
    // Forgets the child without killing it (it is no longer reaped by this object).
    pid_t Release();

private:
    explicit Child(pid_t pid) : pid_(pid) {}
    void Reaped(int wait_status);

    pid_t pid_ = -1;
    std::optional<int> exit_status_{};
};

// The path of a binary beside the running one (same directory as /proc/self/exe), whether or not it
// exists.
std::string SiblingBinary(const std::string& name);

// What a command run to its end said: its exit status (as Child's) and its stdout and stderr,
// interleaved as written (the last RunOptions::max_output bytes of them), or apart.
struct CommandOutput {
    int exit_status = 0;
    std::string output;  // stdout and stderr, or stdout alone with RunOptions::separate_stderr
    std::string errors;  // stderr with RunOptions::separate_stderr (its last max_output bytes)
};

struct RunOptions {
    std::vector<std::string> env{};  // as SpawnOptions::env
    size_t max_output = 64 * 1024;   // what is kept of the output: its end (a listing may need more)
    // stderr apart from stdout: a tool whose stdout is read as data (JSON) and that warns on stderr
    // while it exits 0 (`ip`'s "Dump was interrupted").
    bool separate_stderr = false;
};

// Runs argv (argv[0] a path) to its end, its stdout and stderr captured through a temporary file,
// and blocks the calling thread meanwhile: for tools (runc, ip, mkfs) that take milliseconds, run
// off any io thread. A command still running at `deadline` is killed (SIGKILL) and reaped.
// Errors: as Child::Spawn; kDeadlineExceeded "<argv[0]> did not end within the deadline" (with what
// it printed so far). A non-zero exit is not an error: the caller reads exit_status.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, SteadyTime deadline,
                                 const RunOptions& options = {});

// Waits until `path` holds a port number (written atomically, by a rename, by every cogs server once
// it listens) and returns it. If `watch` is given and that child exits first, fails at once.
// Errors: kDeadlineExceeded at `deadline`; kUnavailable if `watch` exited (the message names its
// exit status); kInvalidArgument if the file holds something other than a port number.
Result<uint16_t> WaitForPortFile(const std::string& path, SteadyTime deadline, Child* watch = nullptr);

// A cogs server run as the child of a supervisor (`cogs dev`, the chaos tests' cloud): which sibling
// binary, the arguments it gets for the port it is asked to listen on, and its files under the
// run's directory. The supervisor decides when to (re)start it and waits for `port_file` itself.
struct ServerChild {
    // port_file is <dir>/run/<name>.port, log <dir>/logs/<name>.log (both directories must exist).
    ServerChild(std::string name, std::string binary, const std::filesystem::path& dir,
                std::function<std::vector<std::string>(uint16_t listen_port)> args);

    // Starts SiblingBinary(binary) with args(listen_port) (0: any port), stdout and stderr appended
    // to `log`, after removing a port file an earlier start left, so that it is not taken for this
    // start's. Replaces (and so kills) a child still held. Errors: kUnavailable "cannot start NAME: why".
    Status Spawn(uint16_t listen_port, bool new_process_group = true);

    std::string name;    // "cogs-network", "cogsd", "cogs-compute-1"
    std::string binary;  // a sibling binary's name
    std::function<std::vector<std::string>(uint16_t listen_port)> args;  // argv after the binary
    std::string port_file;
    std::string log;
    uint16_t port = 0;  // the port it listens on, as its supervisor read it from port_file; 0 before
    Child child;
};

}  // namespace cogs::runtime
