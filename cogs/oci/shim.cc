#include "cogs/oci/shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "cogs/base/time.h"
#include "cogs/oci/bundle.h"
#include "cogs/oci/internal/console_log.h"
#include "cogs/oci/internal/layout.h"
#include "cogs/oci/lease_file.h"
#include "cogs/oci/runc.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"

namespace cogs::oci {
namespace {

using namespace std::chrono_literals;
using internal::PathIn;

// How long the console is still read after runc ended without the pipe closing (a process that
// escaped the container's end holds it): the exit status is not held back longer than this.
constexpr Duration kDrainAfterRunc = 5s;

// The watchdog's fallback (KillContainer): a runc kill must not hold up the next check for long.
constexpr Duration kRuncKillTimeout = 2s;

// One line in shim.log (the shim's stderr): "<time> cogs-oci-shim[<pid>] <id>: <message>".
template <typename... Args>
void Say(const ShimOptions& o, fmt::format_string<Args...> format, Args&&... args) {
    const std::string line = fmt::format("{} cogs-oci-shim[{}] {}: {}\n", Rfc3339(WallNowMs()), ::getpid(),
                                         o.id, fmt::format(format, std::forward<Args>(args)...));
    // One write per line (O_APPEND): lines of several processes do not interleave mid-line.
    [[maybe_unused]] const ssize_t n = ::write(2, line.data(), line.size());
}

int StatusOf(int wait_status) {
    if (WIFEXITED(wait_status)) {
        return WEXITSTATUS(wait_status);
    }
    if (WIFSIGNALED(wait_status)) {
        return 128 + WTERMSIG(wait_status);
    }
    return -1;
}

void CloseFd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

class Supervisor {
public:
    explicit Supervisor(const ShimOptions& o) : o_(o) {}
    ~Supervisor() {
        CloseFd(signal_fd_);
        CloseFd(console_fd_);
        CloseFd(lock_fd_);
    }

    // Everything up to runc running; then `ready` learns it. false: failed (said why).
    bool Start(int ready_fd);
    // Until runc and the container have ended and the console is drained; then the exit file.
    int Run();

private:
    bool Detach();
    bool TakePidFile();
    bool SpawnRunc(int console_write_fd);
    void ReadConsole();
    void HandleSignals();
    void Reap();
    void RuncEnded();
    // The watchdog (shim.h, step 8). Whether the lease holds now (reads the file).
    bool LeaseHolds();
    void CheckLease();
    void KillContainer();

    const ShimOptions& o_;
    int signal_fd_ = -1;
    int console_fd_ = -1;  // the pipe's read end; -1 once at EOF
    int lock_fd_ = -1;     // shim.pid, flock()ed for the shim's life
    std::optional<internal::ConsoleLog> console_;
    pid_t runc_pid_ = -1;
    std::optional<int> runc_wait_;      // runc's wait status once reaped
    std::optional<pid_t> init_pid_;     // the container's first process, if runc was killed
    bool waiting_for_init_ = false;     // runc was killed; the container's process is our child now
    std::map<pid_t, int> other_exits_;  // other reaped children (reparented to us), for init_pid_
    // The watchdog: the lease's end last read (CLOCK_BOOTTIME; min: none), when to read it next,
    // why it ended (logged once), whether the container was killed for it.
    Duration lease_end_ = Duration::min();
    SteadyTime next_lease_check_{};
    std::string lease_why_;
    bool lease_fired_ = false;
    bool kill_failed_ = false;  // logged once
};

bool Supervisor::Detach() {
    if (::setsid() < 0) {
        Say(o_, "setsid: {}", std::strerror(errno));
        return false;
    }
    if (::chdir("/") != 0) {
        Say(o_, "chdir /: {}", std::strerror(errno));
        return false;
    }
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        Say(o_, "PR_SET_CHILD_SUBREAPER: {}", std::strerror(errno));
        return false;
    }
    // SIGCHLD and the signals that must not end the shim are read from a signalfd instead of being
    // delivered. runc gets them back at their defaults (SpawnRunc).
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) {
        sigaddset(&set, s);
    }
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) {
        Say(o_, "sigprocmask: {}", std::strerror(errno));
        return false;
    }
    signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
        Say(o_, "signalfd: {}", std::strerror(errno));
        return false;
    }
    ::signal(SIGPIPE, SIG_IGN);
    return true;
}

bool Supervisor::TakePidFile() {
    if (auto other = internal::LiveShim(o_.dir)) {
        Say(o_, "another shim (pid {}) already runs for {}", *other, o_.dir);
        return false;
    }
    // Written and locked under a temporary name, then renamed: readers see no pid file or a whole
    // one, and the lock goes with the file.
    const std::string path = PathIn(o_.dir, internal::kShimPidFile);
    const std::string tmp = fmt::format("{}.{}.tmp", path, ::getpid());
    lock_fd_ = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        Say(o_, "{}: {}", tmp, std::strerror(errno));
        return false;
    }
    const std::string text = fmt::format("{}\n", ::getpid());
    if (::write(lock_fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::rename(tmp.c_str(), path.c_str()) != 0) {
        Say(o_, "{}: {}", path, std::strerror(errno));
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

bool Supervisor::SpawnRunc(int console_write_fd) {
    const std::string bundle = PathIn(o_.dir, internal::kBundleDir);
    const std::vector<std::string> argv{o_.runc_binary,
                                        "--root",
                                        o_.runc_root,
                                        "--log",
                                        PathIn(o_.dir, "runc.log"),
                                        "--log-format",
                                        "json",
                                        "run",
                                        "--bundle",
                                        bundle,
                                        "--pid-file",
                                        PathIn(o_.dir, internal::kContainerPidFile),
                                        o_.id};
    // Its own process group (Child's default): a signal sent to the shim's group never reaches
    // runc, which would pass it on to the container. Signals at their defaults and unblocked: runc
    // forwards what it gets. The shim reaps it itself (signalfd), so the Child lets it go.
    auto runc = runtime::Child::Spawn(argv, {.output_fd = console_write_fd});
    if (!runc) {
        Say(o_, "cannot start {}: {}", argv[0], runc.error().message);
        runc_pid_ = -1;
        return false;
    }
    runc_pid_ = runc->Release();
    // For Containers::Remove, which waits for a runc that outlived a killed shim.
    if (auto id = internal::IdentifyProcess(runc_pid_)) {
        (void)runtime::WriteFileAtomic(PathIn(o_.dir, internal::kRuncPidFile),
                                       internal::FormatProcessId(*id));
    }
    return true;
}

bool Supervisor::Start(int ready_fd) {
    if (!Detach() || !TakePidFile()) {
        return false;
    }
    // What an earlier run of this container left; Containers::Start removed them too.
    for (std::string_view name : {internal::kExitFile, internal::kContainerPidFile, internal::kRuncPidFile,
                                  std::string_view("runc.log")}) {
        ::unlink(PathIn(o_.dir, name).c_str());
    }
    auto console = internal::ConsoleLog::Open(PathIn(o_.dir, internal::kConsoleLog), o_.console_max_bytes);
    if (!console) {
        Say(o_, "{}", console.error().message);
        return false;
    }
    console_.emplace(std::move(*console));
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        Say(o_, "pipe: {}", std::strerror(errno));
        return false;
    }
    console_fd_ = pipe_fds[0];
    ::fcntl(console_fd_, F_SETFL, ::fcntl(console_fd_, F_GETFL) | O_NONBLOCK);
    if (!o_.lease_file.empty() && !LeaseHolds()) {
        Say(o_, "not starting the container: the host holds no lease ({})", lease_why_);
        ::close(pipe_fds[1]);
        return false;
    }
    const bool spawned = SpawnRunc(pipe_fds[1]);
    ::close(pipe_fds[1]);  // runc and the container hold the write end now: EOF once they are gone
    if (!spawned) {
        return false;
    }
    Say(o_, "runc run started (pid {}), console {} bytes per file{}", runc_pid_, o_.console_max_bytes,
        o_.lease_file.empty() ? std::string()
                              : fmt::format(", watching the lease file {} every {} ms", o_.lease_file,
                                            std::chrono::duration_cast<Millis>(o_.lease_check).count()));
    next_lease_check_ = SteadyClock::now() + o_.lease_check;
    const char ok = 'R';
    [[maybe_unused]] const ssize_t n = ::write(ready_fd, &ok, 1);
    return true;
}

void Supervisor::ReadConsole() {
    char buf[64 * 1024];
    for (;;) {
        const ssize_t n = ::read(console_fd_, buf, sizeof buf);
        if (n > 0) {
            console_->Write(std::string_view(buf, static_cast<size_t>(n)));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        CloseFd(console_fd_);  // EOF: every writer is gone
        return;
    }
}

void Supervisor::Reap() {
    int st = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == runc_pid_) {
            runc_wait_ = st;
            RuncEnded();
        } else if (other_exits_.size() < 1024) {
            other_exits_[pid] = st;
        }
        if (init_pid_ && pid == *init_pid_) {
            waiting_for_init_ = false;
        }
    }
}

void Supervisor::RuncEnded() {
    Say(o_, "runc run ended with status {}", StatusOf(*runc_wait_));
    if (!WIFSIGNALED(*runc_wait_)) {
        return;  // runc saw the container's end and cleaned up after it
    }
    // runc was killed: the container may still run, reparented to this subreaper. Its end, not
    // runc's, is the container's status.
    auto text = runtime::ReadFile(PathIn(o_.dir, internal::kContainerPidFile));
    if (!text) {
        return;  // runc died before the container ran
    }
    const pid_t pid = static_cast<pid_t>(std::atoi(text->c_str()));
    if (pid <= 0) {
        return;
    }
    init_pid_ = pid;
    if (other_exits_.contains(pid)) {
        return;
    }
    int st = 0;
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == 0) {
        waiting_for_init_ = true;  // our child, still running
        Say(o_, "the container's process {} runs on without runc; waiting for it", pid);
    } else if (r == pid) {
        other_exits_[pid] = st;
    }
}

bool Supervisor::LeaseHolds() {
    auto end = ReadLeaseFile(o_.lease_file);
    if (end) {
        lease_end_ = *end;
    } else if (end.error().code == ErrorCode::kUnavailable) {
        // Kept: a read that fails says nothing new, and never extends the lease.
        if (lease_end_ == Duration::min()) {
            lease_why_ = end.error().message;
        }
    } else {
        lease_end_ = Duration::min();
        lease_why_ = end.error().code == ErrorCode::kNotFound ? o_.lease_file + " does not exist"
                                                              : end.error().message;
    }
    const Duration now = BootTimeNow();
    if (lease_end_ != Duration::min() && now >= lease_end_) {
        lease_why_ =
            fmt::format("it ended {} ms ago", std::chrono::duration_cast<Millis>(now - lease_end_).count());
    }
    return now < lease_end_;
}

void Supervisor::CheckLease() {
    if (o_.lease_file.empty() || (runc_wait_ && !waiting_for_init_)) {
        return;  // no watchdog, or nothing left to kill
    }
    const SteadyTime now = SteadyClock::now();
    if (now < next_lease_check_) {
        return;
    }
    next_lease_check_ = now + o_.lease_check;
    if (!lease_fired_ && LeaseHolds()) {
        return;
    }
    if (!lease_fired_) {
        lease_fired_ = true;
        Say(o_, "the host's lease has ended ({}): killing the container (watchdog)", lease_why_);
    }
    // Again at every check until runc has ended: the container's pid file may not be written yet.
    KillContainer();
}

// Through syscall(2): glibc 2.36's <sys/pidfd.h> declares these without C linkage for C++.
int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int PidfdKill(int fd) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0)); }

// SIGKILL to the container's first process, PID 1 of its pid namespace (the kernel kills every other
// process of the namespace with it). Through a pidfd taken before the process is checked to be ours
// (a child of our unreaped runc, or our own child once runc has died): a pid that was reused in
// between is never signalled.
void Supervisor::KillContainer() {
    auto text = runtime::ReadFile(PathIn(o_.dir, internal::kContainerPidFile));
    const pid_t pid = text ? static_cast<pid_t>(std::atoi(text->c_str())) : 0;
    if (pid <= 0) {
        return;  // runc has not written it yet: it runs the process an instant before (next check)
    }
    const int fd = PidfdOpen(pid);
    if (fd < 0) {
        return;  // gone already
    }
    pid_t parent = 0;
    if (auto stat = runtime::ReadFile(fmt::format("/proc/{}/stat", pid))) {
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
        if (const size_t close = stat->rfind(')'); close != std::string::npos) {
            char state = 0;
            int ppid = 0;
            if (std::sscanf(stat->c_str() + close + 1, " %c %d", &state, &ppid) == 2) {
                parent = static_cast<pid_t>(ppid);
            }
        }
    }
    const bool ours = (parent == runc_pid_ && !runc_wait_) || parent == ::getpid();
    if (ours) {
        if (PidfdKill(fd) != 0 && errno != ESRCH && !kill_failed_) {
            kill_failed_ = true;
            Say(o_, "cannot kill the container's process {}: {}", pid, std::strerror(errno));
        }
    } else if (parent != 0) {
        // Not the process runc made as we know it (another runc's way of making it, or a pid reused
        // after the container's end): runc itself kills what its state names, if anything.
        auto killed =
            Runc({o_.runc_binary, o_.runc_root, kRuncKillTimeout}).Kill(o_.id, SIGKILL, /*all=*/true);
        if (!killed && !kill_failed_) {
            kill_failed_ = true;
            Say(o_, "pid {} (parent {}) is not runc's child; runc kill: {}", pid, parent,
                killed.error().message);
        }
    }
    ::close(fd);
}

void Supervisor::HandleSignals() {
    signalfd_siginfo info[16];
    for (;;) {
        const ssize_t n = ::read(signal_fd_, info, sizeof info);
        if (n <= 0) {
            return;
        }
        bool child = false;
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof info[0]; ++i) {
            if (info[i].ssi_signo == SIGCHLD) {
                child = true;
            } else {
                Say(o_, "ignored signal {} from pid {}: the container is stopped through runc, not its shim",
                    info[i].ssi_signo, info[i].ssi_pid);
            }
        }
        if (child) {
            Reap();
        }
    }
}

int Supervisor::Run() {
    std::optional<SteadyTime> drain_until;
    for (;;) {
        if (runc_wait_ && !waiting_for_init_) {
            if (console_fd_ < 0) {
                break;
            }
            const SteadyTime now = SteadyClock::now();
            if (!drain_until) {
                drain_until = now + kDrainAfterRunc;
            } else if (now >= *drain_until) {
                Say(o_, "the console is still open {} s after runc ended; not reading it further",
                    std::chrono::duration_cast<std::chrono::seconds>(kDrainAfterRunc).count());
                break;
            }
        }
        pollfd fds[2];
        nfds_t count = 0;
        fds[count++] = {signal_fd_, POLLIN, 0};
        if (console_fd_ >= 0) {
            fds[count++] = {console_fd_, POLLIN, 0};
        }
        int timeout_ms = -1;
        if (!o_.lease_file.empty() && !(runc_wait_ && !waiting_for_init_)) {
            timeout_ms = static_cast<int>(std::max<int64_t>(
                0, std::chrono::duration_cast<Millis>(next_lease_check_ - SteadyClock::now()).count() + 1));
        }
        if (drain_until) {
            timeout_ms = static_cast<int>(
                std::max<int64_t>(
                    0, std::chrono::duration_cast<Millis>(*drain_until - SteadyClock::now()).count()) +
                1);
        }
        if (::poll(fds, count, timeout_ms) < 0 && errno != EINTR) {
            Say(o_, "poll: {}", std::strerror(errno));
            return 1;
        }
        if (count > 1 && fds[1].revents != 0) {
            ReadConsole();
        }
        if (fds[0].revents != 0) {
            HandleSignals();
        }
        CheckLease();
    }
    int status = StatusOf(*runc_wait_);
    if (init_pid_) {
        if (auto it = other_exits_.find(*init_pid_); it != other_exits_.end()) {
            status = StatusOf(it->second);
        }
    }
    if (console_->dropped_bytes() > 0) {
        Say(o_, "{} bytes of console output were lost (the console log could not be written)",
            console_->dropped_bytes());
    }
    if (auto written =
            runtime::WriteFileAtomic(PathIn(o_.dir, internal::kExitFile), fmt::format("{}\n", status));
        !written) {
        Say(o_, "cannot write the exit status {}: {}", status, written.error().message);
        return 1;
    }
    Say(o_, "container ended: exit status {}", status);
    // Children reparented to us that are still running (none, normally: a pid namespace ends with
    // its first process) are left to init when the shim exits.
    Reap();
    return 0;
}

}  // namespace

std::vector<std::string> ShimArgv(const std::string& shim_binary, const ShimOptions& o) {
    std::vector<std::string> argv{shim_binary};
    for (const auto& [flag, value] : {std::pair<const char*, std::string>{"--id", o.id},
                                      {"--dir", o.dir},
                                      {"--runc", o.runc_binary},
                                      {"--root", o.runc_root},
                                      {"--console-max-bytes", std::to_string(o.console_max_bytes)}}) {
        argv.push_back(flag);
        argv.push_back(value);
    }
    if (!o.lease_file.empty()) {
        argv.insert(argv.end(), {"--lease-file", o.lease_file, "--lease-check-ms",
                                 std::to_string(std::chrono::duration_cast<Millis>(o.lease_check).count())});
    }
    return argv;
}

int RunShim(const ShimOptions& o) {
    if (!IsValidContainerId(o.id) || o.dir.empty() || o.dir.front() != '/' || o.runc_root.empty() ||
        o.runc_binary.empty() || o.console_max_bytes < kMinConsoleBytes ||
        (!o.lease_file.empty() && o.lease_file.front() != '/') || o.lease_check < kMinLeaseCheck ||
        o.lease_check > kMaxLeaseCheck) {
        std::fprintf(stderr,
                     "cogs-oci-shim: --id must be a container id, --dir, --root and --lease-file absolute "
                     "paths, --console-max-bytes >= %lld, --lease-check-ms %lld..%lld\n",
                     static_cast<long long>(kMinConsoleBytes),
                     static_cast<long long>(std::chrono::duration_cast<Millis>(kMinLeaseCheck).count()),
                     static_cast<long long>(std::chrono::duration_cast<Millis>(kMaxLeaseCheck).count()));
        return 2;
    }
    // Whatever the starter left open (a listening socket, a database) must not live on in the shim.
    ::close_range(3, ~0U, 0);
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) {
        std::fprintf(stderr, "cogs-oci-shim: pipe: %s\n", std::strerror(errno));
        return 1;
    }
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "cogs-oci-shim: fork: %s\n", std::strerror(errno));
        return 1;
    }
    if (pid > 0) {
        // The launcher: done once the shim says runc runs; if the shim ends first, it said why.
        ::close(ready[1]);
        char c = 0;
        ssize_t n;
        while ((n = ::read(ready[0], &c, 1)) < 0 && errno == EINTR) {
        }
        ::close(ready[0]);
        if (n == 1) {
            return 0;
        }
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        return 1;
    }
    ::close(ready[0]);
    Supervisor supervisor(o);
    const bool started = supervisor.Start(ready[1]);
    ::close(ready[1]);
    if (!started) {
        return 1;
    }
    return supervisor.Run();
}

}  // namespace cogs::oci
