// pg_test_server: the PostgreSQL server that the tests of one ctest run share (the ctest fixture `pg`,
// test/CMakeLists.txt; its client is test/support/private_pg.h).
//
//   pg_test_server start DIR   makes sure a server runs in DIR and writes its libpq address, without
//                              dbname ("host=DIR port=N user=cogs"), to DIR/conninfo; the server
//                              outlives this process (Cluster::Detach). If one already runs there (a
//                              run interrupted before its cleanup, or a second start), it is kept;
//                              otherwise the cluster is made afresh, so that the databases of earlier
//                              runs (one per test, ~8 MB each) do not pile up.
//   pg_test_server stop DIR    stops the server in DIR (Cluster::StopDir) and removes its data and
//                              DIR/conninfo; DIR/postgres.log stays for a post-mortem until the next
//                              start. Ok if none runs.
//
// The server runs with fsync off (PgTestServerOptions, private_pg.h): the tests check semantics, and
// the suite's hundreds of CREATE DATABASEs and commits need not wait for the disk.
//
// Exit status: 0 done, 1 failed (why on stderr), 2 bad usage.
#include <unistd.h>
#include <chrono>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cogs/pg/cluster.h"
#include "cogs/runtime/files.h"
#include "test/support/private_pg.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using cogs::pg::Cluster;

// initdb takes ~1 s on an idle machine; ctest may start us amid a parallel build.
constexpr cogs::Duration kStartTimeout = 240s;

int Fail(const std::string& what, const cogs::Error& error) {
    std::fprintf(stderr, "pg_test_server: %s: %s\n", what.c_str(), error.ToString().c_str());
    return 1;
}

// Removes DIR's data, address and the socket a killed server leaves, keeping the directory (and its
// mode and owner) and the log.
bool RemoveData(const std::string& dir, bool log_too) {
    std::vector<fs::path> doomed{fs::path(dir) / "data",
                                 fs::path(dir) / cogs::testing::kPgTestServerConnInfoFile};
    if (log_too) {
        doomed.push_back(fs::path(dir) / "postgres.log");
    }
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename().string().rfind(".s.PGSQL.", 0) == 0) {
            doomed.push_back(it->path());
        }
    }
    for (const fs::path& p : doomed) {
        if (fs::remove_all(p, ec); ec) {
            std::fprintf(stderr, "pg_test_server: cannot remove %s: %s\n", p.c_str(), ec.message().c_str());
            return false;
        }
    }
    return true;
}

// Where the server lives for DIR: DIR itself, but as root a directory under /tmp named after DIR.
// The server runs as the postgres user, which must reach its directory, and a build directory may
// sit under one it cannot enter (a clone in a 0700 directory, a home directory).
std::string ServerDir(const std::string& dir) {
    if (::geteuid() != 0) {
        return dir;
    }
    const std::string absolute = fs::absolute(dir).lexically_normal().string();
    char name[64];
    std::snprintf(name, sizeof name, "/tmp/cogs-pg-test-%016zx", std::hash<std::string>{}(absolute));
    return name;
}

int Start(const std::string& conninfo_dir) {
    const std::string dir = ServerDir(conninfo_dir);
    std::error_code made;
    fs::create_directories(conninfo_dir, made);
    std::unique_ptr<Cluster> cluster;
    if (auto running = Cluster::Attach(dir)) {
        cluster = std::move(*running);
    } else {
        // Whatever is there is from an earlier run: a server that does not answer (hung, paused)
        // is killed, as its data goes next.
        if (auto stopped = Cluster::StopDir(dir, cogs::Duration::zero()); !stopped) {
            return Fail("stop the server left in " + dir, stopped.error());
        }
        if (!RemoveData(dir, /*log_too=*/true)) {
            return 1;
        }
        auto started = Cluster::Start(cogs::testing::PgTestServerOptions(dir), kStartTimeout);
        if (!started) {
            return Fail("start a server in " + dir, started.error());
        }
        cluster = std::move(*started);
    }
    const std::string file = conninfo_dir + "/" + cogs::testing::kPgTestServerConnInfoFile;
    if (auto written = cogs::runtime::WriteFileAtomic(file, cluster->ConnInfo("") + "\n"); !written) {
        return Fail("write " + file, written.error());  // the destructor stops a server started here
    }
    cluster->Detach();
    std::printf("PostgreSQL (pid %d) serves the tests: %s\n", cluster->pid(), cluster->ConnInfo("").c_str());
    return 0;
}

int Stop(const std::string& conninfo_dir) {
    const std::string dir = ServerDir(conninfo_dir);
    std::error_code gone;
    fs::remove(conninfo_dir + "/" + cogs::testing::kPgTestServerConnInfoFile, gone);
    // Killed, not shut down: its data goes next, so the shutdown checkpoint (~2 s after a test run:
    // ~120 MB of dirty buffers) would be written for nothing.
    if (const auto stopped = Cluster::StopDir(dir, cogs::Duration::zero()); !stopped) {
        return Fail("stop the server in " + dir, stopped.error());
    }
    return RemoveData(dir, /*log_too=*/false) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string command = argc == 3 ? argv[1] : "";
    if (command == "start") {
        return Start(argv[2]);
    }
    if (command == "stop") {
        return Stop(argv[2]);
    }
    std::fprintf(stderr, "usage: pg_test_server start|stop DIR\n");
    return 2;
}
