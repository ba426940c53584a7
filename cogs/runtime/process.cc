#include "cogs/runtime/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "cogs/runtime/files.h"

extern char** environ;

namespace cogs::runtime {
namespace {

using namespace std::chrono_literals;

int StatusOf(int wait_status) {
    if (WIFEXITED(wait_status)) {
        return WEXITSTATUS(wait_status);
    }
    if (WIFSIGNALED(wait_status)) {
        return 128 + WTERMSIG(wait_status);
    }
    return -1;
}

// The parent's environment with `extra` ("NAME=value") added or replacing same-named entries.
std::vector<std::string> MergedEnvironment(const std::vector<std::string>& extra) {
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string entry(*e);
        const std::string name = entry.substr(0, entry.find('='));
        const bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& x) {
            return x.substr(0, x.find('=')) == name;
        });
        if (!replaced) {
            env.push_back(entry);
        }
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
    std::vector<char*> out;
    out.reserve(v.size() + 1);
    for (const auto& s : v) {
        out.push_back(const_cast<char*>(s.c_str()));
    }
    out.push_back(nullptr);
    return out;
}

// A temporary file of the command's, removed with this.
struct TempOutput {
    std::string path;
    ~TempOutput() {
        if (!path.empty()) {
            ::unlink(path.c_str());
        }
    }
    Status Make() {
        const char* tmpdir = std::getenv("TMPDIR");
        std::string p = fmt::format("{}/cogs-cmd-XXXXXX", tmpdir != nullptr && *tmpdir ? tmpdir : "/tmp");
        const int fd = ::mkstemp(p.data());
        if (fd < 0) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("cannot make a temporary file: {}", std::strerror(errno)));
        }
        ::close(fd);
        path = std::move(p);
        return {};
    }
    // Its last `max` bytes.
    std::string Tail(long max) const {
        std::string text;
        if (FILE* f = std::fopen(path.c_str(), "rb")) {
            std::fseek(f, 0, SEEK_END);
            const long size = std::ftell(f);
            std::fseek(f, std::max(0L, size - max), SEEK_SET);
            text.resize(static_cast<size_t>(std::min(size, max)));
            text.resize(std::fread(text.data(), 1, text.size(), f));
            std::fclose(f);
        }
        return text;
    }
};

}  // namespace

Result<Child> Child::Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
    if (argv.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "spawn: empty argv");
    }
    // The log file is opened here rather than by a file action so that a bad log path is told apart
    // from a missing binary (both would be ENOENT from posix_spawn).
    struct OwnedFd {
        int fd = -1;
        ~OwnedFd() {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    };
    const auto open_log = [](const std::string& path, OwnedFd& into) -> Status {
        into.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (into.fd < 0) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("spawn: log file {}: {}", path, std::strerror(errno)));
        }
        return {};
    };
    OwnedFd log, err_log;
    int out_fd = options.output_fd;
    int err_fd = options.output_fd;
    if (!options.log_path.empty()) {
        COGS_TRY(open_log(options.log_path, log));
        out_fd = err_fd = log.fd;
        if (!options.stderr_path.empty()) {
            COGS_TRY(open_log(options.stderr_path, err_log));
            err_fd = err_log.fd;
        }
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    // dup2 clears FD_CLOEXEC on the target, so the copies survive exec and the originals do not.
    if (out_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    }
    if (err_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (options.new_process_group) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, flags);
    // A supervisor may ignore or block these; its children must not inherit that (SIG_IGN and the
    // mask survive exec).
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int s : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT}) {
        sigaddset(&defaults, s);
    }
    posix_spawnattr_setsigdefault(&attr, &defaults);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);

    const std::vector<std::string> env = MergedEnvironment(options.env);
    std::vector<char*> c_argv = CStrings(argv);
    std::vector<char*> c_env = CStrings(env);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, &attr, c_argv.data(), c_env.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        const ErrorCode code = (rc == ENOENT || rc == EACCES || rc == ENOEXEC || rc == ENOTDIR)
                                   ? ErrorCode::kNotFound
                                   : ErrorCode::kUnavailable;
        return MakeError(code, fmt::format("spawn {}: {}", argv[0], std::strerror(rc)));
    }
    return Child(pid);
}

Child::~Child() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
    }
}

Child::Child(Child&& o) noexcept : pid_(o.pid_), exit_status_(o.exit_status_) { o.pid_ = -1; }

Child& Child::operator=(Child&& o) noexcept {
    if (this != &o) {
        Child old(std::move(*this));  // killed and reaped by its destructor, as documented
        pid_ = o.pid_;
        exit_status_ = o.exit_status_;
        o.pid_ = -1;
    }
    return *this;
}

void Child::Reaped(int wait_status) {
    pid_ = -1;
    exit_status_ = StatusOf(wait_status);
}

bool Child::Running() {
    if (pid_ <= 0) {
        return false;
    }
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == 0) {
        return true;
    }
    if (r == pid_) {
        Reaped(st);
    } else if (errno != EINTR) {
        pid_ = -1;  // reaped by someone else (ECHILD): the status is lost
        exit_status_ = -1;
    } else {
        return true;
    }
    return false;
}

void Child::Signal(int signal) {
    if (pid_ > 0) {
        ::kill(pid_, signal);
    }
}

std::optional<int> Child::Wait(Duration timeout) {
    const SteadyTime deadline = SteadyClock::now() + timeout;
    // waitpid has no timeout; poll with a short, growing interval (exits are noticed within 10 ms).
    Duration pause = 1ms;
    while (Running()) {
        const SteadyTime now = SteadyClock::now();
        if (now >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::min<Duration>(pause, deadline - now));
        pause = std::min<Duration>(pause * 2, 10ms);
    }
    return exit_status_;
}

int Child::Wait() {
    if (pid_ > 0) {
        int st = 0;
        pid_t r;
        while ((r = ::waitpid(pid_, &st, 0)) < 0 && errno == EINTR) {
        }
        if (r == pid_) {
            Reaped(st);
        } else {
            pid_ = -1;
            exit_status_ = -1;
        }
    }
    return exit_status_.value_or(-1);
}

int Child::Stop(Duration grace) {
    Signal(SIGTERM);
    if (auto st = Wait(grace)) {
        return *st;
    }
    Signal(SIGKILL);
    return Wait();
}

pid_t Child::Release() {
    const pid_t p = pid_;
    pid_ = -1;
    return p;
}

std::string SiblingBinary(const std::string& name) {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return (exe.parent_path() / name).string();
}

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, SteadyTime deadline,
                                 const RunOptions& options) {
    const auto max_output = static_cast<long>(options.max_output);
    TempOutput output, errors;
    COGS_TRY(output.Make());
    if (options.separate_stderr) {
        COGS_TRY(errors.Make());
    }
    COGS_ASSIGN_OR_RETURN(Child child, Child::Spawn(argv, SpawnOptions{.log_path = output.path,
                                                                       .stderr_path = errors.path,
                                                                       .env = options.env}));
    std::optional<int> status =
        child.Wait(std::max<Duration>(deadline - SteadyClock::now(), Duration::zero()));
    const bool timed_out = !status.has_value();
    if (timed_out) {
        child.Signal(SIGKILL);
        status = child.Wait();
    }
    CommandOutput out{*status, output.Tail(max_output), {}};
    if (options.separate_stderr) {
        out.errors = errors.Tail(max_output);
    }
    if (timed_out) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         fmt::format("{} did not end within the deadline; it printed: {}{}", argv[0],
                                     out.output, out.errors));
    }
    return out;
}

Result<uint16_t> WaitForPortFile(const std::string& path, SteadyTime deadline, Child* watch) {
    for (;;) {
        if (auto text = ReadFile(path); text && !text->empty()) {
            const auto first = text->find_first_not_of(" \t\r\n");
            const auto last = text->find_last_not_of(" \t\r\n");
            const std::string digits =
                first == std::string::npos ? "" : text->substr(first, last - first + 1);
            const bool numeric =
                !digits.empty() && digits.size() <= 5 &&
                std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
            if (!numeric || std::stoul(digits) == 0 || std::stoul(digits) > 65535) {
                return MakeError(ErrorCode::kInvalidArgument,
                                 fmt::format("{}: not a port number: '{}'", path, digits));
            }
            return static_cast<uint16_t>(std::stoul(digits));
        }
        if (watch != nullptr && !watch->Running()) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("the process exited (status {}) before writing {}",
                                         watch->exit_status().value_or(-1), path));
        }
        const SteadyTime now = SteadyClock::now();
        if (now >= deadline) {
            return MakeError(ErrorCode::kDeadlineExceeded, fmt::format("{} did not appear in time", path));
        }
        std::this_thread::sleep_for(std::min<Duration>(10ms, deadline - now));
    }
}

ServerChild::ServerChild(std::string name_in, std::string binary_in, const std::filesystem::path& dir,
                         std::function<std::vector<std::string>(uint16_t listen_port)> args_in)
    : name(std::move(name_in)),
      binary(std::move(binary_in)),
      args(std::move(args_in)),
      port_file((dir / "run" / (name + ".port")).string()),
      log((dir / "logs" / (name + ".log")).string()) {}

Status ServerChild::Spawn(uint16_t listen_port, bool new_process_group) {
    std::error_code ec;
    std::filesystem::remove(port_file, ec);
    std::vector<std::string> argv{SiblingBinary(binary)};
    for (auto& a : args(listen_port)) {
        argv.push_back(std::move(a));
    }
    auto started = Child::Spawn(argv, {.log_path = log, .new_process_group = new_process_group});
    if (!started) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("cannot start {}: {}", name, started.error().message));
    }
    child = std::move(*started);
    return Ok();
}

}  // namespace cogs::runtime
