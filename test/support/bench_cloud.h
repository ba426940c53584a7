// A control plane in one process for the benchmarks that measure what cogsd's io thread spends on a
// request (cogs/cloud: cloud_benchmark, openstack_benchmark): a SQLite store in a temp dir, seeded
// with records written straight into it (as a cloud grown to that size would have left them), then
// opened as cogsd starts — the registry with the shipped workflows (workflows/cloud), the engine
// (Recover), the Cloud (Load, Bootstrap) — and asked through Cloud::Handler(), admission,
// authentication, the router and the audit log included, as cogsd serves it.
//
// No service runs: the engine's catalog is empty, so a request that starts a workflow is answered
// but its steps never run. Nothing is started either (no Cloud::Start: no host monitor, healer or
// reconciler); what runs is what a request leaves on the io_context, run on the caller's thread.
//
// Life: construct; Seed() each record; Open(); Ask() / Send() / Token() as often as measured; Close()
// (or the destructor). Single-threaded: every call from the thread that made the object.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include "cogs/base/result.h"
#include "cogs/cloud/cloud.h"
#include "cogs/http/server.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"
#include "test/support/temp_dir.h"

namespace cogs::testing {

struct BenchCloudOptions {
    // The engine's owner and the temp dir's prefix ("cloud_benchmark").
    std::string name = "bench_cloud";
    // As cogsd's; `metrics`, when set, must outlive the BenchCloud.
    cloud::CloudOptions cloud{};
    // Sent, in this order, before Authorization with every Ask() and Token() (names lower-case),
    // e.g. {"host", "cloud.example:8780"} where answers hold absolute URLs.
    std::vector<std::pair<std::string, std::string>> headers{};
};

class BenchCloud {
public:
    using Headers = std::vector<std::pair<std::string, std::string>>;

    explicit BenchCloud(BenchCloudOptions options);
    ~BenchCloud();  // Close()
    BenchCloud(const BenchCloud&) = delete;
    BenchCloud& operator=(const BenchCloud&) = delete;

    // Before Open(): one record of `kind` for the store, `body` with its id, its project_id (unless
    // `project` is empty: a record of no project, like a host or a flavor) and created_at/updated_at
    // (one fixed time) set here. Kept in memory until Open() commits them all in one write group.
    void Seed(std::string kind, const std::string& id, const std::string& project, boost::json::object body);

    // Opens the store and commits the seeded records, then starts as cogsd does: registry (from the
    // store, then workflows/cloud), engine, Cloud, Engine::Recover, Cloud::Load (its time: load_s()),
    // Bootstrap (the admin token: admin()); then runs what that left on the io_context and reads the
    // resident set (rss_kib()). Errors: any of those steps' (a missing workflows/cloud among them).
    // Once.
    Status Open();

    // Tears down as cogsd stops: the handler, the Cloud, Engine::Shutdown, Store::Flush, then the
    // rest. The temp dir goes with the object. Idempotent; also after a failed Open().
    void Close();

    // One request as /v1's clients make it, answered: the options' headers, then Authorization:
    // Bearer `token`. After Open().
    http::Response Ask(const std::string& token, const std::string& method, const std::string& target,
                       const std::string& body = "");

    // One request with exactly `headers`, answered: runs the io_context on this thread until the
    // handler responds (a turn waits at most 5 s, then waits again: it never gives up), then what the
    // request left for later (the model's end of turn) before returning. After Open().
    http::Response Send(std::string method, std::string target, std::string body, Headers headers);

    // A token of `project` with `role` ("member", ...), minted by the admin (POST /v1/tokens): its
    // secret. kInternal with the answer when it is not 201.
    Result<std::string> Token(const std::string& project, const std::string& role);

    const std::string& admin() const { return admin_; }  // Bootstrap's token
    double load_s() const { return load_s_; }            // Cloud::Load's wall-clock seconds
    long rss_kib() const { return rss_kib_; }            // VmRSS at the end of Open(); -1 if unknown

private:
    const BenchCloudOptions options_;
    const TempDir dir_;
    boost::asio::io_context io_{1};
    std::vector<store::ResourceWrite> seeded_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    workflow::ServiceCatalog catalog_;  // empty: nothing runs a workflow here
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<cloud::Cloud> cloud_;
    http::Handler handler_;
    std::string admin_;
    double load_s_ = 0;
    long rss_kib_ = 0;
};

// The process's resident set (VmRSS, /proc/self/status) in KiB; -1 if unknown.
long RssKib();

}  // namespace cogs::testing
