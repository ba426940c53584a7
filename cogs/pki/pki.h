// A private certificate authority in files: makes a CA and issues the certificates of a cloud's links
// (cogsd, the services, each host's agent, the CLI), for `cogs dev` and for tests.
//
// Everything is PEM on disk. Keys are EC P-256, written unencrypted as PKCS#8 with mode 0600;
// certificates are X.509 v3 signed with SHA-256, mode 0644. Every file is written atomically (a
// temporary beside it, synced, renamed over it), so a reader polling for a rotated file — a
// TlsContext's ReloadIfChanged — sees the old file or the new one, never half of one. The key is
// written before the certificate: a reader between the two renames may see a new key with the old
// certificate, which a TlsContext refuses (mismatch) and keeps what it had until the certificate
// follows.
//
// Validity starts 5 minutes before now (clocks of a cloud's machines differ a little) and ends
// `valid_for` after now. Serials are 159 random bits. No OpenSSL type appears here (pki.cc holds it).
//
// Threading: stateless; safe from any thread. Blocking file I/O: call off an io thread (or at start-up).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::pki {

// The two files of a CA: its certificate and its private key.
struct CaFiles {
    std::string cert_file{};
    std::string key_file{};
};

// Makes a self-signed CA: basicConstraints critical CA:TRUE (pathlen 0: it signs leaves only),
// keyUsage critical keyCertSign+cRLSign, subject CN = `common_name`. Overwrites existing files.
// Errors: kInvalidArgument for an empty name or a non-positive validity; kUnavailable if a file cannot
// be written (the directory must exist); kInternal if OpenSSL fails.
Status MakeCa(const std::string& cert_file, const std::string& key_file, const std::string& common_name,
              Duration valid_for);

// Issues a leaf certificate signed by `ca`, with a fresh key: subject CN = `common_name`,
// subjectAltName with every DNS name and IP address (IPv4 or IPv6 text) given, basicConstraints
// critical CA:FALSE, keyUsage critical digitalSignature, extendedKeyUsage serverAuth+clientAuth (one
// certificate serves a process both as a server and as a client of mutual TLS). A TLS client checks
// the subjectAltName, never the CN; the CN is the identity a server reads of its client
// (http::Request::peer_name). Overwrites existing files.
// Errors: kInvalidArgument for an empty name, a non-positive validity, an empty or malformed DNS name
// or an IP address that does not parse, or a CA whose files cannot be read or do not match
// (naming the file); kUnavailable if a file cannot be written; kInternal if OpenSSL fails.
Status Issue(const CaFiles& ca, const std::string& cert_file, const std::string& key_file,
             const std::string& common_name, std::vector<std::string> dns_names,
             std::vector<std::string> ip_addresses, Duration valid_for);

// What a certificate file says, for deciding whether to issue a new one (expiry, other names) and for
// tests.
struct CertificateInfo {
    std::string subject_cn{};
    std::string issuer_cn{};
    std::string serial_hex{};   // upper-case hex, no separators
    int64_t not_before_ms = 0;  // since the Unix epoch
    int64_t not_after_ms = 0;
    bool is_ca = false;
    std::vector<std::string> dns_names{};
    std::vector<std::string> ip_addresses{};  // as text, e.g. "127.0.0.1", "::1"
};

// The first certificate of the PEM file `cert_file`. Errors: kNotFound if the file does not exist,
// kInvalidArgument if it holds no PEM certificate.
Result<CertificateInfo> ReadCertificate(const std::string& cert_file);

}  // namespace cogs::pki
