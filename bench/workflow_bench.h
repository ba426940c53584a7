#pragma once

#include <string>

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
};

int RunWorkflowBench(const WorkflowBenchOptions& options);

}  // namespace cogs::bench
