#include "cogs/cloud/resources/consoles.h"

#include <boost/json/parse.hpp>
#include <set>

#include "cogs/cloud/core/credentials.h"
#include "cogs/http/client.h"

namespace cogs::cloud {
namespace {

constexpr int64_t kMaxLines = 10000;
// The agent sends at most 64 KiB of log, JSON-escaped (a control byte is 6 characters): far less.
constexpr size_t kMaxAnswerBytes = 1 << 20;
// Clients kept; beyond, those of URLs no host has any more (agents that moved) are dropped.
constexpr size_t kMaxClients = 256;

json::object View(const std::string& server, const std::string& host, std::string output) {
    json::object o;
    o["server_id"] = server;
    o["host"] = host.empty() ? json::value(nullptr) : json::value(host);
    o["output"] = std::move(output);
    return o;
}

http::Response Answer(const std::string& server, const std::string& host, std::string output) {
    return wire::Json(200, json::object{{"console", View(server, host, std::move(output))}});
}

Error HostUnavailable(const std::string& host, const std::string& why) {
    return Error(ErrorCode::kUnavailable, "cannot read the console from host " + host + ": " + why,
                 /*retry=*/true);
}

}  // namespace

Consoles::Consoles(Context& ctx, services::compute::HostLookup hosts, Duration deadline)
    : ctx_(ctx), hosts_(std::move(hosts)), deadline_(deadline) {}

Consoles::~Consoles() = default;

std::string Consoles::LastLines(const std::string& text, int64_t lines) {
    if (text.empty() || lines <= 0) {
        return lines <= 0 ? std::string() : text;
    }
    // From the end, skipping the newline that ends the last line.
    size_t pos = text.size() - (text.back() == '\n' ? 1 : 0);
    for (int64_t seen = 0; pos > 0; --pos) {
        if (text[pos - 1] == '\n' && ++seen == lines) {
            return text.substr(pos);
        }
    }
    return text;
}

http::Client& Consoles::ClientFor(const std::string& url, const std::string& host, uint16_t port) {
    // One client per agent URL: over TLS each read names its host (Request::peer_name), which the
    // agent's certificate must hold (an agent serving many hosts holds one naming them all).
    const bool tls = url.starts_with("https://");
    auto it = clients_.find(url);
    if (it == clients_.end() && clients_.size() >= kMaxClients) {
        std::set<std::string> current;
        for (const auto& [name, h] : ctx_.model.All(kHost)) {
            current.insert(Str(h.body, "url"));
        }
        // A dropped client's requests in flight end as cancelled: answered 503, retryable.
        std::erase_if(clients_, [&current](const auto& c) { return !current.contains(c.first); });
    }
    if (it == clients_.end()) {
        http::ClientOptions o;
        o.host = host;
        o.port = port;
        o.max_connections = 4;
        o.tls = tls ? ctx_.options.service_tls : nullptr;
        o.name_per_request = true;
        it = clients_.emplace(url, http::MakeClient(ctx_.io, o)).first;
    }
    return *it->second;
}

void Consoles::Show(Call call) {
    const std::string& id = call.Param("id");
    int64_t lines = 0;  // 0: all
    for (const auto& [k, v] : call.query) {
        if (k != "length") {
            return call.Fail(FieldError(k, "unknown query parameter"));
        }
        auto n = IntParam("length", v, 1, kMaxLines, "must be an integer from 1 to 10000 (lines)");
        if (!n) return call.Fail(n.error());
        lines = *n;
    }
    const Res* server = ctx_.model.Find(kServer, id);
    if (server == nullptr || !Visible(call.who, *server)) {
        return call.Fail(NotFound(kServer, id));
    }
    const std::string host = Str(server->body, "host");
    if (host.empty()) {
        return call.Answer(Answer(id, host, ""));
    }
    const auto route = hosts_(host);
    const auto endpoint = route ? http::ParseHttpUrl(route->url) : std::nullopt;
    if (!endpoint) {
        return call.Fail(HostUnavailable(host, "the host is not registered"));
    }
    if (route->down) {
        return call.Fail(HostUnavailable(host, "the host is down (its agent stopped renewing its lease)"));
    }
    http::Request req;
    req.method = "GET";
    req.target = "/v1/instances/" + http::UrlEncode(id) + "/console";
    if (const std::string token = TokenFor(ctx_, "compute", host); !token.empty()) {
        req.headers.emplace_back("authorization", "Bearer " + token);
    }
    req.peer_name = host;
    const std::string url = route->url;
    ClientFor(url, endpoint->host, endpoint->port)
        .Send(
            std::move(req), SteadyClock::now() + deadline_,
            [call = std::move(call), id, host, url, lines](Result<http::Response> r) {
                if (!r) {
                    return call.Fail(HostUnavailable(host, "its agent at " + url + " did not answer (" +
                                                               std::string(ToString(r.error().code)) + ": " +
                                                               r.error().message + ")"));
                }
                if (r->status == 404) {
                    // Not (or no longer) on the host: a create on its way there, a delete done.
                    return call.Answer(Answer(id, host, ""));
                }
                if (r->status >= 500) {
                    return call.Fail(HostUnavailable(host, "its agent answered " + std::to_string(r->status) +
                                                               ": " + r->body.substr(0, 512)));
                }
                if (r->status != 200 || r->body.size() > kMaxAnswerBytes) {
                    return call.Fail(Error(ErrorCode::kInternal, "host " + host + "'s agent answered " +
                                                                     std::to_string(r->status) + " (" +
                                                                     std::to_string(r->body.size()) +
                                                                     " bytes) to a console read"));
                }
                boost::system::error_code ec;
                json::value v = json::parse(r->body, ec);
                const json::value* output =
                    !ec && v.is_object() ? v.as_object().if_contains("output") : nullptr;
                if (output == nullptr || !output->is_string()) {
                    return call.Fail(
                        Error(ErrorCode::kInternal,
                              "host " + host + "'s agent answered a console read without output"));
                }
                std::string text(output->as_string());
                call.Answer(Answer(id, host, lines > 0 ? Consoles::LastLines(text, lines) : std::move(text)));
            });
}

}  // namespace cogs::cloud
