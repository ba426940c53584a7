#include "cogs/services/compute/internal/instance_fields.h"

#include "cogs/netaddr/ipv4.h"
#include "cogs/wire/base64.h"

namespace cogs::services::compute::internal {
namespace {

// An optional string where "" is "not given".
Result<std::string> Optional(const wire::Input& in, std::string_view field, wire::Text text) {
    COGS_ASSIGN_OR_RETURN(auto value, in.OptionalString(field, text));
    return value.value_or("");
}

}  // namespace

Status ReadPlugFields(const wire::Input& in, wire::Text text, InstanceSpec& spec) {
    COGS_ASSIGN_OR_RETURN(spec.network_id, Optional(in, "network_id", text));
    COGS_ASSIGN_OR_RETURN(spec.cidr, Optional(in, "cidr", text));
    COGS_ASSIGN_OR_RETURN(spec.gateway_ip, Optional(in, "gateway_ip", text));
    std::optional<netaddr::Cidr> cidr;
    if (!spec.cidr.empty()) {
        const netaddr::CidrParse parsed = netaddr::ParseCidr(spec.cidr);
        if (!parsed.cidr) {
            return MakeError(in.Invalid("cidr", parsed.problem));
        }
        cidr = parsed.cidr;
    }
    for (auto [field, value] :
         {std::pair{"ip_address", &spec.ip_address}, std::pair{"gateway_ip", &spec.gateway_ip}}) {
        if (value->empty() || !cidr) {
            continue;
        }
        const auto ip = netaddr::ParseIpv4(*value);
        if (!ip || !cidr->IsHost(*ip)) {
            return MakeError(
                in.Invalid(field, "must be a host address of " + spec.cidr + ", not '" + *value + "'"));
        }
    }
    if (!spec.gateway_ip.empty() && !cidr) {
        return MakeError(in.Invalid("gateway_ip", "needs the subnet's cidr"));
    }
    if (!spec.gateway_ip.empty() && spec.gateway_ip == spec.ip_address) {
        return MakeError(in.Invalid("gateway_ip", "is the instance's own address"));
    }
    COGS_ASSIGN_OR_RETURN(auto user_data, wire::OptionalBase64(in, "user_data", kMaxUserData));
    spec.user_data = user_data.value_or("");
    text.max_len = kMaxPublicKeyBytes;
    text.allow_empty = false;
    COGS_ASSIGN_OR_RETURN(
        spec.public_keys,
        in.StringList("public_keys", wire::List{.max_items = kMaxPublicKeys, .item = text}));
    return Ok();
}

void WritePlugFields(const InstanceSpec& spec, wire::json::object& record) {
    record["network_id"] = spec.network_id;
    record["cidr"] = spec.cidr;
    record["gateway_ip"] = spec.gateway_ip;
    record["user_data"] = wire::EncodeBase64(spec.user_data);
    record["public_keys"] = wire::ToArray(spec.public_keys);
}

bool SamePlugFields(const InstanceSpec& a, const InstanceSpec& b) {
    return a.network_id == b.network_id && a.cidr == b.cidr && a.gateway_ip == b.gateway_ip &&
           a.user_data == b.user_data && a.public_keys == b.public_keys;
}

bool PlugsPort(const InstanceSpec& spec) {
    return !spec.port_id.empty() && !spec.mac_address.empty() && !spec.ip_address.empty() &&
           !spec.network_id.empty() && !spec.cidr.empty();
}

}  // namespace cogs::services::compute::internal
