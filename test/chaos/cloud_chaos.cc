// cogs-chaos cloud: three threads over one ChaosCloud.
//   - the workload (this thread): API operations at a seeded rate, each POST re-sent with its
//     Idempotency-Key until answered, each accepted one tracked until its resource is terminal;
//   - the faults thread: a seeded schedule of injections and their undoing (restarts, heals);
//   - the sampler: every ~200 ms the agents' inventories (directly), hosts, servers and volumes;
//     it counts split brain and times detection and healing of the host failures.
// They share `Shared` under one mutex; only the faults thread touches processes during the run.
#include "test/chaos/cloud_chaos.h"

#include <atomic>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "test/chaos/chaos_cloud.h"
#include "test/chaos/cloud_api.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// How long a partition or a killed host takes to be declared down by the control plane: the lease
// TTL plus the fencing window (protocol.md), or today's --host-timeout-s.
constexpr double kHostDownWindowS = 4.0;

struct ServerView {
    std::string status;
    std::string host;
};

struct Snapshot {
    SteadyTime started{};
    SteadyTime finished{};
    bool servers_ok = false;
    bool volumes_ok = false;
    bool hosts_ok = false;
    std::map<std::string, ServerView> servers;
    std::map<std::string, std::string> volumes;     // id -> status
    std::map<std::string, std::string> host_state;  // name -> up / suspect / down
    std::vector<std::optional<std::map<std::string, InstanceView>>> inventories;  // per host
};

struct HostFailure {
    std::string kind;  // "agent_kill" | "partition"
    int host = 0;
    SteadyTime at{};
    std::set<std::string> servers;  // ACTIVE on the host at the injection, still to heal
    size_t initial_servers = 0;
    std::optional<SteadyTime> detected;
    std::optional<SteadyTime> healed;
    std::optional<SteadyTime> recovered;  // the agent restarted / the partition healed
};

struct Shared {
    std::mutex mu;
    std::shared_ptr<const Snapshot> latest;
    std::set<std::string> split_brain;
    std::vector<HostFailure> failures;
    std::set<std::string> user_changed;   // servers the workload stopped or deleted (they drop out of heals)
    std::map<std::string, int> injected;  // kind -> count
    uint64_t samples = 0;
    uint64_t incoherent_samples = 0;
    std::atomic<bool> stop_sampler{false};
    std::atomic<bool> stop_faults{false};
};

class Logger {
public:
    explicit Logger(SteadyTime t0) : t0_(t0) {}
    template <typename... Args>
    void operator()(fmt::format_string<Args...> f, Args&&... args) const {
        const std::string line = fmt::format(f, std::forward<Args>(args)...);
        std::lock_guard lock(mu_);
        fmt::print(stderr, "[{:8.3f}s] {}\n", Seconds(SteadyClock::now() - t0_), line);
    }
    SteadyTime t0() const { return t0_; }

private:
    SteadyTime t0_;
    mutable std::mutex mu_;
};

// --- Sampler -------------------------------------------------------------------------------

void UpdateFailure(HostFailure& f, const Snapshot& s, const std::set<std::string>& user_changed) {
    if (s.started < f.at) {
        return;
    }
    if (!f.detected && s.hosts_ok) {
        auto it = s.host_state.find(ChaosCloud::HostName(f.host));
        if (it != s.host_state.end() && (it->second == "suspect" || it->second == "down")) {
            f.detected = s.finished;
        }
    }
    if (f.healed || !s.servers_ok || f.initial_servers == 0) {
        return;
    }
    bool all = true;
    for (auto it = f.servers.begin(); it != f.servers.end();) {
        if (user_changed.count(*it) != 0) {
            it = f.servers.erase(it);  // stopped or deleted on purpose meanwhile
            continue;
        }
        auto sv = s.servers.find(*it);
        bool ok = false;
        if (sv != s.servers.end() && sv->second.status == "ACTIVE" &&
            (sv->second.host != ChaosCloud::HostName(f.host) || f.recovered)) {
            for (const auto& inv : s.inventories) {
                if (inv) {
                    auto i = inv->find(*it);
                    ok = ok || (i != inv->end() && i->second.host == sv->second.host &&
                                i->second.state == "ACTIVE");
                }
            }
        }
        all = all && ok;
        ++it;
    }
    if (all) {
        f.healed = s.finished;
    }
}

void RunSampler(const ChaosCloud& cloud, Shared& sh, const Logger& log) {
    ApiClient api(cloud.api_url(), cloud.admin_token());
    std::vector<ApiClient> agents;
    for (int i = 0; i < cloud.hosts(); ++i) {
        agents.emplace_back(cloud.ProcessUrl(ChaosCloud::kAgent + i), cloud.service_token());
    }
    while (!sh.stop_sampler) {
        auto snap = std::make_shared<Snapshot>();
        snap->started = SteadyClock::now();
        for (auto& a : agents) {
            auto inv = ComputeInventory(a, 1s);
            snap->inventories.push_back(inv ? std::optional(std::move(*inv)) : std::nullopt);
        }
        // Inventories read too far apart cannot tell "at the same moment"; such rounds do not count.
        const bool coherent = SteadyClock::now() - snap->started < 500ms;
        if (auto r = api.Call("GET", "/v1/hosts", "", {}, 2s); r && r->status == 200 && r->body.is_object()) {
            snap->hosts_ok = true;
            for (const auto& h : r->body.as_object().at("hosts").as_array()) {
                snap->host_state[Str(h.as_object(), "name")] = Str(h.as_object(), "state");
            }
        }
        if (auto servers = ListAll(api, "/v1/servers", "servers")) {
            snap->servers_ok = true;
            for (const auto& s : *servers) {
                snap->servers[Str(s, "id")] = ServerView{Str(s, "status"), Str(s, "host")};
            }
        }
        if (auto volumes = ListAll(api, "/v1/volumes", "volumes")) {
            snap->volumes_ok = true;
            for (const auto& v : *volumes) {
                snap->volumes[Str(v, "id")] = Str(v, "status");
            }
        }
        snap->finished = SteadyClock::now();
        std::map<std::string, std::set<std::string>> running;  // server -> hosts running it
        for (const auto& inv : snap->inventories) {
            if (inv) {
                for (const auto& [id, i] : *inv) {
                    if (InstanceRunning(i.state)) {
                        running[id].insert(i.host);
                    }
                }
            }
        }
        {
            std::lock_guard lock(sh.mu);
            ++sh.samples;
            if (!coherent) {
                ++sh.incoherent_samples;
            } else {
                for (const auto& [id, hosts] : running) {
                    if (hosts.size() > 1 && sh.split_brain.insert(id).second) {
                        log("SPLIT BRAIN: server {} runs on {}", id, fmt::join(hosts, ", "));
                    }
                }
            }
            for (auto& f : sh.failures) {
                const bool was_detected = f.detected.has_value();
                const bool was_healed = f.healed.has_value();
                UpdateFailure(f, *snap, sh.user_changed);
                if (!was_detected && f.detected) {
                    log("detected {} of {}: {:.2f}s", f.kind, ChaosCloud::HostName(f.host),
                        Seconds(*f.detected - f.at));
                }
                if (!was_healed && f.healed) {
                    log("healed {} of {}: {} servers ACTIVE again after {:.2f}s", f.kind,
                        ChaosCloud::HostName(f.host), f.initial_servers, Seconds(*f.healed - f.at));
                }
            }
            sh.latest = snap;
        }
        std::this_thread::sleep_until(snap->started + 200ms);
    }
}

// --- Faults --------------------------------------------------------------------------------

enum class Inject { kAgentKill, kPartition, kCogsdKill, kNetworkKill, kVolumeKill, kServiceFaults, kCrash };

const char* Name(Inject k) {
    switch (k) {
        case Inject::kAgentKill: return "agent_kill";
        case Inject::kPartition: return "partition";
        case Inject::kCogsdKill: return "cogsd_kill";
        case Inject::kNetworkKill: return "network_kill";
        case Inject::kVolumeKill: return "volume_kill";
        case Inject::kServiceFaults: return "service_faults";
        case Inject::kCrash: return "instance_crash";
    }
    return "?";
}

class Faults {
public:
    Faults(ChaosCloud& cloud, Shared& sh, const Logger& log, uint64_t seed, int duration_s)
        : cloud_(cloud),
          sh_(sh),
          log_(log),
          rng_(seed ^ 0x9e3779b97f4a7c15ULL),
          api_(cloud.api_url(), cloud.admin_token()),
          killed_(cloud.hosts(), false) {
        // Injections from 5 s to 5 s before the end, 1.5-4 s apart, in seeded shuffled rounds of
        // every kind (so that even a short run injects each kind once).
        const std::vector<Inject> round = {Inject::kAgentKill,   Inject::kPartition,  Inject::kCogsdKill,
                                           Inject::kNetworkKill, Inject::kVolumeKill, Inject::kServiceFaults,
                                           Inject::kCrash,       Inject::kCrash};
        std::vector<Inject> order;
        double at = 5;
        while (at < duration_s - 5) {
            if (order.empty()) {
                order = round;
                std::shuffle(order.begin(), order.end(), rng_);
            }
            const Inject kind = order.back();
            order.pop_back();
            Schedule(at, [this, kind] { Do(kind); });
            at += std::uniform_real_distribution<double>(1.5, 4.0)(rng_);
        }
    }

    // Runs the schedule until stop_faults; pending undo actions are left to RestoreAll.
    void Run() {
        while (!sh_.stop_faults && !queue_.empty()) {
            const auto due = log_.t0() + std::chrono::duration_cast<Duration>(
                                             std::chrono::duration<double>(queue_.top().at));
            if (SteadyClock::now() < due) {
                std::this_thread::sleep_for(std::min<Duration>(due - SteadyClock::now(), 20ms));
                continue;
            }
            auto fn = queue_.top().fn;
            queue_.pop();
            fn();
        }
    }

private:
    struct Item {
        double at;
        uint64_t seq;
        std::function<void()> fn;
        bool operator>(const Item& o) const { return at != o.at ? at > o.at : seq > o.seq; }
    };

    void Schedule(double at, std::function<void()> fn) { queue_.push(Item{at, seq_++, std::move(fn)}); }
    double Now() const { return Seconds(SteadyClock::now() - log_.t0()); }
    double Uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

    void Count(Inject k) {
        std::lock_guard lock(sh_.mu);
        ++sh_.injected[Name(k)];
    }

    std::vector<int> AliveHosts() const {
        std::vector<int> out;
        for (int h = 0; h < cloud_.hosts(); ++h) {
            if (!killed_[h] && !cloud_.Partitioned(h)) {
                out.push_back(h);
            }
        }
        return out;
    }

    // Servers ACTIVE on host h according to cogsd now (or the latest sample if cogsd is down).
    std::set<std::string> ActiveServersOn(int h) {
        std::set<std::string> out;
        const std::string name = ChaosCloud::HostName(h);
        if (auto list = ListAll(api_, "/v1/servers?host=" + name, "servers")) {
            for (const auto& s : *list) {
                if (Str(s, "status") == "ACTIVE" && Str(s, "host") == name) {
                    out.insert(Str(s, "id"));
                }
            }
            return out;
        }
        std::lock_guard lock(sh_.mu);
        if (sh_.latest) {
            for (const auto& [id, s] : sh_.latest->servers) {
                if (s.status == "ACTIVE" && s.host == name) {
                    out.insert(id);
                }
            }
        }
        return out;
    }

    size_t AddFailure(Inject k, int h) {
        HostFailure f;
        f.kind = Name(k);
        f.host = h;
        f.servers = ActiveServersOn(h);
        f.initial_servers = f.servers.size();
        f.at = SteadyClock::now();
        std::lock_guard lock(sh_.mu);
        sh_.failures.push_back(std::move(f));
        return sh_.failures.size() - 1;
    }

    void Recovered(size_t failure) {
        std::lock_guard lock(sh_.mu);
        sh_.failures[failure].recovered = SteadyClock::now();
    }

    void RestartLater(int proc, double after) {
        Schedule(Now() + after, [this, proc] {
            if (auto s = cloud_.Restart(proc); !s) {
                log_("restart of {} FAILED: {}", cloud_.ProcessName(proc), s.error().message);
            } else {
                log_("restarted {}", cloud_.ProcessName(proc));
            }
        });
    }

    void Do(Inject k) {
        switch (k) {
            case Inject::kAgentKill:
            case Inject::kPartition: {
                auto alive = AliveHosts();
                // Keep more than half of the hosts alive (and connected).
                if (alive.empty() || (static_cast<int>(alive.size()) - 1) * 2 <= cloud_.hosts()) {
                    log_("skip {}: only {} of {} hosts alive", Name(k), alive.size(), cloud_.hosts());
                    return;
                }
                const int h = alive[rng_() % alive.size()];
                const size_t failure = AddFailure(k, h);
                const size_t servers = sh_.failures[failure].initial_servers;  // only this thread appends
                if (k == Inject::kAgentKill) {
                    cloud_.Kill(ChaosCloud::kAgent + h);
                    killed_[h] = true;
                    const bool never = never_restarted_ == 0 && rng_() % 4 == 0;
                    log_("inject agent_kill {} ({} ACTIVE servers){}", ChaosCloud::HostName(h), servers,
                         never ? ", not restarted during the run" : "");
                    if (never) {
                        ++never_restarted_;
                    } else {
                        Schedule(Now() + Uniform(6, 15), [this, h, failure] {
                            if (auto s = cloud_.Restart(ChaosCloud::kAgent + h); !s) {
                                log_("restart of {} FAILED: {}", cloud_.ProcessName(ChaosCloud::kAgent + h),
                                     s.error().message);
                                return;
                            }
                            killed_[h] = false;
                            Recovered(failure);
                            log_("restarted agent of {}", ChaosCloud::HostName(h));
                        });
                    }
                } else {
                    cloud_.SetPartitioned(h, true);
                    const double length = kHostDownWindowS + Uniform(2, 6);
                    log_("inject partition {} for {:.1f}s ({} ACTIVE servers)", ChaosCloud::HostName(h),
                         length, servers);
                    Schedule(Now() + length, [this, h, failure] {
                        cloud_.SetPartitioned(h, false);
                        Recovered(failure);
                        log_("healed partition of {}", ChaosCloud::HostName(h));
                    });
                }
                break;
            }
            case Inject::kCogsdKill:
            case Inject::kNetworkKill:
            case Inject::kVolumeKill: {
                const int proc = k == Inject::kCogsdKill     ? ChaosCloud::kCogsd
                                 : k == Inject::kNetworkKill ? ChaosCloud::kNetwork
                                                             : ChaosCloud::kVolume;
                if (!cloud_.Running(proc)) {
                    log_("skip {}: already down", Name(k));
                    return;
                }
                cloud_.Kill(proc);
                const double pause = Uniform(0.3, 2.0);
                log_("inject {} (SIGKILL {}, back in {:.1f}s)", Name(k), cloud_.ProcessName(proc), pause);
                RestartLater(proc, pause);
                break;
            }
            case Inject::kServiceFaults: {
                const int proc = rng_() % 2 == 0 ? ChaosCloud::kNetwork : ChaosCloud::kVolume;
                const std::string faults =
                    R"({"error_rate":0.1,"hang_rate":0.02,"lost_reply_rate":0.05,"permanent_rate":0.01,"latency_ms":5})";
                ApiClient svc(cloud_.ProcessUrl(proc), cloud_.service_token());
                auto r = svc.Call("PUT", "/v1/faults", faults, {}, 2s);
                if (!r || r->status != 200) {
                    log_("skip service_faults on {}: {}", cloud_.ProcessName(proc),
                         r ? r->text : r.error().message);
                    return;
                }
                const double length = Uniform(3, 8);
                log_("inject service_faults on {} for {:.1f}s: {}", cloud_.ProcessName(proc), length, faults);
                Schedule(Now() + length, [this, proc] {
                    ApiClient s(cloud_.ProcessUrl(proc), cloud_.service_token());
                    auto off = s.Call("PUT", "/v1/faults", "{}", {}, 2s);
                    log_("service_faults off on {}: {}", cloud_.ProcessName(proc),
                         off && off->status == 200 ? "ok" : "failed (a restart clears them anyway)");
                });
                break;
            }
            case Inject::kCrash: {
                std::vector<std::pair<int, std::string>> candidates;
                {
                    std::lock_guard lock(sh_.mu);
                    if (sh_.latest) {
                        for (int h : AliveHosts()) {
                            const auto& inv = sh_.latest->inventories[h];
                            if (inv) {
                                for (const auto& [id, i] : *inv) {
                                    if (i.state == "ACTIVE") {
                                        candidates.emplace_back(h, id);
                                    }
                                }
                            }
                        }
                    }
                }
                if (candidates.empty()) {
                    log_("skip instance_crash: no ACTIVE instance on a live host");
                    return;
                }
                const auto [h, id] = candidates[rng_() % candidates.size()];
                ApiClient agent(cloud_.ProcessUrl(ChaosCloud::kAgent + h), cloud_.service_token());
                auto r = agent.Call("POST", "/v1/instances/" + id + "/crash", "", {}, 2s);
                log_("inject instance_crash {} on {}: {}", id, ChaosCloud::HostName(h),
                     r ? fmt::format("{} {}", r->status, r->text) : r.error().message);
                if (!r || r->status / 100 != 2) {
                    std::lock_guard lock(sh_.mu);
                    ++sh_.injected["instance_crash_refused"];
                    return;
                }
                break;
            }
        }
        Count(k);
    }

    ChaosCloud& cloud_;
    Shared& sh_;
    const Logger& log_;
    std::mt19937_64 rng_;
    ApiClient api_;
    std::vector<bool> killed_;
    int never_restarted_ = 0;
    uint64_t seq_ = 0;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_;
};

// --- Workload ------------------------------------------------------------------------------

enum class OpKind {
    kCreateServer,
    kDeleteServer,
    kStartServer,
    kStopServer,
    kCreateVolume,
    kDeleteVolume,
    kAttach,
    kDetach
};

const char* Name(OpKind k) {
    switch (k) {
        case OpKind::kCreateServer: return "server.create";
        case OpKind::kDeleteServer: return "server.delete";
        case OpKind::kStartServer: return "server.start";
        case OpKind::kStopServer: return "server.stop";
        case OpKind::kCreateVolume: return "volume.create";
        case OpKind::kDeleteVolume: return "volume.delete";
        case OpKind::kAttach: return "volume.attach";
        case OpKind::kDetach: return "volume.detach";
    }
    return "?";
}

bool OnServer(OpKind k) {
    return k == OpKind::kCreateServer || k == OpKind::kDeleteServer || k == OpKind::kStartServer ||
           k == OpKind::kStopServer;
}

struct Op {
    OpKind kind{};
    std::string method, target, body, key;
    std::string server_id, volume_id;  // what it acts on (a create's id comes with its answer)
    SteadyTime first_sent{}, next_send{}, accepted_at{};
    int attempts = 0;
    enum State { kSending, kAccepted, kRefused, kUnanswered } state = kSending;
    bool terminal = false;
    std::string outcome;
};

struct ServerModel {
    bool busy = false;
    std::string last_op;  // create / start / stop / delete: the last ACCEPTED operation
    bool create_active = false;
    bool gone = false;
};

struct VolumeModel {
    bool busy = false;
    bool gone = false;
};

class Workload {
public:
    Workload(const ChaosCloud& cloud, Shared& sh, const Logger& log, const Seeded& seeded, uint64_t seed)
        : sh_(sh),
          log_(log),
          seeded_(seeded),
          seed_(seed),
          rng_(seed),
          api_(cloud.api_url(), cloud.admin_token()),
          hosts_(cloud.hosts()) {}

    // Starts a new operation chosen from what exists now.
    void StartOne() {
        auto snap = Latest();
        if (!snap || !snap->servers_ok || !snap->volumes_ok) {
            return;
        }
        auto server_with = [&](std::initializer_list<const char*> statuses) -> std::string {
            std::vector<std::string> c;
            for (const auto& [id, m] : servers_) {
                auto s = snap->servers.find(id);
                if (m.busy || m.gone || m.last_op == "delete" || s == snap->servers.end()) {
                    continue;
                }
                for (const char* st : statuses) {
                    if (s->second.status == st) {
                        c.push_back(id);
                    }
                }
            }
            return c.empty() ? "" : c[rng_() % c.size()];
        };
        auto volume_with = [&](const char* status) -> std::string {
            std::vector<std::string> c;
            for (const auto& [id, m] : volumes_) {
                auto s = snap->volumes.find(id);
                if (!m.busy && !m.gone && s != snap->volumes.end() && s->second == status) {
                    c.push_back(id);
                }
            }
            return c.empty() ? "" : c[rng_() % c.size()];
        };
        size_t live_servers = 0, live_volumes = 0;
        for (const auto& [id, m] : servers_) {
            live_servers += m.gone || m.last_op == "delete" ? 0 : 1;
        }
        for (const auto& [id, m] : volumes_) {
            live_volumes += m.gone ? 0 : 1;
        }
        static const std::vector<std::pair<OpKind, int>> kWeights = {
            {OpKind::kCreateServer, 30}, {OpKind::kDeleteServer, 12}, {OpKind::kCreateVolume, 15},
            {OpKind::kDeleteVolume, 6},  {OpKind::kAttach, 10},       {OpKind::kDetach, 8},
            {OpKind::kStopServer, 8},    {OpKind::kStartServer, 8}};
        int total = 0;
        for (const auto& [k, w] : kWeights) {
            total += w;
        }
        int pick = static_cast<int>(rng_() % static_cast<uint64_t>(total));
        OpKind kind = OpKind::kCreateServer;
        for (const auto& [k, w] : kWeights) {
            if (pick < w) {
                kind = k;
                break;
            }
            pick -= w;
        }
        const bool servers_full = live_servers >= static_cast<size_t>(hosts_) * 6;
        const bool volumes_full = live_volumes >= static_cast<size_t>(hosts_) * 4;
        Op op;
        op.kind = kind;
        op.key = fmt::format("chaos-{}-{}", seed_, ops_.size());
        switch (kind) {
            case OpKind::kDeleteServer:
                op.server_id = server_with({"ACTIVE", "SHUTOFF", "ERROR"});
                op.method = "DELETE";
                op.target = "/v1/servers/" + op.server_id;
                break;
            case OpKind::kStartServer:
            case OpKind::kStopServer: {
                const bool start = kind == OpKind::kStartServer;
                op.server_id = server_with({start ? "SHUTOFF" : "ACTIVE"});
                op.method = "POST";
                op.target = "/v1/servers/" + op.server_id + (start ? "/start" : "/stop");
                op.body = "{}";
                break;
            }
            case OpKind::kDeleteVolume:
                op.volume_id = volume_with("available");
                op.method = "DELETE";
                op.target = "/v1/volumes/" + op.volume_id;
                break;
            case OpKind::kAttach:
                op.volume_id = volume_with("available");
                op.server_id = server_with({"ACTIVE", "SHUTOFF"});
                op.method = "POST";
                op.target = "/v1/volumes/" + op.volume_id + "/attach";
                op.body = json::serialize(json::object{{"server_id", op.server_id}});
                if (op.server_id.empty()) {
                    op.volume_id.clear();
                }
                break;
            case OpKind::kDetach:
                op.volume_id = volume_with("in-use");
                op.method = "POST";
                op.target = "/v1/volumes/" + op.volume_id + "/detach";
                op.body = "{}";
                break;
            default: break;
        }
        const bool wants_volume = kind == OpKind::kCreateVolume || kind == OpKind::kDeleteVolume ||
                                  kind == OpKind::kAttach || kind == OpKind::kDetach;
        const bool missing = (wants_volume && op.volume_id.empty()) ||
                             (!wants_volume && kind != OpKind::kCreateServer && op.server_id.empty());
        if (missing || kind == OpKind::kCreateVolume || kind == OpKind::kCreateServer) {
            // Nothing to act on (or a create was drawn): create something, within the caps.
            const bool volume = kind == OpKind::kCreateVolume || (servers_full && !volumes_full);
            if (volume ? volumes_full : servers_full) {
                return;
            }
            op = Op{};
            op.key = fmt::format("chaos-{}-{}", seed_, ops_.size());
            op.method = "POST";
            if (volume) {
                op.kind = OpKind::kCreateVolume;
                op.target = "/v1/volumes";
                op.body =
                    json::serialize(json::object{{"name", fmt::format("cv{}", ops_.size())}, {"size_gb", 1}});
            } else {
                op.kind = OpKind::kCreateServer;
                op.target = "/v1/servers";
                json::object body{{"name", fmt::format("cs{}", ops_.size())},
                                  {"flavor", seeded_.flavor},
                                  {"image", seeded_.image},
                                  {"network_id", seeded_.network_id}};
                if (rng_() % 10 < 3) {
                    op.volume_id = volume_with("available");
                    if (!op.volume_id.empty()) {
                        body["volume_ids"] = json::array{json::value(op.volume_id)};
                    }
                }
                op.body = json::serialize(body);
            }
        }
        SetBusy(op, true);
        op.first_sent = SteadyClock::now();
        ops_.push_back(std::move(op));
        Send(ops_.back());
    }

    // Re-sends what is due and notes what reached a terminal status. Answers whether anything
    // accepted is still in progress or being sent.
    bool Poll() {
        const auto now = SteadyClock::now();
        for (auto& op : ops_) {
            if (op.state == Op::kSending && op.next_send <= now) {
                Send(op);
            }
        }
        auto snap = Latest();
        bool busy = false;
        for (auto& op : ops_) {
            busy = busy || op.state == Op::kSending || (op.state == Op::kAccepted && !op.terminal);
            if (op.state != Op::kAccepted || op.terminal || !snap || snap->started <= op.accepted_at ||
                !snap->servers_ok || !snap->volumes_ok) {
                continue;
            }
            std::optional<std::string> status;
            if (OnServer(op.kind)) {
                if (auto s = snap->servers.find(op.server_id); s != snap->servers.end()) {
                    status = s->second.status;
                }
            } else if (auto v = snap->volumes.find(op.volume_id); v != snap->volumes.end()) {
                status = v->second;
            }
            if (!status) {
                // Gone: the end of a delete; for a create, only if we deleted it since (else it
                // vanished, and stays unfinished: `lost`).
                const bool deleted = OnServer(op.kind) ? servers_[op.server_id].last_op == "delete"
                                                       : volumes_[op.volume_id].gone;
                if (op.kind == OpKind::kCreateServer || op.kind == OpKind::kCreateVolume) {
                    if (!deleted) {
                        continue;
                    }
                }
                Finish(op, "deleted");
            } else if (!Transitional(*status)) {
                Finish(op, *status);
            }
        }
        return busy;
    }

    const std::vector<Op>& ops() const { return ops_; }
    const std::map<std::string, ServerModel>& servers() const { return servers_; }

private:
    std::shared_ptr<const Snapshot> Latest() {
        std::lock_guard lock(sh_.mu);
        return sh_.latest;
    }

    void SetBusy(const Op& op, bool busy) {
        if (!op.server_id.empty()) {
            servers_[op.server_id].busy = busy;
        }
        if (!op.volume_id.empty()) {
            volumes_[op.volume_id].busy = busy;
        }
    }

    void Send(Op& op) {
        ++op.attempts;
        auto r = api_.Call(op.method, op.target, op.body, {{"idempotency-key", op.key}}, 5s);
        const auto now = SteadyClock::now();
        if (!r || r->status == 429 || r->status >= 500) {
            if (now - op.first_sent > 120s) {
                op.state = Op::kUnanswered;
                SetBusy(op, false);
                log_("{} {} never answered after {} attempts", Name(op.kind), op.target, op.attempts);
                return;
            }
            Duration delay = std::min<Duration>(100ms * (1 << std::min(op.attempts - 1, 5)), 2s);
            if (r && !r->header_retry_after.empty()) {
                delay = std::chrono::seconds(std::max(1, std::atoi(r->header_retry_after.c_str())));
            }
            op.next_send = now + delay;
            ++resends_;
            return;
        }
        if (r->status / 100 == 2 && r->body.is_object()) {
            Accept(op, r->body.as_object(), now);
        } else if (op.method == "DELETE" && op.attempts > 1 && (r->status == 404 || r->status == 409)) {
            // The first DELETE may have been applied with its answer lost: it is gone (404) or
            // being deleted (409). Track it as accepted.
            Accept(op, json::object{}, now);
            if (r->status == 404) {
                Finish(op, "deleted");
            }
        } else {
            op.state = Op::kRefused;
            ++refused_[fmt::format("{} {}", Name(op.kind), r->status)];
            SetBusy(op, false);
        }
    }

    void Accept(Op& op, const json::object& body, SteadyTime now) {
        op.state = Op::kAccepted;
        op.accepted_at = now;
        if (op.kind == OpKind::kCreateServer && body.contains("server")) {
            op.server_id = Str(body.at("server").as_object(), "id");
            servers_[op.server_id].busy = true;
        }
        if (op.kind == OpKind::kCreateVolume && body.contains("volume")) {
            op.volume_id = Str(body.at("volume").as_object(), "id");
            volumes_[op.volume_id].busy = true;
        }
        if (OnServer(op.kind)) {
            static const std::map<OpKind, std::string> kLast = {{OpKind::kCreateServer, "create"},
                                                                {OpKind::kStartServer, "start"},
                                                                {OpKind::kStopServer, "stop"},
                                                                {OpKind::kDeleteServer, "delete"}};
            servers_[op.server_id].last_op = kLast.at(op.kind);
            if (op.kind == OpKind::kStopServer || op.kind == OpKind::kDeleteServer) {
                std::lock_guard lock(sh_.mu);
                sh_.user_changed.insert(op.server_id);
            } else if (op.kind == OpKind::kStartServer) {
                std::lock_guard lock(sh_.mu);
                sh_.user_changed.erase(op.server_id);
            }
        }
    }

    void Finish(Op& op, const std::string& outcome) {
        op.terminal = true;
        op.outcome = outcome;
        SetBusy(op, false);
        if (op.kind == OpKind::kCreateServer && outcome == "ACTIVE") {
            servers_[op.server_id].create_active = true;
        }
        if (outcome == "deleted") {
            if (OnServer(op.kind)) {
                servers_[op.server_id].gone = true;
            } else {
                volumes_[op.volume_id].gone = true;
            }
        }
    }

public:
    std::map<std::string, int> refused_;
    int resends_ = 0;

private:
    Shared& sh_;
    const Logger& log_;
    Seeded seeded_;
    uint64_t seed_;
    std::mt19937_64 rng_;
    ApiClient api_;
    int hosts_;
    std::vector<Op> ops_;  // a deque would do; ops are only appended and never move while Send runs
    std::map<std::string, ServerModel> servers_;
    std::map<std::string, VolumeModel> volumes_;
};

// --- Final checks --------------------------------------------------------------------------

struct Checks {
    std::map<std::string, int> leaked;  // kind -> count
    int duplicate_addresses = 0;
    int desired_not_active = 0;
};

Result<json::object> GetObject(ApiClient& c, const std::string& target) {
    auto r = c.Call("GET", target, "", {}, 10s);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status != 200 || !r->body.is_object()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("GET {}: {}", target, r->status));
    }
    return r->body.as_object();
}

Result<Checks> FinalChecks(const ChaosCloud& cloud, const Workload& workload, const Logger& log) {
    ApiClient api(cloud.api_url(), cloud.admin_token());
    std::map<std::string, std::vector<json::object>> lists;
    for (const char* kind : {"servers", "ports", "volumes", "networks", "subnets"}) {
        auto l = ListAll(api, std::string("/v1/") + kind, kind);
        if (!l) {
            return MakeError(l.error());
        }
        lists[kind] = std::move(*l);
    }
    std::map<std::string, std::set<std::string>> ids;
    for (const auto& [kind, items] : lists) {
        for (const auto& o : items) {
            ids[kind].insert(Str(o, "id"));
        }
    }
    std::map<std::string, json::object> servers;
    for (const auto& s : lists["servers"]) {
        servers[Str(s, "id")] = s;
    }
    Checks c;
    auto leak = [&](const std::string& kind, const std::string& what) {
        ++c.leaked[kind];
        log("LEAKED {}: {}", kind, what);
    };
    // Compute: every instance belongs to a server, on the host cogsd names.
    std::map<std::string, std::map<std::string, InstanceView>> instances_by_host;
    for (int h = 0; h < cloud.hosts(); ++h) {
        ApiClient agent(cloud.ProcessUrl(ChaosCloud::kAgent + h), cloud.service_token());
        auto inv = ComputeInventory(agent, 10s);
        if (!inv) {
            return MakeError(
                ErrorCode::kUnavailable,
                fmt::format("inventory of {}: {}", ChaosCloud::HostName(h), inv.error().message));
        }
        for (const auto& [id, i] : *inv) {
            instances_by_host[i.host][id] = i;
            auto s = servers.find(id);
            if (s == servers.end()) {
                leak("instance", fmt::format("{} on {} ({}) has no server", id, i.host, i.state));
            } else if (Str(s->second, "host") != i.host) {
                leak("instance", fmt::format("{} on {} ({}), but cogsd places server {} on '{}'", id, i.host,
                                             i.state, id, Str(s->second, "host")));
            }
        }
    }
    // Network: ports, addresses, networks, subnets.
    ApiClient network(cloud.ProcessUrl(ChaosCloud::kNetwork), cloud.service_token());
    auto net = GetObject(network, "/v1/inventory");
    if (!net) {
        return MakeError(net.error());
    }
    for (const auto& [inv_key, kind] : std::map<std::string, std::string>{
             {"ports", "ports"}, {"networks", "networks"}, {"subnets", "subnets"}}) {
        for (const auto& p : net->at(inv_key).as_array()) {
            if (ids[kind].count(Str(p.as_object(), "id")) == 0) {
                leak(inv_key.substr(0, inv_key.size() - 1), json::serialize(p));
            }
        }
    }
    std::map<std::pair<std::string, std::string>, std::set<std::string>> held;  // (subnet, ip) -> ports
    for (const auto& a : net->at("addresses").as_array()) {
        const auto& o = a.as_object();
        if (ids["ports"].count(Str(o, "port_id")) == 0) {
            leak("address", json::serialize(a));
        }
        held[{Str(o, "subnet_id"), Str(o, "ip")}].insert(Str(o, "port_id"));
    }
    // Volume: volumes and their attachments.
    ApiClient volume(cloud.ProcessUrl(ChaosCloud::kVolume), cloud.service_token());
    auto vol = GetObject(volume, "/v1/inventory");
    if (!vol) {
        return MakeError(vol.error());
    }
    for (const auto& v : vol->at("volumes").as_array()) {
        const auto& o = v.as_object();
        if (ids["volumes"].count(Str(o, "id")) == 0) {
            leak("volume", json::serialize(v));
        } else if (!Str(o, "server_id").empty() && servers.count(Str(o, "server_id")) == 0) {
            leak("attachment", json::serialize(v));
        }
    }
    // Duplicate addresses: in cogsd's ports and servers, and in the network service.
    std::map<std::pair<std::string, std::string>, std::set<std::string>> by_ip;
    for (const auto& p : lists["ports"]) {
        if (!Str(p, "fixed_ip").empty()) {
            by_ip[{Str(p, "network_id"), Str(p, "fixed_ip")}].insert("port " + Str(p, "id"));
        }
    }
    for (const auto& s : lists["servers"]) {
        if (!Str(s, "ip_address").empty()) {
            by_ip[{Str(s, "network_id"), Str(s, "ip_address")}].insert("server " + Str(s, "id"));
        }
    }
    for (const auto& [k, holders] : by_ip) {
        std::set<std::string> ports, srv;
        for (const auto& h : holders) {
            (h.starts_with("port ") ? ports : srv).insert(h);
        }
        if (ports.size() > 1 || srv.size() > 1) {
            c.duplicate_addresses += static_cast<int>(std::max(ports.size(), srv.size()) - 1);
            log("DUPLICATE ADDRESS {} on network {}: {}", k.second, k.first, fmt::join(holders, ", "));
        }
    }
    for (const auto& [k, ports] : held) {
        if (ports.size() > 1) {
            c.duplicate_addresses += static_cast<int>(ports.size() - 1);
            log("DUPLICATE ADDRESS {} in subnet {} (network service): {}", k.second, k.first,
                fmt::join(ports, ", "));
        }
    }
    // Desired state: servers last created (successfully) or started must be ACTIVE, in cogsd and on
    // the host cogsd names.
    for (const auto& [id, m] : workload.servers()) {
        const bool wants_active = m.last_op == "start" || (m.last_op == "create" && m.create_active);
        if (!wants_active) {
            continue;
        }
        auto s = servers.find(id);
        std::string why;
        if (s == servers.end()) {
            why = "gone from cogsd";
        } else if (Str(s->second, "status") != "ACTIVE") {
            why = fmt::format("status {} (fault: {})", Str(s->second, "status"),
                              s->second.contains("fault") ? json::serialize(s->second.at("fault")) : "none");
        } else {
            const std::string host = Str(s->second, "host");
            auto inv = instances_by_host[host].find(id);
            if (inv == instances_by_host[host].end()) {
                why = "no instance on " + host;
            } else if (inv->second.state != "ACTIVE") {
                why = fmt::format("instance on {} is {}", host, inv->second.state);
            }
        }
        if (!why.empty()) {
            ++c.desired_not_active;
            log("DESIRED ACTIVE, is not: server {} (last operation {}): {}", id, m.last_op, why);
        }
    }
    return c;
}

}  // namespace

int RunCloudChaos(const CloudChaosOptions& o) {
    const fs::path dir =
        o.dir.empty() ? fs::temp_directory_path() / fmt::format("cogs-chaos-cloud-{}-{}", o.seed, ::getpid())
                      : fs::path(o.dir);
    fs::remove_all(dir);
    fs::create_directories(dir);
    fmt::print(stderr, "cogs-chaos cloud: seed {}, {} s, {} hosts, working directory {}\n", o.seed,
               o.duration_s, o.hosts, dir.string());
    ChaosCloudOptions co;
    co.dir = dir.string();
    co.hosts = o.hosts;
    co.boot_ms = 50;
    co.cogsd_flags = {{"--reconcile-ms", "2000"},
                      {"--orphan-grace-ms", "5000"},
                      {"--lease-ttl-ms", "3000"},
                      {"--fence-window-ms", "1000"},
                      {"--restart-grace-ms", "3000"}};
    co.agent_flags = {{"--restart-backoff-ms", "250"}};
    auto started = ChaosCloud::Start(co);
    if (!started) {
        fmt::print(stderr, "the cloud did not start: {}\nlogs in {}\n", started.error().message,
                   dir.string());
        fmt::print(
            "{{\"test\":\"cloud\",\"seed\":{},\"error\":\"the cloud did not start\",\"dir\":\"{}\"}}\n",
            o.seed, dir.string());
        return 2;
    }
    ChaosCloud& cloud = **started;
    fmt::print(stderr, "cogs-chaos cloud: up\n");
    ApiClient admin(cloud.api_url(), cloud.admin_token());
    auto seeded = SeedCloud(admin);
    if (!seeded) {
        fmt::print(stderr, "seeding failed: {}\n", seeded.error().message);
        fmt::print("{{\"test\":\"cloud\",\"seed\":{},\"error\":\"seeding failed\",\"dir\":\"{}\"}}\n", o.seed,
                   dir.string());
        return 2;
    }

    const SteadyTime t0 = SteadyClock::now();
    Logger log(t0);
    Shared sh;
    std::thread sampler([&] { RunSampler(cloud, sh, log); });
    Faults faults(cloud, sh, log, o.seed, o.duration_s);
    std::thread faulter([&] { faults.Run(); });
    Workload workload(cloud, sh, log, *seeded, o.seed);
    WaitUntil(
        [&] {
            std::lock_guard lock(sh.mu);
            return sh.latest != nullptr;
        },
        30s);

    // Run: operations at `rate` (exponential gaps), re-sends, terminal tracking.
    std::mt19937_64 rng(o.seed + 1);
    std::exponential_distribution<double> gap(o.rate);
    double next_op = 0;
    const SteadyTime end = t0 + std::chrono::seconds(o.duration_s);
    while (SteadyClock::now() < end) {
        if (SteadyClock::now() >=
            t0 + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(next_op))) {
            workload.StartOne();
            next_op += gap(rng);
        }
        workload.Poll();
        std::this_thread::sleep_for(20ms);
    }

    // End: stop injecting, bring everything back, let the accepted requests finish.
    sh.stop_faults = true;
    faulter.join();
    log("injection over: restoring every process, healing partitions, clearing service faults");
    Status restored = cloud.RestoreAll();
    for (int proc : {ChaosCloud::kNetwork, ChaosCloud::kVolume}) {
        ApiClient svc(cloud.ProcessUrl(proc), cloud.service_token());
        (void)svc.Call("PUT", "/v1/faults", "{}", {}, 5s);
    }
    {
        std::lock_guard lock(sh.mu);
        for (auto& f : sh.failures) {
            if (!f.recovered) {
                f.recovered = SteadyClock::now();
            }
        }
    }
    if (!restored) {
        log("RESTORE FAILED: {}", restored.error().message);
    }
    const SteadyTime settle_end = SteadyClock::now() + std::chrono::seconds(o.settle_s);
    while (workload.Poll() && SteadyClock::now() < settle_end) {
        std::this_thread::sleep_for(50ms);
    }
    log("requests settled; waiting for the reconcilers");
    // The orphan grace plus two reconcile periods.
    const Duration grace = 9s;
    {
        const SteadyTime until = SteadyClock::now() + grace;
        while (SteadyClock::now() < until) {
            workload.Poll();
            std::this_thread::sleep_for(100ms);
        }
    }
    auto checks = FinalChecks(cloud, workload, log);
    sh.stop_sampler = true;
    sampler.join();

    // --- Report -------------------------------------------------------------------------------
    int accepted = 0, terminal = 0, lost = 0, failed = 0, unanswered = 0;
    std::map<std::string, std::map<std::string, int>> outcomes;
    for (const auto& op : workload.ops()) {
        if (op.state == Op::kUnanswered) {
            ++unanswered;
        }
        if (op.state != Op::kAccepted) {
            continue;
        }
        ++accepted;
        if (op.terminal) {
            ++terminal;
            ++outcomes[Name(op.kind)][op.outcome];
            failed += op.outcome == "ERROR" || op.outcome == "error" ? 1 : 0;
        } else {
            ++lost;
            log("LOST: {} {} (resource {}{}) accepted {:.1f}s into the run, never terminal", Name(op.kind),
                op.target, op.server_id, op.volume_id.empty() ? "" : " volume " + op.volume_id,
                Seconds(op.accepted_at - t0));
        }
    }
    std::vector<double> detect, heal;
    int undetected = 0, unhealed = 0;
    std::string failures_json;
    for (const auto& f : sh.failures) {
        if (f.detected) {
            detect.push_back(Seconds(*f.detected - f.at));
        } else {
            ++undetected;
        }
        if (f.initial_servers > 0) {
            if (f.healed) {
                heal.push_back(Seconds(*f.healed - f.at));
            } else {
                ++unhealed;
            }
        }
        failures_json += fmt::format(
            "{}{{\"kind\":\"{}\",\"host\":\"{}\",\"at_s\":{:.3f},\"servers\":{},\"detect_s\":{},\"heal_s\":{}"
            "}}",
            failures_json.empty() ? "" : ",", f.kind, ChaosCloud::HostName(f.host), Seconds(f.at - t0),
            f.initial_servers, f.detected ? JsonNumber(Seconds(*f.detected - f.at)) : "null",
            f.healed ? JsonNumber(Seconds(*f.healed - f.at)) : "null");
    }
    int leaked = 0;
    std::string leaked_json, faults_json, outcomes_json, refused_json;
    if (checks) {
        for (const auto& [k, n] : checks->leaked) {
            leaked += n;
            leaked_json += fmt::format("{}\"{}\":{}", leaked_json.empty() ? "" : ",", k, n);
        }
    }
    for (const auto& [k, n] : sh.injected) {
        faults_json += fmt::format("{}\"{}\":{}", faults_json.empty() ? "" : ",", k, n);
    }
    for (const auto& [k, m] : outcomes) {
        std::string inner;
        for (const auto& [s, n] : m) {
            inner += fmt::format("{}\"{}\":{}", inner.empty() ? "" : ",", s, n);
        }
        outcomes_json += fmt::format("{}\"{}\":{{{}}}", outcomes_json.empty() ? "" : ",", k, inner);
    }
    for (const auto& [k, n] : workload.refused_) {
        refused_json += fmt::format("{}\"{}\":{}", refused_json.empty() ? "" : ",", k, n);
    }
    const int split_brain = static_cast<int>(sh.split_brain.size());
    const int dup = checks ? checks->duplicate_addresses : -1;
    const int desired = checks ? checks->desired_not_active : -1;
    if (!checks) {
        log("FINAL CHECKS FAILED: {}", checks.error().message);
    }
    const bool ok =
        checks && restored && lost == 0 && leaked == 0 && dup == 0 && split_brain == 0 && desired == 0;
    cloud.Stop();
    if (ok && !o.keep) {
        fs::remove_all(dir);
    } else {
        fmt::print(stderr, "cogs-chaos cloud: {}; logs of every process in {}/logs\n",
                   ok ? "passed" : "FAILED", dir.string());
    }
    fmt::print(
        "{{\"test\":\"cloud\",\"seed\":{},\"duration_s\":{},\"hosts\":{},\"ops\":{},\"accepted\":{},"
        "\"terminal\":{},"
        "\"lost\":{},\"failed\":{},\"unanswered\":{},\"resends\":{},\"refused\":{{{}}},\"outcomes\":{{{}}},"
        "\"leaked\":{},\"leaked_by_kind\":{{{}}},\"duplicate_addresses\":{},\"split_brain\":{},"
        "\"desired_not_active\":{},\"host_failures\":{},\"undetected\":{},\"unhealed\":{},\"detect_p50_s\":{}"
        ","
        "\"detect_max_s\":{},\"heal_p50_s\":{},\"heal_max_s\":{},\"failures\":[{}],\"faults\":{{{}}},"
        "\"samples\":{},\"incoherent_samples\":{},\"flags\":[{}],\"checks\":\"{}\",\"dir\":\"{}\"}}\n",
        o.seed, o.duration_s, o.hosts, workload.ops().size(), accepted, terminal, lost, failed, unanswered,
        workload.resends_, refused_json, outcomes_json, leaked, leaked_json, dup, split_brain, desired,
        sh.failures.size(), undetected, unhealed, JsonNumber(Percentile(detect, 0.5)),
        JsonNumber(Percentile(detect, 1.0)), JsonNumber(Percentile(heal, 0.5)),
        JsonNumber(Percentile(heal, 1.0)), failures_json, faults_json, sh.samples, sh.incoherent_samples,
        [&] {
            std::string s;
            for (const auto& [flag, value] : co.cogsd_flags) {
                s += fmt::format("{}\"{}={}\"", s.empty() ? "" : ",", flag, value);
            }
            return s;
        }(),
        checks ? "done" : "failed", ok && !o.keep ? "" : dir.string());
    return ok ? 0 : 1;
}

}  // namespace cogs::testing
