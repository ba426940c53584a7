#include "bench/create_storm_checks.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "bench/create_storm_util.h"
#include "cogs/runtime/files.h"

namespace cogs::bench::storm {
namespace {

using testing::ApiClient;
using testing::ApiReply;
using testing::DevCloud;

bool Over(const Usage& u, const Usage& cap, const CreateStormOptions& o) {
    return static_cast<double>(u.vcpus) > static_cast<double>(cap.vcpus) * o.cpu_ratio ||
           static_cast<double>(u.ram_mb) > static_cast<double>(cap.ram_mb) * o.ram_ratio ||
           static_cast<double>(u.disk_gb) > static_cast<double>(cap.disk_gb) * o.disk_ratio;
}

// Every compute process's URL with the token it checks (an agent's own; for a sim hosts' process,
// one of its hosts').
std::vector<std::pair<std::string, std::string>> ComputeUrls(const DevCloud& dev,
                                                             const std::vector<SimAgent>& sims) {
    std::vector<std::pair<std::string, std::string>> urls;
    for (const auto& p : dev.processes()) {
        if (p.name.find("compute") != std::string::npos) {
            urls.emplace_back(p.url, dev.ServiceToken(p.name));
        }
    }
    for (const SimAgent& sim : sims) {
        urls.emplace_back(sim.url, sim.token);
    }
    return urls;
}

// JSON with numbers as people write them (Boost.JSON prints 233.0 as 2.33E2).
void WriteJson(const json::value& v, std::string& out) {
    switch (v.kind()) {
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const auto& [k, item] : v.as_object()) {
                out += first ? "" : ",";
                first = false;
                out += json::serialize(json::string(k)) + ":";
                WriteJson(item, out);
            }
            out += '}';
            return;
        }
        case json::kind::array: {
            out += '[';
            bool first = true;
            for (const auto& item : v.as_array()) {
                out += first ? "" : ",";
                first = false;
                WriteJson(item, out);
            }
            out += ']';
            return;
        }
        case json::kind::double_:
            out += std::isfinite(v.as_double()) ? fmt::format("{}", v.as_double()) : "null";
            return;
        default: out += json::serialize(v);
    }
}

SchedTimes Sched(int pid) {
    SchedTimes t;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
        std::ifstream in(task.path() / "schedstat");
        double cpu_ns = 0, wait_ns = 0;
        if (in >> cpu_ns >> wait_ns) {
            t.cpu_s += cpu_ns / 1e9;
            t.wait_s += wait_ns / 1e9;
        }
    }
    return t;
}

}  // namespace

std::optional<std::pair<std::map<std::string, Usage>, std::map<std::string, Usage>>> AgentUsage(
    const DevCloud& dev, const std::vector<SimAgent>& sims, int64_t* instances) {
    std::map<std::string, Usage> used, capacity;
    *instances = 0;
    for (const auto& [url, token] : ComputeUrls(dev, sims)) {
        ApiClient svc(url, token);
        ApiReply r = svc.Must("GET", "/v1/inventory");
        if (r.status != 200) {
            Progress("GET {}/v1/inventory: {} {}", url, r.status, r.text);
            return std::nullopt;
        }
        for (const auto& h : Arr(r.body, "hosts")) {
            capacity[S(h, "name")] = Usage{I(h, "vcpus"), I(h, "ram_mb"), I(h, "disk_gb")};
        }
        for (const auto& inst : Arr(r.body, "instances")) {
            Usage& u = used[S(inst, "host")];
            u.vcpus += I(inst, "vcpus");
            u.ram_mb += I(inst, "ram_mb");
            u.disk_gb += I(inst, "disk_gb");
            ++*instances;
        }
    }
    return std::make_pair(std::move(used), std::move(capacity));
}

std::optional<Checks> Check(const DevCloud& dev, const std::vector<SimAgent>& sims,
                            const std::vector<json::value>& active, const CreateStormOptions& o) {
    Checks c;
    ApiClient admin = dev.Admin();
    auto hosts = ListAll(admin, "/v1/hosts", "hosts");
    int64_t instances = 0;
    auto agents = AgentUsage(dev, sims, &instances);
    ApiClient network = dev.Service("network");
    ApiReply net = network.Must("GET", "/v1/inventory");
    if (!hosts || !agents || net.status != 200) {
        if (net.status != 200) {
            Progress("GET network /v1/inventory: {} {}", net.status, net.text);
        }
        return std::nullopt;
    }
    c.instances = instances;
    auto& [agent_used, agent_capacity] = *agents;
    std::set<std::string> names;
    for (const auto& h : *hosts) {
        const std::string name = S(h, "name");
        names.insert(name);
        const Usage cap{I(h, "vcpus"), I(h, "ram_mb"), I(h, "disk_gb")};
        const json::value& u = At(h, "used");
        const Usage api{I(u, "vcpus"), I(u, "ram_mb"), I(u, "disk_gb")};
        const Usage agent = agent_used[name];
        const bool over_api = Over(api, cap, o);
        // The agent's own idea of its host's size, should cogsd's record differ from it.
        const Usage agent_cap = agent_capacity.contains(name) ? agent_capacity[name] : cap;
        const bool over_agent = Over(agent, agent_cap, o) || Over(agent, cap, o);
        c.overcommitted_api += over_api;
        c.overcommitted_agents += over_agent;
        c.overcommitted_hosts += over_api || over_agent;
        if (api.vcpus != agent.vcpus || api.ram_mb != agent.ram_mb || api.disk_gb != agent.disk_gb) {
            ++c.usage_mismatches;
            if (c.usage_mismatches <= 3) {
                Progress("host {}: cogsd says used {}/{}/{}, its agent holds {}/{}/{} (vcpus/ram_mb/disk_gb)",
                         name, api.vcpus, api.ram_mb, api.disk_gb, agent.vcpus, agent.ram_mb, agent.disk_gb);
            }
        }
        if (agent.vcpus > 0) {
            ++c.hosts_used;
        }
        c.max_per_host = std::max(c.max_per_host, agent.vcpus);  // bench.tiny: one vCPU per instance
    }
    for (const auto& [name, u] : agent_used) {
        if (!names.contains(name) && u.vcpus > 0) {
            Progress("an agent holds instances on host {}, which cogsd does not know", name);
            ++c.usage_mismatches;
        }
    }
    // An address is duplicated if two ACTIVE servers show it, or the network service holds it twice
    // (in one subnet) — or an ACTIVE server's address is held by nobody.
    std::map<std::string, int> server_ips;
    for (const auto& s : active) {
        ++server_ips[S(s, "ip_address")];
    }
    std::map<std::string, int> held;  // "subnet/ip"
    std::set<std::string> held_ips;
    for (const auto& a : Arr(net.body, "addresses")) {
        ++held[S(a, "subnet_id") + "/" + S(a, "ip")];
        held_ips.insert(S(a, "ip"));
    }
    for (const auto& [ip, n] : server_ips) {
        c.duplicate_addresses += !ip.empty() && n > 1;
        c.addresses_missing += ip.empty() ? n : !held_ips.contains(ip);
    }
    for (const auto& [key, n] : held) {
        c.duplicate_addresses += n > 1;
    }
    return c;
}

double Percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string CpuModel() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                return line.substr(line.find_first_not_of(' ', colon + 1));
            }
        }
    }
    return "";
}

double MeasureFsyncs(const std::string& dir, double seconds) {
    const std::string file = dir + "/fsync-probe";
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) {
        return 0;
    }
    const std::string block(4096, 'x');
    const auto start = SteadyClock::now();
    int n = 0;
    while (Seconds(start, SteadyClock::now()) < seconds) {
        if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
            ::fdatasync(fd) != 0) {
            break;
        }
        ++n;
    }
    const double rate = n / Seconds(start, SteadyClock::now());
    ::close(fd);
    ::unlink(file.c_str());
    return rate;
}

double LoadAverage() {
    std::ifstream in("/proc/loadavg");
    double one = 0;
    in >> one;
    return one;
}

std::vector<int> ChildPids(int pid) {
    std::vector<int> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        // /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold spaces: read after the last ')'.
        std::ifstream in(e.path() / "stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const auto close = stat.rfind(')');
        char state = 0;
        int ppid = 0;
        if (close != std::string::npos &&
            std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == pid) {
            out.push_back(std::stoi(name));
        }
    }
    return out;
}

int64_t StatusKib(int pid, const std::string& field) {
    std::ifstream in(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            return std::stoll(line.substr(field.size() + 1));
        }
    }
    return 0;
}

void CpuMeter::Start() {
    start_ = SteadyClock::now();
    before_.clear();
    for (const auto& p : procs_) {
        before_.push_back(Sched(p.pid));
    }
}

json::object CpuMeter::Stop() const {
    std::map<std::string, SchedTimes> by_group;
    for (size_t i = 0; i < procs_.size(); ++i) {
        const SchedTimes now = Sched(procs_[i].pid);
        by_group[procs_[i].group].cpu_s += now.cpu_s - before_[i].cpu_s;
        by_group[procs_[i].group].wait_s += now.wait_s - before_[i].wait_s;
    }
    json::object cpu, wait;
    for (const auto& [g, t] : by_group) {
        cpu[g] = Round(t.cpu_s, 2);
        wait[g] = Round(t.wait_s, 2);
    }
    return json::object{{"wall_s", Round(Seconds(start_, SteadyClock::now()), 2)},
                        {"cpu_s", std::move(cpu)},
                        {"runq_wait_s", std::move(wait)}};
}

std::string Json(const json::value& v) {
    std::string out;
    WriteJson(v, out);
    return out;
}

}  // namespace cogs::bench::storm
