// `cogs dev` talks to the cloud it started through the API, as any client would: it waits for the
// admin token to work, enrolls each host, waits for the hosts to be up, seeds the catalog and makes
// the users the OpenStack clients log in as.
#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/cli/internal/dev_supervisor.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"

namespace cogs::cli::devsup {

bool Dev::AwaitAdminToken() {
    const SteadyTime deadline = SteadyClock::now() + std::chrono::seconds(o_.start_timeout_s);
    while (!StopRequested(50ms)) {
        // The token the file holds once the leader's start has renewed it if it had to (a restart
        // days later: the old one may have expired): the file is read until its token works.
        if (auto t = runtime::ReadTokenFile(D("admin.token")); t) {
            auto endpoint = ParseUrl(replicas_.front()->url());
            if (endpoint && ApiClient(*endpoint, *t, 2s, pki_ ? pki_->ca() : "").Get("/v1/whoami")) {
                admin_token_ = *t;
                return true;
            }
        }
        if (!AllAlive()) {
            return false;
        }
        if (SteadyClock::now() >= deadline) {
            err_ << fmt::format("cogs dev: cogsd did not write {}\n", D("admin.token"));
            for (const Proc* r : replicas_) {
                PrintLogTail(*r);
            }
            return false;
        }
    }
    return false;
}

bool Dev::EnrollHost(ApiClient& api, const std::string& host, const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    // A retried call may come back as its Idempotency-Key's replay, without the secrets: once more.
    for (int attempt = 0; attempt < 3; ++attempt) {
        json::value body = json::object{};
        auto made = api.Call("POST", "/v1/hosts/" + http::UrlEncode(host) + "/enroll", &body);
        if (!made) {
            err_ << fmt::format("cogs dev: enrolling {}: {} ({})\n", host, made.error().message,
                                made.error().code);
            return false;
        }
        const json::value* e = made->is_object() ? made->as_object().if_contains("enrollment") : nullptr;
        if (e == nullptr || !e->is_object()) continue;
        const std::string host_token = Cell(e->as_object(), "host_token");
        const std::string agent_token = Cell(e->as_object(), "agent_token");
        if (host_token.empty() || agent_token.empty()) continue;
        for (const auto& [file, secret] :
             {std::pair{dir + "/host.token", host_token}, std::pair{dir + "/agent.token", agent_token}}) {
            if (auto s = runtime::WriteFileAtomic(file, secret + "\n", 0600); !s) {
                err_ << fmt::format("cogs dev: {}\n", s.error().message);
                return false;
            }
        }
        return true;
    }
    err_ << fmt::format("cogs dev: enrolling {}: no credentials in the answer\n", host);
    return false;
}

bool Dev::AwaitHostsUp(ApiClient& api) {
    const SteadyTime deadline = SteadyClock::now() + std::chrono::seconds(o_.start_timeout_s);
    std::set<std::string> wanted;
    for (int i = 1; i <= o_.hosts; ++i) {
        wanted.insert(fmt::format("host-{}", i));
    }
    std::string last;
    while (!StopRequested(100ms)) {
        if (!AllAlive()) {
            return false;
        }
        auto hosts = api.List("/v1/hosts");
        size_t up = 0;
        if (hosts) {
            for (const auto& h : *hosts) {
                if (h.is_object() && wanted.count(Cell(h.as_object(), "name")) &&
                    Cell(h.as_object(), "state") == "up") {
                    ++up;
                }
            }
            if (up == wanted.size()) {
                err_ << fmt::format("cogs dev: {} compute hosts up\n", up);
                return true;
            }
            last = fmt::format("{} of {} hosts up", up, wanted.size());
        } else {
            last = fmt::format("GET /v1/hosts: {} ({})", hosts.error().message, hosts.error().code);
        }
        if (SteadyClock::now() >= deadline) {
            err_ << fmt::format("cogs dev: the compute hosts did not come up: {}\n", last);
            for (auto& p : procs_) {
                if (p->name.rfind("cogs-compute", 0) == 0) {
                    PrintLogTail(*p);
                }
            }
            return false;
        }
    }
    return false;
}

bool Dev::Seed(ApiClient& api) {
    struct Item {
        std::string plural;
        json::object body;
    };
    const std::vector<Item> items = {
        {"flavors", {{"name", "m1.tiny"}, {"vcpus", 1}, {"ram_mb", 512}, {"disk_gb", 1}}},
        {"flavors", {{"name", "m1.small"}, {"vcpus", 1}, {"ram_mb", 2048}, {"disk_gb", 20}}},
        {"images", {{"name", "cirros"}, {"os", "linux"}}},
        // The container driver's built-in image (registered before the agents start with --driver
        // container); a plain record with sim, so that one walkthrough works on both.
        {"images", {{"name", "busybox"}, {"os", "linux"}}},
        {"projects", {{"name", "demo"}, {"description", "a project for trying cogs"}}},
    };
    for (const auto& item : items) {
        const std::string name = Cell(item.body, "name");
        auto existing = api.List(fmt::format("/v1/{}?name={}", item.plural, http::UrlEncode(name)));
        if (!existing) {
            err_ << fmt::format("cogs dev: seeding {} {}: {} ({})\n", item.plural, name,
                                existing.error().message, existing.error().code);
            return false;
        }
        const bool present = std::any_of(existing->begin(), existing->end(), [&](const json::value& v) {
            return v.is_object() && Cell(v.as_object(), "name") == name;
        });
        if (present) {
            continue;
        }
        json::value body = item.body;
        auto made = api.Call("POST", "/v1/" + item.plural, &body);
        if (!made && made.error().code != "already_exists") {
            err_ << fmt::format("cogs dev: seeding {} {}: {} ({})\n", item.plural, name, made.error().message,
                                made.error().code);
            return false;
        }
        err_ << fmt::format("cogs dev: created {} {}\n", item.plural.substr(0, item.plural.size() - 1), name);
    }
    return true;
}

bool Dev::EnsureCloudUsers(ApiClient& api) {
    struct Wanted {
        const char* cloud;
        const char* user;
        const char* project;  // both seeded: admin by cogsd's first start, demo by Seed
        const char* role;
    };
    static constexpr Wanted kUsers[] = {{"cogs-admin", "admin", "admin", "admin"},
                                        {"cogs-demo", "demo", "demo", "member"}};
    std::error_code ec;
    fs::create_directories(dir_ / "openstack", ec);
    fs::permissions(dir_ / "openstack", fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) {
        err_ << fmt::format("cogs dev: cannot create {}: {}\n", D("openstack"), ec.message());
        return false;
    }
    cloud_users_.clear();
    for (const Wanted& w : kUsers) {
        const std::string file = D(fmt::format("openstack/{}.password", w.user));
        auto existing = api.List(fmt::format("/v1/users?name={}", http::UrlEncode(w.user)));
        if (!existing) {
            err_ << fmt::format("cogs dev: looking up user {}: {} ({})\n", w.user, existing.error().message,
                                existing.error().code);
            return false;
        }
        const bool present = std::any_of(existing->begin(), existing->end(), [&](const json::value& v) {
            return v.is_object() && Cell(v.as_object(), "name") == w.user;
        });
        auto saved = runtime::ReadTokenFile(file);
        if (!saved && (present || saved.error().code != ErrorCode::kNotFound)) {
            // Only a hash is kept server-side: without the file its password is unknown here, and
            // replacing it would lock out whoever set it.
            err_ << fmt::format(
                "cogs dev: user {} {} but {}: cloud {} is left out of {} (delete the user, or its password "
                "file, and restart to have both made anew)\n",
                w.user, present ? "exists" : "does not exist", saved.error().message, w.cloud,
                D("clouds.yaml"));
            continue;
        }
        if (!present) {
            std::string password;
            if (saved) {
                password = *saved;  // written by an earlier start that stopped before its create
            } else {
                password = RandomHex(16);
                // The file before the user: a stop in between leaves a password the next start uses.
                if (auto s = runtime::WriteFileAtomic(file, password + "\n", 0600); !s) {
                    err_ << fmt::format("cogs dev: {}\n", s.error().message);
                    return false;
                }
            }
            json::value body = json::object{
                {"name", w.user}, {"project_id", w.project}, {"role", w.role}, {"password", password}};
            auto made = api.Call("POST", "/v1/users", &body);
            if (!made && made.error().code != "already_exists") {
                err_ << fmt::format("cogs dev: creating user {} (password from {}): {} ({})\n", w.user, file,
                                    made.error().message, made.error().code);
                return false;
            }
            err_ << fmt::format("cogs dev: created user {} (project {}, role {}; password in {})\n", w.user,
                                w.project, w.role, file);
            saved = std::move(password);
        }
        cloud_users_.push_back(CloudUser{w.cloud, w.user, w.project, std::move(*saved)});
    }
    return true;
}

}  // namespace cogs::cli::devsup
