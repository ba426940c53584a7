// Metrics: Prometheus counters, gauges and histograms, rendered in the Prometheus text format.
//
// prometheus-cpp's core library does the bookkeeping; this header hides it (no prometheus type
// shows here) so a component only sees small value handles. A handle from a default-constructed
// family, or a family of a null registry, is a no-op: code can be instrumented unconditionally and
// run with metrics off (the overhead benchmark does exactly that).
//
// Names follow the Prometheus conventions: `cogs_` prefix, base units (seconds, bytes), `_total`
// for counters. docs/metrics.md lists every series the processes export.
//
// Threading: families and handles may be used from any thread. Family::With() takes a lock and
// hashes the labels, so hot paths look a handle up once and keep it; Inc/Set/Observe are lock-free
// or take one uncontended lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace cogs::observe {

using Labels = std::map<std::string, std::string>;

class Counter {
public:
    Counter() = default;
    void Inc(double v = 1) const;

private:
    friend class CounterFamily;
    explicit Counter(prometheus::Counter* c) : c_(c) {}
    prometheus::Counter* c_ = nullptr;
};

class Gauge {
public:
    Gauge() = default;
    void Set(double v) const;
    void Inc(double v = 1) const;
    void Dec(double v = 1) const;

private:
    friend class GaugeFamily;
    explicit Gauge(prometheus::Gauge* g) : g_(g) {}
    prometheus::Gauge* g_ = nullptr;
};

class Histogram {
public:
    Histogram() = default;
    void Observe(double v) const;

private:
    friend class HistogramFamily;
    explicit Histogram(prometheus::Histogram* h) : h_(h) {}
    prometheus::Histogram* h_ = nullptr;
};

// A metric name with its label sets. With() returns the handle of one label set, creating it.
class CounterFamily {
public:
    CounterFamily() = default;
    Counter With(const Labels& labels) const;

private:
    friend class Metrics;
    explicit CounterFamily(prometheus::Family<prometheus::Counter>* f) : f_(f) {}
    prometheus::Family<prometheus::Counter>* f_ = nullptr;
};

class GaugeFamily {
public:
    GaugeFamily() = default;
    Gauge With(const Labels& labels) const;

private:
    friend class Metrics;
    explicit GaugeFamily(prometheus::Family<prometheus::Gauge>* f) : f_(f) {}
    prometheus::Family<prometheus::Gauge>* f_ = nullptr;
};

class HistogramFamily {
public:
    HistogramFamily() = default;
    Histogram With(const Labels& labels) const;

private:
    friend class Metrics;
    HistogramFamily(prometheus::Family<prometheus::Histogram>* f, const std::vector<double>* buckets)
        : f_(f), buckets_(buckets) {}
    prometheus::Family<prometheus::Histogram>* f_ = nullptr;
    const std::vector<double>* buckets_ = nullptr;
};

// Bucket boundaries in seconds for latencies from 100 µs to 60 s (roughly ×2.5 per bucket).
const std::vector<double>& LatencyBuckets();
// Powers of two from 1 to 4096, for batch sizes.
const std::vector<double>& SizeBuckets();

// One registry: what one process exports on /metrics.
class Metrics {
public:
    Metrics();
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // Registers a family, or returns the one already registered under `name` (the same name with
    // another type or buckets is a programming error: fatal check).
    CounterFamily Counter(const std::string& name, const std::string& help);
    GaugeFamily Gauge(const std::string& name, const std::string& help);
    HistogramFamily Histogram(const std::string& name, const std::string& help,
                              const std::vector<double>& buckets = LatencyBuckets());

    // Runs before every Render(), on the rendering thread: for gauges sampled at scrape time (a
    // queue length, hosts by state). The callback must be safe to run on that thread.
    void OnCollect(std::function<void()> sampler);

    // Every family in the Prometheus text exposition format 0.0.4, with process_* series
    // (resident memory, CPU seconds, start time, open file descriptors) of this process, and its
    // allocator's cogs_allocator_allocated_bytes and cogs_allocator_mapped_bytes where Allocator()
    // answers.
    std::string Render();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// What the allocator says of this process's heap, when the allocator can say (tcmalloc, linked into
// every binary but sanitized ones: CMakeLists.txt); nullopt otherwise.
struct AllocatorStats {
    int64_t allocated_bytes = 0;  // held by the program now (tcmalloc's generic.current_allocated_bytes)
    int64_t mapped_bytes =
        0;  // taken from the system and not given back (heap_size - pageheap_unmapped_bytes)
};
std::optional<AllocatorStats> Allocator();

// Content type of Render()'s output.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Family accessors that tolerate a null registry (metrics off): they return no-op families.
CounterFamily CounterOf(Metrics* m, const std::string& name, const std::string& help);
GaugeFamily GaugeOf(Metrics* m, const std::string& name, const std::string& help);
HistogramFamily HistogramOf(Metrics* m, const std::string& name, const std::string& help,
                            const std::vector<double>& buckets = LatencyBuckets());

}  // namespace cogs::observe
