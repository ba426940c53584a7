// What the server and the client take from a TlsContext: the Asio SSL context a new connection is made
// with, and the OpenSSL calls around a handshake. OpenSSL and Asio SSL stay in cogs/http/internal.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "cogs/http/server.h"

namespace cogs::http::internal {

// The one implementation of TlsContext (MakeServerTls, MakeClientTls). The Asio context is immutable
// once made: Reload() builds a new one and swaps the pointer under a mutex, so a connection holds the
// context it was made with for as long as it lives, and a new connection takes the newest.
class TlsContextImpl final : public TlsContext {
public:
    // Empty until the first Reload() (MakeServerTls and MakeClientTls make it and load it).
    TlsContextImpl(bool server, TlsFiles files);

    Status Reload() override;
    Result<bool> ReloadIfChanged() override;
    const TlsFiles& files() const override { return files_; }

    bool server() const { return server_; }
    // The context a new connection is made with.
    std::shared_ptr<boost::asio::ssl::context> Current() const;

private:
    const bool server_;
    const TlsFiles files_;
    mutable std::mutex mu_;
    std::shared_ptr<boost::asio::ssl::context> context_;  // guarded by mu_
    std::string stamp_;                                   // guarded by mu_: the files as last loaded
};

// `tls` as made by this component for the side asked (server or client), or null.
std::shared_ptr<TlsContextImpl> AsImpl(const std::shared_ptr<TlsContext>& tls, bool server);

// Client side, before the handshake: sends SNI for a DNS name and makes the handshake verify that the
// server's certificate names `server_name` (a DNS name or an IP address). False if OpenSSL refused.
bool ExpectServerName(SSL* ssl, const std::string& server_name);

// Client side, after the handshake of a connection whose name is checked per request
// (ClientOptions::name_per_request): whether the verified certificate of the server names `name` (a DNS name,
// wildcards only whole-label, or an IP address). False without a verified certificate.
bool CertificateNames(SSL* ssl, const std::string& name);

// CertificateNames for every call of a pool, at the cost of a lookup: an agent's certificate names
// each host it serves (1,000 for an agent process of the benchmark), and X509_check_host walks them
// all on every call. The subjectAltName's DNS names of the last certificate seen are read once
// (lowercased); a name that is not among them, and an IP address, take CertificateNames' own walk
// (wildcards, the refusals). A peer with another certificate (renewed, another replica behind the
// address) replaces what was read. Not thread-safe: a pool's strand holds it.
class CertificateNameCache {
public:
    CertificateNameCache() = default;
    ~CertificateNameCache();
    CertificateNameCache(const CertificateNameCache&) = delete;
    CertificateNameCache& operator=(const CertificateNameCache&) = delete;

    bool Names(SSL* ssl, const std::string& name);

private:
    X509* cert_ = nullptr;  // held (up-ref'd): the certificate dns_ was read from
    std::unordered_set<std::string> dns_;
};

// Server side, after the handshake: the subject CN of the client's verified certificate, or "".
std::string VerifiedPeerName(SSL* ssl);

// After a failed handshake: why, from the certificate verification if it failed there, else `fallback`
// (the error_code's message).
std::string HandshakeFailure(SSL* ssl, const std::string& fallback);

}  // namespace cogs::http::internal
