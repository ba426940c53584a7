#include "cogs/services/kit/http_client.h"

#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/http/client.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {
namespace {

namespace json = wire::json;

constexpr std::string_view kActionsPrefix = "/v1/actions/";

// What went wrong with `service`: a transport failure, or the error its answer carries (the status
// decides retries, whatever the body says: wire::ServiceErrorOf); the message names the service.
tl::unexpected<Error> Failed(const std::string& service, const Result<http::Response>& res) {
    Error e = res ? wire::ServiceErrorOf(res->status, res->body) : res.error();
    e.message = service + ": " + e.message;
    return MakeError(std::move(e));
}

Result<workflow::ActionReply> DecodeReply(const std::string& service, Result<http::Response> res) {
    if (!res) {
        return Failed(service, res);
    }
    if (res->status == 200) {
        const json::object body = wire::ParseObject(res->body);
        const json::value* out = body.if_contains("output");
        if (!out) {
            // Something answered, but not with the protocol: the outcome is unknown.
            return MakeError(Error(ErrorCode::kUnavailable, service + ": malformed 200 answer", true));
        }
        workflow::ActionReply reply;
        reply.output = json::serialize(*out);
        return reply;
    }
    if (res->status == 202) {
        workflow::ActionReply reply;
        reply.accepted = true;
        return reply;
    }
    return Failed(service, res);
}

http::ClientOptions Options(std::string host, uint16_t port, size_t max_connections,
                            std::shared_ptr<http::TlsContext> tls, std::string server_name) {
    http::ClientOptions o;
    o.host = std::move(host);
    o.port = port;
    o.max_connections = max_connections;
    o.tls = std::move(tls);
    o.server_name = std::move(server_name);
    return o;
}

// One pool to a service's address, shared by the ServiceClients that call it as different
// principals (SharedHttpService::As).
class ServicePool final : public SharedHttpService, public std::enable_shared_from_this<ServicePool> {
public:
    ServicePool(boost::asio::io_context& io, http::ClientOptions options, std::string service)
        : service_(std::move(service)), client_(http::MakeClient(io, std::move(options))) {}

    std::shared_ptr<workflow::ServiceClient> As(std::string bearer_token, std::string peer_name) override;

    void Send(http::Request req, SteadyTime deadline, workflow::ServiceClient::Callback done) {
        client_->Send(std::move(req), deadline,
                      [service = service_, done = std::move(done)](Result<http::Response> res) {
                          done(DecodeReply(service, std::move(res)));
                      });
    }

private:
    const std::string service_;
    const std::unique_ptr<http::Client> client_;
};

class HttpServiceClient final : public workflow::ServiceClient {
public:
    HttpServiceClient(std::shared_ptr<ServicePool> pool, std::string bearer_token, std::string peer_name)
        : pool_(std::move(pool)),
          authorization_(bearer_token.empty() ? std::string() : "Bearer " + bearer_token),
          peer_name_(std::move(peer_name)) {}

    void Invoke(workflow::ActionCall call, Callback done) override {
        http::Request req;
        req.method = "POST";
        req.target = std::string(kActionsPrefix) + http::UrlEncode(call.action);
        AddHeaders(req, call);
        req.headers.emplace_back("content-type", "application/json");
        req.body = call.input.empty() ? "{}" : std::move(call.input);
        pool_->Send(std::move(req), call.deadline, std::move(done));
    }

    void Status(workflow::ActionCall call, Callback done) override {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/actions/status?key=" + http::UrlEncode(call.idempotency_key);
        AddHeaders(req, call);
        pool_->Send(std::move(req), call.deadline, std::move(done));
    }

private:
    void AddHeaders(http::Request& req, const workflow::ActionCall& call) const {
        req.headers.emplace_back("idempotency-key", call.idempotency_key);
        // Rounded up: a call with 0.4 ms left is not expired yet.
        const auto budget = std::chrono::ceil<std::chrono::milliseconds>(call.deadline - SteadyClock::now());
        req.headers.emplace_back("x-cogs-deadline-ms", std::to_string(std::max<int64_t>(0, budget.count())));
        if (!call.traceparent.empty()) {
            req.headers.emplace_back("traceparent", call.traceparent);
        }
        if (!authorization_.empty()) {
            req.headers.emplace_back("authorization", authorization_);
        }
        req.peer_name = peer_name_;
    }

    const std::shared_ptr<ServicePool> pool_;
    const std::string authorization_;
    const std::string peer_name_;
};

std::shared_ptr<workflow::ServiceClient> ServicePool::As(std::string bearer_token, std::string peer_name) {
    return std::make_shared<HttpServiceClient>(shared_from_this(), std::move(bearer_token),
                                               std::move(peer_name));
}

class Reader final : public HttpReader {
public:
    Reader(boost::asio::io_context& io, std::string host, uint16_t port, std::string service,
           std::string token, std::shared_ptr<http::TlsContext> tls, std::string server_name)
        : service_(std::move(service)),
          authorization_(token.empty() ? "" : "Bearer " + token),
          client_(http::MakeClient(
              io, Options(std::move(host), port, 2, std::move(tls), std::move(server_name)))) {}

    void Get(std::string target, SteadyTime deadline,
             std::function<void(Result<std::string>)> done) override {
        http::Request req;
        req.method = "GET";
        req.target = std::move(target);
        if (!authorization_.empty()) {
            req.headers.emplace_back("authorization", authorization_);
        }
        client_->Send(std::move(req), deadline,
                      [service = service_, done = std::move(done)](Result<http::Response> res) {
                          if (res && res->status / 100 == 2) {
                              return done(std::move(res->body));
                          }
                          done(Failed(service, res));
                      });
    }

private:
    std::string service_;
    std::string authorization_;
    std::unique_ptr<http::Client> client_;
};

}  // namespace

std::shared_ptr<HttpReader> MakeHttpReader(boost::asio::io_context& io, std::string host, uint16_t port,
                                           std::string service_name, std::string bearer_token,
                                           std::shared_ptr<http::TlsContext> tls, std::string server_name) {
    return std::make_shared<Reader>(io, std::move(host), port, std::move(service_name),
                                    std::move(bearer_token), std::move(tls), std::move(server_name));
}

std::shared_ptr<workflow::ServiceClient> MakeHttpServiceClient(boost::asio::io_context& io, std::string host,
                                                               uint16_t port, std::string service_name,
                                                               size_t max_connections,
                                                               std::string bearer_token,
                                                               std::shared_ptr<http::TlsContext> tls,
                                                               std::string server_name) {
    auto pool = std::make_shared<ServicePool>(
        io, Options(std::move(host), port, max_connections, std::move(tls), std::move(server_name)),
        std::move(service_name));
    return pool->As(std::move(bearer_token), "");
}

std::shared_ptr<SharedHttpService> MakeSharedHttpService(boost::asio::io_context& io, std::string host,
                                                         uint16_t port, std::string service_name,
                                                         size_t max_connections,
                                                         std::shared_ptr<http::TlsContext> tls) {
    http::ClientOptions o = Options(std::move(host), port, max_connections, std::move(tls), "");
    o.name_per_request = true;
    return std::make_shared<ServicePool>(io, std::move(o), std::move(service_name));
}

}  // namespace cogs::services::kit
