// The HTTP client on Beast: a pool of keep-alive connections to one host:port, one coroutine per
// request, all pool state on one strand.
//
// A request takes an idle connection (the most recently used, whose socket is warmest), or opens a
// new one while fewer than max_connections exist, or queues (FIFO) until one is released or a slot
// frees. Every wait and every I/O carries the request's deadline; a connection whose request timed
// out or failed is closed, never reused, because its state (half a response in flight) is unknown.
// Idle connections keep a read-readiness wait pending: an idle socket turning readable means the
// server closed it, and it leaves the pool before a request can pick a dead connection.
#include "cogs/http/client.h"
#include "cogs/http/internal/coroutine.h"
#include "cogs/http/internal/tls.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>
#include <concepts>
#include <list>
#include <optional>
#include <vector>

#include "cogs/base/check.h"

namespace cogs::http {
namespace {

using namespace internal;  // asio, beast, bhttp, tcp, error_code, kTuple
constexpr uint64_t kMaxResponseBody = 64ull << 20;

void CheckNoException(std::exception_ptr e) { FailOnEscapedException(e, "http client"); }

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The TCP layer of either stream: deadlines and the socket.
template <typename S>
beast::tcp_stream& Tcp(S& stream) {
    return beast::get_lowest_layer(stream);
}

// A connection over S: PlainStream or TlsStream. Everything below is written once for both.
template <typename S>
struct Conn {
    Conn(const asio::any_io_executor& ex,
         std::shared_ptr<asio::ssl::context>) requires std::same_as<S, PlainStream> : stream(ex) {}
    // The SSL context is held for as long as the stream uses it (a reload swaps in another for new
    // connections).
    Conn(const asio::any_io_executor& ex,
         std::shared_ptr<asio::ssl::context> context) requires std::same_as<S, TlsStream>
        : ssl_context(std::move(context)), stream(ex, *ssl_context) {}

    std::shared_ptr<asio::ssl::context> ssl_context;
    S stream;
    beast::flat_buffer buffer;
    bool tcp_connected = false;  // over TLS: the handshake is next
    bool connected = false;      // and, over TLS, the handshake done
    bool idle = false;
    typename std::list<std::shared_ptr<Conn<S>>>::iterator pos;  // in Pool::conns
};

// A request waiting for a connection. Its timer doubles as the wake-up event: it expires at the
// request's deadline and is cancelled when the waiter is granted a connection or a slot.
template <typename S>
struct Waiter {
    Waiter(const asio::any_io_executor& ex, SteadyTime deadline) : timer(ex, deadline) {}

    asio::steady_timer timer;
    std::shared_ptr<Conn<S>> conn;  // granted: an idle connection, or a new one not yet connected
    bool queued = true;
    typename std::list<std::shared_ptr<Waiter>>::iterator pos;  // in Pool::waiters while queued
};

template <typename S>
struct Pool {
    Pool(asio::io_context& io_context, ClientOptions opts, std::shared_ptr<TlsContextImpl> tls_context)
        : io(io_context),
          strand(asio::make_strand(io)),
          options(std::move(opts)),
          tls(std::move(tls_context)),
          resolver(strand) {
        if (options.max_connections == 0) {
            options.max_connections = 1;
        }
        where = options.host + ":" + std::to_string(options.port);
        server_name = options.server_name.empty() ? options.host : options.server_name;
    }

    asio::io_context& io;
    asio::any_io_executor strand;
    ClientOptions options;
    std::shared_ptr<TlsContextImpl> tls;  // null for PlainStream
    std::string server_name;              // the name the server's certificate must have
    std::string where;
    tcp::resolver resolver;
    std::vector<tcp::endpoint> endpoints;  // resolved once, on first use

    std::list<std::shared_ptr<Conn<S>>> conns;   // every connection open or opening
    std::vector<std::shared_ptr<Conn<S>>> idle;  // a stack: the most recently used on top
    std::list<std::shared_ptr<Waiter<S>>> waiters;
    bool shut_down = false;
    CertificateNameCache peer_names;  // over TLS with options.name_per_request
};

template <typename S>
using PoolPtr = std::shared_ptr<Pool<S>>;

template <typename S>
Error TransportError(const Pool<S>& pool, error_code ec, const char* what) {
    if (pool.shut_down) {
        return Error(ErrorCode::kCancelled, "http client destroyed");
    }
    if (ec == beast::error::timeout) {
        return Error(ErrorCode::kDeadlineExceeded,
                     std::string(what) + " " + pool.where + ": deadline exceeded");
    }
    return Error(ErrorCode::kUnavailable, std::string(what) + " " + pool.where + ": " + ec.message());
}

template <typename S>
void CloseConn(Conn<S>& conn) {
    error_code ignored;
    Tcp(conn.stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    Tcp(conn.stream).close();
}

template <typename S>
std::shared_ptr<Conn<S>> NewConn(const PoolPtr<S>& pool) {
    auto conn = std::make_shared<Conn<S>>(pool->strand, pool->tls ? pool->tls->Current() : nullptr);
    conn->pos = pool->conns.insert(pool->conns.end(), conn);
    return conn;
}

// Hands a free slot (room for one more connection) to the first waiter.
template <typename S>
void GrantSlot(const PoolPtr<S>& pool) {
    if (pool->waiters.empty() || pool->conns.size() >= pool->options.max_connections) {
        return;
    }
    auto w = pool->waiters.front();
    pool->waiters.pop_front();
    w->queued = false;
    // The slot is taken now, so that a concurrent Acquire does not take it as well.
    w->conn = NewConn(pool);
    w->timer.cancel();
}

template <typename S>
void Discard(const PoolPtr<S>& pool, const std::shared_ptr<Conn<S>>& conn) {
    CloseConn(*conn);
    if (conn->pos != pool->conns.end()) {
        pool->conns.erase(conn->pos);
        conn->pos = pool->conns.end();
    }
    if (!pool->shut_down) {
        GrantSlot(pool);
    }
}

template <typename S>
void WatchIdle(const PoolPtr<S>& pool, const std::shared_ptr<Conn<S>>& conn) {
    Tcp(conn->stream).socket().async_wait(tcp::socket::wait_read, [pool, conn](error_code ec) {
        if (ec == asio::error::operation_aborted || !conn->idle) {
            return;
        }
        // Readable while idle: the server closed the connection (or misbehaves). Either way it is
        // no longer fit for a request.
        conn->idle = false;
        std::erase(pool->idle, conn);
        Discard(pool, conn);
    });
}

// Whether an idle connection is unusable: the server's FIN (or stray bytes) may have arrived before
// the idle watch ran. One non-blocking peek closes most of the keep-alive race; what remains (a close
// racing with the request) surfaces as kUnavailable, which callers retry.
bool ClosedByPeer(tcp::socket& socket) {
    char c;
    const ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) {
        return true;  // 0: end of stream; > 0: bytes nobody asked for
    }
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// Returns a connection after a successful exchange (reusable) or a failed one.
template <typename S>
void Release(const PoolPtr<S>& pool, const std::shared_ptr<Conn<S>>& conn, bool reusable) {
    if (!reusable || pool->shut_down) {
        Discard(pool, conn);
        return;
    }
    Tcp(conn->stream).expires_never();
    if (!pool->waiters.empty()) {
        auto w = pool->waiters.front();
        pool->waiters.pop_front();
        w->queued = false;
        w->conn = conn;
        w->timer.cancel();
        return;
    }
    conn->idle = true;
    pool->idle.push_back(conn);
    WatchIdle(pool, conn);
}

// A connection for one request: an idle one, a new (unconnected) one, or one handed over by
// Release after waiting in line.
template <typename S>
asio::awaitable<Result<std::shared_ptr<Conn<S>>>> Acquire(PoolPtr<S> pool, SteadyTime deadline) {
    while (!pool->idle.empty()) {
        auto conn = pool->idle.back();
        pool->idle.pop_back();
        conn->idle = false;
        error_code ec;
        Tcp(conn->stream).socket().cancel(ec);  // the idle watch
        if (Tcp(conn->stream).socket().is_open() && !ClosedByPeer(Tcp(conn->stream).socket())) {
            co_return conn;
        }
        Discard(pool, conn);
    }
    if (pool->conns.size() < pool->options.max_connections) {
        co_return NewConn(pool);
    }
    auto w = std::make_shared<Waiter<S>>(pool->strand, deadline);
    w->pos = pool->waiters.insert(pool->waiters.end(), w);
    co_await w->timer.async_wait(kTuple);
    if (w->queued) {
        pool->waiters.erase(w->pos);
        w->queued = false;
    }
    if (w->conn) {
        if (pool->shut_down) {
            Discard(pool, w->conn);
        } else if (SteadyClock::now() >= deadline) {
            // Granted just as the deadline passed: pass it on rather than waste it.
            if (w->conn->connected) {
                Release(pool, w->conn, true);
            } else {
                Discard(pool, w->conn);
            }
        } else {
            co_return w->conn;
        }
    }
    if (pool->shut_down) {
        co_return MakeError(ErrorCode::kCancelled, "http client destroyed");
    }
    co_return MakeError(ErrorCode::kDeadlineExceeded,
                        "http " + pool->where + ": no free connection before the deadline");
}

template <typename S>
asio::awaitable<error_code> Connect(PoolPtr<S> pool, std::shared_ptr<Conn<S>> conn, SteadyTime deadline) {
    if (pool->endpoints.empty()) {
        error_code ec;
        auto address = asio::ip::make_address(pool->options.host, ec);
        if (!ec) {
            pool->endpoints.emplace_back(address, pool->options.port);
        } else {
            auto [rec, results] = co_await pool->resolver.async_resolve(
                pool->options.host, std::to_string(pool->options.port), kTuple);
            if (rec) {
                co_return rec;
            }
            if (pool->endpoints.empty()) {  // another request may have resolved it meanwhile
                for (const auto& r : results) {
                    pool->endpoints.push_back(r.endpoint());
                }
            }
            if (pool->endpoints.empty()) {
                co_return asio::error::host_not_found;
            }
        }
    }
    Tcp(conn->stream).expires_at(deadline);
    auto [ec, ep] = co_await Tcp(conn->stream).async_connect(pool->endpoints, kTuple);
    if (ec) {
        co_return ec;
    }
    error_code ignored;
    Tcp(conn->stream).socket().set_option(tcp::no_delay(true), ignored);
    conn->tcp_connected = true;
    if constexpr (std::same_as<S, TlsStream>) {
        SSL* ssl = conn->stream.native_handle();
        if (!pool->options.name_per_request && !ExpectServerName(ssl, pool->server_name)) {
            co_return asio::error::invalid_argument;
        }
        auto [hec] = co_await conn->stream.async_handshake(asio::ssl::stream_base::client, kTuple);
        if (hec) {
            co_return hec;
        }
    }
    conn->connected = true;
    co_return error_code{};
}

// Why a connection could not be made: over TLS, why the handshake failed (the certificate's
// verification says more than the error code).
template <typename S>
Error ConnectError(const Pool<S>& pool, Conn<S>& conn, error_code ec) {
    if constexpr (std::same_as<S, TlsStream>) {
        if (!pool.shut_down && ec != beast::error::timeout && conn.tcp_connected) {
            const std::string why = HandshakeFailure(conn.stream.native_handle(), ec.message());
            const std::string name = pool.options.name_per_request ? "" : " (" + pool.server_name + ")";
            return Error(ErrorCode::kUnavailable, "TLS with " + pool.where + name + ": " + why);
        }
    }
    return TransportError(pool, ec, "connect");
}

// The request line and header fields of `r`; the body is the caller's.
template <typename S, typename Body>
void FillHead(bhttp::request<Body>& req, const Pool<S>& pool, const Request& r) {
    req.version(11);
    auto verb = bhttp::string_to_verb(r.method);
    if (verb == bhttp::verb::unknown) {
        req.method_string(r.method);
    } else {
        req.method(verb);
    }
    req.target(r.target.empty() ? "/" : r.target);
    bool has_host = false;
    bool has_content_type = false;
    for (auto& [name, value] : r.headers) {
        if (beast::iequals(name, "expect")) {
            continue;  // a forwarded request's: this client sends its body at once, and expects no 100
        }
        has_host = has_host || beast::iequals(name, "host");
        has_content_type = has_content_type || beast::iequals(name, "content-type");
        req.insert(name, value);
    }
    if (!has_host) {
        req.set(bhttp::field::host, pool.where);
    }
    if (!has_content_type && r.body_file) {
        req.set(bhttp::field::content_type, "application/octet-stream");
    } else if (!has_content_type && !r.body.empty()) {
        req.set(bhttp::field::content_type, "application/json");
    }
    req.keep_alive(true);
}

template <typename S>
bhttp::request<bhttp::string_body> ToBeast(const Pool<S>& pool, Request r) {
    bhttp::request<bhttp::string_body> req;
    FillHead(req, pool, r);
    req.body() = std::move(r.body);
    req.prepare_payload();
    return req;
}

// Sends the request, its body from a file when it has one; the deadline is the stream's.
template <typename S>
asio::awaitable<error_code> WriteRequest(PoolPtr<S> pool, std::shared_ptr<Conn<S>> conn, Request request) {
    if (!request.body_file) {
        auto req = ToBeast(*pool, std::move(request));
        auto [ec, n] = co_await bhttp::async_write(conn->stream, req, kTuple);
        co_return ec;
    }
    bhttp::request<bhttp::file_body> req;
    FillHead(req, *pool, request);
    error_code ec;
    req.body().open(request.body_file->path.c_str(), beast::file_mode::scan, ec);
    if (ec) {
        co_return ec;
    }
    req.prepare_payload();
    auto [wec, n] = co_await bhttp::async_write(conn->stream, req, kTuple);
    co_return wec;
}

Response FromBeast(bhttp::response<bhttp::string_body>& msg) {
    Response r;
    r.status = static_cast<int>(msg.result_int());
    r.content_type.clear();
    for (const auto& field : msg) {
        std::string name(field.name_string());
        for (auto& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        if (name == "content-type") {
            r.content_type = std::string(field.value());
        }
        r.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    r.body = std::move(msg.body());
    return r;
}

// Reads a response whose body goes to the file at `path` (Request::response_file); the deadline is
// the stream's.
template <typename S>
asio::awaitable<Result<Response>> ReadToFile(PoolPtr<S> pool, std::shared_ptr<Conn<S>> conn, std::string path,
                                             uint64_t max_bytes) {
    bhttp::response_parser<bhttp::file_body> parser;
    parser.body_limit(max_bytes);
    error_code fec;
    parser.get().body().open(path.c_str(), beast::file_mode::write, fec);
    if (fec) {
        Discard(pool, conn);
        co_return MakeError(ErrorCode::kInternal,
                            "cannot write the response to " + path + ": " + fec.message());
    }
    auto [rec, rn] = co_await bhttp::async_read(conn->stream, conn->buffer, parser, kTuple);
    parser.get().body().close();
    if (rec) {
        Error e = rec == bhttp::error::body_limit
                      ? Error(ErrorCode::kInvalidArgument, "http " + pool->where +
                                                               ": the response is larger than " +
                                                               std::to_string(max_bytes) + " bytes")
                      : TransportError(*pool, rec, "receive from");
        Discard(pool, conn);
        co_return MakeError(std::move(e));
    }
    auto& msg = parser.get();
    const bool keep_alive = msg.keep_alive();
    Response response;
    response.status = static_cast<int>(msg.result_int());
    response.content_type.clear();
    for (const auto& field : msg) {
        std::string name(field.name_string());
        for (auto& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        if (name == "content-type") {
            response.content_type = std::string(field.value());
        }
        response.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    Release(pool, conn, keep_alive);
    co_return response;
}

template <typename S>
asio::awaitable<Result<Response>> Exchange(PoolPtr<S> pool, Request request, SteadyTime deadline) {
    if (pool->shut_down) {
        co_return MakeError(ErrorCode::kCancelled, "http client destroyed");
    }
    if (SteadyClock::now() >= deadline) {
        co_return MakeError(ErrorCode::kDeadlineExceeded,
                            "http " + pool->where + ": deadline already passed");
    }
    auto acquired = co_await Acquire(pool, deadline);
    if (!acquired) {
        co_return MakeError(std::move(acquired.error()));
    }
    std::shared_ptr<Conn<S>> conn = std::move(*acquired);
    if (!conn->connected) {
        error_code ec = co_await Connect(pool, conn, deadline);
        if (ec) {
            Error e = ConnectError(*pool, *conn, ec);
            Discard(pool, conn);
            co_return MakeError(std::move(e));
        }
    }
    if constexpr (std::same_as<S, TlsStream>) {
        if (pool->options.name_per_request &&
            !pool->peer_names.Names(conn->stream.native_handle(), request.peer_name)) {
            // The connection is sound (another name may be on it): back to the pool.
            Release(pool, conn, true);
            co_return MakeError(ErrorCode::kUnavailable,
                                "TLS with " + pool->where + ": the certificate does not name " +
                                    (request.peer_name.empty() ? "\"\" (no name asked)" : request.peer_name));
        }
    }
    Tcp(conn->stream).expires_at(deadline);
    const std::string response_file = request.response_file;
    const uint64_t response_file_max = request.response_file_max_bytes;
    const error_code wec = co_await WriteRequest(pool, conn, std::move(request));
    if (wec) {
        Error e = TransportError(*pool, wec, "send to");
        Discard(pool, conn);
        co_return MakeError(std::move(e));
    }
    if (!response_file.empty()) {
        co_return co_await ReadToFile(pool, conn, response_file, response_file_max);
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    auto [rec, rn] = co_await bhttp::async_read(conn->stream, conn->buffer, parser, kTuple);
    if (rec) {
        Error e = TransportError(*pool, rec, "receive from");
        Discard(pool, conn);
        co_return MakeError(std::move(e));
    }
    auto& msg = parser.get();
    const bool keep_alive = msg.keep_alive();
    Response response = FromBeast(msg);
    Release(pool, conn, keep_alive);
    co_return response;
}

template <typename S>
asio::awaitable<void> RunCall(PoolPtr<S> pool, Request request, SteadyTime deadline, Client::Callback done) {
    Result<Response> result = co_await Exchange(pool, std::move(request), deadline);
    // Posted, never inline: the callback runs outside the pool's bookkeeping, and never inside Send.
    asio::post(pool->io,
               [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
}

template <typename S>
void Shutdown(const PoolPtr<S>& pool) {
    pool->shut_down = true;
    pool->idle.clear();
    for (const auto& conn : pool->conns) {
        conn->idle = false;
        CloseConn(*conn);  // pending I/O completes with operation_aborted, seen as kCancelled
        conn->pos = pool->conns.end();
    }
    pool->conns.clear();
    for (const auto& w : pool->waiters) {
        w->queued = false;
        w->timer.cancel();
    }
    pool->waiters.clear();
}

template <typename S>
class ClientImpl final : public Client {
public:
    ClientImpl(boost::asio::io_context& io, ClientOptions options, std::shared_ptr<TlsContextImpl> tls)
        : pool_(std::make_shared<Pool<S>>(io, std::move(options), std::move(tls))) {}

    ~ClientImpl() override {
        auto pool = pool_;
        asio::dispatch(pool->strand, [pool] { Shutdown(pool); });
    }

    void Send(Request request, SteadyTime deadline, Callback done) override {
        asio::co_spawn(pool_->strand, RunCall(pool_, std::move(request), deadline, std::move(done)),
                       CheckNoException);
    }

private:
    PoolPtr<S> pool_;
};

// A client made with a TLS context that is not a client's: every request fails, kInvalidArgument.
class RefusingClient final : public Client {
public:
    RefusingClient(boost::asio::io_context& io, std::string why) : io_(io), why_(std::move(why)) {}

    void Send(Request, SteadyTime, Callback done) override {
        asio::post(
            io_, [done = std::move(done), why = why_] { done(MakeError(ErrorCode::kInvalidArgument, why)); });
    }

private:
    boost::asio::io_context& io_;
    const std::string why_;
};

}  // namespace

std::unique_ptr<Client> MakeClient(boost::asio::io_context& io, ClientOptions options) {
    if (!options.tls) {
        return std::make_unique<ClientImpl<PlainStream>>(io, std::move(options), nullptr);
    }
    auto tls = AsImpl(options.tls, false);
    if (!tls) {
        return std::make_unique<RefusingClient>(io, "tls: not a client TLS context (MakeClientTls)");
    }
    return std::make_unique<ClientImpl<TlsStream>>(io, std::move(options), std::move(tls));
}

}  // namespace cogs::http
