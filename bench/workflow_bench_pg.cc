#include "bench/workflow_bench_pg.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cogs/pg/cluster.h"
#include "cogs/pg/conn.h"

namespace cogs::bench {
namespace {

namespace fs = std::filesystem;

struct ProcTimes {
    pid_t ppid = 0;
    double own_s = 0;       // utime + stime
    double children_s = 0;  // cutime + cstime: its children that it has reaped
};

// /proc/<pid>/stat; false if the process is gone.
bool ReadStat(pid_t pid, ProcTimes& t) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) {
        return false;
    }
    // The command name, in parentheses, may hold spaces: the fields start after the last ')'.
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) {
        return false;
    }
    std::istringstream fields(line.substr(paren + 2));
    std::vector<std::string> f;  // f[0] is field 3 (state) of proc(5)
    std::string s;
    while (f.size() < 15 && fields >> s) {
        f.push_back(s);
    }
    if (f.size() < 15) {
        return false;
    }
    const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
    t.ppid = static_cast<pid_t>(std::stol(f[1]));
    t.own_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
    t.children_s = (std::stod(f[13]) + std::stod(f[14])) / tick;
    return true;
}

bool IsPostgres(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/cmdline", pid));
    std::string cmd;
    return std::getline(in, cmd) && cmd.find("postgres") != std::string::npos;
}

// The running server's postmaster, for the handlers below.
std::atomic<pid_t> g_postmaster{0};
constexpr int kFatalSignals[] = {SIGINT, SIGTERM, SIGABRT};

// Ctrl-C, a kill, or a failed check (abort) would leave the server running: the postmaster is in a
// process group of its own. Ask it for a fast shutdown on the way out (the next run removes the
// directory); then die of the signal as if no handler were there.
extern "C" void StopServerAndDie(int sig) {
    const int saved = errno;
    if (const pid_t pid = g_postmaster.load(); pid > 0) {
        ::kill(pid, SIGINT);
    }
    errno = saved;
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

}  // namespace

Result<std::unique_ptr<PgBenchServer>> PgBenchServer::Start(
    const std::string& dir, std::vector<std::pair<std::string, std::string>> settings) {
    std::unique_ptr<PgBenchServer> s(new PgBenchServer());
    std::error_code ec;
    s->dir_ = fs::absolute(dir, ec).string();
    s->settings_ = std::move(settings);
    // A fresh cluster (initdb), never an earlier run's data; but not from under a server that an
    // interrupted run asked to stop and that is still shutting down.
    std::ifstream pid_file(s->dir_ + "/data/postmaster.pid");
    if (pid_t old = 0; pid_file >> old && old > 0 && IsPostgres(old)) {
        s->dir_.clear();  // not ours to remove
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("a PostgreSQL server (pid {}) of an earlier run still runs in {}; wait "
                                     "for it to stop, or kill -INT {}",
                                     old, dir, old));
    }
    fs::remove_all(s->dir_, ec);
    pg::ClusterOptions co;
    co.dir = s->dir_;
    co.fsync = true;  // durability as in production
    co.settings = s->settings_;
    auto cluster = pg::Cluster::Start(co, std::chrono::seconds(120));
    if (!cluster) {
        return MakeError(cluster.error());  // s's destructor removes the directory
    }
    s->cluster_ = std::move(*cluster);
    g_postmaster.store(s->cluster_->pid());
    for (int sig : kFatalSignals) {
        ::signal(sig, StopServerAndDie);
    }
    return s;
}

PgBenchServer::~PgBenchServer() {
    if (cluster_ != nullptr) {
        for (int sig : kFatalSignals) {
            ::signal(sig, SIG_DFL);
        }
        g_postmaster.store(0);
        if (Status st = cluster_->Stop(std::chrono::seconds(30)); !st) {
            fmt::print(stderr, "cogs-bench: stopping PostgreSQL: {}\n", st.error().message);
        }
        cluster_.reset();
    }
    if (!dir_.empty()) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
}

const std::string& PgBenchServer::log_path() const { return cluster_->log_path(); }

Result<std::string> PgBenchServer::NewDatabase(const std::string& phase) {
    current_ = fmt::format("bench_{}_{}", ++databases_, phase);
    COGS_TRY(cluster_->CreateDatabase(current_));
    return cluster_->ConnInfo(current_);
}

void PgBenchServer::DropDatabase() {
    if (current_.empty()) {
        return;
    }
    const std::string db = std::exchange(current_, "");
    auto conn = pg::Conn::Connect(cluster_->ConnInfo(pg::kClusterDatabase), std::chrono::seconds(10));
    Status st = conn ? (*conn)->Exec(fmt::format("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db),
                                     SteadyClock::now() + std::chrono::seconds(60))
                     : MakeError(conn.error());
    if (!st) {
        // Harmless for the figures: the cluster only grows.
        fmt::print(stderr, "cogs-bench: dropping database {}: {}\n", db, st.error().message);
    }
}

double PgBenchServer::CpuSeconds() const {
    const pid_t root = cluster_->pid();
    if (root <= 0) {
        return 0;
    }
    std::map<pid_t, ProcTimes> procs;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        ProcTimes t;
        if (ReadStat(static_cast<pid_t>(std::stol(name)), t)) {
            procs.emplace(static_cast<pid_t>(std::stol(name)), t);
        }
    }
    auto it = procs.find(root);
    if (it == procs.end()) {
        return 0;
    }
    double total = it->second.own_s + it->second.children_s;
    // The postmaster's descendants (PostgreSQL's processes are its children; any deeper level too).
    for (const auto& [pid, t] : procs) {
        for (pid_t p = t.ppid; p > 1;) {
            if (p == root) {
                total += t.own_s;
                break;
            }
            auto parent = procs.find(p);
            p = parent == procs.end() ? 0 : parent->second.ppid;
        }
    }
    return total;
}

}  // namespace cogs::bench
