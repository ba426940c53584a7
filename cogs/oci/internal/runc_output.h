// Reading what runc printed: its stdout (the state JSON of `state` and `list`) and its stderr (log
// lines, JSON with --log-format json) arrive interleaved in one text (runtime::RunCommand captures
// both), so the text is read as a sequence of JSON values and each is told apart by its shape.
// Pure functions, tested without runc (runc_test.cc); fuzzable.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/oci/runc.h"

namespace cogs::oci::internal {

// runc's error messages in `output` (log lines of level error, fatal or panic), joined by "; "; if
// there are none, the output's non-JSON text (trimmed, at most 500 characters); "" if none either.
std::string RuncErrorMessage(std::string_view output);

// The state object of `runc state`. Errors: kUnavailable if the output holds none or a malformed one.
Result<RuncState> ParseState(std::string_view output);

// The array (or null) of `runc list --format json`. Errors: kUnavailable as ParseState.
Result<std::vector<RuncState>> ParseList(std::string_view output);

// "running" -> kRunning ...; kUnavailable for a status this runc does not know.
Result<RuncStatus> ParseRuncStatus(std::string_view status);

}  // namespace cogs::oci::internal
