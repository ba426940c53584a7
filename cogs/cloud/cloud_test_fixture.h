// The control plane in one process, for the tests of cloud_inprocess_test (cloud_test.cc: the API's
// rules; cloud_server_test.cc: resources through their lives; cloud_heal_test.cc: leases, healing,
// restarts).
//
// A store in a temp dir, the real engine with the shipped workflows, the simulated services in
// process (network, volume, compute; each behind a Gate the test can hold, refuse or fail calls
// at), and the API driven through Cloud::Handler() as an HTTP server would. The cloud's time is a
// FakeClock: leases and their deadlines move only when a test says so. The engine's retries and the
// services' answers run on real time, but the test waits for conditions, never for a duration.
//
// What the simulated services answer is only {"id","action","seq"}: addresses, MACs, a port's
// subnet and a volume's device stay empty in process (test/integration checks them). A test that
// checks what the volume service holds sets `real_volume_` before Open() (in its fixture's SetUp):
// "volume" is then the real cogs-volume domain in process (its state in the temp dir, so it lives
// through restarts), behind the same Gate, and VolumeAttachments() reads its inventory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "cogs/base/paths.h"
#include "cogs/cloud/cloud.h"
#include "cogs/http/server.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/kit/service.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/services/volume/volume.h"
#include "cogs/store/store.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"
#include "test/support/temp_dir.h"
#include "test/support/threaded_server.h"

namespace cogs::cloud::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

// An API answer: the status, the parsed body, the raw response.
struct Reply {
    int status = 0;
    json::object body;
    http::Response raw;

    std::string Str(std::string_view key) const {
        const json::value* v = body.if_contains(key);
        return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
    }
    // The object under `kind` ({"server": {...}}), or an empty one. A copy of a temporary's (a
    // loop over Call(...).Items(...) must not hold a reference into a reply that is gone).
    const json::object& Obj(std::string_view kind) const& { return Under<json::object>(kind); }
    json::object Obj(std::string_view kind) && { return Obj(kind); }
    // {"<kind>": {...}}[field], for a string field.
    std::string Field(std::string_view kind, std::string_view field) const {
        const json::value* v = Obj(kind).if_contains(field);
        return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
    }
    // The list under `collection` ({"servers": [...]}), or an empty one (a copy of a temporary's).
    const json::array& Items(std::string_view collection) const& { return Under<json::array>(collection); }
    json::array Items(std::string_view collection) && { return Items(collection); }
    // The object or array (T) under `key`, or an empty one.
    template <typename T>
    const T& Under(std::string_view key) const {
        static const T kNone;
        const json::value* v = body.if_contains(key);
        if constexpr (std::is_same_v<T, json::object>) {
            return v != nullptr && v->is_object() ? v->get_object() : kNone;
        } else {
            return v != nullptr && v->is_array() ? v->get_array() : kNone;
        }
    }
    std::string ErrorField() const {
        const json::value* f = Obj("details").if_contains("field");
        return f != nullptr && f->is_string() ? std::string(f->get_string()) : "";
    }
};

inline std::string StrOf(const json::value& v, std::string_view key) {
    const json::value* f = v.is_object() ? v.get_object().if_contains(key) : nullptr;
    return f != nullptr && f->is_string() ? std::string(f->get_string()) : "";
}

inline bool Has(const std::vector<std::string>& types, std::string_view type) {
    return std::find(types.begin(), types.end(), type) != types.end();
}

// Where `type` first is in `types` (types.size() if nowhere).
inline size_t IndexOf(const std::vector<std::string>& types, std::string_view type) {
    return static_cast<size_t>(std::find(types.begin(), types.end(), type) - types.begin());
}

inline std::string Join(const std::vector<std::string>& items) {
    std::string s;
    for (const auto& i : items)
        s += (s.empty() ? "" : ", ") + i;
    return s;
}

// Between the engine and one simulated service. Calls go straight through, but for the actions
// the test holds (they wait until it releases or refuses them: a slow service, or a host that
// dies mid-call, at the moment the test chooses; the sim's own hang never answers) and the calls
// it fails (a retryable error, nothing applied). Lives on the test's io thread.
class Gate final : public workflow::ServiceClient {
public:
    Gate(boost::asio::io_context& io, std::shared_ptr<workflow::ServiceClient> service)
        : io_(io), service_(std::move(service)) {}

    // Calls of `action` wait from now on.
    void Hold(std::string action) { holding_.insert(std::move(action)); }
    // Stops holding; the held calls go on to the service.
    void Release() {
        holding_.clear();
        for (auto& h : TakeHeld())
            service_->Invoke(std::move(h.call), std::move(h.done));
    }
    // Stops holding; the held calls are answered `error` (nothing applied).
    void Refuse(const Error& error) {
        holding_.clear();
        for (auto& h : TakeHeld())
            Answer(std::move(h.done), MakeError(error));
    }
    // The next `times` calls of `action` fail retryably (kUnavailable).
    void FailNext(const std::string& action, int times) { failing_[action] = times; }

    size_t held() const { return held_.size(); }
    // The input of held call `i`, as the engine rendered it.
    json::object HeldInput(size_t i = 0) const {
        boost::system::error_code ec;
        json::value v = json::parse(held_.at(i).call.input, ec);
        return !ec && v.is_object() ? v.get_object() : json::object{};
    }

    void Invoke(workflow::ActionCall call, Callback done) override {
        if (auto it = failing_.find(call.action); it != failing_.end() && it->second > 0) {
            --it->second;
            return Answer(std::move(done),
                          MakeError(ErrorCode::kUnavailable, call.action + ": unavailable (gate)"));
        }
        if (holding_.contains(call.action)) {
            held_.push_back(Held{std::move(call), std::move(done)});
            return;
        }
        service_->Invoke(std::move(call), std::move(done));
    }
    void Status(workflow::ActionCall call, Callback done) override {
        service_->Status(std::move(call), std::move(done));
    }
    std::string Endpoint(const workflow::ActionCall& call) const override { return service_->Endpoint(call); }

private:
    struct Held {
        workflow::ActionCall call;
        Callback done;
    };
    std::deque<Held> TakeHeld() { return std::exchange(held_, {}); }
    // Never inline, as a service client must.
    void Answer(Callback done, Result<workflow::ActionReply> r) {
        boost::asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    }

    boost::asio::io_context& io_;
    std::shared_ptr<workflow::ServiceClient> service_;
    std::set<std::string> holding_;
    std::map<std::string, int> failing_;
    std::deque<Held> held_;
};

// A store that passes everything to `store`: a test overrides what it changes (holds, refusals).
class ForwardingStore : public store::Store {
public:
    explicit ForwardingStore(std::unique_ptr<store::Store> store) : store_(std::move(store)) {}

    Result<store::WorkflowRecord> GetWorkflow(const std::string& id) override {
        return store_->GetWorkflow(id);
    }
    Error WhyNotWritable() override { return store_->WhyNotWritable(); }
    void Commit(store::WriteGroup g, CommitCallback done) override {
        store_->Commit(std::move(g), std::move(done));
    }
    void Flush() override { store_->Flush(); }
    bool Writable() override { return store_->Writable(); }
    Status ResumeWrites() override { return store_->ResumeWrites(); }
    Result<store::Lease> AcquireLease(const std::string& owner, int64_t ttl_ms) override {
        return store_->AcquireLease(owner, ttl_ms);
    }
    Status RenewLease(store::Lease& lease, int64_t ttl_ms) override {
        return store_->RenewLease(lease, ttl_ms);
    }
    Result<std::vector<store::WorkflowRecord>> ClaimOrphaned(const store::Lease& lease, int limit) override {
        return store_->ClaimOrphaned(lease, limit);
    }
    Result<std::vector<store::WorkflowSummary>> ListWorkflows(const store::ListFilter& filter) override {
        return store_->ListWorkflows(filter);
    }
    Result<std::vector<std::pair<store::WorkflowState, int64_t>>> CountByState() override {
        return store_->CountByState();
    }
    Result<store::WorkflowRecord> ReviveFailed(const store::Lease& lease, const std::string& id) override {
        return store_->ReviveFailed(lease, id);
    }
    Status SaveDefinition(const store::DefinitionRecord& def) override { return store_->SaveDefinition(def); }
    Status PutChunk(const std::string& blob, int64_t seq, std::string_view data) override {
        return store_->PutChunk(blob, seq, data);
    }
    Result<std::string> GetChunk(const std::string& blob, int64_t seq) override {
        return store_->GetChunk(blob, seq);
    }
    Result<int64_t> DeleteChunks(const std::string& blob) override { return store_->DeleteChunks(blob); }
    Result<int64_t> CountChunks(const std::string& blob) override { return store_->CountChunks(blob); }
    Result<std::vector<std::string>> ListBlobs() override { return store_->ListBlobs(); }
    Result<std::vector<store::DefinitionRecord>> LoadDefinitions() override {
        return store_->LoadDefinitions();
    }
    Result<std::vector<store::ResourceRecord>> LoadResources() override { return store_->LoadResources(); }
    Result<store::PruneResult> PruneWorkflows(store::Ended which, int64_t finished_before_ms,
                                              int64_t keep_at_most, int batch) override {
        return store_->PruneWorkflows(which, finished_before_ms, keep_at_most, batch);
    }
    Result<std::vector<store::EventRecord>> ListEvents(const store::EventFilter& filter) override {
        return store_->ListEvents(filter);
    }
    Result<int64_t> PruneEvents(int64_t older_than_ms, int64_t keep_at_most) override {
        return store_->PruneEvents(older_than_ms, keep_at_most);
    }
    Result<std::vector<store::AuditRecord>> ListAudit(const store::AuditFilter& filter) override {
        return store_->ListAudit(filter);
    }
    Result<int64_t> PruneAudit(int64_t older_than_ms, int64_t keep_at_most) override {
        return store_->PruneAudit(older_than_ms, keep_at_most);
    }
    store::StoreStats Stats() override { return store_->Stats(); }

protected:
    std::unique_ptr<store::Store> store_;
};

// A service's inventory (GET /v1/inventory), served on its own thread: a network service's by
// default, whatever Serve() last set; reads() counts the requests.
class FakeInventory {
public:
    std::string url() const { return server_.url(); }
    // One port nothing owns.
    void Orphan(const std::string& id) { Serve({}, R"({"id":")" + id + R"(","network_id":"gone"})"); }
    // The inventory's networks (ids) and ports (JSON objects, comma-separated).
    void Serve(const std::vector<std::string>& networks, const std::string& ports) {
        std::string list;
        for (const auto& n : networks) {
            list += (list.empty() ? "" : ",") + (R"({"id":")" + n + R"("})");
        }
        ServeBody(R"({"networks":[)" + list + R"(],"subnets":[],"ports":[)" + ports + "]}");
    }
    void ServeBody(std::string body) {
        std::lock_guard lock(mu_);
        body_ = std::move(body);
    }
    int reads() {
        std::lock_guard lock(mu_);
        return reads_;
    }

private:
    std::mutex mu_;
    std::string body_ = R"({"networks":[],"subnets":[],"ports":[]})";
    int reads_ = 0;
    cogs::testing::ThreadedServer server_{[this](http::Request, http::Respond respond) {
        std::lock_guard lock(mu_);
        ++reads_;
        http::Response r;
        r.body = body_;
        respond(std::move(r));
    }};
};

class CloudTest : public ::testing::Test {
protected:
    void SetUp() override {
        options_.clock = &clock_;
        options_.lease_ttl = 3s;
        options_.fence_window = 1s;
        options_.restart_grace = 0s;
        options_.reconcile_every = std::chrono::hours(1);  // no periodic pass unless a test asks
        if (options_.agent_key.empty()) options_.agent_key = "cloud-test-agent-key";  // hosts can enroll
        options_.password_iterations = 1000;  // a user's password hashed in ~1 ms, not ~0.3 s
        engine_options_.owner = "cloud_test";
        Open();
    }

    void TearDown() override { Close(); }

    // The whole control plane on the store in dir_ (again after Close: a restart), with options_
    // and engine_options_.
    void Open() {
        ASSERT_NO_FATAL_FAILURE(OpenEngine());
        if (before_cloud_) before_cloud_();
        cloud_ = std::make_unique<Cloud>(*io_, *store_, *engine_, *registry_, options_);
        catalog_.Add("scheduler", cloud_->SchedulerService());
        ASSERT_TRUE(engine_->Recover());
        ASSERT_TRUE(cloud_->Load());
        auto secret = cloud_->Bootstrap(admin_);
        ASSERT_TRUE(secret);
        if (!secret->empty()) admin_ = *secret;
        cloud_->Start();
        handler_ = cloud_->Handler();
    }

    // The store, the engine and the simulated services, without a cloud.
    void OpenEngine() {
        io_ = std::make_unique<boost::asio::io_context>(1);
        store::SqliteOptions so = store_options_;
        if (so.path.empty()) so.path = dir_ / "cogsd.db";
        auto st = store::OpenSqliteStore(so);
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        if (wrap_store_) store_ = wrap_store_(std::move(store_));
        registry_ = std::make_unique<workflow::Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        auto defs = workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud"));
        ASSERT_TRUE(defs) << defs.error().ToString();
        ASSERT_TRUE(registry_->RegisterAll(std::move(*defs)));
        for (const char* name : {"network", "volume", "compute"}) {
            if (real_volume_ && std::string_view(name) == "volume") {
                auto driver = services::volume::MakeVolumeDriver("sim", "");
                ASSERT_TRUE(driver);
                auto volume = services::kit::DomainService::Create(
                    *io_, services::volume::MakeVolumeDomain(std::move(*driver)),
                    services::kit::ServiceOptions{.state_path = dir_ / "cogs-volume.db"});
                ASSERT_TRUE(volume) << volume.error().ToString();
                volume_service_ = std::move(*volume);
                gates_[name] = std::make_shared<Gate>(
                    *io_, services::sim::MakeInProcessClient(*io_, *volume_service_, name));
            } else {
                sims_[name] = std::make_unique<services::sim::SimService>(*io_, services::sim::SimOptions{});
                gates_[name] = std::make_shared<Gate>(*io_, services::sim::MakeSimClient(*sims_[name], name));
            }
            catalog_.Add(name, gates_[name]);
        }
        engine_ = std::make_unique<workflow::Engine>(*io_, *store_, *registry_, catalog_, engine_options_);
    }

    // What a stop does (cogsd's order): the loops and the engine stop, every commit queued is
    // made (its callback only posts to the io_context, which no longer runs), then everything goes.
    // Work in flight stays in the store.
    void Close() {
        if (cloud_) cloud_->Stop();
        if (engine_) engine_->Shutdown();
        if (store_) store_->Flush();
        handler_ = nullptr;
        cloud_.reset();
        engine_.reset();
        gates_.clear();
        sims_.clear();
        volume_service_.reset();
        catalog_ = workflow::ServiceCatalog();
        store_.reset();
        io_.reset();
    }

    // While the cloud is down, the engine alone (the same owner, the same services) resumes what
    // was in flight and runs it until `done` holds: what happens when cogsd dies between a
    // workflow's end and its resource taking the outcome.
    void RunEngineAlone(const std::function<bool(const std::set<std::string>& finished)>& done) {
        Close();
        ASSERT_NO_FATAL_FAILURE(OpenEngine());
        std::set<std::string> finished;
        engine_->OnFinished([&finished](const workflow::FinishedEvent& ev) { finished.insert(ev.id); });
        ASSERT_TRUE(engine_->Recover());
        RunUntil([&] { return done(finished); });
        Close();
    }

    using Headers = std::vector<std::pair<std::string, std::string>>;

    static http::Request Request(const std::string& token, const std::string& method,
                                 const std::string& target, const std::string& body = "",
                                 const Headers& headers = {}) {
        http::Request req;
        req.method = method;
        req.target = target;
        req.body = body;
        if (!token.empty()) req.headers.emplace_back("authorization", "Bearer " + token);
        for (const auto& h : headers)
            req.headers.push_back(h);
        return req;
    }

    static Reply ReplyOf(http::Response got) {
        Reply r;
        r.status = got.status;
        boost::system::error_code ec;
        json::value v = json::parse(got.body, ec);
        if (!ec && v.is_object()) r.body = std::move(v.get_object());
        r.raw = std::move(got);
        return r;
    }

    // One API call, answered: runs the io_context until the answer comes.
    Reply Call(const std::string& token, const std::string& method, const std::string& target,
               const std::string& body = "", const Headers& headers = {}) {
        std::optional<http::Response> got;
        handler_(Request(token, method, target, body, headers),
                 [&](http::Response r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        return got ? ReplyOf(std::move(*got)) : Reply{};
    }

    // Runs the io_context until `done` (a condition, never a duration, decides; the bound only
    // stops a test that would hang).
    void RunUntil(const std::function<bool()>& done) {
        const auto give_up = SteadyClock::now() + 30s;
        while (!done() && SteadyClock::now() < give_up) {
            io_->restart();
            io_->run_for(2ms);
        }
        ASSERT_TRUE(done()) << "condition not reached";
    }

    // Waits until the resource at `path` has `status` (or is gone, for "").
    Reply WaitFor(const std::string& path, std::string_view kind, const std::string& status) {
        Reply r;
        RunUntil([&] {
            r = Call(admin_, "GET", path);
            return status.empty() ? r.status == 404 : r.Field(kind, "status") == status;
        });
        EXPECT_TRUE(status.empty() ? r.status == 404 : r.Field(kind, "status") == status)
            << path << " is not " << (status.empty() ? "gone" : status) << ": " << r.raw.body;
        return r;
    }

    std::string NewProject(const std::string& name) {
        Reply r = Call(admin_, "POST", "/v1/projects", R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        return r.Field("project", "id");
    }

    std::string NewToken(const std::string& project, const std::string& role) {
        Reply r = Call(admin_, "POST", "/v1/tokens",
                       R"({"project_id":")" + project + R"(","role":")" + role + R"("})");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        return r.Field("token", "secret");
    }

    // A flavor "small" (2 vcpus, 2 GiB), an image "debian" and hosts h1..hN (8 vcpus, 16 GiB each).
    void Seed(int hosts = 2) {
        ASSERT_EQ(
            Call(admin_, "POST", "/v1/flavors", R"({"name":"small","vcpus":2,"ram_mb":2048,"disk_gb":10})")
                .status,
            201);
        ASSERT_EQ(Call(admin_, "POST", "/v1/images", R"({"name":"debian"})").status, 201);
        for (int i = 1; i <= hosts; ++i) {
            Reply r = Call(admin_, "PUT", "/v1/hosts/h" + std::to_string(i),
                           R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,"disk_gb":100})");
            ASSERT_EQ(r.status, 200) << r.raw.body;
        }
    }

    std::string ActiveNetwork(const std::string& token, const std::string& name = "net") {
        Reply r = Call(token, "POST", "/v1/networks", R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 202) << r.raw.body;
        const std::string id = r.Field("network", "id");
        WaitFor("/v1/networks/" + id, "network", "ACTIVE");
        return id;
    }

    std::string ActiveVolume(const std::string& token, const std::string& name = "vol", int size_gb = 5) {
        Reply r = Call(token, "POST", "/v1/volumes",
                       R"({"name":")" + name + R"(","size_gb":)" + std::to_string(size_gb) + "}");
        EXPECT_EQ(r.status, 202) << r.raw.body;
        const std::string id = r.Field("volume", "id");
        WaitFor("/v1/volumes/" + id, "volume", "available");
        return id;
    }

    // A server's create body on `net` (flavor small, image debian); `extra` is more fields,
    // starting with a comma.
    static std::string ServerBody(const std::string& net, const std::string& extra = "",
                                  const std::string& name = "s") {
        return R"({"name":")" + name + R"(","flavor":"small","image":"debian","network_id":")" + net + "\"" +
               extra + "}";
    }
    // `"volume_ids":[...]` for ServerBody's extra.
    static std::string VolumeIds(const std::vector<std::string>& ids) {
        std::string list;
        for (const auto& id : ids)
            list += (list.empty() ? "\"" : ",\"") + id + "\"";
        return R"(,"volume_ids":[)" + list + "]";
    }

    // Creates a server and waits until it is ACTIVE; returns its id.
    std::string ActiveServer(const std::string& token, const std::string& net,
                             const std::string& extra = "") {
        Reply r = Call(token, "POST", "/v1/servers", ServerBody(net, extra));
        EXPECT_EQ(r.status, 202) << r.raw.body;
        const std::string id = r.Field("server", "id");
        WaitFor("/v1/servers/" + id, "server", "ACTIVE");
        return id;
    }

    Reply Server(const std::string& id) { return Call(admin_, "GET", "/v1/servers/" + id); }
    // A server's volume_ids, as the API shows them.
    std::vector<std::string> VolumeIdsOf(const std::string& server) {
        std::vector<std::string> ids;
        const Reply s = Server(server);
        for (const auto& v : s.Obj("server").at("volume_ids").as_array()) {
            ids.emplace_back(v.as_string());
        }
        return ids;
    }

    int64_t InUse(const std::string& project, const std::string& quota) {
        Reply r = Call(admin_, "GET", "/v1/projects/" + project + "/quotas");
        return r.Obj("quotas").at(quota).at("in_use").as_int64();
    }

    size_t Count(const std::string& token, const std::string& collection) {
        return Call(token, "GET", "/v1/" + collection).Items(collection).size();
    }

    // The types of the events at `path` (a resource's "/events", or "/v1/events?..."), oldest first.
    std::vector<std::string> EventTypes(const std::string& path) {
        std::vector<std::string> types;
        const std::string target = path.starts_with("/v1/events") ? path : path + "/events";
        for (const auto& e : Call(admin_, "GET", target).Items("events")) {
            types.emplace_back(StrOf(e, "type"));
        }
        return types;
    }
    // Waits until the events at `path` include `type` (an event is written just after what it
    // reports, in its own transaction); returns them.
    std::vector<std::string> WaitForEvent(const std::string& path, std::string_view type) {
        std::vector<std::string> types;
        RunUntil([&] { return Has(types = EventTypes(path), type); });
        EXPECT_TRUE(Has(types, type)) << path << ": no " << type << " in " << Join(types);
        return types;
    }
    std::vector<std::string> AlertTypes() {
        return EventTypes("/v1/events?resource_kind=alert&resource_id=evacuation");
    }

    // What the volume service holds (real_volume_): volume id -> the server it is attached to, ""
    // for none.
    std::map<std::string, std::string> VolumeAttachments() const {
        std::map<std::string, std::string> held;
        if (!volume_service_) {
            ADD_FAILURE() << "VolumeAttachments() needs real_volume_";
            return held;
        }
        const json::value inventory = json::parse(volume_service_->domain().Inventory());
        for (const auto& v : inventory.at("volumes").as_array()) {
            held[StrOf(v, "id")] = StrOf(v, "server_id");
        }
        return held;
    }

    // ---- hosts and their leases (the fake clock) ----

    std::string HostState(const std::string& host) {
        return Call(admin_, "GET", "/v1/hosts/" + host).Field("host", "state");
    }
    void Renew(const std::string& host) {
        ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/" + host + "/heartbeat", "{}").status, 200) << host;
    }
    // Moves the cloud's time on by `d`, the hosts of `renewing` renewing their leases as agents
    // do (three times per lease TTL, at least), the others silent.
    void AdvanceRenewing(Duration d, const std::vector<std::string>& renewing) {
        const Duration beat = options_.lease_ttl / 3;
        while (d > Duration::zero()) {
            for (const auto& h : renewing)
                Renew(h);
            const Duration step = std::min(d, beat);
            clock_.Advance(step);
            d -= step;
        }
    }

    const cogs::testing::TempDir dir_{"cogs-cloud-test"};  // outlives the store, whose file it holds
    runtime::FakeClock clock_;
    CloudOptions options_;                    // for the next Open()
    workflow::EngineOptions engine_options_;  // for the next Open()
    store::SqliteOptions store_options_;      // for the next Open(); path "": dir_/cogsd.db
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    std::map<std::string, std::unique_ptr<services::sim::SimService>> sims_;
    std::map<std::string, std::shared_ptr<Gate>> gates_;  // in front of sims_, as the engine calls them
    bool real_volume_ = false;                            // for the next Open(): see the top
    // For the next Open(): the store everything uses is wrap_store_(the SQLite store) (a test's seam
    // between the cloud and its store); before_cloud_ runs once the engine exists and before the
    // cloud listens to it (a listener it adds hears a workflow's end before the cloud settles it).
    std::function<std::unique_ptr<store::Store>(std::unique_ptr<store::Store>)> wrap_store_;
    std::function<void()> before_cloud_;
    std::unique_ptr<services::kit::DomainService> volume_service_;
    workflow::ServiceCatalog catalog_;
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<Cloud> cloud_;
    http::Handler handler_;
    std::string admin_;
};

}  // namespace cogs::cloud::testing
