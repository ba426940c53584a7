// frozen_benchmark: what the model's frozen records (core/frozen.h) cost the io thread — freezing a
// server's body at the end of a turn that changed it, and thawing it when a handler asks for it —
// beside what the body costs as JSON text (serialize, parse), which every change already pays to
// reach the store.
//
// The body is a server's as a create leaves it, settled ACTIVE (core/settled_server.h).
// Prints Google Benchmark's table (--runs repetitions of each), then, as its last line, one JSON
// object: the median time of each in ns, the frozen size and the JSON text's, and the machine.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>
#include <string>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/base/time.h"
#include "cogs/cloud/core/frozen.h"
#include "cogs/cloud/core/settled_server.h"
#include "test/support/bench_report.h"

namespace cogs::cloud {
namespace {

namespace json = boost::json;

const std::string& Project() {
    static const std::string p = NewUuid();
    return p;
}

const json::object& Server() {
    static const json::object b = SettledServerBody(Project());
    return b;
}

FrozenKeys g_keys;

void FreezeServer(benchmark::State& state) {
    for (auto _ : state) {
        Frozen f(Project(), Server(), g_keys);
        benchmark::DoNotOptimize(f);
    }
}

void ThawServer(benchmark::State& state) {
    const Frozen f(Project(), Server(), g_keys);
    std::string project;
    for (auto _ : state) {
        json::object body;
        f.Thaw(g_keys, project, body);
        benchmark::DoNotOptimize(body);
    }
}

void SerializeServer(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(json::serialize(Server()));
    }
}

void ParseServer(benchmark::State& state) {
    const std::string text = json::serialize(Server());
    for (auto _ : state) {
        benchmark::DoNotOptimize(json::parse(text));
    }
}

}  // namespace
}  // namespace cogs::cloud

int main(int argc, char** argv) {
    using namespace cogs::cloud;
    benchmark::Initialize(&argc, argv);
    int runs = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.starts_with("--runs=")) {
            runs = std::stoi(a.substr(7));
        } else {
            std::fprintf(stderr, "usage: %s [--runs=N] [--benchmark_...]\n", argv[0]);
            return 2;
        }
    }
    const double load_before = cogs::testing::LoadAverage();
    for (const auto& [name, fn] : std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
             {"freeze_server", FreezeServer},
             {"thaw_server", ThawServer},
             {"serialize_server", SerializeServer},
             {"parse_server", ParseServer}}) {
        benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kNanosecond)->Repetitions(runs);
    }
    cogs::testing::TimesReporter collector;
    benchmark::RunSpecifiedBenchmarks(&collector);
    std::string line =
        fmt::format(R"({{"runs":{},"frozen_bytes":{},"json_text_bytes":{})", runs,
                    Frozen(Project(), Server(), g_keys).size(), boost::json::serialize(Server()).size());
    for (const auto& [name, times] : collector.times) {
        line += fmt::format(R"(,"{}_ns":{:.0f})", name, cogs::testing::Median(times));
    }
    line += fmt::format(R"(,"machine":{{"nproc":{},"loadavg_1m_before":{:.2f},"loadavg_1m_after":{:.2f}}}}})",
                        std::thread::hardware_concurrency(), load_before, cogs::testing::LoadAverage());
    std::printf("%s\n", line.c_str());
    return 0;
}
