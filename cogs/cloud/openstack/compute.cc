// Nova v2.1 (face.h) at /compute/v2.1: servers (create, lists, show, delete, actions), flavors,
// os-volume_attachments, os-server-groups, os-keypairs (imported keys only: cogs generates none),
// limits, os-availability-zone, the version documents.
// Only microversion 2.1: a request for another is 406, as Nova answers one it does not have.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <set>

#include "cogs/cloud/openstack/internal.h"
#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

using wire::Int;
using wire::Obj;
using wire::Str;
using wire::StrList;

namespace {

constexpr std::string_view kPrefix = "/compute/v2.1";

// The last segment of a reference that may be a URL ("http://.../flavors/ID" -> "ID").
std::string RefId(const std::string& ref) {
    const auto slash = ref.rfind('/');
    return slash == std::string::npos ? ref : ref.substr(slash + 1);
}

struct Compute {
    OpenStackFace::Impl& os;

    // The microversion asked for: 2.1 (or none, or "latest") only.
    static Status CheckMicroversion(const Call& c) {
        std::string asked = c.Header("x-openstack-nova-api-version");
        if (std::string h = c.Header("openstack-api-version"); asked.empty() && h.starts_with("compute ")) {
            asked = h.substr(8);
        }
        if (asked.empty() || asked == "2.1" || asked == "latest") return {};
        return MakeError(FieldError("OpenStack-API-Version",
                                    "version " + asked + " is not supported: cogs implements 2.1 only"));
    }

    // Answers with the microversion headers.
    static http::Response Versioned(http::Response r) {
        r.headers.emplace_back("openstack-api-version", "compute 2.1");
        r.headers.emplace_back("x-openstack-nova-api-version", "2.1");
        r.headers.emplace_back("vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version");
        return r;
    }

    // A handler behind the microversion check (`self` is this, kept alive by the route).
    std::function<void(Call)> Handler(std::shared_ptr<Compute> self, void (Compute::*f)(Call)) {
        return [self, f](Call c) {
            if (auto st = CheckMicroversion(c); !st)
                return c.Answer(OpenStackFace::Impl::NotAcceptable(st.error()));
            auto respond = std::move(c.respond);
            c.respond = [respond](http::Response r) { respond(Versioned(std::move(r))); };
            ((*self).*f)(std::move(c));
        };
    }

    json::object Server(const Call& c, const json::object& v1) const {
        return openstack::NovaServer(
            v1, os.Base(c), [this](const std::string& id) { return os.NetworkName(id); }, c.who.admin());
    }

    // ---- servers ----

    // The list filters Nova's clients send, as /v1's; the rest is 400.
    Result<Query> ListQuery(const Call& c) const {
        Query q;
        for (const auto& [k, v] : c.query) {
            if (k == "name" || k == "marker") {
                q[k] = v;
            } else if (k == "limit") {
                q[k] = v;
            } else if (k == "status") {
                // Nova's statuses are cogs' but for those a task shows.
                q[k] = v;
            } else if (k == "host" && c.who.admin()) {
                q["host"] = v;
            } else if ((k == "project_id" || k == "tenant_id") && c.who.admin()) {
                q["project_id"] = v;
            } else if (k == "all_tenants" || k == "deleted") {
                if (k == "deleted" && v != "False" && v != "false" && v != "0") {
                    return MakeError(FieldError("deleted", "cogs keeps no deleted servers"));
                }
            } else {
                return MakeError(FieldError(k, "not a filter cogs implements (name, status, limit, marker)"));
            }
        }
        // An admin sees its own project's servers unless it asks for every project's (Nova's all_tenants).
        if (c.who.admin() && !q.count("project_id")) {
            auto all = c.query.find("all_tenants");
            const bool every = all != c.query.end() && all->second != "0" && all->second != "False" &&
                               all->second != "false";
            if (!every) q["project_id"] = c.who.project_id;
        }
        return q;
    }

    // One page of /v1's, at most 1000 (Nova's max_limit), with servers_links to the next: the
    // clients follow it.
    void List(Call c, bool detail) {
        auto q = ListQuery(c);
        if (!q) return c.Fail(q.error());
        const std::string limit = q->count("limit") ? (*q)["limit"] : "1000";
        (*q)["limit"] = limit;
        os.V1(c, "GET", "/v1/servers", "", *q, [this, c, detail, limit](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            json::object page = OpenStackFace::Impl::Body(r);
            json::array servers;
            if (const json::value* items = page.if_contains("servers");
                items != nullptr && items->is_array()) {
                for (const auto& item : items->as_array()) {
                    json::object full = Server(c, item.as_object());
                    servers.push_back(detail ? std::move(full)
                                             : json::object{{"id", full["id"]},
                                                            {"name", full["name"]},
                                                            {"links", full["links"]}});
                }
            }
            json::object o{{"servers", std::move(servers)}};
            if (const std::string next = Str(page, "next_marker"); !next.empty()) {
                std::string href = os.Base(c) + std::string(kPrefix) +
                                   (detail ? "/servers/detail" : "/servers") + "?limit=" + limit +
                                   "&marker=" + next;
                for (const auto& [k, v] : c.query) {
                    if (k != "limit" && k != "marker") href += "&" + k + "=" + http::UrlEncode(v);
                }
                o["servers_links"] = json::array{json::object{{"rel", "next"}, {"href", href}}};
            }
            c.Answer(wire::Json(200, o));
        });
    }

    void ListBrief(Call c) { List(std::move(c), false); }
    void ListDetail(Call c) { List(std::move(c), true); }
    void FlavorsBrief(Call c) { Flavors(std::move(c), false); }
    void FlavorsDetail(Call c) { Flavors(std::move(c), true); }

    void Show(Call c) {
        os.V1(c, "GET", "/v1/servers/" + c.Param("id"), "", {}, [this, c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Json(200, json::object{{"server", Server(c, Obj(Body(r), "server"))}}));
        });
    }
    static json::object Body(const http::Response& r) { return OpenStackFace::Impl::Body(r); }

    // POST /servers: {"server": {...}, "os:scheduler_hints": {"group"}} as /v1's create.
    Result<json::object> CreateBody(const Call& c, std::string* network_auto) const {
        COGS_ASSIGN_OR_RETURN(json::object s, Envelope(c.body, "server"));
        COGS_TRY(OnlyKnown(s,
                           {"name",
                            "flavorRef",
                            "imageRef",
                            "networks",
                            "block_device_mapping_v2",
                            "block_device_mapping",
                            "user_data",
                            "availability_zone",
                            "key_name",
                            "min_count",
                            "max_count",
                            "return_reservation_id",
                            "metadata",
                            "security_groups",
                            "config_drive",
                            "OS-DCF:diskConfig",
                            "adminPass",
                            "personality",
                            "accessIPv4",
                            "accessIPv6"},
                           "server"));
        COGS_TRY(NotSet(s,
                        {"metadata", "config_drive", "adminPass", "personality", "accessIPv4", "accessIPv6",
                         "block_device_mapping"},
                        "server"));
        // The only security group there is, "default" (cogs filters no traffic by group).
        if (const auto* g = s.if_contains("security_groups"); g != nullptr && !g->is_null()) {
            if (!g->is_array()) return MakeError(FieldError("server.security_groups", "must be a list"));
            for (const auto& e : g->as_array()) {
                if (!e.is_object() || Str(e.as_object(), "name") != "default") {
                    return MakeError(FieldError("server.security_groups",
                                                "cogs has no security groups but "
                                                "\"default\""));
                }
            }
        }
        if (const std::string dc = Str(s, "OS-DCF:diskConfig");
            !dc.empty() && dc != "MANUAL" && dc != "AUTO") {
            return MakeError(FieldError("server.OS-DCF:diskConfig", "must be MANUAL or AUTO"));
        }
        json::object v1;
        for (std::string_view f : {"name", "user_data", "availability_zone"}) {
            if (const auto* x = s.if_contains(f); x != nullptr && !x->is_null()) v1[f] = *x;
        }
        // A key pair of the caller's project, by name: /v1 judges it.
        if (const auto* k = s.if_contains("key_name"); k != nullptr && !k->is_null()) v1["key_name"] = *k;
        for (auto [from, to] : {std::pair{"flavorRef", "flavor"}, std::pair{"imageRef", "image"}}) {
            const auto* x = s.if_contains(from);
            if (x == nullptr || !x->is_string() || x->as_string().empty()) {
                return MakeError(FieldError(std::string("server.") + from,
                                            "required (cogs boots every server from an image)"));
            }
            v1[to] = RefId(std::string(x->as_string()));
        }
        for (std::string_view f : {"min_count", "max_count"}) {
            if (const auto* x = s.if_contains(f); x != nullptr && !x->is_null()) {
                // Nova takes them as numbers or strings of digits.
                if (x->is_string()) {
                    const std::string text(x->as_string());
                    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
                        text.size() > 9) {
                        return MakeError(FieldError("server." + std::string(f), "must be an integer"));
                    }
                    v1[f] = std::stoll(text);
                } else {
                    v1[f] = *x;
                }
            }
        }
        // networks: [{"uuid"} or {"port"}] (one: a cogs server has one port), or "auto".
        const json::value* nets = s.if_contains("networks");
        if (nets == nullptr || nets->is_null() || (nets->is_string() && nets->as_string() == "auto")) {
            *network_auto = "auto";
        } else if (nets->is_string()) {
            return MakeError(
                FieldError("server.networks", "\"none\" is not supported: a cogs server has a port"));
        } else if (!nets->is_array() || nets->as_array().size() != 1 || !nets->as_array()[0].is_object()) {
            return MakeError(FieldError(
                "server.networks", "cogs gives a server exactly one network: [{\"uuid\"}] or [{\"port\"}]"));
        } else {
            const json::object& n = nets->as_array()[0].as_object();
            COGS_TRY(NotSet(n, {"fixed_ip", "tag"}, "server.networks[0]"));
            COGS_TRY(OnlyKnown(n, {"uuid", "port", "fixed_ip", "tag"}, "server.networks[0]"));
            // A port of the project (its network is the port's; a uuid given too must be it).
            if (const std::string port = Str(n, "port"); !port.empty()) v1["port_id"] = port;
            if (const std::string uuid = Str(n, "uuid"); !uuid.empty()) {
                v1["network_id"] = uuid;
            } else if (!v1.contains("port_id")) {
                return MakeError(FieldError("server.networks[0].uuid", "required (or port)"));
            }
        }
        // Existing volumes attached at boot: block_device_mapping_v2 [{"uuid", "source_type": "volume",
        // "destination_type": "volume"}].
        if (const auto* bdm = s.if_contains("block_device_mapping_v2"); bdm != nullptr && !bdm->is_null()) {
            if (!bdm->is_array())
                return MakeError(FieldError("server.block_device_mapping_v2", "must be a list"));
            json::array volumes;
            size_t i = 0;
            for (const auto& e : bdm->as_array()) {
                const std::string at = "server.block_device_mapping_v2[" + std::to_string(i++) + "]";
                if (!e.is_object()) return MakeError(FieldError(at, "must be an object"));
                const json::object& m = e.as_object();
                COGS_TRY(OnlyKnown(
                    m,
                    {"uuid", "source_type", "destination_type", "boot_index", "delete_on_termination",
                     "device_name", "volume_size", "tag", "disk_bus", "device_type"},
                    at));
                if (Str(m, "source_type") != "volume" || Str(m, "destination_type") != "volume") {
                    return MakeError(FieldError(at + ".source_type",
                                                "cogs attaches existing volumes only (source_type and "
                                                "destination_type volume); it boots from the image"));
                }
                if (const auto* b = m.if_contains("boot_index");
                    b != nullptr && !b->is_null() && !(b->is_int64() && b->as_int64() < 0) &&
                    !(b->is_string() && (b->as_string() == "-1" || b->as_string() == "none"))) {
                    return MakeError(FieldError(at + ".boot_index", "cogs does not boot from a volume"));
                }
                if (wire::Bool(m, "delete_on_termination")) {
                    return MakeError(FieldError(at + ".delete_on_termination",
                                                "not supported: delete the volume after the server"));
                }
                if (Str(m, "uuid").empty()) return MakeError(FieldError(at + ".uuid", "required"));
                volumes.push_back(json::value(Str(m, "uuid")));
            }
            if (!volumes.empty()) v1["volume_ids"] = std::move(volumes);
        }
        const json::value whole = json::parse(c.body);  // an object: Envelope parsed it
        if (const auto* hints = whole.as_object().if_contains("os:scheduler_hints");
            hints != nullptr && hints->is_object()) {
            COGS_TRY(OnlyKnown(hints->as_object(), {"group"}, "os:scheduler_hints"));
            if (const std::string g = Str(hints->as_object(), "group"); !g.empty()) v1["server_group_id"] = g;
        }
        return v1;
    }

    void Create(Call c) {
        std::string network_auto;
        auto body = CreateBody(c, &network_auto);
        if (!body) return c.Fail(body.error());
        bool reservation = false;
        {
            const json::object s = Envelope(c.body, "server").value();
            reservation = wire::Bool(s, "return_reservation_id");
        }
        auto start = [this, c, reservation](json::object v1) {
            os.V1(
                c, "POST", "/v1/servers", json::serialize(v1), {}, [this, c, reservation](http::Response r) {
                    if (r.status != 202) {
                        // /v1's field names, as the Nova request wrote them.
                        return c.Answer(
                            RenameField(std::move(r), {{"flavor", "server.flavorRef"},
                                                       {"image", "server.imageRef"},
                                                       {"network_id", "server.networks[0].uuid"},
                                                       {"port_id", "server.networks[0].port"},
                                                       {"volume_ids", "server.block_device_mapping_v2"},
                                                       {"user_data", "server.user_data"},
                                                       {"key_name", "server.key_name"},
                                                       {"availability_zone", "server.availability_zone"},
                                                       {"server_group_id", "os:scheduler_hints.group"},
                                                       {"min_count", "server.min_count"},
                                                       {"max_count", "server.max_count"},
                                                       {"name", "server.name"}}));
                    }
                    json::object o = Body(r);
                    if (reservation) {
                        return c.Answer(wire::Json(
                            202, json::object{{"reservation_id", Str(o, "reservation_id").empty()
                                                                     ? Str(Obj(o, "server"), "reservation_id")
                                                                     : Str(o, "reservation_id")}}));
                    }
                    // A bulk create answers its first server, as Nova's does.
                    std::string id = Str(Obj(o, "server"), "id");
                    if (id.empty()) {
                        if (auto* list = o.if_contains("servers");
                            list && list->is_array() && !list->as_array().empty()) {
                            id = Str(list->as_array()[0].as_object(), "id");
                        }
                    }
                    const std::string base = os.Base(c);
                    c.Answer(wire::Json(
                        202,
                        json::object{
                            {"server",
                             json::object{
                                 {"id", id},
                                 {"links", json::array{json::object{
                                               {"rel", "self"},
                                               {"href", base + std::string(kPrefix) + "/servers/" + id}}}},
                                 {"OS-DCF:diskConfig", "MANUAL"},
                                 {"security_groups", json::array{json::object{{"name", "default"}}}}}}}));
                });
        };
        if (network_auto.empty()) return start(std::move(*body));
        // "auto" (or no networks): the project's one network, as Nova's auto-allocation would find it.
        os.V1All(c, "networks", {{"project_id", c.who.project_id}}, 2,
                 [c, start, v1 = std::move(*body)](Result<json::array> nets, http::Response error) mutable {
                     if (!nets) return c.Answer(std::move(error));
                     if (nets->size() != 1) {
                         return c.Fail(
                             FieldError("server.networks", "give the network's uuid: the project has " +
                                                               std::to_string(nets->size()) + " networks"));
                     }
                     v1["network_id"] = Str(nets->at(0).as_object(), "id");
                     start(std::move(v1));
                 });
    }

    void Delete(Call c) {
        os.V1(c, "DELETE", "/v1/servers/" + c.Param("id"), "", {},
              [c](http::Response r) { c.Answer(r.status == 202 ? NoBody(204) : std::move(r)); });
    }

    // POST /servers/{id}/action: os-start, os-stop, reboot, os-getConsoleOutput.
    void Action(Call c) {
        boost::system::error_code ec;
        json::value v = json::parse(c.body, ec);
        if (ec || !v.is_object() || v.as_object().size() != 1) {
            return c.Fail(FieldError("action", "the body must be one action: {\"os-stop\": null}"));
        }
        const std::string action(v.as_object().begin()->key());
        const json::value& arg = v.as_object().begin()->value();
        const std::string path = "/v1/servers/" + c.Param("id");
        auto accepted = [c](http::Response r) { c.Answer(r.status == 202 ? NoBody(202) : std::move(r)); };
        if (action == "os-start") return os.V1(c, "POST", path + "/start", "{}", {}, accepted);
        if (action == "os-stop") return os.V1(c, "POST", path + "/stop", "{}", {}, accepted);
        if (action == "reboot") {
            // SOFT or HARD: cogs restarts the instance either way.
            const std::string type = arg.is_object() ? Str(arg.as_object(), "type") : "";
            if (type != "SOFT" && type != "HARD") {
                return c.Fail(FieldError("reboot.type", "must be SOFT or HARD"));
            }
            return os.V1(c, "POST", path + "/reboot", "{}", {}, accepted);
        }
        if (action == "os-getConsoleOutput") {
            Query q;
            if (arg.is_object()) {
                if (const auto* l = arg.as_object().if_contains("length"); l && !l->is_null()) {
                    if (l->is_int64() && l->as_int64() == -1) {
                        // Nova's "everything".
                    } else if (l->is_int64()) {
                        q["length"] = std::to_string(l->as_int64());
                    } else if (l->is_string()) {
                        q["length"] = std::string(l->as_string());
                    } else {
                        return c.Fail(FieldError("os-getConsoleOutput.length", "must be an integer"));
                    }
                }
            }
            return os.V1(c, "GET", path + "/console", "", q, [c](http::Response r) {
                if (r.status != 200) return c.Answer(std::move(r));
                c.Answer(wire::Json(200, json::object{{"output", Str(Obj(Body(r), "console"), "output")}}));
            });
        }
        c.Answer(OpenStackFace::Impl::NotImplemented("the server action " + action));
    }

    // ---- volume attachments ----

    // The server (visible to the caller) and its volumes, or /v1's 404.
    void WithServer(const Call& c, std::function<void(json::object server)> then) {
        os.V1(c, "GET", "/v1/servers/" + c.Param("id"), "", {}, [c, then](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            then(Obj(Body(r), "server"));
        });
    }

    void Attachments(Call c) {
        WithServer(c, [c](json::object s) {
            json::array list;
            for (const std::string& v : StrList(s, "volume_ids")) {
                list.push_back(openstack::NovaAttachment(Str(s, "id"), v));
            }
            c.Answer(wire::Json(200, json::object{{"volumeAttachments", std::move(list)}}));
        });
    }

    void Attachment(Call c) {
        WithServer(c, [c](json::object s) {
            const auto volumes = StrList(s, "volume_ids");
            auto it = std::find(volumes.begin(), volumes.end(), c.Param("volume"));
            if (it == volumes.end()) {
                return c.Fail(Error(ErrorCode::kNotFound, "volume " + c.Param("volume") +
                                                              " is not attached to server " + Str(s, "id")));
            }
            c.Answer(wire::Wrapped(200, "volumeAttachment", openstack::NovaAttachment(Str(s, "id"), *it)));
        });
    }

    void Attach(Call c) {
        auto a = Envelope(c.body, "volumeAttachment");
        if (!a) return c.Fail(a.error());
        if (auto st =
                OnlyKnown(*a, {"volumeId", "device", "tag", "delete_on_termination"}, "volumeAttachment");
            !st) {
            return c.Fail(st.error());
        }
        if (auto st = NotSet(*a, {"tag", "delete_on_termination"}, "volumeAttachment"); !st) {
            return c.Fail(st.error());
        }
        const std::string volume = Str(*a, "volumeId");
        if (volume.empty()) return c.Fail(FieldError("volumeAttachment.volumeId", "required"));
        const std::string server = c.Param("id");
        os.V1(c, "POST", "/v1/volumes/" + volume + "/attach",
              json::serialize(json::object{{"server_id", server}}), {},
              [c, server, volume](http::Response r) {
                  if (r.status != 202) return c.Answer(std::move(r));
                  c.Answer(wire::Wrapped(200, "volumeAttachment", openstack::NovaAttachment(server, volume)));
              });
    }

    void Detach(Call c) {
        WithServer(c, [this, c](json::object s) {
            const std::string volume = c.Param("volume");
            const auto volumes = StrList(s, "volume_ids");
            if (std::find(volumes.begin(), volumes.end(), volume) == volumes.end()) {
                return c.Fail(Error(ErrorCode::kNotFound,
                                    "volume " + volume + " is not attached to server " + Str(s, "id")));
            }
            os.V1(c, "POST", "/v1/volumes/" + volume + "/detach", "{}", {},
                  [c](http::Response r) { c.Answer(r.status == 202 ? NoBody(202) : std::move(r)); });
        });
    }

    // ---- flavors ----

    void Flavors(Call c, bool detail) {
        for (const auto& [k, v] : c.query) {
            if (k != "is_public" && k != "limit" && k != "marker") {
                return c.Fail(
                    FieldError(k, "not a flavor filter cogs implements (is_public, limit, marker)"));
            }
        }
        Query q;
        if (auto l = c.query.find("limit"); l != c.query.end()) q["limit"] = l->second;
        if (auto m = c.query.find("marker"); m != c.query.end()) q["marker"] = m->second;
        os.V1All(c, "flavors", q, q.count("limit") ? 1000 : kListAll,
                 [this, c, detail](Result<json::array> items, http::Response error) {
                     if (!items) return c.Answer(std::move(error));
                     json::array flavors;
                     for (const auto& f : *items) {
                         json::object v = openstack::NovaFlavor(f.as_object(), os.Base(c));
                         if (!detail)
                             v = json::object{{"id", v["id"]}, {"name", v["name"]}, {"links", v["links"]}};
                         flavors.push_back(std::move(v));
                     }
                     c.Answer(wire::Json(200, json::object{{"flavors", std::move(flavors)}}));
                 });
    }

    void Flavor(Call c) {
        os.V1(c, "GET", "/v1/flavors/" + c.Param("id"), "", {}, [this, c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Wrapped(200, "flavor", openstack::NovaFlavor(Obj(Body(r), "flavor"), os.Base(c))));
        });
    }

    // A flavor's extra specs: cogs' have none.
    void ExtraSpecs(Call c) {
        os.V1(c, "GET", "/v1/flavors/" + c.Param("id"), "", {}, [c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Json(200, json::object{{"extra_specs", json::object{}}}));
        });
    }

    // ---- server groups ----

    json::object Group(const Call& c, const json::object& g) const {
        json::array members;
        for (const Res* s : os.ctx.model.Having(kServer, "server_group_id", Str(g, "id"))) {
            if (Visible(c.who, *s)) members.push_back(json::value(s->id));
        }
        return openstack::NovaServerGroup(g, std::move(members));
    }

    void Groups(Call c) {
        Query q;
        if (c.who.admin() && c.query.count("all_projects") == 0) q["project_id"] = c.who.project_id;
        os.V1All(c, "server-groups", q, kListAll, [this, c](Result<json::array> items, http::Response error) {
            if (!items) return c.Answer(std::move(error));
            json::array groups;
            for (const auto& g : *items)
                groups.push_back(Group(c, g.as_object()));
            c.Answer(wire::Json(200, json::object{{"server_groups", std::move(groups)}}));
        });
    }

    void ShowGroup(Call c) {
        os.V1(c, "GET", "/v1/server-groups/" + c.Param("id"), "", {}, [this, c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Wrapped(200, "server_group", Group(c, Obj(Body(r), "server_group"))));
        });
    }

    void CreateGroup(Call c) {
        auto g = Envelope(c.body, "server_group");
        if (!g) return c.Fail(g.error());
        if (auto st = OnlyKnown(*g, {"name", "policies", "policy"}, "server_group"); !st)
            return c.Fail(st.error());
        std::string policy = Str(*g, "policy");
        if (policy.empty()) {
            const auto policies = StrList(*g, "policies");
            if (policies.size() != 1) {
                return c.Fail(FieldError("server_group.policies", "one policy: affinity or anti-affinity"));
            }
            policy = policies[0];
        }
        json::object v1{{"name", Str(*g, "name")}, {"policy", policy}};
        os.V1(c, "POST", "/v1/server-groups", json::serialize(v1), {}, [this, c](http::Response r) {
            if (r.status != 201) return c.Answer(std::move(r));
            c.Answer(wire::Wrapped(200, "server_group", Group(c, Obj(Body(r), "server_group"))));
        });
    }

    void DeleteGroup(Call c) {
        os.V1(c, "DELETE", "/v1/server-groups/" + c.Param("id"), "", {},
              [c](http::Response r) { c.Answer(r.status < 300 ? NoBody(204) : std::move(r)); });
    }

    // ---- key pairs (imported only) ----

    // The /v1 path of the caller's key pair named `name`.
    static std::string KeypairPath(const std::string& name) {
        return "/v1/keypairs/" + http::UrlEncode(name);
    }

    void Keypairs(Call c) {
        Query q;
        if (c.who.admin()) q["project_id"] = c.who.project_id;  // a user's own, as Nova lists them
        os.V1All(c, "keypairs", q, kListAll, [c](Result<json::array> items, http::Response error) {
            if (!items) return c.Answer(std::move(error));
            json::array keypairs;
            for (const auto& k : *items) {
                keypairs.push_back(json::object{{"keypair", openstack::NovaKeypair(k.as_object(), false)}});
            }
            c.Answer(wire::Json(200, json::object{{"keypairs", std::move(keypairs)}}));
        });
    }

    void ShowKeypair(Call c) {
        os.V1(c, "GET", KeypairPath(c.Param("name")), "", {}, [c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Wrapped(200, "keypair", openstack::NovaKeypair(Obj(Body(r), "keypair"), true)));
        });
    }

    // {"keypair": {"name", "public_key", "type"?: "ssh"}}: an import. Without a public key Nova
    // would generate the pair and answer its private key; cogs never holds one.
    void CreateKeypair(Call c) {
        auto k = Envelope(c.body, "keypair");
        if (!k) return c.Fail(k.error());
        if (auto st = OnlyKnown(*k, {"name", "public_key", "type", "user_id"}, "keypair"); !st) {
            return c.Fail(st.error());
        }
        if (auto st = NotSet(*k, {"user_id"}, "keypair"); !st) return c.Fail(st.error());
        if (const std::string type = Str(*k, "type"); !type.empty() && type != "ssh") {
            return c.Fail(FieldError("keypair.type", "cogs keeps ssh keys only"));
        }
        const auto* key = k->if_contains("public_key");
        if (key == nullptr || key->is_null() || (key->is_string() && key->as_string().empty())) {
            return c.Fail(
                FieldError("keypair.public_key", "cogs does not generate keys: give your public key"));
        }
        json::object v1{{"public_key", *key}};
        if (const auto* name = k->if_contains("name")) v1["name"] = *name;
        os.V1(c, "POST", "/v1/keypairs", json::serialize(v1), {}, [c](http::Response r) {
            if (r.status != 201) return c.Answer(std::move(r));
            json::object view = openstack::NovaKeypair(Obj(Body(r), "keypair"), false);
            view["user_id"] = "";
            c.Answer(wire::Wrapped(200, "keypair", std::move(view)));
        });
    }

    void DeleteKeypair(Call c) {
        os.V1(c, "DELETE", KeypairPath(c.Param("name")), "", {},
              [c](http::Response r) { c.Answer(r.status < 300 ? NoBody(202) : std::move(r)); });
    }

    // ---- limits, availability zones ----

    void Limits(Call c) {
        os.V1(c, "GET", "/v1/projects/" + c.who.project_id + "/quotas", "", {}, [c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            const json::object q = Obj(Body(r), "quotas");
            auto limit = [&q](std::string_view name) { return Int(Obj(q, name), "limit"); };
            auto used = [&q](std::string_view name) { return Int(Obj(q, name), "in_use"); };
            json::object absolute{
                {"maxTotalInstances", limit("servers")},
                {"totalInstancesUsed", used("servers")},
                {"maxTotalCores", limit("vcpus")},
                {"totalCoresUsed", used("vcpus")},
                {"maxTotalRAMSize", limit("ram_mb")},
                {"totalRAMUsed", used("ram_mb")},
                {"maxServerGroups", limit("server_groups")},
                {"totalServerGroupsUsed", used("server_groups")},
                {"maxServerGroupMembers", -1},
                {"maxTotalKeypairs", -1},
                {"maxServerMeta", 0},
                {"maxImageMeta", 0},
                {"maxPersonality", 0},
                {"maxPersonalitySize", 0},
                {"maxSecurityGroups", 0},
                {"maxSecurityGroupRules", 0},
                {"maxTotalFloatingIps", 0},
                {"totalFloatingIpsUsed", 0},
                {"totalSecurityGroupsUsed", 0},
            };
            c.Answer(
                wire::Json(200, json::object{{"limits", json::object{{"rate", json::array{}},
                                                                     {"absolute", std::move(absolute)}}}}));
        });
    }

    // The zones the hosts are in (every caller may know their names, as in Nova).
    void Zones(Call c) {
        std::set<std::string> zones;
        for (const auto& [id, h] : os.ctx.model.All(kHost)) {
            zones.insert(Str(h.body, "availability_zone").empty() ? "nova"
                                                                  : Str(h.body, "availability_zone"));
        }
        json::array info;
        for (const std::string& z : zones) {
            info.push_back(json::object{
                {"zoneName", z}, {"zoneState", json::object{{"available", true}}}, {"hosts", nullptr}});
        }
        c.Answer(wire::Json(200, json::object{{"availabilityZoneInfo", std::move(info)}}));
    }
};

}  // namespace

void AddComputeRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes) {
    auto compute = std::make_shared<Compute>(Compute{os});
    const std::string p(kPrefix);
    routes.push_back({"GET", "/compute",
                      [&os](Call c) { c.Answer(wire::Json(200, openstack::ComputeVersions(os.Base(c)))); }});
    routes.push_back(
        {"GET", p, [&os](Call c) {
             c.Answer(wire::Json(200, json::object{{"version", openstack::ComputeVersion(os.Base(c))}}));
         }});
    auto add = [&](std::string method, std::string path, void (Compute::*f)(Call)) {
        routes.push_back({std::move(method), p + path, compute->Handler(compute, f)});
    };
    add("GET", "/servers", &Compute::ListBrief);
    add("GET", "/servers/detail", &Compute::ListDetail);
    add("POST", "/servers", &Compute::Create);
    add("GET", "/servers/{id}", &Compute::Show);
    add("DELETE", "/servers/{id}", &Compute::Delete);
    add("POST", "/servers/{id}/action", &Compute::Action);
    add("GET", "/servers/{id}/os-volume_attachments", &Compute::Attachments);
    add("POST", "/servers/{id}/os-volume_attachments", &Compute::Attach);
    add("GET", "/servers/{id}/os-volume_attachments/{volume}", &Compute::Attachment);
    add("DELETE", "/servers/{id}/os-volume_attachments/{volume}", &Compute::Detach);
    add("GET", "/flavors", &Compute::FlavorsBrief);
    add("GET", "/flavors/detail", &Compute::FlavorsDetail);
    add("GET", "/flavors/{id}", &Compute::Flavor);
    add("GET", "/flavors/{id}/os-extra_specs", &Compute::ExtraSpecs);
    add("GET", "/os-server-groups", &Compute::Groups);
    add("POST", "/os-server-groups", &Compute::CreateGroup);
    add("GET", "/os-server-groups/{id}", &Compute::ShowGroup);
    add("DELETE", "/os-server-groups/{id}", &Compute::DeleteGroup);
    add("GET", "/os-keypairs", &Compute::Keypairs);
    add("POST", "/os-keypairs", &Compute::CreateKeypair);
    add("GET", "/os-keypairs/{name}", &Compute::ShowKeypair);
    add("DELETE", "/os-keypairs/{name}", &Compute::DeleteKeypair);
    add("GET", "/limits", &Compute::Limits);
    add("GET", "/os-availability-zone", &Compute::Zones);
    add("GET", "/os-availability-zone/detail", &Compute::Zones);
}

}  // namespace cogs::cloud
