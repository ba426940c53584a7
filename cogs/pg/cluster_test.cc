#include "cogs/pg/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::pg {
namespace {

using namespace std::chrono_literals;

constexpr Duration kStartTimeout = 60s;

using ConnPtr = std::unique_ptr<PGconn, decltype(&::PQfinish)>;

ConnPtr Connect(const std::string& conninfo) {
    const bool url = conninfo.rfind("postgresql://", 0) == 0;
    return ConnPtr(::PQconnectdb((conninfo + (url ? "?" : " ") + "connect_timeout=10").c_str()), &::PQfinish);
}

// Runs `sql` on `conn`; the first column of every row, or the server's error.
Result<std::vector<std::string>> Query(PGconn* conn, const std::string& sql) {
    if (::PQstatus(conn) != CONNECTION_OK) {
        return MakeError(ErrorCode::kUnavailable, ::PQerrorMessage(conn));
    }
    std::unique_ptr<PGresult, decltype(&::PQclear)> res(::PQexec(conn, sql.c_str()), &::PQclear);
    const auto status = ::PQresultStatus(res.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        return MakeError(ErrorCode::kInternal, ::PQerrorMessage(conn));
    }
    std::vector<std::string> rows;
    for (int i = 0; i < ::PQntuples(res.get()); ++i) {
        rows.emplace_back(::PQgetvalue(res.get(), i, 0));
    }
    return rows;
}

// Runs `sql` on a new connection.
Result<std::vector<std::string>> Query(const std::string& conninfo, const std::string& sql) {
    ConnPtr conn = Connect(conninfo);
    return Query(conn.get(), sql);
}

// Whether a new connection is accepted (authenticated and ready) within `timeout`. Unlike PQping's
// connect_timeout (2 s at least), this waits only as long as asked.
bool AcceptsWithin(const std::string& conninfo, Duration timeout) {
    ConnPtr conn(::PQconnectStart(conninfo.c_str()), &::PQfinish);
    if (conn == nullptr || ::PQstatus(conn.get()) == CONNECTION_BAD) {
        return false;
    }
    const SteadyTime deadline = SteadyClock::now() + timeout;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK) {
            return true;
        }
        if (st == PGRES_POLLING_FAILED) {
            return false;
        }
        const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
        pollfd p{::PQsocket(conn.get()), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT),
                 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
            return false;
        }
        st = ::PQconnectPoll(conn.get());
    }
}

// Whether process `pid` is gone: no such process, or a zombie (that orphans of a killed server are
// reaped is init's business).
bool Gone(pid_t pid) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
        return true;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    return close == std::string::npos || line.substr(close + 2, 1) == "Z";
}

char State(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    return close == std::string::npos ? '\0' : line[close + 2];
}

// Every process of the server that it lists itself (backends, checkpointer, walwriter, ...).
std::vector<pid_t> ServerPids(const Cluster& c) {
    std::vector<pid_t> pids;
    auto rows = Query(c.ConnInfo(), "SELECT pid FROM pg_stat_activity");
    EXPECT_TRUE(rows) << rows.error().ToString();
    if (rows) {
        for (const auto& r : *rows) {
            pids.push_back(std::stoi(r));
        }
    }
    return pids;
}

// The System V segment id in the server's postmaster.pid (line 7: "key id").
int SegmentId(const Cluster& c) {
    auto text = runtime::ReadFile(c.data_dir() + "/postmaster.pid");
    std::istringstream in(text ? *text : "");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (n == 7) {
            long key = 0;
            int id = -1;
            std::istringstream(line) >> key >> id;
            return id;
        }
    }
    return -1;
}

// Sets an environment variable for one scope.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

class ClusterTest : public ::testing::Test {
protected:
    // A new cluster in dir_ (fsync off unless asked: these tests are about semantics); a failed
    // start fails the test and answers nullptr.
    std::unique_ptr<Cluster> StartCluster(bool fsync = false) {
        auto c = Cluster::Start({.dir = dir_.path(), .fsync = fsync}, kStartTimeout);
        EXPECT_TRUE(c) << c.error().ToString();
        return c ? std::move(*c) : nullptr;
    }

    // A server a test Detached is stopped even when the test failed before stopping it.
    ~ClusterTest() override { (void)Cluster::StopDir(dir_.path(), 30s); }

    // Declared first, destroyed last: every cluster of a test is gone before its directory.
    const cogs::testing::TempDir dir_{"cogs-pg"};
};

TEST_F(ClusterTest, StartsAndAnswersOverTheSocketAndTcp) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->Running());
    EXPECT_GT(c->pid(), 0);
    EXPECT_GT(c->port(), 0);
    EXPECT_EQ(c->socket_dir(), dir_.path());
    EXPECT_EQ(c->ConnInfo(),
              "host=" + dir_.path() + " port=" + std::to_string(c->port()) + " dbname=cogs user=cogs");
    EXPECT_EQ(c->Url("x"), "postgresql://cogs@127.0.0.1:" + std::to_string(c->port()) + "/x");
    // Without a database: the server's address, for a caller that adds its own dbname.
    EXPECT_EQ(c->ConnInfo(""), "host=" + dir_.path() + " port=" + std::to_string(c->port()) + " user=cogs");
    EXPECT_TRUE(Query(c->ConnInfo("") + " dbname=postgres", "SELECT 1"));

    // The database `cogs` exists, reached as user cogs over the unix socket and over TCP.
    auto rows = Query(c->ConnInfo(), "SELECT 1");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"1"});
    rows = Query(c->Url(), "SELECT current_user || '@' || current_database()");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"cogs@cogs"});
    rows = Query(c->ConnInfo(), "SHOW max_connections");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"200"});

    // The socket's directory is private: trust authentication relies on it.
    struct stat st {};
    ASSERT_EQ(::stat(c->socket_dir().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(ClusterTest, CreateDatabaseIsIdempotent) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->CreateDatabase("other db"));
    EXPECT_TRUE(c->CreateDatabase("other db"));
    EXPECT_TRUE(c->CreateDatabase("cogs"));
    auto rows = Query(c->ConnInfo("other db"), "SELECT current_database()");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"other db"});
    EXPECT_EQ(c->CreateDatabase("").error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ClusterTest, KillThenRestartKeepsCommittedData) {
    auto c = StartCluster(/*fsync=*/true);
    ASSERT_NE(c, nullptr);
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "CREATE TABLE t (x int); INSERT INTO t VALUES (42)"));
    const std::vector<pid_t> pids = ServerPids(*c);
    const pid_t postmaster = c->pid();
    const int port = c->port();

    c->Kill();
    EXPECT_FALSE(c->Running());
    EXPECT_EQ(c->pid(), -1);
    EXPECT_TRUE(Gone(postmaster));
    for (pid_t p : pids) {
        EXPECT_TRUE(Gone(p)) << "server process " << p << " outlived the kill";
    }
    EXPECT_FALSE(Query(conn.get(), "SELECT 1"));  // the open connection broke
    EXPECT_EQ(::PQping(c->ConnInfo().c_str()), PQPING_NO_RESPONSE);
    c->Kill();  // no-op

    const auto t0 = SteadyClock::now();
    const Status restarted = c->Restart(kStartTimeout);
    ASSERT_TRUE(restarted) << restarted.error().ToString();
    EXPECT_LT(SteadyClock::now() - t0, 10s);
    EXPECT_EQ(c->port(), port);
    auto rows = Query(c->ConnInfo(), "SELECT x FROM t");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"42"});
    // It was a crash, recovered from the WAL, not a clean start.
    EXPECT_NE(runtime::ReadFile(c->log_path())->find("automatic recovery in progress"), std::string::npos);
    EXPECT_EQ(c->Restart(kStartTimeout).error().code, ErrorCode::kFailedPrecondition);  // it runs
}

TEST_F(ClusterTest, PauseStopsTheServerAndItsBackendsAndResumeBringsThemBack) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "SELECT 1"));
    const pid_t backend = ::PQbackendPID(conn.get());

    c->Pause();
    EXPECT_TRUE(c->Running());
    EXPECT_EQ(State(c->pid()), 'T');
    EXPECT_EQ(State(backend), 'T');  // in a session of its own, found all the same
    EXPECT_FALSE(AcceptsWithin(c->ConnInfo(), 300ms));
    c->Pause();  // no-op

    c->Resume();
    EXPECT_TRUE(AcceptsWithin(c->ConnInfo(), 10s));
    EXPECT_TRUE(Query(conn.get(), "SELECT 1"));  // the open connection lived through it
    c->Resume();                                 // no-op
}

// The chaos tool's worst case: the postmaster is SIGKILLed from outside while its backends are
// stopped. Restart continues them (they then notice the death and exit, letting go of the shared
// memory that PostgreSQL would otherwise refuse to start beside).
TEST_F(ClusterTest, RestartAfterThePostmasterDiedWhilePaused) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "CREATE TABLE t (x int); INSERT INTO t VALUES (5)"));
    const pid_t backend = ::PQbackendPID(conn.get());
    c->Pause();
    ASSERT_EQ(::kill(c->pid(), SIGKILL), 0);
    const SteadyTime deadline = SteadyClock::now() + 10s;
    while (c->Running() && SteadyClock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_FALSE(c->Running());
    EXPECT_EQ(State(backend), 'T');

    const auto t0 = SteadyClock::now();
    const Status restarted = c->Restart(kStartTimeout);
    ASSERT_TRUE(restarted) << restarted.error().ToString();
    EXPECT_LT(SteadyClock::now() - t0, 10s);
    auto rows = Query(c->ConnInfo(), "SELECT x FROM t");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"5"});
}

TEST_F(ClusterTest, StopThenRestart) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(Query(c->ConnInfo(), "CREATE TABLE t (x int); INSERT INTO t VALUES (7)"));
    const pid_t postmaster = c->pid();
    const Status stopped = c->Stop(30s);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    EXPECT_FALSE(c->Running());
    EXPECT_TRUE(Gone(postmaster));
    EXPECT_EQ(::PQping(c->ConnInfo().c_str()), PQPING_NO_RESPONSE);
    EXPECT_TRUE(c->Stop(30s));  // no-op

    const Status restarted = c->Restart(kStartTimeout);
    ASSERT_TRUE(restarted) << restarted.error().ToString();
    auto rows = Query(c->ConnInfo(), "SELECT x FROM t");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"7"});
}

TEST_F(ClusterTest, DestructorStopsEveryProcessEvenOfAPausedServer) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "SELECT 1"));
    std::vector<pid_t> pids = ServerPids(*c);
    pids.push_back(c->pid());
    EXPECT_GE(pids.size(), 5u);  // checkpointer, walwriter, ... and our backend
    c->Pause();
    c.reset();
    for (pid_t p : pids) {
        EXPECT_EQ(::kill(p, 0), -1) << "process " << p << " outlived its cluster";
        EXPECT_EQ(errno, ESRCH);
    }
    // A clean shutdown: the next start needs no recovery.
    EXPECT_FALSE(runtime::ReadFile(dir_ / "data/postmaster.pid"));
}

TEST_F(ClusterTest, AKilledServerLeavesNoSharedMemoryBehind) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    const int id = SegmentId(*c);
    ASSERT_GE(id, 0);
    shmid_ds ds{};
    ASSERT_EQ(::shmctl(id, IPC_STAT, &ds), 0);
    // The rest of its shared memory is in files of the data directory, not in /dev/shm.
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "data/pg_dynshmem")) {
        files += e.path().filename().string().rfind("mmap.", 0) == 0 ? 1 : 0;
    }
    EXPECT_GT(files, 0);
    c->Kill();
    c.reset();
    EXPECT_NE(::shmctl(id, IPC_STAT, &ds), 0);
}

TEST_F(ClusterTest, RefusesADirectoryWhereAServerRuns) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    auto second = Cluster::Start({.dir = dir_.path(), .fsync = false}, kStartTimeout);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition) << second.error().ToString();
    EXPECT_TRUE(Query(c->ConnInfo(), "SELECT 1"));  // the first one is untouched
}

TEST_F(ClusterTest, AttachReachesAServerWithoutOwningIt) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    {
        auto attached = Cluster::Attach(dir_.path());
        ASSERT_TRUE(attached) << attached.error().ToString();
        Cluster& a = **attached;
        EXPECT_EQ(a.ConnInfo("x"), c->ConnInfo("x"));
        EXPECT_EQ(a.Url(), c->Url());
        EXPECT_EQ(a.pid(), c->pid());
        EXPECT_TRUE(a.Running());
        EXPECT_TRUE(a.CreateDatabase("x"));
        EXPECT_TRUE(Query(c->ConnInfo("x"), "SELECT 1"));
        EXPECT_EQ(a.Stop(1s).error().code, ErrorCode::kFailedPrecondition);
        EXPECT_EQ(a.Restart(1s).error().code, ErrorCode::kFailedPrecondition);
        a.Kill();
        a.Pause();
    }
    EXPECT_TRUE(AcceptsWithin(c->ConnInfo(), 10s));  // untouched, also by the handle's destructor
    ASSERT_TRUE(c->Stop(30s));
    EXPECT_EQ(Cluster::Attach(dir_.path()).error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(Cluster::Attach(dir_ / "nowhere").error().code, ErrorCode::kUnavailable);
}

// The ctest fixture's server (test/support/pg_test_server.cc): started by one process, which
// Detaches it and exits, stopped by another through StopDir.
TEST_F(ClusterTest, ADetachedServerOutlivesItsHandleAndStopDirStopsIt) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(Query(c->ConnInfo(), "CREATE TABLE t (x int); INSERT INTO t VALUES (3)"));
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "SELECT 1"));
    std::vector<pid_t> pids = ServerPids(*c);
    const pid_t postmaster = c->pid();
    pids.push_back(postmaster);
    const std::string conninfo = c->ConnInfo();

    c->Pause();
    c->Detach();  // resumes it: nobody else would know which processes to continue
    EXPECT_TRUE(AcceptsWithin(conninfo, 10s));
    EXPECT_TRUE(c->Running());
    EXPECT_EQ(c->pid(), postmaster);
    EXPECT_EQ(c->Stop(1s).error().code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(c->Restart(1s).error().code, ErrorCode::kFailedPrecondition);
    c->Kill();  // a handle's: does nothing
    c->Detach();
    c.reset();
    EXPECT_TRUE(AcceptsWithin(conninfo, 10s));
    EXPECT_TRUE(Query(conn.get(), "SELECT 1"));  // the open connection lived through it all
    auto attached = Cluster::Attach(dir_.path());
    ASSERT_TRUE(attached) << attached.error().ToString();
    EXPECT_EQ((*attached)->pid(), postmaster);

    const Status stopped = Cluster::StopDir(dir_.path(), 30s);
    ASSERT_TRUE(stopped) << stopped.error().ToString();
    for (pid_t p : pids) {
        EXPECT_TRUE(Gone(p)) << "process " << p << " outlived StopDir";
    }
    EXPECT_FALSE(runtime::ReadFile(dir_ / "data/postmaster.pid"));  // a clean shutdown
    EXPECT_FALSE((*attached)->Running());
    EXPECT_TRUE(Cluster::StopDir(dir_.path(), 30s));  // nothing runs: Ok

    // The data stays for the next start.
    c = StartCluster();
    ASSERT_NE(c, nullptr);
    auto rows = Query(c->ConnInfo(), "SELECT x FROM t");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"3"});
}

TEST_F(ClusterTest, StopDirContinuesAPausedServer) {
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    ConnPtr conn = Connect(c->ConnInfo());
    ASSERT_TRUE(Query(conn.get(), "SELECT 1"));
    const pid_t backend = ::PQbackendPID(conn.get());
    const pid_t postmaster = c->pid();
    c->Detach();
    c.reset();
    // Paused behind any handle's back (a chaos run that died, say).
    ASSERT_EQ(::kill(postmaster, SIGSTOP), 0);
    ASSERT_EQ(::kill(backend, SIGSTOP), 0);

    const auto t0 = SteadyClock::now();
    const Status stopped = Cluster::StopDir(dir_.path(), 30s);
    ASSERT_TRUE(stopped) << stopped.error().ToString();  // shut down, not killed
    EXPECT_LT(SteadyClock::now() - t0, 10s);
    EXPECT_TRUE(Gone(postmaster));
    EXPECT_TRUE(Gone(backend));
}

TEST_F(ClusterTest, StopDirKillsAServerThatDoesNotShutDownInTime) {
    for (const Duration grace : {Duration(1ms), Duration::zero()}) {
        SCOPED_TRACE(std::chrono::duration_cast<Millis>(grace).count());
        auto c = StartCluster();
        ASSERT_NE(c, nullptr);
        // ~10 MB of dirty buffers: the shutdown checkpoint takes longer than the grace of 1 ms.
        ASSERT_TRUE(Query(c->ConnInfo(),
                          "CREATE TABLE IF NOT EXISTS t (x int, pad text); INSERT INTO t "
                          "SELECT g, repeat('x', 100) FROM generate_series(1, 70000) g"));
        std::vector<pid_t> pids = ServerPids(*c);
        pids.push_back(c->pid());
        const int segment = SegmentId(*c);
        ASSERT_GE(segment, 0);
        c->Detach();
        c.reset();

        const Status stopped = Cluster::StopDir(dir_.path(), grace);
        if (grace == Duration::zero()) {
            EXPECT_TRUE(stopped) << stopped.error().ToString();  // killed as asked
        } else {
            ASSERT_FALSE(stopped);
            EXPECT_EQ(stopped.error().code, ErrorCode::kDeadlineExceeded) << stopped.error().ToString();
        }
        for (pid_t p : pids) {
            EXPECT_TRUE(Gone(p)) << "process " << p << " outlived the kill";
        }
        shmid_ds ds{};
        EXPECT_NE(::shmctl(segment, IPC_STAT, &ds), 0);  // the crashed server's segment is gone too
        EXPECT_TRUE(runtime::ReadFile(dir_ / "data/postmaster.pid"));  // a crash, not a shutdown
    }
    // What was committed is there after recovery.
    auto c = StartCluster();
    ASSERT_NE(c, nullptr);
    auto rows = Query(c->ConnInfo(), "SELECT count(*) FROM t");
    ASSERT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(*rows, std::vector<std::string>{"140000"});
    EXPECT_NE(runtime::ReadFile(c->log_path())->find("automatic recovery in progress"), std::string::npos);
}

TEST_F(ClusterTest, StopDirLeavesAProcessThatOnlyHasTheServersPidAlone) {
    EXPECT_TRUE(Cluster::StopDir(dir_ / "nowhere", 1s));
    EXPECT_EQ(Cluster::StopDir("", 1s).error().code, ErrorCode::kInvalidArgument);
    // A postmaster.pid left by a crashed server whose pid now belongs to this very test process:
    // signalling it would be SIGINT to ourselves.
    std::filesystem::create_directories(dir_ / "data");
    dir_.Write("data/postmaster.pid", std::to_string(::getpid()) + "\n" + dir_ / "data" + "\n0\n5432\n" +
                                          dir_.path() + "\n127.0.0.1\n    -1         -1\nready\n");
    EXPECT_TRUE(Cluster::StopDir(dir_.path(), 1s));
    EXPECT_EQ(Cluster::Attach(dir_.path()).error().code, ErrorCode::kUnavailable);
}

TEST_F(ClusterTest, ExplainsMissingBinariesAndBadDirectories) {
    {
        ScopedEnv env("COGS_PG_BIN", dir_ / "nowhere");
        auto c = Cluster::Start({.dir = dir_ / "a"}, kStartTimeout);
        ASSERT_FALSE(c);
        EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
        EXPECT_NE(c.error().message.find("scripts/install-deps"), std::string::npos) << c.error().message;
    }
    auto bin = ServerBinDir();
    ASSERT_TRUE(bin) << bin.error().ToString();
    EXPECT_TRUE(std::filesystem::exists(*bin + "/postgres"));

    auto deep = Cluster::Start({.dir = dir_ / std::string(100, 'x')}, kStartTimeout);
    ASSERT_FALSE(deep);
    EXPECT_EQ(deep.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(Cluster::Start({.dir = ""}, kStartTimeout).error().code, ErrorCode::kInvalidArgument);

    if (::geteuid() == 0) {
        // The server runs as postgres, which cannot walk through the test's own 0700 directory.
        auto hidden = Cluster::Start({.dir = dir_ / "pg"}, kStartTimeout);
        ASSERT_FALSE(hidden);
        EXPECT_EQ(hidden.error().code, ErrorCode::kFailedPrecondition) << hidden.error().ToString();
    }
}

TEST_F(ClusterTest, ABrokenServerFailsTheStartWithItsLog) {
    // A port someone else listens on (asked for explicitly, so not picked again).
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(fd, 1), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const auto t0 = SteadyClock::now();
    auto c =
        Cluster::Start({.dir = dir_.path(), .port = ntohs(addr.sin_port), .fsync = false}, kStartTimeout);
    ::close(fd);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(c.error().message.find("Address already in use"), std::string::npos) << c.error().message;

    c = Cluster::Start({.dir = dir_.path(), .fsync = false, .settings = {{"no_such_setting", "1"}}},
                       kStartTimeout);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(c.error().message.find("no_such_setting"), std::string::npos) << c.error().message;
    EXPECT_LT(SteadyClock::now() - t0, 30s);  // noticed when it exited, not at the timeout

    // Neither left anything behind that keeps the next start from working.
    auto good = Cluster::Start({.dir = dir_.path(), .fsync = false}, kStartTimeout);
    ASSERT_TRUE(good) << good.error().ToString();
    EXPECT_TRUE(Query((*good)->ConnInfo(), "SELECT 1"));
}

}  // namespace
}  // namespace cogs::pg
