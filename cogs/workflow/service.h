// How the engine calls a micro-service: ServiceClient, one per service name, found through the
// ServiceCatalog. Transports (in-process, HTTP) implement it; the engine never sees which.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::workflow {

struct ActionCall {
    std::string service;
    std::string action;
    std::string idempotency_key;  // "<workflow id>/<step>/<do|undo>": stable across retries and restarts
    std::string input;            // JSON text
    SteadyTime deadline;          // the attempt must be answered by then
    std::string traceparent;      // W3C trace context, carried to the service
};

struct ActionReply {
    bool accepted = false;  // true: a long action is under way; poll Status() with the same key
    std::string output;     // JSON text; meaningful when !accepted
};

class ServiceClient {
public:
    using Callback = std::function<void(Result<ActionReply>)>;
    virtual ~ServiceClient() = default;

    // Performs the action. `done` is called exactly once, on the executor the client was built
    // with, no later than shortly after call.deadline: with the reply, a definitive error
    // (non-retryable: nothing was applied), or a retryable one (outcome unknown; kDeadlineExceeded
    // when the deadline passed). The same key always yields the original outcome.
    virtual void Invoke(ActionCall call, Callback done) = 0;

    // The state of an accepted action with this key (call.input carries the action's input, for
    // clients that route by it; services ignore it): accepted=true while
    // it runs, the output once done, or a definitive error if it failed.
    virtual void Status(ActionCall call, Callback done) = 0;

    // The endpoint a call goes to, for per-endpoint circuit breakers: "" = the service as a whole.
    // The engine keys its breakers by (service, Endpoint(call)) and asks before every action,
    // compensation and poll, with call.input rendered (no deadline or traceparent yet); a routing
    // client (e.g. to the compute host named in the input) returns the host, so that one dead
    // host does not hold back calls to the others. Cheap and pure: called on the engine's thread.
    virtual std::string Endpoint(const ActionCall& /*call*/) const { return ""; }
};

// Maps a service name to its client and the actions it has. Workflows name actions
// `service.action`; CheckServices (definition.h) refuses a definition naming a service or an action
// the catalog lacks. cogsd fills it with the built-in services and those of its configuration
// (cogs/extend): a reload replaces or removes entries between engine turns.
class ServiceCatalog {
public:
    // `actions` empty: any action (tests, and the simulator, which answers every name).
    void Add(const std::string& service, std::shared_ptr<ServiceClient> client,
             std::vector<std::string> actions = {}) {
        entries_[service] = Entry{std::move(client), {actions.begin(), actions.end()}};
    }
    void Remove(const std::string& service) { entries_.erase(service); }
    ServiceClient* Find(const std::string& service) const {
        auto it = entries_.find(service);
        return it == entries_.end() ? nullptr : it->second.client.get();
    }
    // Whether `service` is catalogued and has `action`.
    bool Has(const std::string& service, const std::string& action) const {
        auto it = entries_.find(service);
        return it != entries_.end() && (it->second.actions.empty() || it->second.actions.contains(action));
    }
    // The actions of `service`, in order; empty for an unknown service or one with any action.
    std::vector<std::string> Actions(const std::string& service) const {
        auto it = entries_.find(service);
        return it == entries_.end()
                   ? std::vector<std::string>()
                   : std::vector<std::string>(it->second.actions.begin(), it->second.actions.end());
    }
    // The services' names, in order.
    std::vector<std::string> Names() const {
        std::vector<std::string> names;
        for (const auto& [name, entry] : entries_)
            names.push_back(name);
        return names;
    }

private:
    struct Entry {
        std::shared_ptr<ServiceClient> client;
        std::set<std::string> actions;
    };
    std::map<std::string, Entry> entries_;
};

}  // namespace cogs::workflow
