// The linux driver's hooks in the domain: a network's bridge is made before create_network answers
// and removed after delete_network, and a periodic sweep collects what nothing owns (bridges.h).
#include <boost/json/serialize.hpp>

#include "cogs/services/network/internal/network_domain.h"
#include "cogs/services/network/network.h"

namespace cogs::services::network::internal {

NetworkDomain::NetworkDomain(std::unique_ptr<Bridges> bridges, Duration sweep_interval)
    : bridges_(std::move(bridges)), sweep_interval_(sweep_interval) {}

NetworkDomain::~NetworkDomain() = default;

void NetworkDomain::Bind(kit::DomainContext& context) {
    context_ = &context;
    if (!bridges_) {
        return;
    }
    bridges_->Bind(context.io());
    bridges_->StartSweeps(sweep_interval_, [this] { return Owners(); });
}

kit::Done NetworkDomain::Ensured(const Network& n) {
    kit::Done done = Output(NetworkJson(n));
    if (!bridges_ || context_ == nullptr) {
        return done;
    }
    // The wait's name is the network's: a second create of it (another key) waits for the same
    // bridge; a delete never waits (below), so no delete's answer ends a create's wait.
    std::string wait = "bridge/" + n.id;
    bridges_->Ensure(n.id, [this, wait, output = done.output](Status s) {
        context_->Finish(wait, s ? Result<std::string>(output) : Result<std::string>(MakeError(s.error())));
    });
    done.wait_for = std::move(wait);
    return done;
}

std::pair<std::set<std::string>, std::set<std::string>> NetworkDomain::Owners() const {
    std::pair<std::set<std::string>, std::set<std::string>> owners;
    for (const auto& [id, n] : networks_) {
        owners.first.insert(id);
    }
    for (const auto& [id, p] : ports_) {
        owners.second.insert(id);
    }
    return owners;
}

}  // namespace cogs::services::network::internal

namespace cogs::services::network {

Result<std::unique_ptr<kit::Domain>> MakeNetworkDomain(NetworkOptions options) {
    if (options.driver == "none") {
        return MakeNetworkDomain();
    }
    if (options.driver != "linux") {
        return MakeError(ErrorCode::kInvalidArgument,
                         "driver: must be none or linux, not '" + options.driver + "'");
    }
    if (options.sweep_interval < Duration::zero()) {
        return MakeError(ErrorCode::kInvalidArgument, "sweep interval: must be >= 0");
    }
    COGS_ASSIGN_OR_RETURN(auto bridges,
                          internal::Bridges::Make({.prefix = options.prefix, .ip = options.ip}));
    return std::unique_ptr<kit::Domain>(
        std::make_unique<internal::NetworkDomain>(std::move(bridges), options.sweep_interval));
}

}  // namespace cogs::services::network
