#pragma once

#include <cstdint>
#include <string>

namespace cogs::testing {

struct CrashOptions {
    uint64_t seed = 1;
    int kills = 20;
    int workflows = 2000;
    int max_kill_interval_ms = 500;
    double rate = 250;  // workflows submitted per second
    int finish_timeout_s = 300;
    std::string dir;  // empty: a fresh temporary directory
    bool keep = false;
};

struct WorkerOptions {
    std::string data_dir;
    uint16_t sim_port = 0;
    int workflows = 0;
    uint64_t seed = 1;
    double rate = 250;
};

int RunEngineCrash(const CrashOptions& options);
int RunEngineWorker(const WorkerOptions& options);

}  // namespace cogs::testing
