// Neutron v2.0 (face.h) at /network/v2.0: networks, subnets and ports — create, list, show,
// delete. Neutron's creates and deletes are synchronous: the face answers once /v1's workflow has
// settled the record (Impl::WaitSettled).
#include <boost/json/serialize.hpp>

#include "cogs/cloud/openstack/internal.h"
#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

using wire::Obj;
using wire::Str;

namespace {

constexpr std::string_view kPrefix = "/network/v2.0";

struct Network {
    OpenStackFace::Impl& os;

    // The kind's plural in /v1 and in Neutron are the same: networks, subnets, ports.
    struct Kind {
        std::string_view collection;  // "networks"
        std::string_view one;         // "network"
    };

    // Neutron's list filters, as /v1's: name, status, network_id, device_id (a port's server),
    // tenant_id/project_id (admins); id is filtered here; fields (a projection) is answered whole.
    // `none`: a filter no cogs record passes (shared or external networks).
    static Result<Query> ListQuery(const Call& c, Kind kind, std::string* id, bool* none) {
        Query q;
        for (const auto& [k, v] : c.query) {
            if (k == "name" || k == "status" || k == "limit" || k == "marker") {
                q[k] = v;
            } else if (k == "id") {
                *id = v;
            } else if (k == "network_id" && kind.one != "network") {
                q[k] = v;
            } else if (k == "device_id" && kind.one == "port") {
                q["server_id"] = v;
            } else if ((k == "tenant_id" || k == "project_id") && c.who.admin()) {
                q["project_id"] = v;
            } else if (k == "fields" || (k == "shared" && v == "False") ||
                       (k == "router:external" && v == "False")) {
                // A projection, or a filter every cogs network passes.
            } else if (k == "shared" || k == "router:external") {
                *none = true;  // no cogs network is shared or external
            } else {
                return MakeError(FieldError(k, "not a filter cogs implements (docs/openstack.md)"));
            }
        }
        return q;
    }

    // Each view with what Neutron shows beside it (a network's subnets), then `done(views)`.
    void Views(const Call& c, Kind kind, json::array records, std::function<void(json::array)> done) {
        if (kind.one != "network") {
            json::array views;
            for (const auto& r : records) {
                views.push_back(kind.one == "subnet" ? openstack::NeutronSubnet(r.as_object())
                                                     : openstack::NeutronPort(r.as_object()));
            }
            return done(std::move(views));
        }
        // The networks' subnets: one list of the caller's subnets.
        os.V1All(
            c, "subnets", {}, kListAll,
            [c, records = std::move(records), done](Result<json::array> subnets, http::Response error) {
                if (!subnets) return c.Answer(std::move(error));
                std::map<std::string, json::array> of;
                for (const auto& s : *subnets) {
                    of[Str(s.as_object(), "network_id")].push_back(json::value(Str(s.as_object(), "id")));
                }
                json::array views;
                for (const auto& r : records) {
                    views.push_back(openstack::NeutronNetwork(r.as_object(), of[Str(r.as_object(), "id")]));
                }
                done(std::move(views));
            });
    }

    void List(Call c, Kind kind) {
        std::string id;
        bool none = false;
        auto q = ListQuery(c, kind, &id, &none);
        if (!q) return c.Fail(q.error());
        auto limit = ListLimit(*q);
        if (!limit) return c.Fail(limit.error());
        os.V1All(c, std::string(kind.collection), *q, none ? 0 : *limit,
                 [this, c, kind, id, none, limit = *limit](Result<json::array> items, http::Response error) {
                     if (!items) return c.Answer(std::move(error));
                     json::array records;
                     for (auto& r : *items) {
                         if (none || records.size() >= limit) break;
                         if (id.empty() || Str(r.as_object(), "id") == id) records.push_back(std::move(r));
                     }
                     Views(c, kind, std::move(records), [c, kind](json::array views) {
                         json::object o;
                         o[kind.collection] = std::move(views);
                         c.Answer(wire::Json(200, o));
                     });
                 });
    }

    void Show(Call c, Kind kind) {
        os.V1(c, "GET", "/v1/" + std::string(kind.collection) + "/" + c.Param("id"), "", {},
              [this, c, kind](http::Response r) {
                  if (r.status != 200) return c.Answer(std::move(r));
                  Answer(c, kind, 200, Obj(OpenStackFace::Impl::Body(r), kind.one));
              });
    }

    void Answer(const Call& c, Kind kind, int status, json::object record) {
        Views(c, kind, json::array{std::move(record)}, [c, kind, status](json::array views) {
            json::object o;
            o[kind.one] = std::move(views.at(0));
            c.Answer(wire::Json(status, o));
        });
    }

    // The /v1 body of a create, or a 400 naming the Neutron field.
    static Result<json::object> CreateBody(const Call& c, Kind kind) {
        const std::string at(kind.one);
        COGS_ASSIGN_OR_RETURN(json::object in, Envelope(c.body, kind.one));
        json::object v1;
        if (const std::string name = Str(in, "name"); !name.empty()) v1["name"] = name;
        if (const std::string p =
                Str(in, "project_id").empty() ? Str(in, "tenant_id") : Str(in, "project_id");
            !p.empty() && p != c.who.project_id) {
            v1["project_id"] = p;  // an admin's, for another project (/v1 refuses it to others)
        }
        if (kind.one == "network") {
            COGS_TRY(OnlyKnown(in,
                               {"name", "admin_state_up", "shared", "description", "tenant_id", "project_id",
                                "mtu", "port_security_enabled", "availability_zone_hints"},
                               at));
            COGS_TRY(NotSet(in, {"shared", "description", "availability_zone_hints"}, at));
            if (v1.find("name") == v1.end())
                return MakeError(FieldError("network.name", "cogs needs a name"));
        } else if (kind.one == "subnet") {
            COGS_TRY(OnlyKnown(
                in,
                {"name", "network_id", "cidr", "ip_version", "gateway_ip", "allocation_pools", "enable_dhcp",
                 "dns_nameservers", "host_routes", "description", "tenant_id", "project_id", "ipv6_ra_mode",
                 "ipv6_address_mode", "subnetpool_id", "prefixlen", "service_types", "segment_id"},
                at));
            COGS_TRY(
                NotSet(in,
                       {"dns_nameservers", "host_routes", "description", "ipv6_ra_mode", "ipv6_address_mode",
                        "subnetpool_id", "prefixlen", "service_types", "segment_id"},
                       at));
            if (const auto* v = in.if_contains("ip_version");
                v && !(v->is_int64() && v->as_int64() == 4) && !(v->is_string() && v->as_string() == "4")) {
                return MakeError(FieldError("subnet.ip_version", "cogs networks are IPv4 only: 4"));
            }
            if (const auto* g = in.if_contains("gateway_ip"); g && g->is_null()) {
                return MakeError(FieldError("subnet.gateway_ip", "cogs subnets have a gateway"));
            }
            for (std::string_view f : {"network_id", "cidr", "gateway_ip", "allocation_pools"}) {
                if (const auto* v = in.if_contains(f); v && !v->is_null()) v1[f] = *v;
            }
        } else {
            COGS_TRY(OnlyKnown(in,
                               {"name", "network_id", "fixed_ips", "admin_state_up", "description",
                                "tenant_id", "project_id", "device_id", "device_owner", "security_groups",
                                "port_security_enabled", "mac_address", "binding:vnic_type"},
                               at));
            COGS_TRY(NotSet(
                in, {"description", "device_id", "device_owner", "security_groups", "mac_address"}, at));
            v1["network_id"] = Str(in, "network_id");
            if (const auto* ips = in.if_contains("fixed_ips"); ips && !ips->is_null()) {
                if (!ips->is_array() || ips->as_array().size() > 1) {
                    return MakeError(FieldError("port.fixed_ips", "cogs gives a port one address"));
                }
                if (!ips->as_array().empty()) {
                    const auto& ip = ips->as_array()[0];
                    if (!ip.is_object())
                        return MakeError(FieldError("port.fixed_ips[0]", "must be an object"));
                    COGS_TRY(OnlyKnown(ip.as_object(), {"ip_address", "subnet_id"}, "port.fixed_ips[0]"));
                    if (const std::string a = Str(ip.as_object(), "ip_address"); !a.empty())
                        v1["fixed_ip"] = a;
                }
            }
        }
        return v1;
    }

    void Create(Call c, Kind kind) {
        auto body = CreateBody(c, kind);
        if (!body) return c.Fail(body.error());
        const std::string collection(kind.collection);
        os.V1(c, "POST", "/v1/" + collection, json::serialize(*body), {},
              [this, c, kind, collection](http::Response r) {
                  if (r.status != 202) {
                      // /v1's field names, as the Neutron request wrote them.
                      if (kind.one == "network")
                          return c.Answer(RenameField(std::move(r), {{"name", "network.name"}}));
                      if (kind.one == "subnet") {
                          return c.Answer(
                              RenameField(std::move(r), {{"cidr", "subnet.cidr"},
                                                         {"gateway_ip", "subnet.gateway_ip"},
                                                         {"allocation_pools", "subnet.allocation_pools"},
                                                         {"network_id", "subnet.network_id"},
                                                         {"name", "subnet.name"}}));
                      }
                      return c.Answer(RenameField(std::move(r), {{"fixed_ip", "port.fixed_ips[0].ip_address"},
                                                                 {"network_id", "port.network_id"},
                                                                 {"name", "port.name"}}));
                  }
                  const std::string id = Str(Obj(OpenStackFace::Impl::Body(r), kind.one), "id");
                  os.WaitSettled(c, collection, id, false, [this, c, kind](json::object view) {
                      if (view.empty())
                          return c.Fail(Error(ErrorCode::kNotFound, std::string(kind.one) + " gone"));
                      Answer(c, kind, 201, std::move(view));
                  });
              });
    }

    // A network's delete takes its subnets with it, as Neutron's does, once no port is on it
    // (/v1 refuses a network with subnets: each subnet's delete is /v1's, then the network's).
    void DeleteNetwork(Call c) {
        const std::string id = c.Param("id");
        os.V1(c, "GET", "/v1/networks/" + id, "", {}, [this, c, id](http::Response shown) {
            if (shown.status != 200) return c.Answer(std::move(shown));
            os.V1All(
                c, "ports", {{"network_id", id}}, 1,
                [this, c, id](Result<json::array> ports, http::Response e) {
                    if (!ports) return c.Answer(std::move(e));
                    if (!ports->empty()) {
                        return c.Fail(Error(ErrorCode::kConflict, "network " + id + " has ports (port " +
                                                                      Str(ports->at(0).as_object(), "id") +
                                                                      "): delete them first"));
                    }
                    os.V1All(c, "subnets", {{"network_id", id}}, kListAll,
                             [this, c](Result<json::array> subnets, http::Response e) {
                                 if (!subnets) return c.Answer(std::move(e));
                                 std::vector<std::string> ids;
                                 for (const auto& s : *subnets)
                                     ids.push_back(Str(s.as_object(), "id"));
                                 DeleteEach(c, {"subnets", "subnet"}, std::move(ids),
                                            [this, c](http::Response r) {
                                                if (r.status >= 300) return c.Answer(std::move(r));
                                                Delete(c, {"networks", "network"});
                                            });
                             });
                });
        });
    }

    // Deletes `ids` one after the other, each answered once gone; `done` gets the first refusal,
    // or a 204 once all are gone.
    void DeleteEach(const Call& c, Kind kind, std::vector<std::string> ids,
                    std::function<void(http::Response)> done) {
        if (ids.empty()) return done(NoBody(204));
        const std::string id = ids.back();
        ids.pop_back();
        Call one = c;
        one.params["id"] = id;
        one.respond = [this, c, kind, ids = std::move(ids), done](http::Response r) mutable {
            if (r.status >= 300) return done(std::move(r));
            DeleteEach(c, kind, std::move(ids), std::move(done));
        };
        Delete(std::move(one), kind);
    }

    void Delete(Call c, Kind kind) {
        const std::string collection(kind.collection);
        const std::string id = c.Param("id");
        os.V1(c, "DELETE", "/v1/" + collection + "/" + id, "", {},
              [this, c, collection, id](http::Response r) {
                  if (r.status != 202) return c.Answer(std::move(r));
                  os.WaitSettled(c, collection, id, true, [c](json::object view) {
                      if (!view.empty() && Str(view, "status") == "ERROR") {
                          return c.Fail(Error(ErrorCode::kConflict,
                                              "the delete failed: " + Str(Obj(view, "fault"), "message")));
                      }
                      c.Answer(NoBody(204));
                  });
              });
    }
};

}  // namespace

void AddNetworkRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes) {
    auto net = std::make_shared<Network>(Network{os});
    const std::string p(kPrefix);
    routes.push_back({"GET", "/network",
                      [&os](Call c) { c.Answer(wire::Json(200, openstack::NetworkVersions(os.Base(c)))); }});
    routes.push_back(
        {"GET", p, [&os](Call c) {
             const std::string base = os.Base(c) + std::string(kPrefix);
             json::array resources;
             for (std::string_view r : {"network", "subnet", "port"}) {
                 resources.push_back(json::object{
                     {"name", r},
                     {"collection", std::string(r) + "s"},
                     {"links", json::array{json::object{{"rel", "self"},
                                                        {"href", base + "/" + std::string(r) + "s"}}}}});
             }
             c.Answer(wire::Json(200, json::object{{"resources", std::move(resources)}}));
         }});
    // Neutron's extensions: none (the clients ask before using one).
    routes.push_back({"GET", p + "/extensions", [](Call c) {
                          c.Answer(wire::Json(200, json::object{{"extensions", json::array{}}}));
                      }});
    for (Network::Kind kind : {Network::Kind{"networks", "network"}, Network::Kind{"subnets", "subnet"},
                               Network::Kind{"ports", "port"}}) {
        const std::string path = p + "/" + std::string(kind.collection);
        routes.push_back({"GET", path, [net, kind](Call c) { net->List(std::move(c), kind); }});
        routes.push_back({"POST", path, [net, kind](Call c) { net->Create(std::move(c), kind); }});
        routes.push_back({"GET", path + "/{id}", [net, kind](Call c) { net->Show(std::move(c), kind); }});
        routes.push_back({"DELETE", path + "/{id}", [net, kind](Call c) {
                              if (kind.one == "network") return net->DeleteNetwork(std::move(c));
                              net->Delete(std::move(c), kind);
                          }});
    }
}

}  // namespace cogs::cloud
