// GET /v1/servers/{id}/console[?length=N]: a server's console log — what its instance wrote to
// stdout and stderr — as Nova's os-getConsoleOutput shows it. cogsd keeps no copy: it asks the
// agent of the server's host, `GET /v1/instances/{id}/console` on the URL the host registered with
// (that host's agent token as bearer), and passes the text on.
//
//   answer   200 {"console": {"server_id", "host" (null when not placed), "output"}}
//   length   optional, an integer 1..10000: only the last N lines of the output (a last line without
//            its newline counts); anything else 400 naming `length`; any other parameter 400
//   visible  as GET /v1/servers/{id}: a server of another project (or none) is 404; any role reads
//   no host  (not placed yet, or a build that failed before placement) → "" at once
//   not on the agent (404: the create has not reached it yet, or it was deleted meanwhile) → ""
//   host down (its lease ran out), its agent unreachable, late (5 s) or failing (5xx) → 503
//            `unavailable`, retryable, naming the host; an answer over 1 MiB or not the agent's shape
//            → 500 (`internal`). A 503 carries Retry-After: 1 (the API's errors do)
//
// Bounded: the agent answers at most the last 64 KiB of the log (cogs/services/compute README,
// "Console"); one HTTP client per agent URL (4 connections), so as many clients as hosts (beyond
// 256, those of URLs no host has any more are dropped).
//
// Threading: the io thread (the model and the host monitor live there); the answer comes later,
// from the client's callback on that same thread.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "cogs/cloud/resources/common.h"
#include "cogs/services/compute/router.h"

namespace cogs::http {
class Client;
}

namespace cogs::cloud {

class Consoles {
public:
    // `hosts` says where a host's agent is and whether the host is down (as the compute router).
    Consoles(Context& ctx, services::compute::HostLookup hosts, Duration deadline = std::chrono::seconds(5));
    ~Consoles();

    void Show(Call call);

    // The last `lines` lines of `text` (all of it when it has no more).
    static std::string LastLines(const std::string& text, int64_t lines);

private:
    // The agent at `url` (host:port): over TLS (CloudOptions::service_tls) a read goes only to a
    // certificate that names the read's host (its Request::peer_name).
    http::Client& ClientFor(const std::string& url, const std::string& host, uint16_t port);

    Context& ctx_;
    services::compute::HostLookup hosts_;
    Duration deadline_;
    std::map<std::string, std::unique_ptr<http::Client>> clients_;  // by agent URL
};

}  // namespace cogs::cloud
