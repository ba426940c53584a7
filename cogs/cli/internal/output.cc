#include "cogs/cli/internal/output.h"

#include <ctime>

#include <fmt/format.h>
#include <boost/json.hpp>

namespace cogs::cli {

std::string Table::Render() const {
    std::vector<size_t> width(headers_.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
        for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
            width[i] = std::max(width[i], row[i].size());
        }
    };
    measure(headers_);
    for (const auto& r : rows_) {
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
    line(headers_);
    for (const auto& r : rows_) {
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
        return std::string(v->as_string());
    }
    if (v->is_array()) {
        std::string out;
        for (const auto& e : v->as_array()) {
            if (e.is_object() || e.is_array()) {
                return json::serialize(*v);
            }
            if (!out.empty()) {
                out += ",";
            }
            out += Cell(&e);
        }
        return out;
    }
    return json::serialize(*v);
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

std::optional<int64_t> ParseRfc3339Ms(std::string_view s) {
    int y, mo, d, h, mi, sec;
    int consumed = 0;
    const std::string str(s);
    if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6 &&
        std::sscanf(str.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    int64_t ms = static_cast<int64_t>(::timegm(&tm)) * 1000;
    size_t i = static_cast<size_t>(consumed);
    if (i < str.size() && str[i] == '.') {
        int64_t frac = 0;
        int digits = 0;
        for (++i; i < str.size() && std::isdigit(static_cast<unsigned char>(str[i])); ++i, ++digits) {
            if (digits < 3) {
                frac = frac * 10 + (str[i] - '0');
            }
        }
        for (; digits < 3; ++digits) {
            frac *= 10;
        }
        ms += frac;
    }
    if (i < str.size() && (str[i] == '+' || str[i] == '-')) {
        int oh = 0, om = 0;
        if (std::sscanf(str.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2) {
            return std::nullopt;
        }
        const int64_t offset = (oh * 60 + om) * 60000LL;
        ms += str[i] == '+' ? -offset : offset;
    }
    return ms;
}

std::string FormatRfc3339Ms(int64_t ms) {
    const int64_t floor_s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    const auto t = static_cast<std::time_t>(floor_s);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms - floor_s * 1000);
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
