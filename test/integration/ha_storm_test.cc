// cogsd's replicas on PostgreSQL under a storm of server creates and deletes while the control plane
// fails beneath it (docs/ha.md, "What happens when…"), with real processes: `cogs dev --store
// postgres --replicas 3` (cogs/cli/dev.cc), which restarts a replica or PostgreSQL that dies.
//
//   LeaderKilledThenNextLeaderFrozen  the leader is SIGKILLed; a follower takes over; that one is
//                                     SIGSTOPped, the third takes over, and the frozen one, thawed,
//                                     finds it was replaced and exits 75 (`cogs dev` restarts it)
//   PostgresCrashedAndStopped         PostgreSQL is killed (every process of it, as a crash), then
//                                     later stopped (a fast shutdown); `cogs dev` restarts it each time
//
// The storm is what clients behind a load balancer send: each request to the next replica in turn,
// every one with an Idempotency-Key, re-sent with the same key (to the next replica) after no
// answer, a 5xx, a 429 or a 409 "being answered", after its Retry-After (cloud_api.h: SendAgain,
// Backoff). Then what a user would check, in cogsd and in the services:
//   - every request was answered, and every accepted one ended: its server ACTIVE (ERROR would name
//     a reason: there must be none) or deleted;
//   - nothing lost: every create answered 202 is listed, or was deleted by the storm;
//   - every accepted create, sent once more with its key after the faults, answered as the first
//     time: 202 with the same server and workflow (whichever replica leads now, whatever happened);
//   - nothing done twice: one server per create's key (its unique name), one port per server at
//     cogs-network and none for a server cogsd does not have, one instance per server on the host
//     cogsd names in exactly one agent's inventory, and each applied once in the services' ledgers;
//     the audit of the chaos runs (cloud_audit.h: leaks, addresses, second resources, desired state).
// And that the test did what it says: creates accepted before and after every fault, a leader
// change seen through GET /v1/replicas, a new postmaster pid, 503s with Retry-After during the
// database's outage whose requests were accepted when re-sent.
//
// Timings: `cogs dev` gives the replicas a 1 s leader lease; the hosts keep cogsd's 3 s lease, and
// an agent rides a gap of its control plane for --no-leader-max-ms (5 s). The faults are therefore
// kept short (each ends as soon as the state it waits for is seen), and `cogs dev` is paused
// (SIGSTOP) only while that matters: while the killed leader's lease runs out, so that a follower
// (not the restarted replica, which would take its own lease back) takes over, and while PostgreSQL
// is down until the storm has seen a 503, so that the outage cannot end before it was observed.
// Every wait is a deadline on a state the cloud reaches by itself, far longer than it needs; no
// assertion is on a duration. Not judged: whether an agent fenced its host. Under the storm on a
// loaded machine the freeze sometimes makes agents fence (each heartbeat try at the frozen leader,
// or at a follower forwarding to it, costs half a heartbeat, and a round can outlast the 3 s lease);
// the reconciler starts the FENCED instances again, and the end state is what this test judges.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cogs/base/time.h"
#include "cogs/pg/cluster.h"
#include "cogs/runtime/files.h"
#include "test/support/cloud_api.h"
#include "test/support/cloud_audit.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// How long a client re-sends one request before it counts as never answered.
constexpr Duration kGiveUp = 60s;
// One try's deadline: a frozen replica accepts the connection and answers nothing.
constexpr Duration kTryTimeout = 5s;
// Creates that must be accepted in each phase of a scenario (before a fault, after it).
constexpr int kPerPhase = 8;
// Requests a fault waits for (at most kAmidWait) to be in flight at once, so that it strikes amid
// them: some answered, some committed but unanswered, some never received.
constexpr int kAmid = 3;
constexpr Duration kAmidWait = 10s;

double Ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One request of the storm, as its client saw it.
struct Request {
    enum Kind { kCreate, kDelete };
    enum State { kSending, kAccepted, kRefused, kUnanswered };
    Kind kind = kCreate;
    std::string key;       // its Idempotency-Key, the same in every try
    std::string trace_id;  // its traceparent's, the same in every try (grep the logs for it)
    std::string name;      // a create's: unique, so that a second server of one key shows
    std::string method, target, body;
    std::string server_id;    // a delete's target; a create's, from its 202
    std::string workflow_id;  // from its 202
    SteadyTime first_sent{};
    SteadyTime answered_at{};
    int tries = 0;
    int64_t last_try_wall_ms = 0;
    State state = kSending;
    std::string refusal;  // the answer of a refused one
    // A create answered 202 on a re-send for a server created before that re-send was sent: an
    // earlier try was applied and its answer lost (the leader died or froze after its commit), and
    // the key's record answered. A client that re-sent with a new key would have made two servers.
    bool replayed = false;
};

// A try the client had to send again (cloud_api.h: SendAgain): answered 429, 5xx or 409 "being
// answered", or not answered at all (status 0).
struct Pushback {
    SteadyTime at{};
    size_t request = 0;  // index in Storm::requests()
    int status = 0;
    bool retry_after = false;
    std::string what;  // the error code, or the transport error
};

// Sends `r` as a client does (top of the file): to apis[first], then again with the same key and
// trace to the next replica after an answer SendAgain names, once Backoff has passed, until it is
// answered, kGiveUp has passed since `since`, or `abort`. `tried` sees every try's answer, with the
// wall-clock ms at which it was sent; `in_flight` counts tries sent and not answered.
std::optional<ApiReply> SendAsClient(std::vector<ApiClient>& apis, size_t first, const Request& r,
                                     SteadyTime since, const std::atomic<bool>& abort,
                                     std::atomic<int>& in_flight,
                                     const std::function<void(const Result<ApiReply>&, int64_t)>& tried) {
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"idempotency-key", r.key}, {"traceparent", "00-" + r.trace_id + "-00000000000000a1-01"}};
    size_t replica = first % apis.size();
    for (int tries = 1;; ++tries) {
        const int64_t sent_ms = WallNowMs();
        ++in_flight;
        Result<ApiReply> reply = apis[replica].Call(r.method, r.target, r.body, headers, kTryTimeout);
        --in_flight;
        tried(reply, sent_ms);
        if (!SendAgain(reply)) {
            return std::move(*reply);
        }
        if (abort || SteadyClock::now() - since > kGiveUp) {
            return std::nullopt;
        }
        replica = (replica + 1) % apis.size();
        std::this_thread::sleep_for(Backoff(reply, tries));
    }
}

// Clients sending server creates and deletes to every replica until stopped, kWorkers threads each
// with a request at a time. Each worker keeps at most kCap servers of its own: it deletes one it saw
// ACTIVE (in creation order) every third request, and whenever it holds kCap, so that the hosts
// never fill up (a placement failure would be an ERROR this test does not want). Thread-safe: the
// test reads the counters while it runs.
class Storm {
public:
    static constexpr int kWorkers = 5;
    static constexpr size_t kCap = 5;  // 25 servers of 1 vCPU at most; the 3 hosts have 48

    Storm(std::vector<std::string> urls, std::string token, Seeded seeded, std::string prefix)
        : urls_(std::move(urls)),
          token_(std::move(token)),
          seeded_(std::move(seeded)),
          prefix_(std::move(prefix)) {}
    ~Storm() {
        abort_ = true;
        Join();
    }

    void Start() {
        for (int w = 0; w < kWorkers; ++w) {
            threads_.emplace_back([this, w] { Work(w); });
        }
    }
    // Sends nothing new; every request already sent is re-sent until answered (or kGiveUp).
    void Stop() {
        stop_ = true;
        Join();
    }

    // Creates accepted (202) by `t`; creates first sent after `t` and accepted.
    int CreatesAcceptedBy(SteadyTime t) const {
        return Count([&](const Request& r) { return r.state == Request::kAccepted && r.answered_at <= t; });
    }
    int CreatesAcceptedSentAfter(SteadyTime t) const {
        return Count([&](const Request& r) { return r.state == Request::kAccepted && r.first_sent > t; });
    }
    // Tries sent and not answered yet.
    int InFlight() const { return in_flight_; }
    // 503s carrying Retry-After received after `t`.
    int RetryAfter503sSince(SteadyTime t) const {
        std::lock_guard lock(mu_);
        int n = 0;
        for (const auto& p : pushbacks_) {
            n += p.at > t && p.status == 503 && p.retry_after ? 1 : 0;
        }
        return n;
    }

    std::vector<Request> requests() const {
        std::lock_guard lock(mu_);
        return requests_;
    }
    std::vector<Pushback> pushbacks() const {
        std::lock_guard lock(mu_);
        return pushbacks_;
    }
    // What the audit needs (cloud_audit.h): every create answered 202 (with its id) or refused.
    Requested Asked(const std::map<std::string, std::string>& status_by_id) const {
        Requested asked;
        std::set<std::string> deleted;
        for (const auto& r : requests()) {
            if (r.kind == Request::kDelete && r.state == Request::kAccepted) {
                deleted.insert(r.server_id);
            }
        }
        for (const auto& r : requests()) {
            if (r.kind != Request::kCreate ||
                (r.state != Request::kAccepted && r.state != Request::kRefused)) {
                continue;
            }
            asked.creates.push_back({"servers", r.name, r.state == Request::kAccepted ? r.server_id : ""});
            auto s = status_by_id.find(r.server_id);
            if (r.state == Request::kAccepted && deleted.count(r.server_id) == 0 && s != status_by_id.end() &&
                s->second == "ACTIVE") {
                asked.wants_active[r.server_id] = "create";
            }
        }
        return asked;
    }

    // Sends every accepted create once more with its key (after Stop, from the calling thread),
    // through the replicas in turn: each must be answered as the first time, 202 with the same server
    // and workflow, whatever happened since (failovers, restarts of PostgreSQL, the server deleted).
    // Returns how each that was not was answered.
    std::vector<std::string> EchoCreates() {
        std::vector<ApiClient> apis;
        for (const auto& url : urls_) {
            apis.emplace_back(url, token_);
        }
        std::vector<std::string> wrong;
        size_t replica = 0;
        for (const auto& r : requests()) {
            if (r.kind != Request::kCreate || r.state != Request::kAccepted) {
                continue;
            }
            const auto again = SendAsClient(apis, replica++, r, SteadyClock::now(), abort_, in_flight_,
                                            [](auto&, int64_t) {});
            const json::value server = again ? At(again->body, "server") : json::value();
            if (!again || again->status != 202 || S(server, "id") != r.server_id ||
                S(server, "workflow_id") != r.workflow_id) {
                wrong.push_back(fmt::format(
                    "{} (key {}) first answered 202 with server {} (workflow {}), then {}", r.name, r.key,
                    r.server_id, r.workflow_id,
                    again ? fmt::format("{} {}", again->status, again->text) : std::string("never")));
            }
        }
        return wrong;
    }

private:
    void Join() {
        for (auto& t : threads_) {
            t.join();
        }
        threads_.clear();
    }

    template <typename Pred>
    int Count(Pred pred) const {
        std::lock_guard lock(mu_);
        int n = 0;
        for (const auto& r : requests_) {
            n += r.kind == Request::kCreate && pred(r) ? 1 : 0;
        }
        return n;
    }

    size_t Add(Request r) {
        std::lock_guard lock(mu_);
        requests_.push_back(std::move(r));
        return requests_.size() - 1;
    }
    void Publish(size_t i, const Request& r) {
        std::lock_guard lock(mu_);
        requests_[i] = r;
    }

    // One worker: its own clients (one per replica) and servers.
    void Work(int w) {
        std::vector<ApiClient> apis;
        for (const auto& url : urls_) {
            apis.emplace_back(url, token_);
        }
        ControlPlaneClient reader(urls_, token_);
        std::vector<std::string> mine;  // servers this worker created and has not deleted, oldest first
        for (int n = 0; !stop_ && !abort_; ++n) {
            const bool want_delete = !mine.empty() && (mine.size() >= kCap || n % 3 == 2);
            if (want_delete) {
                if (const auto target = FirstActive(reader, mine)) {
                    Delete(apis, w, n, *target);
                    std::erase(mine, *target);
                } else if (mine.size() >= kCap) {
                    std::this_thread::sleep_for(100ms);  // none ACTIVE yet: wait rather than exceed kCap
                    continue;
                }
            }
            if (!want_delete || mine.size() < kCap) {
                if (auto id = Create(apis, w, n)) {
                    mine.push_back(*id);
                }
            }
            std::this_thread::sleep_for(20ms);
        }
    }

    // The first of `ids` that cogsd shows ACTIVE (through any replica), if any.
    std::optional<std::string> FirstActive(ControlPlaneClient& reader, const std::vector<std::string>& ids) {
        for (const auto& id : ids) {
            auto r = reader.Call("GET", "/v1/servers/" + id, "", {}, kTryTimeout);
            if (r && r->status == 200 && S(At(r->body, "server"), "status") == "ACTIVE") {
                return id;
            }
            if (!r || r->status != 200) {
                return std::nullopt;  // the control plane is between leaders: ask again next round
            }
        }
        return std::nullopt;
    }

    std::optional<std::string> Create(std::vector<ApiClient>& apis, int w, int n) {
        Request r;
        r.kind = Request::kCreate;
        r.name = fmt::format("{}-w{}-{}", prefix_, w, n);
        r.key = "storm-" + r.name;
        r.method = "POST";
        r.target = "/v1/servers";
        r.body = json::serialize(json::object{{"name", r.name},
                                              {"flavor", seeded_.flavor},
                                              {"image", seeded_.image},
                                              {"network_id", seeded_.network_id}});
        Send(apis, w, n, r);
        if (r.state == Request::kAccepted) {
            return r.server_id;
        }
        return std::nullopt;
    }

    void Delete(std::vector<ApiClient>& apis, int w, int n, const std::string& server_id) {
        Request r;
        r.kind = Request::kDelete;
        r.server_id = server_id;
        r.key = fmt::format("storm-{}-w{}-{}-delete", prefix_, w, n);
        r.method = "DELETE";
        r.target = "/v1/servers/" + server_id;
        Send(apis, w, n, r);
    }

    // Sends `r` (SendAsClient), records every try and how it ended.
    void Send(std::vector<ApiClient>& apis, int w, int n, Request& r) {
        r.trace_id = fmt::format("{:016x}{:016x}", std::hash<std::string>()(prefix_) | 1, (w << 20) + n + 1);
        r.first_sent = SteadyClock::now();
        const size_t index = Add(r);
        const auto reply = SendAsClient(
            apis, next_replica_++, r, r.first_sent, abort_, in_flight_,
            [&](const Result<ApiReply>& answer, int64_t sent_ms) {
                ++r.tries;
                r.last_try_wall_ms = sent_ms;
                if (SendAgain(answer)) {
                    std::lock_guard lock(mu_);
                    pushbacks_.push_back({SteadyClock::now(), index, answer ? answer->status : 0,
                                          answer && !answer->header_retry_after.empty(),
                                          answer ? S(answer->body, "code") : answer.error().message});
                }
            });
        r.answered_at = SteadyClock::now();
        if (!reply) {
            r.state = Request::kUnanswered;
        } else if (reply->status / 100 == 2) {
            r.state = Request::kAccepted;
            if (r.kind == Request::kCreate) {
                const json::value server = At(reply->body, "server");
                r.server_id = S(server, "id");
                r.workflow_id = S(server, "workflow_id");
                const auto created = ParseRfc3339(S(server, "created_at"));
                r.replayed = r.tries > 1 && created && *created < r.last_try_wall_ms;
            }
        } else if (r.kind == Request::kDelete && r.tries > 1 &&
                   (reply->status == 404 ||
                    (reply->status == 409 && reply->text.find("DELETING") != std::string::npos))) {
            // A DELETE is not replayed by its key: its first try may have been applied with its
            // answer lost, and the server is then gone (404) or being deleted (409).
            r.state = Request::kAccepted;
        } else {
            r.state = Request::kRefused;
            r.refusal = fmt::format("{} {}", reply->status, reply->text);
        }
        Publish(index, r);
    }

    const std::vector<std::string> urls_;
    const std::string token_;
    const Seeded seeded_;
    const std::string prefix_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> abort_{false};
    std::atomic<size_t> next_replica_{0};
    std::atomic<int> in_flight_{0};
    mutable std::mutex mu_;
    std::vector<Request> requests_;    // guarded by mu_
    std::vector<Pushback> pushbacks_;  // guarded by mu_
    std::vector<std::thread> threads_;
};

class HaStormTest : public ::testing::Test {
protected:
    void SetUp() override {
        started_ = SteadyClock::now();
        DevOptions o;
        o.hosts = 3;
        o.boot_ms = 20;
        o.store = "postgres";
        o.replicas = 3;
        o.postgres_fsync = false;  // a killed server keeps what it committed; only a machine crash would not
        auto dev = DevCloud::Start(o);
        ASSERT_TRUE(dev) << dev.error().ToString();
        dev_ = std::move(*dev);
        ASSERT_EQ(dev_->replicas().size(), 3u);
        ASSERT_NE(dev_->postgres(), nullptr);
        ASSERT_FALSE(WaitForLeader({}).empty()) << "no replica leads";
        ControlPlaneClient admin(Urls(), dev_->admin_token());
        auto seeded = SeedCloud(admin);
        ASSERT_TRUE(seeded) << seeded.error().ToString();
        seeded_ = *seeded;
        Log("cloud up and seeded");
    }

    void TearDown() override {
        if (dev_ == nullptr) {
            return;
        }
        if (HasFailure()) {
            std::cerr << "cogs dev data dir: " << dev_->data_dir()
                      << " (COGS_KEEP_TEST_DIRS=1 keeps it; grep a request's trace id in logs/)\n"
                      << "---- " << dev_->data_dir() << "/cogs-dev.log\n"
                      << runtime::TailFile(dev_->data_dir() + "/cogs-dev.log", 30);
            for (const auto& r : dev_->replicas()) {
                std::cerr << "---- " << r.log << "\n" << runtime::TailFile(r.log, 15);
            }
        }
        EXPECT_EQ(dev_->Stop(), 0) << "cogs dev exits 0 on SIGINT";
        dev_.reset();
    }

    void Log(const std::string& what) const {
        std::cerr << fmt::format("[ha_storm +{:.1f}s] {}\n", Ms(SteadyClock::now() - started_) / 1000, what);
    }

    std::vector<std::string> Urls() const {
        std::vector<std::string> out;
        for (const auto& r : dev_->replicas()) {
            out.push_back(r.url);
        }
        return out;
    }

    DevProcess Replica(const std::string& name) const {
        for (const auto& r : dev_->replicas()) {
            if (r.name == name) {
                return r;
            }
        }
        return {};
    }

    // The leader as the replicas not in `skip` answer GET /v1/replicas, once one names a leader not
    // in `skip` ("" if none did within the deadline). Replica ids are their names (cogsd-1..3).
    std::string WaitForLeader(const std::set<std::string>& skip, Duration timeout = 45s) {
        std::string leader;
        WaitUntil(
            [&] {
                for (const auto& r : dev_->replicas()) {
                    if (skip.count(r.name) > 0) {
                        continue;
                    }
                    ApiClient api(r.url, dev_->admin_token());
                    // A follower forwarding to a frozen leader hangs: give up on it soon, ask the next.
                    auto id = LeaderId(api, 2s);
                    if (id && !id->empty() && skip.count(*id) == 0) {
                        leader = *id;
                        return true;
                    }
                }
                return false;
            },
            timeout, 100ms);
        return leader;
    }

    // Waits until the storm has kPerPhase creates accepted: sent after `t`; by now.
    void AwaitCreatesAfter(const Storm& storm, SteadyTime t, const std::string& phase) {
        EXPECT_TRUE(WaitUntil([&] { return storm.CreatesAcceptedSentAfter(t) >= kPerPhase; }, 60s, 50ms))
            << "the storm had " << storm.CreatesAcceptedSentAfter(t) << " creates accepted " << phase;
        Log(fmt::format("{} creates accepted {}", storm.CreatesAcceptedSentAfter(t), phase));
    }
    void AwaitCreatesBy(const Storm& storm, const std::string& phase) {
        EXPECT_TRUE(
            WaitUntil([&] { return storm.CreatesAcceptedBy(SteadyClock::now()) >= kPerPhase; }, 60s, 50ms))
            << "the storm had " << storm.CreatesAcceptedBy(SteadyClock::now()) << " creates accepted "
            << phase;
    }

    // Waits (a little, see kAmid) until the storm has requests in flight; how many it has.
    static int Amid(const Storm& storm) {
        WaitUntil([&] { return storm.InFlight() >= kAmid; }, kAmidWait, 1ms);
        return storm.InFlight();
    }

    // The postmaster's pid as its postmaster.pid says (0 if none).
    int PostmasterPid() const {
        std::ifstream in(dev_->postgres()->data_dir + "/postmaster.pid");
        int pid = 0;
        return in >> pid ? pid : 0;
    }

    // Stops the storm and checks everything the top of the file lists.
    void SettleAndCheck(Storm& storm);

    SteadyTime started_;
    std::unique_ptr<DevCloud> dev_;
    Seeded seeded_;
};

void HaStormTest::SettleAndCheck(Storm& storm) {
    storm.Stop();
    const std::vector<Request> requests = storm.requests();
    int creates = 0, deletes = 0, tries = 0, replayed = 0;
    std::set<std::string> deleted;  // by an accepted delete
    for (const auto& r : requests) {
        tries += r.tries;
        replayed += r.replayed ? 1 : 0;
        (r.kind == Request::kCreate ? creates : deletes) += 1;
        EXPECT_NE(r.state, Request::kUnanswered)
            << r.name << r.server_id << " (key " << r.key << ", trace " << r.trace_id << ") never answered";
        EXPECT_NE(r.state, Request::kRefused)
            << (r.kind == Request::kCreate ? "create " + r.name : "delete of " + r.server_id) << " (key "
            << r.key << ") refused: " << r.refusal;
        if (r.kind == Request::kDelete && r.state == Request::kAccepted) {
            deleted.insert(r.server_id);
        }
    }
    std::map<std::string, int> pushbacks;
    for (const auto& p : storm.pushbacks()) {
        ++pushbacks[p.status == 0 ? "no answer" : fmt::format("{} {}", p.status, p.what)];
        if (p.status == 503 || p.status == 429) {
            EXPECT_TRUE(p.retry_after) << p.status << " " << p.what << " without Retry-After";
        }
        // 409: a re-send that found its first try still being answered (cloud_api.h: SendAgain).
        EXPECT_TRUE(p.status == 0 || p.status == 409 || p.status == 429 || p.status == 502 ||
                    p.status == 503 || p.status == 504)
            << "answered " << p.status << " " << p.what << " (request " << requests[p.request].key << ")";
    }
    std::string counts;
    for (const auto& [what, n] : pushbacks) {
        counts += fmt::format(" [{}] x{}", what, n);
    }
    Log(
        fmt::format("storm stopped: {} creates ({} answered by their key's record after a lost answer), "
                    "{} deletes, {} tries; sent again after:{}",
                    creates, replayed, deletes, tries, counts));

    // ---- every create sent once more with its key: answered as the first time, nothing made twice ----
    const std::vector<std::string> echoes = storm.EchoCreates();
    EXPECT_TRUE(echoes.empty()) << echoes.size() << " creates answered otherwise when sent again:\n  "
                                << fmt::format("{}", fmt::join(echoes, "\n  "));

    // ---- every accepted request ends: its server ACTIVE or ERROR, or gone; nothing in flight ----
    ControlPlaneClient api(Urls(), dev_->admin_token());
    std::map<std::string, json::object> servers;  // by id
    std::string pending;
    const bool settled = WaitUntil(
        [&] {
            auto list = ListAll(api, "/v1/servers", "servers");
            auto running = ListAll(api, "/v1/workflows?state=running", "workflows");
            auto compensating = ListAll(api, "/v1/workflows?state=compensating", "workflows");
            if (!list || !running || !compensating) {
                pending = "the control plane did not answer";
                return false;
            }
            servers.clear();
            for (const auto& s : *list) {
                servers[Str(s, "id")] = s;
            }
            pending.clear();
            for (const auto& r : requests) {
                if (r.state != Request::kAccepted) {
                    continue;
                }
                auto s = servers.find(r.server_id);
                if (r.kind == Request::kDelete && s != servers.end()) {
                    pending += fmt::format(" delete of {} ({});", r.server_id, Str(s->second, "status"));
                } else if (r.kind == Request::kCreate && s != servers.end() &&
                           Transitional(Str(s->second, "status"))) {
                    pending += fmt::format(" create {} ({});", r.name, Str(s->second, "status"));
                }
            }
            if (!running->empty() || !compensating->empty()) {
                pending += fmt::format(" {} workflows running, {} compensating", running->size(),
                                       compensating->size());
            }
            return pending.empty();
        },
        90s, 200ms);
    ASSERT_TRUE(settled) << "not settled:" << pending;
    Log(fmt::format("settled: {} servers listed", servers.size()));

    // ---- nothing lost, nothing in ERROR, one server per create's key ----
    std::map<std::string, std::string> status_by_id;
    std::map<std::string, int> by_name;
    for (const auto& [id, s] : servers) {
        status_by_id[id] = Str(s, "status");
        ++by_name[Str(s, "name")];
        EXPECT_EQ(Str(s, "status"), "ACTIVE")
            << "server " << Str(s, "name") << " " << id << ": " << json::serialize(s);
    }
    int accepted_creates = 0;
    for (const auto& r : requests) {
        if (r.kind != Request::kCreate || r.state != Request::kAccepted) {
            continue;
        }
        ++accepted_creates;
        EXPECT_FALSE(r.server_id.empty()) << r.name;
        const bool listed = servers.count(r.server_id) > 0;
        EXPECT_TRUE(listed || deleted.count(r.server_id) > 0)
            << "LOST: create " << r.name << " (key " << r.key << ", trace " << r.trace_id
            << ") was answered 202 with " << r.server_id << ", which is neither listed nor deleted";
        EXPECT_FALSE(listed && deleted.count(r.server_id) > 0)
            << r.server_id << " was deleted, and is still listed";
    }
    for (const auto& [name, n] : by_name) {
        EXPECT_EQ(n, 1) << "DUPLICATE: " << n << " servers named " << name << " (one create's key)";
    }
    EXPECT_GT(accepted_creates, 0);
    EXPECT_FALSE(deleted.empty()) << "the storm deleted nothing";
    EXPECT_FALSE(servers.empty()) << "nothing left to check in the services";

    // ---- the audit of the chaos runs: leaks, addresses, second resources, desired state ----
    const CloudEndpoints endpoints = Endpoints(*dev_);
    const Requested asked = storm.Asked(status_by_id);
    auto audit = AuditCloud(endpoints, asked);
    ASSERT_TRUE(audit) << audit.error().ToString();
    std::string findings;
    for (const auto& f : audit->findings) {
        findings += "\n  " + f;
    }
    EXPECT_TRUE(audit->Clean()) << "the audit found:" << findings;

    // ---- the services: one port per server, one instance per server on one host, each applied once ----
    ApiClient network(endpoints.network_url, endpoints.network_token);
    auto net = network.Call("GET", "/v1/inventory", "", {}, 10s);
    ASSERT_TRUE(net && net->status == 200 && At(net->body, "ports").is_array())
        << (net ? net->text : net.error().ToString());
    std::map<std::string, std::vector<std::string>> ports_of;  // server id -> its ports at cogs-network
    const json::value ports = At(net->body, "ports");
    for (const auto& p : ports.as_array()) {
        if (!S(p, "device_id").empty()) {
            ports_of[S(p, "device_id")].push_back(S(p, "id"));
        }
    }
    auto network_ledger = ServiceLedger(network, 10s);
    ASSERT_TRUE(network_ledger) << network_ledger.error().ToString();
    std::map<std::string, int> ports_made;      // server id -> create_port applied
    std::map<std::string, int> instances_made;  // server id -> create_instance applied (every agent)
    auto count_applied = [](const json::array& ledger, const char* action, const char* owner,
                            std::map<std::string, int>& out) {
        for (const auto& e : ledger) {
            if (S(e, "action") == action && S(e, "kind") == "do" && S(e, "outcome") == "applied") {
                ++out[S(At(e, "output"), owner)];
            }
        }
    };
    count_applied(*network_ledger, "create_port", "device_id", ports_made);
    std::map<std::string, std::vector<std::string>> hosts_of;  // server id -> "host (state)" of its instances
    for (const auto& agent : endpoints.agents) {
        ApiClient a(agent.url, agent.token);
        auto inventory = ComputeInventory(a, 10s);
        ASSERT_TRUE(inventory) << agent.name << ": " << inventory.error().ToString();
        for (const auto& [id, i] : *inventory) {
            hosts_of[id].push_back(fmt::format("{} ({})", i.host, i.state));
        }
        auto ledger = ServiceLedger(a, 10s);
        ASSERT_TRUE(ledger) << agent.name << ": " << ledger.error().ToString();
        count_applied(*ledger, "create_instance", "id", instances_made);
    }
    for (const auto& [id, s] : servers) {
        const std::string what = fmt::format("server {} {}", Str(s, "name"), id);
        EXPECT_EQ(ports_of[id], std::vector<std::string>{Str(s, "port_id")})
            << what << ": its ports at cogs-network";
        EXPECT_EQ(hosts_of[id], std::vector<std::string>{Str(s, "host") + " (ACTIVE)"})
            << what << ": its instances in the agents' inventories";
        EXPECT_EQ(ports_made[id], 1) << what << ": create_port applied " << ports_made[id] << " times";
        EXPECT_EQ(instances_made[id], 1)
            << what << ": create_instance applied " << instances_made[id] << " times";
    }
    for (const auto& [id, ports] : ports_of) {
        EXPECT_TRUE(servers.count(id) > 0)
            << "ports [" << fmt::format("{}", fmt::join(ports, ", ")) << "] at cogs-network belong to server "
            << id << ", which cogsd does not have";
    }
    for (const auto& [id, hosts] : hosts_of) {
        EXPECT_TRUE(servers.count(id) > 0) << "an instance " << id << " on "
                                           << fmt::format("{}", fmt::join(hosts, ", ")) << " has no server";
    }
    for (const auto& [id, n] : ports_made) {
        EXPECT_LE(n, 1) << "create_port applied " << n << " times for server " << id;
    }
    for (const auto& [id, n] : instances_made) {
        EXPECT_LE(n, 1) << "create_instance applied " << n << " times for server " << id;
    }
    Log(fmt::format("checked: {} accepted creates, {} deleted, {} servers, audit {}", accepted_creates,
                    deleted.size(), servers.size(), audit->Clean() ? "clean" : "NOT clean"));
}

TEST_F(HaStormTest, LeaderKilledThenNextLeaderFrozen) {
    const std::string first = WaitForLeader({});
    ASSERT_FALSE(first.empty());
    Storm storm(Urls(), dev_->admin_token(), seeded_, "k");
    storm.Start();
    AwaitCreatesBy(storm, "before the leader was killed");

    // ---- the leader dies; `cogs dev` is paused until a follower leads (see the top) ----
    const DevProcess killed = Replica(first);
    ASSERT_GT(killed.pid, 0);
    SteadyTime killed_at, second_at;
    std::string second;
    {
        Paused dev(dev_->pid());
        ASSERT_TRUE(dev.stopped());
        const int amid = Amid(storm);
        killed_at = SteadyClock::now();
        ASSERT_EQ(::kill(killed.pid, SIGKILL), 0);
        Log(fmt::format("SIGKILLed the leader {} (pid {}) amid {} requests, with {} creates accepted", first,
                        killed.pid, amid, storm.CreatesAcceptedBy(killed_at)));
        second = WaitForLeader({first});
        second_at = SteadyClock::now();
        ASSERT_FALSE(second.empty()) << "no follower took over from " << first;
        ASSERT_NE(second, first);
        Log(fmt::format("{} seen leading {:.0f} ms after the kill", second, Ms(second_at - killed_at)));
    }
    EXPECT_GE(storm.CreatesAcceptedBy(killed_at), kPerPhase);
    AwaitCreatesAfter(storm, second_at, "after " + second + " took over");

    // ---- the new leader freezes; the third replica (or the restarted one) takes over ----
    ASSERT_TRUE(WaitUntil([&] { return dev_->Reload() && Replica(first).pid != killed.pid; }, 30s))
        << "`cogs dev` did not restart " << first;
    const DevProcess frozen = Replica(second);
    ASSERT_GT(frozen.pid, 0);
    SteadyTime frozen_at, third_at, thawed_at;
    std::string third;
    {
        const int amid = Amid(storm);
        Paused freeze(frozen.pid);
        ASSERT_TRUE(freeze.stopped());
        frozen_at = SteadyClock::now();
        Log(fmt::format("SIGSTOPped the leader {} (pid {}) amid {} requests, with {} creates accepted",
                        second, frozen.pid, amid, storm.CreatesAcceptedBy(frozen_at)));
        third = WaitForLeader({second});
        third_at = SteadyClock::now();
        ASSERT_FALSE(third.empty()) << "nobody took over from the frozen " << second;
        Log(fmt::format("{} seen leading {:.0f} ms after the freeze", third, Ms(third_at - frozen_at)));
        AwaitCreatesAfter(storm, third_at, "while " + second + " was frozen");
        thawed_at = SteadyClock::now();
    }
    EXPECT_GE(storm.CreatesAcceptedBy(frozen_at), 2 * kPerPhase);

    // ---- thawed, it finds it was replaced and exits (75); `cogs dev` restarts it as a follower ----
    EXPECT_TRUE(WaitUntil([&] { return dev_->Reload() && Replica(second).pid != frozen.pid; }, 30s))
        << second << " (pid " << frozen.pid << ") still runs after it was thawed";
    EXPECT_TRUE(WaitUntil(
        [&] {
            auto log = runtime::ReadFile(dev_->data_dir() + "/cogs-dev.log");
            return log && log->find(second + " was deposed (status 75)") != std::string::npos;
        },
        10s))
        << "`cogs dev` did not see " << second << " exit 75 (deposed)";
    Log(fmt::format("{} exited by itself after the thaw; restarted as pid {}", second, Replica(second).pid));
    AwaitCreatesAfter(storm, thawed_at, "after " + second + " was thawed");

    SettleAndCheck(storm);
}

TEST_F(HaStormTest, PostgresCrashedAndStopped) {
    Storm storm(Urls(), dev_->admin_token(), seeded_, "p");
    storm.Start();
    AwaitCreatesBy(storm, "before PostgreSQL went down");
    const std::string pg_dir = dev_->postgres()->dir;
    for (const bool crash : {true, false}) {
        const char* how = crash ? "killed (a crash)" : "stopped (a fast shutdown)";
        const int before = PostmasterPid();
        ASSERT_GT(before, 0);
        ASSERT_EQ(dev_->postgres()->pid, before);
        SteadyTime down_at;
        {
            // `cogs dev` would restart it within a second: it waits until the storm saw the outage.
            Paused dev(dev_->pid());
            ASSERT_TRUE(dev.stopped());
            const int amid = Amid(storm);
            down_at = SteadyClock::now();
            const int accepted = storm.CreatesAcceptedBy(down_at);
            ASSERT_TRUE(pg::Cluster::StopDir(pg_dir, crash ? Duration::zero() : Duration(30s)))
                << "PostgreSQL could not be " << how;
            Log(fmt::format("PostgreSQL (pid {}) {} amid {} requests, with {} creates accepted", before, how,
                            amid, accepted));
            EXPECT_GE(accepted, kPerPhase);
            EXPECT_TRUE(WaitUntil([&] { return storm.RetryAfter503sSince(down_at) > 0; }, 30s, 10ms))
                << "no mutation was answered 503 with Retry-After while PostgreSQL was down";
        }
        int after = 0;
        ASSERT_TRUE(WaitUntil(
            [&] {
                after = dev_->Reload() ? dev_->postgres()->pid : 0;
                return after > 0 && after != before && PostmasterPid() == after;
            },
            60s))
            << "`cogs dev` did not restart PostgreSQL (pid " << before << ")";
        const SteadyTime back_at = SteadyClock::now();
        Log(fmt::format(
            "PostgreSQL back as pid {}, {:.0f} ms after it went down; {} 503s with Retry-After since", after,
            Ms(back_at - down_at), storm.RetryAfter503sSince(down_at)));
        AwaitCreatesAfter(storm, back_at, fmt::format("after PostgreSQL was {}", how));
    }

    // The requests answered 503 while it was down were sent again with their keys, and accepted.
    SettleAndCheck(storm);
    const std::vector<Request> requests = storm.requests();
    std::set<size_t> pushed_back;
    for (const auto& p : storm.pushbacks()) {
        if (p.status == 503 && p.retry_after) {
            pushed_back.insert(p.request);
        }
    }
    EXPECT_FALSE(pushed_back.empty());
    for (size_t i : pushed_back) {
        EXPECT_EQ(requests[i].state, Request::kAccepted)
            << requests[i].name << requests[i].server_id << " (key " << requests[i].key
            << ") was answered 503, then " << requests[i].refusal;
        EXPECT_GT(requests[i].tries, 1);
    }
}

}  // namespace
}  // namespace cogs::testing
