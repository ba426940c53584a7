// The CA on libcrypto. Names go into subjectAltName as GENERAL_NAMEs built one by one rather than
// through OpenSSL's "DNS:a,IP:b" configuration syntax, so that no name given can inject another.
#include "cogs/pki/pki.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <ctime>
#include <memory>

#include "cogs/runtime/files.h"

namespace cogs::pki {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
    void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;

// Everything OpenSSL queued about the last failure, oldest first.
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

tl::unexpected<Error> OpenSslError(const std::string& what) {
    return MakeError(ErrorCode::kInternal, what + ": " + OpenSslReason());
}

// RFC 5280's upper bound on a common name.
constexpr size_t kMaxCommonName = 64;

Status CheckCommon(const std::string& common_name, Duration valid_for) {
    if (common_name.empty() || common_name.size() > kMaxCommonName) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "common_name: must have 1 to " + std::to_string(kMaxCommonName) + " characters");
    }
    if (valid_for <= Duration::zero()) {
        return MakeError(ErrorCode::kInvalidArgument, "valid_for: must be positive");
    }
    return Ok();
}

bool IsDnsName(const std::string& name) {
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') {
        return false;
    }
    for (size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '.' || c == '_' ||
                        (c == '*' && i == 0 && name.size() > 2 && name[1] == '.');
        if (!ok) {
            return false;
        }
    }
    return true;
}

Result<KeyPtr> NewKey() {
    KeyPtr key(EVP_EC_gen("P-256"));
    if (!key) {
        return OpenSslError("generate an EC P-256 key");
    }
    return key;
}

// A certificate with its version, serial, validity, subject and public key; not yet signed.
Result<X509Ptr> NewCertificate(EVP_PKEY* key, const std::string& common_name, Duration valid_for) {
    X509Ptr cert(X509_new());
    BnPtr serial(BN_new());
    if (!cert || !serial || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
        BN_rand(serial.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
        return OpenSslError("make a certificate");
    }
    const long seconds =
        static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(valid_for).count());
    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), seconds) || X509_set_pubkey(cert.get(), key) != 1) {
        return OpenSslError("make a certificate");
    }
    X509_NAME* name = X509_get_subject_name(cert.get());
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                                   0) != 1) {
        return OpenSslError("set the certificate's common name");
    }
    return cert;
}

// Adds an extension in OpenSSL's configuration syntax (fixed strings only: never outside input).
Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
        return OpenSslError(std::string("add the extension ") + OBJ_nid2sn(nid));
    }
    return Ok();
}

Status AddSubjectAltName(X509* cert, const std::vector<std::string>& dns_names,
                         const std::vector<std::string>& ip_addresses) {
    if (dns_names.empty() && ip_addresses.empty()) {
        return Ok();
    }
    NamesPtr names(sk_GENERAL_NAME_new_null());
    for (const auto& dns : dns_names) {
        if (!IsDnsName(dns)) {
            return MakeError(ErrorCode::kInvalidArgument, "dns_names: '" + dns + "' is not a DNS name");
        }
        GENERAL_NAME* gn = GENERAL_NAME_new();
        ASN1_IA5STRING* s = ASN1_IA5STRING_new();
        if (!gn || !s || ASN1_STRING_set(s, dns.data(), static_cast<int>(dns.size())) != 1) {
            GENERAL_NAME_free(gn);
            ASN1_IA5STRING_free(s);
            return OpenSslError("add a DNS name");
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
        sk_GENERAL_NAME_push(names.get(), gn);
    }
    for (const auto& ip : ip_addresses) {
        ASN1_OCTET_STRING* octets = a2i_IPADDRESS(ip.c_str());
        if (!octets) {
            ERR_clear_error();
            return MakeError(ErrorCode::kInvalidArgument, "ip_addresses: '" + ip + "' is not an IP address");
        }
        GENERAL_NAME* gn = GENERAL_NAME_new();
        if (!gn) {
            ASN1_OCTET_STRING_free(octets);
            return OpenSslError("add an IP address");
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, octets);
        sk_GENERAL_NAME_push(names.get(), gn);
    }
    if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
        return OpenSslError("add the subjectAltName");
    }
    return Ok();
}

template <typename Write>
Result<std::string> ToPem(Write write, const char* what) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || !write(bio.get())) {
        return OpenSslError(std::string("encode the ") + what);
    }
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

// Signs `cert` and writes the key (0600) then the certificate (0644), each atomically.
Status SignAndWrite(X509* cert, EVP_PKEY* signer, EVP_PKEY* key, const std::string& cert_file,
                    const std::string& key_file) {
    if (X509_sign(cert, signer, EVP_sha256()) <= 0) {
        return OpenSslError("sign the certificate");
    }
    COGS_ASSIGN_OR_RETURN(
        std::string key_pem,
        ToPem(
            [key](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); },
            "private key"));
    COGS_ASSIGN_OR_RETURN(std::string cert_pem,
                          ToPem([cert](BIO* b) { return PEM_write_bio_X509(b, cert); }, "certificate"));
    COGS_TRY(runtime::WriteFileAtomic(key_file, key_pem, 0600));
    return runtime::WriteFileAtomic(cert_file, cert_pem, 0644);
}

Result<X509Ptr> ReadCert(const std::string& file) {
    auto text = runtime::ReadFile(file);
    if (!text) {
        return MakeError(
            text.error().code == ErrorCode::kNotFound ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument,
            text.error().message);
    }
    BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!cert) {
        return MakeError(ErrorCode::kInvalidArgument, file + ": no PEM certificate: " + OpenSslReason());
    }
    return cert;
}

Result<KeyPtr> ReadKey(const std::string& file) {
    auto text = runtime::ReadFile(file);
    if (!text) {
        return MakeError(ErrorCode::kInvalidArgument, text.error().message);
    }
    BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) {
        return MakeError(ErrorCode::kInvalidArgument, file + ": no PEM private key: " + OpenSslReason());
    }
    return key;
}

std::string CommonName(const X509_NAME* name) {
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

int64_t TimeMs(const ASN1_TIME* t) {
    struct tm tm {};
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return static_cast<int64_t>(timegm(&tm)) * 1000;
}

}  // namespace

Status MakeCa(const std::string& cert_file, const std::string& key_file, const std::string& common_name,
              Duration valid_for) {
    COGS_TRY(CheckCommon(common_name, valid_for));
    ERR_clear_error();
    COGS_ASSIGN_OR_RETURN(KeyPtr key, NewKey());
    COGS_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, valid_for));
    if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1) {
        return OpenSslError("set the issuer");
    }
    COGS_TRY(AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    COGS_TRY(AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
    COGS_TRY(AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
    return SignAndWrite(cert.get(), key.get(), key.get(), cert_file, key_file);
}

Status Issue(const CaFiles& ca, const std::string& cert_file, const std::string& key_file,
             const std::string& common_name, std::vector<std::string> dns_names,
             std::vector<std::string> ip_addresses, Duration valid_for) {
    COGS_TRY(CheckCommon(common_name, valid_for));
    ERR_clear_error();
    auto ca_cert = ReadCert(ca.cert_file);
    if (!ca_cert) {
        return MakeError(ErrorCode::kInvalidArgument, "the CA certificate: " + ca_cert.error().message);
    }
    COGS_ASSIGN_OR_RETURN(KeyPtr ca_key, ReadKey(ca.key_file));
    if (X509_check_private_key(ca_cert->get(), ca_key.get()) != 1) {
        ERR_clear_error();
        return MakeError(ErrorCode::kInvalidArgument,
                         ca.key_file + ": not the key of the CA certificate " + ca.cert_file);
    }
    COGS_ASSIGN_OR_RETURN(KeyPtr key, NewKey());
    COGS_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, valid_for));
    if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert->get())) != 1) {
        return OpenSslError("set the issuer");
    }
    COGS_TRY(AddSubjectAltName(cert.get(), dns_names, ip_addresses));
    X509* issuer = ca_cert->get();
    COGS_TRY(AddExtension(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE"));
    COGS_TRY(AddExtension(cert.get(), issuer, NID_key_usage, "critical,digitalSignature"));
    COGS_TRY(AddExtension(cert.get(), issuer, NID_ext_key_usage, "serverAuth,clientAuth"));
    COGS_TRY(AddExtension(cert.get(), issuer, NID_subject_key_identifier, "hash"));
    COGS_TRY(AddExtension(cert.get(), issuer, NID_authority_key_identifier, "keyid:always"));
    return SignAndWrite(cert.get(), ca_key.get(), key.get(), cert_file, key_file);
}

Result<CertificateInfo> ReadCertificate(const std::string& cert_file) {
    ERR_clear_error();
    COGS_ASSIGN_OR_RETURN(X509Ptr cert, ReadCert(cert_file));
    CertificateInfo info;
    info.subject_cn = CommonName(X509_get_subject_name(cert.get()));
    info.issuer_cn = CommonName(X509_get_issuer_name(cert.get()));
    BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    if (serial) {
        char* hex = BN_bn2hex(serial.get());
        info.serial_hex = hex ? hex : "";
        OPENSSL_free(hex);
    }
    info.not_before_ms = TimeMs(X509_get0_notBefore(cert.get()));
    info.not_after_ms = TimeMs(X509_get0_notAfter(cert.get()));
    info.is_ca = (X509_get_extension_flags(cert.get()) & EXFLAG_CA) != 0;
    NamesPtr names(
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
        if (gn->type == GEN_DNS) {
            const ASN1_STRING* s = gn->d.dNSName;
            info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                        static_cast<size_t>(ASN1_STRING_length(s)));
        } else if (gn->type == GEN_IPADD) {
            const ASN1_OCTET_STRING* s = gn->d.iPAddress;
            const int len = ASN1_STRING_length(s);
            char text[INET6_ADDRSTRLEN] = {};
            if ((len == 4 || len == 16) &&
                inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), text, sizeof text)) {
                info.ip_addresses.emplace_back(text);
            }
        }
    }
    ERR_clear_error();
    return info;
}

}  // namespace cogs::pki
