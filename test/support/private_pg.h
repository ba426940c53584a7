// A private PostgreSQL server for the tests of this process, and a fresh database on it per test.
//
// ctest runs each test in its own process; starting a server (initdb and all) in each would cost
// seconds per test. So the server is shared: when COGS_TEST_PG names a running server (a libpq
// connection string without dbname: the ctest fixture `pg_server`, test/CMakeLists.txt, starts one
// for the whole run and stops it at the end), the tests connect to it; otherwise (a test binary run
// by hand) the first test of the process starts one in a temporary directory, stopped when the
// process exits.
// Header-only, for every test target that links cogs_pg_cluster.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "cogs/pg/cluster.h"
#include "cogs/pg/conn.h"
#include "test/support/temp_dir.h"

namespace cogs::testing {

// The connection string of a database named after `key` (created if missing) on the server.
inline std::string PrivatePgDatabase(const std::string& key);

// The server itself, started by this process (nullptr when the ctest fixture's is used).
inline pg::Cluster* PrivatePgServer() {
    static TempDir dir("cogs-pg");
    static std::unique_ptr<pg::Cluster> cluster = []() -> std::unique_ptr<pg::Cluster> {
        if (std::getenv("COGS_TEST_PG") != nullptr) {
            return nullptr;
        }
        pg::ClusterOptions o;
        o.dir = dir.path();
        auto c = pg::Cluster::Start(o, std::chrono::seconds(120));
        if (!c) {
            std::fprintf(stderr, "cannot start a private PostgreSQL: %s\n", c.error().ToString().c_str());
            std::abort();
        }
        return std::move(*c);
    }();
    return cluster.get();
}

inline std::string PrivatePgDatabase(const std::string& key) {
    const std::string db = "t" + std::to_string(std::hash<std::string>{}(key));
    Status made = Ok();
    std::string conninfo;
    if (pg::Cluster* own = PrivatePgServer(); own != nullptr) {
        made = own->CreateDatabase(db);
        conninfo = own->ConnInfo(db);
    } else {
        const std::string server = std::getenv("COGS_TEST_PG");
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
