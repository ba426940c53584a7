// Rendering API answers for a terminal: aligned tables, key/value views, indented JSON, durations.
// Internal to cogs/cli; pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

namespace cogs::cli {

namespace json = boost::json;

// Columns aligned with two spaces between them, a header row first; the last column is not padded.
class Table {
public:
    explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
    void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
    size_t rows() const { return rows_.size(); }
    std::string Render() const;

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

// The member at a dotted path ("fault.message"), or nullptr.
const json::value* Field(const json::object& o, std::string_view dotted);

// One cell: strings as they are, null/absent as "", scalars printed, arrays of scalars joined with
// ",", anything else as compact JSON.
std::string Cell(const json::value* v);
inline std::string Cell(const json::object& o, std::string_view dotted) { return Cell(Field(o, dotted)); }

// A FIELD / VALUE table of every member (nested objects flattened as "used.vcpus").
std::string KeyValueTable(const json::object& o);

// JSON indented by two spaces, with a final newline.
std::string PrettyJson(const json::value& v);

// "850ms", "3.2s", "4m05s", "2h10m".
std::string FormatDurationMs(int64_t ms);

}  // namespace cogs::cli
