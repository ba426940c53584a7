// TlsContext on Asio SSL: an OpenSSL SSL_CTX made from PEM files, replaced whole on reload.
//
// The context is set up with OpenSSL's own calls (not asio::ssl::context's throwing wrappers) so that
// every failure is a value naming the file and OpenSSL's reason. Servers send no session tickets and
// keep no session cache: clients keep connections alive instead of resuming sessions, and a TLS 1.3
// ticket arriving on an idle client connection would look like the server closing it.
#include "cogs/http/internal/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <utility>

namespace cogs::http {
namespace internal {
namespace {

namespace ssl = boost::asio::ssl;

std::string OpenSslReason() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        out += out.empty() ? "" : "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

tl::unexpected<Error> FileError(const char* field, const std::string& file, const char* what) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(field) + " " + file + ": " + what + ": " + OpenSslReason());
}

Status CheckFiles(bool server, const TlsFiles& f) {
    if (server && (f.cert_file.empty() || f.key_file.empty())) {
        return MakeError(ErrorCode::kInvalidArgument, "cert_file, key_file: a TLS server needs both");
    }
    if (f.cert_file.empty() != f.key_file.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "cert_file, key_file: both or neither");
    }
    if (!server && f.ca_file.empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "ca_file: a TLS client needs the CA that signs the server's certificate");
    }
    return Ok();
}

Result<std::shared_ptr<ssl::context>> Build(bool server, const TlsFiles& f) {
    COGS_TRY(CheckFiles(server, f));
    ERR_clear_error();
    auto context =
        std::make_shared<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
    SSL_CTX* ctx = context->native_handle();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        return MakeError(ErrorCode::kInternal, "TLS 1.2 minimum: " + OpenSslReason());
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!f.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx, f.cert_file.c_str()) != 1) {
            return FileError("cert_file", f.cert_file, "cannot use the certificate");
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, f.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            return FileError("key_file", f.key_file, "cannot use the key");
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            return FileError("key_file", f.key_file, ("not the key of " + f.cert_file).c_str());
        }
    }
    if (!f.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, f.ca_file.c_str(), nullptr) != 1) {
            return FileError("ca_file", f.ca_file, "cannot use the CA certificates");
        }
        int mode = SSL_VERIFY_PEER;
        if (server) {
            // The CAs a client may choose its certificate by (CertificateRequest's list).
            STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(f.ca_file.c_str());
            if (names == nullptr) {
                return FileError("ca_file", f.ca_file, "cannot read the CA names");
            }
            SSL_CTX_set_client_CA_list(ctx, names);
            if (f.require_client_cert) {
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            }
        }
        SSL_CTX_set_verify(ctx, mode, nullptr);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (server) {
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    return context;
}

// What identifies the files' contents as they are now: a rename over a file (a rotation) changes
// its inode, an edit in place its size or modification time.
std::string Stamp(const TlsFiles& f) {
    std::string stamp;
    for (const std::string* file : {&f.cert_file, &f.key_file, &f.ca_file}) {
        if (file->empty()) {
            continue;
        }
        struct stat st {};
        if (::stat(file->c_str(), &st) != 0) {
            stamp += "missing;";
            continue;
        }
        stamp += std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                 std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                 std::to_string(st.st_mtim.tv_nsec) + ";";
    }
    return stamp;
}

// ASCII lowercase (DNS names compare without case).
std::string Lowercase(std::string s) {
    for (char& c : s) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return s;
}

bool IsIpAddress(const std::string& s) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

TlsContextImpl::TlsContextImpl(bool server, TlsFiles files) : server_(server), files_(std::move(files)) {}

std::shared_ptr<ssl::context> TlsContextImpl::Current() const {
    std::lock_guard lock(mu_);
    return context_;
}

Status TlsContextImpl::Reload() {
    // Stamped before reading: a file replaced during the load is seen as changed by the next poll.
    std::string stamp = Stamp(files_);
    COGS_ASSIGN_OR_RETURN(auto context, Build(server_, files_));
    std::lock_guard lock(mu_);
    context_ = std::move(context);
    stamp_ = std::move(stamp);
    return Ok();
}

Result<bool> TlsContextImpl::ReloadIfChanged() {
    {
        std::lock_guard lock(mu_);
        if (Stamp(files_) == stamp_) {
            return false;
        }
    }
    COGS_TRY(Reload());
    return true;
}

std::shared_ptr<TlsContextImpl> AsImpl(const std::shared_ptr<TlsContext>& tls, bool server) {
    auto impl = std::dynamic_pointer_cast<TlsContextImpl>(tls);
    return impl && impl->server() == server ? impl : nullptr;
}

bool ExpectServerName(SSL* ssl, const std::string& server_name) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (IsIpAddress(server_name)) {
        return X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) == 1;
    }
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, server_name.c_str()) == 1 &&
           X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0) == 1;
}

bool CertificateNames(SSL* ssl, const std::string& name) {
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr || name.empty() || SSL_get_verify_result(ssl) != X509_V_OK) {
        return false;
    }
    if (IsIpAddress(name)) {
        return X509_check_ip_asc(cert, name.c_str(), 0) == 1;
    }
    return X509_check_host(cert, name.data(), name.size(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) ==
           1;
}

CertificateNameCache::~CertificateNameCache() { X509_free(cert_); }

bool CertificateNameCache::Names(SSL* ssl, const std::string& name) {
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr || name.empty() || SSL_get_verify_result(ssl) != X509_V_OK || IsIpAddress(name)) {
        return CertificateNames(ssl, name);
    }
    if (cert_ == nullptr || X509_cmp(cert_, cert) != 0) {
        X509_free(cert_);
        X509_up_ref(cert);
        cert_ = cert;
        dns_.clear();
        auto* names =
            static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
        for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
            const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
            if (n->type != GEN_DNS) {
                continue;
            }
            std::string dns(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                            static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)));
            if (dns.find('*') == std::string::npos && dns.find('\0') == std::string::npos) {
                dns_.insert(Lowercase(std::move(dns)));
            }
        }
        GENERAL_NAMES_free(names);
    }
    // An exact subjectAltName DNS name is one X509_check_host accepts too.
    return dns_.contains(Lowercase(name)) || CertificateNames(ssl, name);
}

std::string VerifiedPeerName(SSL* ssl) {
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
        return "";
    }
    const X509_NAME* name = X509_get_subject_name(cert);
    const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0) {
        return "";
    }
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (n < 0) {
        ERR_clear_error();
        return "";
    }
    std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
    return out;
}

std::string HandshakeFailure(SSL* ssl, const std::string& fallback) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
        return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
    }
    return fallback;
}

}  // namespace internal

Result<std::shared_ptr<TlsContext>> MakeServerTls(TlsFiles files) {
    auto tls = std::make_shared<internal::TlsContextImpl>(true, std::move(files));
    COGS_TRY(tls->Reload());
    return std::shared_ptr<TlsContext>(std::move(tls));
}

Result<std::shared_ptr<TlsContext>> MakeClientTls(TlsFiles files) {
    auto tls = std::make_shared<internal::TlsContextImpl>(false, std::move(files));
    COGS_TRY(tls->Reload());
    return std::shared_ptr<TlsContext>(std::move(tls));
}

}  // namespace cogs::http
