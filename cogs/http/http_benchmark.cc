// http_benchmark: what TLS costs a cogs link, on loopback. A server with a trivial handler (200, "{}")
// on its own thread and io_context, a client on the main thread, in three modes:
//
//   plain   HTTP/1.1
//   tls     TLS (the server's certificate verified by the client: chain and IP address)
//   mtls    mutual TLS (the server requires and verifies the client's certificate), as cogsd calls
//           the services and the agents
//
// and two phases per mode:
//
//   keepalive   --concurrency requests kept in flight over as many kept-alive connections for
//               --seconds: requests/s and the latency of each request (p50, p99)
//   connect     a new client, hence a new connection (TCP, and the TLS handshake), per request,
//               --concurrency at a time, --connects in all: connections/s and their latency
//
// Keys are EC P-256 (cogs/pki), so the handshake is TLS 1.3 with ECDHE and ECDSA signatures. Both ends
// run in this process, so each figure pays for both sides' CPU on a machine of nproc cores.
//
// Prints a line per phase as it goes, then, as its last line, one JSON object: per mode and phase the
// rate, p50 and p99 in µs, the process's CPU time per request (both ends), and errors; and the machine
// (nproc, the 1-minute load average before and after). Reports; never fails on a timing.
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/pki/pki.h"
#include "test/support/bench_report.h"
#include "test/support/temp_dir.h"

namespace cogs::http {
namespace {

using cogs::testing::LoadAverage;

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

struct Options {
    int concurrency = 16;
    double seconds = 3;
    int connects = 3000;
};

// CPU time of the process (every thread: the server's and the client's), user + system, in µs.
double CpuUs() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto us = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return us(ru.ru_utime) + us(ru.ru_stime);
}

struct Figures {
    double cpu_us = 0;  // per request, both ends: hardly moves when other jobs share the cores
    double rate = 0;
    double p50_us = 0;
    double p99_us = 0;
    long requests = 0;
    long errors = 0;
};

double Percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
    return v[i];
}

enum class Mode { kPlain, kTls, kMutualTls };

const char* Name(Mode m) {
    switch (m) {
        case Mode::kPlain: return "plain";
        case Mode::kTls: return "tls";
        case Mode::kMutualTls: return "mtls";
    }
    return "?";
}

// A server of one mode on a thread of its own, and clients of it on the caller's io_context.
class Bench {
public:
    Status Start(Mode mode) {
        mode_ = mode;
        const std::string ca = dir_ / "ca.crt";
        COGS_TRY(pki::MakeCa(ca, dir_ / "ca.key", "bench CA", 24h));
        COGS_TRY(pki::Issue({ca, dir_ / "ca.key"}, dir_ / "server.crt", dir_ / "server.key", "server",
                            {"localhost"}, {"127.0.0.1"}, 24h));
        COGS_TRY(pki::Issue({ca, dir_ / "ca.key"}, dir_ / "client.crt", dir_ / "client.key", "client", {}, {},
                            24h));
        ServerOptions so;
        if (mode != Mode::kPlain) {
            TlsFiles files{dir_ / "server.crt", dir_ / "server.key"};
            if (mode == Mode::kMutualTls) {
                files.ca_file = ca;
            }
            COGS_ASSIGN_OR_RETURN(so.tls, MakeServerTls(files));
            TlsFiles client_files{.ca_file = ca};
            if (mode == Mode::kMutualTls) {
                client_files.cert_file = dir_ / "client.crt";
                client_files.key_file = dir_ / "client.key";
            }
            COGS_ASSIGN_OR_RETURN(client_tls_, MakeClientTls(client_files));
        }
        COGS_ASSIGN_OR_RETURN(server_, StartServer(server_io_, so, [](Request, Respond respond) {
                                  Response r;
                                  r.body = "{}";
                                  respond(std::move(r));
                              }));
        thread_ = std::thread([this] { server_io_.run(); });
        return Ok();
    }

    ~Bench() {
        if (server_) {
            asio::post(server_io_, [this] { server_->Stop(); });
        }
        work_.reset();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    // Runs `concurrency` loops of request, answer, next request until `length` passed or `max_requests`
    // were sent. `fresh`: each request on a client of its own (a new connection); else all on one client
    // with a connection per loop.
    Figures Drive(bool fresh, int concurrency, Duration length, long max_requests) {
        asio::io_context io;
        std::vector<std::unique_ptr<Client>> clients(static_cast<size_t>(concurrency));
        std::unique_ptr<Client> shared = fresh ? nullptr : MakeOne(io, static_cast<size_t>(concurrency));
        std::vector<double> latencies_us;
        latencies_us.reserve(1 << 20);
        long started = 0;
        long errors = 0;
        int active = concurrency;
        const auto begin = SteadyClock::now();
        const auto end = begin + length;
        const double cpu_before = CpuUs();
        std::function<void(size_t)> issue = [&](size_t w) {
            const auto now = SteadyClock::now();
            if (now >= end || started >= max_requests) {
                --active;
                return;
            }
            ++started;
            if (fresh) {
                clients[w] = MakeOne(io, 1);  // the previous one (and its connection) goes
            }
            Client& client = fresh ? *clients[w] : *shared;
            Request req;
            req.method = "GET";
            req.target = "/bench";
            client.Send(std::move(req), now + 10s, [&, w, now](Result<Response> r) {
                if (r && r->status == 200) {
                    latencies_us.push_back(
                        std::chrono::duration<double, std::micro>(SteadyClock::now() - now).count());
                } else {
                    if (errors++ == 0) {
                        fmt::print(stderr, "http_benchmark: {}\n",
                                   r ? "status " + std::to_string(r->status) : r.error().ToString());
                    }
                }
                issue(w);
            });
        };
        for (size_t w = 0; w < clients.size(); ++w) {
            issue(w);
        }
        while (active > 0) {
            io.run_one();
        }
        const double elapsed = std::chrono::duration<double>(SteadyClock::now() - begin).count();
        const double cpu = CpuUs() - cpu_before;
        Figures f;
        f.requests = static_cast<long>(latencies_us.size());
        f.errors = errors;
        f.rate = static_cast<double>(f.requests) / elapsed;
        f.cpu_us = f.requests > 0 ? cpu / static_cast<double>(f.requests) : 0;
        f.p50_us = Percentile(latencies_us, 0.50);
        f.p99_us = Percentile(latencies_us, 0.99);
        clients.clear();
        shared.reset();
        io.poll();  // the clients' last callbacks (cancelled: none are outstanding)
        return f;
    }

private:
    std::unique_ptr<Client> MakeOne(asio::io_context& io, size_t max_connections) {
        ClientOptions o;
        o.port = server_->port();
        o.max_connections = max_connections;
        o.tls = client_tls_;
        return MakeClient(io, o);
    }

    Mode mode_ = Mode::kPlain;
    testing::TempDir dir_{"http-bench"};
    asio::io_context server_io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
        server_io_.get_executor()};
    std::unique_ptr<Server> server_;
    std::shared_ptr<TlsContext> client_tls_;
    std::thread thread_;
};

json::object ToJson(const Figures& f) {
    return {{"per_s", std::llround(f.rate)},    {"cpu_us", std::llround(f.cpu_us)},
            {"p50_us", std::llround(f.p50_us)}, {"p99_us", std::llround(f.p99_us)},
            {"requests", f.requests},           {"errors", f.errors}};
}

int Run(const Options& o) {
    const double load_before = LoadAverage();
    json::object out;
    for (Mode mode : {Mode::kPlain, Mode::kTls, Mode::kMutualTls}) {
        Bench bench;
        if (auto started = bench.Start(mode); !started) {
            fmt::print(stderr, "http_benchmark: {}\n", started.error().ToString());
            return 1;
        }
        const auto length = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(o.seconds));
        (void)bench.Drive(false, o.concurrency, std::min<Duration>(length, 500ms), 1 << 30);  // warm up
        const Figures keepalive = bench.Drive(false, o.concurrency, length, 1L << 40);
        fmt::print(stderr,
                   "{:5} keepalive: {:8.0f} requests/s  p50 {:6.0f} µs  p99 {:6.0f} µs  cpu {:5.0f} "
                   "µs/request  ({} errors)\n",
                   Name(mode), keepalive.rate, keepalive.p50_us, keepalive.p99_us, keepalive.cpu_us,
                   keepalive.errors);
        const Figures connect = bench.Drive(true, o.concurrency, 60s, o.connects);
        fmt::print(stderr,
                   "{:5} connect:   {:8.0f} connections/s  p50 {:6.0f} µs  p99 {:6.0f} µs  cpu {:5.0f} "
                   "µs/connection  ({} errors)\n",
                   Name(mode), connect.rate, connect.p50_us, connect.p99_us, connect.cpu_us, connect.errors);
        out[std::string(Name(mode)) + "_keepalive"] = ToJson(keepalive);
        out[std::string(Name(mode)) + "_connect"] = ToJson(connect);
    }
    out["concurrency"] = o.concurrency;
    out["machine"] = {{"nproc", std::thread::hardware_concurrency()},
                      {"load1_before", load_before},
                      {"load1_after", LoadAverage()}};
    std::fflush(stderr);
    std::printf("%s\n", json::serialize(out).c_str());
    return 0;
}

}  // namespace
}  // namespace cogs::http

int main(int argc, char** argv) {
    cogs::http::Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](const char* name) -> const char* {
            const std::string prefix = std::string(name) + "=";
            return arg.starts_with(prefix) ? argv[i] + prefix.size() : nullptr;
        };
        if (const char* v = value("--concurrency")) {
            o.concurrency = std::max(1, std::atoi(v));
        } else if (const char* v = value("--seconds")) {
            o.seconds = std::max(0.1, std::atof(v));
        } else if (const char* v = value("--connects")) {
            o.connects = std::max(1, std::atoi(v));
        } else {
            std::fprintf(stderr,
                         "usage: http_benchmark [--concurrency=16] [--seconds=3] [--connects=3000]\n");
            return 2;
        }
    }
    return cogs::http::Run(o);
}
