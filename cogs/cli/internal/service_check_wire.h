// What `cogs service check` (service_check.h) needs besides its checks: the ${...} placeholders of
// --input and --undo-input, where two JSON answers differ (for findings), and the Session that speaks
// to the service. Internal to service_check.cc and its test.
//
// Threading: a Session is used from one thread; it owns an io_context it runs only inside a request.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/cli/internal/api.h"

namespace cogs::cli::service_check {

// ---- placeholders -------------------------------------------------------------------------------

// `input` with every placeholder of its strings replaced: "${unique}" by `unique`; a string that is
// exactly "${output.A.B}" by `output`'s member at that path (any JSON value; null when `output` is
// null or has none), and "${output.A.B}" inside a longer string by its text (a string as it is,
// anything else as JSON, "" when absent). Object keys are kept as they are.
json::value Expand(const json::value& input, std::string_view unique, const json::value* output);

// ---- findings -----------------------------------------------------------------------------------

// `text` with control characters escaped (output.h: Printable), cut to 160 characters and "...".
std::string Snippet(std::string_view text);

// Where `a` and `b` first differ, named from `path`: `networks[0].name: "a" vs "b"`, `things: 1
// items vs 2`, `id: absent vs "x"`; "" when they are equal. Objects compare member by member
// whatever their order (as json::value's ==), arrays position by position.
std::string FirstDifference(const json::value& a, const json::value& b, const std::string& path = "");

// ---- the session --------------------------------------------------------------------------------

enum class Auth { kToken, kNone, kWrong };  // the service's token, none, a wrong one

// One action request.
struct Call {
    std::string action;
    std::string key;  // "": no Idempotency-Key header
    std::string body;
    Auth auth = Auth::kToken;
    std::optional<int64_t> deadline_ms{};  // X-Cogs-Deadline-Ms; nullopt: the session's timeout
    std::string note{};                    // what is special about it ("without Authorization")
};

// An HTTP answer, as the checks judge it.
struct Answer {
    // Who answered, for findings: "POST /v1/actions/create_network without Authorization (key K)".
    std::string request;
    int status = 0;
    std::string body;
    std::string www_authenticate;
    json::value json{};  // the body parsed; null if it is not JSON
};

// "<request> answered <status> <body snippet>".
std::string Seen(const Answer& a);

// A connection pool to one service. Every request carries the deadline `timeout` (an action also
// X-Cogs-Deadline-Ms of the same, unless its Call says otherwise) and `traceparent` with the
// session's trace id. A request that gets no answer is an Error (kUnavailable, kDeadlineExceeded)
// naming it; any HTTP status is an Answer, and every one >= 400 is kept in errors().
class Session {
public:
    // kInvalidArgument for a URL that is not http(s)://HOST[:PORT], an https URL without `ca_file`,
    // or TLS files that cannot be read.
    static Result<std::unique_ptr<Session>> Open(const std::string& url, std::string token, Duration timeout,
                                                 const std::string& ca_file, const std::string& client_cert,
                                                 const std::string& client_key);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    const std::string& url() const { return endpoint_.url; }
    const std::string& trace_id() const { return trace_id_; }
    const std::vector<Answer>& errors() const { return errors_; }

    // GET /healthz, without a token.
    Result<Answer> Healthz();
    // POST /v1/actions/{action}.
    Result<Answer> Post(const Call& c);
    // GET /v1/actions/status?key=.
    Result<Answer> Status(const std::string& key);
    // GET /v1/inventory (kToken or kNone).
    Result<Answer> Inventory(Auth auth);
    // The action to its end: its answer, or for a 202 the answer of its status once that is no longer
    // 202, polled for up to `timeout`. A finding (kFailedPrecondition) for a 202 without {"accepted":
    // true} or one still 202 at the end.
    Result<Answer> Perform(const Call& c);

private:
    Session(Endpoint endpoint, std::unique_ptr<boost::asio::io_context> io,
            std::unique_ptr<http::Client> client, std::string token, Duration timeout);
    Result<Answer> Send(std::string method, std::string target, Auth auth,
                        std::vector<std::pair<std::string, std::string>> headers, std::string body,
                        std::string label);

    Endpoint endpoint_;
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<http::Client> client_;
    std::string token_;
    std::string wrong_token_;
    Duration timeout_;
    std::string trace_id_;
    std::vector<Answer> errors_;
};

}  // namespace cogs::cli::service_check
