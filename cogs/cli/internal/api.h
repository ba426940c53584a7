// The CLI's synchronous view of the cogsd REST API (docs/api.md): one call at a time, each under a
// deadline, answers as Boost.JSON values. Internal to cogs/cli (the JSON DOM stays in this component).
//
// Threading: an ApiClient owns its io_context and runs it only inside Call, on the calling thread;
// use one ApiClient from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/json/value.hpp>
#include <tl/expected.hpp>

#include "cogs/base/time.h"

namespace boost::asio {
class io_context;
}

namespace cogs::http {
class Client;
struct Request;
struct Response;
}  // namespace cogs::http

namespace cogs::cli {

namespace json = boost::json;

// A refusal by the API, or a failure to reach it. `status` 0 means no HTTP answer: `code` is then
// "unavailable" or "deadline_exceeded".
struct ApiFailure {
    int status = 0;
    std::string code{};
    std::string message{};
    json::value details{};
};

template <typename T>
using ApiResult = tl::expected<T, ApiFailure>;

struct Endpoint {
    std::string url{};  // as given, without a trailing slash
    std::string host{};
    uint16_t port = 80;    // 443 for https without a port
    std::string prefix{};  // a path before /v1 ("" usually)
    bool tls = false;      // https
};

// Parses "http://host[:port][/prefix]" or "https://host[:port][/prefix]".
tl::expected<Endpoint, std::string> ParseUrl(const std::string& url);

class ApiClient {
public:
    // `timeout` bounds each Call, retries included. An https endpoint's certificate is verified by
    // the CA in the PEM file `ca_file` (COGS_CACERT or --ca-file; `cogs dev` prints it) and must name
    // the URL's host; without one, or with one that cannot be read, every call fails saying so.
    // `client_cert` and `client_key` (PEM; both or neither): a client certificate for mutual TLS (a
    // micro-service's routes take cogsd's only; cogsd's API needs none).
    ApiClient(Endpoint endpoint, std::string token, Duration timeout, std::string ca_file = "",
              std::string client_cert = "", std::string client_key = "");
    ~ApiClient();
    ApiClient(const ApiClient&) = delete;
    ApiClient& operator=(const ApiClient&) = delete;

    // Sends `method` `path` (with its query) and returns the parsed body (null for an empty one) of a
    // 2xx answer. A non-2xx answer becomes an ApiFailure with the API's code, message and details.
    // POSTs carry a fresh Idempotency-Key; a call is retried with the same key after 429/503 (after
    // Retry-After) and, when it cannot have been applied twice (GET, PUT, keyed POST), after a
    // dropped connection — all within the timeout.
    ApiResult<json::value> Call(const std::string& method, const std::string& path,
                                const json::value* body = nullptr);
    ApiResult<json::value> Get(const std::string& path) { return Call("GET", path); }

    // PUTs the file at `file` as the body of `path` (an image's archive: sent from the file, never
    // read whole into memory) and returns the parsed body of a 2xx answer, as Call; bounded by
    // `timeout` instead of the client's (an upload of hundreds of MiB takes longer than a call).
    ApiResult<json::value> PutFile(const std::string& path, const std::string& file, Duration timeout);

    // GETs `path` without the token and returns the body of a 2xx answer as it is: for GET /metrics
    // (Prometheus text, no authentication). Retried and bounded like Call.
    ApiResult<std::string> GetText(const std::string& path);

    // Every item of a list (following next_marker), or at most `limit` items if limit > 0. `path` may
    // carry filters ("/v1/servers?status=ACTIVE"). The items are the reply's one array member.
    ApiResult<json::array> List(const std::string& path, int limit = 0);

    // The id of the `plural` resource ("networks", "/v1/networks") named or identified by `ref`: a
    // UUID is taken as an id; anything else is looked up with ?name= and must match exactly one.
    ApiResult<std::string> Resolve(const std::string& plural, const std::string& ref);

    const Endpoint& endpoint() const { return endpoint_; }

    // Every request of this client carries `traceparent: 00-<trace_id>-<new span id>-01` (W3C Trace
    // Context), so everything one command does — lookups, the operation, the --wait polls — is one
    // trace in cogsd's workflows, events and every process's logs. A fresh id per client.
    const std::string& trace_id() const { return trace_id_; }

private:
    // Sends `req` and returns a 2xx answer; the retries described at Call, all within `timeout`.
    ApiResult<http::Response> Exchange(http::Request req, Duration timeout);
    // The parsed body of a 2xx answer (null for an empty one).
    static ApiResult<json::value> Parsed(const http::Response& res);

    Endpoint endpoint_;
    std::string token_;
    Duration timeout_;
    std::string trace_id_;
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<http::Client> client_;
    std::string tls_error_;  // why an https endpoint cannot be called ("" when it can)
};

// The single object of a reply like {"server": {...}} (its first object member), or the reply itself.
const json::object& Unwrap(const json::value& reply);

// Whether `s` looks like a UUID (8-4-4-4-12 hex digits).
bool LooksLikeUuid(const std::string& s);

}  // namespace cogs::cli
