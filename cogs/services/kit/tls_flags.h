// The TLS flags (tls.h), one shape for cogsd and every service process. Header-only on CLI11: only
// apps include it (link CLI11::CLI11).
//
//   --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]            what this process serves with
//   --tls-ca FILE [--tls-client-cert FILE --tls-client-key FILE]     what it calls others with
//   --tls-allowed-client NAME (repeatable; services: default cogsd)
#pragma once

#include <CLI/CLI.hpp>

#include "cogs/services/kit/tls.h"

namespace cogs::services::kit {

inline void AddTlsServerFlags(CLI::App& app, TlsOptions& o) {
    app.add_option("--tls-cert", o.cert_file,
                   "PEM certificate chain to serve with: TLS only (reloaded on SIGHUP or when it changes)");
    app.add_option("--tls-key", o.key_file, "PEM private key of --tls-cert");
    app.add_option("--tls-client-ca", o.client_ca_file,
                   "PEM CA of the clients' certificates: mutual TLS (cogsd's API asks without requiring)");
}

inline void AddTlsClientFlags(CLI::App& app, TlsOptions& o) {
    app.add_option("--tls-ca", o.ca_file, "PEM CA the servers this process calls must chain to: https");
    app.add_option("--tls-client-cert", o.client_cert_file,
                   "PEM certificate this process presents to the servers it calls (mutual TLS)");
    app.add_option("--tls-client-key", o.client_key_file, "PEM private key of --tls-client-cert");
}

// Both sides, and (services) which client certificates may call the action routes.
inline void AddTlsFlags(CLI::App& app, TlsOptions& o, bool allowed_clients) {
    AddTlsServerFlags(app, o);
    AddTlsClientFlags(app, o);
    if (allowed_clients) {
        app.add_option("--tls-allowed-client", o.allowed_clients,
                       "with --tls-client-ca: a client certificate's common name that may call the routes "
                       "other than /healthz and /metrics (repeatable)")
            ->capture_default_str();
    }
}

}  // namespace cogs::services::kit
