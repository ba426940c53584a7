// Self-healing of the local cloud with real processes (docs/api.md "Hosts", "Events"): `cogs dev`
// with short leases, hosts cut off by freezing their compute agent (SIGSTOP: the process stays, so
// `cogs dev` does not restart it; SIGCONT brings it back with its timers late), cogsd killed and
// restarted by `cogs dev`, instances crashed and made behind cogsd's back. Every assertion is what
// an operator checks: the API (hosts, servers, events, /metrics) and each service's own inventory.
//
// Timings: cogsd gets a lease TTL of kLeaseTtlMs. `cogs dev` starts the agents with their default
// --heartbeat-ms (1000); once cogsd answers its TTL they renew at least three times per TTL (see
// ShortLeaseKeepsHealthyHostsUp, which once caught every host fencing itself at every beat).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cogs/base/time.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr int kLeaseTtlMs = 1000;
constexpr int kFenceWindowMs = 500;
constexpr int kReconcileMs = 500;
constexpr int kOrphanGraceMs = 1500;
constexpr int kRestartGraceMs = 1500;

int64_t WallMs() {
    const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    return std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
}

// RFC 3339 UTC ("2026-11-27T05:46:56.787Z" or without fraction) to unix ms; -1 if malformed.
bool Running(const std::string& state) { return state == "BUILD" || state == "REBOOT" || state == "ACTIVE"; }

// The agent process serving host-N is cogs-compute-N (cogs dev).
std::string AgentOf(const std::string& host) { return "cogs-compute-" + host.substr(host.rfind('-') + 1); }

// Agents frozen with SIGSTOP, thawed with SIGCONT; whatever is still frozen is thawed on destruction
// (a failed assertion must not leave a stopped process behind for `cogs dev` to wait on).
class Freezer {
public:
    ~Freezer() {
        for (const auto& [name, pid] : frozen_)
            ::kill(pid, SIGCONT);
    }
    void Freeze(const std::string& name, int pid) {
        {
            std::lock_guard lock(mu_);
            frozen_[name] = pid;  // first: the sampler sends it nothing more
        }
        ASSERT_EQ(::kill(pid, SIGSTOP), 0) << name;
    }
    void Thaw(const std::string& name) {
        int pid = 0;
        {
            std::lock_guard lock(mu_);
            auto it = frozen_.find(name);
            if (it == frozen_.end()) return;
            pid = it->second;
        }
        ASSERT_EQ(::kill(pid, SIGCONT), 0) << name;
        std::lock_guard lock(mu_);
        frozen_.erase(name);  // then: its inventory counts again
    }
    bool Frozen(const std::string& name) const {
        std::lock_guard lock(mu_);
        return frozen_.contains(name);
    }

private:
    mutable std::mutex mu_;
    std::map<std::string, int> frozen_;
};

// Samples every agent's inventory, round after round, for as long as it lives, and records every
// server id seen running (BUILD/REBOOT/ACTIVE) on two agents in two consecutive rounds (each read
// of a round brackets the other's: a true overlap, not a move seen between two reads). A frozen
// agent is not asked (it cannot answer; its instances do not run).
class DoubleRunWatch {
public:
    // `tokens`: each agent's, by process name.
    DoubleRunWatch(std::vector<DevProcess> agents, std::map<std::string, std::string> tokens,
                   const Freezer& freezer)
        : agents_(std::move(agents)),
          tokens_(std::move(tokens)),
          freezer_(freezer),
          thread_([this] { Run(); }) {}
    ~DoubleRunWatch() { Stop(); }

    void Stop() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    int rounds() const { return rounds_; }
    std::vector<std::string> violations() const {
        std::lock_guard lock(mu_);
        return violations_;
    }

private:
    void Run() {
        std::vector<ApiClient> clients;
        for (const auto& a : agents_)
            clients.emplace_back(a.url, tokens_[a.name]);
        std::map<std::string, std::set<std::string>> previous;  // server id -> agents running it
        std::unique_lock lock(mu_);
        while (!stop_) {
            lock.unlock();
            std::map<std::string, std::set<std::string>> now;
            for (size_t i = 0; i < agents_.size(); ++i) {
                if (freezer_.Frozen(agents_[i].name)) continue;
                auto r = clients[i].Call("GET", "/v1/inventory", "", {}, 500ms);
                if (!r || r->status != 200) continue;
                const json::value list = At(r->body, "instances");
                if (!list.is_array()) continue;
                for (const auto& inst : list.as_array()) {
                    if (Running(S(inst, "state"))) now[S(inst, "id")].insert(agents_[i].name);
                }
            }
            std::vector<std::string> found;
            for (const auto& [id, where] : now) {
                auto prev = previous.find(id);
                if (where.size() < 2 || prev == previous.end()) continue;
                std::vector<std::string> both;
                std::set_intersection(where.begin(), where.end(), prev->second.begin(), prev->second.end(),
                                      std::back_inserter(both));
                if (both.size() >= 2) {
                    found.push_back("server " + id + " runs on " + both[0] + " and " + both[1]);
                }
            }
            previous = std::move(now);
            ++rounds_;
            lock.lock();
            violations_.insert(violations_.end(), found.begin(), found.end());
            cv_.wait_for(lock, 10ms, [this] { return stop_; });
        }
    }

    std::vector<DevProcess> agents_;
    std::map<std::string, std::string> tokens_;
    const Freezer& freezer_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::atomic<int> rounds_{0};
    std::vector<std::string> violations_;
    std::thread thread_;
};

struct Event {
    int64_t seq = 0;
    int64_t time_ms = 0;
    std::string kind, id, type, message;
};

class HealTest : public ::testing::Test {
protected:
    // A cloud with short healing timings (plus `extra` cogsd flags), a network with a subnet for
    // the servers.
    void StartCloud(int boot_ms = 20, std::vector<std::string> extra = {},
                    int restart_grace_ms = kRestartGraceMs, int lease_ttl_ms = kLeaseTtlMs,
                    int fence_window_ms = kFenceWindowMs) {
        std::vector<std::string> args = {"--cogsd-arg=--lease-ttl-ms=" + std::to_string(lease_ttl_ms),
                                         "--cogsd-arg=--fence-window-ms=" + std::to_string(fence_window_ms),
                                         "--cogsd-arg=--restart-grace-ms=" + std::to_string(restart_grace_ms),
                                         "--cogsd-arg=--reconcile-ms=" + std::to_string(kReconcileMs),
                                         "--cogsd-arg=--orphan-grace-ms=" + std::to_string(kOrphanGraceMs)};
        for (auto& e : extra)
            args.push_back("--cogsd-arg=" + e);
        auto dev = DevCloud::Start(DevOptions{3, boot_ms, args});
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
        ApiClient admin = dev_->Admin();
        ApiReply n = admin.Must("POST", "/v1/networks", R"({"name":"heal"})");
        ASSERT_EQ(n.status, 202) << n.text;
        network_ = S(At(n.body, "network"), "id");
        ASSERT_TRUE(WaitStatus("/v1/networks/" + network_, "network", "ACTIVE"));
        ApiReply s = admin.Must("POST", "/v1/subnets",
                                R"({"network_id":")" + network_ +
                                    R"(","cidr":"10.60.0.0/22",)"
                                    R"("name":"heal"})");
        ASSERT_EQ(s.status, 202) << s.text;
        ASSERT_TRUE(WaitStatus("/v1/subnets/" + S(At(s.body, "subnet"), "id"), "subnet", "ACTIVE"));
    }

    void TearDown() override {
        watch_.reset();
        freezer_.reset();  // thaws what a failed test left frozen, before `cogs dev` is stopped
        if (dev_ != nullptr) {
            if (HasFailure()) {
                std::cerr << "cogs dev data dir: " << dev_->data_dir() << "\n"
                          << runtime::TailFile(dev_->data_dir() + "/logs/cogsd.log", 30);
            }
            dev_.reset();
        }
    }

    bool WaitStatus(const std::string& path, std::string_view key, const std::string& want,
                    Duration timeout = 30s) {
        ApiClient admin = dev_->Admin();
        return WaitUntil([&] { return S(At(admin.Must("GET", path).body, key), "status") == want; }, timeout);
    }

    json::value Get(const std::string& path, std::string_view key) {
        return At(dev_->Admin().Must("GET", path).body, key);
    }
    json::value Server(const std::string& id) { return Get("/v1/servers/" + id, "server"); }
    json::value Host(const std::string& name) { return Get("/v1/hosts/" + name, "host"); }

    // Creates a server (admin's project) and waits until it is ACTIVE; returns its id.
    std::string CreateServer(const std::string& name, const std::vector<std::string>& volumes = {}) {
        std::string vols;
        for (const auto& v : volumes)
            vols += (vols.empty() ? "\"" : ",\"") + v + "\"";
        ApiReply r = dev_->Admin().Must("POST", "/v1/servers",
                                        R"({"name":")" + name +
                                            R"(","flavor":"m1.tiny","image":"cirros",)"
                                            R"("network_id":")" +
                                            network_ + R"(","volume_ids":[)" + vols + "]}");
        EXPECT_EQ(r.status, 202) << r.text;
        const std::string id = S(At(r.body, "server"), "id");
        EXPECT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE"))
            << name << " never became ACTIVE: " << json::serialize(Server(id));
        return id;
    }

    std::string CreateVolume(const std::string& name) {
        ApiReply v = dev_->Admin().Must("POST", "/v1/volumes", R"({"name":")" + name + R"(","size_gb":1})");
        EXPECT_EQ(v.status, 202) << v.text;
        const std::string id = S(At(v.body, "volume"), "id");
        EXPECT_TRUE(WaitStatus("/v1/volumes/" + id, "volume", "available"));
        return id;
    }

    // Every event at `path` (a list endpoint answering {"events", "next_after"}) newer than `after`,
    // oldest first.
    std::vector<Event> Events(const std::string& path, int64_t after = 0) {
        std::vector<Event> out;
        ApiClient admin = dev_->Admin();
        const std::string sep = path.find('?') == std::string::npos ? "?" : "&";
        for (;;) {
            ApiReply r = admin.Must("GET", path + sep + "limit=1000&after=" + std::to_string(after));
            EXPECT_EQ(r.status, 200) << path << ": " << r.text;
            const json::value list = At(r.body, "events");
            if (r.status != 200 || !list.is_array() || list.as_array().empty()) break;
            for (const auto& e : list.as_array()) {
                out.push_back(Event{I(e, "seq"), I(e, "time_ms"), S(e, "resource_kind"), S(e, "resource_id"),
                                    S(e, "type"), S(e, "message")});
            }
            after = I(r.body, "next_after");
        }
        return out;
    }
    std::vector<Event> EventsOf(const std::string& kind, const std::string& id) {
        return Events("/v1/events?resource_kind=" + kind + "&resource_id=" + id);
    }
    static std::vector<std::string> Types(const std::vector<Event>& events) {
        std::vector<std::string> t;
        for (const auto& e : events)
            t.push_back(e.type);
        return t;
    }
    static std::string Join(const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v)
            s += (s.empty() ? "" : ", ") + x;
        return s;
    }
    static int Count(const std::vector<Event>& events, const std::string& type) {
        return static_cast<int>(
            std::count_if(events.begin(), events.end(), [&](const Event& e) { return e.type == type; }));
    }
    // The first event of `type` at or after index `from`, or -1.
    static int Find(const std::vector<Event>& events, const std::string& type, int from = 0) {
        for (int i = from; i < static_cast<int>(events.size()); ++i) {
            if (events[i].type == type) return i;
        }
        return -1;
    }

    // The processes as `cogs dev` lists them now (dev.json is rewritten when it restarts one).
    std::vector<DevProcess> Processes() {
        std::vector<DevProcess> out;
        auto text = runtime::ReadFile(dev_->data_dir() + "/dev.json");
        if (!text) return dev_->processes();
        boost::system::error_code ec;
        const json::value v = json::parse(*text, ec);
        if (ec) return dev_->processes();
        const json::value list = At(v, "processes");
        if (!list.is_array()) return dev_->processes();
        for (const auto& p : list.as_array()) {
            out.push_back(DevProcess{S(p, "name"), static_cast<int>(I(p, "pid")), S(p, "url"), S(p, "log")});
        }
        return out;
    }
    DevProcess Process(const std::string& name) {
        for (auto& p : Processes()) {
            if (p.name == name) return p;
        }
        ADD_FAILURE() << "no process " << name;
        return {};
    }
    std::vector<DevProcess> Agents() {
        std::vector<DevProcess> out;
        for (auto& p : Processes()) {
            if (p.name.rfind("cogs-compute-", 0) == 0) out.push_back(p);
        }
        return out;
    }

    // The instances one agent holds, by id (empty if it did not answer).
    std::map<std::string, json::value> Instances(const std::string& agent) {
        std::map<std::string, json::value> out;
        ApiClient c(Process(agent).url, dev_->ServiceToken(agent));
        auto r = c.Call("GET", "/v1/inventory", "", {}, 2s);
        if (!r || r->status != 200) return out;
        const json::value list = At(r->body, "instances");
        if (!list.is_array()) return out;
        for (const auto& i : list.as_array())
            out[S(i, "id")] = i;
        return out;
    }
    std::string InstanceState(const std::string& agent, const std::string& id) {
        auto all = Instances(agent);
        auto it = all.find(id);
        return it == all.end() ? "" : S(it->second, "state");
    }

    void Freeze(const std::string& agent) { freezer_->Freeze(agent, Process(agent).pid); }
    void Thaw(const std::string& agent) { freezer_->Thaw(agent); }
    void Watch() {
        std::map<std::string, std::string> tokens;
        for (const DevProcess& a : Agents()) {
            tokens[a.name] = dev_->ServiceToken(a.name);
        }
        watch_ = std::make_unique<DoubleRunWatch>(Agents(), std::move(tokens), *freezer_);
    }
    void ExpectNoDoubleRun() {
        ASSERT_NE(watch_, nullptr);
        watch_->Stop();
        EXPECT_GT(watch_->rounds(), 10) << "the inventories were hardly sampled";
        auto v = watch_->violations();
        EXPECT_TRUE(v.empty()) << v.size() << " samples saw a server running twice, first: " << v.at(0);
    }

    // Servers by host (id -> host), for every server in the cloud.
    std::map<std::string, std::string> Placement() {
        std::map<std::string, std::string> out;
        const json::value list = Get("/v1/servers?limit=1000", "servers");
        if (list.is_array()) {
            for (const auto& s : list.as_array())
                out[S(s, "id")] = S(s, "host");
        }
        return out;
    }

    // The value of an unlabelled series on cogsd's /metrics, or -1.
    double Metric(const std::string& name) {
        ApiClient anonymous(dev_->api_url(), "");
        const std::string text = anonymous.Must("GET", "/metrics").text;
        const std::string key = "\n" + name + " ";
        auto at = text.find(key);
        if (at == std::string::npos) return -1;
        return std::stod(text.substr(at + key.size(), text.find('\n', at + key.size()) - at - key.size()));
    }

    // Every server that `servers` had on `host` is ACTIVE elsewhere with the same identity; its
    // instance runs on the new host's agent with the same port, MAC and address.
    void ExpectMovedOff(const std::string& host, const std::map<std::string, json::value>& before) {
        for (const auto& [id, was] : before) {
            json::value now;
            const bool moved = WaitUntil(
                [&] {
                    now = Server(id);
                    return S(now, "status") == "ACTIVE" && S(now, "host") != host && !S(now, "host").empty();
                },
                30s);
            ASSERT_TRUE(moved) << "server " << id << " was not moved off " << host << ": "
                               << json::serialize(now);
            EXPECT_EQ(S(now, "id"), id);
            for (const auto* f : {"port_id", "ip_address", "mac_address", "network_id"}) {
                EXPECT_EQ(S(now, f), S(was, f)) << f << " of server " << id;
            }
            EXPECT_EQ(At(now, "volume_ids"), At(was, "volume_ids")) << "server " << id;
            const std::string to = S(now, "host");
            json::value inst;
            EXPECT_TRUE(WaitUntil(
                [&] {
                    auto all = Instances(AgentOf(to));
                    inst = all.contains(id) ? all[id] : json::value();
                    return S(inst, "state") == "ACTIVE";
                },
                10s))
                << "server " << id << " has no ACTIVE instance on " << to << ": " << json::serialize(inst);
            EXPECT_EQ(S(inst, "host"), to);
            EXPECT_EQ(S(inst, "port_id"), S(was, "port_id"));
            EXPECT_EQ(S(inst, "mac_address"), S(was, "mac_address"));
            EXPECT_EQ(S(inst, "ip_address"), S(was, "ip_address"));
        }
    }

    std::unique_ptr<DevCloud> dev_;
    std::unique_ptr<Freezer> freezer_ = std::make_unique<Freezer>();
    std::unique_ptr<DoubleRunWatch> watch_;
    std::string network_;
};

// Six servers over three hosts, one with a volume. Its host is cut off (agent frozen): the host
// goes suspect, then down; every server of it runs again elsewhere as itself (id, port, address,
// MAC, volume); when the host comes back, what it still holds of them is removed. Nothing ever
// runs twice.
TEST_F(HealTest, DownHostIsEvacuatedAndItsStaleInstancesRemoved) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    const std::string volume = CreateVolume("evac-vol");
    const std::string with_volume = CreateServer("evac-0", {volume});
    for (int i = 1; i < 6; ++i)
        CreateServer("evac-" + std::to_string(i));
    std::map<std::string, std::string> placement = Placement();
    ASSERT_EQ(placement.size(), 6u);
    std::set<std::string> used;
    for (const auto& [id, host] : placement)
        used.insert(host);
    ASSERT_EQ(used.size(), 3u) << "the servers are not spread over the three hosts";
    const std::string victim = placement[with_volume];
    std::map<std::string, json::value> on_victim;
    for (const auto& [id, host] : placement) {
        if (host == victim) on_victim[id] = Server(id);
    }
    const std::string agent = AgentOf(victim);
    const std::vector<Event> history = Events("/v1/hosts/" + victim + "/events");
    ASSERT_FALSE(history.empty()) << victim << " has no events (not even registered)";
    const int64_t mark = history.back().seq;

    Watch();
    Freeze(agent);
    const int64_t frozen_at = WallMs();

    // suspect, then down, in that order, as the API shows the host and as its events tell.
    std::string state;
    std::set<std::string> states_seen;
    ASSERT_TRUE(WaitUntil(
        [&] {
            state = S(Host(victim), "state");
            states_seen.insert(state);
            return state == "down";
        },
        20s))
        << victim << " never went down; last state " << state;
    EXPECT_TRUE(states_seen.contains("suspect")) << "never seen suspect";
    std::vector<Event> host_events;  // (each event is written just after the state changes)
    EXPECT_TRUE(WaitUntil(
        [&] {
            host_events = Events("/v1/hosts/" + victim + "/events", mark);
            return Find(host_events, "down") >= 0;
        },
        5s));
    const int suspect = Find(host_events, "suspect");
    const int down = Find(host_events, "down");
    ASSERT_GE(suspect, 0) << Join(Types(host_events));
    ASSERT_GT(down, suspect) << Join(Types(host_events));
    // Not before its lease could have lapsed: TTL after the last renewal, which came at most a
    // heartbeat (TTL / 3, plus timer lateness) before the freeze; down a fencing window later.
    EXPECT_GE(host_events[suspect].time_ms, frozen_at + kLeaseTtlMs - kLeaseTtlMs / 3 - 250);
    EXPECT_GE(host_events[down].time_ms - host_events[suspect].time_ms, kFenceWindowMs - 50);

    // Evacuated: the same servers, ACTIVE elsewhere, the volume attached there.
    ExpectMovedOff(victim, on_victim);
    const std::string new_host = S(Server(with_volume), "host");
    json::value vol;
    EXPECT_TRUE(WaitUntil(
        [&] {
            ApiClient svc = dev_->Service("volume");
            const json::value list = At(svc.Must("GET", "/v1/inventory").body, "volumes");
            vol = nullptr;
            if (list.is_array()) {
                for (const auto& v : list.as_array()) {
                    if (S(v, "id") == volume) vol = v;
                }
            }
            return S(vol, "status") == "in-use" && S(vol, "server_id") == with_volume &&
                   S(vol, "host") == new_host;
        },
        10s))
        << "the volume service holds " << json::serialize(vol) << ", want in-use on " << with_volume << " at "
        << new_host;
    EXPECT_EQ(S(Get("/v1/volumes/" + volume, "volume"), "status"), "in-use");
    for (const auto& [id, was] : on_victim) {
        const auto events = Events("/v1/servers/" + id + "/events");
        const int requested = Find(events, "evacuate_requested");
        EXPECT_GE(requested, 0) << id << ": " << Join(Types(events));
        EXPECT_GT(Find(events, "evacuated", std::max(requested, 0)), requested)
            << id << ": " << Join(Types(events));
    }
    // The servers of the other hosts stayed where they were.
    for (const auto& [id, host] : Placement()) {
        if (!on_victim.contains(id)) {
            EXPECT_EQ(host, placement[id]) << "server " << id << " moved";
        }
    }

    // The host comes back: up, and the old copies it holds are removed.
    Thaw(agent);
    EXPECT_TRUE(WaitUntil([&] { return S(Host(victim), "state") == "up"; }, 15s))
        << victim << " did not come back up: " << json::serialize(Host(victim));
    std::map<std::string, json::value> left;
    EXPECT_TRUE(WaitUntil(
        [&] {
            left = Instances(agent);
            return std::none_of(on_victim.begin(), on_victim.end(),
                                [&](const auto& s) { return left.contains(s.first); });
        },
        15s))
        << agent << " still holds evacuated instances: " << left.size() << " instances";
    for (const auto& [id, was] : on_victim) {
        EXPECT_TRUE(WaitUntil([&] { return Count(EventsOf("instance", id), "orphan_removed") == 1; }, 10s))
            << "instance " << id << ": " << Join(Types(EventsOf("instance", id)));
    }
    EXPECT_GE(Find(Events("/v1/hosts/" + victim + "/events", mark), "up"), 0);
    // After all that, every server is still ACTIVE and the evacuated ones where they were rebuilt.
    for (const auto& [id, was] : on_victim) {
        EXPECT_EQ(S(Server(id), "status"), "ACTIVE");
        EXPECT_EQ(InstanceState(AgentOf(S(Server(id), "host")), id), "ACTIVE");
    }
    ExpectNoDoubleRun();
}

// `cogs host drain NAME --wait` moves every server off a host (cold migration): the host ends
// disabled and not draining, with a `drained` event; the servers run elsewhere as themselves; the
// host's agent holds none of them.
TEST_F(HealTest, DrainMovesEveryServerOff) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    for (int i = 0; i < 6; ++i)
        CreateServer("drain-" + std::to_string(i));
    std::map<std::string, std::string> placement = Placement();
    const std::string host = placement.begin()->second;
    std::map<std::string, json::value> on_host;
    for (const auto& [id, h] : placement) {
        if (h == host) on_host[id] = Server(id);
    }
    ASSERT_FALSE(on_host.empty());
    Watch();

    auto [code, out] =
        Shell("COGS_URL=" + dev_->api_url() + " COGS_TOKEN=" + dev_->admin_token() +
              " COGS_CACERT=" + dev_->ca_file() + " timeout 60 " + runtime::SiblingBinary("cogs") +
              " host drain " + host + " --reason maintenance --wait");
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("drained"), std::string::npos) << out;

    ExpectMovedOff(host, on_host);
    json::value h;
    EXPECT_TRUE(WaitUntil(
        [&] {
            h = Host(host);
            return At(h, "draining") == json::value(false) && I(h, "servers") == 0;
        },
        10s))
        << json::serialize(h);
    EXPECT_EQ(At(h, "enabled"), json::value(false)) << json::serialize(h);
    EXPECT_EQ(S(h, "state"), "up");
    EXPECT_TRUE(
        WaitUntil([&] { return Find(Events("/v1/hosts/" + host + "/events"), "drained") >= 0; }, 10s));
    const auto host_events = Events("/v1/hosts/" + host + "/events");
    EXPECT_LT(Find(host_events, "draining"), Find(host_events, "drained")) << Join(Types(host_events));
    for (const auto& [id, was] : on_host) {
        const auto events = Events("/v1/servers/" + id + "/events");
        EXPECT_LT(Find(events, "migrate_requested"), Find(events, "migrated"))
            << id << ": " << Join(Types(events));
        EXPECT_GE(Find(events, "migrate_requested"), 0) << id << ": " << Join(Types(events));
    }
    std::map<std::string, json::value> left;
    EXPECT_TRUE(WaitUntil(
        [&] {
            left = Instances(AgentOf(host));
            return std::none_of(on_host.begin(), on_host.end(),
                                [&](const auto& s) { return left.contains(s.first); });
        },
        10s))
        << AgentOf(host) << " still holds " << left.size() << " instances";
    for (const auto& [id, h2] : Placement()) {
        if (!on_host.contains(id)) {
            EXPECT_EQ(h2, placement[id]) << "server " << id << " moved";
        }
    }
    ExpectNoDoubleRun();
}

// Two of three hosts cut off at once: more likely the control plane's network than the hosts, so
// evacuation pauses (an alert event, the gauge) and nothing moves. When they come back it resumes,
// and every server runs again: where it was (its fenced instance started again by the reconciler),
// or, for the host whose agent renews second, possibly elsewhere — the first host back ends the
// pause (1 of 3 down), and the other, still down for that moment, is then evacuated as any down
// host is. The agents resume a few milliseconds apart at best (more under the sanitizer build), so
// the test accepts either for that host's servers; never a server run twice.
TEST_F(HealTest, MassFailurePausesEvacuation) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    for (int i = 0; i < 6; ++i)
        CreateServer("mass-" + std::to_string(i));
    const std::map<std::string, std::string> placement = Placement();
    std::set<std::string> hosts;
    for (const auto& [id, host] : placement)
        hosts.insert(host);
    ASSERT_EQ(hosts.size(), 3u);
    const std::vector<std::string> cut = {*hosts.begin(), *std::next(hosts.begin())};
    EXPECT_EQ(Metric("cogs_heal_evacuation_paused"), 0);
    Watch();
    for (const auto& h : cut)
        Freeze(AgentOf(h));

    auto alerts = [&](const std::string& type) { return Count(EventsOf("alert", "evacuation"), type); };
    EXPECT_TRUE(WaitUntil([&] { return alerts("evacuation_paused") == 1; }, 20s))
        << Join(Types(EventsOf("alert", "evacuation")));
    EXPECT_EQ(Metric("cogs_heal_evacuation_paused"), 1);
    auto both = [&](const std::string& state) {
        return S(Host(cut[0]), "state") == state && S(Host(cut[1]), "state") == state;
    };
    EXPECT_TRUE(WaitUntil([&] { return both("down"); }, 20s))
        << S(Host(cut[0]), "state") << " " << S(Host(cut[1]), "state");
    // Down and paused: over a few reconcile passes, no server moves or changes status.
    std::string moved;
    EXPECT_FALSE(WaitUntil(
        [&] {
            for (const auto& [id, host] : placement) {
                const json::value s = Server(id);
                if (S(s, "host") != host || S(s, "status") != "ACTIVE") {
                    moved = id + " " + json::serialize(s);
                    return true;
                }
            }
            return false;
        },
        std::chrono::milliseconds(4 * kReconcileMs), 100ms))
        << "a server changed while evacuation was paused: " << moved;
    EXPECT_EQ(Metric("cogs_heal_evacuation_paused"), 1);

    for (const auto& h : cut)
        Thaw(AgentOf(h));
    EXPECT_TRUE(WaitUntil([&] { return alerts("evacuation_resumed") == 1; }, 15s))
        << Join(Types(EventsOf("alert", "evacuation")));
    EXPECT_TRUE(WaitUntil([&] { return both("up"); }, 15s));
    EXPECT_EQ(Metric("cogs_heal_evacuation_paused"), 0);
    for (const auto& [id, host] : placement) {
        std::string inst, now_on;
        EXPECT_TRUE(WaitUntil(
            [&] {
                const json::value s = Server(id);
                now_on = S(s, "host");
                inst = now_on.empty() ? "" : InstanceState(AgentOf(now_on), id);
                return S(s, "status") == "ACTIVE" && inst == "ACTIVE";
            },
            15s))
            << "server " << id << " of " << host << " now on " << now_on << ": instance " << inst;
        if (now_on != host) {
            // Only a cut host's server may have moved, and only by an evacuation after the resume.
            EXPECT_TRUE(std::find(cut.begin(), cut.end(), host) != cut.end()) << id << " moved from " << host;
        }
    }
    ExpectNoDoubleRun();
}

// cogsd restarts while a host is cut off: the host is not declared down before the restart grace
// has passed since cogsd came back (its agents need a moment to find it again), and is after.
TEST_F(HealTest, RestartGraceDelaysDownAfterControlPlaneRestart) {
    // Longer than a lease and a fencing window: without the grace the host would be down sooner.
    constexpr int kGraceMs = kLeaseTtlMs + kFenceWindowMs + 2500;
    ASSERT_NO_FATAL_FAILURE(StartCloud(20, {}, kGraceMs));
    for (int i = 0; i < 3; ++i)
        CreateServer("grace-" + std::to_string(i));
    const std::map<std::string, std::string> placement = Placement();
    const std::string victim = placement.begin()->second;
    std::map<std::string, json::value> on_victim;
    for (const auto& [id, host] : placement) {
        if (host == victim) on_victim[id] = Server(id);
    }
    const DevProcess cogsd = Process("cogsd");
    ASSERT_GT(cogsd.pid, 0);
    Freeze(AgentOf(victim));
    const int64_t killed_at = WallMs();
    ASSERT_EQ(::kill(cogsd.pid, SIGKILL), 0);
    // cogs dev starts it again, on the same port.
    ASSERT_TRUE(WaitUntil([&] { return Process("cogsd").pid != cogsd.pid; }, 20s))
        << "cogs dev did not restart cogsd";
    ASSERT_TRUE(WaitUntil([&] { return dev_->Admin().Must("GET", "/healthz").status == 200; }, 20s));
    // When cogsd came back, from below: after the kill, and not before the start time it exports
    // (which reads the boot time in whole seconds: it may be early, never late).
    const double started_s = Metric("process_start_time_seconds");
    ASSERT_GT(started_s, killed_at / 1000.0 - 1) << "cogsd's start time is before the kill";
    const int64_t started_ms = std::max(killed_at, static_cast<int64_t>(started_s * 1000));

    std::string state;
    std::set<std::string> seen;
    ASSERT_TRUE(WaitUntil(
        [&] {
            state = S(Host(victim), "state");
            seen.insert(state);
            return state == "down";
        },
        30s))
        << victim << " never went down; last " << state;
    EXPECT_TRUE(seen.contains("suspect"));
    const json::value h = Host(victim);
    const int64_t down_since = ParseRfc3339(S(h, "state_since")).value_or(-1);
    // (state_since is converted from cogsd's steady clock: a few ms of slack.)
    EXPECT_GE(down_since, started_ms + kGraceMs - 20)
        << "down at " << S(h, "state_since") << ", cogsd started at " << started_s << " s, grace " << kGraceMs
        << " ms";
    // Its history tells the same (the event is written just after the state changes).
    std::vector<Event> events;
    int down = -1;
    EXPECT_TRUE(WaitUntil(
        [&] {
            events = Events("/v1/hosts/" + victim + "/events");
            for (int i = 0; i < static_cast<int>(events.size()); ++i) {
                if (events[i].type == "down" && events[i].time_ms >= killed_at) down = i;
            }
            return down >= 0;
        },
        5s));
    ASSERT_GE(down, 0) << Join(Types(events));
    EXPECT_GE(events[down].time_ms, started_ms + kGraceMs - 20);
    EXPECT_EQ(Count(events, "down"), 1) << Join(Types(events));
    ExpectMovedOff(victim, on_victim);
    Thaw(AgentOf(victim));
}

// A crashed instance is restarted in place within a couple of seconds; the server's history tells
// (crashed, restarted, via the agent's heartbeats). One that keeps crashing is given up on: the
// instance goes ERROR and so does the server, with a restart_gave_up event.
TEST_F(HealTest, CrashedInstanceRestartsThenGivesUp) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    const std::string id = CreateServer("crashy");
    const std::string agent = AgentOf(S(Server(id), "host"));
    ApiClient svc(Process(agent).url, dev_->ServiceToken(agent));

    ApiReply crash = svc.Must("POST", "/v1/instances/" + id + "/crash", "{}");
    ASSERT_EQ(crash.status, 200) << crash.text;
    const auto crashed_at = SteadyClock::now();
    json::value inst;
    ASSERT_TRUE(WaitUntil(
        [&] {
            inst = Instances(agent)[id];
            return S(inst, "state") == "ACTIVE" && I(inst, "crashes") == 1;
        },
        5s, 10ms))
        << json::serialize(inst);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - crashed_at);
    EXPECT_LE(took.count(), 2000) << "the crashed instance took " << took.count() << " ms to be ACTIVE again";
    RecordProperty("crash_to_active_ms", static_cast<int>(took.count()));
    EXPECT_TRUE(WaitUntil(
        [&] {
            auto e = Events("/v1/servers/" + id + "/events");
            const int c = Find(e, "crashed");
            return c >= 0 && Find(e, "restarted", c) > c;
        },
        10s))
        << Join(Types(Events("/v1/servers/" + id + "/events")));
    EXPECT_EQ(S(Server(id), "status"), "ACTIVE");

    // restart-max (5) crashes within the window: the 5th is not restarted.
    int crashes = 1;
    for (; crashes < 5; ++crashes) {
        ASSERT_TRUE(WaitUntil([&] { return InstanceState(agent, id) == "ACTIVE"; }, 15s))
            << "after crash " << crashes;
        ApiReply again = svc.Must("POST", "/v1/instances/" + id + "/crash", "{}");
        ASSERT_EQ(again.status, 200) << again.text;
    }
    std::string st;
    EXPECT_TRUE(WaitUntil([&] { return (st = InstanceState(agent, id)) == "ERROR"; }, 10s))
        << "instance " << st;
    EXPECT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ERROR", 10s)) << json::serialize(Server(id));
    EXPECT_FALSE(S(At(Server(id), "fault"), "message").empty()) << json::serialize(Server(id));
    std::vector<Event> events;
    EXPECT_TRUE(WaitUntil(
        [&] {
            events = Events("/v1/servers/" + id + "/events");
            return Count(events, "restart_gave_up") == 1 && Count(events, "crashed") == 5;
        },
        10s))
        << Join(Types(events));
    EXPECT_EQ(Count(events, "restarted"), 4) << Join(Types(events));
    // Given up for good: still ERROR a heartbeat later.
    EXPECT_FALSE(WaitUntil([&] { return InstanceState(agent, id) != "ERROR"; }, 1500ms, 100ms));
    // 409 once it no longer runs.
    EXPECT_EQ(svc.Must("POST", "/v1/instances/" + id + "/crash", "{}").status, 409);
}

// An instance and a port made behind cogsd's back are removed after the orphan grace (not before),
// with orphan_removed events; a server created meanwhile is never touched.
TEST_F(HealTest, OrphansAreRemovedAfterTheGrace) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    ApiClient compute = dev_->Service("compute-1");
    ApiClient network = dev_->Service("network");
    const int64_t made_at = WallMs();
    auto inst = compute.Call("POST", "/v1/actions/create_instance",
                             R"({"id":"orphan-instance-1","host":"host-1","vcpus":1,"ram_mb":512,)"
                             R"("disk_gb":1,"image":"cirros"})",
                             {{"idempotency-key", "heal-test/orphan-instance/do"}});
    ASSERT_TRUE(inst) << inst.error().ToString();
    ASSERT_TRUE(inst->status == 200 || inst->status == 202) << inst->status << " " << inst->text;
    auto port = network.Call("POST", "/v1/actions/create_port",
                             R"({"id":"orphan-port-1","network_id":")" + network_ + R"("})",
                             {{"idempotency-key", "heal-test/orphan-port/do"}});
    ASSERT_TRUE(port) << port.error().ToString();
    ASSERT_EQ(port->status, 200) << port->text;
    const std::string server = CreateServer("bystander");
    const json::value was = Server(server);

    auto has_port = [&](const std::string& id) {
        const json::value list = At(network.Must("GET", "/v1/inventory").body, "ports");
        return list.is_array() && std::any_of(list.as_array().begin(), list.as_array().end(),
                                              [&](const json::value& p) { return S(p, "id") == id; });
    };
    EXPECT_TRUE(has_port("orphan-port-1"));
    EXPECT_TRUE(WaitUntil([&] { return !Instances("cogs-compute-1").contains("orphan-instance-1"); }, 20s))
        << "the orphan instance is still there";
    EXPECT_TRUE(WaitUntil([&] { return !has_port("orphan-port-1"); }, 20s))
        << "the orphan port is still there";
    std::vector<Event> ie, pe;
    EXPECT_TRUE(WaitUntil(
        [&] {
            ie = EventsOf("instance", "orphan-instance-1");
            pe = EventsOf("port", "orphan-port-1");
            return Find(ie, "orphan_removed") >= 0 && Find(pe, "orphan_removed") >= 0;
        },
        10s))
        << "instance: " << Join(Types(ie)) << "; port: " << Join(Types(pe));
    if (int i = Find(ie, "orphan_removed"); i >= 0) {
        EXPECT_GE(ie[i].time_ms - made_at, kOrphanGraceMs) << "removed before its grace";
    }
    if (int i = Find(pe, "orphan_removed"); i >= 0) {
        EXPECT_GE(pe[i].time_ms - made_at, kOrphanGraceMs) << "removed before its grace";
    }

    // The bystander: as it was, its instance and port in place, nothing done to it.
    const json::value now = Server(server);
    EXPECT_EQ(S(now, "status"), "ACTIVE");
    EXPECT_EQ(S(now, "host"), S(was, "host"));
    EXPECT_EQ(S(now, "updated_at"), S(was, "updated_at"));
    EXPECT_EQ(InstanceState(AgentOf(S(now, "host")), server), "ACTIVE");
    EXPECT_TRUE(has_port(S(now, "port_id")));
    EXPECT_TRUE(EventsOf("instance", server).empty()) << Join(Types(EventsOf("instance", server)));
    for (const auto& e : Events("/v1/servers/" + server + "/events")) {
        EXPECT_TRUE(e.type != "repair_requested" && e.type != "repaired" && e.type != "orphan_removed")
            << e.type << ": " << e.message;
    }
    for (const auto& e : EventsOf("port", S(now, "port_id"))) {
        EXPECT_NE(e.type, "orphan_removed") << e.message;
        EXPECT_NE(e.type, "repair_requested") << e.message;
    }
}

// Backpressure: beyond --max-inflight-workflows a create is refused with 429 and Retry-After
// (never a 5xx), and nothing of it remains; every accepted one ends ACTIVE.
TEST_F(HealTest, BurstBeyondInflightLimitIsRefusedWith429) {
    ASSERT_NO_FATAL_FAILURE(StartCloud(2000, {"--max-inflight-workflows=5"}));
    ApiClient admin = dev_->Admin();
    std::vector<std::string> accepted;
    int refused = 0;
    for (int i = 0; i < 20; ++i) {
        ApiReply r =
            admin.Must("POST", "/v1/servers",
                       R"({"name":"burst-)" + std::to_string(i) +
                           R"(","flavor":"m1.tiny","image":"cirros","network_id":")" + network_ + R"("})");
        EXPECT_TRUE(r.status == 202 || r.status == 429) << r.status << " " << r.text;
        if (r.status == 202) {
            accepted.push_back(S(At(r.body, "server"), "id"));
        } else if (r.status == 429) {
            ++refused;
            EXPECT_FALSE(r.header_retry_after.empty()) << "a 429 without Retry-After";
            EXPECT_EQ(S(r.body, "code"), "resource_exhausted") << r.text;
        }
    }
    EXPECT_GT(refused, 0) << "20 creates with 2 s boots and a limit of 5 were all accepted";
    EXPECT_GE(accepted.size(), 5u);
    for (const auto& id : accepted) {
        EXPECT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE", 60s)) << json::serialize(Server(id));
    }
    // Only the accepted ones exist.
    const json::value list = Get("/v1/servers?limit=1000", "servers");
    ASSERT_TRUE(list.is_array());
    EXPECT_EQ(list.as_array().size(), accepted.size());
}

// Evacuation places by the same rules as a create: a server of an anti-affinity group leaves its
// dead host for the one host that holds no member of its group.
TEST_F(HealTest, EvacuationKeepsAntiAffinity) {
    ASSERT_NO_FATAL_FAILURE(StartCloud());
    ApiReply g =
        dev_->Admin().Must("POST", "/v1/server-groups", R"({"name":"apart","policy":"anti-affinity"})");
    ASSERT_EQ(g.status, 201) << g.text;
    const std::string group = S(At(g.body, "server_group"), "id");
    std::vector<std::string> members;
    for (const char* name : {"apart-1", "apart-2"}) {
        ApiReply r = dev_->Admin().Must("POST", "/v1/servers",
                                        R"({"name":")" + std::string(name) +
                                            R"(","flavor":"m1.tiny","image":"cirros","network_id":")" +
                                            network_ + R"(","server_group_id":")" + group + R"("})");
        ASSERT_EQ(r.status, 202) << r.text;
        members.push_back(S(At(r.body, "server"), "id"));
    }
    for (const auto& id : members)
        ASSERT_TRUE(WaitStatus("/v1/servers/" + id, "server", "ACTIVE"));
    const std::string victim = S(Server(members[0]), "host");
    const std::string sibling = S(Server(members[1]), "host");
    ASSERT_NE(victim, sibling);
    std::string free_host;
    for (const char* h : {"host-1", "host-2", "host-3"}) {
        if (h != victim && h != sibling) free_host = h;
    }
    // Two more servers on the free host, so that the spread weigher alone would choose the
    // sibling's host (more free RAM): only the group's policy sends the evacuee to the free one.
    for (const std::string& h : {victim, sibling}) {
        ASSERT_EQ(dev_->Admin().Must("POST", "/v1/hosts/" + h + "/disable", "{}").status, 200);
    }
    CreateServer("filler-1");
    CreateServer("filler-2");
    for (const std::string& h : {victim, sibling}) {
        ASSERT_EQ(dev_->Admin().Must("POST", "/v1/hosts/" + h + "/enable", "{}").status, 200);
    }
    ASSERT_EQ(I(Host(free_host), "servers"), 2);
    Watch();
    Freeze(AgentOf(victim));
    std::string now_on;
    ASSERT_TRUE(WaitUntil(
        [&] {
            const json::value s = Server(members[0]);
            now_on = S(s, "host");
            return S(s, "status") == "ACTIVE" && now_on != victim;
        },
        30s))
        << json::serialize(Server(members[0]));
    EXPECT_EQ(now_on, free_host) << "evacuated next to its anti-affinity sibling on " << sibling;
    EXPECT_EQ(S(Server(members[1]), "host"), sibling);
    EXPECT_EQ(InstanceState(AgentOf(free_host), members[0]), "ACTIVE");
    Thaw(AgentOf(victim));
    ExpectNoDoubleRun();
}

// A server whose host fails while it boots is built again on another host (Nova's reschedule):
// the same server and port, ACTIVE elsewhere, a `rescheduled` event; never running twice.
TEST_F(HealTest, CreateRescheduledWhenItsHostFailsDuringTheBuild) {
    ASSERT_NO_FATAL_FAILURE(StartCloud(/*boot_ms=*/4000));
    ApiReply r = dev_->Admin().Must(
        "POST", "/v1/servers",
        R"({"name":"slow","flavor":"m1.tiny","image":"cirros","network_id":")" + network_ + R"("})");
    ASSERT_EQ(r.status, 202) << r.text;
    const std::string id = S(At(r.body, "server"), "id");
    const std::string port = S(At(r.body, "server"), "port_id");
    const std::string workflow = S(At(r.body, "server"), "workflow_id");
    // Where it is being built: the claim step's output, once the boot has started there.
    std::string host;
    ASSERT_TRUE(WaitUntil(
        [&] {
            const json::value wf = Get("/v1/workflows/" + workflow, "workflow");
            const json::value steps = At(wf, "steps");
            if (!steps.is_array()) return false;
            bool booting = false;
            for (const auto& st : steps.as_array()) {
                if (S(st, "name") == "claim") host = S(At(st, "output"), "host");
                if (S(st, "name") == "boot" && S(st, "state") != "pending") booting = true;
            }
            return booting && !host.empty();
        },
        10s));
    Watch();
    Freeze(AgentOf(host));
    ASSERT_TRUE(WaitUntil([&] { return S(Server(id), "status") == "ACTIVE"; }, 30s))
        << json::serialize(Server(id));
    const json::value s = Server(id);
    EXPECT_NE(S(s, "host"), host);
    EXPECT_EQ(S(s, "port_id"), port);
    EXPECT_NE(S(s, "workflow_id"), workflow) << "built by a second server.create";
    EXPECT_EQ(InstanceState(AgentOf(S(s, "host")), id), "ACTIVE");
    EXPECT_EQ(Count(Events("/v1/servers/" + id + "/events"), "rescheduled"), 1);
    Thaw(AgentOf(host));
    // The copy the failed host still holds goes when it is back.
    EXPECT_TRUE(WaitUntil([&] { return InstanceState(AgentOf(host), id).empty(); }, 20s))
        << InstanceState(AgentOf(host), id);
    ExpectNoDoubleRun();
}

// A lease TTL as short as the agents' heartbeat interval (the configuration `cogs dev
// --cogsd-arg=--lease-ttl-ms=1000` gives) must not make healthy hosts flap: no host is ever
// suspect and no instance is fenced while every agent runs.
TEST_F(HealTest, ShortLeaseKeepsHealthyHostsUp) {
    ASSERT_NO_FATAL_FAILURE(StartCloud(20, {}, kRestartGraceMs, 1000, 500));
    const std::string id = CreateServer("steady");
    const std::string agent = AgentOf(S(Server(id), "host"));
    std::string bad;
    EXPECT_FALSE(WaitUntil(
        [&] {
            if (const std::string state = InstanceState(agent, id); state != "ACTIVE") {
                bad = "the instance of server " + id + " is " + state;
                return true;
            }
            for (const auto& e : Events("/v1/servers/" + id + "/events")) {
                if (e.type == "repair_requested") {
                    bad = "server " + id + ": " + e.type + ": " + e.message;
                    return true;
                }
            }
            for (const auto& h : {"host-1", "host-2", "host-3"}) {
                const std::string state = S(Host(h), "state");
                if (state != "up") {
                    bad = std::string(h) + " is " + state;
                    return true;
                }
                for (const auto& e : Events(std::string("/v1/hosts/") + h + "/events")) {
                    if (e.type == "suspect" || e.type == "down") {
                        bad = std::string(h) + ": " + e.type + ": " + e.message;
                        return true;
                    }
                }
            }
            return false;
        },
        3500ms, 100ms))
        << bad;
}

}  // namespace
}  // namespace cogs::testing
