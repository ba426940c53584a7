#include "cogs/cli/internal/api.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/wire/input.h"

namespace cogs::cli {
namespace {

using namespace std::chrono_literals;

// A refusal read from the API's error body ({"code", "message", "details"}, docs/api.md "Errors");
// a body that is not one keeps the status's code and shows itself as the message.
ApiFailure FailureFromResponse(const http::Response& res) {
    const json::object body = wire::ParseObject(res.body);
    ApiFailure f{res.status, wire::Str(body, "code"), wire::Str(body, "message"), {}};
    if (const json::value* details = body.if_contains("details")) {
        f.details = *details;
    }
    if (f.code.empty()) {
        f.code = std::string(ToString(FromHttpStatus(res.status)));
    }
    if (f.message.empty()) {
        f.message = res.body.empty() ? fmt::format("HTTP {}", res.status) : res.body.substr(0, 200);
    }
    return f;
}

}  // namespace

tl::expected<Endpoint, std::string> ParseUrl(const std::string& url) {
    Endpoint e;
    std::string rest = url;
    if (rest.rfind("https://", 0) == 0) {
        rest = rest.substr(8);
        e.tls = true;
        e.port = 443;
    } else if (rest.rfind("http://", 0) == 0) {
        rest = rest.substr(7);
    } else if (rest.find("://") != std::string::npos) {
        return tl::unexpected(fmt::format("{}: not an http:// or https:// URL", url));
    }
    while (!rest.empty() && rest.back() == '/') {
        rest.pop_back();
    }
    const auto slash = rest.find('/');
    std::string hostport = rest.substr(0, slash);
    if (slash != std::string::npos) {
        e.prefix = rest.substr(slash);
    }
    std::string port;
    if (!hostport.empty() && hostport.front() == '[') {  // [v6]:port
        const auto close = hostport.find(']');
        if (close == std::string::npos) {
            return tl::unexpected(fmt::format("{}: unbalanced '['", url));
        }
        if (close + 1 < hostport.size() && hostport[close + 1] == ':') {
            port = hostport.substr(close + 2);
        }
        hostport = hostport.substr(1, close - 1);
    } else if (const auto colon = hostport.rfind(':'); colon != std::string::npos) {
        port = hostport.substr(colon + 1);
        hostport = hostport.substr(0, colon);
        if (port.empty()) {
            return tl::unexpected(fmt::format("{}: empty port", url));
        }
    }
    if (!port.empty()) {
        if (port.size() > 5 ||
            !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            std::stoul(port) > 65535) {
            return tl::unexpected(fmt::format("{}: bad port '{}'", url, port));
        }
        e.port = static_cast<uint16_t>(std::stoul(port));
    }
    if (hostport.empty()) {
        return tl::unexpected(fmt::format("'{}': no host", url));
    }
    if (hostport == "localhost" && !e.tls) {
        hostport = "127.0.0.1";  // the client connects to an address; cogs dev listens on IPv4 loopback
    }
    e.host = hostport;
    e.url = (e.tls ? "https://" : "http://") + rest;
    return e;
}

ApiClient::ApiClient(Endpoint endpoint, std::string token, Duration timeout, std::string ca_file,
                     std::string client_cert, std::string client_key)
    : endpoint_(std::move(endpoint)),
      token_(std::move(token)),
      timeout_(timeout),
      trace_id_(RandomHex(16)),
      io_(std::make_unique<boost::asio::io_context>(1)) {
    http::ClientOptions o;
    o.host = endpoint_.host;
    o.port = endpoint_.port;
    o.max_connections = 2;
    if (endpoint_.tls) {
        if (ca_file.empty()) {
            tls_error_ = fmt::format(
                "{} is https: give the CA its certificate is signed by (COGS_CACERT or --ca-file; `cogs dev` "
                "prints it)",
                endpoint_.url);
        } else if (auto tls = http::MakeClientTls(http::TlsFiles{client_cert, client_key, ca_file}); tls) {
            o.tls = *tls;
        } else {
            tls_error_ = fmt::format("--ca-file / COGS_CACERT: {}", tls.error().message);
        }
    }
    client_ = http::MakeClient(*io_, o);
}

ApiClient::~ApiClient() {
    client_.reset();
    // Deliver the cancellations of anything outstanding before the io_context goes.
    io_->restart();
    io_->poll();
}

ApiResult<json::value> ApiClient::Call(const std::string& method, const std::string& path,
                                       const json::value* body) {
    http::Request req;
    req.method = method;
    req.target = endpoint_.prefix + path;
    if (!token_.empty()) {
        req.headers.emplace_back("authorization", "Bearer " + token_);
    }
    req.headers.emplace_back("accept", "application/json");
    if (method == "POST") {
        req.headers.emplace_back("idempotency-key", "cli-" + RandomHex(16));
    }
    if (body != nullptr) {
        req.body = json::serialize(*body);
        req.headers.emplace_back("content-type", "application/json");
    }
    auto res = Exchange(std::move(req), timeout_);
    if (!res) {
        return tl::unexpected(std::move(res.error()));
    }
    return Parsed(*res);
}

ApiResult<json::value> ApiClient::Parsed(const http::Response& res) {
    if (res.body.empty()) {
        return json::value(nullptr);
    }
    boost::system::error_code ec;
    json::value v = json::parse(res.body, ec);
    if (ec) {
        return tl::unexpected(
            ApiFailure{res.status,
                       "internal",
                       fmt::format("the API answered a body that is not JSON: {}", res.body.substr(0, 200)),
                       {}});
    }
    return v;
}

ApiResult<json::value> ApiClient::PutFile(const std::string& path, const std::string& file,
                                          Duration timeout) {
    http::Request req;
    req.method = "PUT";
    req.target = endpoint_.prefix + path;
    if (!token_.empty()) {
        req.headers.emplace_back("authorization", "Bearer " + token_);
    }
    req.headers.emplace_back("accept", "application/json");
    req.headers.emplace_back("content-type", "application/gzip");
    req.body_file = std::make_shared<http::BodyFile>(file, /*temp=*/false);
    auto res = Exchange(std::move(req), timeout);
    if (!res) {
        return tl::unexpected(std::move(res.error()));
    }
    return Parsed(*res);
}

ApiResult<std::string> ApiClient::GetText(const std::string& path) {
    http::Request req;
    req.method = "GET";
    req.target = endpoint_.prefix + path;
    req.headers.emplace_back("accept", "text/plain");
    auto res = Exchange(std::move(req), timeout_);
    if (!res) {
        return tl::unexpected(std::move(res.error()));
    }
    return std::move(res->body);
}

ApiResult<http::Response> ApiClient::Exchange(http::Request req, Duration timeout) {
    if (!tls_error_.empty()) {
        return tl::unexpected(ApiFailure{0, "invalid_argument", tls_error_, {}});
    }
    req.headers.emplace_back("traceparent", fmt::format("00-{}-{}-01", trace_id_, RandomHex(8)));
    const bool keyed = !req.Header("idempotency-key").empty();
    const bool replayable = keyed || req.method == "GET" || req.method == "PUT";
    const SteadyTime deadline = SteadyClock::now() + timeout;
    Duration backoff = 200ms;
    for (int attempt = 1;; ++attempt) {
        std::optional<Result<http::Response>> answer;
        client_->Send(req, deadline, [&](Result<http::Response> r) { answer = std::move(r); });
        io_->restart();
        while (!answer) {
            io_->run_one();
        }
        Duration pause = backoff;
        bool retry = false;
        if (!*answer) {
            const Error& e = answer->error();
            retry = replayable && e.code == ErrorCode::kUnavailable;
            if (!retry || attempt >= 4 || SteadyClock::now() + pause >= deadline) {
                ApiFailure f;
                f.code = std::string(ToString(e.code));
                f.message = e.code == ErrorCode::kDeadlineExceeded
                                ? fmt::format("no answer from {} in time", endpoint_.url)
                                : fmt::format("cannot reach {}: {}", endpoint_.url, e.message);
                return tl::unexpected(std::move(f));
            }
        } else {
            http::Response& res = **answer;
            if (res.status >= 200 && res.status < 300) {
                return std::move(res);
            }
            // 429 and 503 are refusals before any work: safe to send again, with the same key.
            retry = res.status == 429 || res.status == 503;
            if (const std::string ra = res.Header("retry-after"); !ra.empty()) {
                try {
                    pause = std::chrono::seconds(std::clamp(std::stoi(ra), 0, 5));
                } catch (const std::exception&) {
                }
            }
            if (!retry || attempt >= 4 || SteadyClock::now() + pause >= deadline) {
                return tl::unexpected(FailureFromResponse(res));
            }
        }
        std::this_thread::sleep_for(pause);
        backoff *= 2;
    }
}

ApiResult<json::array> ApiClient::List(const std::string& path, int limit) {
    json::array all;
    std::string marker;
    const char sep = path.find('?') == std::string::npos ? '?' : '&';
    for (;;) {
        const int page = limit > 0 ? std::min<int>(1000, limit - static_cast<int>(all.size())) : 1000;
        std::string target = fmt::format("{}{}limit={}", path, sep, page);
        if (!marker.empty()) {
            target += "&marker=" + http::UrlEncode(marker);
        }
        auto reply = Get(target);
        if (!reply) {
            return tl::unexpected(reply.error());
        }
        if (!reply->is_object()) {
            return tl::unexpected(ApiFailure{200, "internal", "a list answer that is not an object", {}});
        }
        const auto& o = reply->as_object();
        for (const auto& [key, value] : o) {
            if (value.is_array()) {
                for (const auto& item : value.as_array()) {
                    all.push_back(item);
                }
                break;
            }
        }
        marker = wire::Str(o, "next_marker");
        if (marker.empty() || (limit > 0 && static_cast<int>(all.size()) >= limit)) {
            break;
        }
    }
    if (limit > 0 && static_cast<int>(all.size()) > limit) {
        all.resize(static_cast<size_t>(limit));
    }
    return all;
}

ApiResult<std::string> ApiClient::Resolve(const std::string& plural, const std::string& ref) {
    if (LooksLikeUuid(ref)) {
        return ref;
    }
    auto items = List(fmt::format("/v1/{}?name={}", plural, http::UrlEncode(ref)), 0);
    if (!items) {
        return tl::unexpected(items.error());
    }
    std::vector<std::string> ids;
    for (const auto& item : *items) {
        const json::object* o = item.if_object();
        const json::value* name = o ? o->if_contains("name") : nullptr;
        std::string id = o ? wire::Str(*o, "id") : "";
        // Filter again: the name filter is exact in the API, but a fake or older server may ignore it.
        if (name && name->is_string() && name->get_string() == ref && !id.empty()) {
            ids.push_back(std::move(id));
        }
    }
    std::string singular = plural.substr(0, plural.size() - 1);
    std::replace(singular.begin(), singular.end(), '-', ' ');
    if (ids.empty()) {
        return tl::unexpected(
            ApiFailure{404, "not_found", fmt::format("no {} named '{}'", singular, ref), {}});
    }
    if (ids.size() > 1) {
        return tl::unexpected(ApiFailure{
            409, "conflict", fmt::format("{} {}s are named '{}'; use an id", ids.size(), singular, ref), {}});
    }
    return ids.front();
}

const json::object& Unwrap(const json::value& reply) {
    static const json::object kEmpty;
    if (!reply.is_object()) {
        return kEmpty;
    }
    const auto& o = reply.as_object();
    if (o.size() == 1 && o.begin()->value().is_object()) {  // {"server": {...}}
        return o.begin()->value().as_object();
    }
    return o;
}

bool LooksLikeUuid(const std::string& s) {
    if (s.size() != 36) {
        return false;
    }
    for (size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) {
            return false;
        }
    }
    return true;
}

}  // namespace cogs::cli
