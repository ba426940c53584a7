// Rendering API answers for a terminal: aligned tables, key/value views, indented JSON, durations.
// Internal to cogs/cli; pure functions, safe from any thread.
//
// Nothing from the API reaches the terminal raw: a control character in a name or a message (ESC,
// BEL, NUL, newline, C1 CSI, ...) could clear or rewrite the operator's screen, so tables, cells
// and error lines show it escaped (Printable). cogsd refuses them in what it takes; this also
// covers what it took before, and any other server the CLI is pointed at.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

namespace cogs::cli {

namespace json = boost::json;

// `s` with every control character (wire::ControlAt: C0, DEL, C1) shown as an escape: "\x1b",
// "\x00", "\n" as "\x0a", C1 as "\u009b". Everything else unchanged.
std::string Printable(std::string_view s);

// Columns aligned with two spaces between them, a header row first; the last column is not padded.
// Every cell is shown Printable.
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

// One cell, Printable: strings as they are, null/absent as "", scalars printed, arrays of scalars
// joined with ",", anything else as compact JSON.
std::string Cell(const json::value* v);
inline std::string Cell(const json::object& o, std::string_view dotted) { return Cell(Field(o, dotted)); }

// A FIELD / VALUE table of every member (nested objects flattened as "used.vcpus").
std::string KeyValueTable(const json::object& o);

// JSON indented by two spaces, with a final newline.
std::string PrettyJson(const json::value& v);

// "850ms", "3.2s", "4m05s", "2h10m".
std::string FormatDurationMs(int64_t ms);

}  // namespace cogs::cli
