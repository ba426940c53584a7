#include "cogs/cli/internal/invocation.h"

#include <cstdlib>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/cli/internal/output.h"

namespace cogs::cli {

using namespace std::chrono_literals;

std::optional<Duration> ParseDuration(const std::string& s) {
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    const std::string unit = s.substr(pos);
    double ms;
    if (unit.empty() || unit == "s") {
        ms = v * 1000;
    } else if (unit == "ms") {
        ms = v;
    } else if (unit == "m") {
        ms = v * 60'000;
    } else if (unit == "h") {
        ms = v * 3'600'000;
    } else {
        return std::nullopt;
    }
    if (ms <= 0) {
        return std::nullopt;
    }
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

Invocation::Invocation(const CliIo& io)
    : out_(io.out ? *io.out : std::cout),
      err_(io.err ? *io.err : std::cerr),
      in_(io.in ? *io.in : std::cin),
      getenv_(io.getenv ? io.getenv : [](const std::string& name) -> std::optional<std::string> {
          const char* v = std::getenv(name.c_str());
          return v ? std::optional<std::string>(v) : std::nullopt;
      }),
      stop_(io.stop) {}

Invocation::~Invocation() = default;

ApiClient* Invocation::Api() {
    if (api_ || !api_error_.empty()) {
        return api_.get();
    }
    auto settings = ResolveSettings(options.url, options.token, options.config, getenv_);
    if (!settings) {
        api_error_ = settings.error();
        return nullptr;
    }
    auto endpoint = ParseUrl(settings->url);
    if (!endpoint) {
        api_error_ = endpoint.error();
        return nullptr;
    }
    auto timeout = ParseDuration(options.timeout);
    if (!timeout) {
        api_error_ = fmt::format("--timeout: '{}' is not a duration (e.g. 30s, 500ms, 2m)", options.timeout);
        return nullptr;
    }
    api_ = std::make_unique<ApiClient>(*endpoint, settings->token, *timeout,
                                       options.ca_file.empty() ? settings->ca_file : options.ca_file,
                                       options.client_cert, options.client_key);
    return api_.get();
}

int Invocation::FailSettings() { return Fail(api_error_); }

int Invocation::Fail(const std::string& message) {
    err_ << "error: " << message << "\n";
    return 1;
}

int Invocation::Usage(const std::string& message) {
    err_ << "error: " << message << "\n";
    return 2;
}

int Invocation::Fail(const ApiFailure& f) {
    err_ << fmt::format("error: {} ({})\n", Printable(f.message), Printable(f.code));
    const json::object* details = f.details.if_object();
    if (details && f.code == "quota_exceeded" && details->contains("resource") &&
        details->contains("limit")) {
        err_ << fmt::format("quota: {} limit {}, in use {}, requested {}\n", Cell(*details, "resource"),
                            Cell(*details, "limit"), Cell(*details, "in_use"), Cell(*details, "requested"));
    } else if (details && details->contains("field")) {
        err_ << fmt::format("field: {}\n", Cell(*details, "field"));
    }
    if (f.status == 401) {
        err_ << "hint: the API did not accept the token: set COGS_TOKEN (or --token, or `token:` in the "
                "config "
                "file) to a valid, unrevoked token; `cogs dev` prints the admin token\n";
    } else if (f.status == 403 && f.code != "quota_exceeded") {
        err_ << "hint: this token's role does not allow that (readers only read, members act in their own "
                "project, admins do everything); `cogs whoami` shows the role\n";
    } else if (f.status == 0 && f.code == "unavailable") {
        err_
            << "hint: is cogsd running? start a local cloud with `cogs dev`, or point COGS_URL (or --url) at "
               "the API\n";
    }
    return 1;
}

void Invocation::PrintObject(const json::value& reply) {
    out_ << (Json() ? PrettyJson(reply) : KeyValueTable(Unwrap(reply)));
}

ApiResult<json::value> Invocation::Follow(const WaitTarget& target) {
    WaitOptions wait;
    wait.limit = ParseDuration(options.wait_timeout).value_or(10min);
    return cli::Follow(*Api(), target, err_, wait);
}

CLI::App* Invocation::Leaf(CLI::App* parent, const std::string& name, const std::string& help,
                           std::function<int()> body) {
    CLI::App* c = parent->add_subcommand(name, help);
    c->callback([this, body = std::move(body)]() { Choose(body); });
    return c;
}

int Invocation::RunAction() {
    const int rc = action_();
    if (options.trace && api_) {
        err_ << "trace: " << api_->trace_id() << "\n";
    }
    return rc;
}

}  // namespace cogs::cli
