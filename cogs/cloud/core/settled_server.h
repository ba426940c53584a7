// A server's body as cogsd keeps it once its create has settled ACTIVE (the fields servers.cc
// writes, in its order): what the frozen form's test and benchmark measure.
#pragma once

#include <boost/json/object.hpp>
#include <string>

#include "cogs/base/secret.h"
#include "cogs/base/time.h"

namespace cogs::cloud {

inline boost::json::object SettledServerBody(const std::string& project) {
    boost::json::object b;
    b["id"] = NewUuid();
    b["project_id"] = project;
    b["created_at"] = Rfc3339(1'796'000'000'000);
    b["updated_at"] = Rfc3339(1'796'000'001'000);
    b["name"] = "storm-12345";
    b["status"] = "ACTIVE";
    b["flavor_id"] = NewUuid();
    b["flavor"] = "bench.tiny";
    b["image_id"] = NewUuid();
    b["network_id"] = NewUuid();
    b["host"] = "bench-sim-1234";
    b["availability_zone"] = "nova";
    b["port_id"] = NewUuid();
    b["ip_address"] = "10.64.48.57";
    b["mac_address"] = "fa:16:3e:00:30:39";
    b["volume_ids"] = boost::json::array();
    b["server_group_id"] = "";
    b["key_name"] = "";
    b["_vcpus"] = 1;
    b["_ram_mb"] = 256;
    b["_disk_gb"] = 1;
    b["_quota"] = true;
    b["_user_data"] = "";
    b["_public_key"] = "";
    b["workflow_id"] = NewUuid();
    b["_changed_ms"] = 1'796'000'001'000;
    b["_cidr"] = "10.64.0.0/12";
    b["_gateway_ip"] = "10.64.0.1";
    return b;
}

}  // namespace cogs::cloud
