#include "test/support/dev_cloud.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <boost/asio/io_context.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cogs/http/client.h"
#include "cogs/runtime/files.h"

namespace cogs::testing {

namespace json = boost::json;

namespace {

std::pair<std::string, uint16_t> HostPort(const std::string& url) {
    std::string s = url.starts_with("http://")    ? url.substr(7)
                    : url.starts_with("https://") ? url.substr(8)
                                                  : url;
    auto colon = s.rfind(':');
    if (colon == std::string::npos) {
        return {s, 80};
    }
    return {s.substr(0, colon), static_cast<uint16_t>(std::stoi(s.substr(colon + 1)))};
}

TestTls& DefaultTls() {
    static TestTls tls;
    return tls;
}

std::string Str(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}
int Int(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v != nullptr && v->is_number() ? static_cast<int>(v->to_number<int64_t>()) : 0;
}

bool Alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// The postmaster named by <data_dir>/postmaster.pid (its first line), or 0.
pid_t PostmasterPid(const std::string& data_dir) {
    std::ifstream in(data_dir + "/postmaster.pid");
    long pid = 0;
    return in >> pid ? static_cast<pid_t>(pid) : 0;
}

}  // namespace

void SetDefaultTestTls(TestTls tls) { DefaultTls() = std::move(tls); }
const TestTls& DefaultTestTls() { return DefaultTls(); }

struct ApiClient::Impl {
    boost::asio::io_context io;
    std::unique_ptr<http::Client> client;
    std::optional<Error> tls_error;  // an https URL whose TLS files cannot be loaded
};

ApiClient::ApiClient(std::string url, std::string token)
    : ApiClient(std::move(url), std::move(token), DefaultTls()) {}

ApiClient::ApiClient(std::string url, std::string token, TestTls tls)
    : url_(std::move(url)), token_(std::move(token)), impl_(std::make_unique<Impl>()) {
    auto [host, port] = HostPort(url_);
    http::ClientOptions o{host, port, 4};
    if (url_.starts_with("https://")) {
        auto context = http::MakeClientTls(http::TlsFiles{tls.cert_file, tls.key_file, tls.ca_file});
        if (context) {
            o.tls = *context;
        } else {
            impl_->tls_error = context.error();
        }
    }
    impl_->client = http::MakeClient(impl_->io, o);
}

ApiClient::~ApiClient() = default;
ApiClient::ApiClient(ApiClient&&) noexcept = default;

Result<ApiReply> ApiClient::Call(const std::string& method, const std::string& target,
                                 const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 Duration timeout) {
    if (impl_->tls_error) {
        return MakeError(*impl_->tls_error);
    }
    http::Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    if (!token_.empty()) {
        req.headers.emplace_back("authorization", "Bearer " + token_);
    }
    if (!body.empty()) {
        req.headers.emplace_back("content-type", "application/json");
    }
    for (const auto& h : headers) {
        req.headers.push_back(h);
    }
    std::optional<Result<http::Response>> got;
    impl_->client->Send(std::move(req), SteadyClock::now() + timeout,
                        [&got](Result<http::Response> r) { got = std::move(r); });
    impl_->io.restart();
    while (!got && impl_->io.run_one() > 0) {
    }
    if (!got) {
        return MakeError(ErrorCode::kInternal, "the client never answered");
    }
    if (!*got) {
        return MakeError(got->error());
    }
    ApiReply reply;
    reply.status = (*got)->status;
    reply.text = (*got)->body;
    reply.header_retry_after = (*got)->Header("retry-after");
    reply.header_traceparent = (*got)->Header("traceparent");
    boost::system::error_code ec;
    if (!reply.text.empty()) {
        reply.body = json::parse(reply.text, ec);
        if (ec) {
            reply.body = nullptr;
        }
    }
    return reply;
}

ApiReply ApiClient::Must(const std::string& method, const std::string& target, const std::string& body) {
    auto r = Call(method, target, body);
    if (!r) {
        ApiReply failed;
        failed.text = r.error().ToString();
        return failed;
    }
    return std::move(*r);
}

Paused::Paused(int pid) {
    if (pid > 0 && ::kill(pid, SIGSTOP) == 0) {
        pid_ = pid;
    }
}

void Paused::Resume() {
    if (pid_ > 0) {
        ::kill(pid_, SIGCONT);
        pid_ = 0;
    }
}

std::pair<int, std::string> Shell(const std::string& command) {
    std::string out;
    FILE* p = popen((command + " 2>&1").c_str(), "r");
    if (p == nullptr) return {-1, "popen failed"};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool WaitUntil(const std::function<bool()>& probe, Duration timeout, Duration every) {
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
        if (probe()) {
            return true;
        }
        if (SteadyClock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(every);
    }
}

Result<std::unique_ptr<DevCloud>> DevCloud::Start(DevOptions options) {
    std::unique_ptr<DevCloud> dev(new DevCloud());
    char tmpl[] = "/tmp/cogs-dev-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
        return MakeError(ErrorCode::kUnavailable, "mkdtemp failed");
    }
    dev->dir_ = tmpl;
    dev->keep_dir_ = std::getenv("COGS_KEEP_TEST_DIRS") != nullptr;
    std::vector<std::string> argv = {runtime::SiblingBinary("cogs"),
                                     "dev",
                                     "--data-dir",
                                     dev->dir_,
                                     "--port",
                                     "0",
                                     "--hosts",
                                     std::to_string(options.hosts),
                                     "--boot-ms",
                                     std::to_string(options.boot_ms)};
    if (options.store != "sqlite") {
        argv.insert(argv.end(), {"--store", options.store});
        if (!options.postgres_fsync) {
            argv.push_back("--postgres-fsync=false");
        }
        // mkdtemp makes the directory 0700; as root the server runs as the postgres user, which must
        // be able to reach <dir>/postgres (pg::Cluster).
        ::chmod(dev->dir_.c_str(), 0711);
    }
    if (options.replicas > 0) {
        argv.insert(argv.end(), {"--replicas", std::to_string(options.replicas)});
    }
    argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
    const std::string log = dev->dir_ + "/cogs-dev.log";
    auto child = runtime::Child::Spawn(argv, runtime::SpawnOptions{log});
    if (!child) {
        return MakeError(child.error());
    }
    dev->child_ = std::move(*child);
    const std::string dev_json = dev->dir_ + "/dev.json";
    std::string text;
    const bool up = WaitUntil(
        [&] {
            auto t = runtime::ReadFile(dev_json);
            if (t) {
                text = *t;
                return true;
            }
            return !dev->child_.Running();
        },
        std::chrono::seconds(90), std::chrono::milliseconds(50));
    if (!up || text.empty()) {
        return MakeError(ErrorCode::kUnavailable, "cogs dev did not come up:\n" + runtime::TailFile(log, 40));
    }
    if (auto parsed = dev->Parse(text); !parsed) {
        return MakeError(parsed.error());
    }
    if (!dev->ca_file_.empty()) {
        const std::string pki = dev->dir_ + "/pki";
        SetDefaultTestTls(TestTls{dev->ca_file_, pki + "/cogsd.crt", pki + "/cogsd.key"});
    }
    auto token = runtime::ReadTokenFile(dev->admin_token_file_);
    if (!token) {
        return MakeError(token.error());
    }
    dev->admin_token_ = *token;
    return dev;
}

Status DevCloud::Parse(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
        return MakeError(ErrorCode::kInternal, "dev.json is not JSON: " + text);
    }
    const auto& o = v.as_object();
    api_url_ = Str(o, "api_url");
    admin_token_file_ = Str(o, "admin_token_file");
    ca_file_ = Str(o, "ca_file");
    std::vector<DevProcess> processes;
    if (const auto* list = o.if_contains("processes"); list != nullptr && list->is_array()) {
        for (const auto& p : list->as_array()) {
            if (p.is_object()) {
                const auto& po = p.as_object();
                processes.push_back(
                    DevProcess{Str(po, "name"), Int(po, "pid"), Str(po, "url"), Str(po, "log")});
            }
        }
    }
    processes_ = std::move(processes);
    if (const auto* pg = o.if_contains("postgres"); pg != nullptr && pg->is_object()) {
        const auto& po = pg->as_object();
        postgres_ = DevPostgres{Str(po, "dir"), Str(po, "data_dir"), Int(po, "port"),
                                Int(po, "pid"), Str(po, "log"),      Str(po, "conninfo")};
    }
    return Ok();
}

Status DevCloud::Reload() {
    auto text = runtime::ReadFile(dir_ + "/dev.json");
    if (!text) {
        return MakeError(text.error());
    }
    return Parse(*text);
}

std::vector<DevProcess> DevCloud::replicas() const {
    std::vector<DevProcess> out;
    for (const auto& p : processes_) {
        if (p.name == "cogsd" || p.name.starts_with("cogsd-")) {
            out.push_back(p);
        }
    }
    return out;
}

std::string DevCloud::ServiceUrl(const std::string& part) const {
    for (const auto& p : processes_) {
        if (p.name.find(part) != std::string::npos) {
            return p.url;
        }
    }
    return "";
}

std::string DevCloud::ServiceToken(const std::string& part) const {
    for (const auto& p : processes_) {
        if (p.name.find(part) == std::string::npos) continue;
        std::string file;
        if (p.name == "cogs-network") {
            file = dir_ + "/network.token";
        } else if (p.name == "cogs-volume") {
            file = dir_ + "/volume.token";
        } else if (p.name.starts_with("cogs-compute-")) {
            file =
                dir_ + "/hosts/host-" + p.name.substr(std::string("cogs-compute-").size()) + "/agent.token";
        }
        auto token = file.empty() ? Result<std::string>(std::string()) : runtime::ReadTokenFile(file);
        return token ? *token : "";
    }
    return "";
}

std::optional<int> DevCloud::Stop() {
    if (child_.pid() <= 0) {
        return child_.exit_status();
    }
    child_.Signal(SIGINT);
    auto status = child_.Wait(std::chrono::seconds(20));
    if (!status) {
        child_.Stop(std::chrono::seconds(1));
    }
    return status;
}

DevCloud::~DevCloud() {
    Stop();
    // `cogs dev` stops its PostgreSQL; if it was killed instead, the server would outlive the test
    // (it runs in its own process group): stop it here, as `cogs dev` would have.
    const std::string pg_data = dir_.empty() ? "" : dir_ + "/postgres/data";
    if (const pid_t pm = pg_data.empty() ? 0 : PostmasterPid(pg_data); Alive(pm)) {
        ::kill(pm, SIGINT);  // fast shutdown
        if (!WaitUntil([&] { return !Alive(pm); }, std::chrono::seconds(10), std::chrono::milliseconds(20))) {
            ::kill(pm, SIGKILL);
        }
    }
    if (!keep_dir_ && !dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
}

}  // namespace cogs::testing
