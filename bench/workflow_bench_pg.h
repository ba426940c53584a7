// The PostgreSQL side of `cogs-bench workflow --store postgres`: a private server (cogs/pg/cluster.h)
// for the whole run, a fresh database for each phase, and the server's CPU time, which the bench
// reports beside its own (both share the machine's cores). Internal to the benchmark.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::pg {
class Cluster;
}

namespace cogs::bench {

class PgBenchServer {
public:
    // Starts a cluster in `dir` (created; removed again by the destructor), fsync on as in
    // production, with `settings` (`-c name=value`) after the cluster's defaults. Errors: as
    // pg::Cluster::Start (nothing is left running and `dir` is removed).
    static Result<std::unique_ptr<PgBenchServer>> Start(
        const std::string& dir, std::vector<std::pair<std::string, std::string>> settings);
    // Stops the server and removes its directory.
    ~PgBenchServer();
    PgBenchServer(const PgBenchServer&) = delete;
    PgBenchServer& operator=(const PgBenchServer&) = delete;

    // Creates a database of its own for one phase ("bench_<n>_<phase>") and returns its connection
    // string.
    Result<std::string> NewDatabase(const std::string& phase);
    // Drops the database NewDatabase made last (WITH (FORCE): the phase's store has closed, but its
    // backends may not have exited yet), so the cluster stays small across phases and runs.
    void DropDatabase();

    // CPU seconds (user + system) the server has used so far: the postmaster, its live descendants
    // (backends, checkpointer, WAL writer, ...) and, through the postmaster's children times, those
    // it has reaped (autovacuum workers come and go). Take the difference over an interval.
    double CpuSeconds() const;

    const std::vector<std::pair<std::string, std::string>>& settings() const { return settings_; }
    const std::string& log_path() const;

private:
    PgBenchServer() = default;

    std::string dir_;
    std::vector<std::pair<std::string, std::string>> settings_;
    std::unique_ptr<pg::Cluster> cluster_;
    int databases_ = 0;
    std::string current_;  // the database of the current phase
};

}  // namespace cogs::bench
