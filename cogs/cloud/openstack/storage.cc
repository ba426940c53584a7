// Cinder v3 (face.h) at /volume/v3/{project_id}: volumes — create, list, detail, show, delete;
// and Glance v2 at /image/v2: images — create, upload, download, list, show, delete. Their version
// documents.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/cloud/openstack/internal.h"
#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

using wire::Int;
using wire::Obj;
using wire::Str;

namespace {

struct Storage {
    OpenStackFace::Impl& os;

    // The path's project must be the caller's (an admin's any): Cinder's URLs name it.
    static Status CheckProject(const Call& c) {
        if (c.who.admin() || c.Param("project") == c.who.project_id) return {};
        return MakeError(Error(ErrorCode::kNotFound, "project " + c.Param("project") + " not found"));
    }

    // The microversion asked for: 3.0 only.
    static Status CheckMicroversion(const Call& c) {
        const std::string h = c.Header("openstack-api-version");
        if (h.empty() || h == "volume 3.0" || h == "volume latest") return {};
        return MakeError(FieldError("OpenStack-API-Version",
                                    "\"" + h + "\" is not supported: cogs implements volume 3.0"));
    }

    std::function<void(Call)> Volumes(std::shared_ptr<Storage> self, void (Storage::*f)(Call)) {
        return [self, f](Call c) {
            if (auto st = CheckMicroversion(c); !st)
                return c.Answer(OpenStackFace::Impl::NotAcceptable(st.error()));
            if (auto st = CheckProject(c); !st) return c.Fail(st.error());
            auto respond = std::move(c.respond);
            c.respond = [respond](http::Response r) {
                r.headers.emplace_back("openstack-api-version", "volume 3.0");
                respond(std::move(r));
            };
            ((*self).*f)(std::move(c));
        };
    }

    json::object Volume(const Call& c, const json::object& v1) const {
        return openstack::CinderVolume(v1, os.Base(c), c.who.admin());
    }

    // Cinder's list filters, as /v1's.
    static Result<Query> ListQuery(const Call& c) {
        Query q;
        for (const auto& [k, v] : c.query) {
            if (k == "name" || k == "status" || k == "limit" || k == "marker") {
                q[k] = v;
            } else if (k == "all_tenants") {
                // An admin's lists are every project's unless it names one.
            } else if ((k == "project_id" || k == "tenant_id") && c.who.admin()) {
                q["project_id"] = v;
            } else if (k == "sort" || k == "sort_key" || k == "sort_dir" || k == "with_count") {
                // cogs lists by id; the clients send these by default.
            } else {
                return MakeError(FieldError(k, "not a filter cogs implements (name, status, limit, marker)"));
            }
        }
        if (c.who.admin() && !q.count("project_id") && !c.query.count("all_tenants")) {
            q["project_id"] = c.Param("project");
        }
        return q;
    }

    void List(Call c, bool detail) {
        auto q = ListQuery(c);
        if (!q) return c.Fail(q.error());
        auto limit = ListLimit(*q);
        if (!limit) return c.Fail(limit.error());
        os.V1All(c, "volumes", *q, *limit,
                 [this, c, detail, limit = *limit](Result<json::array> items, http::Response error) {
                     if (!items) return c.Answer(std::move(error));
                     json::array volumes;
                     for (const auto& v : *items) {
                         if (volumes.size() >= limit) break;
                         json::object view = Volume(c, v.as_object());
                         if (!detail)
                             view = json::object{
                                 {"id", view["id"]}, {"name", view["name"]}, {"links", view["links"]}};
                         volumes.push_back(std::move(view));
                     }
                     c.Answer(wire::Json(200, json::object{{"volumes", std::move(volumes)}}));
                 });
    }
    void ListBrief(Call c) { List(std::move(c), false); }
    void ListDetail(Call c) { List(std::move(c), true); }

    void Show(Call c) {
        os.V1(c, "GET", "/v1/volumes/" + c.Param("id"), "", {}, [this, c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Wrapped(200, "volume", Volume(c, Obj(OpenStackFace::Impl::Body(r), "volume"))));
        });
    }

    void Create(Call c) {
        auto in = Envelope(c.body, "volume");
        if (!in) return c.Fail(in.error());
        if (auto st = OnlyKnown(*in,
                                {"size", "name", "description", "volume_type", "availability_zone",
                                 "metadata", "imageRef", "snapshot_id", "source_volid", "consistencygroup_id",
                                 "backup_id", "multiattach", "group_id", "scheduler_hints", "bootable"},
                                "volume");
            !st) {
            return c.Fail(st.error());
        }
        if (auto st = NotSet(
                *in,
                {"description", "metadata", "imageRef", "snapshot_id", "source_volid", "consistencygroup_id",
                 "backup_id", "multiattach", "group_id", "scheduler_hints", "bootable"},
                "volume");
            !st) {
            return c.Fail(st.error());
        }
        if (const std::string t = Str(*in, "volume_type"); !t.empty() && t != "__DEFAULT__") {
            return c.Fail(FieldError("volume.volume_type", "cogs has one volume type, __DEFAULT__"));
        }
        if (const std::string az = Str(*in, "availability_zone"); !az.empty() && az != "nova") {
            return c.Fail(FieldError("volume.availability_zone", "cogs volumes are in zone nova"));
        }
        json::object v1;
        if (const auto* size = in->if_contains("size"); size != nullptr) {
            if (size->is_string()) {
                const std::string text(size->as_string());
                if (text.empty() || text.size() > 9 ||
                    text.find_first_not_of("0123456789") != std::string::npos) {
                    return c.Fail(FieldError("volume.size", "must be an integer"));
                }
                v1["size_gb"] = std::stoll(text);
            } else {
                v1["size_gb"] = *size;
            }
        }
        // Cinder's name is optional; cogs' is not.
        std::string name = Str(*in, "name");
        v1["name"] = name.empty() ? "volume" : name;
        os.V1(c, "POST", "/v1/volumes", json::serialize(v1), {}, [this, c](http::Response r) {
            if (r.status != 202) {
                return c.Answer(
                    RenameField(std::move(r), {{"size_gb", "volume.size"}, {"name", "volume.name"}}));
            }
            c.Answer(wire::Wrapped(202, "volume", Volume(c, Obj(OpenStackFace::Impl::Body(r), "volume"))));
        });
    }

    void Delete(Call c) {
        for (const auto& [k, v] : c.query) {
            if (k != "cascade" || (v != "false" && v != "False")) {
                return c.Fail(FieldError(k, "not supported by cogs"));
            }
        }
        os.V1(c, "DELETE", "/v1/volumes/" + c.Param("id"), "", {},
              [c](http::Response r) { c.Answer(r.status == 202 ? NoBody(202) : std::move(r)); });
    }

    // ---- Glance ----

    void Images(Call c) {
        Query q;
        for (const auto& [k, v] : c.query) {
            if (k == "name" || k == "status" || k == "limit" || k == "marker") {
                q[k] = v;
            } else if ((k == "visibility" && (v == "public" || v == "all")) || k == "sort" ||
                       k == "sort_key" || k == "sort_dir" || k == "member_status") {
                // Every cogs image is public; cogs lists by id.
            } else if (k == "visibility" || (k == "os_hidden" && (v == "True" || v == "true"))) {
                q["status"] = "none";  // no cogs image is private, shared, community or hidden
            } else if (k == "os_hidden") {
                // Every cogs image is shown.
            } else {
                return c.Fail(FieldError(k, "not a filter cogs implements (name, status, limit, marker)"));
            }
        }
        auto limit = ListLimit(q);
        if (!limit) return c.Fail(limit.error());
        const bool none = q.count("status") && q["status"] == "none";
        if (none) q.erase("status");
        os.V1All(
            c, "images", q, *limit,
            [c, limit = *limit, none](Result<json::array> items, http::Response error) {
                if (!items) return c.Answer(std::move(error));
                json::array images;
                for (const auto& i : *items) {
                    if (none || images.size() >= limit) break;
                    images.push_back(openstack::GlanceImage(i.as_object()));
                }
                json::object o{{"images", images}, {"first", "/v2/images"}, {"schema", "/v2/schemas/images"}};
                if (!none && images.size() == limit && items->size() > limit) {
                    o["next"] = "/v2/images?marker=" + Str(images.back().as_object(), "id") +
                                "&limit=" + std::to_string(limit);
                }
                c.Answer(wire::Json(200, o));
            });
    }

    // POST /v2/images: the record (queued), as /v1's; its content comes with PUT .../file.
    void CreateImage(Call c) {
        boost::system::error_code ec;
        json::value v = json::parse(c.body, ec);
        if (ec || !v.is_object()) return c.Fail(FieldError("image", "the body must be a JSON object"));
        json::object in = v.as_object();
        // openstacksdk's own bookkeeping of what it uploads (the file's md5 and sha256, its name):
        // cogs computes and shows the content's sha256 itself (os_hash_value).
        for (std::string_view key : {"owner_specified.openstack.md5", "owner_specified.openstack.sha256",
                                     "owner_specified.openstack.object"}) {
            in.erase(key);
        }
        if (auto st = OnlyKnown(in,
                                {"name", "disk_format", "container_format", "min_disk", "min_ram",
                                 "visibility", "protected", "tags", "os_distro", "os_hidden", "id"},
                                "image");
            !st) {
            return c.Fail(st.error());
        }
        if (auto st = NotSet(in, {"min_ram", "protected", "tags", "os_hidden", "id"}, "image"); !st) {
            return c.Fail(st.error());
        }
        // What a cogs image is: a root file system, a gzip-compressed tar archive, public.
        if (const std::string f = Str(in, "disk_format"); !f.empty() && f != "raw") {
            return c.Fail(
                FieldError("image.disk_format", "cogs images are raw (a root file system archive)"));
        }
        if (const std::string f = Str(in, "container_format");
            !f.empty() && f != "bare" && f != "compressed" && f != "docker") {
            return c.Fail(
                FieldError("image.container_format", "must be bare, compressed or docker: a gzip tar"));
        }
        if (const std::string vis = Str(in, "visibility"); !vis.empty() && vis != "public") {
            return c.Fail(FieldError("image.visibility", "every cogs image is public"));
        }
        json::object v1{{"name", Str(in, "name")}};
        if (const auto* d = in.if_contains("min_disk"); d && !d->is_null()) v1["min_disk_gb"] = *d;
        if (const std::string os = Str(in, "os_distro"); !os.empty()) v1["os"] = os;
        os.V1(c, "POST", "/v1/images", json::serialize(v1), {}, [c](http::Response r) {
            if (r.status != 201) {
                return c.Answer(RenameField(
                    std::move(r),
                    {{"name", "image.name"}, {"min_disk_gb", "image.min_disk"}, {"os", "image.os_distro"}}));
            }
            c.Answer(wire::Json(201, openstack::GlanceImage(Obj(OpenStackFace::Impl::Body(r), "image"))));
        });
    }

    // PUT /v2/images/{id}/file: /v1's upload (spooled by cogs/http, checked, stored); 204.
    void Upload(Call c) {
        os.V1(
            c, "PUT", "/v1/images/" + c.Param("id") + "/file", "", {},
            [c](http::Response r) { c.Answer(r.status == 200 ? NoBody(204) : std::move(r)); }, c.body_file);
    }

    // GET /v2/images/{id}/file: the content as /v1 serves it.
    void Download(Call c) {
        os.V1(c, "GET", "/v1/images/" + c.Param("id") + "/file", "", {}, [c](http::Response r) {
            if (r.status == 409) r.status = 204;  // Glance: an image without content has an empty file
            if (r.status == 204) r.body.clear();
            c.Answer(std::move(r));
        });
    }

    void DeleteImage(Call c) {
        os.V1(c, "DELETE", "/v1/images/" + c.Param("id"), "", {},
              [c](http::Response r) { c.Answer(r.status < 300 ? NoBody(204) : std::move(r)); });
    }

    void Image(Call c) {
        os.V1(c, "GET", "/v1/images/" + c.Param("id"), "", {}, [c](http::Response r) {
            if (r.status != 200) return c.Answer(std::move(r));
            c.Answer(wire::Json(200, openstack::GlanceImage(Obj(OpenStackFace::Impl::Body(r), "image"))));
        });
    }
};

}  // namespace

void AddStorageRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes) {
    auto storage = std::make_shared<Storage>(Storage{os});
    routes.push_back({"GET", "/volume",
                      [&os](Call c) { c.Answer(wire::Json(300, openstack::VolumeVersions(os.Base(c)))); }});
    routes.push_back({"GET", "/volume/v3",
                      [&os](Call c) { c.Answer(wire::Json(200, openstack::VolumeVersions(os.Base(c)))); }});
    const std::string p = "/volume/v3/{project}/volumes";
    routes.push_back({"GET", p, storage->Volumes(storage, &Storage::ListBrief)});
    routes.push_back({"GET", p + "/detail", storage->Volumes(storage, &Storage::ListDetail)});
    routes.push_back({"POST", p, storage->Volumes(storage, &Storage::Create)});
    routes.push_back({"GET", p + "/{id}", storage->Volumes(storage, &Storage::Show)});
    routes.push_back({"DELETE", p + "/{id}", storage->Volumes(storage, &Storage::Delete)});

    routes.push_back({"GET", "/image",
                      [&os](Call c) { c.Answer(wire::Json(300, openstack::ImageVersions(os.Base(c)))); }});
    routes.push_back({"GET", "/image/v2",
                      [&os](Call c) { c.Answer(wire::Json(200, openstack::ImageVersions(os.Base(c)))); }});
    routes.push_back({"GET", "/image/v2/images", [storage](Call c) { storage->Images(std::move(c)); }});
    routes.push_back({"GET", "/image/v2/images/{id}", [storage](Call c) { storage->Image(std::move(c)); }});
    routes.push_back({"POST", "/image/v2/images", [storage](Call c) { storage->CreateImage(std::move(c)); }});
    routes.push_back(
        {"DELETE", "/image/v2/images/{id}", [storage](Call c) { storage->DeleteImage(std::move(c)); }});
    routes.push_back(
        {"PUT", "/image/v2/images/{id}/file", [storage](Call c) { storage->Upload(std::move(c)); }});
    routes.push_back(
        {"GET", "/image/v2/images/{id}/file", [storage](Call c) { storage->Download(std::move(c)); }});
}

}  // namespace cogs::cloud
