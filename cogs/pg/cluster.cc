// Cluster (cluster.h), declared once; its methods are spread over files by concern, the way
// RocksDB spreads DBImpl:
//
//   cluster.cc           making a server: the binaries, the directory and its owner, initdb, the
//                        server's command line, starting it (Start; StartServer, which Restart
//                        calls too), and its addresses (ConnInfo, Url, CreateDatabase)
//   cluster_control.cc   a server's life once started: Stop, Kill, Pause, Resume, Restart, the
//                        destructor, and the servers this object does not own (Attach, Detach,
//                        StopDir)
//   cluster_procs.cc     the processes as the system shows them: /proc, postmaster.pid, the System V
//                        segment (internal/cluster_procs.h)
#include "cogs/pg/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cogs/pg/internal/cluster_procs.h"
#include "cogs/runtime/files.h"

namespace cogs::pg {
namespace {

namespace fs = std::filesystem;
using internal::Attached;
using internal::kPollInterval;
using internal::ReadPidFile;
using internal::ServerRuns;

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
