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
};

int RunWorkflowBench(const WorkflowBenchOptions& options);

}  // namespace cogs::bench
