// The in-process transport to a SimService (or any kit::ActionTarget): a workflow::ServiceClient that
// calls the service directly, for tests and benchmarks that want the engine and the service in one
// process.
#pragma once

#include <memory>
#include <string>

#include "cogs/services/sim/sim_service.h"
#include "cogs/workflow/service.h"

namespace cogs::services::sim {

// A client for `service` under the name `service_name` (used in messages). It lives on the
// service's io_context and thread; `service` must outlive it and every call made through it.
//
// Invoke and Status enforce call.deadline with a timer per call: if the service has not answered by
// then (a hang, a lost reply, latency beyond the deadline), the callback gets kDeadlineExceeded
// (retryable) and a late answer is dropped. Exactly one callback per call, never inline. Cheap: a
// call costs one small allocation and one timer, and a hanging call holds nothing else.
std::shared_ptr<workflow::ServiceClient> MakeSimClient(SimService& service, std::string service_name);

// The same transport to any service living on `io` (a kit::DomainService in process: a real domain
// behind the engine in a test), with the same deadline and callback rules.
std::shared_ptr<workflow::ServiceClient> MakeInProcessClient(boost::asio::io_context& io,
                                                             kit::ActionTarget& service,
                                                             std::string service_name);

}  // namespace cogs::services::sim
