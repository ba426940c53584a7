// TLS for every cogs process (cogsd, the services, the compute agents) in one shape: which PEM
// files a process serves and calls with, the contexts made from them, their rotation without a
// restart, and which client certificates a service's action routes accept. The transport itself is
// cogs/http's (TlsContext); this is the wiring around it. Flags: tls_flags.h.
//
// Server side: --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]. With a certificate the process
// serves TLS only (a plain-HTTP client fails its handshake). With a client CA every client must show
// a certificate it signed (mutual TLS) — except on cogsd's API, which asks for one without requiring
// it (tenants come with tokens only; agents present their host's certificate).
// Client side: --tls-ca FILE [--tls-client-cert FILE --tls-client-key FILE]: the CA every server
// this process calls must chain to, and the certificate it presents (cogsd's names "cogsd"; an
// agent's names its host).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

struct TlsOptions {
    // Server side; cert_file empty: plain HTTP.
    std::string cert_file{};
    std::string key_file{};
    std::string client_ca_file{};  // empty: no client certificate asked for
    // Client side; ca_file empty: plain HTTP to every server.
    std::string ca_file{};
    std::string client_cert_file{};
    std::string client_key_file{};
    // With a client CA: the common names whose certificates may call a service's routes other than
    // /healthz and /metrics (which any certificate of the CA may read).
    std::vector<std::string> allowed_clients{"cogsd"};

    bool serves_tls() const { return !cert_file.empty(); }
    bool calls_tls() const { return !ca_file.empty(); }
};

// kInvalidArgument naming the flag when the options do not hold together: a certificate without its
// key (or the reverse, either side), a client CA without a certificate to serve with, a client
// certificate without a CA to verify the server by.
Status CheckTlsOptions(const TlsOptions& o);

// The server context (null when o serves no TLS): o's certificate and key, and its client CA
// (required of every client unless `require_client_cert` is false). Errors: as http::MakeServerTls.
Result<std::shared_ptr<http::TlsContext>> MakeServerTlsFrom(const TlsOptions& o,
                                                            bool require_client_cert = true);
// The client context (null when o calls no TLS): o's CA and its client certificate, if any.
Result<std::shared_ptr<http::TlsContext>> MakeClientTlsFrom(const TlsOptions& o);

// Rotation without a restart: on SIGHUP, and every `poll` when a file's modification time or size
// changed (a certificate replaced on disk, as cert-manager does), every context is reloaded; each
// reload logs one line naming the context and its certificate file (never a key's content), a failed
// one a warning saying why (the context keeps what it had; the poll retries every `poll` and says
// each reason once). Lives on `io`'s thread; destroy it before
// `io`. Contexts may be null (skipped); null when every one is (SIGHUP keeps its default action).
class TlsReloader {
public:
    virtual ~TlsReloader() = default;
    // Reloads every context now (what SIGHUP does); the number reloaded.
    virtual int ReloadAll() = 0;
};
struct TlsReloadTarget {
    std::string name;  // for the log line: "server", "client"
    std::shared_ptr<http::TlsContext> context;
};
std::unique_ptr<TlsReloader> StartTlsReloader(boost::asio::io_context& io,
                                              std::vector<TlsReloadTarget> targets,
                                              Duration poll = std::chrono::seconds(5));

// A service's handler behind mutual TLS: a request whose client certificate (Request::peer_name)
// is not one of `allowed` is answered 403 in the protocol's error shape, except GET /healthz and
// GET /metrics (any client the TLS layer let in). `allowed` empty: every client passes.
http::Handler AllowClients(http::Handler inner, std::vector<std::string> allowed);

}  // namespace cogs::services::kit
