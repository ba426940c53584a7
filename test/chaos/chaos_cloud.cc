#include "test/chaos/chaos_cloud.h"

#include <signal.h>

#include <filesystem>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/runtime/files.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {}  // namespace

// "--name value" pairs of `flags`, for argv.
std::vector<std::string> FlagArgs(const std::map<std::string, std::string>& flags) {
    std::vector<std::string> argv;
    for (const auto& [flag, value] : flags) {
        argv.push_back(flag);
        argv.push_back(value);
    }
    return argv;
}

std::string ChaosCloud::ProcessUrl(int proc) const {
    return fmt::format("http://127.0.0.1:{}", procs_.at(proc)->port);
}
std::string ChaosCloud::ProcessName(int proc) const { return procs_.at(proc)->name; }

std::string ChaosCloud::ReplicaId(int replica) const { return procs_.at(ReplicaProc(replica))->name; }

int ChaosCloud::ReplicaIndex(const std::string& id) const {
    for (int r = 0; r < replicas(); ++r) {
        if (ReplicaId(r) == id) {
            return r;
        }
    }
    return -1;
}

std::vector<std::string> ChaosCloud::api_urls() const {
    std::vector<std::string> out;
    for (int r = 0; r < replicas(); ++r) {
        out.push_back(ProcessUrl(ReplicaProc(r)));
    }
    return out;
}

RelayHub::Stats ChaosCloud::client_relay_stats() {
    RelayHub::Stats sum;
    for (int relay : client_relay_) {
        const RelayHub::Stats s = relays_->stats(relay);
        sum.forwarded += s.forwarded;
        sum.blackholed += s.blackholed;
        sum.dropped += s.dropped;
        sum.replies_lost += s.replies_lost;
    }
    return sum;
}
std::string ChaosCloud::LogPath(int proc) const { return procs_.at(proc)->log; }

Status ChaosCloud::StartProc(Proc& p) {
    // Children stay in the run's process group: a Ctrl-C of the run stops them too.
    COGS_TRY(p.Spawn(p.port, /*new_process_group=*/false));
    return AwaitPort(p);
}

Status ChaosCloud::AwaitPort(Proc& p) {
    auto port = runtime::WaitForPortFile(
        p.port_file, SteadyClock::now() + std::chrono::seconds(options_.start_timeout_s), &p.child);
    if (!port) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("{} did not start: {}\n---- {} ----\n{}", p.name, port.error().message,
                                     p.log, runtime::TailFile(p.log, 30)));
    }
    p.port = *port;
    return {};
}

Result<std::unique_ptr<ChaosCloud>> ChaosCloud::Start(const ChaosCloudOptions& o) {
    std::unique_ptr<ChaosCloud> c(new ChaosCloud());
    c->options_ = o;
    const fs::path dir = fs::absolute(o.dir);
    std::error_code ec;
    fs::create_directories(dir / "logs", ec);
    fs::create_directories(dir / "run", ec);
    if (ec) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    }
    auto D = [dir](const std::string& name) { return (dir / name).string(); };
    // Each service its own token, the agents' key (each agent's own credentials come from its
    // host's enrollment, below): the credentials of `cogs dev`.
    c->network_token_ = RandomHex(32);
    c->volume_token_ = RandomHex(32);
    for (const auto& [file, secret] :
         {std::pair{D("network.token"), c->network_token_}, std::pair{D("volume.token"), c->volume_token_},
          std::pair{D("agent.key"), RandomHex(32)}}) {
        if (auto s = runtime::WriteFileAtomic(file, secret + "\n", 0600); !s) {
            return MakeError(s.error());
        }
    }
    c->relays_ = std::make_unique<RelayHub>();
    auto listen = [](uint16_t port) { return fmt::format("127.0.0.1:{}", port); };
    auto make = [&](std::string name, std::string binary,
                    std::function<std::vector<std::string>(uint16_t)> args) -> Proc& {
        c->procs_.push_back(std::make_unique<Proc>(std::move(name), std::move(binary), dir, std::move(args)));
        return *c->procs_.back();
    };
    // The network and volume services start alike: a state file and a token of their own, and the
    // test routes (the fault injection the suite drives).
    for (const std::string service : {"network", "volume"}) {
        const std::string name = "cogs-" + service;
        Proc& p = make(name, name, [=](uint16_t port) {
            return std::vector<std::string>{
                "--listen",      listen(port),       "--port-file",  D("run/" + name + ".port"),
                "--state",       D(service + ".db"), "--token-file", D(service + ".token"),
                "--test-routes", "--log-level",      "warn"};
        });
        if (auto s = c->StartProc(p); !s) {
            return MakeError(s.error());
        }
    }
    const std::vector<std::string> cogsd_flags = FlagArgs(o.cogsd_flags);
    const std::string network_url = c->ProcessUrl(kNetwork);
    const std::string volume_url = c->ProcessUrl(kVolume);
    std::string conninfo;
    if (o.replicas > 0) {
        // fsync as in production: a chaos run that restarts PostgreSQL must not lean on the page cache.
        pg::ClusterOptions po;
        po.dir = D("postgres");
        po.fsync = o.postgres_fsync;
        auto pg = pg::Cluster::Start(po, std::chrono::seconds(o.start_timeout_s));
        if (!pg) {
            return MakeError(ErrorCode::kUnavailable, "PostgreSQL did not start: " + pg.error().message);
        }
        c->pg_ = std::move(*pg);
        conninfo = c->pg_->ConnInfo();
    }
    // cogsd, or its replicas: the first at kCogsd, the others after the agents (below), all started
    // now (the agents need their ports).
    std::vector<std::unique_ptr<Proc>> replicas;
    for (int r = 0; r < std::max(1, o.replicas); ++r) {
        const std::string name = o.replicas > 0 ? fmt::format("cogsd-{}", r + 1) : "cogsd";
        replicas.push_back(std::make_unique<Proc>(name, "cogsd", dir, [=](uint16_t port) {
            std::vector<std::string> argv{"--listen",
                                          listen(port),
                                          "--port-file",
                                          D("run/" + name + ".port"),
                                          "--data-dir",
                                          D(name),
                                          "--network-url",
                                          network_url,
                                          "--volume-url",
                                          volume_url,
                                          "--network-token-file",
                                          D("network.token"),
                                          "--volume-token-file",
                                          D("volume.token"),
                                          "--agent-key-file",
                                          D("agent.key"),
                                          "--bootstrap-token-file",
                                          D("admin.token")};
            if (!conninfo.empty()) {
                // --advertise-url: cogsd's default, http://127.0.0.1:<the port it bound>, which every
                // restart asks for again.
                argv.insert(argv.end(), {"--store", conninfo, "--replica-id", name});
            }
            argv.insert(argv.end(), cogsd_flags.begin(), cogsd_flags.end());
            return argv;
        }));
        if (auto s = c->StartProc(*replicas.back()); !s) {
            return MakeError(s.error());
        }
    }
    c->api_url_ = fmt::format("http://127.0.0.1:{}", replicas.front()->port);
    for (const auto& r : replicas) {
        c->client_relay_.push_back(c->relays_->Open(r->port));
        c->relays_->SetReplyDropRate(c->client_relay_.back(), o.reply_drop_rate,
                                     o.seed + c->client_relay_.size() - 1);
        c->client_urls_.push_back(
            fmt::format("http://127.0.0.1:{}", c->relays_->ListenPort(c->client_relay_.back())));
    }
    const std::string first_log = replicas.front()->log;
    const bool token = WaitUntil([&] { return runtime::ReadTokenFile(D("admin.token")).has_value(); },
                                 std::chrono::seconds(o.start_timeout_s), 20ms);
    if (!token) {
        return MakeError(ErrorCode::kUnavailable,
                         "cogsd did not write admin.token:\n" + runtime::TailFile(first_log, 30));
    }
    c->admin_token_ = *runtime::ReadTokenFile(D("admin.token"));
    std::vector<uint16_t> replica_ports;
    for (const auto& r : replicas) {
        replica_ports.push_back(r->port);
    }
    c->replica_proc_.push_back(kCogsd);
    c->procs_.push_back(std::move(replicas.front()));

    const std::vector<std::string> agent_flags = FlagArgs(o.agent_flags);
    if (o.hosts_per_agent < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "hosts_per_agent must be at least 1");
    }
    const bool grouped = o.hosts_per_agent > 1;
    for (int i = 0; i < o.hosts; ++i) {
        // The host's credentials, from its enrollment (a follower forwards to the leader, once there is one).
        const std::string creds = D("hosts/" + c->HostNameOf(i));
        std::string enroll_error;
        const bool enrolled = WaitUntil(
            [&] {
                ApiClient api(c->api_url_, c->admin_token_);
                auto r = api.Call("POST", "/v1/hosts/" + c->HostNameOf(i) + "/enroll", "", {}, 5s);
                if (!r || r->status != 201) {
                    enroll_error = r ? r->text : r.error().ToString();
                    return false;
                }
                const std::string host_token = Str(r->body.at("enrollment").as_object(), "host_token");
                const std::string agent_token = Str(r->body.at("enrollment").as_object(), "agent_token");
                std::error_code dir_ec;
                fs::create_directories(creds, dir_ec);
                if (i % o.hosts_per_agent == 0) {
                    c->agent_tokens_.push_back(agent_token);  // any of its hosts' is the agent's
                }
                return runtime::WriteFileAtomic(creds + "/host.token", host_token + "\n", 0600) &&
                       runtime::WriteFileAtomic(creds + "/agent.token", agent_token + "\n", 0600);
            },
            std::chrono::seconds(o.start_timeout_s), 50ms);
        if (!enrolled) {
            return MakeError(ErrorCode::kUnavailable, "enrolling " + c->HostNameOf(i) + ": " + enroll_error);
        }
        if ((i + 1) % o.hosts_per_agent != 0 && i + 1 < o.hosts) {
            continue;  // its agent starts once every host of its group is enrolled
        }
        const int a = c->AgentOf(i);
        const int served = i + 1 - a * o.hosts_per_agent;
        // Relay A per replica: every replica's is a --control-url (the agent tries them in turn).
        std::vector<std::string> control_urls;
        c->control_relay_.emplace_back();
        for (uint16_t port : replica_ports) {
            c->control_relay_[a].push_back(c->relays_->Open(port));
            control_urls.push_back(
                fmt::format("http://127.0.0.1:{}", c->relays_->ListenPort(c->control_relay_[a].back())));
        }
        c->agent_relay_.push_back(c->relays_->Open(0));  // the agent's port is known once it listens
        c->partitioned_.push_back(false);
        const std::string advertise_url =
            fmt::format("http://127.0.0.1:{}", c->relays_->ListenPort(c->agent_relay_[a]));
        const std::string name = fmt::format("cogs-compute-{}", a + 1);
        // One host with its own credentials, as `cogs dev` starts it; or `served` hosts, each with
        // its own (--credentials-dir holds every enrolled host's).
        const std::vector<std::string> identity =
            grouped ? std::vector<std::string>{"--hosts",           std::to_string(served),
                                               "--host-prefix",     fmt::format("host-{}-", a + 1),
                                               "--credentials-dir", D("hosts")}
                    : std::vector<std::string>{"--token-file", creds + "/agent.token", "--host",
                                               HostName(i),    "--control-token-file", creds + "/host.token"};
        make(name, "cogs-compute", [=](uint16_t port) {
            std::vector<std::string> argv{"--listen",
                                          listen(port),
                                          "--port-file",
                                          D("run/" + name + ".port"),
                                          "--state",
                                          D(fmt::format("compute-{}.db", a + 1)),
                                          "--test-routes",
                                          "--az",
                                          "nova",
                                          "--vcpus",
                                          std::to_string(o.agent_vcpus),
                                          "--ram-mb",
                                          std::to_string(o.agent_ram_mb),
                                          "--advertise-url",
                                          advertise_url,
                                          "--boot-ms",
                                          std::to_string(o.boot_ms),
                                          "--log-level",
                                          "info"};
            for (const std::string& u : control_urls) {
                argv.insert(argv.end(), {"--control-url", u});
            }
            argv.insert(argv.end(), identity.begin(), identity.end());
            argv.insert(argv.end(), agent_flags.begin(), agent_flags.end());
            return argv;
        });
        if (auto s = c->StartProc(*c->procs_.back()); !s) {
            return MakeError(s.error());
        }
        c->relays_->SetTarget(c->agent_relay_[a], c->procs_.back()->port);
    }
    for (size_t r = 1; r < replicas.size(); ++r) {
        c->replica_proc_.push_back(static_cast<int>(c->procs_.size()));
        c->procs_.push_back(std::move(replicas[r]));
    }
    c->frozen_.assign(c->procs_.size(), false);
    ApiClient api(c->api_url_, c->admin_token_);  // a follower forwards to the leader
    std::string last;
    const bool up = WaitUntil(
        [&] {
            auto r = api.Call("GET", "/v1/hosts", "", {}, 5s);
            if (!r || r->status != 200 || !r->body.is_object()) {
                last = r ? r->text : r.error().ToString();
                return false;
            }
            std::set<std::string> up_hosts;
            for (const auto& h : r->body.as_object().at("hosts").as_array()) {
                const auto& ho = h.as_object();
                if (ho.contains("state") && ho.at("state").is_string() &&
                    ho.at("state").as_string() == "up") {
                    up_hosts.insert(json::value_to<std::string>(ho.at("name")));
                }
            }
            last = fmt::format("{} of {} hosts up", up_hosts.size(), o.hosts);
            return static_cast<int>(up_hosts.size()) >= o.hosts;
        },
        std::chrono::seconds(o.start_timeout_s), 100ms);
    if (!up) {
        return MakeError(ErrorCode::kUnavailable, "the compute hosts did not come up: " + last + "\n" +
                                                      runtime::TailFile(c->procs_.at(kAgent)->log, 20));
    }
    return c;
}

ChaosCloud::~ChaosCloud() { Stop(); }

void ChaosCloud::Kill(int proc) {
    Proc& p = *procs_.at(proc);
    if (p.child.pid() > 0) {
        p.child.Signal(SIGKILL);
        p.child.Wait();
    }
    frozen_.at(proc) = false;
}

void ChaosCloud::Kill(const std::vector<int>& procs) {
    for (int proc : procs) {
        if (procs_.at(proc)->child.pid() > 0) {
            procs_[proc]->child.Signal(SIGKILL);
        }
    }
    for (int proc : procs) {
        Kill(proc);  // reaps it
    }
}

void ChaosCloud::Freeze(int proc) {
    if (!frozen_.at(proc) && procs_.at(proc)->child.Running()) {
        procs_[proc]->child.Signal(SIGSTOP);
        frozen_[proc] = true;
    }
}

void ChaosCloud::Thaw(int proc) {
    if (frozen_.at(proc)) {
        procs_[proc]->child.Signal(SIGCONT);
        frozen_[proc] = false;
    }
}

bool ChaosCloud::Running(int proc) { return procs_.at(proc)->child.Running(); }

std::optional<int> ChaosCloud::ExitStatus(int proc) const { return procs_.at(proc)->child.exit_status(); }

void ChaosCloud::KillPostgres() {
    if (pg_ != nullptr) {
        pg_->Kill();
    }
}

Status ChaosCloud::StopPostgres(Duration grace) { return pg_ != nullptr ? pg_->Stop(grace) : Status{}; }

Status ChaosCloud::RestartPostgres() {
    if (pg_ == nullptr || pg_->Running()) {
        return {};
    }
    return pg_->Restart(std::chrono::seconds(options_.start_timeout_s));
}

bool ChaosCloud::PostgresRunning() { return pg_ == nullptr || pg_->Running(); }

Status ChaosCloud::Restart(int proc) {
    Proc& p = *procs_.at(proc);
    if (p.child.Running()) {
        return {};
    }
    return StartProc(p);
}

void ChaosCloud::SetPartitioned(int host, bool partitioned) {
    for (int relay : control_relay_.at(host)) {
        relays_->SetPartitioned(relay, partitioned);
    }
    relays_->SetPartitioned(agent_relay_.at(host), partitioned);
    partitioned_.at(host) = partitioned;
}

Status ChaosCloud::RestoreAll() {
    Status out = RestartPostgres();
    for (size_t i = 0; i < procs_.size(); ++i) {
        Thaw(static_cast<int>(i));
        if (auto s = Restart(static_cast<int>(i)); !s && out) {
            out = s;
        }
    }
    for (int a = 0; a < agents(); ++a) {
        SetPartitioned(a, false);
    }
    return out;
}

void ChaosCloud::Stop() {
    for (size_t i = 0; i < frozen_.size(); ++i) {
        Thaw(static_cast<int>(i));  // a stopped process would not act on SIGTERM
    }
    // In reverse order of the handles (replicas 2..N, the agents, cogsd or its first replica, the
    // services), then the replicas' database.
    for (auto it = procs_.rbegin(); it != procs_.rend(); ++it) {
        if ((*it)->child.pid() > 0) {
            (*it)->child.Stop(5s);
        }
    }
    if (pg_ != nullptr) {
        (void)pg_->Stop(10s);
    }
}

std::string ChaosCloud::HostNameOf(int host) const {
    if (options_.hosts_per_agent <= 1) {
        return HostName(host);
    }
    return fmt::format("host-{}-{}", AgentOf(host) + 1, host % options_.hosts_per_agent + 1);
}

std::string ChaosCloud::ServiceToken(int proc) const {
    if (proc == kNetwork) return network_token_;
    if (proc == kVolume) return volume_token_;
    const int host = proc - kAgent;
    return host >= 0 && host < static_cast<int>(agent_tokens_.size()) ? agent_tokens_[host] : "";
}

CloudEndpoints Endpoints(const ChaosCloud& cloud) {
    CloudEndpoints e;
    e.api_urls = cloud.api_urls();
    e.admin_token = cloud.admin_token();
    e.network_token = cloud.ServiceToken(ChaosCloud::kNetwork);
    e.volume_token = cloud.ServiceToken(ChaosCloud::kVolume);
    for (int h = 0; h < cloud.hosts(); ++h) {
        const int agent = ChaosCloud::kAgent + cloud.AgentOf(h);
        e.agents.push_back({cloud.HostNameOf(h), cloud.ProcessUrl(agent), cloud.ServiceToken(agent)});
    }
    e.network_url = cloud.ProcessUrl(ChaosCloud::kNetwork);
    e.volume_url = cloud.ProcessUrl(ChaosCloud::kVolume);
    return e;
}

}  // namespace cogs::testing
