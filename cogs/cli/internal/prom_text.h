// A reader of the Prometheus text exposition format 0.0.4 — what every cogs process serves on
// GET /metrics (docs/metrics.md) — for `cogs top`. Internal to cogs/cli; pure functions, safe from
// any thread.
//
// It reads what the format allows: `# HELP` / `# TYPE` lines (the type is kept per family, other
// comments are skipped), samples `name{label="value",...} value [timestamp]` with label values
// escaped as `\\`, `\"` and `\n`, optional spaces around labels and a trailing comma, and the values
// `+Inf`, `-Inf` and `NaN`. Timestamps are read and dropped (cogs never sends them).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace cogs::cli::prom {

using Labels = std::map<std::string, std::string>;

struct Sample {
    std::string name;  // the series name as written: "x_bucket", "x_sum", "x_count" for a histogram
    Labels labels{};
    double value = 0;
};

// One scrape: every sample in the order of the text, and the declared type of each family
// ("counter", "gauge", "histogram", "summary", "untyped").
struct Exposition {
    std::vector<Sample> samples{};
    std::map<std::string, std::string> types{};

    // The samples named `name` whose labels include every pair of `match`.
    std::vector<const Sample*> Select(std::string_view name, const Labels& match = {}) const;
    // The sum of those samples' values (0 if there are none).
    double Sum(std::string_view name, const Labels& match = {}) const;
    // Whether any sample is named `name`.
    bool Has(std::string_view name) const;
};

// Parses a whole exposition. An error names the line ("line 12: ...") and what is wrong with it.
tl::expected<Exposition, std::string> ParseText(std::string_view text);

// A sample value as the format writes it ("1.5", "+Inf", "-Inf", "NaN", "1e-3"), or nullopt.
std::optional<double> ParseValue(std::string_view s);

}  // namespace cogs::cli::prom
