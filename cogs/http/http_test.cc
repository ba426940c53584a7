#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <functional>

#include "cogs/http/client.h"
#include "cogs/http/conditional.h"
#include "cogs/http/server.h"
#include "test/support/temp_dir.h"

namespace cogs::http {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

// Runs `io` until `done()` or `limit` passes; returns done().
template <typename Pred>
bool RunUntil(asio::io_context& io, Pred done, Duration limit = 10s) {
    const auto end = SteadyClock::now() + limit;
    while (!done() && SteadyClock::now() < end) {
        io.run_one_for(10ms);
    }
    return done();
}

Request Get(std::string target) {
    Request r;
    r.method = "GET";
    r.target = std::move(target);
    return r;
}

Response Answer(int status, std::string body, bool drop = false) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    r.drop = drop;
    return r;
}

std::unique_ptr<Server> Start(asio::io_context& io, Handler handler, ServerOptions options = {}) {
    auto server = StartServer(io, options, std::move(handler));
    EXPECT_TRUE(server) << server.error().ToString();
    return std::move(*server);
}

std::unique_ptr<Client> Connect(asio::io_context& io, const Server& server, size_t max_connections = 8) {
    ClientOptions options;
    options.port = server.port();
    options.max_connections = max_connections;
    return MakeClient(io, options);
}

// Sends `request` with `budget` and runs `io` until it is answered; nullopt if it is not (RunUntil's limit).
std::optional<Result<Response>> SendAndWait(asio::io_context& io, Client& client, Request request,
                                            Duration budget = 5s) {
    std::optional<Result<Response>> got;
    client.Send(std::move(request), SteadyClock::now() + budget,
                [&](Result<Response> r) { got = std::move(r); });
    RunUntil(io, [&] { return got.has_value(); });
    return got;
}

// The error a send ended with; a test failure (and a default Error) if it was answered, or never ended.
Error FailureOf(const std::optional<Result<Response>>& got) {
    if (!got.has_value()) {
        ADD_FAILURE() << "the send never ended";
        return {};
    }
    if (*got) {
        ADD_FAILURE() << "answered " << (*got)->status;
        return {};
    }
    return got->error();
}

TEST(RequestTest, PathQueryHeader) {
    Request r;
    r.target = "/v1/actions/status?key=wf%2F1%2Fdo&x=a+b&flag";
    r.headers = {{"idempotency-key", "k1"}};
    EXPECT_EQ(r.Path(), "/v1/actions/status");
    EXPECT_EQ(r.Query("key"), "wf/1/do");
    EXPECT_EQ(r.Query("x"), "a b");
    EXPECT_EQ(r.Query("flag"), "");
    EXPECT_EQ(r.Query("missing"), "");
    EXPECT_EQ(r.Header("idempotency-key"), "k1");
    EXPECT_EQ(r.Header("Idempotency-Key"), "k1");
    EXPECT_EQ(r.Header("traceparent"), "");
    EXPECT_EQ(UrlEncode("wf/1/do x"), "wf%2F1%2Fdo%20x");

    Response res;
    EXPECT_EQ(res.Header("content-type"), "application/json");
    res.headers = {{"Content-Type", "text/plain"}};
    EXPECT_EQ(res.Header("content-type"), "text/plain");
}

TEST(ConditionalTest, EntityTagsAndIfNoneMatch) {
    const std::string tag = EntityTag("{\"servers\":[]}");
    EXPECT_EQ(tag.size(), 18u);
    EXPECT_EQ(tag.front(), '"');
    EXPECT_EQ(tag.back(), '"');
    EXPECT_EQ(EntityTag("{\"servers\":[]}"), tag) << "the same content, the same tag";
    EXPECT_NE(EntityTag("{\"servers\":[1]}"), tag);
    EXPECT_EQ(EntityTag(""), "\"cbf29ce484222325\"") << "FNV-1a 64's offset basis: a stable hash";
    EXPECT_TRUE(NoneMatchHits(tag, tag));
    EXPECT_TRUE(NoneMatchHits("W/" + tag, tag)) << "compared weakly";
    EXPECT_TRUE(NoneMatchHits("\"x\", " + tag + " ,\"y\"", tag));
    EXPECT_TRUE(NoneMatchHits("*", tag));
    EXPECT_FALSE(NoneMatchHits("", tag));
    EXPECT_FALSE(NoneMatchHits("\"x\"", tag));
    EXPECT_FALSE(NoneMatchHits(tag.substr(1), tag)) << "unquoted is another tag";
}

TEST(HttpTest, RoundTrip) {
    asio::io_context io;
    auto server = Start(io, [](Request req, Respond respond) {
        Response res;
        res.status = 201;
        res.body = req.method + " " + req.Path() + " " + req.Query("a") + " " + req.Header("x-thing") + " " +
                   req.body;
        res.content_type = "text/plain";
        res.headers.emplace_back("X-Answer", "42");
        res.headers.emplace_back("X-Peer", req.peer_name + "|" + req.peer_address);
        respond(std::move(res));
    });
    auto client = Connect(io, *server);
    Request req;
    req.method = "POST";
    req.target = "/v1/echo?a=b%20c";
    req.headers = {{"X-Thing", "thing"}};
    req.body = R"({"k":1})";
    auto got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value());
    ASSERT_TRUE(*got) << got->error().ToString();
    EXPECT_EQ((*got)->status, 201);
    EXPECT_EQ((*got)->body, R"(POST /v1/echo b c thing {"k":1})");
    EXPECT_EQ((*got)->Header("x-answer"), "42");
    EXPECT_EQ((*got)->Header("x-peer"), "|127.0.0.1");  // plain HTTP: the address, no verified name
    EXPECT_EQ((*got)->content_type, "text/plain");
}

TEST(HttpTest, CallbackIsNeverInline) {
    asio::io_context io;
    auto server = Start(io, [](Request, Respond respond) { respond(Response{}); });
    auto client = Connect(io, *server);
    int calls = 0;
    client->Send(Get("/"), SteadyClock::now() - 1s, [&](Result<Response> r) {
        ++calls;
        EXPECT_FALSE(r);
        EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
    });
    EXPECT_EQ(calls, 0);
    ASSERT_TRUE(RunUntil(io, [&] { return calls == 1; }));
    io.run_for(50ms);
    EXPECT_EQ(calls, 1);
}

TEST(HttpTest, KeepAliveReusesOneConnection) {
    asio::io_context io;
    auto server = Start(io, [](Request, Respond respond) { respond(Answer(200, "{}")); });
    auto client = Connect(io, *server);
    int ok = 0;
    for (int i = 0; i < 20; ++i) {
        bool done = false;
        client->Send(Get("/x"), SteadyClock::now() + 5s, [&](Result<Response> r) {
            ok += r && r->status == 200;
            done = true;
        });
        ASSERT_TRUE(RunUntil(io, [&] { return done; }));
    }
    EXPECT_EQ(ok, 20);
    EXPECT_EQ(server->connections_accepted(), 1u);
}

TEST(HttpTest, DeferredRespond) {
    asio::io_context io;
    asio::steady_timer later(io);
    auto server = Start(io, [&](Request, Respond respond) {
        later.expires_after(50ms);
        later.async_wait([respond](boost::system::error_code) {
            respond(Answer(202, R"({"accepted":true})"));
            respond(Answer(500, ""));  // a second answer is ignored
        });
    });
    auto client = Connect(io, *server);
    std::optional<Result<Response>> got;
    const auto start = SteadyClock::now();
    client->Send(Get("/slow"), start + 5s, [&](Result<Response> r) { got = std::move(r); });
    ASSERT_TRUE(RunUntil(io, [&] { return got.has_value(); }));
    ASSERT_TRUE(*got) << got->error().ToString();
    EXPECT_EQ((*got)->status, 202);
    EXPECT_GE(SteadyClock::now() - start, 50ms);
    // The connection stays usable after the deferred answer.
    std::optional<Result<Response>> again;
    client->Send(Get("/slow"), SteadyClock::now() + 5s, [&](Result<Response> r) { again = std::move(r); });
    ASSERT_TRUE(RunUntil(io, [&] { return again.has_value(); }));
    ASSERT_TRUE(*again);
    EXPECT_EQ(server->connections_accepted(), 1u);
}

TEST(HttpTest, DropGivesUnavailable) {
    asio::io_context io;
    auto server = Start(io, [](Request, Respond respond) { respond(Answer(200, "", true)); });
    auto client = Connect(io, *server);
    const Error e = FailureOf(SendAndWait(io, *client, Get("/")));
    EXPECT_EQ(e.code, ErrorCode::kUnavailable);
    EXPECT_TRUE(e.retryable);
}

TEST(HttpTest, NeverAnsweredGivesDeadlineExceededAndFreesTheServerSide) {
    asio::io_context io;
    std::vector<Respond> held;  // held, never called
    auto server = Start(io, [&](Request, Respond respond) { held.push_back(std::move(respond)); });
    auto client = Connect(io, *server);
    std::optional<Result<Response>> got;
    const auto start = SteadyClock::now();
    client->Send(Get("/hang"), start + 200ms, [&](Result<Response> r) { got = std::move(r); });
    ASSERT_TRUE(RunUntil(io, [&] { return got.has_value(); }));
    const auto elapsed = SteadyClock::now() - start;
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(got->error().retryable);
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 1s);
    // The client closed its connection; the server notices although the handler still holds the request.
    EXPECT_TRUE(RunUntil(io, [&] { return server->connections_open() == 0; }));
    held.front()(Response{});  // too late: ignored
    io.run_for(20ms);
}

TEST(HttpTest, DroppingRespondWithoutAnsweringLeavesTheClientToItsDeadline) {
    asio::io_context io;
    auto server = Start(io, [](Request, Respond) {});
    auto client = Connect(io, *server);
    EXPECT_EQ(FailureOf(SendAndWait(io, *client, Get("/"), 100ms)).code, ErrorCode::kDeadlineExceeded);
}

TEST(HttpTest, ManyConcurrentRequestsThroughASmallPool) {
    asio::io_context io;
    auto server = Start(io, [&io](Request req, Respond respond) {
        asio::post(io, [req = std::move(req), respond = std::move(respond)] {
            respond(Answer(200, req.Query("i")));
        });
    });
    auto client = Connect(io, *server, 32);
    constexpr int kRequests = 2000;
    int answered = 0;
    int correct = 0;
    for (int i = 0; i < kRequests; ++i) {
        client->Send(Get("/n?i=" + std::to_string(i)), SteadyClock::now() + 30s, [&, i](Result<Response> r) {
            ++answered;
            correct += r && r->status == 200 && r->body == std::to_string(i);
        });
    }
    ASSERT_TRUE(RunUntil(
        io, [&] { return answered == kRequests; }, 60s));
    EXPECT_EQ(correct, kRequests);
    EXPECT_LE(server->connections_accepted(), 32u);
}

TEST(HttpTest, QueuedRequestTimesOutWaitingForAConnection) {
    asio::io_context io;
    std::vector<Respond> held;
    auto server = Start(io, [&](Request, Respond respond) { held.push_back(std::move(respond)); });
    auto client = Connect(io, *server, 1);
    std::optional<Result<Response>> first, second;
    client->Send(Get("/a"), SteadyClock::now() + 2s, [&](Result<Response> r) { first = std::move(r); });
    client->Send(Get("/b"), SteadyClock::now() + 100ms, [&](Result<Response> r) { second = std::move(r); });
    ASSERT_TRUE(RunUntil(io, [&] { return second.has_value(); }));
    EXPECT_FALSE(first.has_value());
    ASSERT_FALSE(*second);
    EXPECT_EQ(second->error().code, ErrorCode::kDeadlineExceeded);
    held.front()(Answer(200, "late but in time"));
    ASSERT_TRUE(RunUntil(io, [&] { return first.has_value(); }));
    ASSERT_TRUE(*first);
    EXPECT_EQ((*first)->body, "late but in time");
}

TEST(HttpTest, OversizeBodyGets413) {
    asio::io_context io;
    int handled = 0;
    ServerOptions options;
    options.max_body_bytes = 1024;
    auto server = Start(
        io,
        [&](Request, Respond respond) {
            ++handled;
            respond(Response{});
        },
        options);
    auto client = Connect(io, *server);
    Request req;
    req.method = "POST";
    req.target = "/big";
    req.body = std::string(64 * 1024, 'x');
    auto got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value());
    ASSERT_TRUE(*got) << got->error().ToString();
    EXPECT_EQ((*got)->status, 413);
    EXPECT_EQ(
        (*got)->body,
        R"({"code":"invalid_argument","message":"request body too large: the limit is 1024 bytes","retryable":false})")
        << "without ServerOptions::error_answer, the service protocol's shape";
    EXPECT_EQ(handled, 0);
    // A body within the limit still goes through (on a new connection).
    req.body = std::string(1000, 'x');
    got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value());
    ASSERT_TRUE(*got) << got->error().ToString();
    EXPECT_EQ((*got)->status, 200);
    EXPECT_EQ(handled, 1);
}

// Sends `bytes` on a new connection and reads until the server closes it; returns what came back
// (nullopt if the server kept the connection open).
std::optional<std::string> RawExchange(asio::io_context& io, uint16_t port, const std::string& bytes) {
    asio::ip::tcp::socket sock(io);
    sock.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::async_write(sock, asio::buffer(bytes), [](boost::system::error_code, size_t) {});
    std::string got;
    bool closed = false;
    std::array<char, 4096> buf;
    std::function<void()> read = [&] {
        sock.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
            got.append(buf.data(), n);
            if (ec) {
                closed = true;
            } else {
                read();
            }
        });
    };
    read();
    if (!RunUntil(
            io, [&] { return closed; }, 5s)) {
        return std::nullopt;
    }
    return got;
}

// A server that counts what reaches its handler and renders its own errors as {"error": message}.
struct RawServer {
    explicit RawServer(asio::io_context& io, ServerOptions options = {}) {
        options.error_answer = [](const Error& e) {
            Response r;
            r.status = 400;
            r.body = R"({"error":")" + e.message + R"("})";
            return r;
        };
        server = Start(
            io,
            [this](Request, Respond respond) {
                ++handled;
                respond(Answer(200, "{}"));
            },
            options);
    }
    int handled = 0;
    std::unique_ptr<Server> server;
};

// `got` is a refusal the server made itself: `status` with RawServer's error body saying `message`,
// and the connection closed after it.
void ExpectRefused(const std::optional<std::string>& got, int status, const std::string& message) {
    ASSERT_TRUE(got.has_value()) << "the connection stays open";
    EXPECT_TRUE(got->starts_with("HTTP/1.1 " + std::to_string(status) + " ")) << *got;
    EXPECT_TRUE(got->ends_with(R"({"error":")" + message + R"("})")) << *got;
}

// The request was answered 200 in `version` by the handler, which has now handled `handled`.
void ExpectServed(const std::optional<std::string>& got, const std::string& version, const RawServer& s,
                  int handled) {
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(got->starts_with(version + " 200 ")) << *got;
    EXPECT_EQ(s.handled, handled);
}

// Connections over a cap (per client address, or in all) are closed at once, before anything is
// read, and counted; closing one makes room again.
TEST(HttpTest, ConnectionsOverACapAreClosedAtOnceAndCounted) {
    asio::io_context io;
    ServerOptions options;
    options.max_connections_per_address = 2;
    std::vector<bool> refusals;  // over_total, per refusal
    options.on_connection_refused = [&refusals](bool over_total) { refusals.push_back(over_total); };
    auto server = Start(
        io, [](Request, Respond respond) { respond(Answer(200, "ok")); }, options);
    const asio::ip::tcp::endpoint at{asio::ip::make_address("127.0.0.1"), server->port()};
    std::vector<std::unique_ptr<asio::ip::tcp::socket>> open;
    for (int i = 0; i < 2; ++i) {
        open.push_back(std::make_unique<asio::ip::tcp::socket>(io));
        open.back()->connect(at);
    }
    ASSERT_TRUE(RunUntil(io, [&] { return server->connections_open() == 2; }));
    // The third from the same address: closed without a byte, even though it sends a request.
    auto third = RawExchange(io, server->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(third.has_value()) << "the server kept the connection over the cap open";
    EXPECT_EQ(*third, "");
    EXPECT_EQ(server->connections_refused(), 1u);
    EXPECT_EQ(refusals, std::vector<bool>{false});
    EXPECT_EQ(server->connections_open(), 2u);
    // One of the two goes: a new one is served.
    open.front()->close();
    ASSERT_TRUE(RunUntil(io, [&] { return server->connections_open() == 1; }));
    auto client = Connect(io, *server);
    auto got = SendAndWait(io, *client, Get("/"));
    ASSERT_TRUE(got.has_value() && *got) << (got ? got->error().ToString() : "no answer");
    EXPECT_EQ((*got)->status, 200);

    // The total cap counts every address.
    asio::io_context io2;
    ServerOptions total;
    total.max_connections = 1;
    std::vector<bool> total_refusals;
    total.on_connection_refused = [&total_refusals](bool over_total) {
        total_refusals.push_back(over_total);
    };
    auto small = Start(
        io2, [](Request, Respond respond) { respond(Answer(200, "ok")); }, total);
    asio::ip::tcp::socket first(io2);
    first.connect({asio::ip::make_address("127.0.0.1"), small->port()});
    ASSERT_TRUE(RunUntil(io2, [&] { return small->connections_open() == 1; }));
    auto second = RawExchange(io2, small->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(*second, "");
    EXPECT_EQ(total_refusals, std::vector<bool>{true});
}

TEST(HttpTest, OversizedHeaderFieldsGet431AndTheConnectionCloses) {
    asio::io_context io;
    ServerOptions options;
    options.max_header_bytes = 4096;
    RawServer s(io, options);
    auto got = RawExchange(io, s.server->port(),
                           "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
    ExpectRefused(got, 431, "request header fields longer than 4096 bytes");
    EXPECT_EQ(s.handled, 0);
    // Within the limit, the same request is served.
    got = RawExchange(
        io, s.server->port(),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + std::string(3000, 'a') + "\r\n\r\n");
    ExpectServed(got, "HTTP/1.1", s, 1);
}

TEST(HttpTest, AnOversizedTargetGets414AndTheConnectionCloses) {
    asio::io_context io;
    ServerOptions options;
    options.max_target_bytes = 1024;
    options.max_header_bytes = 4096;
    RawServer s(io, options);
    // Longer than the target's limit, and longer than the whole head's.
    for (size_t length : {2000, 10000}) {
        auto got = RawExchange(io, s.server->port(),
                               "GET /" + std::string(length, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
        SCOPED_TRACE(std::to_string(length));
        ExpectRefused(got, 414, "request target longer than 1024 bytes");
    }
    EXPECT_EQ(s.handled, 0);
}

TEST(HttpTest, AnHttp11RequestWithoutExactlyOneHostGets400) {
    asio::io_context io;
    RawServer s(io);
    for (const std::string request :
         {"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"}) {
        auto got = RawExchange(io, s.server->port(), request);
        ExpectRefused(got, 400, "an HTTP/1.1 request needs exactly one Host header");
    }
    EXPECT_EQ(s.handled, 0);
    // HTTP/1.0 has no Host requirement.
    auto got = RawExchange(io, s.server->port(), "GET / HTTP/1.0\r\n\r\n");
    ExpectServed(got, "HTTP/1.0", s, 1);
}

TEST(HttpTest, An413HasTheGivenErrorShape) {
    asio::io_context io;
    ServerOptions options;
    options.max_body_bytes = 16;
    RawServer s(io, options);
    auto got =
        RawExchange(io, s.server->port(),
                    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
    ExpectRefused(got, 413, "request body too large: the limit is 16 bytes");
    EXPECT_EQ(s.handled, 0);
}

// The files in `dir` (spooled bodies left behind would show here).
size_t FilesIn(const std::string& dir) {
    return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A server that spools the bodies of PUT /file (up to 1 MiB; others: 1 KiB in memory) and answers
// with what it got: the body's size, its first bytes, and whether it came in memory or in a file.
struct SpoolingServer {
    explicit SpoolingServer(asio::io_context& io) {
        ServerOptions options;
        options.max_body_bytes = 1024;
        options.spool_dir = spool.path();
        options.max_spooled_body_bytes = 1 << 20;
        options.spool_body = [](const Request& head) {
            return head.method == "PUT" && head.Path() == "/file";
        };
        options.error_answer = [](const Error& e) {
            Response r;
            r.body = R"({"error":")" + e.message + R"("})";
            return r;
        };
        server = Start(
            io,
            [this](Request req, Respond respond) {
                ++handled;
                if (req.body_file) {
                    got = ReadAll(req.body_file->path);
                    in_file = true;
                } else {
                    got = req.body;
                    in_file = false;
                }
                respond(Answer(200, std::to_string(got.size())));
            },
            options);
    }

    cogs::testing::TempDir spool{"cogs-spool"};
    std::unique_ptr<Server> server;
    int handled = 0;
    std::string got;
    bool in_file = false;
};

TEST(HttpTest, ASpooledBodyArrivesWholeInAFileThatGoesWithTheRequest) {
    asio::io_context io;
    SpoolingServer s(io);
    auto client = Connect(io, *s.server);
    std::string body;
    for (int i = 0; i < 300 * 1000; ++i) {
        body.push_back(static_cast<char>(i * 7 % 256));  // NULs included
    }
    Request req;
    req.method = "PUT";
    req.target = "/file";
    req.body = body;
    auto got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value() && *got) << (got ? got->error().ToString() : "no answer");
    EXPECT_EQ((*got)->status, 200) << (*got)->body;
    EXPECT_TRUE(s.in_file);
    EXPECT_TRUE(s.got == body) << "received " << s.got.size() << " bytes of " << body.size();
    EXPECT_EQ(FilesIn(s.spool.path()), 0u) << "the spooled body is deleted once the request is dropped";

    // Other requests keep their in-memory limit.
    req.target = "/other";
    got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value() && *got);
    EXPECT_EQ((*got)->status, 413);
    EXPECT_EQ(s.handled, 1);
}

TEST(HttpTest, ASpooledBodyOverItsLimitGets413AndLeavesNoFile) {
    asio::io_context io;
    SpoolingServer s(io);
    // With a Content-Length: refused from the head, before any byte of the body.
    auto got = RawExchange(
        io, s.server->port(),
        "PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + std::string(4096, 'x'));
    ExpectRefused(got, 413, "request body too large: the limit is 1048576 bytes");
    // Chunked: refused once the chunks pass the limit.
    std::string chunked = "PUT /file HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) {
        chunked += "10000\r\n" + std::string(0x10000, 'y') + "\r\n";
    }
    chunked += "0\r\n\r\n";
    got = RawExchange(io, s.server->port(), chunked);
    ExpectRefused(got, 413, "request body too large: the limit is 1048576 bytes");
    EXPECT_EQ(s.handled, 0);
    EXPECT_EQ(FilesIn(s.spool.path()), 0u);
}

TEST(HttpTest, ExpectContinueIsAnsweredBeforeTheBody) {
    asio::io_context io;
    SpoolingServer s(io);
    // A client that sends the body only after "100 Continue" (as curl does for large uploads).
    std::string head = "PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), s.server->port()});
    asio::write(socket, asio::buffer(head));
    std::string seen;
    std::array<char, 512> buf;
    bool continued = false;
    std::function<void()> read = [&] {
        socket.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
            if (ec) return;
            seen.append(buf.data(), n);
            if (!continued && seen.find("100 Continue\r\n\r\n") != std::string::npos) {
                continued = true;
                asio::write(socket, asio::buffer(std::string("hello")));
            }
            read();
        });
    };
    read();
    ASSERT_TRUE(RunUntil(io, [&] { return seen.find("\r\n\r\n5") != std::string::npos; })) << seen;
    EXPECT_TRUE(seen.starts_with("HTTP/1.1 100 Continue")) << seen;
    EXPECT_EQ(s.got, "hello");
}

TEST(HttpTest, AFileIsSentAsTheBodyEitherWay) {
    asio::io_context io;
    cogs::testing::TempDir dir;
    std::string content;
    for (int i = 0; i < 200 * 1000; ++i) {
        content.push_back(static_cast<char>(i % 251));
    }
    const std::string served_source = dir.Write("served", content);
    const std::string upload = dir.Write("upload", content + "!");
    std::string received;
    int answers = 0;
    std::string last_served;
    auto server = Start(
        io,
        [&](Request req, Respond respond) {
            received = req.body;
            Response r;
            r.content_type = "application/octet-stream";
            // A fresh temporary copy per answer: the server deletes it once sent.
            const std::string served = dir / ("served-" + std::to_string(++answers));
            std::filesystem::copy_file(served_source, served);
            last_served = served;
            r.body_file = std::make_shared<BodyFile>(served, /*temp=*/true);
            respond(std::move(r));
        },
        [] {
            ServerOptions o;
            o.max_body_bytes = 1 << 20;
            return o;
        }());
    auto client = Connect(io, *server);
    Request req;
    req.method = "PUT";
    req.target = "/x";
    req.body_file = std::make_shared<BodyFile>(upload, /*temp=*/false);
    // A forwarded request's Expect is not passed on: the answer is the server's, not a 100.
    req.headers.emplace_back("Expect", "100-continue");
    auto got = SendAndWait(io, *client, req);
    ASSERT_TRUE(got.has_value() && *got) << (got ? got->error().ToString() : "no answer");
    EXPECT_EQ((*got)->status, 200);
    EXPECT_EQ((*got)->Header("content-type"), "application/octet-stream");
    EXPECT_TRUE((*got)->body == content) << "answered " << (*got)->body.size() << " bytes";
    EXPECT_TRUE(received == content + "!") << "received " << received.size() << " bytes";
    EXPECT_TRUE(std::filesystem::exists(upload)) << "a file that is not temporary stays";
    EXPECT_FALSE(std::filesystem::exists(last_served)) << "a temporary answer goes once sent";
    // A response saved to a file rather than kept in memory.
    Request save = Get("/download");
    save.response_file = dir / "saved";
    got = SendAndWait(io, *client, save);
    ASSERT_TRUE(got.has_value() && *got) << (got ? got->error().ToString() : "no answer");
    EXPECT_EQ((*got)->status, 200);
    EXPECT_TRUE((*got)->body.empty());
    EXPECT_EQ((*got)->Header("content-type"), "application/octet-stream");
    EXPECT_TRUE(ReadAll(dir / "saved") == content) << "saved " << ReadAll(dir / "saved").size() << " bytes";
    save.response_file_max_bytes = 1000;
    got = SendAndWait(io, *client, save);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(FailureOf(got).code, ErrorCode::kInvalidArgument) << "over its limit";
    // The connection is kept alive after a file answer.
    got = SendAndWait(io, *client, Get("/again"));
    ASSERT_TRUE(got.has_value() && *got);
    EXPECT_EQ(server->connections_accepted(), 2u) << "one more after the refused download only";
}

TEST(HttpTest, ConnectionRefusedGivesUnavailable) {
    asio::io_context io;
    uint16_t port = 0;
    {
        asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
        port = probe.local_endpoint().port();
    }
    auto client = MakeClient(io, ClientOptions{.host = "127.0.0.1", .port = port, .max_connections = 4});
    const Error e = FailureOf(SendAndWait(io, *client, Get("/")));
    EXPECT_EQ(e.code, ErrorCode::kUnavailable);
    EXPECT_TRUE(e.retryable);
}

TEST(HttpTest, StopClosesLiveConnections) {
    asio::io_context io;
    std::vector<Respond> held;
    auto server = Start(io, [&](Request, Respond respond) { held.push_back(std::move(respond)); });
    auto client = Connect(io, *server);
    std::optional<Result<Response>> got;
    client->Send(Get("/"), SteadyClock::now() + 5s, [&](Result<Response> r) { got = std::move(r); });
    ASSERT_TRUE(RunUntil(io, [&] { return held.size() == 1; }));
    server->Stop();
    ASSERT_TRUE(RunUntil(io, [&] { return got.has_value(); }));
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kUnavailable);
    held.front()(Response{});  // ignored after Stop
    EXPECT_TRUE(RunUntil(io, [&] { return server->connections_open() == 0; }));
}

TEST(HttpTest, DestroyingTheClientCancelsOutstandingRequests) {
    asio::io_context io;
    std::vector<Respond> held;
    auto server = Start(io, [&](Request, Respond respond) { held.push_back(std::move(respond)); });
    auto client = Connect(io, *server, 1);
    int cancelled = 0;
    for (int i = 0; i < 3; ++i) {  // one in flight, two queued
        client->Send(Get("/"), SteadyClock::now() + 5s,
                     [&](Result<Response> r) { cancelled += !r && r.error().code == ErrorCode::kCancelled; });
    }
    ASSERT_TRUE(RunUntil(io, [&] { return held.size() == 1; }));
    client.reset();
    EXPECT_TRUE(RunUntil(io, [&] { return cancelled == 3; }));
}

TEST(HttpTest, IdleConnectionClosedByTheServerIsNotReused) {
    asio::io_context io;
    ServerOptions options;
    options.idle_timeout = 100ms;
    auto server = Start(
        io, [](Request, Respond respond) { respond(Answer(200, "{}")); }, options);
    auto client = Connect(io, *server);
    for (int i = 0; i < 2; ++i) {
        auto got = SendAndWait(io, *client, Get("/"));
        ASSERT_TRUE(got.has_value());
        ASSERT_TRUE(*got) << got->error().ToString();
        // Let the server's idle timeout close the connection.
        ASSERT_TRUE(RunUntil(io, [&] { return server->connections_open() == 0; }));
    }
    EXPECT_EQ(server->connections_accepted(), 2u);
}

TEST(HttpTest, ClientResolvesHostNames) {
    asio::io_context io;
    auto server = Start(io, [](Request, Respond respond) { respond(Answer(200, "{}")); });
    auto client =
        MakeClient(io, ClientOptions{.host = "localhost", .port = server->port(), .max_connections = 2});
    int ok = 0;
    for (int i = 0; i < 3; ++i) {
        client->Send(Get("/"), SteadyClock::now() + 5s,
                     [&](Result<Response> r) { ok += r && r->status == 200; });
    }
    EXPECT_TRUE(RunUntil(io, [&] { return ok == 3; }));
}

}  // namespace
}  // namespace cogs::http
