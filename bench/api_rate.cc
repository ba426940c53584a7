#include "bench/api_rate.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fstream>
#include <sstream>

#include "bench/create_storm_util.h"
#include "cogs/http/client.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using storm::Ms;
using storm::Round;
using storm::Seconds;

template <typename... Args>
void Progress(fmt::format_string<Args...> f, Args&&... args) {
    fmt::print(stderr, "api-rate: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

// CPU time (user + system) of process `pid` so far, in seconds; 0 if it cannot be read.
double CpuSeconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    }
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double LoadAverage() {
    std::ifstream in("/proc/loadavg");
    double l = 0;
    in >> l;
    return l;
}

double Percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Figures {
    int64_t ok = 0;
    int64_t failed = 0;
    double seconds = 0;
    std::vector<double> latencies_ms;
    double cogsd_cpu_s = 0;
};

// `connections` requests in flight for `duration`; a fresh client (a new connection) per request
// when `fresh`, else one pool of `connections` kept connections.
Figures RunPhase(const ApiRateOptions& o, const std::string& url, const std::string& token,
                 std::shared_ptr<http::TlsContext> tls, bool fresh, int cogsd_pid) {
    const auto ep = http::ParseHttpUrl(url);
    boost::asio::io_context io;
    const auto options = [&](size_t n) {
        http::ClientOptions c;
        c.host = ep->host;
        c.port = ep->port;
        c.max_connections = n;
        c.tls = ep->tls ? tls : nullptr;
        return c;
    };
    std::unique_ptr<http::Client> pool = fresh ? nullptr : http::MakeClient(io, options(o.connections));
    Figures f;
    const double cpu_before = CpuSeconds(cogsd_pid);
    const SteadyTime start = SteadyClock::now();
    const SteadyTime end = start + std::chrono::seconds(o.seconds);
    int inflight = 0;
    SteadyTime finished{};
    double cpu_after = 0;
    std::function<void()> next = [&] {
        if (SteadyClock::now() >= end) {
            // The last answer in: the phase ends here (idle connections would keep io running).
            if (inflight == 0 && finished == SteadyTime{}) {
                finished = SteadyClock::now();
                cpu_after = CpuSeconds(cogsd_pid);
                io.stop();
            }
            return;
        }
        ++inflight;
        http::Request req;
        req.method = "GET";
        req.target = o.target;
        req.headers.emplace_back("authorization", "Bearer " + token);
        std::shared_ptr<http::Client> own;
        if (fresh) own = http::MakeClient(io, options(1));
        http::Client& c = fresh ? *own : *pool;
        const SteadyTime sent = SteadyClock::now();
        c.Send(std::move(req), sent + 10s, [&, sent, own](Result<http::Response> r) mutable {
            --inflight;
            if (r && r->status == 200) {
                ++f.ok;
                f.latencies_ms.push_back(Ms(sent, SteadyClock::now()));
            } else {
                ++f.failed;
            }
            // The connection's client goes after this callback, not inside it.
            boost::asio::post(io, [own = std::move(own)] {});
            next();
        });
    };
    for (int i = 0; i < o.connections; ++i) {
        next();
    }
    io.run();
    f.seconds = Seconds(start, finished);
    f.cogsd_cpu_s = cpu_after - cpu_before;
    pool.reset();
    io.restart();
    io.poll();  // the clients' cancellations, before `io` goes
    return f;
}

json::object Report(const Figures& f) {
    const double n = static_cast<double>(std::max<int64_t>(1, f.ok));
    return json::object{{"requests", f.ok},
                        {"failed", f.failed},
                        {"requests_per_s", Round(static_cast<double>(f.ok) / f.seconds)},
                        {"latency_p50_ms", Round(Percentile(f.latencies_ms, 0.5), 2)},
                        {"latency_p99_ms", Round(Percentile(f.latencies_ms, 0.99), 2)},
                        {"cogsd_cpu_us_per_request", Round(f.cogsd_cpu_s * 1e6 / n)}};
}

}  // namespace

int RunApiRate(const ApiRateOptions& o) {
    Progress("starting the local cloud: cogs dev with 1 host, tls {}", o.tls ? "on" : "off");
    testing::DevOptions dev_options{1, 0, {}};
    if (!o.tls) dev_options.extra_args.push_back("--no-tls");
    auto dev = testing::DevCloud::Start(dev_options);
    if (!dev) {
        Progress("cogs dev did not start: {}", dev.error().ToString());
        return 1;
    }
    std::shared_ptr<http::TlsContext> tls;
    if (!(*dev)->ca_file().empty()) {
        auto made = http::MakeClientTls(http::TlsFiles{.ca_file = (*dev)->ca_file()});
        if (!made) {
            Progress("the dev CA: {}", made.error().ToString());
            return 1;
        }
        tls = *made;
    }
    const int cogsd_pid = (*dev)->replicas().front().pid;
    const double load_before = LoadAverage();
    json::object out;
    out["tls"] = tls != nullptr;
    Progress("keep-alive: {} connections, {} s of GET {}", o.connections, o.seconds, o.target);
    out["keep_alive"] = Report(RunPhase(o, (*dev)->api_url(), (*dev)->admin_token(), tls, false, cogsd_pid));
    Progress("a new connection per request: {} in flight, {} s", o.connections, o.seconds);
    out["new_connections"] =
        Report(RunPhase(o, (*dev)->api_url(), (*dev)->admin_token(), tls, true, cogsd_pid));
    out["connections"] = o.connections;
    out["seconds"] = o.seconds;
    out["target"] = o.target;
    out["machine"] = json::object{{"nproc", ::sysconf(_SC_NPROCESSORS_ONLN)},
                                  {"loadavg_1m_before", Round(load_before, 2)},
                                  {"loadavg_1m_after", Round(LoadAverage(), 2)}};
    (*dev)->Stop();
    fmt::print("{}\n", json::serialize(out));
    return 0;
}

}  // namespace cogs::bench
