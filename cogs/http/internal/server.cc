// The HTTP server on Beast: an acceptor coroutine and one coroutine per connection, each on its own
// strand. A request in flight is an Exchange, shared by the connection coroutine (which waits on
// its timer as on an event) and by every copy of the Respond callable (which only holds it weakly,
// so a Respond kept after the connection ended costs nothing and answers nothing).
#include "cogs/http/server.h"
#include "cogs/http/internal/coroutine.h"
#include "cogs/http/internal/tls.h"

#include <spdlog/spdlog.h>

#include <atomic>
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
#include <concepts>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "cogs/base/check.h"
#include "cogs/base/secret.h"

namespace cogs::http {
namespace {

using namespace internal;  // asio, beast, bhttp, tcp, error_code, kTuple

// How long a connection that is being closed after an error answer (413, 414, 431, 400) drains what the
// client still sends, so that the close does not reset the connection before the client reads the answer.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 16 << 20;

void CheckNoException(std::exception_ptr e) { FailOnEscapedException(e, "http server"); }

// One request waiting for its answer; touched only on the connection's strand.
struct Exchange {
    explicit Exchange(const asio::any_io_executor& ex) : signal(ex, SteadyTime::max()) {}

    asio::steady_timer signal;  // cancelled when something below changes
    std::optional<Response> response;
    bool abandoned = false;  // the peer went away or the server stopped
};

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The TCP layer of either stream: deadlines and the socket.
template <typename S>
beast::tcp_stream& Tcp(S& stream) {
    return beast::get_lowest_layer(stream);
}

// What the server's bookkeeping (the list of open connections, Stop) sees of a connection of either
// kind.
struct ConnectionBase {
    virtual ~ConnectionBase() = default;
    virtual asio::any_io_executor executor() = 0;
    virtual beast::tcp_stream& tcp() = 0;

    std::shared_ptr<Exchange> exchange;  // the request in flight, if any
    std::list<std::shared_ptr<ConnectionBase>>::iterator pos;
    std::string peer_address;  // the client's IP (also for the per-address cap)
    std::string peer_name;     // TLS: the verified client certificate's CN, once the handshake is done
};

template <typename S>
struct Connection final : ConnectionBase {
    Connection(tcp::socket socket, std::shared_ptr<asio::ssl::context>) requires std::same_as<S, PlainStream>
        : stream(std::move(socket)) {}
    // The SSL context is held for as long as the stream uses it (a reload swaps in another for new
    // connections).
    Connection(tcp::socket socket,
               std::shared_ptr<asio::ssl::context> context) requires std::same_as<S, TlsStream>
        : ssl_context(std::move(context)), stream(std::move(socket), *ssl_context) {}

    asio::any_io_executor executor() override { return stream.get_executor(); }
    beast::tcp_stream& tcp() override { return Tcp(stream); }

    std::shared_ptr<asio::ssl::context> ssl_context;
    S stream;
};

struct ServerState {
    ServerState(asio::io_context& io_context, ServerOptions opts, Handler h)
        : io(io_context), options(std::move(opts)), handler(std::move(h)), acceptor(asio::make_strand(io)) {}

    asio::io_context& io;
    const ServerOptions options;
    const Handler handler;
    tcp::acceptor acceptor;
    uint16_t port = 0;

    std::atomic<bool> stopped{false};
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> refused{0};
    mutable std::mutex mu;
    std::shared_ptr<TlsContextImpl> tls;                     // null: plain HTTP
    std::list<std::shared_ptr<ConnectionBase>> connections;  // guarded by mu
    std::unordered_map<std::string, size_t> per_address;     // open connections by client address; mu
};

// Registers a connection just accepted, unless it is over a cap (ServerOptions::max_connections*):
// then false, and `over_total` says which.
bool Register(ServerState& state, const std::shared_ptr<ConnectionBase>& conn, bool* over_total) {
    const ServerOptions& o = state.options;
    std::lock_guard lock(state.mu);
    *over_total = o.max_connections > 0 && state.connections.size() >= o.max_connections;
    if (*over_total) {
        return false;
    }
    size_t& from_address = state.per_address[conn->peer_address];
    if (o.max_connections_per_address > 0 && from_address >= o.max_connections_per_address) {
        if (from_address == 0) state.per_address.erase(conn->peer_address);
        return false;
    }
    ++from_address;
    conn->pos = state.connections.insert(state.connections.end(), conn);
    return true;
}

void Unregister(ServerState& state, ConnectionBase& conn) {
    std::lock_guard lock(state.mu);
    if (conn.pos == state.connections.end()) {
        return;
    }
    state.connections.erase(conn.pos);
    conn.pos = state.connections.end();
    if (auto it = state.per_address.find(conn.peer_address);
        it != state.per_address.end() && --it->second == 0) {
        state.per_address.erase(it);
    }
}

void CloseConnection(ConnectionBase& conn) {
    error_code ignored;
    conn.tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn.tcp().close();
    if (conn.exchange) {
        conn.exchange->abandoned = true;
        conn.exchange->signal.cancel();
    }
}

Respond MakeRespond(const std::shared_ptr<Exchange>& exchange) {
    std::weak_ptr<Exchange> weak = exchange;
    asio::any_io_executor ex = exchange->signal.get_executor();
    return [weak, ex](Response response) {
        auto e = weak.lock();
        if (!e) {
            return;
        }
        asio::dispatch(ex, [e, response = std::move(response)]() mutable {
            if (e->response || e->abandoned) {
                return;  // answered already, or nobody is listening any more
            }
            e->response = std::move(response);
            e->signal.cancel();
        });
    };
}

// While a handler holds the request, a readable socket means the client closed it (or pipelines,
// which we do not support: then we simply stop watching).
template <typename S>
void WatchPeer(const std::shared_ptr<Connection<S>>& conn, const std::shared_ptr<Exchange>& exchange) {
    std::weak_ptr<Exchange> weak = exchange;
    conn->tcp().socket().async_wait(tcp::socket::wait_read, [conn, weak](error_code ec) {
        auto e = weak.lock();
        if (!e || e->response || ec == asio::error::operation_aborted) {
            return;
        }
        error_code ignored;
        if (ec || conn->tcp().socket().available(ignored) == 0) {
            e->abandoned = true;
            e->signal.cancel();
        }
    });
}

// The request line and the header fields; the body is the caller's.
Request ToRequest(const bhttp::request_header<>& msg) {
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.headers.reserve(std::distance(msg.begin(), msg.end()));
    for (const auto& field : msg) {
        std::string name(field.name_string());
        for (auto& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        req.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    return req;
}

// The status and the header fields of `r`; the body is the caller's.
template <typename Body>
void FillHead(bhttp::response<Body>& res, Response& r, unsigned version, bool keep_alive) {
    res.version(version);
    res.result(r.status >= 100 && r.status <= 999 ? static_cast<unsigned>(r.status) : 500u);
    res.set(bhttp::field::server, "cogs");
    bool has_content_type = false;
    for (auto& [name, value] : r.headers) {
        if (beast::iequals(name, "content-type")) {
            has_content_type = true;
        }
        res.insert(name, value);
    }
    if (!has_content_type && (!r.body.empty() || r.body_file)) {
        res.set(bhttp::field::content_type, r.content_type);
    }
    res.keep_alive(keep_alive);
}

bhttp::response<bhttp::string_body> ToBeast(Response r, unsigned version, bool keep_alive) {
    bhttp::response<bhttp::string_body> res;
    FillHead(res, r, version, keep_alive);
    res.body() = std::move(r.body);
    res.prepare_payload();
    return res;
}

// A request the server answers itself, without its handler: the status and why.
struct Refusal {
    int status;
    std::string message;
};

// The parser stopped at the header limit: 414 when the request target is what is too long (or the
// request line has no end within the limit), else 431. Nothing of the head is consumed yet.
Refusal HeadTooLarge(const beast::flat_buffer& buffer, const ServerOptions& options) {
    const std::string_view head(static_cast<const char*>(buffer.data().data()), buffer.size());
    const size_t eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    const size_t first = line.find(' ');
    const size_t last = eol == std::string_view::npos ? line.size() : line.rfind(' ');
    const size_t target = first == std::string_view::npos || last <= first ? line.size() : last - first - 1;
    if (target > options.max_target_bytes) {
        return {414, "request target longer than " + std::to_string(options.max_target_bytes) + " bytes"};
    }
    return {431, "request header fields longer than " + std::to_string(options.max_header_bytes) + " bytes"};
}

Response RefusalAnswer(const ServerOptions& options, const Refusal& refusal) {
    const Error e(ErrorCode::kInvalidArgument, refusal.message);
    Response r;
    if (options.error_answer) {
        r = options.error_answer(e);
    } else {
        r.body = R"({"code":"invalid_argument","message":")" + e.message + R"(","retryable":false})";
    }
    r.status = refusal.status;
    return r;
}

// Sends `answer` (a refusal) and closes gracefully: half-close, then drain what the client still
// sends (bounded), so the client reads the answer instead of a connection reset. `answer` is a
// local of the caller's frame: g++ 12 destroys a class temporary passed to a coroutine in a
// co_await twice when the frame is destroyed while suspended (the io_context going away).
template <typename S>
asio::awaitable<void> AnswerAndClose(std::shared_ptr<ServerState> state, std::shared_ptr<Connection<S>> conn,
                                     bhttp::response<bhttp::string_body>* answer) {
    conn->tcp().expires_after(std::min<Duration>(state->options.idle_timeout, std::chrono::seconds(10)));
    auto [ec, n] = co_await bhttp::async_write(conn->stream, *answer, kTuple);
    if (ec) {
        co_return;
    }
    error_code ignored;
    conn->tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    conn->tcp().expires_after(kLingerTime);
    std::array<char, 16384> sink;
    size_t drained = 0;
    while (drained < kLingerBytes) {
        auto [rec, got] = co_await conn->stream.async_read_some(asio::buffer(sink), kTuple);
        if (rec) {
            break;
        }
        drained += got;
    }
}

// Why the server refuses a request itself, from its head, if it does.
std::optional<Refusal> Refused(const bhttp::request_header<>& msg, const ServerOptions& options) {
    if (msg.target().size() > options.max_target_bytes) {
        return Refusal{414,
                       "request target longer than " + std::to_string(options.max_target_bytes) + " bytes"};
    }
    if (msg.version() >= 11 && msg.count(bhttp::field::host) != 1) {
        return Refusal{400, "an HTTP/1.1 request needs exactly one Host header"};
    }
    return std::nullopt;
}

Refusal BodyTooLarge(uint64_t limit) {
    return {413, "request body too large: the limit is " + std::to_string(limit) + " bytes"};
}

// One request read, or why not.
struct ReadOutcome {
    error_code ec{};                   // the read failed (the connection is closed, after `refusal` if any)
    std::optional<Refusal> refusal{};  // answered by the server itself, then the connection is closed
    unsigned version = 11;
    bool keep_alive = false;
    Request request{};
};

// Reads a body into a file as it arrives, each read within the idle timeout.
template <typename S>
asio::awaitable<void> ReadToFile(std::shared_ptr<ServerState> state, std::shared_ptr<Connection<S>> conn,
                                 beast::flat_buffer* buffer, bhttp::request_parser<bhttp::file_body>* parser,
                                 ReadOutcome* out) {
    while (!parser->is_done()) {
        conn->tcp().expires_after(state->options.idle_timeout);
        auto [ec, n] = co_await bhttp::async_read_some(conn->stream, *buffer, *parser, kTuple);
        if (ec) {
            if (ec == bhttp::error::body_limit) {
                out->refusal = BodyTooLarge(state->options.max_spooled_body_bytes);
            }
            out->ec = ec;
            co_return;
        }
    }
}

// Reads the head, decides where the body goes (memory, or a file: ServerOptions::spool_body) and
// with which limit, then reads the body there.
template <typename S>
asio::awaitable<ReadOutcome> ReadRequest(std::shared_ptr<ServerState> state,
                                         std::shared_ptr<Connection<S>> conn, beast::flat_buffer* buffer) {
    const ServerOptions& options = state->options;
    ReadOutcome out;
    bhttp::request_parser<bhttp::empty_body> head;
    head.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    head.body_limit(boost::none);  // the body's limit depends on where it goes: checked below
    conn->tcp().expires_after(options.idle_timeout);
    auto [ec, n] = co_await bhttp::async_read_header(conn->stream, *buffer, head, kTuple);
    if (ec) {
        if (ec == bhttp::error::header_limit) {
            out.refusal = HeadTooLarge(*buffer, options);
        }
        out.ec = ec;
        co_return out;
    }
    out.version = head.get().version();
    if (auto why = Refused(head.get(), options)) {
        out.refusal = std::move(why);
        co_return out;
    }
    out.request = ToRequest(head.get());
    const bool spool = options.spool_body && options.spool_body(out.request);
    const uint64_t limit = spool ? options.max_spooled_body_bytes : options.max_body_bytes;
    // With a Content-Length, Beast checks the limit when the head ends: ours is only known now.
    if (auto length = head.content_length(); length && *length > limit) {
        out.refusal = BodyTooLarge(limit);
        co_return out;
    }
    if (beast::iequals(head.get()[bhttp::field::expect], "100-continue")) {
        bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, out.version};
        auto [cec, cn] = co_await bhttp::async_write(conn->stream, go_on, kTuple);
        if (cec) {
            out.ec = cec;
            co_return out;
        }
    }
    if (!spool) {
        bhttp::request_parser<bhttp::string_body> parser(std::move(head));
        parser.body_limit(limit);
        auto [bec, bn] = co_await bhttp::async_read(conn->stream, *buffer, parser, kTuple);
        if (bec) {
            if (bec == bhttp::error::body_limit) {
                out.refusal = BodyTooLarge(limit);
            }
            out.ec = bec;
            co_return out;
        }
        out.keep_alive = parser.get().keep_alive();
        out.request.body = std::move(parser.get().body());
        co_return out;
    }
    auto file = std::make_shared<BodyFile>(options.spool_dir + "/body-" + RandomHex(8), true);
    bhttp::request_parser<bhttp::file_body> parser(std::move(head));
    parser.body_limit(limit);
    error_code fec;
    parser.get().body().open(file->path.c_str(), beast::file_mode::write_new, fec);
    if (fec) {
        spdlog::error("http server: cannot spool a request body to {}: {}", file->path, fec.message());
        out.refusal = Refusal{503, "the server cannot keep the request body now: " + fec.message()};
        co_return out;
    }
    co_await ReadToFile(state, conn, buffer, &parser, &out);
    parser.get().body().close();
    if (out.ec) {
        co_return out;
    }
    out.keep_alive = parser.get().keep_alive();
    out.request.body_file = std::move(file);
    co_return out;
}

// Writes a response whose body is a file, each write within the idle timeout. false: the connection
// broke.
template <typename S>
asio::awaitable<bool> WriteFileResponse(std::shared_ptr<ServerState> state,
                                        std::shared_ptr<Connection<S>> conn, Response* r, unsigned version,
                                        bool keep_alive) {
    bhttp::response<bhttp::file_body> res;
    FillHead(res, *r, version, keep_alive);
    error_code ec;
    res.body().open(r->body_file->path.c_str(), beast::file_mode::scan, ec);
    if (ec) {
        spdlog::error("http server: cannot open the answer's body {}: {}", r->body_file->path, ec.message());
        auto fallback =
            ToBeast(RefusalAnswer(state->options, {500, "the answer's body cannot be read"}), version, false);
        conn->tcp().expires_after(state->options.idle_timeout);
        co_await bhttp::async_write(conn->stream, fallback, kTuple);
        co_return false;
    }
    res.prepare_payload();
    bhttp::response_serializer<bhttp::file_body> serializer(res);
    while (!serializer.is_done()) {
        conn->tcp().expires_after(state->options.idle_timeout);
        auto [wec, wn] = co_await bhttp::async_write_some(conn->stream, serializer, kTuple);
        if (wec) {
            co_return false;
        }
    }
    co_return true;
}

// The server's side of the TLS handshake, within the idle timeout (a client that connects and says
// nothing, or speaks plain HTTP, fails here and is closed unanswered). false: the connection is done.
asio::awaitable<bool> Handshake(std::shared_ptr<ServerState> state,
                                std::shared_ptr<Connection<TlsStream>> conn) {
    conn->tcp().expires_after(state->options.idle_timeout);
    auto [ec] = co_await conn->stream.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (ec) {
        spdlog::debug("http server: TLS handshake with {} failed: {}", conn->peer_address,
                      HandshakeFailure(conn->stream.native_handle(), ec.message()));
        co_return false;
    }
    conn->peer_name = VerifiedPeerName(conn->stream.native_handle());
    co_return true;
}

template <typename S>
asio::awaitable<void> Serve(std::shared_ptr<ServerState> state, std::shared_ptr<Connection<S>> conn) {
    bool ready = true;
    if constexpr (std::same_as<S, TlsStream>) {
        ready = co_await Handshake(state, conn);
    }
    beast::flat_buffer buffer;
    std::optional<bhttp::response<bhttp::string_body>> refusal;  // answered, then the connection closes
    while (ready && !state->stopped) {
        ReadOutcome read = co_await ReadRequest(state, conn, &buffer);
        if (state->stopped) {
            break;  // a read that completed just as Stop() ran: the handler may be gone
        }
        if (read.refusal) {
            refusal = ToBeast(RefusalAnswer(state->options, *read.refusal), read.version, false);
            break;
        }
        if (read.ec) {
            break;
        }
        conn->tcp().expires_never();
        const unsigned version = read.version;
        const bool keep_alive = read.keep_alive;

        read.request.peer_address = conn->peer_address;
        read.request.peer_name = conn->peer_name;
        auto exchange = std::make_shared<Exchange>(conn->stream.get_executor());
        conn->exchange = exchange;
        state->handler(std::move(read.request), MakeRespond(exchange));
        bool watching = false;
        while (!exchange->response && !exchange->abandoned && !state->stopped) {
            if (!watching) {
                WatchPeer(conn, exchange);
                watching = true;
            }
            co_await exchange->signal.async_wait(kTuple);
        }
        if (watching) {
            error_code ignored;
            conn->tcp().socket().cancel(ignored);
        }
        conn->exchange.reset();
        if (!exchange->response || exchange->abandoned || state->stopped || exchange->response->drop) {
            break;
        }
        if (exchange->response->body_file) {
            Response answer = std::move(*exchange->response);
            exchange->response.reset();
            const bool sent = co_await WriteFileResponse(state, conn, &answer, version, keep_alive);
            if (!sent || !keep_alive) {
                break;
            }
            continue;
        }
        auto res = ToBeast(std::move(*exchange->response), version, keep_alive);
        conn->tcp().expires_after(state->options.idle_timeout);
        auto [wec, wn] = co_await bhttp::async_write(conn->stream, res, kTuple);
        if (wec || !keep_alive) {
            break;
        }
    }
    if (refusal && !state->stopped) {
        co_await AnswerAndClose(state, conn, &*refusal);
    }
    CloseConnection(*conn);
    Unregister(*state, *conn);
}

// The client's IP as text; an IPv4 client of a dual-stack listener as IPv4.
std::string PeerAddress(const tcp::socket& socket) {
    error_code ec;
    auto address = socket.remote_endpoint(ec).address();
    if (ec) {
        return "";
    }
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
    }
    return address.to_string();
}

template <typename S>
void Launch(const std::shared_ptr<ServerState>& state, tcp::socket socket,
            std::shared_ptr<asio::ssl::context> context) {
    std::string address = PeerAddress(socket);
    auto conn = std::make_shared<Connection<S>>(std::move(socket), std::move(context));
    conn->peer_address = std::move(address);
    if (bool over_total = false; !Register(*state, conn, &over_total)) {
        state->refused.fetch_add(1, std::memory_order_relaxed);
        if (state->options.on_connection_refused) state->options.on_connection_refused(over_total);
        error_code ignored;
        conn->tcp().socket().close(ignored);  // at once: nothing read, nothing answered
        return;
    }
    asio::co_spawn(conn->stream.get_executor(), Serve(state, conn), CheckNoException);
}

asio::awaitable<void> Accept(std::shared_ptr<ServerState> state) {
    asio::steady_timer backoff(state->acceptor.get_executor());
    while (!state->stopped) {
        tcp::socket socket(asio::make_strand(state->io));
        auto [ec] = co_await state->acceptor.async_accept(socket, kTuple);
        if (state->stopped) {
            break;
        }
        if (ec) {
            // Out of descriptors or a transient network error: do not spin, try again shortly.
            spdlog::warn("http server: accept failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(50));
            co_await backoff.async_wait(kTuple);
            continue;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        state->accepted.fetch_add(1, std::memory_order_relaxed);
        if (state->tls) {
            Launch<TlsStream>(state, std::move(socket), state->tls->Current());
        } else {
            Launch<PlainStream>(state, std::move(socket), nullptr);
        }
    }
}

class ServerImpl final : public Server {
public:
    explicit ServerImpl(std::shared_ptr<ServerState> state) : state_(std::move(state)) {}
    ~ServerImpl() override { Stop(); }

    uint16_t port() const override { return state_->port; }

    void Stop() override {
        if (state_->stopped.exchange(true)) {
            return;
        }
        auto state = state_;
        asio::dispatch(state->acceptor.get_executor(), [state] {
            error_code ignored;
            state->acceptor.close(ignored);
        });
        std::lock_guard lock(state->mu);
        for (const auto& conn : state->connections) {
            asio::dispatch(conn->executor(), [conn] { CloseConnection(*conn); });
        }
    }

    uint64_t connections_accepted() const override {
        return state_->accepted.load(std::memory_order_relaxed);
    }

    size_t connections_open() const override {
        std::lock_guard lock(state_->mu);
        return state_->connections.size();
    }

    uint64_t connections_refused() const override { return state_->refused.load(std::memory_order_relaxed); }

private:
    std::shared_ptr<ServerState> state_;
};

}  // namespace

Result<std::unique_ptr<Server>> StartServer(boost::asio::io_context& io, ServerOptions options,
                                            Handler handler) {
    error_code ec;
    auto address = asio::ip::make_address(options.host, ec);
    if (ec) {
        // A name rather than an address: resolving it blocks, which is fine at start-up.
        tcp::resolver resolver(io);
        auto results = resolver.resolve(options.host, "", ec);
        if (ec || results.empty()) {
            return MakeError(ErrorCode::kInvalidArgument,
                             "cannot resolve listen host '" + options.host + "'");
        }
        address = results.begin()->endpoint().address();
    }
    std::shared_ptr<TlsContextImpl> tls;
    if (options.tls && !(tls = AsImpl(options.tls, true))) {
        return MakeError(ErrorCode::kInvalidArgument, "tls: not a server TLS context (MakeServerTls)");
    }
    const tcp::endpoint endpoint(address, options.port);
    const std::string where = options.host + ":" + std::to_string(options.port);
    auto state = std::make_shared<ServerState>(io, std::move(options), std::move(handler));
    state->tls = std::move(tls);
    auto& acceptor = state->acceptor;
    if (acceptor.open(endpoint.protocol(), ec); ec) {
        return MakeError(ErrorCode::kUnavailable, "listen " + where + ": " + ec.message());
    }
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (acceptor.bind(endpoint, ec); ec) {
        return MakeError(ErrorCode::kUnavailable, "listen " + where + ": " + ec.message());
    }
    if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
        return MakeError(ErrorCode::kUnavailable, "listen " + where + ": " + ec.message());
    }
    state->port = acceptor.local_endpoint(ec).port();
    asio::co_spawn(acceptor.get_executor(), Accept(state), CheckNoException);
    return std::unique_ptr<Server>(new ServerImpl(std::move(state)));
}

}  // namespace cogs::http
