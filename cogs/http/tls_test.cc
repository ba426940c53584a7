// TLS as a client and a server see it: which handshakes succeed (a trusted chain, the name the client
// asked for, the client certificate mutual TLS wants), what the handler learns of its peer, and
// certificate rotation while the server runs. Certificates come from cogs/pki in a temporary directory.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fstream>

#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/pki/pki.h"
#include "test/support/temp_dir.h"

namespace cogs::http {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
constexpr Duration kDay = 24h;

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

Result<Response> SendAndWait(asio::io_context& io, Client& client, Request request = Get("/who")) {
    std::optional<Result<Response>> got;
    client.Send(std::move(request), SteadyClock::now() + 5s, [&](Result<Response> r) { got = std::move(r); });
    if (!RunUntil(io, [&] { return got.has_value(); })) {
        ADD_FAILURE() << "the send never ended";
        return MakeError(ErrorCode::kInternal, "never ended");
    }
    return std::move(*got);
}

std::shared_ptr<TlsContext> ServerTls(TlsFiles files) {
    auto tls = MakeServerTls(std::move(files));
    EXPECT_TRUE(tls) << tls.error().ToString();
    return tls ? *tls : nullptr;
}

std::shared_ptr<TlsContext> ClientTls(TlsFiles files) {
    auto tls = MakeClientTls(std::move(files));
    EXPECT_TRUE(tls) << tls.error().ToString();
    return tls ? *tls : nullptr;
}

// ReloadIfChanged() found nothing to reload.
bool Unchanged(TlsContext& tls) {
    auto changed = tls.ReloadIfChanged();
    return changed && !*changed;
}

class TlsTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(pki::MakeCa(ca_.cert_file, ca_.key_file, "test CA", kDay));
        ASSERT_TRUE(pki::MakeCa(other_ca_.cert_file, other_ca_.key_file, "another CA", kDay));
        ASSERT_TRUE(Issue(ca_, "server", {"localhost", "server.test"}, {"127.0.0.1"}));
        ASSERT_TRUE(Issue(ca_, "host-1", {}, {}));
        ASSERT_TRUE(Issue(other_ca_, "intruder", {}, {}));
    }

    // Issues `cn`.crt and `cn`.key in the test's directory.
    Status Issue(const pki::CaFiles& ca, const std::string& cn, std::vector<std::string> dns,
                 std::vector<std::string> ips) {
        return pki::Issue(ca, Crt(cn), Key(cn), cn, std::move(dns), std::move(ips), kDay);
    }
    std::string Crt(const std::string& cn) const { return dir_ / (cn + ".crt"); }
    std::string Key(const std::string& cn) const { return dir_ / (cn + ".key"); }

    // A server that answers with what it knows of its peer: "peer_name|peer_address".
    void StartTlsServer(TlsFiles files, Duration idle_timeout = 60s) {
        server_tls_ = ServerTls(std::move(files));
        ASSERT_NE(server_tls_, nullptr);
        ServerOptions options;
        options.tls = server_tls_;
        options.idle_timeout = idle_timeout;
        auto server = StartServer(io_, options, [this](Request req, Respond respond) {
            ++handled_;
            Response r;
            r.body = req.peer_name + "|" + req.peer_address;
            respond(std::move(r));
        });
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
    }
    TlsFiles ServerFiles() const { return {Crt("server"), Key("server")}; }

    // A client of the server trusting `ca_file`, with the certificate `cn` if given.
    std::unique_ptr<Client> TlsClient(const std::string& ca_file, const std::string& cn = "",
                                      const std::string& server_name = "") {
        TlsFiles files{.ca_file = ca_file};
        if (!cn.empty()) {
            files.cert_file = Crt(cn);
            files.key_file = Key(cn);
        }
        ClientOptions options;
        options.port = server_->port();
        options.tls = ClientTls(files);
        options.server_name = server_name;
        return MakeClient(io_, options);
    }

    // A client that asks for the name of each request's Request::peer_name (an agent's hosts).
    ClientOptions NamePerRequestOptions() {
        ClientOptions options;
        options.port = server_->port();
        options.tls = ClientTls({.ca_file = ca_.cert_file});
        options.name_per_request = true;
        return options;
    }
    static Request As(std::string name) {
        Request r = Get("/who");
        r.peer_name = std::move(name);
        return r;
    }

    // The client's request is refused (kUnavailable) before any handler ran; the error's message.
    std::string ExpectRefused(Client& client) {
        const int before = handled_;
        auto got = SendAndWait(io_, client);
        EXPECT_FALSE(got) << "answered: " << got->body;
        EXPECT_EQ(handled_, before);
        if (got) {
            return "";
        }
        EXPECT_EQ(got.error().code, ErrorCode::kUnavailable) << got.error().ToString();
        return got.error().message;
    }

    testing::TempDir dir_{"tls-test"};
    pki::CaFiles ca_{dir_ / "ca.crt", dir_ / "ca.key"};
    pki::CaFiles other_ca_{dir_ / "other-ca.crt", dir_ / "other-ca.key"};
    asio::io_context io_;
    std::shared_ptr<TlsContext> server_tls_;
    std::unique_ptr<Server> server_;
    int handled_ = 0;
};

TEST_F(TlsTest, RoundTripOverOneKeptAliveConnection) {
    StartTlsServer(ServerFiles());
    auto client = TlsClient(ca_.cert_file);
    for (int i = 0; i < 5; ++i) {
        auto got = SendAndWait(io_, *client);
        ASSERT_TRUE(got) << got.error().ToString();
        EXPECT_EQ(got->status, 200);
        EXPECT_EQ(got->body, "|127.0.0.1");  // no client certificate asked for: no peer name
    }
    EXPECT_EQ(server_->connections_accepted(), 1u);

    // A body in both directions, larger than one TLS record.
    Request post = Get("/big");
    post.method = "POST";
    post.body = std::string(100'000, 'x');
    auto got = SendAndWait(io_, *client, post);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(server_->connections_accepted(), 1u);
}

TEST_F(TlsTest, AClientThatDoesNotTrustTheServersCaIsRefused) {
    StartTlsServer(ServerFiles());
    auto client = TlsClient(other_ca_.cert_file);
    EXPECT_NE(ExpectRefused(*client).find("certificate verification failed"), std::string::npos);
}

TEST_F(TlsTest, TheServersCertificateMustNameTheHostTheClientCalls) {
    StartTlsServer(ServerFiles());
    // Named by its DNS names and by its IP address (the client's host, 127.0.0.1, when no server_name).
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file, "", "server.test")));
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file, "", "localhost")));
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file)));
    // Not by another name, nor by its CN.
    EXPECT_NE(ExpectRefused(*TlsClient(ca_.cert_file, "", "other.test")).find("hostname mismatch"),
              std::string::npos);
    ExpectRefused(*TlsClient(ca_.cert_file, "", "server"));
}

TEST_F(TlsTest, ACertificateThatNamesAnotherHostOnlyIsRefused) {
    ASSERT_TRUE(Issue(ca_, "elsewhere", {"elsewhere.test"}, {"10.9.9.9"}));
    StartTlsServer({Crt("elsewhere"), Key("elsewhere")});
    // A trusted chain, but the certificate names neither 127.0.0.1 nor server.test.
    EXPECT_NE(ExpectRefused(*TlsClient(ca_.cert_file)).find("IP address mismatch"), std::string::npos);
    ExpectRefused(*TlsClient(ca_.cert_file, "", "server.test"));
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file, "", "elsewhere.test")));
}

TEST_F(TlsTest, ANamePerRequestIsCheckedOnTheSharedConnectionBeforeTheRequestIsSent) {
    // An agent serving two hosts at one address: one certificate names both.
    ASSERT_TRUE(Issue(ca_, "agent", {"host-a", "host-b"}, {"10.0.0.7"}));
    StartTlsServer({Crt("agent"), Key("agent")});
    ClientOptions options = NamePerRequestOptions();
    auto client = MakeClient(io_, options);
    for (const char* name : {"host-a", "host-b", "10.0.0.7", "host-a"}) {
        auto got = SendAndWait(io_, *client, As(name));
        ASSERT_TRUE(got) << name << ": " << got.error().ToString();
        EXPECT_EQ(got->status, 200);
    }
    EXPECT_EQ(handled_, 4);
    EXPECT_EQ(server_->connections_accepted(), 1u);  // one handshake for every name it holds

    // A name the certificate lacks, or none, is never sent; the connection stays for the others.
    for (const char* name : {"host-c", "", "agent", "10.0.0.8"}) {
        auto got = SendAndWait(io_, *client, As(name));
        ASSERT_FALSE(got) << name << " answered: " << got->body;
        EXPECT_EQ(got.error().code, ErrorCode::kUnavailable) << got.error().ToString();
        EXPECT_NE(got.error().message.find("the certificate does not name"), std::string::npos)
            << got.error().ToString();
    }
    EXPECT_EQ(handled_, 4);
    EXPECT_TRUE(SendAndWait(io_, *client, As("host-b")));
    EXPECT_EQ(server_->connections_accepted(), 1u);

    // The chain is still verified at the handshake.
    options.tls = ClientTls({.ca_file = other_ca_.cert_file});
    auto stranger = MakeClient(io_, options);
    auto got = SendAndWait(io_, *stranger, As("host-a"));
    ASSERT_FALSE(got);
    EXPECT_NE(got.error().message.find("certificate verification failed"), std::string::npos)
        << got.error().ToString();
    EXPECT_EQ(handled_, 5);
}

// The names are read once per certificate (an agent's names thousands of hosts), with
// X509_check_host's answers: without case, whole-label wildcards; a rotated certificate's own.
TEST_F(TlsTest, ANamePerRequestIsReadOnceFromEachCertificateTheServerShows) {
    ASSERT_TRUE(Issue(ca_, "agent", {"host-a", "*.rack1.test"}, {}));
    // Idle connections are closed soon, so that one made after the rotation below is new.
    StartTlsServer({Crt("agent"), Key("agent")}, /*idle_timeout=*/500ms);
    auto client = MakeClient(io_, NamePerRequestOptions());
    for (const char* name : {"host-a", "HOST-A", "n1.rack1.test", "host-a"}) {
        auto got = SendAndWait(io_, *client, As(name));
        EXPECT_TRUE(got) << name << ": " << got.error().ToString();
    }
    for (const char* name : {"host-c", "a.b.rack1.test", "rack1.test"}) {
        EXPECT_FALSE(SendAndWait(io_, *client, As(name))) << name;
    }

    // Rotated to name host-c alone: once the old connection is gone, the next one's certificate
    // is read afresh.
    ASSERT_TRUE(Issue(ca_, "agent", {"host-c"}, {}));
    ASSERT_TRUE(server_tls_->ReloadIfChanged());
    ASSERT_TRUE(RunUntil(io_, [&] { return server_->connections_open() == 0; }));
    auto c = SendAndWait(io_, *client, As("host-c"));
    EXPECT_TRUE(c) << c.error().ToString();
    for (const char* name : {"host-a", "n1.rack1.test"}) {
        EXPECT_FALSE(SendAndWait(io_, *client, As(name))) << name << " is no longer named";
    }
}

TEST_F(TlsTest, MutualTlsRequiredRefusesAClientWithoutACertificateOrWithAStrangersOne) {
    StartTlsServer({Crt("server"), Key("server"), ca_.cert_file, /*require_client_cert=*/true});
    ExpectRefused(*TlsClient(ca_.cert_file));
    ExpectRefused(*TlsClient(ca_.cert_file, "intruder"));
    auto got = SendAndWait(io_, *TlsClient(ca_.cert_file, "host-1"));
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(got->body, "host-1|127.0.0.1");
}

TEST_F(TlsTest, MutualTlsNotRequiredServesAClientWithoutACertificateButNotAStranger) {
    StartTlsServer({Crt("server"), Key("server"), ca_.cert_file, /*require_client_cert=*/false});
    auto anonymous = SendAndWait(io_, *TlsClient(ca_.cert_file));
    ASSERT_TRUE(anonymous) << anonymous.error().ToString();
    EXPECT_EQ(anonymous->body, "|127.0.0.1");
    auto host = SendAndWait(io_, *TlsClient(ca_.cert_file, "host-1"));
    ASSERT_TRUE(host) << host.error().ToString();
    EXPECT_EQ(host->body, "host-1|127.0.0.1");
    ExpectRefused(*TlsClient(ca_.cert_file, "intruder"));
}

TEST_F(TlsTest, PlainHttpToATlsServerIsNeverAnsweredAndASilentClientIsClosedAtTheDeadline) {
    StartTlsServer(ServerFiles(), /*idle_timeout=*/300ms);
    ClientOptions plain;
    plain.port = server_->port();
    ExpectRefused(*MakeClient(io_, plain));

    // A client that connects and says nothing holds a connection only until the handshake's deadline.
    asio::ip::tcp::socket silent(io_);
    silent.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    ASSERT_TRUE(
        RunUntil(io_, [&] { return server_->connections_accepted() == 2; }));  // the plain one, this one
    bool closed = false;
    char byte;
    silent.async_read_some(asio::buffer(&byte, 1),
                           [&](boost::system::error_code ec, size_t) { closed = !!ec; });
    EXPECT_TRUE(RunUntil(io_, [&] { return closed && server_->connections_open() == 0; }));

    // The server goes on serving.
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file)));
}

TEST_F(TlsTest, TheServersOwnRefusalsAndStopWorkOverTls) {
    ServerOptions options;
    options.tls = ServerTls(ServerFiles());
    options.max_body_bytes = 1000;
    auto server = StartServer(io_, options, [](Request, Respond) {});  // holds every request
    ASSERT_TRUE(server) << server.error().ToString();
    ClientOptions co;
    co.port = (*server)->port();
    co.tls = ClientTls({.ca_file = ca_.cert_file});
    auto client = MakeClient(io_, co);

    Request big = Get("/big");
    big.method = "POST";
    big.body = std::string(5000, 'x');
    auto refused = SendAndWait(io_, *client, big);
    ASSERT_TRUE(refused) << refused.error().ToString();
    EXPECT_EQ(refused->status, 413);

    // A request the handler holds, on a live TLS connection: Stop() closes it.
    std::optional<Result<Response>> held;
    client->Send(Get("/held"), SteadyClock::now() + 5s, [&](Result<Response> r) { held = std::move(r); });
    ASSERT_TRUE(RunUntil(io_, [&] { return (*server)->connections_open() == 1; }));
    (*server)->Stop();
    ASSERT_TRUE(RunUntil(io_, [&] { return held.has_value(); }));
    ASSERT_FALSE(*held);
    EXPECT_EQ(held->error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(RunUntil(io_, [&] { return (*server)->connections_open() == 0; }));
}

TEST_F(TlsTest, ATlsClientOfAPlainServerFails) {
    auto server = StartServer(io_, {}, [](Request, Respond respond) { respond(Response{}); });
    ASSERT_TRUE(server);
    ClientOptions options;
    options.port = (*server)->port();
    options.tls = ClientTls({.ca_file = ca_.cert_file});
    auto got = SendAndWait(io_, *MakeClient(io_, options));
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::kUnavailable);
}

TEST_F(TlsTest, ARotatedCertificateIsServedToNewConnectionsWithoutARestart) {
    ASSERT_TRUE(Issue(ca_, "rotating", {"old.test"}, {}));
    StartTlsServer({Crt("rotating"), Key("rotating")});
    EXPECT_TRUE(Unchanged(*server_tls_));

    auto old_client = TlsClient(ca_.cert_file, "", "old.test");
    ASSERT_TRUE(SendAndWait(io_, *old_client));
    ExpectRefused(*TlsClient(ca_.cert_file, "", "new.test"));

    // Rotation as an operator (or cert-manager) does it: new files over the old ones, then a reload.
    ASSERT_TRUE(Issue(ca_, "rotating", {"new.test"}, {}));
    auto reloaded = server_tls_->ReloadIfChanged();
    ASSERT_TRUE(reloaded) << reloaded.error().ToString();
    EXPECT_TRUE(*reloaded);
    EXPECT_TRUE(Unchanged(*server_tls_));

    auto got = SendAndWait(io_, *TlsClient(ca_.cert_file, "", "new.test"));
    EXPECT_TRUE(got) << got.error().ToString();
    ExpectRefused(*TlsClient(ca_.cert_file, "", "old.test"));
    // The connection made before the rotation lives on with what it was made with.
    const uint64_t accepted = server_->connections_accepted();
    EXPECT_TRUE(SendAndWait(io_, *old_client));
    EXPECT_EQ(server_->connections_accepted(), accepted);
}

TEST_F(TlsTest, AFailedReloadKeepsTheOldCertificateAndSaysWhy) {
    ASSERT_TRUE(Issue(ca_, "rotating", {"localhost"}, {"127.0.0.1"}));
    StartTlsServer({Crt("rotating"), Key("rotating")});

    // A key that is not the certificate's (the key of a rotation written, its certificate not yet).
    std::filesystem::copy_file(Key("host-1"), Key("rotating"),
                               std::filesystem::copy_options::overwrite_existing);
    auto mismatch = server_tls_->ReloadIfChanged();
    ASSERT_FALSE(mismatch);
    EXPECT_EQ(mismatch.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(mismatch.error().message.find(Key("rotating")), std::string::npos) << mismatch.error().message;
    EXPECT_TRUE(SendAndWait(io_, *TlsClient(ca_.cert_file)));

    std::ofstream(Crt("rotating")) << "not a certificate\n";
    auto garbage = server_tls_->Reload();
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(garbage.error().message.find(Crt("rotating")), std::string::npos) << garbage.error().message;
    // Still failing, still serving the old certificate.
    EXPECT_FALSE(server_tls_->ReloadIfChanged());
    auto got = SendAndWait(io_, *TlsClient(ca_.cert_file));
    EXPECT_TRUE(got) << got.error().ToString();
}

TEST_F(TlsTest, BadFilesAndMisusedContextsAreRefusedAtTheStart) {
    auto missing = MakeServerTls({dir_ / "nope.crt", Key("server")});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(missing.error().message.find("nope.crt"), std::string::npos);
    EXPECT_FALSE(MakeServerTls({.ca_file = ca_.cert_file}));          // a server needs a certificate
    EXPECT_FALSE(MakeClientTls({}));                                  // a client needs a CA
    EXPECT_FALSE(MakeClientTls({Crt("host-1"), "", ca_.cert_file}));  // both or neither
    EXPECT_FALSE(MakeClientTls({Crt("host-1"), Key("server"), ca_.cert_file}));  // not its key

    ServerOptions options;
    options.tls = ClientTls({.ca_file = ca_.cert_file});
    auto server = StartServer(io_, options, [](Request, Respond) {});
    ASSERT_FALSE(server);
    EXPECT_EQ(server.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace cogs::http
