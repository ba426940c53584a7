#include "cogs/services/compute/agent.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/internal/compute_domain.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {
namespace {

namespace json = wire::json;

// Failures are logged on the first of a run and then at 2, 4, 8, ... so that a thousand hosts
// facing a control plane that is down do not flood the log, yet a long outage stays visible.
bool WorthLogging(uint64_t consecutive) { return (consecutive & (consecutive - 1)) == 0; }

// The agent's lines: component "agent" (its level set apart from the service's), the host as the
// resource they are about.
spdlog::logger& AgentLog() { return observe::Log("agent"); }

std::string Describe(const Result<http::Response>& r) {
    if (!r) {
        return r.error().ToString();
    }
    std::string body = r->body.substr(0, 200);
    return "HTTP " + std::to_string(r->status) + (body.empty() ? "" : ": " + body);
}

}  // namespace

Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url) {
    constexpr std::string_view kScheme = "http://";
    auto bad = [&] {
        return MakeError(ErrorCode::kInvalidArgument,
                         "control url: must be http://HOST:PORT, got '" + url + "'");
    };
    if (url.rfind(kScheme, 0) != 0) {
        return bad();
    }
    std::string rest = url.substr(kScheme.size());
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

class HostAgent::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(boost::asio::io_context& io, AgentOptions options, std::unique_ptr<http::Client> client)
        : io_(io),
          options_(std::move(options)),
          clock_(options_.clock != nullptr ? *options_.clock : runtime::SystemClock()),
          client_(std::move(client)) {
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
            hosts_.push_back(std::move(h));
        }
    }

    void StartAll() {
        for (auto& h : hosts_) {
            boost::asio::post(io_, [self = shared_from_this(), host = h.get()] {
                if (!self->stopped_) {
                    self->Register(*host);
                }
            });
        }
    }

    void Stop() {
        if (stopped_) {
            return;
        }
        stopped_ = true;
        for (auto& h : hosts_) {
            h->timer->Cancel();
            h->lease_timer->Cancel();
        }
        // Outstanding requests complete with kCancelled on io's next turn; they find stopped_ set.
        client_.reset();
    }

    const AgentStats& stats() const { return stats_; }
    size_t registered() const {
        size_t n = 0;
        for (const auto& h : hosts_) {
            n += h->registered ? 1 : 0;
        }
        return n;
    }
    size_t fenced() const {
        size_t n = 0;
        for (const auto& h : hosts_) {
            n += h->fenced ? 1 : 0;
        }
        return n;
    }

private:
    struct Host {
        Host(runtime::Clock& clock, boost::asio::io_context& io)
            : timer(clock.NewTimer(io)), lease_timer(clock.NewTimer(io)) {}
        std::string name;
        std::string body;                       // the registration
        std::string target;                     // /v1/hosts/{name}
        std::unique_ptr<runtime::Timer> timer;  // the next registration attempt or heartbeat
        bool registered = false;
        Duration backoff{};
        uint64_t failures = 0;  // consecutive, of the current phase
        SteadyTime next_heartbeat{};
        // The lease (with a link): held until lease_until; ttl is the control plane's last word.
        std::unique_ptr<runtime::Timer> lease_timer;
        SteadyTime last_acked_send{};
        SteadyTime lease_until{};
        Duration ttl{};
        bool fenced = false;
        bool ever_leased = false;
        SteadyTime fenced_since{};
    };

    http::Request MakeRequest(std::string method, std::string target, std::string body) const {
        http::Request r;
        r.method = std::move(method);
        r.target = std::move(target);
        r.body = std::move(body);
        r.headers.emplace_back("content-type", "application/json");
        if (!options_.token.empty()) {
            r.headers.emplace_back("authorization", "Bearer " + options_.token);
        }
        return r;
    }

    template <typename F>
    void After(Host& h, SteadyTime when, F next) {
        h.timer->Arm(when, [self = shared_from_this(), host = &h, next] {
            if (!self->stopped_) {
                (self.get()->*next)(*host);
            }
        });
    }

    // The exchange's deadline is the machine's: http::Client times out on real time, whatever clock
    // the agent's timers run on.
    SteadyTime RequestDeadline() const { return SteadyClock::now() + options_.request_timeout; }

    void Register(Host& h) {
        ++stats_.registrations_sent;
        const SteadyTime sent = clock_.Now();
        client_->Send(MakeRequest("PUT", h.target, h.body), RequestDeadline(),
                      [self = shared_from_this(), host = &h, sent](Result<http::Response> r) {
                          if (!self->stopped_) {
                              self->Registered(*host, r, sent);
                          }
                      });
    }

    void Registered(Host& h, const Result<http::Response>& r, SteadyTime sent) {
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        if (r && r->status >= 200 && r->status < 300) {
            ++stats_.registrations;
            Renewed(h, sent, r->body, /*acks=*/false);
            if (h.failures > 0) {
                AgentLog().info("compute agent: host {} registered after {} failed attempts", h.name,
                                h.failures);
            } else {
                AgentLog().debug("compute agent: host {} registered", h.name);
            }
            h.registered = true;
            h.failures = 0;
            h.backoff = options_.min_backoff;
            h.next_heartbeat = clock_.Now() + Interval(h);
            After(h, h.next_heartbeat, &Impl::Heartbeat);
            return;
        }
        ++stats_.registration_failures;
        ++h.failures;
        const int status = r ? r->status : 0;
        const bool definitive =
            status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 && status != 429;
        Duration wait;
        if (definitive) {
            AgentLog().error("compute agent: control plane refuses host {}: {} (retrying every {} ms)",
                             h.name, Describe(r),
                             std::chrono::duration_cast<Millis>(options_.slow_retry).count());
            wait = options_.slow_retry;
        } else {
            if (WorthLogging(h.failures)) {
                AgentLog().warn("compute agent: registering host {} failed ({} in a row): {}", h.name,
                                h.failures, Describe(r));
            }
            wait = h.backoff;
            h.backoff = std::min<Duration>(h.backoff * 2, options_.max_backoff);
        }
        After(h, clock_.Now() + wait, &Impl::Register);
    }

    // Renewals come at least three times per lease TTL (a control plane with a short TTL is not
    // left to lapse between two heartbeats of a longer interval).
    Duration Interval(const Host& h) const {
        return std::min<Duration>(options_.heartbeat_interval,
                                  std::chrono::duration_cast<Duration>(h.ttl / 3));
    }

    void Heartbeat(Host& h) {
        ++stats_.heartbeats_sent;
        const SteadyTime sent = clock_.Now();
        h.next_heartbeat = sent + Interval(h);
        std::string body = options_.link != nullptr ? options_.link->HeartbeatBody(h.name) : "{}";
        client_->Send(MakeRequest("POST", h.target + "/heartbeat", std::move(body)), RequestDeadline(),
                      [self = shared_from_this(), host = &h, sent](Result<http::Response> r) {
                          if (!self->stopped_) {
                              self->HeartbeatDone(*host, r, sent);
                          }
                      });
    }

    void HeartbeatDone(Host& h, const Result<http::Response>& r, SteadyTime sent) {
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        if (r && r->status == 404) {
            ++stats_.heartbeat_failures;
            ++stats_.reregistrations;
            AgentLog().warn("compute agent: control plane forgot host {}: registering again", h.name);
            h.registered = false;
            h.failures = 0;
            Register(h);
            return;
        }
        if (r && r->status >= 200 && r->status < 300) {
            ++stats_.heartbeats;
            Renewed(h, sent, r->body, /*acks=*/true);
            if (h.failures > 0) {
                AgentLog().info("compute agent: heartbeats of host {} answered again after {} failures",
                                h.name, h.failures);
            }
            h.failures = 0;
        } else {
            ++stats_.heartbeat_failures;
            ++h.failures;
            if (WorthLogging(h.failures)) {
                AgentLog().warn("compute agent: heartbeat of host {} failed ({} in a row): {}", h.name,
                                h.failures, Describe(r));
            }
        }
        // At the pace of heartbeat_interval from the last send; at once if a slow answer used it up.
        After(h, h.next_heartbeat, &Impl::Heartbeat);
    }

    // The control plane answered 2xx to a request sent at `sent`: the lease holds until sent + T.
    // `body` may carry lease_ttl_ms (T from now on) and, for a heartbeat, acked_seq.
    void Renewed(Host& h, SteadyTime sent, const std::string& body, bool acks) {
        if (options_.link == nullptr) {
            return;
        }
        // cogsd's own answer: read leniently (an older cogsd's 204 has no body).
        const json::object answer = wire::ParseObject(body);
        if (const int64_t ttl = wire::Int(answer, "lease_ttl_ms"); ttl > 0) {
            h.ttl = Millis(ttl);
        }
        // Before it may unfence below: a call sent before this epoch is refused from now on.
        if (const int64_t epoch = wire::Int(answer, "lease_epoch"); epoch > 0) {
            options_.link->SetLeaseEpoch(h.name, epoch);
        }
        if (const int64_t seq = wire::Int(answer, "acked_seq");
            acks && answer.contains("acked_seq") && seq >= 0) {
            options_.link->Acknowledged(h.name, static_cast<uint64_t>(seq));
        }
        if (sent < h.last_acked_send) {
            return;  // an older request answered late: the newer answer already set the lease
        }
        h.last_acked_send = sent;
        h.lease_until = sent + h.ttl;  // with T as last answered (it may shorten the lease)
        const SteadyTime now = clock_.Now();
        if (now >= h.lease_until) {
            return;  // answered too late to hold anything: the lease is over already
        }
        if (h.fenced) {
            h.fenced = false;
            options_.link->SetFenced(h.name, false);
            if (h.ever_leased) {
                ++stats_.unfences;
                AgentLog().info(
                    "compute agent: host {} holds a lease again after {} ms fenced: accepting work (its "
                    "FENCED instances stay stopped until started or deleted)",
                    h.name, std::chrono::duration_cast<Millis>(now - h.fenced_since).count());
            } else {
                AgentLog().debug("compute agent: host {} holds its first lease", h.name);
            }
            h.ever_leased = true;
        }
        h.lease_timer->Arm(h.lease_until, [self = shared_from_this(), host = &h] {
            if (!self->stopped_) {
                self->LeaseCheck(*host);
            }
        });
    }

    // The lease timer: fences the host at the end of its lease, unless a renewal moved the end.
    void LeaseCheck(Host& h) {
        if (h.fenced || clock_.Now() < h.lease_until) {
            return;  // re-armed by a renewal meanwhile
        }
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        h.fenced = true;
        h.fenced_since = clock_.Now();
        ++stats_.fences;
        const size_t stopped = options_.link->SetFenced(h.name, true);
        AgentLog().warn(
            "compute agent: host {} fenced: no renewal of its lease answered within {} ms; {} instance(s) "
            "stopped (FENCED), create/start/reboot refused until the control plane answers",
            h.name, std::chrono::duration_cast<Millis>(h.ttl).count(), stopped);
    }

    boost::asio::io_context& io_;
    AgentOptions options_;
    runtime::Clock& clock_;
    std::unique_ptr<http::Client> client_;
    std::vector<std::unique_ptr<Host>> hosts_;
    bool stopped_ = false;
    AgentStats stats_;
};

Result<std::unique_ptr<HostAgent>> HostAgent::Start(boost::asio::io_context& io, AgentOptions options) {
    auto endpoint = ParseHttpUrl(options.control_url);
    if (!endpoint) {
        return MakeError(endpoint.error());
    }
    if (options.hosts.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "hosts: no host to register");
    }
    http::ClientOptions client_options;
    client_options.host = endpoint->first;
    client_options.port = endpoint->second;
    client_options.max_connections = std::max<size_t>(1, options.max_connections);
    auto client = http::MakeClient(io, client_options);
    auto impl = std::make_shared<Impl>(io, std::move(options), std::move(client));
    impl->StartAll();
    return std::unique_ptr<HostAgent>(new HostAgent(std::move(impl)));
}

HostAgent::HostAgent(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HostAgent::~HostAgent() { Stop(); }

void HostAgent::Stop() { impl_->Stop(); }

AgentStats HostAgent::stats() const { return impl_->stats(); }

size_t HostAgent::registered_hosts() const { return impl_->registered(); }

size_t HostAgent::fenced_hosts() const { return impl_->fenced(); }

}  // namespace cogs::services::compute
