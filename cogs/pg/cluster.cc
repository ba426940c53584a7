#include "cogs/pg/cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cogs/runtime/files.h"

namespace cogs::pg {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr Duration kPollInterval = 20ms;
constexpr Duration kDestructorGrace = 30s;
// How long Pause and Kill wait for a SIGSTOPped process to show as stopped.
constexpr Duration kStopSettle = 2s;
// The longest socket path we accept: the kernel's sun_path holds 107 characters, and a margin keeps
// PostgreSQL's own lock file name (".lock" appended) and libpq's copy of the path well inside it.
constexpr size_t kMaxSocketPath = 99;
constexpr char kSocketName[] = "/.s.PGSQL.65535";  // the longest name a port can give
constexpr char kInstallHint[] = "run scripts/install-deps (Debian's postgresql-15), or set COGS_PG_BIN";
constexpr int kLogLines = 15;

bool Executable(const fs::path& p) { return ::access(p.c_str(), X_OK) == 0; }

bool HasServerBinaries(const fs::path& dir) {
    return Executable(dir / "postgres") && Executable(dir / "initdb");
}

// "15" -> 15.0, "9.6" -> 9.6; nullopt for names that are not versions.
std::optional<double> VersionOf(const std::string& name) {
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char c) { return std::isdigit(c) || c == '.'; })) {
        return std::nullopt;
    }
    return std::strtod(name.c_str(), nullptr);
}

// The process state letter from /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), '\0' if it is gone.
char ProcState(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) {
        return '\0';
    }
    // "pid (comm) S ppid ...": comm may hold anything, ')' too, so the state follows the last ')'.
    const auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '\0' : line[close + 2];
}

// Whether `pid` names a live process. A zombie is not one: it holds no memory any more, and whoever
// should reap it (init, in a container perhaps never) is none of our business.
bool Alive(pid_t pid) {
    if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) {
        return false;
    }
    const char state = ProcState(pid);
    return state != '\0' && state != 'Z' && state != 'X';
}

// Every process descended from `root` (not root itself), parents before their children. PostgreSQL's
// backends each sit in a session of their own, so this, not the process group, is "the server".
std::vector<pid_t> Descendants(pid_t root) {
    std::multimap<pid_t, pid_t> children;  // ppid -> pid
    if (DIR* proc = ::opendir("/proc")) {
        while (const dirent* e = ::readdir(proc)) {
            char* end = nullptr;
            const long pid = std::strtol(e->d_name, &end, 10);
            if (pid <= 0 || *end != '\0') {
                continue;
            }
            std::ifstream in(fmt::format("/proc/{}/stat", pid));
            std::string line;
            if (!std::getline(in, line)) {
                continue;  // exited meanwhile
            }
            const auto close = line.rfind(')');
            if (close == std::string::npos) {
                continue;
            }
            std::istringstream rest(line.substr(close + 1));
            char state = 0;
            long ppid = 0;
            if (rest >> state >> ppid) {
                children.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(pid));
            }
        }
        ::closedir(proc);
    }
    std::vector<pid_t> out;
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        const pid_t parent = todo.back();
        todo.pop_back();
        auto [first, last] = children.equal_range(parent);
        for (auto it = first; it != last; ++it) {
            out.push_back(it->second);
            todo.push_back(it->second);
        }
    }
    return out;
}

// Waits until `pid` is stopped (or gone), up to `deadline`.
void WaitStopped(pid_t pid, SteadyTime deadline) {
    for (;;) {
        const char state = ProcState(pid);
        if (state == 'T' || state == 't' || state == '\0' || state == 'Z' || SteadyClock::now() >= deadline) {
            return;
        }
        std::this_thread::sleep_for(1ms);
    }
}

// What a server's postmaster.pid says: its pid (line 1), port (4), first socket directory (5) and
// System V segment (7, "key id").
struct PidFile {
    pid_t pid = -1;
    int port = 0;
    std::string socket_dir;
    key_t shm_key = -1;
    int shm_id = -1;
};

std::optional<PidFile> ReadPidFile(const std::string& data_dir) {
    auto text = runtime::ReadFile(data_dir + "/postmaster.pid");
    if (!text) {
        return std::nullopt;
    }
    std::istringstream in(*text);
    std::string line;
    PidFile f;
    for (int n = 1; std::getline(in, line); ++n) {
        std::istringstream fields(line);
        if (n == 1) {
            fields >> f.pid;
        } else if (n == 4) {
            fields >> f.port;
        } else if (n == 5) {
            f.socket_dir = line;
        } else if (n == 7) {
            long key = -1;
            if (fields >> key >> f.shm_id) {
                f.shm_key = static_cast<key_t>(key);
            }
        }
    }
    return f;
}

// How many processes are attached to the segment of `f`; 0 once it is gone (or is another one).
int Attached(const PidFile& f) {
    shmid_ds ds{};
    if (f.shm_id < 0 || ::shmctl(f.shm_id, IPC_STAT, &ds) != 0 || ds.shm_perm.__key != f.shm_key) {
        return 0;
    }
    return static_cast<int>(ds.shm_nattch);
}

// Whether the server of `f` runs in `data_dir`: its postmaster is alive and works there (a postmaster
// chdirs to its data directory). After a crash the pid in postmaster.pid may have been given to an
// unrelated process, which must not be mistaken for the server, let alone signalled. When the working
// directory cannot be read (another user's process), the pid is trusted, as PostgreSQL itself does.
bool ServerRuns(const PidFile& f, const std::string& data_dir) {
    if (!Alive(f.pid)) {
        return false;
    }
    std::error_code ec;
    const fs::path cwd = fs::read_symlink(fmt::format("/proc/{}/cwd", f.pid), ec);
    if (ec) {
        return ec != std::errc::no_such_file_or_directory;  // ENOENT: it exited meanwhile
    }
    const fs::path data = fs::weakly_canonical(data_dir, ec);
    return ec || cwd == data;
}

// Removes the System V segment a crashed server (whose postmaster is gone) left behind. The next
// start would remove it, but there may be none (the end of every chaos test), and the kernel allows
// only shmmni (4096) segments in all. IPC_RMID on a segment that dying processes still hold frees it
// once they let go.
void RemoveSegmentOfDeadServer(const std::string& data_dir) {
    if (auto f = ReadPidFile(data_dir); f && f->shm_id >= 0 && !Alive(f->pid)) {
        shmid_ds ds{};
        if (::shmctl(f->shm_id, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == f->shm_key) {
            ::shmctl(f->shm_id, IPC_RMID, nullptr);
        }
    }
}

// SIGKILLs `pid` and its descendants and waits (up to kStopSettle after the kill) until they are
// gone. Frozen first, so that it forks nothing between the look at its children and its death (an
// orphan would hold the shared memory and delay the next start). Does not reap `pid`.
void KillTree(pid_t pid) {
    ::kill(pid, SIGSTOP);
    WaitStopped(pid, SteadyClock::now() + kStopSettle);
    std::vector<pid_t> procs = Descendants(pid);
    ::kill(pid, SIGKILL);
    for (pid_t p : procs) {
        ::kill(p, SIGKILL);
    }
    procs.push_back(pid);
    const SteadyTime deadline = SteadyClock::now() + kStopSettle;
    for (pid_t p : procs) {
        while (Alive(p) && SteadyClock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
    }
}

Result<int> PickFreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("socket: {}", std::strerror(errno)));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("pick a port on 127.0.0.1: {}", std::strerror(err)));
    }
    return static_cast<int>(ntohs(addr.sin_port));
}

// A conninfo value, quoted when libpq needs it to be.
std::string ConnValue(const std::string& v) {
    if (!v.empty() && v.find_first_of(" \t\n\r\f\v'\\") == std::string::npos) {
        return v;
    }
    std::string out = "'";
    for (char c : v) {
        if (c == '\'' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out + "'";
}

std::string PercentEncode(const std::string& v) {
    std::string out;
    for (unsigned char c : v) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

std::string TrimRight(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
        s.pop_back();
    }
    return s;
}

// The last `lines` lines of what `path` gained after its first `offset` bytes.
std::string LogSince(const std::string& path, size_t offset, int lines) {
    auto text = runtime::ReadFile(path);
    if (!text || text->size() <= offset) {
        return "";
    }
    const std::string tail = TrimRight(text->substr(offset));
    size_t start = tail.size();
    for (int n = 0; n < lines; ++n) {
        const auto nl = start == 0 ? std::string::npos : tail.rfind('\n', start - 1);
        if (nl == std::string::npos) {
            return tail;
        }
        start = nl;
    }
    return tail.substr(start + 1);
}

size_t FileSize(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    return ec ? 0 : static_cast<size_t>(size);
}

// As root, the postgres user must be able to walk down to `dir`.
Status CheckReachable(const fs::path& dir, uid_t uid, gid_t gid) {
    for (fs::path p = dir.parent_path(); !p.empty(); p = p.parent_path()) {
        struct stat st {};
        if (::stat(p.c_str(), &st) == 0) {
            const mode_t bit = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
            if ((st.st_mode & bit) == 0) {
                return MakeError(
                    ErrorCode::kFailedPrecondition,
                    fmt::format("cluster: the postgres user (the server cannot run as root) cannot reach "
                                "{}: {} is mode {:o}; use a directory it can reach (e.g. under "
                                "/tmp or /var/lib)",
                                dir.string(), p.string(), st.st_mode & 07777));
            }
        }
        if (p == p.root_path()) {
            break;
        }
    }
    return Ok();
}

}  // namespace

Result<std::string> ServerBinDir() {
    if (const char* env = std::getenv("COGS_PG_BIN"); env != nullptr && *env != '\0') {
        if (!HasServerBinaries(env)) {
            return MakeError(ErrorCode::kNotFound,
                             fmt::format("COGS_PG_BIN={} holds no initdb and postgres; unset it to use "
                                         "/usr/lib/postgresql/<version>/bin, or run scripts/install-deps",
                                         env));
        }
        return std::string(env);
    }
    std::optional<double> best;
    std::string best_dir;
    std::error_code ec;
    for (fs::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end; it.increment(ec)) {
        const auto version = VersionOf(it->path().filename().string());
        const fs::path bin = it->path() / "bin";
        if (version && (!best || *version > *best) && HasServerBinaries(bin)) {
            best = version;
            best_dir = bin.string();
        }
    }
    if (!best) {
        return MakeError(
            ErrorCode::kNotFound,
            fmt::format("no PostgreSQL server in /usr/lib/postgresql/<version>/bin: {}", kInstallHint));
    }
    return best_dir;
}

Result<std::unique_ptr<Cluster>> Cluster::Start(const ClusterOptions& options, Duration timeout) {
    const SteadyTime deadline = SteadyClock::now() + timeout;
    if (options.dir.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "cluster: empty dir");
    }
    if (options.port < 0 || options.port > 65535) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("cluster: bad port {}", options.port));
    }
    COGS_ASSIGN_OR_RETURN(std::string bin_dir, ServerBinDir());

    std::unique_ptr<Cluster> c(new Cluster());
    c->bin_dir_ = std::move(bin_dir);
    std::error_code ec;
    fs::path dir = fs::absolute(options.dir, ec).lexically_normal();
    if (!dir.has_filename()) {
        dir = dir.parent_path();  // "/x/y/" -> "/x/y"
    }
    c->dir_ = dir.string();
    c->data_dir_ = (dir / "data").string();
    c->log_path_ = options.log_path.empty() ? (dir / "postgres.log").string() : options.log_path;
    c->fsync_ = options.fsync;
    c->settings_ = options.settings;
    if (c->dir_.size() + std::strlen(kSocketName) > kMaxSocketPath) {
        return MakeError(
            ErrorCode::kInvalidArgument,
            fmt::format("cluster: dir {} is too long for a unix socket path ({} + {} characters; "
                        "at most {})",
                        c->dir_, c->dir_.size(), std::strlen(kSocketName), kMaxSocketPath));
    }

    fs::create_directories(dir, ec);
    // The socket lives here and trust authentication lets in whoever reaches it: nobody else may.
    if (ec || ::chmod(c->dir_.c_str(), 0700) != 0) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("cluster: cannot make {} (mode 0700): {}", c->dir_,
                                     ec ? ec.message() : std::strerror(errno)));
    }
    if (::geteuid() == 0) {
        passwd pwd{};
        passwd* pw = nullptr;
        std::vector<char> buf(16384);
        if (::getpwnam_r("postgres", &pwd, buf.data(), buf.size(), &pw) != 0 || pw == nullptr) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             fmt::format("cluster: running as root needs the postgres system user to run the "
                                         "server as: {}",
                                         kInstallHint));
        }
        c->run_uid_ = pw->pw_uid;
        c->run_gid_ = pw->pw_gid;
        if (::chown(c->dir_.c_str(), c->run_uid_, c->run_gid_) != 0) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("cluster: chown {} to postgres: {}", c->dir_, std::strerror(errno)));
        }
        COGS_TRY(CheckReachable(dir, c->run_uid_, c->run_gid_));
    }
    if (options.port != 0) {
        c->port_ = options.port;
    } else {
        COGS_ASSIGN_OR_RETURN(c->port_, PickFreePort());
    }

    if (!fs::exists(dir / "data" / "PG_VERSION", ec)) {
        COGS_TRY(c->Initdb(deadline));
    }
    COGS_TRY(c->StartServer(deadline, /*retry_port=*/options.port == 0));
    COGS_TRY(c->CreateDatabase(kClusterDatabase));  // on error, c's destructor stops the server
    return c;
}

Result<std::unique_ptr<Cluster>> Cluster::Attach(const std::string& dir_in) {
    std::error_code ec;
    fs::path dir = fs::absolute(dir_in, ec).lexically_normal();
    if (!dir.has_filename()) {
        dir = dir.parent_path();
    }
    std::unique_ptr<Cluster> c(new Cluster());
    c->owned_ = false;
    c->data_dir_ = (dir / "data").string();
    const auto f = ReadPidFile(c->data_dir_);
    if (!f || f->port <= 0 || f->socket_dir.empty() || !ServerRuns(*f, c->data_dir_)) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("cluster: no PostgreSQL server runs in {} (no live {}/postmaster.pid)",
                                     dir.string(), c->data_dir_));
    }
    c->dir_ = f->socket_dir;
    c->port_ = f->port;
    c->attached_pid_ = f->pid;
    c->log_path_ = (dir / "postgres.log").string();
    if (::PQping((c->ConnInfo("postgres") + " connect_timeout=2").c_str()) != PQPING_OK) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("cluster: the server in {} (pid {}) does not accept connections",
                                     dir.string(), f->pid));
    }
    return c;
}

Cluster::~Cluster() {
    if (!owned_) {
        return;
    }
    if (postmaster_.Running()) {
        (void)Stop(kDestructorGrace);  // a server that had to be killed is down all the same
    }
    Resume();  // the processes of a server that died while paused, if any, may then exit
    // A server that crashed (was killed) leaves its postmaster.pid and its 56-byte System V segment.
    RemoveSegmentOfDeadServer(data_dir_);
}

Status Cluster::StopDir(const std::string& dir_in, Duration grace) {
    if (dir_in.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "cluster: empty dir");
    }
    std::error_code ec;
    const std::string data_dir = (fs::absolute(dir_in, ec).lexically_normal() / "data").string();
    const auto f = ReadPidFile(data_dir);
    if (!f || !ServerRuns(*f, data_dir)) {
        RemoveSegmentOfDeadServer(data_dir);
        return Ok();
    }
    // Usually not our child: it is waited for by polling. If it is (a Cluster of this process Detached
    // it), it is reaped once dead: PostgreSQL takes a zombie for a live postmaster and would refuse to
    // start in the directory. No runtime::Child holds it any more, so nobody else would reap it.
    const auto reap = [pid = f->pid] { ::waitpid(pid, nullptr, WNOHANG); };
    if (::kill(f->pid, 0) != 0 && errno == EPERM) {
        return MakeError(ErrorCode::kPermissionDenied,
                         fmt::format("cluster: cannot stop the server in {} (pid {}): {}", dir_in, f->pid,
                                     std::strerror(EPERM)));
    }
    if (grace <= Duration::zero()) {
        KillTree(f->pid);
        reap();
        RemoveSegmentOfDeadServer(data_dir);
        return Ok();
    }
    // A paused server would not act on SIGINT; its backends sit in sessions of their own.
    for (pid_t p : Descendants(f->pid)) {
        ::kill(p, SIGCONT);
    }
    ::kill(f->pid, SIGCONT);
    ::kill(f->pid, SIGINT);  // if it exited meanwhile, the loop below sees it gone
    const SteadyTime deadline = SteadyClock::now() + grace;
    while (Alive(f->pid)) {
        const SteadyTime now = SteadyClock::now();
        if (now >= deadline) {
            KillTree(f->pid);
            reap();
            RemoveSegmentOfDeadServer(data_dir);
            return MakeError(ErrorCode::kDeadlineExceeded,
                             fmt::format("cluster: postgres in {} (pid {}) did not shut down within {} ms; "
                                         "killed it",
                                         dir_in, f->pid, std::chrono::duration_cast<Millis>(grace).count()));
        }
        std::this_thread::sleep_for(std::min<Duration>(kPollInterval, deadline - now));
    }
    reap();
    return Ok();
}

std::vector<std::string> Cluster::Command(std::vector<std::string> argv) const {
    if (run_uid_ == static_cast<uid_t>(-1)) {
        return argv;
    }
    // setpriv execs the binary: the child's pid is the postmaster's own.
    std::vector<std::string> out{"/usr/bin/setpriv", fmt::format("--reuid={}", run_uid_),
                                 fmt::format("--regid={}", run_gid_), "--init-groups", "--"};
    out.insert(out.end(), std::make_move_iterator(argv.begin()), std::make_move_iterator(argv.end()));
    return out;
}

Status Cluster::Initdb(SteadyTime deadline) {
    // initdb refuses a non-empty directory, so whatever a failed run leaves may be removed.
    std::error_code ec;
    const bool fresh = !fs::exists(data_dir_, ec) || fs::is_empty(data_dir_, ec);
    std::vector<std::string> argv{bin_dir_ + "/initdb",
                                  "-D",
                                  data_dir_,
                                  fmt::format("--username={}", kClusterUser),
                                  "--auth=trust",
                                  "--encoding=UTF8",
                                  "--locale=C",
                                  "--no-instructions"};
    if (!fsync_) {
        argv.push_back("--no-sync");
    }
    const size_t log_offset = FileSize(log_path_);
    COGS_ASSIGN_OR_RETURN(runtime::Child initdb,
                          runtime::Child::Spawn(Command(argv), {.log_path = log_path_}));
    const auto status = initdb.Wait(std::max<Duration>(deadline - SteadyClock::now(), Duration::zero()));
    if (status == 0) {
        return Ok();
    }
    initdb.Signal(SIGKILL);
    const int exit_status = initdb.Wait();
    if (fresh) {
        // initdb writes PG_VERSION early: a half-made directory would pass for a finished one.
        fs::remove_all(data_dir_, ec);
    }
    if (!status) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         fmt::format("cluster: initdb {} did not finish in time", data_dir_));
    }
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("cluster: initdb {} failed (exit status {}); {} ends with:\n{}", data_dir_,
                                 exit_status, log_path_, LogSince(log_path_, log_offset, kLogLines)));
}

std::vector<std::string> Cluster::ServerCommand() const {
    std::vector<std::string> argv{bin_dir_ + "/postgres", "-D", data_dir_, "-k", dir_, "-p",
                                  std::to_string(port_)};
    std::vector<std::pair<std::string, std::string>> settings{
        {"listen_addresses", "127.0.0.1"},
        {"unix_socket_permissions", "0700"},
        {"fsync", fsync_ ? "on" : "off"},
        {"max_connections", "200"},
        // See the header: files in the data dir, not /dev/shm, where a killed server leaks them.
        {"dynamic_shared_memory_type", "mmap"},
        {"timezone", "UTC"},
        {"log_timezone", "UTC"},
    };
    settings.insert(settings.end(), settings_.begin(), settings_.end());
    for (const auto& [name, value] : settings) {
        argv.push_back("-c");
        argv.push_back(fmt::format("{}={}", name, value));
    }
    return Command(std::move(argv));
}

Status Cluster::WaitForOldServer(SteadyTime deadline) const {
    const auto f = ReadPidFile(data_dir_);
    if (!f) {
        return Ok();
    }
    // A postmaster this object started has been reaped by now, so a live one is somebody else's: an
    // orphan of a `cogs dev` that was killed, or a server started by hand.
    if (f->pid != ::getpid() && ServerRuns(*f, data_dir_)) {
        return MakeError(
            ErrorCode::kFailedPrecondition,
            fmt::format("cluster: a PostgreSQL server (pid {}, from {}/postmaster.pid) still runs in "
                        "{}; stop it first (kill -INT {})",
                        f->pid, data_dir_, data_dir_, f->pid));
    }
    // After a crash PostgreSQL refuses to start while any old process still holds the old segment.
    while (Attached(*f) > 0) {
        if (SteadyClock::now() >= deadline) {
            return MakeError(
                ErrorCode::kDeadlineExceeded,
                fmt::format("cluster: {} processes of the old server still hold its shared memory "
                            "(System V id {})",
                            Attached(*f), f->shm_id));
        }
        std::this_thread::sleep_for(kPollInterval);
    }
    return Ok();
}

Status Cluster::StartServer(SteadyTime deadline, bool retry_port) {
    // If the postmaster died while paused (killed from outside), its stopped processes would hold
    // the shared memory for ever: once continued, they notice its death and exit.
    Resume();
    COGS_TRY(WaitForOldServer(deadline));
    for (int attempt = 1;; ++attempt) {
        const std::string ping = ConnInfo("postgres") + " connect_timeout=2";
        const size_t log_offset = FileSize(log_path_);
        COGS_ASSIGN_OR_RETURN(postmaster_, runtime::Child::Spawn(ServerCommand(), {.log_path = log_path_}));
        for (;;) {
            if (!postmaster_.Running()) {
                const std::string log = LogSince(log_path_, log_offset, kLogLines);
                if (retry_port && attempt < 3 &&
                    log.find("could not create any TCP/IP sockets") != std::string::npos) {
                    // Someone took the port between PickFreePort and the server's bind.
                    COGS_ASSIGN_OR_RETURN(port_, PickFreePort());
                    break;
                }
                return MakeError(
                    ErrorCode::kUnavailable,
                    fmt::format("cluster: postgres exited (status {}) while starting; {} ends with:\n{}",
                                postmaster_.exit_status().value_or(-1), log_path_, log));
            }
            if (::PQping(ping.c_str()) == PQPING_OK) {
                return Ok();
            }
            const SteadyTime now = SteadyClock::now();
            if (now >= deadline) {
                KillAll();
                return MakeError(
                    ErrorCode::kDeadlineExceeded,
                    fmt::format("cluster: postgres did not accept connections in time; {} ends with:\n{}",
                                log_path_, LogSince(log_path_, log_offset, kLogLines)));
            }
            std::this_thread::sleep_for(std::min<Duration>(kPollInterval, deadline - now));
        }
    }
}

Status Cluster::Stop(Duration grace) {
    if (!owned_) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("cluster: the server in {} is attached, not owned: not stopped", dir_));
    }
    Resume();  // a stopped process would not act on SIGINT
    if (!postmaster_.Running()) {
        return Ok();
    }
    postmaster_.Signal(SIGINT);
    if (postmaster_.Wait(grace)) {
        return Ok();
    }
    KillAll();
    return MakeError(ErrorCode::kDeadlineExceeded,
                     fmt::format("cluster: postgres did not shut down within {} ms; killed it",
                                 std::chrono::duration_cast<Millis>(grace).count()));
}

void Cluster::Kill() {
    if (postmaster_.Running()) {
        KillAll();
    }
}

void Cluster::KillAll() {
    const pid_t pid = postmaster_.pid();
    if (pid <= 0) {
        return;
    }
    // A SIGKILLed process takes a moment to exit and let go of the shared memory; once Kill returns,
    // every process of the server is gone (or a zombie, which init reaps).
    KillTree(pid);
    postmaster_.Wait();
    paused_ = false;
    paused_procs_.clear();
}

void Cluster::Pause() {
    if (paused_ || !postmaster_.Running()) {
        return;
    }
    const pid_t pid = postmaster_.pid();
    const SteadyTime deadline = SteadyClock::now() + kStopSettle;
    // The postmaster first: once it is stopped it forks nothing, so the list of its children is final.
    ::kill(pid, SIGSTOP);
    WaitStopped(pid, deadline);
    paused_procs_ = Descendants(pid);
    for (pid_t p : paused_procs_) {
        ::kill(p, SIGSTOP);
    }
    for (pid_t p : paused_procs_) {
        WaitStopped(p, deadline);
    }
    paused_ = true;
}

void Cluster::Resume() {
    if (!paused_) {
        return;
    }
    paused_ = false;
    // The processes stopped by Pause, also when their postmaster has died since (their pids may then
    // have been reused: SIGCONT does nothing to a process that is not stopped), then the postmaster.
    std::vector<pid_t> procs = std::move(paused_procs_);
    paused_procs_.clear();
    if (const pid_t pid = postmaster_.pid(); pid > 0) {
        for (pid_t p : Descendants(pid)) {
            procs.push_back(p);
        }
        procs.push_back(pid);
    }
    for (pid_t p : procs) {
        ::kill(p, SIGCONT);
    }
}

Status Cluster::Restart(Duration timeout) {
    if (!owned_) {
        return MakeError(
            ErrorCode::kFailedPrecondition,
            fmt::format("cluster: the server in {} is attached, not owned: not restarted", dir_));
    }
    if (postmaster_.Running()) {
        return MakeError(
            ErrorCode::kFailedPrecondition,
            fmt::format("cluster: postgres already runs in {} (pid {})", dir_, postmaster_.pid()));
    }
    return StartServer(SteadyClock::now() + timeout, /*retry_port=*/false);
}

void Cluster::Detach() {
    if (!owned_ || !postmaster_.Running()) {
        return;
    }
    Resume();
    attached_pid_ = postmaster_.Release();
    owned_ = false;
}

bool Cluster::Running() { return owned_ ? postmaster_.Running() : Alive(attached_pid_); }

pid_t Cluster::pid() const { return owned_ ? postmaster_.pid() : attached_pid_; }

std::string Cluster::ConnInfo(const std::string& db) const {
    if (db.empty()) {
        return fmt::format("host={} port={} user={}", ConnValue(dir_), port_, kClusterUser);
    }
    return fmt::format("host={} port={} dbname={} user={}", ConnValue(dir_), port_, ConnValue(db),
                       kClusterUser);
}

std::string Cluster::Url(const std::string& db) const {
    return fmt::format("postgresql://{}@127.0.0.1:{}/{}", kClusterUser, port_, PercentEncode(db));
}

Status Cluster::CreateDatabase(const std::string& name) {
    if (name.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "cluster: empty database name");
    }
    std::unique_ptr<PGconn, decltype(&::PQfinish)> conn(
        ::PQconnectdb((ConnInfo("postgres") + " connect_timeout=10").c_str()), &::PQfinish);
    if (::PQstatus(conn.get()) != CONNECTION_OK) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("cluster: connect to {}: {}", dir_,
                                                              TrimRight(::PQerrorMessage(conn.get()))));
    }
    char* ident = ::PQescapeIdentifier(conn.get(), name.data(), name.size());
    if (ident == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("cluster: bad database name '{}': {}", name,
                                                                  TrimRight(::PQerrorMessage(conn.get()))));
    }
    const std::string sql = fmt::format("CREATE DATABASE {}", ident);
    ::PQfreemem(ident);
    std::unique_ptr<PGresult, decltype(&::PQclear)> res(::PQexec(conn.get(), sql.c_str()), &::PQclear);
    if (::PQresultStatus(res.get()) == PGRES_COMMAND_OK) {
        return Ok();
    }
    const char* state = ::PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    // 42P04 duplicate_database; 23505 unique_violation when a concurrent CREATE DATABASE won the race.
    if (state != nullptr && (std::strcmp(state, "42P04") == 0 || std::strcmp(state, "23505") == 0)) {
        return Ok();
    }
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("cluster: {}: {}", sql, TrimRight(::PQerrorMessage(conn.get()))));
}

}  // namespace cogs::pg
