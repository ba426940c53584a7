// A private PostgreSQL 15 cluster in a directory: initdb'd on first use, started as a child of this
// process, stopped (or killed, paused, restarted) on request.
//
// Who uses it: the PostgreSQL tests (one server per ctest run: the ctest fixture `pg` starts it with
// test/support/pg_test_server.cc, which Detaches it, and stops it with StopDir; a test binary run by
// hand starts its own: test/support/private_pg.h), `cogs dev --store postgres` (a cluster in the data
// dir that Ctrl-C stops) and the chaos tool, which SIGKILLs, SIGSTOPs and restarts the server under a
// running cloud.
//
// Layout of `dir`:
//     dir/data/              the data directory (initdb'd when it has no PG_VERSION)
//     dir/.s.PGSQL.<port>    the unix socket (socket_dir() is dir itself, mode 0700)
//     dir/postgres.log       initdb's and the server's output (ClusterOptions::log_path)
//
// Security: initdb makes one superuser, `cogs`, with trust authentication: whoever reaches the server
// is let in without a password. That is acceptable only because the server is private: it listens on
// 127.0.0.1 alone and its unix socket sits in a 0700 directory. Never point it at a shared directory
// or open it to other addresses (settings can, so don't).
//
// Running as root (CI does): initdb and postgres refuse to run as root, so `dir` is handed to the
// `postgres` system user (made by Debian's postgresql-15 package) and both run through
// `setpriv --reuid=postgres`. Every directory above `dir` must then be searchable by that user (a
// dir under /tmp is; one under /root is not: Start says so). Not root: they run as the current user.
//
// Binaries: the directory named by the environment variable COGS_PG_BIN, else the highest
// /usr/lib/postgresql/<version>/bin (Debian's layout); scripts/install-deps installs them.
//
// Processes: the postmaster runs in its own process group, so a Ctrl-C typed at `cogs dev` reaches
// only cogs, which stops the server in its own time. PostgreSQL puts each backend and auxiliary
// process in a session of its own (setsid), so signalling the postmaster's group would not reach
// them: Kill, Pause and Resume find them as the postmaster's descendants in /proc instead.
//
// Shared memory: dynamic shared memory lives in files under dir/data/pg_dynshmem
// (dynamic_shared_memory_type=mmap) rather than in /dev/shm, where a killed server that is never
// restarted (the end of every chaos test) would leave about 1 MB behind until the next reboot.
//
// Threading: a Cluster is owned by one thread; none of its methods may be called concurrently. Every
// method blocks (Start for up to its timeout, Stop for up to its grace): call them from a blocking
// pool or a main thread, never from an I/O thread. The process that owns a Cluster must not reap
// children behind runtime::Child's back (see cogs/runtime/process.h).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/runtime/process.h"

namespace cogs::pg {

// The superuser every cluster is made with; ConnInfo and Url connect as it.
inline constexpr char kClusterUser[] = "cogs";

// The database Start creates (if missing) on every start.
inline constexpr char kClusterDatabase[] = "cogs";

struct ClusterOptions {
    // Data in dir/data, the unix socket in dir (created, mode 0700, if missing). Relative paths are
    // made absolute. The socket's path, dir + "/.s.PGSQL.<port>", must stay under 100 characters
    // (the kernel's limit is 107): a deep dir is refused with kInvalidArgument.
    std::string dir{};
    // The TCP port on 127.0.0.1. 0: a free one is picked (bind port 0, read it, close) and kept for
    // every Restart; if another process takes it before the server binds it, Start picks again.
    int port = 0;
    // fsync=off is for tests of semantics only: committed data survives Kill (a process crash) either
    // way, but not a crash of the machine. Benchmarks keep it on. Off also runs initdb --no-sync.
    bool fsync = true;
    // Where initdb's and the server's stdout and stderr are appended; "": dir/postgres.log.
    std::string log_path{};
    // Extra server settings, passed as `-c name=value` after the defaults (so they override them).
    std::vector<std::pair<std::string, std::string>> settings{};
};

// The directory holding initdb and postgres: $COGS_PG_BIN if set, else the highest
// /usr/lib/postgresql/<version>/bin that has both.
// Errors: kNotFound naming scripts/install-deps (or COGS_PG_BIN, when that one lacks them).
Result<std::string> ServerBinDir();

class Cluster {
public:
    // Runs initdb if dir/data has no PG_VERSION, starts the server, waits until it accepts
    // connections, then creates the database `cogs` if it is missing. The whole takes at most
    // `timeout`. Measured on a 2-core VM: a first Start ~1.8 s (initdb ~1.1 s with --no-sync, the
    // server ~0.25 s, CREATE DATABASE ~0.25 s); a Start or Restart of an existing cluster ~0.25 s.
    // Errors: kNotFound if the binaries are missing; kInvalidArgument for an empty dir or one whose
    // socket path is too long; kFailedPrecondition if a server (one this object did not start) still
    // runs in the directory, or, as root, if the postgres user cannot reach dir; kUnavailable if
    // initdb or the server fails (the message ends with the log's last lines); kDeadlineExceeded at
    // `timeout` (the half-started server is killed). On error nothing is left running.
    static Result<std::unique_ptr<Cluster>> Start(const ClusterOptions& options, Duration timeout);

    // A handle on a server that another process started in `dir` with Start (a ctest fixture's, a
    // `cogs dev`'s): its port and socket come from dir/data/postmaster.pid. It does not own the
    // server: its destructor leaves it running, Stop and Restart answer kFailedPrecondition, and
    // Kill, Pause and Resume do nothing. ConnInfo, Url, CreateDatabase, Running and pid work.
    // Errors: kUnavailable if no server runs there or it does not accept connections.
    static Result<std::unique_ptr<Cluster>> Attach(const std::string& dir);

    // Stops the server that runs in `dir` without a handle on it: one another process started and
    // Detached (the ctest fixture's), or the orphan of a process that died. Its postmaster, found in
    // dir/data/postmaster.pid, is continued (if paused) and asked for a fast shutdown (SIGINT, as
    // Stop); if it has not exited after `grace`, it and every process it started are SIGKILLed. A
    // zero `grace` asks for no shutdown: they are SIGKILLed at once (a crash, as Kill), which saves
    // the shutdown checkpoint (seconds, after a test suite) for a server whose data is removed next.
    // Returns once they are all gone (a zombie counts as gone: it is its parent's to reap, but a
    // postmaster this process Detached is reaped here), having removed the System V segment of a
    // server that crashed, as the destructor does. Ok when no server runs there: no postmaster.pid,
    // or its pid is dead or names a process whose working directory is not dir/data (a pid reused
    // since the server died: never signalled).
    // Errors: kDeadlineExceeded if it had to be killed after a non-zero grace (the data is safe: the
    // next start recovers); kPermissionDenied if the server is another user's; kInvalidArgument for
    // an empty dir.
    static Status StopDir(const std::string& dir, Duration grace);

    // Stops the server as Stop does, with a grace of 30 s; the data stays. If the server crashed
    // (Kill, or it died some other way) and was not restarted, also removes the small System V
    // segment it left behind.
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    // Fast shutdown: SIGINT (a paused server is resumed first); the server rolls back open
    // transactions, disconnects clients, writes a checkpoint and exits. If it has not exited after
    // `grace`, it and its processes are SIGKILLed. Either way the server is down when Stop returns.
    // A server that is not running is left alone (Ok).
    // Errors: kDeadlineExceeded if it had to be killed (the data is safe: the next start recovers).
    Status Stop(Duration grace);

    // A crash: SIGKILLs the postmaster and every process it started (a paused server too), as the
    // OOM killer or a dying machine would, and returns once they are all gone (~10 ms). What was
    // committed is there after Restart (with fsync off: as long as the machine stays up). No-op if
    // the server is not running.
    void Kill();

    // SIGSTOPs the postmaster and then each of its processes, and returns once all of them are
    // stopped: open connections hang (a query sent gets no answer) and new ones are not accepted
    // (they connect at the socket level, then wait). Resume sends SIGCONT to all of them. Each is a
    // no-op when the server is not running, or is already paused (Pause) or not paused (Resume).
    void Pause();
    void Resume();

    // Starts the server again on the same port and directory, after Stop or Kill (or after the
    // postmaster died some other way, paused or not), and waits up to `timeout` until it accepts
    // connections. After a crash it first waits for the old server's processes to let go of its
    // shared memory, since PostgreSQL refuses to start while any of them still holds it; the server
    // then recovers from its WAL. Errors: kFailedPrecondition if this server still runs, or another
    // one does in the directory; the rest as Start.
    Status Restart(Duration timeout);

    // Lets the server outlive this object: from here on the object is a handle like Attach's (its
    // destructor leaves the server running; Stop and Restart answer kFailedPrecondition; Kill, Pause
    // and Resume do nothing) and StopDir(socket_dir(), ...) is how the server is stopped. For a
    // process that starts a server for others and exits (test/support/pg_test_server.cc). A paused
    // server is resumed first: only this object knows which of its processes Pause stopped. The
    // postmaster is no longer reaped by this process, except by StopDir: if it exits otherwise while
    // this process lives, it stays a zombie until this process exits too. No-op if the server is
    // not running (the object keeps owning the directory) or the object is already a handle.
    void Detach();

    // Whether the server process is alive (a paused one is). Reaps it if it has exited.
    bool Running();

    int port() const { return port_; }
    // The directory holding the unix socket: ClusterOptions::dir, made absolute.
    const std::string& socket_dir() const { return dir_; }
    const std::string& data_dir() const { return data_dir_; }
    const std::string& log_path() const { return log_path_; }

    // The libpq connection string over the unix socket:
    //     host=<socket_dir> port=<port> dbname=<db> user=cogs
    // (values quoted as libpq wants when they hold spaces or quotes). An empty `db` leaves dbname out
    // (libpq would then pick the database named like the user, `cogs`): the server's address for a
    // caller that appends its own " dbname=...".
    std::string ConnInfo(const std::string& db = kClusterDatabase) const;

    // postgresql://cogs@127.0.0.1:<port>/<db> (TCP, what a replica on another process or machine
    // would be given; still only reachable from this machine).
    std::string Url(const std::string& db = kClusterDatabase) const;

    // Creates database `name` (owned by cogs, from template1) unless it exists: idempotent, also
    // against a concurrent creator. Errors: kInvalidArgument for an empty name; kUnavailable if the
    // server cannot be reached or refuses (the message is PostgreSQL's).
    Status CreateDatabase(const std::string& name);

    // The postmaster's pid; -1 when it is not running (this object's own server; an attached or
    // detached one's pid stays what postmaster.pid said, or what it was at Detach).
    pid_t pid() const;

private:
    Cluster() = default;
    // `argv` as it must be run: through setpriv as the postgres user when this process is root.
    std::vector<std::string> Command(std::vector<std::string> argv) const;
    // Runs initdb on data_dir_ (removing what a failed run leaves in a directory that was empty).
    Status Initdb(SteadyTime deadline);
    // Fails at once if another server runs in data_dir_; waits for the processes of a crashed one to
    // let go of its shared memory.
    Status WaitForOldServer(SteadyTime deadline) const;
    // Waits for a previous server's processes to be gone, spawns the postmaster and waits until it
    // answers. `retry_port`: pick another port if the chosen one turns out to be taken.
    Status StartServer(SteadyTime deadline, bool retry_port);
    // SIGKILLs the postmaster and its descendants, and reaps the postmaster.
    void KillAll();
    std::vector<std::string> ServerCommand() const;

    std::string bin_dir_;
    std::string dir_;
    std::string data_dir_;
    std::string log_path_;
    int port_ = 0;
    bool fsync_ = true;
    std::vector<std::pair<std::string, std::string>> settings_;
    // Root only: run the binaries as this user and group (setpriv); -1 when not root.
    uid_t run_uid_ = static_cast<uid_t>(-1);
    gid_t run_gid_ = static_cast<gid_t>(-1);
    runtime::Child postmaster_;
    // False for Attach and after Detach: the server (attached_pid_) is not this object's child and is
    // never signalled by it.
    bool owned_ = true;
    pid_t attached_pid_ = -1;
    bool paused_ = false;
    // The postmaster's processes that Pause stopped (Resume continues them even if it has died since).
    std::vector<pid_t> paused_procs_;
};

}  // namespace cogs::pg
