// A server's life once started: stopping, killing, pausing and restarting the server this object
// started, and the servers it does not own (Attach, Detach, StopDir). The map is in cluster.cc.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "cogs/pg/cluster.h"
#include "cogs/pg/internal/cluster_procs.h"

namespace cogs::pg {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using internal::Alive;
using internal::Descendants;
using internal::KillTree;
using internal::kPollInterval;
using internal::kStopSettle;
using internal::ReadPidFile;
using internal::RemoveSegmentOfDeadServer;
using internal::ServerRuns;
using internal::WaitStopped;

constexpr Duration kDestructorGrace = 30s;

}  // namespace

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

}  // namespace cogs::pg
