// ExtensionHost: what cogsd's leader runs its extensions with. It owns the part of the engine's
// ServiceCatalog that comes from the configuration directory (extensions.h) and the workflow
// versions the engine starts new work on.
//
// Reload(), at start and on every reload (SIGHUP, POST /v1/extensions/reload), all or nothing:
//   1. reads the shipped workflows and the configuration directory;
//   2. weaves the hooks into the workflows and checks every action against the catalog as it would
//      be (the built-in services, which cogsd added, and the configured ones): a workflow or hook
//      naming an unknown service or action is refused with its file and line;
//   3. checks the kinds (kinds.d) with the cloud: each names a create and a delete workflow that
//      exists, and takes no name of the API's own; a kind that still has records cannot go;
//   4. registers the workflows (a changed one becomes a new version: a running workflow keeps the
//      version it started with), then replaces the configured services in the catalog and sets
//      their bulkheads and breakers in the engine, and hands the kinds to the cloud.
// A refused reload changes nothing: the previous configuration stays in force. A service whose
// url, credential and pool are unchanged keeps its client (its connections); a changed one gets a
// new client, and calls still in flight on the old one end as its pool closes (retryable: the
// step retries with the same key on the new one). A service removed from the configuration is
// refused while a current workflow names it; a workflow that started on an older version and
// still names it fails that step (no client), as any definitive refusal.
//
// Threading: the io thread that runs the engine, between its turns (Reload blocks on the store).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "cogs/base/result.h"
#include "cogs/extend/extensions.h"
#include "cogs/workflow/registry.h"

namespace boost::asio {
class io_context;
}

namespace cogs::extend {

struct HostOptions {
    std::string workflows_dir;  // the shipped workflows
    std::string config_dir;     // "": none
    // cogsd's client TLS context, for https services; null: https services are refused.
    std::shared_ptr<http::TlsContext> tls;
    // Checks (apply false) or takes (apply true) the declared kinds: cogsd's Cloud::SetKinds. Unset:
    // a configuration that declares any kind is refused.
    std::function<Status(const std::vector<cloud::KindSpec>&, bool apply)> kinds{};
};

class ExtensionHost {
public:
    ExtensionHost(boost::asio::io_context& io, HostOptions options, workflow::ServiceCatalog& catalog,
                  workflow::Engine& engine, workflow::Registry& registry);

    // Loads, checks and applies everything (above). On success, what Describe() then answers.
    Result<std::string> Reload();

    // JSON text: the configuration directory, the configured services (name, url, actions,
    // limits, where each is defined; never a token), the hooks, the latest version of every workflow
    // type, the number of reloads and when the last one was applied.
    std::string Describe() const;

private:
    struct Applied {
        ServiceEntry entry;
        std::shared_ptr<workflow::ServiceClient> client;
    };

    Result<std::shared_ptr<workflow::ServiceClient>> ClientFor(const ServiceEntry& e) const;

    boost::asio::io_context& io_;
    HostOptions options_;
    workflow::ServiceCatalog& catalog_;
    workflow::Engine& engine_;
    workflow::Registry& registry_;
    std::map<std::string, Applied> services_;  // the configured ones now in the catalog
    std::vector<workflow::Hook> hooks_;
    std::vector<cloud::KindSpec> kinds_;
    int64_t reloads_ = 0;
    int64_t applied_ms_ = 0;
};

}  // namespace cogs::extend
