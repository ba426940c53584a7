#include "cogs/cloud/openstack/views.h"

#include <boost/json/serialize.hpp>

#include "cogs/base/secret.h"
#include "cogs/wire/input.h"

namespace cogs::cloud::openstack {

using wire::Int;
using wire::Str;
using wire::StrList;

namespace {

json::value OrNull(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

json::array Links(const std::string& self, const std::string& bookmark) {
    return json::array{json::object{{"rel", "self"}, {"href", self}},
                       json::object{{"rel", "bookmark"}, {"href", bookmark}}};
}

// Nova and Cinder name their errors by status.
std::string_view NovaErrorKey(int status) {
    switch (status) {
        case 400: return "badRequest";
        case 401: return "unauthorized";
        case 403: return "forbidden";
        case 404: return "itemNotFound";
        case 405: return "badMethod";
        case 406: return "notAcceptable";
        case 409: return "conflictingRequest";
        case 413:
        case 429: return "overLimit";
        case 501: return "notImplemented";
        case 503: return "serviceUnavailable";
        default: return status >= 500 ? "computeFault" : "badRequest";
    }
}

std::string_view Title(int status) {
    switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 409: return "Conflict";
        case 413: return "Request Entity Too Large";
        case 429: return "Too Many Requests";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 507: return "Insufficient Storage";
        default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

// Neutron's exception type by status (and the cogs code, for a quota).
std::string_view NeutronType(int status, std::string_view code) {
    if (code == "quota_exceeded") return "OverQuota";
    switch (status) {
        case 400: return "HTTPBadRequest";
        case 401: return "HTTPUnauthorized";
        case 403: return "PolicyNotAuthorized";
        case 404: return "HTTPNotFound";
        case 409: return "InUse";
        case 501: return "HTTPNotImplemented";
        case 503: return "ServiceUnavailable";
        default: return status >= 500 ? "HTTPInternalServerError" : "HTTPBadRequest";
    }
}

json::object Version(std::string id, std::string status, const std::string& href, std::string updated) {
    return json::object{{"id", std::move(id)},
                        {"status", std::move(status)},
                        {"updated", std::move(updated)},
                        {"links", json::array{json::object{{"rel", "self"}, {"href", href}}}}};
}

}  // namespace

Service ServiceOf(std::string_view path) {
    if (path.starts_with("/compute")) return Service::kCompute;
    if (path.starts_with("/network")) return Service::kNetwork;
    if (path.starts_with("/volume")) return Service::kVolume;
    if (path.starts_with("/image")) return Service::kImage;
    return Service::kIdentity;
}

http::Response Reshape(Service service, http::Response error) {
    const json::object cogs = wire::ParseObject(error.body);
    std::string message = Str(cogs, "message");
    if (message.empty()) message = std::string(Title(error.status));
    const std::string code = Str(cogs, "code");
    json::object body;
    switch (service) {
        case Service::kCompute:
        case Service::kVolume:
            body[NovaErrorKey(error.status)] = json::object{{"code", error.status}, {"message", message}};
            break;
        case Service::kNetwork:
            body["NeutronError"] =
                json::object{{"type", NeutronType(error.status, code)}, {"message", message}, {"detail", ""}};
            break;
        case Service::kIdentity:
        case Service::kImage:
            body["error"] =
                json::object{{"code", error.status}, {"title", Title(error.status)}, {"message", message}};
            break;
    }
    error.body = json::serialize(body);
    error.content_type = "application/json";
    if (service == Service::kIdentity && error.status == 401) {
        std::erase_if(error.headers, [](const auto& h) { return h.first == "www-authenticate"; });
        error.headers.emplace_back("www-authenticate", "Keystone uri=\"/v3\"");
    }
    return error;
}

NovaState NovaStateOf(std::string_view s) {
    if (s == "BUILD") return {"BUILD", "building", "spawning", 0};
    if (s == "ACTIVE") return {"ACTIVE", "active", "", 1};
    if (s == "SHUTOFF") return {"SHUTOFF", "stopped", "", 4};
    if (s == "STARTING") return {"SHUTOFF", "stopped", "powering-on", 4};
    if (s == "STOPPING") return {"ACTIVE", "active", "powering-off", 1};
    if (s == "REBOOT") return {"REBOOT", "active", "rebooting", 1};
    if (s == "REBUILD") return {"REBUILD", "active", "rebuild_spawning", 0};
    if (s == "MIGRATING") return {"MIGRATING", "active", "migrating", 1};
    if (s == "DELETING") return {"ACTIVE", "active", "deleting", 0};
    if (s == "ERROR") return {"ERROR", "error", "", 0};
    return {"UNKNOWN", "", "", 0};
}

json::object NovaServer(const json::object& s, const std::string& base,
                        const std::function<std::string(const std::string&)>& network_name, bool admin) {
    const std::string id = Str(s, "id");
    const std::string project = Str(s, "project_id");
    const std::string host = Str(s, "host");
    const NovaState st = NovaStateOf(Str(s, "status"));
    json::object addresses;
    if (const std::string ip = Str(s, "ip_address"); !ip.empty()) {
        const std::string net = Str(s, "network_id");
        std::string name = network_name(net);
        addresses[name.empty() ? net : name] =
            json::array{json::object{{"version", 4},
                                     {"addr", ip},
                                     {"OS-EXT-IPS:type", "fixed"},
                                     {"OS-EXT-IPS-MAC:mac_addr", Str(s, "mac_address")}}};
    }
    json::array volumes;
    for (const std::string& v : StrList(s, "volume_ids")) {
        volumes.push_back(json::object{{"id", v}});
    }
    const std::string flavor = Str(s, "flavor_id");
    const std::string image = Str(s, "image_id");
    json::object o{
        {"id", id},
        {"name", Str(s, "name")},
        {"status", st.status},
        {"tenant_id", project},
        {"user_id", ""},
        {"metadata", json::object{}},
        // Nova's hostId: the host as the project sees it, opaque (two servers on one host match).
        {"hostId", host.empty() ? std::string() : Sha256Hex(project + host).substr(0, 56)},
        {"image",
         json::object{{"id", image},
                      {"links", json::array{json::object{{"rel", "bookmark"},
                                                         {"href", base + "/image/v2/images/" + image}}}}}},
        {"flavor",
         json::object{{"id", flavor},
                      {"links", json::array{json::object{{"rel", "bookmark"},
                                                         {"href", base + "/compute/flavors/" + flavor}}}}}},
        {"created", Str(s, "created_at")},
        {"updated", Str(s, "updated_at")},
        {"addresses", std::move(addresses)},
        {"accessIPv4", ""},
        {"accessIPv6", ""},
        {"links", Links(base + "/compute/v2.1/servers/" + id, base + "/compute/servers/" + id)},
        {"OS-DCF:diskConfig", "MANUAL"},
        {"progress", st.status == "ACTIVE" ? 100 : 0},
        {"OS-EXT-AZ:availability_zone", Str(s, "availability_zone")},
        {"config_drive", ""},
        {"key_name", OrNull(Str(s, "key_name"))},
        {"OS-SRV-USG:launched_at", host.empty() ? json::value(nullptr) : json::value(Str(s, "created_at"))},
        {"OS-SRV-USG:terminated_at", nullptr},
        {"OS-EXT-STS:task_state", st.task_state.empty() ? json::value(nullptr) : json::value(st.task_state)},
        {"OS-EXT-STS:vm_state", st.vm_state},
        {"OS-EXT-STS:power_state", st.power_state},
        {"os-extended-volumes:volumes_attached", std::move(volumes)},
        {"security_groups", json::array{}},
    };
    if (st.status == "ERROR") {
        const json::object fault = wire::Obj(s, "fault");
        o["fault"] = json::object{
            {"code", 500}, {"message", Str(fault, "message")}, {"created", Str(s, "updated_at")}};
    }
    if (admin) {
        o["OS-EXT-SRV-ATTR:host"] = OrNull(host);
        o["OS-EXT-SRV-ATTR:hypervisor_hostname"] = OrNull(host);
        o["OS-EXT-SRV-ATTR:instance_name"] = "instance-" + id;
    }
    return o;
}

json::object NovaFlavor(const json::object& f, const std::string& base) {
    const std::string id = Str(f, "id");
    return json::object{
        {"id", id},
        {"name", Str(f, "name")},
        {"ram", Int(f, "ram_mb")},
        {"vcpus", Int(f, "vcpus")},
        {"disk", Int(f, "disk_gb")},
        {"OS-FLV-EXT-DATA:ephemeral", 0},
        {"OS-FLV-DISABLED:disabled", false},
        {"swap", ""},
        {"rxtx_factor", 1.0},
        {"os-flavor-access:is_public", true},
        {"links", Links(base + "/compute/v2.1/flavors/" + id, base + "/compute/flavors/" + id)},
    };
}

json::object NovaServerGroup(const json::object& g, json::array members) {
    return json::object{
        {"id", Str(g, "id")},
        {"name", Str(g, "name")},
        {"policies", json::array{json::value(Str(g, "policy"))}},
        {"members", std::move(members)},
        {"metadata", json::object{}},
        {"project_id", Str(g, "project_id")},
        {"user_id", ""},
    };
}

json::object NovaKeypair(const json::object& k, bool detail) {
    json::object o{{"name", Str(k, "name")},
                   {"public_key", Str(k, "public_key")},
                   {"fingerprint", Str(k, "fingerprint")},
                   {"type", "ssh"}};
    if (detail) {
        o["user_id"] = "";
        o["id"] = Str(k, "id");
        o["created_at"] = Str(k, "created_at");
        o["updated_at"] = nullptr;
        o["deleted"] = false;
        o["deleted_at"] = nullptr;
    }
    return o;
}

std::string AttachedAt(const std::string& volume_id) { return "/volumes/" + volume_id; }

json::object NovaAttachment(const std::string& server_id, const std::string& volume_id) {
    return json::object{{"id", volume_id},
                        {"serverId", server_id},
                        {"volumeId", volume_id},
                        {"device", AttachedAt(volume_id)}};
}

namespace {
// Neutron's statuses: ACTIVE, DOWN, BUILD, ERROR.
std::string_view NeutronStatus(std::string_view s) {
    if (s == "ACTIVE" || s == "BUILD" || s == "ERROR") return s;
    return "DOWN";  // DELETING
}

json::object NeutronCommon(const json::object& r) {
    return json::object{
        {"id", Str(r, "id")},
        {"name", Str(r, "name")},
        {"tenant_id", Str(r, "project_id")},
        {"project_id", Str(r, "project_id")},
        {"description", ""},
        {"tags", json::array{}},
        {"created_at", Str(r, "created_at")},
        {"updated_at", Str(r, "updated_at")},
        {"revision_number", 0},
    };
}
}  // namespace

json::object NeutronNetwork(const json::object& n, json::array subnet_ids) {
    json::object o = NeutronCommon(n);
    o["status"] = NeutronStatus(Str(n, "status"));
    o["admin_state_up"] = true;
    o["shared"] = false;
    o["router:external"] = false;
    o["is_default"] = false;
    o["mtu"] = 1500;
    o["port_security_enabled"] = false;
    o["availability_zones"] = json::array{};
    o["availability_zone_hints"] = json::array{};
    o["ipv4_address_scope"] = nullptr;
    o["ipv6_address_scope"] = nullptr;
    o["subnets"] = std::move(subnet_ids);
    return o;
}

json::object NeutronSubnet(const json::object& s) {
    json::object o = NeutronCommon(s);
    o["network_id"] = Str(s, "network_id");
    o["ip_version"] = 4;
    o["cidr"] = Str(s, "cidr");
    o["gateway_ip"] = OrNull(Str(s, "gateway_ip"));
    auto pools = s.find("allocation_pools");
    o["allocation_pools"] = pools != s.end() ? pools->value() : json::value(json::array{});
    // Every port gets its address without the instance asking (cogs-network gives it, the compute
    // agent sets it): what DHCP is for.
    o["enable_dhcp"] = true;
    o["dns_nameservers"] = json::array{};
    o["host_routes"] = json::array{};
    o["service_types"] = json::array{};
    o["ipv6_ra_mode"] = nullptr;
    o["ipv6_address_mode"] = nullptr;
    o["subnetpool_id"] = nullptr;
    o["segment_id"] = nullptr;
    return o;
}

json::object NeutronPort(const json::object& p) {
    json::object o = NeutronCommon(p);
    const std::string device = Str(p, "device_id");
    const std::string status = Str(p, "status");
    o["network_id"] = Str(p, "network_id");
    o["mac_address"] = Str(p, "mac_address");
    json::array ips;
    if (const std::string ip = Str(p, "fixed_ip"); !ip.empty()) {
        ips.push_back(json::object{{"subnet_id", Str(p, "subnet_id")}, {"ip_address", ip}});
    }
    o["fixed_ips"] = std::move(ips);
    o["device_id"] = device;
    o["device_owner"] = device.empty() ? "" : "compute:nova";
    o["status"] = status == "ACTIVE" ? (device.empty() ? "DOWN" : "ACTIVE") : NeutronStatus(status);
    o["admin_state_up"] = true;
    o["security_groups"] = json::array{};
    o["allowed_address_pairs"] = json::array{};
    o["extra_dhcp_opts"] = json::array{};
    o["port_security_enabled"] = false;
    o["binding:vnic_type"] = "normal";
    return o;
}

json::object CinderVolume(const json::object& v, const std::string& base, bool admin) {
    const std::string id = Str(v, "id");
    const std::string project = Str(v, "project_id");
    const std::string server = Str(v, "server_id");
    const std::string status = Str(v, "status");
    json::array attachments;
    if (!server.empty() && (status == "in-use" || status == "detaching")) {
        attachments.push_back(json::object{{"id", id},
                                           {"attachment_id", id},
                                           {"volume_id", id},
                                           {"server_id", server},
                                           {"host_name", nullptr},
                                           {"device", AttachedAt(id)},
                                           {"attached_at", Str(v, "updated_at")}});
    }
    json::object o{
        {"id", id},
        {"name", Str(v, "name")},
        {"size", Int(v, "size_gb")},
        {"status", status},
        {"description", nullptr},
        {"attachments", std::move(attachments)},
        {"availability_zone", "nova"},
        {"bootable", "false"},
        {"encrypted", false},
        {"multiattach", false},
        {"volume_type", "__DEFAULT__"},
        {"snapshot_id", nullptr},
        {"source_volid", nullptr},
        {"consistencygroup_id", nullptr},
        {"replication_status", nullptr},
        {"metadata", json::object{}},
        {"user_id", ""},
        {"created_at", Str(v, "created_at")},
        {"updated_at", Str(v, "updated_at")},
        {"links", Links(base + "/volume/v3/" + project + "/volumes/" + id,
                        base + "/volume/" + project + "/volumes/" + id)},
    };
    if (admin) o["os-vol-tenant-attr:tenant_id"] = project;
    return o;
}

json::object GlanceImage(const json::object& i) {
    const std::string id = Str(i, "id");
    const std::string sha = Str(i, "sha256");
    auto size = i.find("size_bytes");
    json::object o{
        {"id", id},
        {"name", Str(i, "name")},
        {"status", Str(i, "status")},
        {"visibility", "public"},
        {"protected", false},
        {"os_hidden", false},
        // A cogs image is a root file system, a gzip-compressed tar archive (docs/api.md).
        {"disk_format", "raw"},
        {"container_format", "compressed"},
        {"size", size != i.end() ? size->value() : json::value(nullptr)},
        {"virtual_size", nullptr},
        {"checksum", nullptr},
        {"os_hash_algo", sha.empty() ? json::value(nullptr) : json::value("sha256")},
        {"os_hash_value", OrNull(sha)},
        {"min_disk", Int(i, "min_disk_gb")},
        {"min_ram", 0},
        {"owner", nullptr},
        {"tags", json::array{}},
        {"created_at", Str(i, "created_at")},
        {"updated_at", Str(i, "updated_at")},
        {"self", "/v2/images/" + id},
        {"file", "/v2/images/" + id + "/file"},
        {"schema", "/v2/schemas/image"},
    };
    if (const std::string os = Str(i, "os"); !os.empty()) o["os_distro"] = os;
    return o;
}

json::object KeystoneToken(const std::string& base, const std::string& user_id, const std::string& user_name,
                           const std::string& project_id, const std::string& project_name,
                           std::string_view role, const std::string& method, const std::string& issued_at,
                           const std::string& expires_at, bool with_catalog) {
    const json::object domain{{"id", "default"}, {"name", "Default"}};
    json::object token{
        {"methods", json::array{json::value(method)}},
        {"user",
         json::object{
             {"id", user_id}, {"name", user_name}, {"domain", domain}, {"password_expires_at", nullptr}}},
        {"project", json::object{{"id", project_id}, {"name", project_name}, {"domain", domain}}},
        {"roles", json::array{json::object{{"id", role}, {"name", role}}}},
        {"audit_ids", json::array{}},
        {"issued_at", issued_at},
        {"expires_at", expires_at},
        {"is_domain", false},
    };
    if (with_catalog) {
        struct Entry {
            std::string_view type, name, path;
        };
        const std::string volume = "/volume/v3/" + project_id;
        const Entry entries[] = {
            {"identity", "keystone", "/v3"},     {"compute", "nova", "/compute/v2.1"},
            {"network", "neutron", "/network"},  {"volumev3", "cinderv3", volume},
            {"block-storage", "cinder", volume}, {"image", "glance", "/image"},
        };
        json::array catalog;
        for (const Entry& e : entries) {
            json::array endpoints;
            for (std::string_view interface : {"public", "internal", "admin"}) {
                endpoints.push_back(json::object{{"id", std::string(e.name) + "-" + std::string(interface)},
                                                 {"interface", interface},
                                                 {"region", "RegionOne"},
                                                 {"region_id", "RegionOne"},
                                                 {"url", base + std::string(e.path)}});
            }
            catalog.push_back(json::object{
                {"id", e.name}, {"type", e.type}, {"name", e.name}, {"endpoints", std::move(endpoints)}});
        }
        token["catalog"] = std::move(catalog);
    }
    return json::object{{"token", std::move(token)}};
}

json::object IdentityVersion(const std::string& base) {
    json::object v = Version("v3.14", "stable", base + "/v3/", "2020-04-07T00:00:00Z");
    v["media-types"] = json::array{
        json::object{{"base", "application/json"}, {"type", "application/vnd.openstack.identity-v3+json"}}};
    return v;
}

json::object IdentityVersions(const std::string& base) {
    return json::object{{"versions", json::object{{"values", json::array{IdentityVersion(base)}}}}};
}

json::object ComputeVersion(const std::string& base) {
    // Only 2.1: no microversion above it is implemented.
    json::object v = Version("v2.1", "CURRENT", base + "/compute/v2.1/", "2013-07-23T11:33:21Z");
    v["version"] = "2.1";
    v["min_version"] = "2.1";
    return v;
}

json::object ComputeVersions(const std::string& base) {
    return json::object{{"versions", json::array{ComputeVersion(base)}}};
}

json::object NetworkVersions(const std::string& base) {
    return json::object{{"versions", json::array{Version("v2.0", "CURRENT", base + "/network/v2.0/",
                                                         "2014-01-01T00:00:00Z")}}};
}

json::object VolumeVersions(const std::string& base) {
    json::object v = Version("v3.0", "CURRENT", base + "/volume/v3/", "2016-02-08T12:20:21Z");
    v["version"] = "3.0";
    v["min_version"] = "3.0";
    return json::object{{"versions", json::array{std::move(v)}}};
}

json::object ImageVersions(const std::string& base) {
    return json::object{
        {"versions", json::array{Version("v2.0", "CURRENT", base + "/image/v2/", "2013-04-16T00:00:00Z")}}};
}

}  // namespace cogs::cloud::openstack
