#include "cogs/services/compute/router.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <map>
#include <tuple>

#include "cogs/http/client.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {
namespace {

namespace json = boost::json;

class ComputeRouter final : public workflow::ServiceClient {
public:
    ComputeRouter(boost::asio::io_context& io, HostLookup lookup, size_t connections,
                  std::shared_ptr<http::TlsContext> tls)
        : io_(io), lookup_(std::move(lookup)), connections_(connections), tls_(std::move(tls)) {}

    void Invoke(workflow::ActionCall call, Callback done) override {
        Route(std::move(call), std::move(done), false);
    }
    void Status(workflow::ActionCall call, Callback done) override {
        Route(std::move(call), std::move(done), true);
    }
    std::string Endpoint(const workflow::ActionCall& call) const override {
        return wire::Str(wire::ParseObject(call.input), "host");
    }

private:
    // The answer to a delete or stop that has nothing to do (never placed, or a fenced host).
    static std::string NothingToDo(const workflow::ActionCall& call) {
        const json::object in = wire::ParseObject(call.input);
        if (call.action == "stop_instance") {
            return json::serialize(json::object{
                {"id", wire::Str(in, "id")}, {"host", wire::Str(in, "host")}, {"state", "SHUTOFF"}});
        }
        if (call.action == "detach_volumes") {
            // A host that is gone holds no mount the control plane can reach (its instances are
            // stopped by its fencing; the volume moves on with a forced detach).
            json::object out{
                {"id", wire::Str(in, "id")}, {"host", wire::Str(in, "host")}, {"volume_ids", json::array()}};
            if (const json::value* ids = in.if_contains("volume_ids"); ids != nullptr && ids->is_array()) {
                out["volume_ids"] = *ids;
            }
            return json::serialize(out);
        }
        return json::serialize(json::object{{"id", wire::Str(in, "id")}, {"deleted", false}});
    }

    void Route(workflow::ActionCall call, Callback done, bool status) {
        const std::string host = Endpoint(call);
        int64_t epoch = 0;
        Result<workflow::ServiceClient*> to = ClientFor(call, host, &epoch);
        if (!to || *to == nullptr) {
            Result<workflow::ActionReply> r = workflow::ActionReply{false, NothingToDo(call)};
            if (!to) {
                r = MakeError(to.error());
            }
            return boost::asio::post(
                io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
        }
        if (status) {
            (*to)->Status(std::move(call), std::move(done));
            return;
        }
        if (epoch > 0 && (call.action == "create_instance" || call.action == "start_instance" ||
                          call.action == "reboot_instance")) {
            // The host's lease epoch as of this send: its agent refuses the call if the host has
            // been down and taken in again since (it may have been given up and undone meanwhile).
            json::object in = wire::ParseObject(call.input);
            in["lease_epoch"] = epoch;
            call.input = json::serialize(in);
        }
        (*to)->Invoke(std::move(call), std::move(done));
    }

    // The agent's client; nullptr when there is nothing to do (see router.h).
    Result<workflow::ServiceClient*> ClientFor(const workflow::ActionCall& call, const std::string& host,
                                               int64_t* epoch) {
        if (host.empty()) {
            if (call.action == "delete_instance" || call.action == "detach_volumes") return nullptr;
            return MakeError(ErrorCode::kInvalidArgument, "compute: host: required");
        }
        const auto route = lookup_(host);
        const auto endpoint = route ? http::ParseHttpUrl(route->url) : std::nullopt;
        if (!endpoint) {
            return MakeError(ErrorCode::kFailedPrecondition, "compute: host " + host + " is not registered");
        }
        if (route->down) {
            if (call.action == "delete_instance" || call.action == "stop_instance" ||
                call.action == "detach_volumes") {
                return nullptr;
            }
            return MakeError(ErrorCode::kFailedPrecondition, "compute: host " + host + " is down");
        }
        *epoch = route->lease_epoch;
        if (endpoint->tls && tls_ == nullptr) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "compute: host " + host + " registered an https URL but cogsd has no --tls-ca");
        }
        // One pool per agent URL, whatever the number of hosts it serves; each host's calls present
        // its own token (a host enrolled again presents its new one at once; the old client stays for
        // the calls it still carries) and, over TLS, go only over a connection whose certificate
        // names the host.
        auto key = std::tuple(route->url, endpoint->tls ? host : std::string(), route->token);
        auto it = clients_.find(key);
        if (it == clients_.end()) {
            auto& agent = agents_[route->url];
            if (agent == nullptr) {
                agent = kit::MakeSharedHttpService(io_, endpoint->host, endpoint->port, "compute",
                                                   connections_, endpoint->tls ? tls_ : nullptr);
            }
            it = clients_.emplace(std::move(key), agent->As(route->token, endpoint->tls ? host : "")).first;
        }
        return it->second.get();
    }

    boost::asio::io_context& io_;
    HostLookup lookup_;
    size_t connections_;
    std::shared_ptr<http::TlsContext> tls_;
    std::map<std::string, std::shared_ptr<kit::SharedHttpService>> agents_;  // by agent URL
    // by (agent URL, host (over TLS), token)
    std::map<std::tuple<std::string, std::string, std::string>, std::shared_ptr<workflow::ServiceClient>>
        clients_;
};

}  // namespace

std::shared_ptr<workflow::ServiceClient> MakeComputeRouter(boost::asio::io_context& io, HostLookup lookup,
                                                           size_t connections,
                                                           std::shared_ptr<http::TlsContext> tls) {
    return std::make_shared<ComputeRouter>(io, std::move(lookup), connections, std::move(tls));
}

}  // namespace cogs::services::compute
