#include "cogs/extend/host.h"

#include <algorithm>
#include <boost/json.hpp>

#include "cogs/services/kit/http_client.h"

namespace cogs::extend {
namespace {

namespace json = boost::json;

// No attempt of a call to the service waits longer than its `timeout`.
class CappedClient final : public workflow::ServiceClient {
public:
    CappedClient(std::shared_ptr<workflow::ServiceClient> inner, Duration cap)
        : inner_(std::move(inner)), cap_(cap) {}
    void Invoke(workflow::ActionCall call, Callback done) override {
        call.deadline = std::min(call.deadline, SteadyClock::now() + cap_);
        inner_->Invoke(std::move(call), std::move(done));
    }
    void Status(workflow::ActionCall call, Callback done) override {
        call.deadline = std::min(call.deadline, SteadyClock::now() + cap_);
        inner_->Status(std::move(call), std::move(done));
    }
    std::string Endpoint(const workflow::ActionCall& call) const override { return inner_->Endpoint(call); }

private:
    std::shared_ptr<workflow::ServiceClient> inner_;
    Duration cap_;
};

// Whether `a` and `b` would make the same client.
bool SameClient(const ServiceEntry& a, const ServiceEntry& b) {
    return a.endpoint == b.endpoint && a.token == b.token && a.max_connections == b.max_connections &&
           a.timeout == b.timeout;
}

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

ExtensionHost::ExtensionHost(boost::asio::io_context& io, HostOptions options,
                             workflow::ServiceCatalog& catalog, workflow::Engine& engine,
                             workflow::Registry& registry)
    : io_(io), options_(std::move(options)), catalog_(catalog), engine_(engine), registry_(registry) {}

Result<std::shared_ptr<workflow::ServiceClient>> ExtensionHost::ClientFor(const ServiceEntry& e) const {
    if (auto it = services_.find(e.name); it != services_.end() && SameClient(it->second.entry, e)) {
        return it->second.client;
    }
    if (e.endpoint.tls && options_.tls == nullptr) {
        return MakeError(ErrorCode::kInvalidArgument,
                         e.origin + ": service '" + e.name + "': an https url needs cogsd's --tls-ca");
    }
    std::shared_ptr<workflow::ServiceClient> client = services::kit::MakeHttpServiceClient(
        io_, e.endpoint.host, e.endpoint.port, e.name, static_cast<size_t>(e.max_connections), e.token,
        e.endpoint.tls ? options_.tls : nullptr);
    if (e.timeout > Duration(0)) client = std::make_shared<CappedClient>(std::move(client), e.timeout);
    return client;
}

Result<std::string> ExtensionHost::Reload() {
    Extensions ext;
    if (!options_.config_dir.empty()) {
        COGS_ASSIGN_OR_RETURN(ext, LoadExtensions(options_.config_dir));
    }
    COGS_ASSIGN_OR_RETURN(auto defs, workflow::LoadDefinitionsFromDirectory(options_.workflows_dir));
    std::map<std::string, std::string> shipped;
    for (const workflow::Definition& d : defs)
        shipped.emplace(d.type, options_.workflows_dir);
    for (workflow::Definition& d : ext.workflows) {
        if (shipped.contains(d.type)) {
            return MakeError(ErrorCode::kInvalidArgument, d.steps.front().action.origin +
                                                              ": workflow type '" + d.type +
                                                              "' is already one of the shipped workflows (" +
                                                              options_.workflows_dir + ")");
        }
        defs.push_back(std::move(d));
    }
    COGS_ASSIGN_OR_RETURN(defs, workflow::ApplyHooks(std::move(defs), ext.hooks));

    // The catalog as it would be: the built-in services and the configured ones.
    workflow::ServiceCatalog next = catalog_;
    for (const auto& [name, applied] : services_)
        next.Remove(name);
    std::map<std::string, Applied> applied;
    for (ServiceEntry& e : ext.services) {
        if (next.Find(e.name) != nullptr) {
            return MakeError(ErrorCode::kInvalidArgument,
                             e.origin + ": service '" + e.name + "' is one of cogsd's built-in services");
        }
        COGS_ASSIGN_OR_RETURN(auto client, ClientFor(e));
        next.Add(e.name, client, e.actions);
        std::string name = e.name;
        applied.emplace(std::move(name), Applied{std::move(e), std::move(client)});
    }
    COGS_TRY(workflow::CheckServices(defs, next));
    for (const cloud::KindSpec& k : ext.kinds) {
        for (const std::string& type : {k.create_workflow, k.delete_workflow}) {
            if (std::none_of(defs.begin(), defs.end(),
                             [&](const workflow::Definition& d) { return d.type == type; })) {
                return MakeError(
                    ErrorCode::kInvalidArgument,
                    k.origin + ": kind '" + k.kind + "': no workflow '" + type + "' (put it in workflows.d)");
            }
        }
    }
    if (!ext.kinds.empty() && !options_.kinds) {
        return MakeError(ErrorCode::kInvalidArgument,
                         ext.kinds.front().origin + ": this control plane serves no declared kinds");
    }
    if (options_.kinds) COGS_TRY(options_.kinds(ext.kinds, /*apply=*/false));
    COGS_TRY(registry_.RegisterAll(std::move(defs)));
    // Checked above: taking them cannot fail now (same io turn: no record came or went).
    if (options_.kinds) COGS_TRY(options_.kinds(ext.kinds, /*apply=*/true));

    catalog_ = std::move(next);
    for (const auto& [name, a] : applied) {
        engine_.ConfigureService(name, a.entry.max_inflight, a.entry.breaker);
    }
    services_ = std::move(applied);
    hooks_ = std::move(ext.hooks);
    kinds_ = std::move(ext.kinds);
    ++reloads_;
    applied_ms_ = WallNowMs();
    return Describe();
}

std::string ExtensionHost::Describe() const {
    json::array services;
    for (const auto& [name, a] : services_) {
        const ServiceEntry& e = a.entry;
        json::array actions(e.actions.begin(), e.actions.end());
        services.push_back(
            json::object{{"name", e.name},
                         {"url", e.url},
                         {"credential", e.insecure ? "none (insecure)" : "token file " + e.token_file},
                         {"actions", std::move(actions)},
                         {"timeout_ms", Ms(e.timeout)},
                         {"max_inflight", e.max_inflight},
                         {"max_connections", e.max_connections},
                         {"breaker", json::object{{"failures", e.breaker.failure_threshold},
                                                  {"open_for_ms", Ms(e.breaker.open_for)},
                                                  {"max_open_for_ms", Ms(e.breaker.max_open_for)}}},
                         {"defined_at", e.origin}});
    }
    json::array hooks;
    for (const workflow::Hook& h : hooks_) {
        hooks.push_back(
            json::object{{"name", h.step.name},
                         {"workflow", h.workflow},
                         {h.after.empty() ? "before" : "after", h.after.empty() ? h.before : h.after},
                         {"action", h.step.action.FullName()},
                         {"defined_at", h.origin}});
    }
    json::array kinds;
    for (const cloud::KindSpec& k : kinds_) {
        json::array fields;
        for (const cloud::FieldSpec& f : k.fields)
            fields.emplace_back(f.name);
        kinds.push_back(json::object{{"kind", k.kind},
                                     {"plural", k.plural},
                                     {"path", "/v1/" + k.plural},
                                     {"quota", k.quota},
                                     {"fields", std::move(fields)},
                                     {"create", k.create_workflow},
                                     {"delete", k.delete_workflow},
                                     {"defined_at", k.origin}});
    }
    json::array workflows;
    for (const std::string& type : registry_.Types()) {
        const workflow::Definition* d = registry_.Latest(type);
        workflows.push_back(json::object{{"type", type}, {"version", d == nullptr ? 0 : d->version}});
    }
    return json::serialize(json::object{{"config_dir", options_.config_dir},
                                        {"reloads", reloads_},
                                        {"applied_at_ms", applied_ms_},
                                        {"services", std::move(services)},
                                        {"hooks", std::move(hooks)},
                                        {"kinds", std::move(kinds)},
                                        {"workflows", std::move(workflows)}});
}

}  // namespace cogs::extend
