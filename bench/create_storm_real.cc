#include "bench/create_storm_real.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bench/create_storm_checks.h"
#include "bench/create_storm_util.h"
#include "cogs/runtime/files.h"

namespace cogs::bench::storm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The first integer in a file (a pid file, a cgroup counter); -1 if none.
int64_t ReadInt(const fs::path& path) {
    std::ifstream in(path);
    int64_t v = -1;
    if (!(in >> v)) {
        return -1;
    }
    return v;
}

// The cgroup directory of the container of instance `id` under `parent` (the driver names it
// "<host>.<id>"), or "" if there is none.
std::string CgroupDir(const std::string& parent, const std::string& id) {
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name == id || name.ends_with("." + id)) {
            return it->path().string();
        }
    }
    return "";
}

// The container's cgroup memory in bytes (v1, else v2); -1 if neither is there.
int64_t CgroupBytes(const std::string& id) {
    if (std::string dir = CgroupDir("/sys/fs/cgroup/memory/cogs", id); !dir.empty()) {
        return ReadInt(dir + "/memory.usage_in_bytes");
    }
    if (std::string dir = CgroupDir("/sys/fs/cgroup/cogs", id); !dir.empty()) {
        return ReadInt(dir + "/memory.current");
    }
    return -1;
}

// The pids in the container's cgroup.
std::vector<int> CgroupPids(const std::string& id) {
    std::vector<int> pids;
    for (const std::string parent :
         {"/sys/fs/cgroup/memory/cogs", "/sys/fs/cgroup/pids/cogs", "/sys/fs/cgroup/cogs"}) {
        const std::string dir = CgroupDir(parent, id);
        std::ifstream in(dir.empty() ? "/nonexistent" : dir + "/cgroup.procs");
        for (int pid = 0; in >> pid;) {
            pids.push_back(pid);
        }
        if (!pids.empty()) {
            break;
        }
    }
    return pids;
}

}  // namespace

std::string RunDirOf(const testing::DevCloud& dev) {
    auto text = runtime::ReadFile(dev.data_dir() + "/dev.json");
    if (!text) {
        return "";
    }
    boost::system::error_code ec;
    json::value v = json::parse(*text, ec);
    return ec ? "" : S(v, "run_dir");
}

json::object MeasureBootTimes(const testing::DevCloud& dev, const std::string& token,
                              const std::string& network_id, int samples) {
    testing::ApiClient api(dev.api_url(), token);
    std::vector<double> ms;
    int failed = 0;
    for (int i = 0; i < samples; ++i) {
        const auto sent = SteadyClock::now();
        auto made = api.Must(
            "POST", "/v1/servers",
            fmt::format(R"({{"name":"boot-{}","flavor":"bench.tiny","image":"busybox","network_id":"{}"}})",
                        i, network_id));
        const std::string id = S(At(made.body, "server"), "id");
        if (made.status != 202 || id.empty()) {
            Progress("boot sample {}: POST /v1/servers {} {}", i, made.status, made.text);
            ++failed;
            continue;
        }
        std::string status;
        const bool active = testing::WaitUntil(
            [&] {
                status = S(At(api.Must("GET", "/v1/servers/" + id).body, "server"), "status");
                return status == "ACTIVE" || status == "ERROR";
            },
            60s, 5ms);
        if (active && status == "ACTIVE") {
            ms.push_back(Ms(sent, SteadyClock::now()));
        } else {
            Progress("boot sample {}: server {} is {}", i, id, status);
            ++failed;
        }
        api.Must("DELETE", "/v1/servers/" + id);
        testing::WaitUntil([&] { return api.Must("GET", "/v1/servers/" + id).status == 404; }, 60s, 10ms);
        // Idle again for the next sample: its container removed from the machine too.
        testing::WaitUntil([&] { return ContainersLeft(dev) <= 0; }, 60s, 20ms);
    }
    Progress("boot time of one instance on an idle cloud, {} samples: p50 {:.0f} ms, p99 {:.0f} ms",
             ms.size(), Percentile(ms, 0.5), Percentile(ms, 0.99));
    return json::object{{"boot_samples", static_cast<int64_t>(ms.size())},
                        {"boot_p50_ms", Round(Percentile(ms, 0.50))},
                        {"boot_p99_ms", Round(Percentile(ms, 0.99))},
                        {"boot_max_ms", Round(Percentile(ms, 1.0))},
                        {"boot_failed", failed}};
}

json::object InstanceMemory(const testing::DevCloud& dev, const std::vector<std::string>& ids) {
    // The instance directories: <data dir>/instances/host-<i>/<id>, holding shim.pid and runc.pid.
    std::map<std::string, fs::path> dirs;
    std::error_code ec;
    for (const auto& host : fs::directory_iterator(dev.data_dir() + "/instances", ec)) {
        for (const auto& inst : fs::directory_iterator(host.path(), ec)) {
            dirs[inst.path().filename().string()] = inst.path();
        }
    }
    int64_t measured = 0, cgroup_bytes = 0, host_kib = 0, inside_kib = 0;
    for (const std::string& id : ids) {
        const int64_t bytes = CgroupBytes(id);
        if (bytes < 0) {
            continue;  // not running (any more)
        }
        ++measured;
        cgroup_bytes += bytes;
        for (int pid : CgroupPids(id)) {
            inside_kib += std::max<int64_t>(0, StatusKib(pid, "VmRSS"));
        }
        if (auto it = dirs.find(id); it != dirs.end()) {
            for (const char* file : {"shim.pid", "runc.pid"}) {
                const int64_t pid = ReadInt(it->second / file);
                if (pid > 0) {
                    host_kib += std::max<int64_t>(0, StatusKib(static_cast<int>(pid), "VmRSS"));
                }
            }
        }
    }
    const auto per = [&](int64_t kib) {
        return measured > 0 ? Round(static_cast<double>(kib) / measured) : 0.0;
    };
    const double cgroup = per(cgroup_bytes / 1024), host = per(host_kib);
    Progress(
        "memory of {} running instances: {:.0f} KiB each (cgroup {:.0f} + shim and runc {:.0f}; "
        "processes inside: {:.0f} KiB RSS)",
        measured, cgroup + host, cgroup, host, per(inside_kib));
    return json::object{{"instances_measured", measured},
                        {"memory_per_instance_kib", Round(cgroup + host)},
                        {"cgroup_kib_per_instance", cgroup},
                        {"host_processes_rss_kib_per_instance", host},
                        {"processes_in_cgroup_rss_kib_per_instance", per(inside_kib)}};
}

namespace {

// (runc root, container id) of every container under the cloud's runc roots.
std::vector<std::pair<std::string, std::string>> Containers(const std::string& run_dir) {
    std::vector<std::pair<std::string, std::string>> out;
    std::error_code ec;
    for (const auto& host : fs::directory_iterator(run_dir, ec)) {
        const std::string root = host.path().string() + "/runc";
        auto [rc, list] = testing::Shell("runc --root '" + root + "' list -q 2>/dev/null");
        std::istringstream lines(list);
        for (std::string id; std::getline(lines, id);) {
            if (!id.empty()) {
                out.emplace_back(root, id);
            }
        }
    }
    return out;
}

}  // namespace

int64_t ContainersLeft(const testing::DevCloud& dev) {
    const std::string run_dir = RunDirOf(dev);
    return run_dir.empty() ? -1 : static_cast<int64_t>(Containers(run_dir).size());
}

int64_t SweepContainers(const testing::DevCloud& dev) {
    const std::string run_dir = RunDirOf(dev);
    if (run_dir.empty()) {
        return 0;
    }
    const auto left = Containers(run_dir);
    for (const auto& [root, id] : left) {
        testing::Shell("runc --root '" + root + "' delete -f '" + id + "' 2>&1");
        testing::Shell("ip netns delete 'cg-" + id + "' 2>/dev/null");
        testing::Shell("find /sys/fs/cgroup -maxdepth 4 -type d -name '" + id +
                       "' -exec rmdir {} + 2>/dev/null");
    }
    return static_cast<int64_t>(left.size());
}

}  // namespace cogs::bench::storm
