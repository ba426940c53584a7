#include "bench/create_storm_cloud.h"

#include <filesystem>

#include "bench/create_storm_util.h"
#include "cogs/http/server.h"
#include "cogs/pki/pki.h"
#include "cogs/runtime/files.h"

namespace cogs::bench::storm {
namespace {

using namespace std::chrono_literals;
using testing::ApiClient;
using testing::ApiReply;
using testing::DevCloud;

constexpr const char* kSimPrefix = "bench-sim-";
// Hosts per simulated agent process: its certificate names every one of them, and a peer's chain
// above 100 KB (OpenSSL's default limit) is refused; 1,000 names are ~20 KB.
constexpr int kHostsPerSim = 1000;

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

// The smallest prefix (at most /20) whose subnet holds `servers` addresses besides the gateway.
int SubnetPrefix(int servers) {
    int prefix = 20;
    while (prefix > 8 && (int64_t{1} << (32 - prefix)) - 3 < servers) {
        --prefix;
    }
    return prefix;
}

}  // namespace

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

std::unique_ptr<StormCloud> StormCloud::Start(const CreateStormOptions& o) {
    std::unique_ptr<StormCloud> cloud(new StormCloud());
    Progress("starting the local cloud: cogs dev with {} hosts, driver {}, boot {} ms, store {}", o.hosts,
             o.driver, o.boot_ms, o.store);
    testing::DevOptions dev_options{o.hosts, o.boot_ms, {}};
    if (o.driver != "sim") {
        dev_options.extra_args = {"--driver", o.driver};
    }
    if (!o.tls) {
        dev_options.extra_args.push_back("--no-tls");
    }
    dev_options.store = o.store;
    dev_options.replicas = o.replicas;
    auto started = DevCloud::Start(dev_options);
    if (!started) {
        Progress("cogs dev did not start: {}", started.error().ToString());
        return nullptr;
    }
    cloud->dev_ = std::move(*started);
    Progress("cogs dev up: {} (data in {})", cloud->dev_->api_url(), cloud->dev_->data_dir());
    for (int i = 1; i <= o.hosts; ++i) {
        cloud->hosts_.insert(fmt::format("host-{}", i));
    }
    if (o.sim_hosts > 0 && !cloud->StartSim(o)) {
        return nullptr;
    }
    return cloud;
}

StormCloud::~StormCloud() {
    for (auto& child : sim_children_) {
        if (child.pid() > 0) {
            child.Stop(5s);
        }
    }
}

void StormCloud::Stop() {
    for (auto& child : sim_children_) {
        child.Stop(5s);
    }
    dev_->Stop();
}

bool StormCloud::StartSim(const CreateStormOptions& o) {
    const std::string dir = dev_->data_dir();
    // Each sim host enrolled through the API: its own credentials in bench-creds/<host>/ (the
    // processes are given the directory), never the admin token.
    const std::string creds = dir + "/bench-creds";
    ApiClient admin = dev_->Admin();
    const bool tls = !dev_->ca_file().empty();
    const int processes = (o.sim_hosts + kHostsPerSim - 1) / kHostsPerSim;
    for (int k = 1; k <= processes; ++k) {
        const int first = (k - 1) * kHostsPerSim + 1;
        const int count = std::min(kHostsPerSim, o.sim_hosts - first + 1);
        const std::string prefix = fmt::format("{}{}-", kSimPrefix, k);
        SimAgent sim;
        std::vector<std::string> names;
        for (int i = 1; i <= count; ++i) {
            const std::string host = prefix + std::to_string(i);
            names.push_back(host);
            ApiReply r = admin.Must("POST", "/v1/hosts/" + host + "/enroll", "");
            if (r.status != 201) {
                Progress("enrolling {}: {} {}", host, r.status, r.text);
                return false;
            }
            const auto& e = r.body.at("enrollment").as_object();
            std::filesystem::create_directories(creds + "/" + host);
            for (const auto& [file, field] :
                 {std::pair{creds + "/" + host + "/host.token", "host_token"},
                  std::pair{creds + "/" + host + "/agent.token", "agent_token"}}) {
                if (auto st =
                        runtime::WriteFileAtomic(file, std::string(e.at(field).as_string()) + "\n", 0600);
                    !st) {
                    Progress("{}", st.error().ToString());
                    return false;
                }
            }
            if (i == 1) {  // what the checks present to this process (create_storm_checks.cc)
                sim.token = std::string(e.at("agent_token").as_string());
            }
        }
        const std::string name = fmt::format("bench-sim-compute-{}", k);
        const std::string port_file = dir + "/" + name + ".port";
        const std::string log = dir + "/" + name + ".log";
        std::vector<std::string> argv = {runtime::SiblingBinary("cogs-compute"),
                                         "--listen",
                                         "127.0.0.1:0",
                                         "--port-file",
                                         port_file,
                                         "--state",
                                         dir + "/" + name + ".db",
                                         "--credentials-dir",
                                         creds,
                                         "--hosts",
                                         std::to_string(count),
                                         "--host-prefix",
                                         prefix,
                                         "--az",
                                         "nova",
                                         "--boot-ms",
                                         std::to_string(o.boot_ms)};
        for (const auto& r : dev_->replicas()) {  // as `cogs dev`'s own agents: every replica's URL
            argv.insert(argv.end(), {"--control-url", r.url});
        }
        if (tls) {
            // One certificate naming every host the process serves (cogsd verifies an agent by the
            // host's name); no client certificate to cogsd: one that names a host could renew only
            // that host.
            const std::string pki = dir + "/pki";
            if (auto st =
                    pki::Issue(pki::CaFiles{dev_->ca_file(), pki + "/ca.key"}, pki + "/" + name + ".crt",
                               pki + "/" + name + ".key", name, names, {"127.0.0.1"}, std::chrono::hours(24));
                !st) {
                Progress("cannot issue the sim hosts' certificate: {}", st.error().ToString());
                return false;
            }
            argv.insert(argv.end(),
                        {"--tls-cert", pki + "/" + name + ".crt", "--tls-key", pki + "/" + name + ".key",
                         "--tls-client-ca", dev_->ca_file(), "--tls-ca", dev_->ca_file()});
        }
        auto child = runtime::Child::Spawn(argv, runtime::SpawnOptions{log});
        if (!child) {
            Progress("cannot start cogs-compute: {}", child.error().ToString());
            return false;
        }
        sim_children_.push_back(std::move(*child));
        auto port = runtime::WaitForPortFile(port_file, SteadyClock::now() + 30s, &sim_children_.back());
        if (!port) {
            Progress("cogs-compute --hosts {} did not start: {}\n{}", count, port.error().ToString(),
                     runtime::TailFile(log, 20));
            return false;
        }
        sim.url = fmt::format("{}://127.0.0.1:{}", tls ? "https" : "http", *port);
        sim.pid = sim_children_.back().pid();
        hosts_.insert(names.begin(), names.end());
        Progress("cogs-compute with {} hosts ({}1..{}) on {} (pid {}, log {})", count, prefix, count, sim.url,
                 sim.pid, log);
        sims_.push_back(std::move(sim));
    }
    return true;
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
    s.subnet_id = S(At(sn.body, "subnet"), "id");
    if (!WaitStatus(member, "/v1/subnets/" + s.subnet_id, "subnet", "ACTIVE")) {
        return std::nullopt;
    }
    Progress("project {}, flavor bench.tiny, network {} with subnet {}: ready", s.project_id, s.network_id,
             cidr);
    return s;
}

bool TearDown(const DevCloud& dev, const Setup& setup) {
    ApiClient member(dev.api_url(), setup.member_token);
    for (const std::string path : {"/v1/subnets/" + setup.subnet_id, "/v1/networks/" + setup.network_id}) {
        ApiReply r = member.Must("DELETE", path);
        if (r.status != 202 && r.status != 404) {
            Progress("DELETE {}: {} {}", path, r.status, r.text);
            return false;
        }
        if (!testing::WaitUntil([&] { return member.Must("GET", path).status == 404; }, 60s, 50ms)) {
            Progress("{} is still there 60 s after its DELETE", path);
            return false;
        }
    }
    return true;
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

}  // namespace cogs::bench::storm
