// The translations of openstack/views.h, record by record: what /v1 shows in, what the OpenStack
// clients read out (docs/openstack.md).
#include "cogs/cloud/openstack/views.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace cogs::cloud::openstack {
namespace {

json::object Parse(std::string_view text) { return json::parse(text).as_object(); }

std::string S(const json::value& v, std::string_view key) {
    const auto* x = v.as_object().if_contains(key);
    return x != nullptr && x->is_string() ? std::string(x->as_string()) : "";
}

const json::object kServer =
    Parse(R"({"id":"s1","name":"vm","project_id":"p1","status":"ACTIVE","flavor_id":"f1",
  "image_id":"i1","network_id":"n1","host":"h1","availability_zone":"az1","ip_address":"10.0.0.5",
  "mac_address":"fa:16:3e:00:00:01","volume_ids":["v1","v2"],"created_at":"2026-12-06T10:00:00.000Z",
  "updated_at":"2026-12-06T10:00:01.000Z"})");

TEST(OpenStackViews, ANovaServerCarriesTheFieldsTheClientsRead) {
    const json::object v = NovaServer(
        kServer, "http://c:1",
        [](const std::string& id) { return id == "n1" ? std::string("blue") : std::string(); }, false);
    EXPECT_EQ(S(v, "status"), "ACTIVE");
    EXPECT_EQ(S(v, "tenant_id"), "p1");
    const auto& addr = v.at("addresses").at("blue").as_array().at(0);
    EXPECT_EQ(S(addr, "addr"), "10.0.0.5");
    EXPECT_EQ(addr.at("version").as_int64(), 4);
    EXPECT_EQ(S(addr, "OS-EXT-IPS:type"), "fixed");
    EXPECT_EQ(S(addr, "OS-EXT-IPS-MAC:mac_addr"), "fa:16:3e:00:00:01");
    EXPECT_EQ(S(v.at("flavor"), "id"), "f1");
    EXPECT_EQ(S(v.at("image"), "id"), "i1");
    EXPECT_TRUE(v.at("metadata").is_object());
    EXPECT_EQ(S(v, "OS-EXT-AZ:availability_zone"), "az1");
    EXPECT_EQ(v.at("os-extended-volumes:volumes_attached").as_array().size(), 2u);
    EXPECT_EQ(S(v.at("links").as_array().at(0), "href"), "http://c:1/compute/v2.1/servers/s1");
    EXPECT_FALSE(v.contains("OS-EXT-SRV-ATTR:host"));
    EXPECT_FALSE(v.contains("fault"));
    // A network the view cannot name is keyed by its id; an admin sees the host.
    const json::object a = NovaServer(
        kServer, "http://c:1", [](const std::string&) { return std::string(); }, true);
    EXPECT_TRUE(a.at("addresses").as_object().contains("n1"));
    EXPECT_EQ(S(a, "OS-EXT-SRV-ATTR:host"), "h1");
}

TEST(OpenStackViews, AKeyNameAndAKeypairAsNovaShowsThem) {
    const auto no_name = [](const std::string&) { return std::string(); };
    json::object with_key = kServer;
    EXPECT_TRUE(NovaServer(with_key, "", no_name, false).at("key_name").is_null()) << "none: null";
    with_key["key_name"] = "laptop";
    EXPECT_EQ(S(NovaServer(with_key, "", no_name, false), "key_name"), "laptop");

    const json::object k = Parse(R"({"id":"k1","name":"laptop","project_id":"p1","type":"ssh",
      "public_key":"ssh-ed25519 AAAA me","fingerprint":"aa:bb","created_at":"2026-12-06T10:00:00.000Z"})");
    EXPECT_EQ(NovaKeypair(k, false), Parse(R"({"name":"laptop","public_key":"ssh-ed25519 AAAA me",
      "fingerprint":"aa:bb","type":"ssh"})"));
    const json::object shown = NovaKeypair(k, true);
    EXPECT_EQ(S(shown, "id"), "k1");
    EXPECT_EQ(S(shown, "user_id"), "");
    EXPECT_EQ(S(shown, "created_at"), "2026-12-06T10:00:00.000Z");
    EXPECT_EQ(shown.at("deleted"), false);
}

TEST(OpenStackViews, ServerStatusesMapOntoNovasStatusVmStateTaskAndPower) {
    EXPECT_EQ(NovaStateOf("STOPPING").status, "ACTIVE");
    EXPECT_EQ(NovaStateOf("STOPPING").task_state, "powering-off");
    EXPECT_EQ(NovaStateOf("STARTING").status, "SHUTOFF");
    EXPECT_EQ(NovaStateOf("SHUTOFF").power_state, 4);
    EXPECT_EQ(NovaStateOf("ACTIVE").power_state, 1);
    EXPECT_EQ(NovaStateOf("REBUILD").status, "REBUILD") << "an evacuation is Nova's rebuild";
    EXPECT_EQ(NovaStateOf("DELETING").task_state, "deleting");
    EXPECT_EQ(NovaStateOf("ERROR").vm_state, "error");
    json::object failed = kServer;
    failed["status"] = "ERROR";
    failed["fault"] = json::object{{"message", "no valid host"}};
    const json::object v = NovaServer(
        failed, "", [](const std::string&) { return std::string(); }, false);
    EXPECT_EQ(S(v.at("fault"), "message"), "no valid host");
    EXPECT_EQ(v.at("fault").at("code").as_int64(), 500);
}

TEST(OpenStackViews, NeutronCinderAndGlanceViews) {
    const json::object port =
        NeutronPort(Parse(R"({"id":"p","network_id":"n","subnet_id":"sn","fixed_ip":"10.0.0.7",
      "mac_address":"fa:16:3e:00:00:02","device_id":"s1","status":"ACTIVE","project_id":"p1","name":""})"));
    EXPECT_EQ(S(port.at("fixed_ips").as_array().at(0), "ip_address"), "10.0.0.7");
    EXPECT_EQ(S(port.at("fixed_ips").as_array().at(0), "subnet_id"), "sn");
    EXPECT_EQ(S(port, "device_owner"), "compute:nova");
    EXPECT_EQ(S(port, "status"), "ACTIVE");
    const json::object free = NeutronPort(Parse(R"({"id":"p","status":"ACTIVE","device_id":""})"));
    EXPECT_EQ(S(free, "status"), "DOWN") << "a port no server uses is down, as Neutron says";
    EXPECT_TRUE(free.at("fixed_ips").as_array().empty());

    const json::object net =
        NeutronNetwork(Parse(R"({"id":"n","name":"blue","status":"DELETING"})"), json::array{"s1"});
    EXPECT_EQ(S(net, "status"), "DOWN");
    EXPECT_EQ(net.at("subnets").as_array().size(), 1u);
    const json::object subnet = NeutronSubnet(Parse(R"({"id":"s","cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1",
      "allocation_pools":[{"start":"10.0.0.2","end":"10.0.0.254"}]})"));
    EXPECT_EQ(subnet.at("ip_version").as_int64(), 4);
    EXPECT_EQ(subnet.at("allocation_pools").as_array().size(), 1u);
    EXPECT_TRUE(subnet.at("host_routes").is_array());

    const json::object vol =
        CinderVolume(Parse(R"({"id":"v","name":"d","size_gb":3,"status":"in-use","server_id":"s1",
      "project_id":"p1"})"),
                     "http://c:1", false);
    EXPECT_EQ(vol.at("size").as_int64(), 3);
    EXPECT_EQ(S(vol.at("attachments").as_array().at(0), "server_id"), "s1");
    EXPECT_EQ(S(vol.at("attachments").as_array().at(0), "device"), AttachedAt("v"));
    EXPECT_TRUE(vol.at("metadata").is_object());
    EXPECT_FALSE(vol.contains("os-vol-tenant-attr:tenant_id"));
    EXPECT_EQ(S(NovaAttachment("s1", "v"), "device"), AttachedAt("v")) << "Nova and Cinder agree";

    const json::object image =
        GlanceImage(Parse(R"({"id":"i","name":"busybox","status":"active","size_bytes":10,
      "sha256":"ab"})"));
    EXPECT_EQ(S(image, "os_hash_algo"), "sha256");
    EXPECT_EQ(S(image, "os_hash_value"), "ab");
    EXPECT_EQ(image.at("size").as_int64(), 10);
    EXPECT_EQ(S(image, "visibility"), "public");
}

TEST(OpenStackViews, ErrorsTakeEachServicesShapeAndKeepTheirHeaders) {
    http::Response e;
    e.status = 404;
    e.body = R"({"code":"not_found","message":"server s not found","details":{}})";
    e.headers.emplace_back("retry-after", "1");
    const auto nova = Reshape(Service::kCompute, e);
    EXPECT_EQ(S(json::parse(nova.body).at("itemNotFound"), "message"), "server s not found");
    EXPECT_EQ(nova.Header("retry-after"), "1");
    const auto neutron = Reshape(Service::kNetwork, e);
    EXPECT_EQ(S(json::parse(neutron.body).at("NeutronError"), "type"), "HTTPNotFound");
    e.status = 401;
    const auto keystone = Reshape(Service::kIdentity, e);
    EXPECT_EQ(json::parse(keystone.body).at("error").at("code").as_int64(), 401);
    EXPECT_EQ(keystone.Header("www-authenticate"), "Keystone uri=\"/v3\"");
    e.status = 403;
    e.body = R"({"code":"quota_exceeded","message":"quota","details":{}})";
    EXPECT_EQ(S(json::parse(Reshape(Service::kNetwork, e).body).at("NeutronError"), "type"), "OverQuota");
    EXPECT_EQ(ServiceOf("/volume/v3/p/volumes"), Service::kVolume);
    EXPECT_EQ(ServiceOf("/v3/auth/tokens"), Service::kIdentity);
}

}  // namespace
}  // namespace cogs::cloud::openstack
