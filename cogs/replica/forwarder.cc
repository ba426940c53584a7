#include "cogs/replica/forwarder.h"

#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/runtime/files.h"
#include "cogs/wire/answer.h"
#include "cogs/wire/host_routes.h"

namespace cogs::replica {

class Forwarder::State : public std::enable_shared_from_this<State> {
public:
    State(boost::asio::io_context& io, ForwarderOptions o) : io_(io), options_(std::move(o)) {}

    // The pool for `address`: the system lane's (registrations, heartbeats) or everything else's.
    http::Client* ClientFor(const std::string& address, bool system) {
        const std::string key = (system ? "system " : "tenant ") + address;
        auto it = clients_.find(key);
        if (it != clients_.end()) {
            return it->second.get();
        }
        auto ep = http::ParseHttpUrl(address);
        if (!ep) {
            return nullptr;
        }
        if (clients_.size() > 32) {
            clients_.clear();  // leaders come and go; keep only recent ones
        }
        http::ClientOptions co;
        co.host = ep->host;
        co.port = ep->port;
        co.max_connections = system ? options_.system_max_connections : options_.max_connections;
        if (ep->tls) {
            if (options_.tls == nullptr) return nullptr;  // an https leader, and no CA to verify it by
            co.tls = options_.tls;
        }
        return clients_.emplace(key, http::MakeClient(io_, co)).first->second.get();
    }

    static http::Response Refuse(const std::string& reason, const std::string& message) {
        Error e(ErrorCode::kUnavailable, message);
        e.reason = reason;
        return wire::ApiError(e);
    }

    static bool IsImageDownload(const http::Request& req) {
        const std::string path = req.Path();
        return req.method == "GET" && path.starts_with("/v1/images/") && path.ends_with("/file") &&
               path.size() > std::string_view("/v1/images//file").size();
    }

    static bool IsHeartbeat(const http::Request& req) { return wire::IsLeaseRenewal(req.method, req.Path()); }

    // A host's registration (PUT /v1/hosts/{name}) or renewal: the leader's system lane.
    static bool IsSystem(const http::Request& req) {
        return wire::IsHostRegistration(req.method, req.Path()) || IsHeartbeat(req);
    }

    void Serve(http::Request req, http::Respond respond) {
        auto leader = options_.leader();
        if (req.Path() == "/healthz") {
            boost::json::object o{{"status", "ok"}, {"role", "follower"}};
            o["leader"] = leader && leader->alive ? leader->id : "";
            return respond(wire::Json(200, o));
        }
        if (!leader || SteadyClock::now() - leader->read_at > options_.stale_after) {
            ++stats_.unreachable;
            return respond(Refuse("leader_unknown",
                                  "this replica cannot read who leads from the database right now: retry"));
        }
        if (!leader->alive || leader->address.empty() || leader->id == options_.replica_id) {
            ++stats_.no_leader;
            return respond(
                Refuse("no_leader", "no replica leads right now (a failover is under way): retry"));
        }
        if (!req.Header("x-cogs-forwarded").empty()) {
            ++stats_.unreachable;
            return respond(Refuse("leader_unreachable", "forwarded by " + req.Header("x-cogs-forwarded") +
                                                            " to a replica that does "
                                                            "not lead (it thinks " +
                                                            leader->id + " does): retry"));
        }
        http::Client* client = ClientFor(leader->address, IsSystem(req));
        if (client == nullptr) {
            ++stats_.unreachable;
            return respond(Refuse("leader_unreachable",
                                  "the leader's address '" + leader->address + "' is not http://HOST:PORT"));
        }
        req.headers.emplace_back("x-cogs-forwarded", options_.replica_id);
        // Only this replica says who the client's certificate named; whatever the client sent goes.
        std::erase_if(req.headers, [](const auto& h) { return h.first == "x-cogs-peer-name"; });
        if (!req.peer_name.empty()) {
            req.headers.emplace_back("x-cogs-peer-name", req.peer_name);
        }
        const std::string leader_id = leader->id;
        Duration timeout = IsHeartbeat(req) ? options_.heartbeat_timeout : options_.timeout;
        std::shared_ptr<const http::BodyFile> download;  // an image's content, through a file
        if (!options_.download_dir.empty() && IsImageDownload(req)) {
            download =
                std::make_shared<http::BodyFile>(options_.download_dir + "/forward-" + RandomHex(8), true);
            req.response_file = download->path;
            timeout = options_.download_timeout;
        }
        client->Send(
            std::move(req), SteadyClock::now() + timeout,
            [self = shared_from_this(), respond = std::move(respond), leader_id,
             download](Result<http::Response> r) {
                if (!r) {
                    // A frozen or dead leader stops renewing its lease: if it ran out while this
                    // request waited, nobody leads (what an agent may count as a renewal).
                    auto now = self->options_.leader();
                    if (now && SteadyClock::now() - now->read_at <= self->options_.stale_after &&
                        !now->alive) {
                        ++self->stats_.no_leader;
                        return respond(Refuse("no_leader", "the leader (" + leader_id +
                                                               ") did not answer and its lease ran out: a "
                                                               "failover is under way: retry"));
                    }
                    ++self->stats_.unreachable;
                    return respond(
                        Refuse("leader_unreachable",
                               "the leader (" + leader_id + ") did not answer: " + r.error().message));
                }
                ++self->stats_.forwarded;
                if (download != nullptr) {
                    if (r->status == 200) {
                        r->body_file = download;  // sent from the file, deleted once sent
                    } else {
                        r->body = runtime::ReadFile(download->path).value_or("");  // an error: small
                    }
                }
                respond(std::move(*r));
            });
    }

    boost::asio::io_context& io_;
    const ForwarderOptions options_;
    std::map<std::string, std::unique_ptr<http::Client>> clients_;
    ForwarderStats stats_;
};

Forwarder::Forwarder(boost::asio::io_context& io, ForwarderOptions options)
    : state_(std::make_shared<State>(io, std::move(options))) {}
Forwarder::~Forwarder() = default;

http::Handler Forwarder::Handler() {
    return [state = state_](http::Request req, http::Respond respond) {
        state->Serve(std::move(req), std::move(respond));
    };
}

ForwarderStats Forwarder::stats() const { return state_->stats_; }

}  // namespace cogs::replica
