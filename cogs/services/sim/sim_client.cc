#include "cogs/services/sim/sim_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace cogs::services::sim {
namespace {

namespace asio = boost::asio;

// One call in flight. Whichever comes first, the service's answer or the deadline timer, takes
// `done`; the other finds it empty. The timer's pending wait and the service's callback each hold a
// reference, so a call the service drops (a hang) is freed when its timer fires.
struct PendingCall {
    PendingCall(asio::io_context& io, SteadyTime deadline, workflow::ServiceClient::Callback d)
        : timer(io, deadline), done(std::move(d)) {}

    asio::steady_timer timer;
    workflow::ServiceClient::Callback done;
};

class InProcessClient final : public workflow::ServiceClient {
public:
    InProcessClient(asio::io_context& io, kit::ActionTarget& service, std::string name)
        : io_(io), service_(service), name_(std::make_shared<const std::string>(std::move(name))) {}

    void Invoke(workflow::ActionCall call, Callback done) override {
        auto pending = Arm(call, std::move(done));
        service_.Handle(
            std::move(call.action), std::move(call.idempotency_key), std::move(call.input), call.deadline,
            [pending](Result<workflow::ActionReply> reply) { Finish(*pending, std::move(reply)); });
    }

    void Status(workflow::ActionCall call, Callback done) override {
        auto pending = Arm(call, std::move(done));
        service_.Status(std::move(call.idempotency_key), [pending](Result<workflow::ActionReply> reply) {
            Finish(*pending, std::move(reply));
        });
    }

private:
    std::shared_ptr<PendingCall> Arm(const workflow::ActionCall& call, Callback done) const {
        auto pending = std::make_shared<PendingCall>(io_, call.deadline, std::move(done));
        pending->timer.async_wait([pending, name = name_](boost::system::error_code ec) {
            if (ec || !pending->done) {
                return;  // answered (the timer was cancelled)
            }
            auto done = std::move(pending->done);
            pending->done = nullptr;
            done(MakeError(ErrorCode::kDeadlineExceeded, *name + ": no answer before the deadline"));
        });
        return pending;
    }

    // The service's answer: always from a handler of its own (never inline), so `done` may run here.
    static void Finish(PendingCall& pending, Result<workflow::ActionReply> reply) {
        if (!pending.done) {
            return;  // the deadline won
        }
        auto done = std::move(pending.done);
        pending.done = nullptr;
        pending.timer.cancel();
        done(std::move(reply));
    }

    asio::io_context& io_;
    kit::ActionTarget& service_;
    std::shared_ptr<const std::string> name_;  // shared with every pending call, not copied
};

}  // namespace

std::shared_ptr<workflow::ServiceClient> MakeSimClient(SimService& service, std::string service_name) {
    return std::make_shared<InProcessClient>(service.io(), service, std::move(service_name));
}

std::shared_ptr<workflow::ServiceClient> MakeInProcessClient(asio::io_context& io, kit::ActionTarget& service,
                                                             std::string service_name) {
    return std::make_shared<InProcessClient>(io, service, std::move(service_name));
}

}  // namespace cogs::services::sim
