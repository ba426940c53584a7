// What `cogs dev` writes for tools: dev.json (every process, its URL and log), the Prometheus
// file service discovery targets with a prometheus.yml using them, and the OpenStack clients'
// clouds.yaml.
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/dev_supervisor.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"

namespace cogs::cli::devsup {

void Dev::WriteDevJson() {
    json::array processes;
    for (const auto& p : procs_) {
        processes.push_back(
            json::object{{"name", p->name}, {"pid", p->child.pid()}, {"url", p->url()}, {"log", p->log}});
    }
    json::array api_urls;
    for (const Proc* r : replicas_) {
        api_urls.push_back(json::value(r->url()));
    }
    json::object doc{{"api_url", api_url_},
                     {"api_urls", std::move(api_urls)},
                     {"store", o_.store},
                     {"driver", o_.driver},
                     {"data_dir", dir_.string()},
                     {"admin_token_file", D("admin.token")},
                     {"config_dir", D("config")},
                     {"ca_file", pki_ ? pki_->ca() : ""},
                     {"supervisor_pid", ::getpid()},
                     {"processes", std::move(processes)}};
    if (!run_dir_.empty()) {
        doc["run_dir"] = run_dir_;  // host-<i>/runc: each agent's runc root
    }
    if (pg_ != nullptr) {
        json::object pg;
        pg["dir"] = pg_->socket_dir();
        pg["data_dir"] = pg_->data_dir();
        pg["port"] = pg_->port();
        pg["pid"] = pg_->pid();  // the postmaster's (also the first line of data_dir/postmaster.pid)
        pg["log"] = pg_->log_path();
        pg["conninfo"] = pg_->ConnInfo();
        pg["url"] = pg_->Url();
        doc["postgres"] = std::move(pg);
    }
    if (auto s = runtime::WriteFileAtomic(D("dev.json"), PrettyJson(doc)); !s) {
        err_ << fmt::format("cogs dev: cannot write dev.json: {}\n", s.error().message);
    }
    WritePrometheusConfig();
}

// prometheus-targets.json (Prometheus file service discovery: every process's /metrics, labelled
// job=cogsd|cogs-network|cogs-volume|cogs-compute) and prometheus.yml using it, so an operator can
// watch the local cloud with `prometheus --config.file <data dir>/prometheus.yml`. Prometheus
// re-reads the targets file when it changes (ports survive restarts of `cogs dev` anyway).
void Dev::WritePrometheusConfig() {
    json::array targets;
    for (const auto& p : procs_) {
        std::string address = p->url();
        if (auto scheme = address.find("://"); scheme != std::string::npos) {
            address = address.substr(scheme + 3);
        }
        std::string job = p->name;
        if (job.rfind("cogs-compute", 0) == 0) {
            job = "cogs-compute";  // one job, one instance per agent process
        } else if (job.rfind("cogsd-", 0) == 0) {
            job = "cogsd";  // one job, one instance per replica
        }
        targets.push_back(json::object{{"targets", json::array{json::value(address)}},
                                       {"labels", json::object{{"job", job}, {"process", p->name}}}});
    }
    if (auto s = runtime::WriteFileAtomic(D("prometheus-targets.json"), PrettyJson(targets)); !s) {
        err_ << fmt::format("cogs dev: cannot write prometheus-targets.json: {}\n", s.error().message);
        return;
    }
    // Over TLS: the dev CA, and a certificate of it (the services require one; /metrics takes any).
    const std::string tls =
        pki_ ? fmt::format(
                   "    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n"
                   "      key_file: {}\n",
                   pki_->ca(), pki_->cert("prometheus"), pki_->key("prometheus"))
             : "";
    const std::string config = fmt::format(
        "# Written by `cogs dev`: prometheus --config.file {0}/prometheus.yml\n"
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        "scrape_configs:\n  - job_name: cogs\n{1}    file_sd_configs:\n"
        "      - files: ['prometheus-targets.json']  # relative to this file\n        refresh_interval: "
        "30s\n",
        fs::absolute(dir_).string(), tls);
    if (auto s = runtime::WriteFileAtomic(D("prometheus.yml"), config); !s) {
        err_ << fmt::format("cogs dev: cannot write prometheus.yml: {}\n", s.error().message);
    }
}

// clouds.yaml, as openstacksdk and the `openstack` CLI read it (OS_CLIENT_CONFIG_FILE): one cloud
// per user of cloud_users_, logging in with its password at cogsd's Keystone (<api>/v3). 0600: it
// holds the passwords.
void Dev::WriteCloudsYaml() {
    // Every value as a JSON string, which YAML reads as a double-quoted scalar: a password of
    // digits stays a string, a path with ": " or "#" stays one value.
    auto q = [](const std::string& s) { return json::serialize(json::value(s)); };
    std::string yaml = fmt::format(
        "# Written by `cogs dev`: OS_CLIENT_CONFIG_FILE={} openstack --os-cloud <cloud> server list\n"
        "# (the passwords are also in {}/<user>.password)\n",
        D("clouds.yaml"), D("openstack"));
    yaml += cloud_users_.empty() ? "clouds: {}\n" : "clouds:\n";
    for (const CloudUser& u : cloud_users_) {
        yaml += fmt::format(
            "  {}:\n"
            "    auth:\n"
            "      auth_url: {}\n"
            "      username: {}\n"
            "      password: {}\n"
            "      project_name: {}\n"
            "      user_domain_name: Default\n"
            "      project_domain_name: Default\n"
            "    region_name: RegionOne\n"
            "    identity_api_version: 3\n"
            "    interface: public\n",
            u.cloud, q(api_url_ + "/v3"), q(u.user), q(u.password), q(u.project));
        if (pki_) {
            yaml += fmt::format("    cacert: {}\n", q(pki_->ca()));
        }
    }
    if (auto s = runtime::WriteFileAtomic(D("clouds.yaml"), yaml, 0600); !s) {
        err_ << fmt::format("cogs dev: cannot write clouds.yaml: {}\n", s.error().message);
    }
}

}  // namespace cogs::cli::devsup
