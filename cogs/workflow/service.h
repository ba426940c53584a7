// How the engine calls a micro-service: ServiceClient, one per service name, found through the
// ServiceCatalog. Transports (in-process, HTTP) implement it; the engine never sees which.
#pragma once

#include <functional>
#include <map>
#include <memory>
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

// Maps a service name to its client. Workflows name actions `service.action`.
class ServiceCatalog {
public:
    void Add(const std::string& service, std::shared_ptr<ServiceClient> client) {
        clients_[service] = std::move(client);
    }
    ServiceClient* Find(const std::string& service) const {
        auto it = clients_.find(service);
        return it == clients_.end() ? nullptr : it->second.get();
    }
    // The services' names, in order.
    std::vector<std::string> Names() const {
        std::vector<std::string> names;
        for (const auto& [name, client] : clients_)
            names.push_back(name);
        return names;
    }

private:
    std::map<std::string, std::shared_ptr<ServiceClient>> clients_;
};

}  // namespace cogs::workflow
