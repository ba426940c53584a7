// cloud_memory_benchmark: what cogsd's memory holds per server and per host, measured with the
// allocator (the README's "Memory").
//
// What cogsd keeps for a host: its record (kind "host"), its agent's token record (kind "token",
// the enrollment) and that token's hash in Model::token_by_hash, its slot in scheduler::Placement,
// its lease in health::Liveness and its lease epoch (HostMonitor). For a server: its record, its
// port's, its claim in Placement (its record, kind "claim", is the store's: ModelClaims in cloud.cc), and the
// record of its create's Idempotency-Key (kind "idempotency", with the 202 answer) when the client
// sent one (cogs-bench create-storm does, for every create). Each as a create leaves it, in two
// forms, since the JSON bodies differ in how much room they hold:
//
//   live    built field by field in the order the handlers write them (hosts.cc Register and
//           Enroll; servers.cc Create with Networks::NewPort, Context::StartWorkflow, the claim
//           step's ModelClaims::Put, Remember's key record, then SettleCreate's changes in place),
//           each in a turn of its own, as cogsd's io thread sees them (Model's end_of_turn runs);
//   loaded  each record as Cloud::Load reads it from the store: its body parsed from its JSON text,
//           Put, the claim added to Placement, the hosts tracked.
//
// --servers N (default 10,000 and 100,000) servers in --projects P projects (100) on --hosts H
// hosts (default 1,000 and 10,000; paired with the servers in order). --runs R (3): each size is
// measured R times, the figures are the medians.
//
// Bytes are the allocator's: tcmalloc's generic.current_allocated_bytes when cogs links it (its size
// classes included), else glibc's mallinfo2() (uordblks + hblkhd). The last line of stdout is one
// JSON object: per size, bytes per host and per server (live and loaded), and per kind (loaded),
// plus the machine. Reports; never fails on a figure.
//
// --store=PATH instead: a copy of a real cogsd's SQLite store (a kept `cogs-bench create-storm`'s
// cogsd.db) opened as cogsd starts — Engine::Recover (its running workflows in memory), Cloud::Load —
// with the bytes held after each step and the records of each kind. The store's own page cache
// (SQLite's, up to 64 MiB on the writer: cogs/store) is counted in the load's bytes as far as the
// load read pages.
#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <filesystem>

#include "cogs/base/paths.h"
#include "cogs/base/secret.h"
#include "cogs/base/time.h"
#include "cogs/cloud/cloud.h"
#include "cogs/cloud/core/access.h"
#include "cogs/cloud/core/context.h"
#include "cogs/cloud/core/model.h"
#include "cogs/cloud/health/liveness.h"
#include "cogs/cloud/resources/hosts.h"
#include "cogs/observe/metrics.h"
#include "cogs/scheduler/placement.h"
#include "cogs/store/store.h"
#include "cogs/wire/answer.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"
#include "test/support/bench_report.h"
#include "test/support/temp_dir.h"

namespace cogs::cloud {
namespace {

using cogs::testing::LoadAverage;
using cogs::testing::Median;

namespace json = boost::json;

const char* AllocatorName() { return observe::Allocator() ? "tcmalloc" : "glibc"; }

// Bytes the program holds now.
int64_t Allocated() {
    if (const auto a = observe::Allocator()) {
        return a->allocated_bytes;
    }
    const struct mallinfo2 mi = mallinfo2();
    return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

constexpr int64_t kNowMs = 1'796'000'000'000;  // 2026-11: every record's clock

// What cogsd holds in memory for hosts and servers (the rest of Context is per cloud, not per record).
struct Held {
    std::vector<std::function<void()>> turns;
    Model model{[this](std::function<void()> fn) { turns.push_back(std::move(fn)); }};
    scheduler::Placement placement;
    health::Liveness liveness{health::LivenessOptions{}, SteadyTime{}};
    std::map<std::string, int64_t> epochs;  // HostMonitor's LeaseEpoch

    // The io thread's handler returned: the model's end of turn runs.
    void EndTurn() {
        while (!turns.empty()) {
            auto now = std::move(turns);
            turns.clear();
            for (auto& fn : now)
                fn();
        }
    }
};

// Context::NewRes and Context::Touch, on a fixed clock.
Res NewRes(std::string_view kind, std::string project) {
    Res r{std::string(kind), NewUuid(), std::move(project), {}};
    r.body["id"] = r.id;
    if (!r.project.empty()) r.body["project_id"] = r.project;
    const std::string now = Rfc3339(kNowMs);
    r.body["created_at"] = now;
    r.body["updated_at"] = now;
    return r;
}
void Touch(Res& r, int64_t ms) {
    r.body["updated_at"] = Rfc3339(ms);
    r.body["_changed_ms"] = ms;
}

std::string HostName(int h) { return fmt::format("bench-sim-{}", h); }

// A host registers (hosts.cc Register) and is enrolled (Enroll: its agent's token).
void LiveHost(Held& held, int h, const std::string& admin_project) {
    const std::string name = HostName(h);
    Res r{std::string(kHost), name, "", {}};
    r.body["created_at"] = Rfc3339(kNowMs);
    r.body["enabled"] = true;
    r.body["disabled_reason"] = "";
    r.body["url"] = fmt::format("http://127.0.0.1:{}", 30000 + h % 1000);
    r.body["availability_zone"] = "nova";
    r.body["vcpus"] = 16;
    r.body["ram_mb"] = 65536;
    r.body["disk_gb"] = 1000;
    r.body["traits"] = json::array();
    Touch(r, kNowMs);
    held.placement.UpsertHost(Hosts::InfoOf(r));
    held.model.Put(std::move(r));
    held.liveness.Renewed(name, SteadyTime{});
    held.epochs[name] = kNowMs;
    held.EndTurn();

    Res t = NewRes(kToken, admin_project);
    t.body["role"] = RoleName(Role::kHost);
    t.body["name"] = "host " + name;
    t.body["_hash"] = Sha256Hex(RandomHex(24));
    t.body["host"] = name;
    held.model.token_by_hash[std::string(Str(t.body, "_hash"))] = t.id;
    held.model.Put(std::move(t));
    held.EndTurn();
}

struct Shared {  // the catalog every server names
    std::vector<std::string> projects, networks, subnets;
    std::string flavor_id = NewUuid(), image_id = NewUuid();
};

// One server created (servers.cc Create, with an Idempotency-Key), claimed, and settled ACTIVE.
void LiveServer(Held& held, const Shared& c, int s, int hosts) {
    const size_t p = static_cast<size_t>(s) % c.projects.size();
    const std::string& project = c.projects[p];
    // ---- the create's turn ----
    Res server = NewRes(kServer, project);
    Res port = NewRes(kPort, project);  // Networks::NewPort
    port.body["name"] = "";
    port.body["network_id"] = c.networks[p];
    port.body["subnet_id"] = "";
    port.body["mac_address"] = "";
    port.body["fixed_ip"] = "";
    port.body["device_id"] = server.id;
    port.set_status(NetStatus::kBuild);
    port.body["_quota"] = true;
    auto& b = server.body;
    b["name"] = fmt::format("storm-{}", s);
    server.set_status(ServerStatus::kBuild);
    b["flavor_id"] = c.flavor_id;
    b["flavor"] = "bench.tiny";
    b["image_id"] = c.image_id;
    b["network_id"] = c.networks[p];
    b["host"] = "";
    b["availability_zone"] = "";
    b["port_id"] = port.id;
    b["ip_address"] = "";
    b["mac_address"] = "";
    b["volume_ids"] = json::array();
    b["server_group_id"] = "";
    b["_vcpus"] = 1;
    b["_ram_mb"] = 256;
    b["_disk_gb"] = 1;
    b["_quota"] = true;
    b["_user_data"] = "";
    const std::string server_id = server.id, port_id = port.id;
    Res& stored = held.model.Put(std::move(server));
    Res& stored_port = held.model.Put(std::move(port));
    const std::string workflow_id = NewUuid();
    for (Res* r : {&stored, &stored_port}) {  // Context::StartWorkflow
        r->body["workflow_id"] = workflow_id;
        Touch(*r, kNowMs);
    }
    Res key{std::string(kIdempotency), project + "/" + NewUuid(), project, {}};  // Remember
    key.body["_hash"] = Sha256Hex(server_id);
    key.body["_at_ms"] = kNowMs;
    key.body["_status"] = 202;
    key.body["_answer"] = wire::Wrapped(202, kServer, View(stored)).body;
    held.model.Put(std::move(key));
    held.EndTurn();

    // ---- the claim step (the scheduler service, ModelClaims::Put) ----
    scheduler::PlacementRequest req;
    req.server_id = server_id;
    req.vcpus = 1;
    req.ram_mb = 256;
    req.disk_gb = 1;
    auto claim = held.placement.ClaimFor(req);
    std::string host = claim ? claim->host : HostName(s % hosts);
    held.EndTurn();

    // ---- SettleCreate ----
    const std::string ip = fmt::format("10.{}.{}.{}", 64 + s / 65536, s / 256 % 256, s % 256);
    const std::string mac =
        fmt::format("fa:16:3e:{:02x}:{:02x}:{:02x}", s >> 16 & 255, s >> 8 & 255, s & 255);
    Res* sv = held.model.Find(kServer, server_id);
    sv->set_status(ServerStatus::kActive);
    sv->body["host"] = host;
    sv->body["availability_zone"] = "nova";
    sv->body["ip_address"] = ip;
    sv->body["mac_address"] = mac;
    sv->body["_cidr"] = "10.64.0.0/12";
    sv->body["_gateway_ip"] = "10.64.0.1";
    Touch(*sv, kNowMs + 1000);
    Res* pt = held.model.Find(kPort, port_id);
    pt->set_status(NetStatus::kActive);
    pt->body["mac_address"] = mac;
    pt->body["fixed_ip"] = ip;
    pt->body["subnet_id"] = c.subnets[p];
    Touch(*pt, kNowMs + 1000);
    held.EndTurn();
}

// Cloud::Load of one record from its JSON text.
void Load(Held& held, const store::ResourceWrite& w) {
    json::value v = json::parse(w.body);
    Res r{w.kind, w.id, w.project, std::move(v.get_object())};
    if (r.kind == kToken) {
        held.model.token_by_hash[std::string(Str(r.body, "_hash"))] = r.id;
    } else if (r.kind == kHost) {
        held.placement.UpsertHost(Hosts::InfoOf(r));
        held.liveness.Renewed(r.id, SteadyTime{});
        held.epochs[r.id] = kNowMs;
    } else if (r.kind == kClaim) {
        held.placement.AddClaim(ClaimOf(r));
        return;  // Placement's alone
    }
    held.model.Add(r.project, Model::HeldBy(r));
    held.model.Load(std::move(r));
}

struct Figures {
    double host_live = 0, server_live = 0, host_loaded = 0, server_loaded = 0;
    std::map<std::string, double> per_kind_loaded;  // bytes per record of the kind, loaded
    std::map<std::string, double> json_text;        // its JSON text's length (the store's), on average
};

Figures MeasureOnce(int servers, int hosts, int projects) {
    Figures f;
    Shared c;
    for (int p = 0; p < projects; ++p) {
        c.projects.push_back(NewUuid());
        c.networks.push_back(NewUuid());
        c.subnets.push_back(NewUuid());
    }
    const std::string admin_project = NewUuid();
    std::vector<store::ResourceWrite> texts;  // the records' durable form, for the loaded half
    {
        auto held = std::make_unique<Held>();
        const int64_t start = Allocated();
        for (int h = 0; h < hosts; ++h) {
            LiveHost(*held, h, admin_project);
        }
        const int64_t after_hosts = Allocated();
        for (int s = 0; s < servers; ++s) {
            LiveServer(*held, c, s, hosts);
        }
        const int64_t after_servers = Allocated();
        f.host_live = static_cast<double>(after_hosts - start) / hosts;
        f.server_live = static_cast<double>(after_servers - after_hosts) / servers;
        for (auto kind : {kHost, kToken, kServer, kPort, kClaim, kIdempotency}) {
            double chars = 0, n = 0;
            auto add = [&](store::ResourceWrite w) {
                chars += static_cast<double>(w.body.size());
                ++n;
                texts.push_back(std::move(w));
            };
            if (kind == kClaim) {
                for (const auto& [id, r] : held->model.All(kServer)) {
                    if (const auto* claim = held->placement.ClaimOf(id))
                        add(Model::Write(ClaimRecord(*claim)));
                }
            }
            for (const auto& [id, r] : held->model.All(kind)) {
                add(Model::Write(r));
            }
            f.json_text[std::string(kind)] = n == 0 ? 0 : chars / n;
        }
    }
    auto held = std::make_unique<Held>();
    int64_t at = Allocated();
    int64_t hosts_bytes = 0, servers_bytes = 0;
    for (size_t i = 0; i < texts.size();) {  // kind by kind, as written above
        const std::string kind = texts[i].kind;
        size_t n = 0;
        for (; i < texts.size() && texts[i].kind == kind; ++i, ++n) {
            Load(*held, texts[i]);
        }
        held->EndTurn();
        const int64_t now = Allocated();
        f.per_kind_loaded[kind] = static_cast<double>(now - at) / static_cast<double>(n);
        (kind == kHost || kind == kToken ? hosts_bytes : servers_bytes) += now - at;
        at = now;
    }
    f.host_loaded = static_cast<double>(hosts_bytes) / hosts;
    f.server_loaded = static_cast<double>(servers_bytes) / servers;
    return f;
}

// A real store, opened as cogsd opens it; the bytes held after each step, as one JSON object.
Result<std::string> MeasureStore(const std::string& path) {
    const cogs::testing::TempDir dir{"cogs-mem-bench"};
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::error_code ec;
        if (std::filesystem::exists(path + suffix)) {
            std::filesystem::copy_file(path + suffix, dir / (std::string("cogsd.db") + suffix), ec);
        }
    }
    std::string out;
    const int64_t start = Allocated();
    auto at = [&](const char* step) { out += fmt::format(R"(,"{}_bytes":{})", step, Allocated() - start); };
    boost::asio::io_context io{1};
    store::SqliteOptions so;
    so.path = dir / "cogsd.db";
    COGS_ASSIGN_OR_RETURN(auto st, store::OpenSqliteStore(so));
    at("store_open");
    workflow::Registry registry(st.get());
    COGS_TRY(registry.LoadFromStore());
    COGS_ASSIGN_OR_RETURN(auto defs,
                          workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud")));
    COGS_TRY(registry.RegisterAll(std::move(defs)));
    workflow::ServiceCatalog catalog;
    workflow::EngineOptions eo;
    eo.owner = "cloud_memory_benchmark";
    auto engine = std::make_unique<workflow::Engine>(io, *st, registry, catalog, eo);
    CloudOptions co;
    auto cloud = std::make_unique<Cloud>(io, *st, *engine, registry, co);
    at("engine_cloud_made");
    COGS_TRY(engine->Recover());
    at("engine_recovered");  // the running workflows
    COGS_TRY(cloud->Load());
    at("cloud_loaded");
    // The io_context never runs: the running workflows' steps are not dispatched (this process
    // has no services), and nothing here is torn down (main exits at once).
    COGS_ASSIGN_OR_RETURN(auto counts, st->LoadResources());
    std::map<std::string, int64_t> kinds;
    for (const auto& r : counts)
        ++kinds[r.kind];
    counts.clear();
    counts.shrink_to_fit();
    std::string sep;
    out += R"(,"records":{)";
    for (const auto& [kind, n] : kinds) {
        out += fmt::format(R"({}"{}":{})", sep, kind, n);
        sep = ",";
    }
    out += "}";
    (void)cloud.release();
    (void)engine.release();
    (void)st.release();
    std::error_code ec;
    std::filesystem::remove_all(dir.path(), ec);  // the copy (its destructor will not run)
    return fmt::format(R"({{"store":"{}")", path) + out + "}";
}

}  // namespace
}  // namespace cogs::cloud

int main(int argc, char** argv) {
    using namespace cogs::cloud;
    std::vector<int> servers, hosts;
    int projects = 100, runs = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&a](std::string_view flag) { return std::stoi(a.substr(flag.size())); };
        if (a.starts_with("--servers=")) {
            servers.push_back(value("--servers="));
        } else if (a.starts_with("--hosts=")) {
            hosts.push_back(value("--hosts="));
        } else if (a.starts_with("--projects=")) {
            projects = value("--projects=");
        } else if (a.starts_with("--runs=")) {
            runs = value("--runs=");
        } else if (a.starts_with("--store=")) {
            auto got = MeasureStore(a.substr(8));
            if (!got) {
                std::fprintf(stderr, "%s\n", got.error().ToString().c_str());
                return 1;
            }
            std::printf("%s\n", got->c_str());
            std::fflush(stdout);
            std::_Exit(0);  // the store's threads and the engine are left as they are
        } else {
            std::fprintf(stderr, "usage: %s [--servers=N]... [--hosts=N]... [--projects=N] [--runs=N]\n",
                         argv[0]);
            return 2;
        }
    }
    if (servers.empty()) servers = {10000, 100000};
    if (hosts.empty()) hosts = {1000, 10000};
    while (hosts.size() < servers.size())
        hosts.push_back(hosts.back());
    const double load_before = LoadAverage();
    std::string sizes;
    for (size_t k = 0; k < servers.size(); ++k) {
        std::map<std::string, std::vector<double>> got;
        for (int r = 0; r < runs; ++r) {
            const Figures f = MeasureOnce(servers[k], hosts[k], projects);
            std::fprintf(
                stderr,
                "%d servers, %d hosts, run %d: per server %.0f B live, %.0f B loaded; per host %.0f B "
                "live, %.0f B loaded\n",
                servers[k], hosts[k], r + 1, f.server_live, f.server_loaded, f.host_live, f.host_loaded);
            got["server_live"].push_back(f.server_live);
            got["server_loaded"].push_back(f.server_loaded);
            got["host_live"].push_back(f.host_live);
            got["host_loaded"].push_back(f.host_loaded);
            for (const auto& [kind, b] : f.per_kind_loaded)
                got["loaded_" + kind].push_back(b);
            for (const auto& [kind, b] : f.json_text)
                got["json_" + kind].push_back(b);
        }
        std::string one = fmt::format(R"({{"servers":{},"hosts":{},"projects":{},"runs":{})", servers[k],
                                      hosts[k], projects, runs);
        auto put = [&](const char* name, const std::string& key) {
            one += fmt::format(R"(,"{}":{:.0f})", name, Median(got[key]));
        };
        put("bytes_per_server_live", "server_live");
        put("bytes_per_server_loaded", "server_loaded");
        put("bytes_per_host_live", "host_live");
        put("bytes_per_host_loaded", "host_loaded");
        one += R"(,"bytes_per_record_loaded":{)";
        std::string sep, json_sep;
        std::string text = R"(,"json_text_bytes":{)";
        for (auto& [key, v] : got) {
            if (key.starts_with("loaded_")) {
                one += fmt::format(R"({}"{}":{:.0f})", sep, key.substr(7), Median(v));
                sep = ",";
            } else if (key.starts_with("json_")) {
                text += fmt::format(R"({}"{}":{:.0f})", json_sep, key.substr(5), Median(v));
                json_sep = ",";
            }
        }
        one += "}" + text + "}}";
        sizes += (sizes.empty() ? "" : ",") + one;
    }
    std::printf(
        "%s\n",
        fmt::format(
            R"({{"allocator":"{}","sizes":[{}],"machine":{{"nproc":{},"loadavg_1m_before":{:.2f},"loadavg_1m_after":{:.2f}}}}})",
            AllocatorName(), sizes, std::thread::hardware_concurrency(), load_before, LoadAverage())
            .c_str());
    return 0;
}
