#include "cogs/observe/metrics.h"

#include <unistd.h>

#include <dirent.h>
#include <fstream>
#include <mutex>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "cogs/base/check.h"

// tcmalloc's C interface (gperftools/malloc_extension_c.h), if it is linked: weak, so a binary
// without it (sanitized builds) links and Allocator() says nothing.
extern "C" int MallocExtension_GetNumericProperty(const char* property, size_t* value) __attribute__((weak));

namespace cogs::observe {

void Counter::Inc(double v) const {
    if (c_ != nullptr) {
        c_->Increment(v);
    }
}

void Gauge::Set(double v) const {
    if (g_ != nullptr) {
        g_->Set(v);
    }
}
void Gauge::Inc(double v) const {
    if (g_ != nullptr) {
        g_->Increment(v);
    }
}
void Gauge::Dec(double v) const {
    if (g_ != nullptr) {
        g_->Decrement(v);
    }
}

void Histogram::Observe(double v) const {
    if (h_ != nullptr) {
        h_->Observe(v);
    }
}

Counter CounterFamily::With(const Labels& labels) const {
    return f_ == nullptr ? Counter() : Counter(&f_->Add(labels));
}
Gauge GaugeFamily::With(const Labels& labels) const {
    return f_ == nullptr ? Gauge() : Gauge(&f_->Add(labels));
}
Histogram HistogramFamily::With(const Labels& labels) const {
    return f_ == nullptr ? Histogram() : Histogram(&f_->Add(labels, *buckets_));
}

const std::vector<double>& LatencyBuckets() {
    static const std::vector<double> b = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
    return b;
}

const std::vector<double>& SizeBuckets() {
    static const std::vector<double> b = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
    return b;
}

namespace {

enum class Kind { kCounter, kGauge, kHistogram };

struct Registered {
    Kind kind;
    void* family;
    std::vector<double> buckets;  // histograms: kept here so the handles can point at them
};

// process_* series from /proc/self (Linux), as the official client libraries export them.
struct ProcessSample {
    double rss_bytes = 0;
    double cpu_seconds = 0;
    double start_time_seconds = 0;
    double open_fds = 0;
};

ProcessSample SampleProcess() {
    ProcessSample s;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat("/proc/self/stat");
    std::string line;
    if (std::getline(stat, line)) {
        // Fields after the command (which may hold spaces) start after the last ')'.
        const auto close = line.rfind(')');
        std::istringstream in(close == std::string::npos ? "" : line.substr(close + 2));
        std::vector<std::string> f;
        std::string w;
        while (in >> w) {
            f.push_back(w);
        }
        // f[0] is field 3 (state): utime=14, stime=15, starttime=22, rss=24 (1-based proc(5) numbers).
        if (f.size() > 21) {
            s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
            s.rss_bytes = std::stod(f[21]) * page;
            double boot = 0;
            std::ifstream st("/proc/stat");
            for (std::string l; std::getline(st, l);) {
                if (l.rfind("btime ", 0) == 0) {
                    boot = std::stod(l.substr(6));
                    break;
                }
            }
            s.start_time_seconds = boot + std::stod(f[19]) / ticks;
        }
    }
    if (DIR* d = opendir("/proc/self/fd")) {
        int n = 0;
        while (readdir(d) != nullptr) {
            ++n;
        }
        closedir(d);
        s.open_fds = n - 3;  // ".", ".." and the directory's own descriptor
    }
    return s;
}

}  // namespace

struct Metrics::Impl {
    prometheus::Registry registry;
    std::mutex mu;  // guards `families` and `samplers`
    std::map<std::string, Registered> families;
    std::vector<std::function<void()>> samplers;
    prometheus::Gauge* rss = nullptr;
    prometheus::Gauge* start = nullptr;
    prometheus::Gauge* fds = nullptr;
    prometheus::Gauge* allocated = nullptr;  // null without Allocator()
    prometheus::Gauge* mapped = nullptr;

    template <typename Builder>
    Registered& Find(const std::string& name, const std::string& help, Kind kind, Builder build) {
        std::lock_guard lock(mu);
        auto it = families.find(name);
        if (it != families.end()) {
            COGS_CHECK(it->second.kind == kind);  // one name, one type
            return it->second;
        }
        Registered r{kind, build(name, help), {}};
        return families.emplace(name, std::move(r)).first->second;
    }
};

std::optional<AllocatorStats> Allocator() {
    if (MallocExtension_GetNumericProperty == nullptr) {
        return std::nullopt;
    }
    size_t allocated = 0, heap = 0, unmapped = 0;
    if (MallocExtension_GetNumericProperty("generic.current_allocated_bytes", &allocated) == 0 ||
        MallocExtension_GetNumericProperty("generic.heap_size", &heap) == 0 ||
        MallocExtension_GetNumericProperty("tcmalloc.pageheap_unmapped_bytes", &unmapped) == 0) {
        return std::nullopt;
    }
    return AllocatorStats{static_cast<int64_t>(allocated), static_cast<int64_t>(heap - unmapped)};
}

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
    auto gauge = [this](const char* name, const char* help) {
        return &prometheus::BuildGauge().Name(name).Help(help).Register(impl_->registry).Add({});
    };
    impl_->rss = gauge("process_resident_memory_bytes", "Resident memory size in bytes.");
    impl_->start =
        gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.");
    impl_->fds = gauge("process_open_fds", "Number of open file descriptors.");
    if (Allocator()) {
        impl_->allocated = gauge("cogs_allocator_allocated_bytes",
                                 "Bytes of heap the process holds, by its allocator's count.");
        impl_->mapped = gauge("cogs_allocator_mapped_bytes",
                              "Bytes of heap the allocator has from the system and has not given back: "
                              "what the process holds, plus what it freed and the allocator keeps.");
    }
}

Metrics::~Metrics() = default;

CounterFamily Metrics::Counter(const std::string& name, const std::string& help) {
    auto& r = impl_->Find(name, help, Kind::kCounter, [this](const std::string& n, const std::string& h) {
        return static_cast<void*>(&prometheus::BuildCounter().Name(n).Help(h).Register(impl_->registry));
    });
    return CounterFamily(static_cast<prometheus::Family<prometheus::Counter>*>(r.family));
}

GaugeFamily Metrics::Gauge(const std::string& name, const std::string& help) {
    auto& r = impl_->Find(name, help, Kind::kGauge, [this](const std::string& n, const std::string& h) {
        return static_cast<void*>(&prometheus::BuildGauge().Name(n).Help(h).Register(impl_->registry));
    });
    return GaugeFamily(static_cast<prometheus::Family<prometheus::Gauge>*>(r.family));
}

HistogramFamily Metrics::Histogram(const std::string& name, const std::string& help,
                                   const std::vector<double>& buckets) {
    auto& r = impl_->Find(name, help, Kind::kHistogram, [this](const std::string& n, const std::string& h) {
        return static_cast<void*>(&prometheus::BuildHistogram().Name(n).Help(h).Register(impl_->registry));
    });
    {
        std::lock_guard lock(impl_->mu);
        if (r.buckets.empty()) {
            r.buckets = buckets;
        }
        COGS_CHECK(r.buckets == buckets);  // one name, one set of buckets
    }
    return HistogramFamily(static_cast<prometheus::Family<prometheus::Histogram>*>(r.family), &r.buckets);
}

void Metrics::OnCollect(std::function<void()> sampler) {
    std::lock_guard lock(impl_->mu);
    impl_->samplers.push_back(std::move(sampler));
}

std::string Metrics::Render() {
    std::vector<std::function<void()>> samplers;
    {
        std::lock_guard lock(impl_->mu);
        samplers = impl_->samplers;
    }
    for (const auto& s : samplers) {
        s();
    }
    const ProcessSample p = SampleProcess();
    impl_->rss->Set(p.rss_bytes);
    impl_->start->Set(p.start_time_seconds);
    impl_->fds->Set(p.open_fds);
    if (impl_->allocated != nullptr) {
        if (const std::optional<AllocatorStats> a = Allocator()) {
            impl_->allocated->Set(static_cast<double>(a->allocated_bytes));
            impl_->mapped->Set(static_cast<double>(a->mapped_bytes));
        }
    }
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, impl_->registry.Collect());
    // process_cpu_seconds_total is a counter by convention; prometheus-cpp counters only add, so it
    // is written here from the reading itself.
    out << "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        << "# TYPE process_cpu_seconds_total counter\n"
        << "process_cpu_seconds_total " << p.cpu_seconds << "\n"
        << "# HELP cogs_expect_failures_total Failed COGS_EXPECT checks (should never happen) in this "
           "process.\n"
        << "# TYPE cogs_expect_failures_total counter\n"
        << "cogs_expect_failures_total " << base::ExpectFailures() << "\n";
    return out.str();
}

CounterFamily CounterOf(Metrics* m, const std::string& name, const std::string& help) {
    return m == nullptr ? CounterFamily() : m->Counter(name, help);
}
GaugeFamily GaugeOf(Metrics* m, const std::string& name, const std::string& help) {
    return m == nullptr ? GaugeFamily() : m->Gauge(name, help);
}
HistogramFamily HistogramOf(Metrics* m, const std::string& name, const std::string& help,
                            const std::vector<double>& buckets) {
    return m == nullptr ? HistogramFamily() : m->Histogram(name, help, buckets);
}

}  // namespace cogs::observe
