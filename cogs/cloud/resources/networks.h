// Networks, subnets and ports: each created and deleted by a workflow on cogs-network
// (workflows/cloud/networks.yaml), BUILD / DELETING while it runs, then ACTIVE, gone, or ERROR
// with the workflow's reason. A port holds a quota unit from its create until it is gone; a
// server's own port is made and settled by the server's workflows (servers.cc).
//
// Refused before anything is written: a network, subnet or port of another project (404, or 400
// naming network_id), a network that is not ACTIVE (409), deleting a network that still has
// subnets or ports, a subnet that still has ports, or a server's port (409). What cogs-network
// would refuse is refused here first, by the same rules (cogs/netaddr/subnet.h): a subnet's cidr,
// gateway and pools (400 naming the field), its overlap with another subnet of the network (409
// naming cidr); a port's fixed_ip outside every subnet's pools (400) or held by another port (409).
// Those checks see the model; two requests that race past them are settled by the service.
#pragma once

#include <vector>

#include "cogs/cloud/resources/common.h"
#include "cogs/netaddr/subnet.h"

namespace cogs::cloud {

class Networks {
public:
    // Registers the settle functions of network.*, subnet.*, port.*.
    explicit Networks(Context& ctx);

    void CreateNetwork(Creation c);
    void CreateSubnet(Creation c);
    void CreatePort(Creation c);
    // DELETE /v1/networks|subnets|ports/{id}.
    void Delete(Call call, std::string_view kind);

    // A port record in BUILD holding its quota unit (also a server's own port).
    static Res NewPort(const Context& ctx, const std::string& project, const std::string& network,
                       const std::string& name, const std::string& device);

private:
    // The body's network_id: one the caller may use (else 400 naming the field), ACTIVE (else 409).
    Result<const Res*> ActiveNetwork(const Principal& who, const wire::Input& body) const;
    // A subnet as cogsd holds it: its layout read back from its record.
    struct KnownSubnet {
        std::string id;
        netaddr::SubnetLayout layout;
    };
    // The subnets of `network_id` in the model, whatever their status (one in ERROR may still be at
    // the service), but those whose layout the rules refuse (made before cogsd checked them, so
    // refused by the service).
    std::vector<KnownSubnet> SubnetsOf(const std::string& network_id) const;
    // The subnet a requested address goes to (netaddr's rule over SubnetsOf), refused naming
    // fixed_ip: 400 in no subnet or outside the pools, 409 held by a port of the model.
    Result<std::string> CheckFixedIp(const wire::Input& in, const std::string& network_id, uint32_t ip) const;
    void SettleCreate(Settlement& s, std::string_view kind, std::string_view id_field, std::string_view step);
    Context& ctx_;
};

}  // namespace cogs::cloud
