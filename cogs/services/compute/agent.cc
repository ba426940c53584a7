#include "cogs/services/compute/agent.h"
#include "cogs/services/compute/internal/agent_impl.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <filesystem>

#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/oci/lease_file.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/internal/compute_domain.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {

namespace json = wire::json;

bool HostAgent::Impl::WorthLogging(uint64_t consecutive) { return (consecutive & (consecutive - 1)) == 0; }

spdlog::logger& HostAgent::Impl::AgentLog() { return observe::Log("agent"); }

bool HostAgent::Impl::Failover(const Result<http::Response>& r) {
    return !r || r->status == 502 || r->status == 503 || r->status == 504;
}

bool HostAgent::Impl::NoLeader(const Result<http::Response>& r) {
    if (!r || r->status != 503) {
        return false;
    }
    const json::object body = wire::ParseObject(r->body);
    const json::value* code = body.if_contains("code");
    return code != nullptr && code->is_string() && code->as_string() == "no_leader";
}

std::string HostAgent::Impl::Describe(const Result<http::Response>& r) {
    if (!r) {
        return r.error().ToString();
    }
    std::string body = r->body.substr(0, 200);
    return "HTTP " + std::to_string(r->status) + (body.empty() ? "" : ": " + body);
}

Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url) {
    auto bad = [&] {
        return MakeError(ErrorCode::kInvalidArgument,
                         "control url: must be http://HOST:PORT or https://HOST:PORT, got '" + url + "'");
    };
    const size_t scheme = url.starts_with("http://") ? 7 : url.starts_with("https://") ? 8 : 0;
    if (scheme == 0) {
        return bad();
    }
    std::string rest = url.substr(scheme);
    if (!rest.empty() && rest.back() == '/') {
        rest.pop_back();
    }
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos) {
        return bad();
    }
    std::string host = rest.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
        return bad();
    }
    const unsigned long p = std::stoul(port);
    if (p == 0 || p > 65535) {
        return bad();
    }
    return std::make_pair(host, static_cast<uint16_t>(p));
}
HostAgent::Impl::Impl(boost::asio::io_context& io, AgentOptions options,
                      std::vector<std::unique_ptr<http::Client>> clients)
    : io_(io),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : runtime::SystemClock()),
      clients_(std::move(clients)) {
    batching_ = options_.batch_renewals;
    beat_timer_ = clock_.NewTimer(io_);
    pace_ = options_.heartbeat_interval > Duration::zero()
                ? options_.heartbeat_interval
                : std::chrono::duration_cast<Duration>(options_.lease_ttl / 3);
    for (const HostSpec& spec : options_.hosts) {
        auto h = std::make_unique<Host>(clock_, io_);
        h->name = spec.name;
        json::object body;
        body["url"] = options_.advertise_url;
        internal::AddHostFields(spec, body);
        h->body = json::serialize(body);
        h->target = "/v1/hosts/" + http::UrlEncode(spec.name);
        h->backoff = options_.min_backoff;
        h->ttl = options_.lease_ttl;
        h->fenced = options_.link != nullptr;  // no lease yet
        if (!options_.lease_dir.empty()) {
            h->lease_file = options_.lease_dir + "/" + spec.name;
        }
        hosts_.push_back(std::move(h));
    }
}

void HostAgent::Impl::StartAll() {
    for (auto& h : hosts_) {
        boost::asio::post(io_, [self = shared_from_this(), host = h.get()] {
            if (!self->stopped_) {
                self->Register(*host);
            }
        });
    }
}

void HostAgent::Impl::Stop() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    beat_timer_->Cancel();
    for (auto& h : hosts_) {
        h->timer->Cancel();
        h->lease_timer->Cancel();
    }
    // Outstanding requests complete with kCancelled on io's next turn; they find stopped_ set.
    clients_.clear();
}

http::Request HostAgent::Impl::MakeRequest(const Host& h, std::string method, std::string target,
                                           std::string body) const {
    http::Request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    r.headers.emplace_back("content-type", "application/json");
    auto own = options_.host_tokens.find(h.name);
    const std::string& token = own != options_.host_tokens.end() ? own->second : options_.token;
    if (!token.empty()) {
        r.headers.emplace_back("authorization", "Bearer " + token);
    }
    return r;
}

void HostAgent::Impl::Send(Host& h, http::Request request,
                           void (Impl::*done)(Host&, const Result<http::Response>&, SteadyTime)) {
    const SteadyTime sent = clock_.Now();
    const size_t at = current_;
    clients_[at]->Send(std::move(request), RequestDeadline(),
                       [self = shared_from_this(), host = &h, sent, at, done](Result<http::Response> r) {
                           if (self->stopped_) {
                               return;
                           }
                           self->Answered(at, r);
                           (self.get()->*done)(*host, r, sent);
                       });
}

void HostAgent::Impl::Answered(size_t at, const Result<http::Response>& r) {
    if (!Failover(r)) {
        if (at == current_) {
            failovers_in_a_row_ = 0;
        }
        return;
    }
    if (clients_.size() < 2 || at != current_) {
        return;
    }
    current_ = (current_ + 1) % clients_.size();
    ++stats_.failovers;
    ++failovers_in_a_row_;
    if (WorthLogging(failovers_in_a_row_)) {
        AgentLog().warn("compute agent: control plane {} failed ({}): trying {} ({} moves in a row)",
                        options_.control_urls[at], Describe(r), options_.control_urls[current_],
                        failovers_in_a_row_);
    }
}

void HostAgent::Impl::Register(Host& h) {
    if (registering_ >= MaxRegistering()) {
        register_queue_.push_back(&h);
        return;
    }
    ++registering_;
    ++stats_.registrations_sent;
    Send(h, MakeRequest(h, "PUT", h.target, h.body), &Impl::Registered);
}

void HostAgent::Impl::Registered(Host& h, const Result<http::Response>& r, SteadyTime sent) {
    --registering_;
    if (!register_queue_.empty()) {
        Host* next = register_queue_.front();
        register_queue_.pop_front();
        Register(*next);
    }
    const observe::LogScope scope(observe::LogContext{"", "", h.name});
    if (r && r->status >= 200 && r->status < 300) {
        ++stats_.registrations;
        Renewed(h, sent, r->body, /*acks=*/false);
        if (h.failures > 0) {
            AgentLog().info("compute agent: host {} registered after {} failed attempts", h.name, h.failures);
        } else {
            AgentLog().debug("compute agent: host {} registered", h.name);
        }
        h.registered = true;
        h.failures = 0;
        h.unavailable = 0;
        h.backoff = options_.min_backoff;
        h.next_heartbeat = NextBeat(h);
        ScheduleBeat(h, h.next_heartbeat);
        return;
    }
    ++stats_.registration_failures;
    ++h.failures;
    if (NoLeader(r)) {
        ++stats_.no_leader;
        Extended(h, sent);
    }
    const int status = r ? r->status : 0;
    const bool definitive =
        status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 && status != 429;
    Duration wait;
    if (definitive) {
        AgentLog().error("compute agent: control plane refuses host {}: {} (retrying every {} ms)", h.name,
                         Describe(r), std::chrono::duration_cast<Millis>(options_.slow_retry).count());
        wait = options_.slow_retry;
    } else {
        if (WorthLogging(h.failures)) {
            AgentLog().warn("compute agent: registering host {} failed ({} in a row): {}", h.name, h.failures,
                            Describe(r));
        }
        wait = h.backoff;
        h.backoff = std::min<Duration>(h.backoff * 2, options_.max_backoff);
    }
    After(h, clock_.Now() + wait, &Impl::Register);
}

Result<std::unique_ptr<HostAgent>> HostAgent::Start(boost::asio::io_context& io, AgentOptions options) {
    if (options.control_urls.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "control url: none given");
    }
    if (options.hosts.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "hosts: no host to register");
    }
    if (!options.lease_dir.empty()) {
        if (options.lease_dir.front() != '/') {
            return MakeError(ErrorCode::kInvalidArgument, "lease dir: must be an absolute path");
        }
        if (options.link == nullptr) {
            return MakeError(ErrorCode::kInvalidArgument, "lease dir: without a link there is no lease");
        }
        for (const HostSpec& h : options.hosts) {
            if (h.name.empty() || h.name == "." || h.name == ".." || h.name.find('/') != std::string::npos) {
                return MakeError(
                    ErrorCode::kInvalidArgument,
                    "hosts: '" + h.name + "' cannot name a lease file under " + options.lease_dir);
            }
        }
        std::error_code ec;
        std::filesystem::create_directories(options.lease_dir, ec);
        if (ec) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "lease dir: cannot make " + options.lease_dir + ": " + ec.message());
        }
    }
    std::vector<std::unique_ptr<http::Client>> clients;
    for (const std::string& url : options.control_urls) {
        auto endpoint = ParseHttpUrl(url);
        if (!endpoint) {
            return MakeError(endpoint.error());
        }
        http::ClientOptions client_options;
        client_options.host = endpoint->first;
        client_options.port = endpoint->second;
        client_options.max_connections = std::max<size_t>(1, options.max_connections);
        if (url.starts_with("https://")) {
            if (options.tls == nullptr) {
                return MakeError(ErrorCode::kInvalidArgument,
                                 "control url " + url + " is https: a TLS context (--tls-ca) is needed");
            }
            client_options.tls = options.tls;
        }
        clients.push_back(http::MakeClient(io, client_options));
    }
    auto impl = std::make_shared<Impl>(io, std::move(options), std::move(clients));
    impl->StartAll();
    return std::unique_ptr<HostAgent>(new HostAgent(std::move(impl)));
}

HostAgent::HostAgent(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HostAgent::~HostAgent() { Stop(); }

void HostAgent::Stop() { impl_->Stop(); }

AgentStats HostAgent::stats() const { return impl_->stats(); }

size_t HostAgent::registered_hosts() const { return impl_->registered(); }

size_t HostAgent::fenced_hosts() const { return impl_->fenced(); }

const std::string& HostAgent::current_control_url() const { return impl_->current_url(); }

}  // namespace cogs::services::compute
