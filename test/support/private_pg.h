// The PostgreSQL server of the tests, and a fresh database on it per test.
//
// ctest runs each test in its own process; starting a server (initdb and all, ~2 s) in each would
// cost that much per test, twice per `make test` (release and ASan). So one server serves a whole
// ctest run: the ctest fixture `pg` (test/CMakeLists.txt) starts it before the first test that needs
// it (`pg_test_server start DIR`, test/support/pg_test_server.cc) and stops it after the last, and
// each test of a binary declared `cogs_test(... POSTGRES)` (CMakeLists.txt) requires that fixture and
// gets COGS_TEST_PG_DIR=DIR; the server's libpq address (without dbname) is in DIR/conninfo. Without
// COGS_TEST_PG_DIR (a test binary run by hand) the first test of the process starts a server of its
// own in a temporary directory, stopped when the process exits.
//
// Each test works in a database of its own, named after a key (the test's temporary directory):
// tests that run at once never see each other's tables, and a store reopened with the same key finds
// its data. Databases are not dropped: the fixture's server is a fresh cluster per ctest run.
// Header-only, for every test target that links cogs_pg_cluster (and for pg_test_server).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "cogs/pg/cluster.h"
#include "cogs/pg/conn.h"
#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::testing {

// The environment variable naming the fixture's directory, and the file in it holding the address.
inline constexpr char kPgTestServerDirEnv[] = "COGS_TEST_PG_DIR";
inline constexpr char kPgTestServerConnInfoFile[] = "conninfo";

// How every test server is started, the fixture's and a private one: fsync off, as the tests check
// semantics, not durability against a crash of the machine (a killed server keeps what was committed
// either way); with it on, each CREATE DATABASE and commit of the suite waits for the disk.
inline pg::ClusterOptions PgTestServerOptions(const std::string& dir) {
    return pg::ClusterOptions{.dir = dir, .fsync = false};
}

// The connection string of a database named after `key` (created if missing) on the server.
inline std::string PrivatePgDatabase(const std::string& key);

// The server itself, started by this process (nullptr when the ctest fixture's is used).
inline pg::Cluster* PrivatePgServer() {
    struct Server {
        TempDir dir{"cogs-pg"};
        std::unique_ptr<pg::Cluster> cluster{};  // after dir: stopped before dir is removed
    };
    static const std::unique_ptr<Server> server = []() -> std::unique_ptr<Server> {
        if (std::getenv(kPgTestServerDirEnv) != nullptr) {
            return nullptr;
        }
        auto s = std::make_unique<Server>();
        auto c = pg::Cluster::Start(PgTestServerOptions(s->dir.path()), std::chrono::seconds(120));
        if (!c) {
            std::fprintf(stderr, "cannot start a private PostgreSQL: %s\n", c.error().ToString().c_str());
            std::abort();
        }
        s->cluster = std::move(*c);
        return s;
    }();
    return server ? server->cluster.get() : nullptr;
}

// The fixture's server: the address that pg_test_server wrote into $COGS_TEST_PG_DIR/conninfo.
inline const std::string& FixturePgServer() {
    static const std::string conninfo = [] {
        const std::string file =
            std::string(std::getenv(kPgTestServerDirEnv)) + "/" + kPgTestServerConnInfoFile;
        auto text = runtime::ReadFile(file);
        if (!text || text->find_first_not_of(" \n") == std::string::npos) {
            std::fprintf(stderr,
                         "%s=%s but %s holds no address: the ctest fixture pg (pg_server_start) did not "
                         "run; run through ctest, or unset %s for a server of this process\n",
                         kPgTestServerDirEnv, std::getenv(kPgTestServerDirEnv), file.c_str(),
                         kPgTestServerDirEnv);
            std::abort();
        }
        return text->substr(0, text->find('\n'));
    }();
    return conninfo;
}

inline std::string PrivatePgDatabase(const std::string& key) {
    const std::string db = "t" + std::to_string(std::hash<std::string>{}(key));
    Status made = Ok();
    std::string conninfo;
    if (pg::Cluster* own = PrivatePgServer(); own != nullptr) {
        made = own->CreateDatabase(db);
        conninfo = own->ConnInfo(db);
    } else {
        const std::string& server = FixturePgServer();
        conninfo = server + " dbname=" + db;
        auto admin = pg::Conn::Connect(server + " dbname=" + pg::kClusterDatabase, std::chrono::seconds(60));
        made = admin ? (*admin)->Exec("CREATE DATABASE " + db, SteadyClock::now() + std::chrono::seconds(60))
                     : MakeError(admin.error());
        if (!made && made.error().code == ErrorCode::kInternal &&
            made.error().message.find("already exists") != std::string::npos) {
            made = Ok();
        }
    }
    if (!made) {
        std::fprintf(stderr, "cannot create database %s: %s\n", db.c_str(), made.error().ToString().c_str());
        std::abort();
    }
    return conninfo;
}

}  // namespace cogs::testing
