// What the Google Benchmark binaries (cogs_benchmark in CMakeLists.txt) share for the JSON line they
// print last: the machine's load, the median of repeated runs, and a console reporter that keeps
// every repetition's time and counters by benchmark.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace cogs::testing {

// The 1-minute load average (/proc/loadavg), or -1.
inline double LoadAverage() {
    double one = -1;
    std::ifstream("/proc/loadavg") >> one;
    return one;
}

// The median of `v`; -1 when empty.
inline double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? -1 : n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Prints as usual (without colours: the last line is JSON alone) and keeps, by benchmark function,
// each repetition's real time per iteration (in the benchmark's unit) and its last counters.
class TimesReporter : public benchmark::ConsoleReporter {
public:
    TimesReporter() : ConsoleReporter(OO_Tabular) {}
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& run : runs) {
            if (run.run_type == Run::RT_Iteration && !run.error_occurred) {
                times[run.run_name.function_name].push_back(run.GetAdjustedRealTime());
                for (const auto& [name, counter] : run.counters) {
                    counters[run.run_name.function_name][name] = counter.value;
                }
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
    std::map<std::string, std::vector<double>> times;
    std::map<std::string, std::map<std::string, double>> counters;
};

}  // namespace cogs::testing
