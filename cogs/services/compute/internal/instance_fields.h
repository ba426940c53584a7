// The fields of create_instance (and of an instance's record) that say how its port is plugged and
// what user_data it runs and which SSH keys it is given: read, checked and written back in one place, so that
// the action, the record and the comparison of a re-sent create agree.
//
//   network_id  the port's network (its bridge on the host)
//   cidr        the port's subnet, "10.0.0.0/24": its prefix length goes with ip_address
//   gateway_ip  the subnet's gateway: the instance's default route
//   user_data   base64 (as Nova's), at most kMaxUserData bytes decoded; the container driver writes
//               it into the instance and runs it as a shell script
//   public_keys [OpenSSH public key lines], at most kMaxPublicKeys of kMaxPublicKeyBytes each, one
//               line each; the container driver writes them into the instance (meta.json and
//               /run/cogs/authorized_keys). Absent or null: none (a create from before they existed)
//
// All optional: absent, null and "" mean "not given" (a workflow template renders a missing value as
// null). A port is plugged only when port_id, mac_address, ip_address, network_id and cidr are all
// given (PlugsPort). Errors: kInvalidArgument naming the field: a cidr that is not a block ("cidr:
// ..."), an ip_address or gateway_ip that is not a host address of the cidr, a gateway_ip without a
// cidr, user_data not base64 or too large ("user_data: must be at most 65536 bytes once decoded").
//
// Threading: pure functions.
#pragma once

#include <cstddef>

#include "cogs/base/result.h"
#include "cogs/services/compute/compute.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute::internal {

// Nova's limit on user_data is 64 KiB of base64 text; cogs counts the decoded bytes.
inline constexpr size_t kMaxUserData = 64 * 1024;
// cogsd gives one (a server's key pair's); room for more. 16 KiB each, as cogsd takes them.
inline constexpr size_t kMaxPublicKeys = 16;
inline constexpr size_t kMaxPublicKeyBytes = 16 * 1024;

// Reads the fields above into `spec` (whose ip_address is read already). `text` as ReadInstance's.
Status ReadPlugFields(const wire::Input& in, wire::Text text, InstanceSpec& spec);
// Writes them into a record: user_data as base64 again, public_keys as a list.
void WritePlugFields(const InstanceSpec& spec, wire::json::object& record);
// Whether both specs name the same plugging, user_data and public keys.
bool SamePlugFields(const InstanceSpec& a, const InstanceSpec& b);
// Whether the instance has a port to plug: port_id, mac_address, ip_address, network_id and cidr.
bool PlugsPort(const InstanceSpec& spec);

}  // namespace cogs::services::compute::internal
