// A local cloud for cross-process tests and benchmarks: `cogs dev` started as a child process on
// a temporary data directory with an ephemeral API port, plus a small synchronous API client.
//
// Everything is real: cogsd, cogs-network, cogs-volume and the compute agents run as processes on
// 127.0.0.1, exactly as a user gets them from `make run`. With DevOptions::store "postgres", cogsd
// runs as replicas (cogsd-1..N) on a private PostgreSQL cluster that `cogs dev` starts in
// <data dir>/postgres (cogs/cli/internal/dev.h); replicas() and postgres() say where everything is,
// for tests and chaos tools that kill a leader or the database.
//
// Threading: a DevCloud and its ApiClients are used from one thread (each call runs a private
// io_context until the answer).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/runtime/process.h"

namespace cogs::testing {

struct ApiReply {
    int status = 0;
    boost::json::value body;  // null if the body was empty or not JSON
    std::string text;
    std::string header_retry_after;
    std::string header_traceparent;
};

// The TLS files a test client uses for https URLs: the CA the server must chain to, and the
// certificate it presents (optional; the services of a `cogs dev` accept only cogsd's).
struct TestTls {
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
};
// What every ApiClient made afterwards without its own TestTls uses. DevCloud::Start sets its dev
// CA and cogsd's certificate (the test client reads the services' ledgers and sets their faults,
// which only cogsd may). Process-wide; tests set it from one thread.
void SetDefaultTestTls(TestTls tls);
const TestTls& DefaultTestTls();

// Speaks HTTP/1.1 (https for an https URL) + JSON to one endpoint with an optional bearer token.
class ApiClient {
public:
    ApiClient(std::string url, std::string token);
    // With `tls` instead of DefaultTestTls(): a client without a certificate, or with another one.
    ApiClient(std::string url, std::string token, TestTls tls);
    ~ApiClient();
    ApiClient(ApiClient&&) noexcept;
    // kUnavailable / kDeadlineExceeded when no answer came (any HTTP status is a reply).
    Result<ApiReply> Call(const std::string& method, const std::string& target, const std::string& body = "",
                          const std::vector<std::pair<std::string, std::string>>& headers = {},
                          Duration timeout = std::chrono::seconds(20));
    // Like Call, but a transport failure becomes status 0 (for terse test assertions).
    ApiReply Must(const std::string& method, const std::string& target, const std::string& body = "");
    const std::string& url() const { return url_; }
    const std::string& token() const { return token_; }

private:
    struct Impl;
    std::string url_;
    std::string token_;
    std::unique_ptr<Impl> impl_;
};

struct DevOptions {
    int hosts = 3;
    int boot_ms = 20;
    std::vector<std::string> extra_args;  // passed to `cogs dev`
    // "sqlite" (one cogsd, as always) or "postgres" (`cogs dev --store postgres --replicas N`).
    std::string store = "sqlite";
    int replicas = 0;            // 0: `cogs dev`'s default (1 sqlite, 3 postgres)
    bool postgres_fsync = true;  // false: --postgres-fsync=false (tests of semantics only)
};

struct DevProcess {
    std::string name;
    int pid = 0;
    std::string url;
    std::string log;
};

// The PostgreSQL server of a `cogs dev --store postgres` (dev.json's "postgres"). Its postmaster's
// pid is also the first line of <data_dir>/postmaster.pid; `cogs dev` restarts it if it dies.
struct DevPostgres {
    std::string dir;       // <cogs dev data dir>/postgres: the unix socket's directory
    std::string data_dir;  // dir/data
    int port = 0;
    int pid = 0;  // the postmaster's, as `cogs dev` last wrote it
    std::string log;
    std::string conninfo;  // libpq, database cogs
};

class DevCloud {
public:
    // Starts `cogs dev` (the sibling binary) on a fresh temporary directory and waits (up to 90 s)
    // until its dev.json appears. Errors carry the tail of its log.
    static Result<std::unique_ptr<DevCloud>> Start(DevOptions options);
    ~DevCloud();  // stops it (SIGINT, then SIGKILL after a grace) and removes the directory

    const std::string& api_url() const { return api_url_; }
    const std::string& admin_token() const { return admin_token_; }
    const std::string& data_dir() const { return dir_; }
    // <data dir>/pki (the private CA and every certificate) and its CA's file; "" with --no-tls.
    const std::string& ca_file() const { return ca_file_; }
    const std::vector<DevProcess>& processes() const { return processes_; }
    // cogsd's processes: the one "cogsd", or the replicas cogsd-1..N, in order (the first serves
    // api_url()); any of them serves the API.
    std::vector<DevProcess> replicas() const;
    // null unless started with store "postgres".
    const DevPostgres* postgres() const { return postgres_ ? &*postgres_ : nullptr; }
    // Reads dev.json again (`cogs dev` rewrites it when it restarts a child or PostgreSQL): the
    // pids of processes(), replicas() and postgres() are then current.
    Status Reload();
    // The URL of the first process whose name contains `part` ("network", "volume", "compute-2").
    std::string ServiceUrl(const std::string& part) const;
    // The token that process (the first whose name contains `part`) checks, as cogsd presents it:
    // cogs-network's and cogs-volume's own (D/network.token, D/volume.token), cogs-compute-<i>'s the
    // agent token of host-<i>'s enrollment (D/hosts/host-<i>/agent.token). "" for another.
    std::string ServiceToken(const std::string& part) const;

    ApiClient Admin() const { return ApiClient(api_url_, admin_token_); }
    ApiClient Service(const std::string& part) const {
        return ApiClient(ServiceUrl(part), ServiceToken(part));
    }

    // `cogs dev`'s own pid (a test may pause it, SIGSTOP, so that it restarts nothing for a while).
    int pid() const { return child_.pid(); }

    // SIGINT to `cogs dev`; its exit status (nullopt if it had to be killed).
    std::optional<int> Stop();

private:
    DevCloud() = default;
    // Takes api_url, the processes and postgres from dev.json's text.
    Status Parse(const std::string& text);
    runtime::Child child_;
    std::string dir_;
    std::string api_url_;
    std::string admin_token_file_;
    std::string ca_file_;
    std::string admin_token_;
    std::vector<DevProcess> processes_;
    std::optional<DevPostgres> postgres_;
    bool keep_dir_ = false;
};

// SIGSTOPs a process for as long as this object lives (or until Resume), then SIGCONTs it, so that a
// failed assertion never leaves it stopped: a paused `cogs dev` restarts nothing and would not stop
// its children when told to; a frozen cogsd replica keeps its port and answers nothing. A pid <= 0,
// or one that is gone, is left alone.
class Paused {
public:
    explicit Paused(int pid);
    ~Paused() { Resume(); }
    Paused(const Paused&) = delete;
    Paused& operator=(const Paused&) = delete;
    // Whether the SIGSTOP was delivered and the process is not resumed yet.
    bool stopped() const { return pid_ > 0; }
    void Resume();

private:
    int pid_ = 0;
};

// Reading answers in tests: the string field `key` of an object ("" if absent or not a string);
// the field itself (null if absent; by value, as the argument is often a temporary reply's body);
// an integer field (-1 if absent or not a number).
inline std::string S(const boost::json::value& v, std::string_view key) {
    if (!v.is_object()) return "";
    const auto* f = v.as_object().if_contains(key);
    return f != nullptr && f->is_string() ? std::string(f->as_string()) : "";
}
inline boost::json::value At(const boost::json::value& v, std::string_view key) {
    if (!v.is_object()) return nullptr;
    const auto* f = v.as_object().if_contains(key);
    return f != nullptr ? *f : boost::json::value(nullptr);
}
inline int64_t I(const boost::json::value& v, std::string_view key) {
    const boost::json::value f = At(v, key);
    return f.is_number() ? f.to_number<int64_t>() : -1;
}

// Runs a shell command; returns its exit code and what it printed (stdout and stderr).
std::pair<int, std::string> Shell(const std::string& command);

// Polls `probe` until it returns true or `timeout` passes; true if it did. For waiting on a state
// the system reaches by itself (a workflow ending), with a deadline instead of a fixed sleep.
bool WaitUntil(const std::function<bool()>& probe, Duration timeout,
               Duration every = std::chrono::milliseconds(20));

}  // namespace cogs::testing
