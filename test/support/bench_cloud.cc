#include "test/support/bench_cloud.h"

#include <chrono>
#include <fstream>
#include <future>
#include <optional>

#include "cogs/base/paths.h"
#include "cogs/workflow/definition.h"

namespace cogs::testing {

namespace json = boost::json;

namespace {
constexpr const char* kCreatedAt = "2026-01-01T00:00:00Z";  // every seeded record's: read by nobody here
}  // namespace

long RssKib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    }
    return -1;
}

BenchCloud::BenchCloud(BenchCloudOptions options)
    : options_(std::move(options)), dir_("cogs-" + options_.name) {}

BenchCloud::~BenchCloud() { Close(); }

void BenchCloud::Seed(std::string kind, const std::string& id, const std::string& project,
                      json::object body) {
    body["id"] = id;
    if (!project.empty()) body["project_id"] = project;
    body["created_at"] = kCreatedAt;
    body["updated_at"] = kCreatedAt;
    seeded_.push_back({std::move(kind), id, project, json::serialize(body), false});
}

Status BenchCloud::Open() {
    store::SqliteOptions so;
    so.path = dir_ / "cogsd.db";
    COGS_ASSIGN_OR_RETURN(store_, store::OpenSqliteStore(so));
    {
        store::WriteGroup g;
        g.resources = std::move(seeded_);
        seeded_.clear();
        // Commit answers on the store's own thread; nothing runs io_ yet.
        std::promise<Status> done;
        auto f = done.get_future();
        store_->Commit(std::move(g), [&done](Status st) { done.set_value(std::move(st)); });
        COGS_TRY(f.get());
    }
    registry_ = std::make_unique<workflow::Registry>(store_.get());
    COGS_TRY(registry_->LoadFromStore());
    COGS_ASSIGN_OR_RETURN(auto defs,
                          workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud")));
    COGS_TRY(registry_->RegisterAll(std::move(defs)));
    workflow::EngineOptions eo;
    eo.owner = options_.name;
    engine_ = std::make_unique<workflow::Engine>(io_, *store_, *registry_, catalog_, eo);
    cloud_ = std::make_unique<cloud::Cloud>(io_, *store_, *engine_, *registry_, options_.cloud);
    COGS_TRY(engine_->Recover());
    const auto started = std::chrono::steady_clock::now();
    COGS_TRY(cloud_->Load());
    load_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    COGS_ASSIGN_OR_RETURN(admin_, cloud_->Bootstrap());
    handler_ = cloud_->Handler();
    io_.poll();
    rss_kib_ = RssKib();
    return Ok();
}

void BenchCloud::Close() {
    handler_ = nullptr;
    cloud_.reset();
    if (engine_) engine_->Shutdown();
    if (store_) store_->Flush();
    engine_.reset();
    registry_.reset();
    store_.reset();
}

http::Response BenchCloud::Ask(const std::string& token, const std::string& method, const std::string& target,
                               const std::string& body) {
    Headers headers = options_.headers;
    headers.emplace_back("authorization", "Bearer " + token);
    return Send(method, target, body, std::move(headers));
}

http::Response BenchCloud::Send(std::string method, std::string target, std::string body, Headers headers) {
    http::Request req;
    req.method = std::move(method);
    req.target = std::move(target);
    req.body = std::move(body);
    req.headers = std::move(headers);
    std::optional<http::Response> got;
    handler_(std::move(req), [&got](http::Response r) { got = std::move(r); });
    while (!got) {
        io_.restart();
        io_.run_one_for(std::chrono::seconds(5));
    }
    io_.poll();  // what the request left for later (none but the model's end of turn)
    return std::move(*got);
}

Result<std::string> BenchCloud::Token(const std::string& project, const std::string& role) {
    const auto r =
        Ask(admin_, "POST", "/v1/tokens", R"({"project_id":")" + project + R"(","role":")" + role + R"("})");
    if (r.status != 201) return MakeError(ErrorCode::kInternal, "token: " + r.body);
    return std::string(json::parse(r.body).at("token").at("secret").as_string().c_str());
}

}  // namespace cogs::testing
