#pragma once

#include <string>
#include <utility>
#include <vector>

namespace cogs::bench {

struct WorkflowBenchOptions {
    std::string data_dir = "build/bench-data";
    int workflows = 30000;
    int window = 4000;
    double half_rate_seconds = 4;
    int parked = 10000;
    bool pipelined_sync = true;  // false: PRAGMA synchronous=FULL, the fsync inside COMMIT
    // Metrics (a registry for the engine and the store) and tracing (a traceparent per workflow, a
    // child span per call) on, as cogsd runs.
    bool observe = false;
    // Runs everything `runs` times with observe off and on alternately, and reports the medians of
    // both and the overhead of on in percent.
    bool compare_observe = false;
    int runs = 3;
    // "sqlite", or "postgres": a private PostgreSQL server (fsync on) in data_dir/pg for the run, a
    // fresh database per phase, and the server's CPU time reported beside the bench's.
    std::string store = "sqlite";
    // postgres: server settings (`-c name=value`) after the cluster's defaults.
    std::vector<std::pair<std::string, std::string>> pg_settings{};
};

int RunWorkflowBench(const WorkflowBenchOptions& options);

}  // namespace cogs::bench
