#include "cogs/cloud/resources/networks.h"

#include "cogs/netaddr/subnet.h"

namespace cogs::cloud {

using wire::Input;
using wire::Text;

Networks::Networks(Context& ctx) : ctx_(ctx) {
    ctx_.OnSettle("network.create",
                  [this](Settlement& s) { SettleCreate(s, kNetwork, "network_id", "create_network"); });
    ctx_.OnSettle("subnet.create",
                  [this](Settlement& s) { SettleCreate(s, kSubnet, "subnet_id", "create_subnet"); });
    ctx_.OnSettle("port.create", [this](Settlement& s) { SettleCreate(s, kPort, "port_id", "create_port"); });
    ctx_.OnSettle("network.delete",
                  [](Settlement& s) { s.SettleDelete(kNetwork, "network_id", ToString(NetStatus::kError)); });
    ctx_.OnSettle("subnet.delete",
                  [](Settlement& s) { s.SettleDelete(kSubnet, "subnet_id", ToString(NetStatus::kError)); });
    ctx_.OnSettle("port.delete",
                  [](Settlement& s) { s.SettleDelete(kPort, "port_id", ToString(NetStatus::kError)); });
}

Res Networks::NewPort(const Context& ctx, const std::string& project, const std::string& network,
                      const std::string& name, const std::string& device) {
    Res p = ctx.NewRes(kPort, project);
    p.body["name"] = name;
    p.body["network_id"] = network;
    p.body["subnet_id"] = "";
    p.body["mac_address"] = "";
    p.body["fixed_ip"] = "";
    p.body["device_id"] = device;
    p.set_status(NetStatus::kBuild);
    p.body["_quota"] = true;
    return p;
}

Result<const Res*> Networks::ActiveNetwork(const Principal& who, const Input& body) const {
    COGS_ASSIGN_OR_RETURN(auto net_id, body.String("network_id"));
    const Res* net = ctx_.model.Find(kNetwork, net_id);
    if (net == nullptr || !Visible(who, *net)) {
        return MakeError(FieldError("network_id", "no network " + net_id));
    }
    if (!net->is(NetStatus::kActive)) {
        return MakeError(ErrorCode::kConflict,
                         "network " + net_id + " is " + net->status_text() + ", not ACTIVE");
    }
    return net;
}

std::vector<Networks::KnownSubnet> Networks::SubnetsOf(const std::string& network_id) const {
    std::vector<KnownSubnet> out;
    for (const Res* s : ctx_.model.Having(kSubnet, "network_id", network_id)) {
        // The record holds the layout under the names a request has, so the same reader reads it.
        // One it refuses was accepted before cogsd checked, and refused by the service: not there.
        auto layout = netaddr::ReadSubnetLayout(Input(s->body));
        if (!layout) continue;
        out.push_back({s->id, std::move(*layout)});
    }
    return out;
}

void Networks::CreateNetwork(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "project_id"}));
        COGS_ASSIGN_OR_RETURN(auto project, OwnerOf(ctx_, c.who(), in));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_TRY(ctx_.model.Reserve(project, Amount{.networks = 1}));
        Res n = ctx_.NewRes(kNetwork, project);
        n.body["name"] = name;
        n.set_status(NetStatus::kBuild);
        n.body["_quota"] = true;
        return n;
    }();
    if (!made) return c.call.Fail(made.error());
    json::object input{
        {"network_id", made->id}, {"project_id", made->project}, {"name", Str(made->body, "name")}};
    StartCreate(ctx_, c, std::move(*made), "network.create", std::move(input));
}

void Networks::CreateSubnet(Creation c) {
    json::object request;
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "network_id", "cidr", "gateway_ip",
                                                                  "allocation_pools"}));
        COGS_ASSIGN_OR_RETURN(auto name, in.OptionalString("name", Text{.max_len = 64, .allow_empty = true}));
        COGS_ASSIGN_OR_RETURN(const netaddr::SubnetLayout layout, netaddr::ReadSubnetLayout(in));
        COGS_ASSIGN_OR_RETURN(const Res* net, ActiveNetwork(c.who(), in));
        for (const KnownSubnet& other : SubnetsOf(net->id)) {
            COGS_TRY(netaddr::CheckNoOverlap(in, layout.cidr, net->id,
                                             {other.id, other.layout.cidr, other.layout.pools}));
        }
        COGS_TRY(ctx_.model.Reserve(net->project, Amount{.subnets = 1}));
        Res s = ctx_.NewRes(kSubnet, net->project);
        s.body["name"] = name.value_or("");
        s.body["network_id"] = net->id;
        s.body["cidr"] = layout.cidr.ToString();
        s.body["gateway_ip"] = netaddr::FormatIpv4(layout.gateway);
        s.body["allocation_pools"] = netaddr::PoolsJson(layout.pools);
        s.set_status(NetStatus::kBuild);
        s.body["_quota"] = true;
        // The layout with its defaults filled in: the service computes the same (the same rules).
        request = {{"id", s.id},
                   {"network_id", net->id},
                   {"cidr", s.body["cidr"]},
                   {"gateway_ip", s.body["gateway_ip"]},
                   {"allocation_pools", s.body["allocation_pools"]},
                   {"project_id", net->project},
                   {"name", name.value_or("")}};
        return s;
    }();
    if (!made) return c.call.Fail(made.error());
    json::object input{{"subnet_id", made->id}, {"request", std::move(request)}};
    StartCreate(ctx_, c, std::move(*made), "subnet.create", std::move(input));
}

void Networks::CreatePort(Creation c) {
    json::object request;
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "network_id", "fixed_ip"}));
        COGS_ASSIGN_OR_RETURN(const Res* net, ActiveNetwork(c.who(), in));
        COGS_ASSIGN_OR_RETURN(auto name, in.OptionalString("name", Text{.max_len = 64, .allow_empty = true}));
        COGS_ASSIGN_OR_RETURN(const auto fixed_ip, netaddr::ReadOptionalAddress(in, "fixed_ip"));
        std::string subnet_id;
        if (fixed_ip) {
            COGS_ASSIGN_OR_RETURN(subnet_id, CheckFixedIp(in, net->id, *fixed_ip));
        }
        COGS_TRY(ctx_.model.Reserve(net->project, Amount{.ports = 1}));
        Res port = NewPort(ctx_, net->project, net->id, name.value_or(""), "");
        request = {{"id", port.id},
                   {"network_id", net->id},
                   {"project_id", net->project},
                   {"name", name.value_or("")}};
        if (fixed_ip) {
            // Held from now on: the next request for it is refused here, and the subnet cannot be
            // deleted under it.
            port.body["fixed_ip"] = netaddr::FormatIpv4(*fixed_ip);
            port.body["subnet_id"] = subnet_id;
            request["fixed_ip"] = port.body["fixed_ip"];
        }
        return port;
    }();
    if (!made) return c.call.Fail(made.error());
    json::object input{{"port_id", made->id}, {"request", std::move(request)}};
    StartCreate(ctx_, c, std::move(*made), "port.create", std::move(input));
}

Result<std::string> Networks::CheckFixedIp(const Input& in, const std::string& network_id,
                                           uint32_t ip) const {
    const std::vector<KnownSubnet> subnets = SubnetsOf(network_id);
    std::vector<netaddr::SubnetRef> refs;
    for (const KnownSubnet& s : subnets) {
        refs.push_back({s.id, s.layout.cidr, s.layout.pools});
    }
    COGS_ASSIGN_OR_RETURN(const size_t i,
                          netaddr::SubnetForFixedIp(in, "fixed_ip", ip, network_id, refs, false));
    const std::string text = netaddr::FormatIpv4(ip);
    for (const Res* p : ctx_.model.Having(kPort, "network_id", network_id)) {
        if (Str(p->body, "fixed_ip") == text) {
            return MakeError(netaddr::AddressInUse(in, "fixed_ip", ip, p->id));
        }
    }
    return subnets[i].id;
}

void Networks::Delete(Call call, std::string_view kind) {
    const std::string id = call.Param("id");
    auto found = [&]() -> Result<Res*> {
        COGS_ASSIGN_OR_RETURN(Res * r, FindToChange(ctx_, call, kind));
        if (kind == kNetwork) {
            for (auto k : {kSubnet, kPort}) {
                if (const auto& on = ctx_.model.Having(k, "network_id", id); !on.empty()) {
                    return MakeError(ErrorCode::kConflict, "network " + id + " still has " + std::string(k) +
                                                               " " + (*on.begin())->id);
                }
            }
        } else if (kind == kSubnet) {
            if (const auto& on = ctx_.model.Having(kPort, "subnet_id", id); !on.empty()) {
                return MakeError(ErrorCode::kConflict,
                                 "subnet " + id + " still has port " + (*on.begin())->id);
            }
        } else if (!Str(r->body, "device_id").empty()) {
            return MakeError(ErrorCode::kConflict,
                             "port " + id + " belongs to server " + Str(r->body, "device_id"));
        }
        return r;
    }();
    if (!found) return call.Fail(found.error());
    StartAndAnswer(ctx_,
                   ctx_.Transition(**found, ToString(NetStatus::kDeleting), std::string(kind) + ".delete",
                                   {{std::string(kind) + "_id", id}}, call.traceparent),
                   call);
}

void Networks::SettleCreate(Settlement& s, std::string_view kind, std::string_view id_field,
                            std::string_view step) {
    Res* r = s.Mine(kind, s.In(id_field));
    if (r == nullptr) return;
    if (s.ok()) {
        r->set_status(NetStatus::kActive);
        json::object out = s.Output(step);
        for (const char* k : {"gateway_ip", "allocation_pools", "mac_address", "fixed_ip", "subnet_id"}) {
            if (out.contains(k)) r->body[k] = out.at(k);
        }
        s.Note(*r, "active", std::string(kind) + " is ACTIVE");
        s.Save(*r);
        return;
    }
    s.FailCreate(*r, ToString(NetStatus::kError));
}

}  // namespace cogs::cloud
