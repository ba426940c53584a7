// A small HTTP/1.1 server and client on Boost.Beast, the only component that sees Beast.
//
// Server: one coroutine per connection on the io_context it is given, keep-alive, a deadline on
// every read and write. Handlers are asynchronous: they answer through `respond`, now or later,
// so a handler can hold a request (a long poll, a simulated hang) without a thread; answering
// with Response::drop set closes the connection without a reply (a simulated lost reply).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace boost::asio {
class io_context;
}

namespace cogs::http {

// TLS (OpenSSL through Boost.Asio SSL; no OpenSSL type leaves cogs/http). A TlsContext holds the
// PEM files of one side of a link, read when it is made and again by Reload(): a certificate rotated
// on disk is taken without a restart. Connections opened after a reload use the new files; those
// already open keep the ones they were made with. Shared by every connection of a server or client
// (hold it in a shared_ptr); Reload() may be called from any thread.
struct TlsFiles {
    // PEM certificate chain (leaf first) and its private key. Server: required. Client: optional,
    // its certificate for mutual TLS (both or neither).
    std::string cert_file{};
    std::string key_file{};
    // PEM CA certificates. Client: required; the server's certificate must chain to one of them and
    // name the host it is called by (ClientOptions::server_name). Server: optional; when given, every
    // client must present a certificate that chains to one of them (mutual TLS), else the handshake
    // fails; empty: no client certificate is asked for.
    std::string ca_file{};
    // Server with ca_file: false asks for a client certificate but also serves a client without
    // one (Request::peer_name is then ""); one that presents a certificate not signed by the CA is
    // still refused. cogsd's API: tenants come with tokens only, agents with their host's certificate.
    bool require_client_cert = true;
};

class TlsContext {
public:
    virtual ~TlsContext() = default;
    // Re-reads the files. On any error the context keeps what it had and says why (kInvalidArgument
    // for an unreadable or mismatched file).
    virtual Status Reload() = 0;
    // Reload() if any file's modification time or size changed since the last (re)load; true if it
    // reloaded. For a poll timer (rotation by replacing the files, as cert-manager does).
    virtual Result<bool> ReloadIfChanged() = 0;
    virtual const TlsFiles& files() const = 0;
};

// kInvalidArgument naming the file and OpenSSL's reason when a file cannot be read or the key does
// not match the certificate.
Result<std::shared_ptr<TlsContext>> MakeServerTls(TlsFiles files);
Result<std::shared_ptr<TlsContext>> MakeClientTls(TlsFiles files);

// A body kept in a file rather than in memory (an image archive of hundreds of MiB). A temporary one
// is deleted when the last reference to it goes.
struct BodyFile {
    std::string path;
    bool temporary = false;

    BodyFile(std::string p, bool temp) : path(std::move(p)), temporary(temp) {}
    ~BodyFile();
    BodyFile(const BodyFile&) = delete;
    BodyFile& operator=(const BodyFile&) = delete;
};

struct Request {
    std::string method{};  // "GET", "POST", ...
    std::string target{};  // path and query, e.g. "/v1/actions/boot?x=1"
    std::vector<std::pair<std::string, std::string>> headers{};  // names lower-cased
    std::string body{};
    // Instead of `body` (then empty). Server: a body spooled to a temporary file (ServerOptions::
    // spool_body). Client: the file is sent as the body.
    std::shared_ptr<const BodyFile> body_file{};
    // Client only: the response body (of any status) is written to this file, created or truncated,
    // instead of Response::body: a download too large for memory. Up to `response_file_max_bytes`
    // (beyond: the exchange fails, kInvalidArgument; the file is left for the caller to remove).
    std::string response_file{};
    uint64_t response_file_max_bytes = uint64_t{1} << 32;
    // Server, set by the server: with mutual TLS, the verified client certificate's subject common
    // name (a host's certificate names its host, cogsd's names "cogsd"); "" otherwise.
    // Client, with ClientOptions::name_per_request: the name the server's certificate must have.
    std::string peer_name{};
    // Server only, set by the server: the client's IP address, as text.
    std::string peer_address{};

    // The value of header `name` (lower-case), or "" if absent.
    std::string Header(const std::string& name) const;
    std::string Path() const;                                              // target without the query
    std::string Query(const std::string& name) const;                      // a decoded query parameter, or ""
    std::vector<std::pair<std::string, std::string>> QueryParams() const;  // every one, decoded, in order
};

struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers{};
    std::string body{};
    std::string content_type = "application/json";
    bool drop = false;  // server side: close the connection instead of answering
    // Server side, instead of `body`: the file is sent as the body, read as it goes out (never whole
    // in memory); the reference is dropped once it is sent.
    std::shared_ptr<const BodyFile> body_file{};

    // The value of header `name` (case-insensitive), or "" if absent; "content-type" falls back to
    // `content_type`.
    std::string Header(const std::string& name) const;
};

// Percent-encodes everything but RFC 3986 unreserved characters: for a path segment or a query value.
std::string UrlEncode(std::string_view s);
// Decodes %XY escapes and '+' (a space); a malformed escape is kept as it is.
std::string UrlDecode(std::string_view s);

using Respond = std::function<void(Response)>;
using Handler = std::function<void(Request, Respond)>;

struct ServerOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;  // 0: an ephemeral port; see Server::port()
    Duration idle_timeout = std::chrono::seconds(60);
    size_t max_body_bytes = 1 << 20;     // beyond: 413
    size_t max_header_bytes = 16 << 10;  // the request line and the header fields; beyond: 431
    size_t max_target_bytes = 8 << 10;   // the request target (path and query); beyond: 414
    // The answer to a request the server refuses itself — 413, 414, 431, and 400 for an HTTP/1.1
    // request without exactly one Host (RFC 9112 §3.2) — made from an Error that says why; the
    // server sets the status. The connection is closed after it. Null: the service protocol's
    // shape, {"code","message","retryable"} (cogsd passes its API's).
    std::function<Response(const Error&)> error_answer{};
    // Bodies too large for memory. A request for which `spool_body` (given the request line and
    // headers, without the body) says true has its body written to a temporary file in `spool_dir`
    // as it arrives (Request::body_file; deleted once the handler drops the request), up to
    // `max_spooled_body_bytes` (beyond: 413, and the file is gone), each read of it within
    // idle_timeout rather than the whole body. `Expect: 100-continue` is answered before the body
    // is read. Null: every body is read into memory.
    std::function<bool(const Request& head)> spool_body{};
    std::string spool_dir{};
    uint64_t max_spooled_body_bytes = 0;
    // Connection caps, checked when a connection is accepted: one over either (open connections in
    // all, or from the same client IP address) is closed at once, before anything is read, and
    // `on_connection_refused(over_total)` is called (from the acceptor, any thread of `io`: for a
    // metric). 0: no cap.
    size_t max_connections = 0;
    size_t max_connections_per_address = 0;
    std::function<void(bool over_total)> on_connection_refused{};
    // Null: plain HTTP. Else every connection is TLS (a plain-HTTP client fails its handshake and is
    // closed, never answered).
    std::shared_ptr<TlsContext> tls{};
};

class Server {
public:
    // Destroying the server stops it.
    virtual ~Server() = default;
    virtual uint16_t port() const = 0;
    // Stops accepting and closes every connection; handlers answering later are ignored. The sockets
    // are closed on `io`'s next turn (each on its connection's strand), so call it with `io` running
    // or about to run.
    virtual void Stop() = 0;

    // Connections accepted since the start (those refused by a cap included), those open now, and
    // those closed at accept by a cap (for tests and metrics).
    virtual uint64_t connections_accepted() const = 0;
    virtual size_t connections_open() const = 0;
    virtual uint64_t connections_refused() const = 0;
};

// Listens and serves on `io`. The handler runs on `io`'s thread(s): each connection lives on its own
// strand, so `io` may be run by several threads; `respond` may be called from any thread, once
// (later calls are ignored). While a handler holds a request the server watches the socket: if the
// client goes away, the exchange is abandoned and a later `respond` is ignored. A handler that drops
// every copy of `respond` without calling it leaves the client waiting until its own deadline.
//
// Errors: kInvalidArgument for an unparsable host, kUnavailable if the address cannot be bound.
Result<std::unique_ptr<Server>> StartServer(boost::asio::io_context& io, ServerOptions options,
                                            Handler handler);

}  // namespace cogs::http
