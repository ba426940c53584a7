#include "cogs/cli/internal/output.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/wire/input.h"

namespace cogs::cli {

std::string Printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = wire::ControlAt(s.substr(i));
        if (n == 0) {
            out += s[i++];
        } else if (n == 1) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[i]));
            i += 1;
        } else {
            out += fmt::format("\\u{:04x}", static_cast<unsigned char>(s[i + 1]));
            i += n;
        }
    }
    return out;
}

std::string Table::Render() const {
    auto printable = [](const std::vector<std::string>& row) {
        std::vector<std::string> shown;
        for (const auto& c : row) {
            shown.push_back(Printable(c));
        }
        return shown;
    };
    const std::vector<std::string> headers = printable(headers_);
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : rows_) {
        rows.push_back(printable(r));
    }
    std::vector<size_t> width(headers.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
        for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
            width[i] = std::max(width[i], row[i].size());
        }
    };
    measure(headers);
    for (const auto& r : rows) {
        measure(r);
    }
    std::string out;
    auto line = [&](const std::vector<std::string>& row) {
        std::string l;
        for (size_t i = 0; i < width.size(); ++i) {
            const std::string& c = i < row.size() ? row[i] : std::string();
            l += c;
            if (i + 1 < width.size()) {
                l.append(width[i] - c.size() + 2, ' ');
            }
        }
        while (!l.empty() && l.back() == ' ') {
            l.pop_back();
        }
        out += l;
        out += '\n';
    };
    line(headers);
    for (const auto& r : rows) {
        line(r);
    }
    return out;
}

const json::value* Field(const json::object& o, std::string_view dotted) {
    const json::object* cur = &o;
    for (;;) {
        const auto dot = dotted.find('.');
        const json::value* v = cur->if_contains(dotted.substr(0, dot));
        if (v == nullptr || dot == std::string_view::npos) {
            return v;
        }
        if (!v->is_object()) {
            return nullptr;
        }
        cur = &v->as_object();
        dotted = dotted.substr(dot + 1);
    }
}

std::string Cell(const json::value* v) {
    if (v == nullptr || v->is_null()) {
        return "";
    }
    if (v->is_string()) {
        return Printable(v->as_string());
    }
    if (v->is_array()) {
        std::string out;
        for (const auto& e : v->as_array()) {
            if (e.is_object() || e.is_array()) {
                return Printable(json::serialize(*v));
            }
            if (!out.empty()) {
                out += ",";
            }
            out += Cell(&e);
        }
        return out;
    }
    return Printable(json::serialize(*v));
}

namespace {

void Flatten(const json::object& o, const std::string& prefix, Table& t) {
    for (const auto& [key, value] : o) {
        const std::string name = prefix + std::string(key);
        if (value.is_object() && !value.as_object().empty()) {
            Flatten(value.as_object(), name + ".", t);
        } else {
            t.AddRow({name, Cell(&value)});
        }
    }
}

void Pretty(const json::value& v, int indent, std::string& out) {
    const std::string pad(static_cast<size_t>(indent + 2), ' ');
    if (v.is_object() && !v.as_object().empty()) {
        out += "{\n";
        bool first = true;
        for (const auto& [key, value] : v.as_object()) {
            if (!first) {
                out += ",\n";
            }
            first = false;
            out += pad + json::serialize(json::value(key)) + ": ";
            Pretty(value, indent + 2, out);
        }
        out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "}";
    } else if (v.is_array() && !v.as_array().empty()) {
        out += "[\n";
        bool first = true;
        for (const auto& e : v.as_array()) {
            if (!first) {
                out += ",\n";
            }
            first = false;
            out += pad;
            Pretty(e, indent + 2, out);
        }
        out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "]";
    } else {
        out += json::serialize(v);
    }
}

}  // namespace

std::string KeyValueTable(const json::object& o) {
    Table t({"FIELD", "VALUE"});
    Flatten(o, "", t);
    return t.Render();
}

std::string PrettyJson(const json::value& v) {
    std::string out;
    Pretty(v, 0, out);
    out += '\n';
    return out;
}

std::string FormatDurationMs(int64_t ms) {
    if (ms < 0) {
        return "-" + FormatDurationMs(-ms);
    }
    if (ms < 1000) {
        return fmt::format("{}ms", ms);
    }
    if (ms < 60'000) {
        return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
    }
    if (ms < 3'600'000) {
        return fmt::format("{}m{:02}s", ms / 60'000, (ms / 1000) % 60);
    }
    return fmt::format("{}h{:02}m", ms / 3'600'000, (ms / 60'000) % 60);
}

}  // namespace cogs::cli
