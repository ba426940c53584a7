#include "cogs/cli/internal/service_check_wire.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"

namespace cogs::cli::service_check {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kUnique = "${unique}";
constexpr std::string_view kOutputRef = "${output.";
constexpr size_t kSnippet = 160;  // how much of a body or an inventory a finding quotes

// What the placeholders of one step stand for.
struct Bindings {
    std::string unique;
    const json::value* output = nullptr;  // the do's output; null: none (yet)
};

// The output's member at dotted `path`, or nullptr.
const json::value* OutputAt(const json::value* output, std::string_view path) {
    const json::value* v = output;
    while (v != nullptr && !path.empty()) {
        const size_t dot = path.find('.');
        const std::string_view name = path.substr(0, dot);
        v = v->is_object() ? v->as_object().if_contains(name) : nullptr;
        path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    }
    return v;
}

std::string TextOf(const json::value* v) {
    if (v == nullptr || v->is_null()) {
        return "";
    }
    return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

// A string with every placeholder replaced: a string that is exactly "${output.F}" becomes that value.
json::value ExpandString(std::string_view s, const Bindings& b) {
    if (s.starts_with(kOutputRef) && s.ends_with('}') && s.find('}') == s.size() - 1) {
        const json::value* v =
            OutputAt(b.output, s.substr(kOutputRef.size(), s.size() - kOutputRef.size() - 1));
        return v != nullptr ? *v : json::value(nullptr);
    }
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (s.substr(i).starts_with(kUnique)) {
            out += b.unique;
            i += kUnique.size();
        } else if (const size_t close = s.find('}', i);
                   s.substr(i).starts_with(kOutputRef) && close != std::string_view::npos) {
            out += TextOf(OutputAt(b.output, s.substr(i + kOutputRef.size(), close - i - kOutputRef.size())));
            i = close + 1;
        } else {
            out += s[i++];
        }
    }
    return json::value(std::move(out));
}

json::value ExpandWith(const json::value& v, const Bindings& b) {
    switch (v.kind()) {
        case json::kind::string: return ExpandString(v.as_string(), b);
        case json::kind::array: {
            json::array a;
            for (const json::value& item : v.as_array()) {
                a.push_back(ExpandWith(item, b));
            }
            return a;
        }
        case json::kind::object: {
            json::object o;
            for (const auto& [k, item] : v.as_object()) {
                o[k] = ExpandWith(item, b);
            }
            return o;
        }
        default: return v;
    }
}

}  // namespace

json::value Expand(const json::value& input, std::string_view unique, const json::value* output) {
    return ExpandWith(input, Bindings{std::string(unique), output});
}

std::string Snippet(std::string_view text) {
    const std::string shown = Printable(text.substr(0, kSnippet));
    return text.size() > kSnippet ? shown + "..." : shown;
}

std::string FirstDifference(const json::value& a, const json::value& b, const std::string& path) {
    const std::string at = path.empty() ? std::string("(top)") : path;
    if (a == b) {
        return "";
    }
    if (a.is_object() && b.is_object()) {
        for (const auto& [k, va] : a.as_object()) {
            const std::string p = path.empty() ? std::string(k) : path + "." + std::string(k);
            const json::value* vb = b.as_object().if_contains(k);
            if (vb == nullptr) {
                return fmt::format("{}: {} vs absent", p, Snippet(json::serialize(va)));
            }
            if (std::string d = FirstDifference(va, *vb, p); !d.empty()) {
                return d;
            }
        }
        for (const auto& [k, vb] : b.as_object()) {
            if (!a.as_object().contains(k)) {
                const std::string p = path.empty() ? std::string(k) : path + "." + std::string(k);
                return fmt::format("{}: absent vs {}", p, Snippet(json::serialize(vb)));
            }
        }
    }
    if (a.is_array() && b.is_array()) {
        const auto& x = a.as_array();
        const auto& y = b.as_array();
        for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
            if (std::string d = FirstDifference(x[i], y[i], fmt::format("{}[{}]", path, i)); !d.empty()) {
                return d;
            }
        }
        return fmt::format("{}: {} items vs {}", at, x.size(), y.size());
    }
    return fmt::format("{}: {} vs {}", at, Snippet(json::serialize(a)), Snippet(json::serialize(b)));
}

std::string Seen(const Answer& a) {
    return fmt::format("{} answered {} {}", a.request, a.status, Snippet(a.body));
}

// ---- the session --------------------------------------------------------------------------------

Result<std::unique_ptr<Session>> Session::Open(const std::string& url, std::string token, Duration timeout,
                                               const std::string& ca_file, const std::string& client_cert,
                                               const std::string& client_key) {
    auto endpoint = ParseUrl(url);
    if (!endpoint) {
        return MakeError(ErrorCode::kInvalidArgument, endpoint.error());
    }
    http::ClientOptions co;
    co.host = endpoint->host;
    co.port = endpoint->port;
    co.max_connections = 4;
    if (endpoint->tls) {
        if (ca_file.empty()) {
            return MakeError(ErrorCode::kInvalidArgument,
                             fmt::format("{} is https: give --ca-file (or COGS_CACERT)", endpoint->url));
        }
        COGS_ASSIGN_OR_RETURN(co.tls, http::MakeClientTls(http::TlsFiles{client_cert, client_key, ca_file}));
    }
    auto io = std::make_unique<boost::asio::io_context>(1);
    auto client = http::MakeClient(*io, co);
    return std::unique_ptr<Session>(
        new Session(std::move(*endpoint), std::move(io), std::move(client), std::move(token), timeout));
}

Session::Session(Endpoint endpoint, std::unique_ptr<boost::asio::io_context> io,
                 std::unique_ptr<http::Client> client, std::string token, Duration timeout)
    : endpoint_(std::move(endpoint)),
      io_(std::move(io)),
      client_(std::move(client)),
      token_(std::move(token)),
      wrong_token_("cogs-check-wrong-" + RandomHex(16)),
      timeout_(timeout),
      trace_id_(RandomHex(16)) {}

Session::~Session() {
    client_.reset();
    io_->restart();
    io_->poll();  // the cancellations of anything outstanding, before the io_context goes
}

Result<Answer> Session::Healthz() { return Send("GET", "/healthz", Auth::kNone, {}, "", "GET /healthz"); }

Result<Answer> Session::Post(const Call& c) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!c.key.empty()) {
        headers.emplace_back("idempotency-key", c.key);
    }
    const int64_t budget =
        c.deadline_ms.value_or(std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count());
    headers.emplace_back("x-cogs-deadline-ms", std::to_string(budget));
    headers.emplace_back("content-type", "application/json");
    std::string label = fmt::format("POST /v1/actions/{}", c.action);
    if (!c.note.empty()) {
        label += " " + c.note;
    }
    if (!c.key.empty()) {
        label += fmt::format(" (key {})", c.key);
    }
    return Send("POST", "/v1/actions/" + http::UrlEncode(c.action), c.auth, std::move(headers), c.body,
                std::move(label));
}

Result<Answer> Session::Status(const std::string& key) {
    return Send("GET", "/v1/actions/status?key=" + http::UrlEncode(key), Auth::kToken, {}, "",
                "GET /v1/actions/status?key=" + key);
}

Result<Answer> Session::Inventory(Auth auth) {
    return Send("GET", "/v1/inventory", auth, {}, "",
                auth == Auth::kNone ? "GET /v1/inventory without Authorization" : "GET /v1/inventory");
}

Result<Answer> Session::Perform(const Call& c) {
    COGS_ASSIGN_OR_RETURN(Answer a, Post(c));
    const SteadyTime until = SteadyClock::now() + timeout_;
    Duration pause = 20ms;
    while (a.status == 202) {
        const json::object* o = a.json.if_object();
        const json::value* accepted = o != nullptr ? o->if_contains("accepted") : nullptr;
        if (accepted == nullptr || !accepted->is_bool() || !accepted->as_bool()) {
            return MakeError(
                ErrorCode::kFailedPrecondition,
                fmt::format("{}; the protocol requires 202 to carry {{\"accepted\": true}}", Seen(a)));
        }
        if (SteadyClock::now() + pause >= until) {
            return MakeError(
                ErrorCode::kFailedPrecondition,
                fmt::format("{} still after {}s (--timeout-s); a long action must end, its status "
                            "then 200 {{\"output\": ...}}",
                            Seen(a), std::chrono::duration_cast<std::chrono::seconds>(timeout_).count()));
        }
        std::this_thread::sleep_for(pause);
        pause = std::min<Duration>(pause * 2, 500ms);
        COGS_ASSIGN_OR_RETURN(a, Status(c.key));
    }
    return a;
}

Result<Answer> Session::Send(std::string method, std::string target, Auth auth,
                             std::vector<std::pair<std::string, std::string>> headers, std::string body,
                             std::string label) {
    http::Request req;
    req.method = std::move(method);
    req.target = endpoint_.prefix + target;
    req.headers = std::move(headers);
    req.body = std::move(body);
    req.headers.emplace_back("accept", "application/json");
    req.headers.emplace_back("traceparent", fmt::format("00-{}-{}-01", trace_id_, RandomHex(8)));
    if (auth != Auth::kNone) {
        req.headers.emplace_back("authorization", "Bearer " + (auth == Auth::kToken ? token_ : wrong_token_));
    }
    std::optional<Result<http::Response>> done;
    client_->Send(std::move(req), SteadyClock::now() + timeout_,
                  [&done](Result<http::Response> r) { done = std::move(r); });
    io_->restart();
    while (!done) {
        io_->run_one();
    }
    if (!*done) {
        const Error& e = done->error();
        const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout_).count();
        return MakeError(e.code, e.code == ErrorCode::kDeadlineExceeded
                                     ? fmt::format("{}: no answer within {}s (--timeout-s)", label, seconds)
                                     : fmt::format("{}: no answer: {}", label, e.message));
    }
    const http::Response& res = **done;
    Answer a{std::move(label), res.status, res.body, res.Header("www-authenticate")};
    boost::system::error_code ec;
    a.json = json::parse(a.body, ec);
    if (ec) {
        a.json = nullptr;
    }
    if (a.status >= 400) {
        errors_.push_back(a);
    }
    return a;
}

}  // namespace cogs::cli::service_check
