// The OpenStack face's translations of /v1's views (docs/api.md) into the OpenStack APIs' own, and
// of cogs' errors into each API's error shape. Pure: no model, no I/O (face.h gathers what they
// need), so each can be tested on its own (openstack_views_test.cc).
#pragma once

#include <boost/json/object.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "cogs/http/server.h"

namespace cogs::cloud::openstack {

namespace json = boost::json;

// The services of the face, by the first segment of their paths.
enum class Service { kIdentity, kCompute, kNetwork, kVolume, kImage };
// The service a path of the face belongs to ("/compute/..." compute, "/v3/..." and "/" identity).
Service ServiceOf(std::string_view path);

// A cogs error answer (`{"code","message","details"}`) in the shape of `service`'s API — Nova's and
// Cinder's `{"itemNotFound": {"code": 404, "message"}}`, Neutron's `{"NeutronError": {"type",
// "message", "detail"}}`, Keystone's and Glance's `{"error": {"code", "title", "message"}}` — with
// its status and headers (Retry-After, ...) kept. A 401 from identity says WWW-Authenticate Keystone.
http::Response Reshape(Service service, http::Response error);

// Nova's server status, vm_state, task_state (null: none) and power_state of a cogs server status.
struct NovaState {
    std::string_view status;
    std::string_view vm_state;
    std::string_view task_state;  // "" for null
    int power_state;
};
NovaState NovaStateOf(std::string_view cogs_status);

// `base` is the face's URL ("http://host:port"); `network_name(id)` the name of a network of the
// server's ("" if unknown); `admin` adds the OS-EXT-SRV-ATTR fields.
json::object NovaServer(const json::object& server, const std::string& base,
                        const std::function<std::string(const std::string&)>& network_name, bool admin);
json::object NovaFlavor(const json::object& flavor, const std::string& base);
json::object NovaServerGroup(const json::object& group, json::array members);
// A key pair as Nova shows it: {name, public_key, fingerprint, type: "ssh"} (an entry of its list);
// `detail` (its show) adds user_id "", id (cogs'), created_at, and the fields of a record never
// deleted (updated_at, deleted false, deleted_at).
json::object NovaKeypair(const json::object& keypair, bool detail);
// Where a volume is inside its server: cogs mounts it at /volumes/<id> (Nova's and Cinder's
// "device").
std::string AttachedAt(const std::string& volume_id);
// An entry of os-volume_attachments.
json::object NovaAttachment(const std::string& server_id, const std::string& volume_id);

json::object NeutronNetwork(const json::object& network, json::array subnet_ids);
json::object NeutronSubnet(const json::object& subnet);
json::object NeutronPort(const json::object& port);

json::object CinderVolume(const json::object& volume, const std::string& base, bool admin);

json::object GlanceImage(const json::object& image);

// Keystone's role names are cogs' (admin, member, reader).
json::object KeystoneToken(const std::string& base, const std::string& user_id, const std::string& user_name,
                           const std::string& project_id, const std::string& project_name,
                           std::string_view role, const std::string& method, const std::string& issued_at,
                           const std::string& expires_at, bool with_catalog);

// The version documents: identity's at "/" (300, every version) and "/v3"; compute's, network's,
// volume's and image's at their roots.
json::object IdentityVersions(const std::string& base);
json::object IdentityVersion(const std::string& base);
json::object ComputeVersions(const std::string& base);
json::object ComputeVersion(const std::string& base);
json::object NetworkVersions(const std::string& base);
json::object VolumeVersions(const std::string& base);
json::object ImageVersions(const std::string& base);

}  // namespace cogs::cloud::openstack
