#include "cogs/services/kit/tls.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cogs/wire/answer.h"

namespace cogs::services::kit {

Status CheckTlsOptions(const TlsOptions& o) {
    const auto bad = [](const std::string& what) { return MakeError(ErrorCode::kInvalidArgument, what); };
    if (o.cert_file.empty() != o.key_file.empty()) {
        return bad("--tls-cert and --tls-key go together");
    }
    if (!o.client_ca_file.empty() && o.cert_file.empty()) {
        return bad("--tls-client-ca needs --tls-cert and --tls-key (a client CA is for a TLS server)");
    }
    if (o.client_cert_file.empty() != o.client_key_file.empty()) {
        return bad("--tls-client-cert and --tls-client-key go together");
    }
    if (!o.client_cert_file.empty() && o.ca_file.empty()) {
        return bad("--tls-client-cert needs --tls-ca (the CA the servers' certificates are verified by)");
    }
    return {};
}

Result<std::shared_ptr<http::TlsContext>> MakeServerTlsFrom(const TlsOptions& o, bool require_client_cert) {
    if (!o.serves_tls()) {
        return std::shared_ptr<http::TlsContext>();
    }
    COGS_TRY(CheckTlsOptions(o));
    http::TlsFiles files;
    files.cert_file = o.cert_file;
    files.key_file = o.key_file;
    files.ca_file = o.client_ca_file;
    files.require_client_cert = require_client_cert;
    return http::MakeServerTls(std::move(files));
}

Result<std::shared_ptr<http::TlsContext>> MakeClientTlsFrom(const TlsOptions& o) {
    if (!o.calls_tls()) {
        return std::shared_ptr<http::TlsContext>();
    }
    COGS_TRY(CheckTlsOptions(o));
    http::TlsFiles files;
    files.ca_file = o.ca_file;
    files.cert_file = o.client_cert_file;
    files.key_file = o.client_key_file;
    return http::MakeClientTls(std::move(files));
}

namespace {

class Reloader final : public TlsReloader {
public:
    Reloader(boost::asio::io_context& io, std::vector<TlsReloadTarget> targets, Duration poll)
        : targets_(std::move(targets)),
          poll_(poll),
          signals_(io, SIGHUP),
          timer_(io),
          last_error_(targets_.size()) {}

    void Start() {
        WaitSignal();
        Arm();
    }

    ~Reloader() override {
        boost::system::error_code ec;
        signals_.cancel(ec);
        timer_.cancel();
    }

    int ReloadAll() override {
        int n = 0;
        for (const TlsReloadTarget& t : targets_) {
            if (t.context == nullptr) continue;
            if (auto st = t.context->Reload(); st) {
                ++n;
                spdlog::info("tls: {} certificate reloaded from {}", t.name, Describe(*t.context));
            } else {
                spdlog::warn("tls: {} certificate not reloaded (keeping the one in use): {}", t.name,
                             st.error().message);
            }
        }
        return n;
    }

private:
    static std::string Describe(const http::TlsContext& c) {
        const http::TlsFiles& f = c.files();
        return f.cert_file.empty() ? "CA " + f.ca_file : f.cert_file;
    }

    void WaitSignal() {
        signals_.async_wait([this](boost::system::error_code ec, int) {
            if (ec) return;
            spdlog::info("tls: SIGHUP, reloading certificates");
            ReloadAll();
            WaitSignal();
        });
    }

    void Arm() {
        timer_.expires_after(poll_);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;
            for (size_t i = 0; i < targets_.size(); ++i) {
                const TlsReloadTarget& t = targets_[i];
                if (t.context == nullptr) continue;
                auto changed = t.context->ReloadIfChanged();
                if (!changed) {
                    // Retried at every poll (a half-written pair is complete at the next one); said
                    // once per reason, not every 5 s.
                    if (changed.error().message != last_error_[i]) {
                        last_error_[i] = changed.error().message;
                        spdlog::warn(
                            "tls: {} certificate changed on disk but cannot be loaded (keeping the "
                            "one in use): {}",
                            t.name, last_error_[i]);
                    }
                    continue;
                }
                last_error_[i].clear();
                if (*changed) {
                    spdlog::info("tls: {} certificate changed on disk, reloaded from {}", t.name,
                                 Describe(*t.context));
                }
            }
            Arm();
        });
    }

    std::vector<TlsReloadTarget> targets_;
    Duration poll_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer timer_;
    std::vector<std::string> last_error_;  // per target: the poll's last failure, said once
};

}  // namespace

std::unique_ptr<TlsReloader> StartTlsReloader(boost::asio::io_context& io,
                                              std::vector<TlsReloadTarget> targets, Duration poll) {
    if (std::none_of(targets.begin(), targets.end(),
                     [](const TlsReloadTarget& t) { return t.context != nullptr; })) {
        return nullptr;  // SIGHUP keeps its default meaning in a process without TLS
    }
    auto r = std::make_unique<Reloader>(io, std::move(targets), poll);
    r->Start();
    return r;
}

http::Handler AllowClients(http::Handler inner, std::vector<std::string> allowed) {
    if (allowed.empty()) {
        return inner;
    }
    return
        [inner = std::move(inner), allowed = std::move(allowed)](http::Request req, http::Respond respond) {
            const std::string path = req.Path();
            const bool open = req.method == "GET" && (path == "/healthz" || path == "/metrics");
            if (!open && std::find(allowed.begin(), allowed.end(), req.peer_name) == allowed.end()) {
                return respond(wire::ServiceError(
                    Error(ErrorCode::kPermissionDenied,
                          "client certificate " +
                              (req.peer_name.empty() ? std::string("(none)") : "'" + req.peer_name + "'") +
                              " may not call this service")));
            }
            inner(std::move(req), std::move(respond));
        };
}

}  // namespace cogs::services::kit
