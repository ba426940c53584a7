// cogs-bench create-storm (see create_storm.h and bench/README.md).
//
// The storm and its polling share one io_context on this thread, on two clients: the polls must not
// wait in the FIFO of the storm's connections, or the poll interval would no longer bound the
// resolution of the ACTIVE times. Set-up and the checks after the storm use the synchronous test
// client: they are not timed.
#include "bench/create_storm.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

namespace cogs::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using testing::ApiClient;
using testing::ApiReply;
using testing::DevCloud;

constexpr Duration kRequestTimeout =
    120s;  // from the hand-over to the client: covers the wait for a connection
constexpr Duration kPollTimeout = 30s;
constexpr int kMaxTransportRetries = 5;
constexpr const char* kSimPrefix = "bench-sim-";

template <typename... Args>
void Progress(fmt::format_string<Args...> f, Args&&... args) {
    fmt::print(stderr, "create-storm: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

double Ms(SteadyTime a, SteadyTime b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
double Seconds(SteadyTime a, SteadyTime b) { return std::chrono::duration<double>(b - a).count(); }
double Round(double v, int digits = 1) {
    const double f = std::pow(10.0, digits);
    return std::round(v * f) / f;
}

// Nearest-rank percentile of `v` (sorted here).
double Percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string S(const json::value& v, std::string_view key) {
    if (!v.is_object()) {
        return "";
    }
    const auto* f = v.as_object().if_contains(key);
    return f != nullptr && f->is_string() ? std::string(f->as_string()) : "";
}

const json::value& At(const json::value& v, std::string_view key) {
    static const json::value kNull;
    if (!v.is_object()) {
        return kNull;
    }
    const auto* f = v.as_object().if_contains(key);
    return f != nullptr ? *f : kNull;
}

int64_t I(const json::value& v, std::string_view key) {
    const json::value& f = At(v, key);
    boost::system::error_code ec;
    const auto n = f.to_number<int64_t>(ec);
    return ec ? 0 : n;
}

const json::array& Arr(const json::value& v, std::string_view key) {
    static const json::array kEmpty;
    const json::value& f = At(v, key);
    return f.is_array() ? f.as_array() : kEmpty;
}

// Every item of a paginated list (`limit=1000`, following next_marker); nullopt (and a message on
// stderr) on any answer but 200.
std::optional<std::vector<json::value>> ListAll(ApiClient& api, const std::string& path,
                                                const std::string& key) {
    std::vector<json::value> out;
    std::string marker;
    const char sep = path.find('?') == std::string::npos ? '?' : '&';
    while (true) {
        std::string target = fmt::format("{}{}limit=1000", path, sep);
        if (!marker.empty()) {
            target += "&marker=" + http::UrlEncode(marker);
        }
        ApiReply r = api.Must("GET", target);
        if (r.status != 200) {
            Progress("GET {}: {} {}", target, r.status, r.text);
            return std::nullopt;
        }
        for (const auto& item : Arr(r.body, key)) {
            out.push_back(item);
        }
        marker = S(r.body, "next_marker");
        if (marker.empty()) {
            return out;
        }
    }
}

// Waits until GET path shows {key: {status: want}}; false (and why, on stderr) at the deadline or on ERROR.
bool WaitStatus(ApiClient& api, const std::string& path, const std::string& key, const std::string& want) {
    std::string last;
    const bool ok = testing::WaitUntil(
        [&] {
            ApiReply r = api.Must("GET", path);
            last = fmt::format("{} {}", r.status, r.text);
            const std::string status = S(At(r.body, key), "status");
            return status == want || status == "ERROR";
        },
        60s, 20ms);
    if (!ok || last.find("\"ERROR\"") != std::string::npos) {
        Progress("{} did not become {}: {}", path, want, last);
        return false;
    }
    return true;
}

// ---- the machine and the processes ----

std::string CpuModel() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                return line.substr(line.find_first_not_of(' ', colon + 1));
            }
        }
    }
    return "";
}

// What the scheduler says of a process: CPU time and time spent runnable but waiting for a CPU,
// summed over its threads (/proc/<pid>/task/*/schedstat; threads gone since are not counted).
struct SchedTimes {
    double cpu_s = 0;
    double wait_s = 0;
};

SchedTimes Sched(int pid) {
    SchedTimes t;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
        std::ifstream in(task.path() / "schedstat");
        double cpu_ns = 0, wait_ns = 0;
        if (in >> cpu_ns >> wait_ns) {
            t.cpu_s += cpu_ns / 1e9;
            t.wait_s += wait_ns / 1e9;
        }
    }
    return t;
}

// The disk's rate of 4 KiB append + fdatasync in `dir` for about `seconds` (what every commit of
// cogsd and the services waits for).
double MeasureFsyncs(const std::string& dir, double seconds) {
    const std::string file = dir + "/fsync-probe";
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) {
        return 0;
    }
    const std::string block(4096, 'x');
    const auto start = SteadyClock::now();
    int n = 0;
    while (Seconds(start, SteadyClock::now()) < seconds) {
        if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
            ::fdatasync(fd) != 0) {
            break;
        }
        ++n;
    }
    const double rate = n / Seconds(start, SteadyClock::now());
    ::close(fd);
    ::unlink(file.c_str());
    return rate;
}

double LoadAverage() {
    std::ifstream in("/proc/loadavg");
    double one = 0;
    in >> one;
    return one;
}

// A field of /proc/<pid>/status in KiB ("VmRSS", "VmHWM"); 0 if absent.
int64_t StatusKib(int pid, const std::string& field) {
    std::ifstream in(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            return std::stoll(line.substr(field.size() + 1));
        }
    }
    return 0;
}

// The processes whose CPU the benchmark accounts, grouped as reported.
struct Accounted {
    std::string group;  // "cogsd", "cogs-network", "cogs-volume", "compute", "bench"
    int pid;
};

class CpuMeter {
public:
    explicit CpuMeter(std::vector<Accounted> procs) : procs_(std::move(procs)) {}
    void Start() {
        start_ = SteadyClock::now();
        before_.clear();
        for (const auto& p : procs_) {
            before_.push_back(Sched(p.pid));
        }
    }
    // Per group since Start: {"cpu_s": {...}, "runq_wait_s": {...}, "wall_s"}.
    json::object Stop() const {
        std::map<std::string, SchedTimes> by_group;
        for (size_t i = 0; i < procs_.size(); ++i) {
            const SchedTimes now = Sched(procs_[i].pid);
            by_group[procs_[i].group].cpu_s += now.cpu_s - before_[i].cpu_s;
            by_group[procs_[i].group].wait_s += now.wait_s - before_[i].wait_s;
        }
        json::object cpu, wait;
        for (const auto& [g, t] : by_group) {
            cpu[g] = Round(t.cpu_s, 2);
            wait[g] = Round(t.wait_s, 2);
        }
        return json::object{{"wall_s", Round(Seconds(start_, SteadyClock::now()), 2)},
                            {"cpu_s", std::move(cpu)},
                            {"runq_wait_s", std::move(wait)}};
    }

private:
    std::vector<Accounted> procs_;
    std::vector<SchedTimes> before_;
    SteadyTime start_{};
};

// ---- the timed phases: requests on one io_context ----

std::pair<std::string, uint16_t> HostPort(const std::string& url) {
    std::string s = url.starts_with("http://") ? url.substr(7) : url;
    auto colon = s.rfind(':');
    return {s.substr(0, colon), static_cast<uint16_t>(std::stoi(s.substr(colon + 1)))};
}

// Retry-After in seconds (integer or decimal); 1 s when absent or unreadable.
Duration RetryAfter(const http::Response& r) {
    const std::string v = r.Header("retry-after");
    char* end = nullptr;
    const double s = std::strtod(v.c_str(), &end);
    if (v.empty() || end == v.c_str() || s < 0) {
        return 1s;
    }
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(std::min(s, 30.0)));
}

struct Tracked {
    SteadyTime sent{};                     // handed to the client (the first attempt)
    std::optional<SteadyTime> answered{};  // the final 202 (or other final answer)
    std::optional<SteadyTime> done{};      // first seen ACTIVE (create) or gone (delete)
    std::string id;
    bool refused = false;  // a final answer other than 202 (or no answer after the retries)
    bool error = false;    // create: seen in status ERROR
    int transport_retries = 0;
};

// One timed phase: `n` requests issued at once, 429/503 retried after Retry-After and transport
// failures retried with the same Idempotency-Key, while the API is polled until every request is
// settled or the deadline passes.
class Phase {
public:
    struct Options {
        std::string url;
        std::string token;
        int connections = 64;
        Duration poll_interval = 25ms;
        Duration deadline = 180s;
    };
    // make(i) builds request i (without the authorization header).
    Phase(Options o, std::vector<Tracked>& items, std::function<http::Request(size_t)> make)
        : o_(std::move(o)), items_(items), make_(std::move(make)) {
        auto [host, port] = HostPort(o_.url);
        storm_ = http::MakeClient(io_, http::ClientOptions{host, port, static_cast<size_t>(o_.connections)});
        poller_ = http::MakeClient(io_, http::ClientOptions{host, port, 2});
    }

    // create: poll ACTIVE and ERROR lists; an id seen ACTIVE is done. delete: poll the whole list;
    // an answered id absent from it is done.
    enum class Watch { kCreate, kDelete };

    void Run(Watch watch) {
        watch_ = watch;
        start_ = SteadyClock::now();
        last_progress_ = start_;
        for (size_t i = 0; i < items_.size(); ++i) {
            items_[i].sent = start_;
            Send(i);
        }
        asio::post(io_, [this] { StartRound(); });
        io_.run();
        mean_round_ms = poll_rounds > 0 ? Ms(start_, SteadyClock::now()) / poll_rounds : 0;
        // The clients go before the io_context: nothing of theirs may outlive it.
        storm_.reset();
        poller_.reset();
    }

    int retries_429 = 0;
    int retries_503 = 0;
    int transport_retries = 0;
    int poll_rounds = 0;
    double mean_round_ms = 0;  // from the start of one polling round to the next, on average
    int poll_errors = 0;
    bool timed_out = false;
    std::vector<std::string> refusals;  // the first few, for the report

private:
    void Send(size_t i) {
        http::Request req = make_(i);
        req.headers.emplace_back("authorization", "Bearer " + o_.token);
        storm_->Send(std::move(req), SteadyClock::now() + kRequestTimeout,
                     [this, i](Result<http::Response> r) { OnAnswer(i, std::move(r)); });
    }

    void Later(Duration d, std::function<void()> f) {
        auto timer = std::make_shared<asio::steady_timer>(io_, d);
        timer->async_wait([timer, f = std::move(f)](const boost::system::error_code& ec) {
            if (!ec) {
                f();
            }
        });
    }

    void Refuse(size_t i, std::string why) {
        items_[i].refused = true;
        items_[i].answered = SteadyClock::now();
        if (refusals.size() < 5) {
            refusals.push_back(std::move(why));
        }
    }

    void OnAnswer(size_t i, Result<http::Response> r) {
        Tracked& t = items_[i];
        if (!r) {
            // No answer: the outcome is unknown; the same Idempotency-Key makes a resend safe.
            if (r.error().retryable && t.transport_retries < kMaxTransportRetries) {
                ++t.transport_retries;
                ++transport_retries;
                Later(100ms, [this, i] { Send(i); });
                return;
            }
            Refuse(i, r.error().ToString());
            return;
        }
        if (r->status == 429 || r->status == 503) {
            ++(r->status == 429 ? retries_429 : retries_503);
            Later(RetryAfter(*r), [this, i] { Send(i); });
            return;
        }
        const bool ok = r->status == 202 || (watch_ == Watch::kDelete && r->status == 404);
        if (!ok) {
            Refuse(i, fmt::format("{} {}", r->status, r->body));
            return;
        }
        t.answered = SteadyClock::now();
        if (watch_ == Watch::kCreate) {
            boost::system::error_code ec;
            json::value body = json::parse(r->body, ec);
            t.id = S(At(body, "server"), "id");
            if (t.id.empty()) {
                Refuse(i, "202 without a server id: " + r->body);
                return;
            }
            by_id_[t.id] = i;
            // The server may have been listed before its 202 was read off the socket.
            if (auto e = early_.find(t.id); e != early_.end()) {
                Settle(i, e->second.first, e->second.second);
                early_.erase(e);
            }
        } else if (r->status == 404) {
            t.done = *t.answered;
        }
    }

    void Settle(size_t i, SteadyTime at, bool error) {
        Tracked& t = items_[i];
        if (t.done || t.error) {
            return;
        }
        if (error) {
            t.error = true;
        } else {
            t.done = at;
        }
    }

    bool AllSettled() const {
        return std::all_of(items_.begin(), items_.end(),
                           [](const Tracked& t) { return t.refused || (t.answered && (t.done || t.error)); });
    }

    void StartRound() {
        round_start_ = SteadyClock::now();
        present_.clear();
        Fetch(watch_ == Watch::kCreate ? "ACTIVE" : "", "");
    }

    void Fetch(std::string status, std::string marker) {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/servers?limit=1000";
        if (!status.empty()) {
            req.target += "&status=" + status;
        }
        if (!marker.empty()) {
            req.target += "&marker=" + http::UrlEncode(marker);
        }
        req.headers.emplace_back("authorization", "Bearer " + o_.token);
        poller_->Send(std::move(req), SteadyClock::now() + kPollTimeout,
                      [this, status](Result<http::Response> r) { OnPage(status, std::move(r)); });
    }

    void OnPage(const std::string& status, Result<http::Response> r) {
        const SteadyTime now = SteadyClock::now();
        if (!r || r->status != 200) {
            ++poll_errors;
            if (poll_errors <= 3) {
                Progress("poll: {}", r ? fmt::format("{} {}", r->status, r->body) : r.error().ToString());
            }
            EndRound(false);
            return;
        }
        boost::system::error_code ec;
        json::value body = json::parse(r->body, ec);
        for (const auto& s : Arr(body, "servers")) {
            const std::string id = S(s, "id");
            if (watch_ == Watch::kDelete) {
                present_.insert(id);
                continue;
            }
            const bool error = status == "ERROR";
            auto known = by_id_.find(id);
            if (known != by_id_.end()) {
                Settle(known->second, now, error);
            } else {
                early_.emplace(id, std::make_pair(now, error));
            }
        }
        if (const std::string next = S(body, "next_marker"); !next.empty()) {
            Fetch(status, next);
            return;
        }
        if (status == "ACTIVE") {
            Fetch("ERROR", "");
            return;
        }
        EndRound(true);
    }

    void EndRound(bool complete) {
        const SteadyTime now = SteadyClock::now();
        ++poll_rounds;
        if (watch_ == Watch::kDelete && complete) {
            // Gone: answered before this round began and absent from the whole list.
            for (auto& t : items_) {
                if (!t.done && !t.refused && t.answered && *t.answered < round_start_ &&
                    !present_.contains(t.id)) {
                    t.done = now;
                }
            }
        }
        if (AllSettled()) {
            io_.stop();
            return;
        }
        if (now - start_ >= o_.deadline) {
            timed_out = true;
            io_.stop();
            return;
        }
        if (now - last_progress_ >= 2s) {
            last_progress_ = now;
            const auto settled = std::count_if(items_.begin(), items_.end(), [](const Tracked& t) {
                return t.refused || (t.answered && (t.done || t.error));
            });
            const auto answered = std::count_if(items_.begin(), items_.end(),
                                                [](const Tracked& t) { return t.answered.has_value(); });
            Progress("{:.1f} s: {} answered, {} of {} settled", Seconds(start_, now), answered, settled,
                     items_.size());
        }
        Later(o_.poll_interval, [this] { StartRound(); });
    }

    Options o_;
    std::vector<Tracked>& items_;
    std::function<http::Request(size_t)> make_;
    asio::io_context io_;
    std::unique_ptr<http::Client> storm_;
    std::unique_ptr<http::Client> poller_;
    Watch watch_ = Watch::kCreate;
    SteadyTime start_{};
    SteadyTime round_start_{};
    SteadyTime last_progress_{};
    std::unordered_map<std::string, size_t> by_id_;
    std::unordered_map<std::string, std::pair<SteadyTime, bool>> early_;  // listed before its 202 was read
    std::set<std::string> present_;  // delete: ids in the current round's listing
};

// ---- set-up ----

struct Setup {
    std::string project_id;
    std::string member_token;
    std::string network_id;
};

// The smallest prefix (at most /20) whose subnet holds `servers` addresses besides the gateway.
int SubnetPrefix(int servers) {
    int prefix = 20;
    while (prefix > 8 && (int64_t{1} << (32 - prefix)) - 3 < servers) {
        --prefix;
    }
    return prefix;
}

std::optional<Setup> SetUp(const DevCloud& dev, const CreateStormOptions& o) {
    ApiClient admin = dev.Admin();
    Setup s;
    ApiReply p =
        admin.Must("POST", "/v1/projects", R"({"name":"bench","description":"cogs-bench create-storm"})");
    if (p.status != 201) {
        Progress("POST /v1/projects: {} {}", p.status, p.text);
        return std::nullopt;
    }
    s.project_id = S(At(p.body, "project"), "id");
    ApiReply q =
        admin.Must("PUT", "/v1/projects/" + s.project_id + "/quotas",
                   R"({"servers":-1,"vcpus":-1,"ram_mb":-1,"volumes":-1,"volume_gb":-1,"ports":-1})");
    if (q.status != 200) {
        Progress("PUT quotas: {} {}", q.status, q.text);
        return std::nullopt;
    }
    ApiReply t =
        admin.Must("POST", "/v1/tokens",
                   fmt::format(R"({{"project_id":"{}","role":"member","name":"bench"}})", s.project_id));
    if (t.status != 201) {
        Progress("POST /v1/tokens: {} {}", t.status, t.text);
        return std::nullopt;
    }
    s.member_token = S(At(t.body, "token"), "secret");
    ApiReply f =
        admin.Must("POST", "/v1/flavors", R"({"name":"bench.tiny","vcpus":1,"ram_mb":256,"disk_gb":1})");
    if (f.status != 201) {
        Progress("POST /v1/flavors: {} {}", f.status, f.text);
        return std::nullopt;
    }
    ApiClient member(dev.api_url(), s.member_token);
    ApiReply n = member.Must("POST", "/v1/networks", R"({"name":"bench-net"})");
    if (n.status != 202) {
        Progress("POST /v1/networks: {} {}", n.status, n.text);
        return std::nullopt;
    }
    s.network_id = S(At(n.body, "network"), "id");
    if (!WaitStatus(member, "/v1/networks/" + s.network_id, "network", "ACTIVE")) {
        return std::nullopt;
    }
    const std::string cidr = fmt::format("10.64.0.0/{}", SubnetPrefix(o.servers));
    ApiReply sn = member.Must(
        "POST", "/v1/subnets",
        fmt::format(R"({{"network_id":"{}","cidr":"{}","name":"bench-subnet"}})", s.network_id, cidr));
    if (sn.status != 202) {
        Progress("POST /v1/subnets: {} {}", sn.status, sn.text);
        return std::nullopt;
    }
    if (!WaitStatus(member, "/v1/subnets/" + S(At(sn.body, "subnet"), "id"), "subnet", "ACTIVE")) {
        return std::nullopt;
    }
    Progress("project {}, flavor bench.tiny, network {} with subnet {}: ready", s.project_id, s.network_id,
             cidr);
    return s;
}

bool AwaitHostsUp(const DevCloud& dev, const std::set<std::string>& wanted) {
    ApiClient admin = dev.Admin();
    std::string last;
    const bool ok = testing::WaitUntil(
        [&] {
            auto hosts = ListAll(admin, "/v1/hosts", "hosts");
            if (!hosts) {
                return false;
            }
            size_t up = 0;
            for (const auto& h : *hosts) {
                up += wanted.contains(S(h, "name")) && S(h, "state") == "up" &&
                      At(h, "enabled") != json::value(false);
            }
            last = fmt::format("{} of {} hosts up", up, wanted.size());
            return up == wanted.size();
        },
        90s, 100ms);
    Progress("{}", last);
    return ok;
}

// ---- the checks after the storm ----

struct Usage {
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
};

struct Checks {
    int overcommitted_api = 0;     // used (GET /v1/hosts) above capacity × ratio
    int overcommitted_agents = 0;  // the agents' instances above capacity × ratio
    int overcommitted_hosts = 0;   // either
    int usage_mismatches = 0;      // hosts whose used (API) differs from the agents' sum
    int64_t instances = 0;         // held by the agents, in total
    int duplicate_addresses = 0;
    int addresses_missing = 0;  // an ACTIVE server's ip that the network service does not hold
    int64_t hosts_used = 0;     // hosts holding at least one instance
    int64_t max_per_host = 0;
};

bool Over(const Usage& u, const Usage& cap, const CreateStormOptions& o) {
    return static_cast<double>(u.vcpus) > static_cast<double>(cap.vcpus) * o.cpu_ratio ||
           static_cast<double>(u.ram_mb) > static_cast<double>(cap.ram_mb) * o.ram_ratio ||
           static_cast<double>(u.disk_gb) > static_cast<double>(cap.disk_gb) * o.disk_ratio;
}

// Every compute process's URL: `cogs dev`'s and ours.
std::vector<std::string> ComputeUrls(const DevCloud& dev, const std::string& sim_url) {
    std::vector<std::string> urls;
    for (const auto& p : dev.processes()) {
        if (p.name.find("compute") != std::string::npos) {
            urls.push_back(p.url);
        }
    }
    if (!sim_url.empty()) {
        urls.push_back(sim_url);
    }
    return urls;
}

// Instances per host, summed over every agent's own inventory; nullopt if one did not answer.
std::optional<std::pair<std::map<std::string, Usage>, std::map<std::string, Usage>>> AgentUsage(
    const DevCloud& dev, const std::string& sim_url, int64_t* instances) {
    std::map<std::string, Usage> used, capacity;
    *instances = 0;
    for (const auto& url : ComputeUrls(dev, sim_url)) {
        ApiClient svc(url, dev.service_token());
        ApiReply r = svc.Must("GET", "/v1/inventory");
        if (r.status != 200) {
            Progress("GET {}/v1/inventory: {} {}", url, r.status, r.text);
            return std::nullopt;
        }
        for (const auto& h : Arr(r.body, "hosts")) {
            capacity[S(h, "name")] = Usage{I(h, "vcpus"), I(h, "ram_mb"), I(h, "disk_gb")};
        }
        for (const auto& inst : Arr(r.body, "instances")) {
            Usage& u = used[S(inst, "host")];
            u.vcpus += I(inst, "vcpus");
            u.ram_mb += I(inst, "ram_mb");
            u.disk_gb += I(inst, "disk_gb");
            ++*instances;
        }
    }
    return std::make_pair(std::move(used), std::move(capacity));
}

std::optional<Checks> Check(const DevCloud& dev, const std::string& sim_url,
                            const std::vector<json::value>& active, const CreateStormOptions& o) {
    Checks c;
    ApiClient admin = dev.Admin();
    auto hosts = ListAll(admin, "/v1/hosts", "hosts");
    int64_t instances = 0;
    auto agents = AgentUsage(dev, sim_url, &instances);
    ApiClient network(dev.ServiceUrl("network"), dev.service_token());
    ApiReply net = network.Must("GET", "/v1/inventory");
    if (!hosts || !agents || net.status != 200) {
        if (net.status != 200) {
            Progress("GET network /v1/inventory: {} {}", net.status, net.text);
        }
        return std::nullopt;
    }
    c.instances = instances;
    auto& [agent_used, agent_capacity] = *agents;
    std::set<std::string> names;
    for (const auto& h : *hosts) {
        const std::string name = S(h, "name");
        names.insert(name);
        const Usage cap{I(h, "vcpus"), I(h, "ram_mb"), I(h, "disk_gb")};
        const json::value& u = At(h, "used");
        const Usage api{I(u, "vcpus"), I(u, "ram_mb"), I(u, "disk_gb")};
        const Usage agent = agent_used[name];
        const bool over_api = Over(api, cap, o);
        // The agent's own idea of its host's size, should cogsd's record differ from it.
        const Usage agent_cap = agent_capacity.contains(name) ? agent_capacity[name] : cap;
        const bool over_agent = Over(agent, agent_cap, o) || Over(agent, cap, o);
        c.overcommitted_api += over_api;
        c.overcommitted_agents += over_agent;
        c.overcommitted_hosts += over_api || over_agent;
        if (api.vcpus != agent.vcpus || api.ram_mb != agent.ram_mb || api.disk_gb != agent.disk_gb) {
            ++c.usage_mismatches;
            if (c.usage_mismatches <= 3) {
                Progress("host {}: cogsd says used {}/{}/{}, its agent holds {}/{}/{} (vcpus/ram_mb/disk_gb)",
                         name, api.vcpus, api.ram_mb, api.disk_gb, agent.vcpus, agent.ram_mb, agent.disk_gb);
            }
        }
        if (agent.vcpus > 0) {
            ++c.hosts_used;
        }
        c.max_per_host = std::max(c.max_per_host, agent.vcpus);  // bench.tiny: one vCPU per instance
    }
    for (const auto& [name, u] : agent_used) {
        if (!names.contains(name) && u.vcpus > 0) {
            Progress("an agent holds instances on host {}, which cogsd does not know", name);
            ++c.usage_mismatches;
        }
    }
    // An address is duplicated if two ACTIVE servers show it, or the network service holds it twice
    // (in one subnet) — or an ACTIVE server's address is held by nobody.
    std::map<std::string, int> server_ips;
    for (const auto& s : active) {
        ++server_ips[S(s, "ip_address")];
    }
    std::map<std::string, int> held;  // "subnet/ip"
    std::set<std::string> held_ips;
    for (const auto& a : Arr(net.body, "addresses")) {
        ++held[S(a, "subnet_id") + "/" + S(a, "ip")];
        held_ips.insert(S(a, "ip"));
    }
    for (const auto& [ip, n] : server_ips) {
        c.duplicate_addresses += !ip.empty() && n > 1;
        c.addresses_missing += ip.empty() ? n : !held_ips.contains(ip);
    }
    for (const auto& [key, n] : held) {
        c.duplicate_addresses += n > 1;
    }
    return c;
}

// JSON with numbers as people write them (Boost.JSON prints 233.0 as 2.33E2).
void WriteJson(const json::value& v, std::string& out) {
    switch (v.kind()) {
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const auto& [k, item] : v.as_object()) {
                out += first ? "" : ",";
                first = false;
                out += json::serialize(json::string(k)) + ":";
                WriteJson(item, out);
            }
            out += '}';
            return;
        }
        case json::kind::array: {
            out += '[';
            bool first = true;
            for (const auto& item : v.as_array()) {
                out += first ? "" : ",";
                first = false;
                WriteJson(item, out);
            }
            out += ']';
            return;
        }
        case json::kind::double_:
            out += std::isfinite(v.as_double()) ? fmt::format("{}", v.as_double()) : "null";
            return;
        default:
            out += json::serialize(v);
    }
}

std::string Json(const json::value& v) {
    std::string out;
    WriteJson(v, out);
    return out;
}

}  // namespace

int RunCreateStorm(const CreateStormOptions& o) {
    const auto n = static_cast<size_t>(std::max(0, o.servers));
    Progress("starting the local cloud: cogs dev with {} hosts, boot {} ms", o.hosts, o.boot_ms);
    auto started = DevCloud::Start(testing::DevOptions{o.hosts, o.boot_ms, {}});
    if (!started) {
        Progress("cogs dev did not start: {}", started.error().ToString());
        return 1;
    }
    std::unique_ptr<DevCloud> dev = std::move(*started);
    Progress("cogs dev up: {} (data in {})", dev->api_url(), dev->data_dir());

    // The extra hosts: one more compute process, registered with cogsd like `cogs dev`'s own.
    runtime::Child sim;
    std::string sim_url;
    std::set<std::string> wanted;
    for (int i = 1; i <= o.hosts; ++i) {
        wanted.insert(fmt::format("host-{}", i));
    }
    if (o.sim_hosts > 0) {
        const std::string dir = dev->data_dir();
        std::string admin_token_file = dir + "/admin.token";
        if (!std::filesystem::exists(admin_token_file)) {
            admin_token_file = dir + "/bench-admin.token";
            if (auto st = runtime::WriteFileAtomic(admin_token_file, dev->admin_token() + "\n", 0600); !st) {
                Progress("{}", st.error().ToString());
                return 1;
            }
        }
        const std::string port_file = dir + "/bench-sim-compute.port";
        const std::string log = dir + "/bench-sim-compute.log";
        std::vector<std::string> argv = {runtime::SiblingBinary("cogs-compute"),
                                         "--listen",
                                         "127.0.0.1:0",
                                         "--port-file",
                                         port_file,
                                         "--state",
                                         dir + "/bench-sim-compute.db",
                                         "--token-file",
                                         dir + "/service.token",
                                         "--hosts",
                                         std::to_string(o.sim_hosts),
                                         "--host-prefix",
                                         kSimPrefix,
                                         "--az",
                                         "nova",
                                         "--boot-ms",
                                         std::to_string(o.boot_ms),
                                         "--control-url",
                                         dev->api_url(),
                                         "--control-token-file",
                                         admin_token_file};
        auto child = runtime::Child::Spawn(argv, runtime::SpawnOptions{log});
        if (!child) {
            Progress("cannot start cogs-compute: {}", child.error().ToString());
            return 1;
        }
        sim = std::move(*child);
        auto port = runtime::WaitForPortFile(port_file, SteadyClock::now() + 30s, &sim);
        if (!port) {
            Progress("cogs-compute --hosts {} did not start: {}\n{}", o.sim_hosts, port.error().ToString(),
                     runtime::TailFile(log, 20));
            return 1;
        }
        sim_url = fmt::format("http://127.0.0.1:{}", *port);
        for (int i = 1; i <= o.sim_hosts; ++i) {
            wanted.insert(fmt::format("{}{}", kSimPrefix, i));
        }
        Progress("cogs-compute with {} hosts on {} (pid {}, log {})", o.sim_hosts, sim_url, sim.pid(), log);
    }
    // Stops our compute process before `cogs dev` goes (declared after `dev`: runs first).
    struct StopSim {
        runtime::Child& c;
        ~StopSim() {
            if (c.pid() > 0) {
                c.Stop(5s);
            }
        }
    } stop_sim{sim};

    auto setup = SetUp(*dev, o);
    if (!setup || !AwaitHostsUp(*dev, wanted)) {
        Progress("set-up failed; logs in {}/logs (COGS_KEEP_TEST_DIRS=1 keeps them)", dev->data_dir());
        return 1;
    }

    std::vector<Accounted> procs;
    int cogsd_pid = 0;
    for (const auto& p : dev->processes()) {
        std::string group = p.name.find("compute") != std::string::npos ? "compute" : p.name;
        procs.push_back({group, p.pid});
        if (p.name == "cogsd") {
            cogsd_pid = p.pid;
        }
    }
    if (sim.pid() > 0) {
        procs.push_back({"compute", sim.pid()});
    }
    procs.push_back({"bench", static_cast<int>(::getpid())});
    const int64_t cogsd_rss_before = cogsd_pid ? StatusKib(cogsd_pid, "VmRSS") : 0;
    // The machine as the storm finds it: a shared VM's load and disk move the figures a lot.
    const double load_before = LoadAverage();
    const double fsyncs_per_s = MeasureFsyncs(dev->data_dir(), 1.0);
    Progress("load average {:.1f}; the disk does {:.0f} fsyncs/s (4 KiB append + fdatasync)", load_before,
             fsyncs_per_s);

    // ---- the storm ----
    const std::string run = RandomHex(4);
    std::vector<Tracked> servers(n);
    Phase::Options po{dev->api_url(), setup->member_token, o.connections, Millis(o.poll_ms),
                      std::chrono::seconds(o.deadline_s)};
    Phase storm(po, servers, [&](size_t i) {
        http::Request req;
        req.method = "POST";
        req.target = "/v1/servers";
        req.body =
            fmt::format(R"({{"name":"storm-{}","flavor":"bench.tiny","image":"cirros","network_id":"{}"}})",
                        i, setup->network_id);
        req.headers.emplace_back("content-type", "application/json");
        req.headers.emplace_back("idempotency-key", fmt::format("storm-{}-{}", run, i));
        return req;
    });
    Progress("storm: {} POST /v1/servers at once on {} connections, polling every {} ms", n, o.connections,
             o.poll_ms);
    CpuMeter cpu(procs);
    cpu.Start();
    storm.Run(Phase::Watch::kCreate);
    json::object storm_cpu = cpu.Stop();
    const int64_t cogsd_rss_after = cogsd_pid ? StatusKib(cogsd_pid, "VmRSS") : 0;
    const int64_t cogsd_hwm = cogsd_pid ? StatusKib(cogsd_pid, "VmHWM") : 0;

    std::vector<double> to_active, accept;
    SteadyTime first = SteadyTime::max(), last_active = SteadyTime::min();
    int active = 0, errors = 0, refused = 0;
    for (const auto& t : servers) {
        first = std::min(first, t.sent);
        if (t.answered && !t.refused) {
            accept.push_back(Ms(t.sent, *t.answered));
        }
        refused += t.refused;
        errors += t.error;
        if (t.done) {
            ++active;
            to_active.push_back(Ms(t.sent, *t.done));
            last_active = std::max(last_active, *t.done);
        }
    }
    const int failed = static_cast<int>(n) - active;
    const double span_s = active > 0 ? Seconds(first, last_active) : 0;
    Progress("storm over: {} ACTIVE, {} ERROR, {} refused, {} not settled; {} retries after 429", active,
             errors, refused, failed - errors - refused, storm.retries_429);
    for (const auto& r : storm.refusals) {
        Progress("refused: {}", r);
    }

    // ---- checks: what cogsd says against what the services hold ----
    ApiClient member(dev->api_url(), setup->member_token);
    auto listed = ListAll(member, "/v1/servers?status=ACTIVE", "servers");
    std::optional<Checks> checks;
    if (listed) {
        checks = Check(*dev, sim_url, *listed, o);
    }
    if (errors > 0) {
        auto in_error = ListAll(member, "/v1/servers?status=ERROR", "servers");
        if (in_error && !in_error->empty()) {
            Progress("first ERROR: {}", Json(in_error->front()));
        }
    }

    json::object out;
    out["benchmark"] = "create-storm";
    out["servers"] = n;
    out["servers_per_s"] = span_s > 0 ? Round(active / span_s) : 0.0;
    out["request_to_active_p50_ms"] = Round(Percentile(to_active, 0.50));
    out["request_to_active_p99_ms"] = Round(Percentile(to_active, 0.99));
    out["request_to_active_max_ms"] = Round(Percentile(to_active, 1.0));
    out["accept_p50_ms"] = Round(Percentile(accept, 0.50));
    out["accept_p99_ms"] = Round(Percentile(accept, 0.99));
    out["failed"] = failed;
    out["overcommitted_hosts"] = checks ? checks->overcommitted_hosts : -1;
    out["duplicate_addresses"] = checks ? checks->duplicate_addresses : -1;
    out["active"] = active;
    out["error"] = errors;
    out["refused"] = refused;
    out["timed_out"] = storm.timed_out;
    out["retries_429"] = storm.retries_429;
    out["retries_503"] = storm.retries_503;
    out["transport_retries"] = storm.transport_retries;
    out["storm_s"] = Round(span_s, 3);
    if (checks) {
        out["overcommitted_hosts_api"] = checks->overcommitted_api;
        out["overcommitted_hosts_agents"] = checks->overcommitted_agents;
        out["host_usage_mismatches"] = checks->usage_mismatches;
        out["addresses_missing"] = checks->addresses_missing;
        out["instances_on_agents"] = checks->instances;
        out["hosts_used"] = checks->hosts_used;
        out["max_instances_per_host"] = checks->max_per_host;
    }
    out["poll_rounds"] = storm.poll_rounds;
    out["poll_round_mean_ms"] = Round(storm.mean_round_ms);
    out["cpu_storm"] = std::move(storm_cpu);
    out["cogsd_rss_kib_before"] = cogsd_rss_before;
    out["cogsd_rss_kib_after"] = cogsd_rss_after;
    out["cogsd_rss_peak_kib"] = cogsd_hwm;

    // ---- cleanup: delete them all, timed the same way ----
    if (o.cleanup) {
        std::vector<Tracked> doomed;
        for (const auto& t : servers) {
            if (!t.id.empty()) {
                doomed.push_back(Tracked{});
                doomed.back().id = t.id;
            }
        }
        Phase del(po, doomed, [&](size_t i) {
            http::Request req;
            req.method = "DELETE";
            req.target = "/v1/servers/" + doomed[i].id;
            return req;
        });
        Progress("cleanup: {} DELETE /v1/servers/{{id}} at once", doomed.size());
        cpu.Start();
        del.Run(Phase::Watch::kDelete);
        json::object del_cpu = cpu.Stop();
        int deleted = 0;
        SteadyTime last_gone = SteadyTime::min();
        std::vector<double> to_gone;
        for (const auto& t : doomed) {
            if (t.done) {
                ++deleted;
                last_gone = std::max(last_gone, *t.done);
                to_gone.push_back(Ms(t.sent, *t.done));
            }
        }
        const double del_s = deleted > 0 ? Seconds(doomed.front().sent, last_gone) : 0;
        Progress("cleanup over: {} of {} gone in {:.2f} s; {} retries after 429", deleted, doomed.size(),
                 del_s, del.retries_429);
        for (const auto& r : del.refusals) {
            Progress("delete refused: {}", r);
        }
        int64_t left = 0;
        AgentUsage(*dev, sim_url, &left);
        out["deleted"] = deleted;
        out["deleted_per_s"] = del_s > 0 ? Round(deleted / del_s) : 0.0;
        out["request_to_gone_p50_ms"] = Round(Percentile(to_gone, 0.50));
        out["request_to_gone_p99_ms"] = Round(Percentile(to_gone, 0.99));
        out["delete_retries_429"] = del.retries_429;
        out["instances_left_after_cleanup"] = left;
        out["cpu_cleanup"] = std::move(del_cpu);
    }

    out["hosts"] = o.hosts + o.sim_hosts;
    out["boot_ms"] = o.boot_ms;
    out["connections"] = o.connections;
    out["poll_ms"] = o.poll_ms;
    out["machine"] = json::object{{"nproc", ::sysconf(_SC_NPROCESSORS_ONLN)},
                                  {"cpu", CpuModel()},
                                  {"loadavg_1m", Round(load_before, 2)},
                                  {"fsyncs_per_s", Round(fsyncs_per_s, 0)}};

    stop_sim.c.Stop(5s);
    dev->Stop();
    fmt::print("{}\n", Json(out));
    std::fflush(stdout);
    return 0;
}

}  // namespace cogs::bench
