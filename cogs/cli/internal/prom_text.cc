#include "cogs/cli/internal/prom_text.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

namespace cogs::cli::prom {
namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// A cursor over one line.
struct Line {
    std::string_view s;
    size_t i = 0;

    bool Done() const { return i >= s.size(); }
    char Peek() const { return i < s.size() ? s[i] : '\0'; }
    void SkipBlanks() {
        while (i < s.size() && IsBlank(s[i])) {
            ++i;
        }
    }
    std::string_view Name() {
        const size_t start = i;
        if (i < s.size() && IsNameStart(s[i])) {
            ++i;
            while (i < s.size() && IsNameChar(s[i])) {
                ++i;
            }
        }
        return s.substr(start, i - start);
    }
    std::string_view Word() {
        const size_t start = i;
        while (i < s.size() && !IsBlank(s[i])) {
            ++i;
        }
        return s.substr(start, i - start);
    }
};

// The `{...}` after a name; the cursor is on the '{'.
tl::expected<Labels, std::string> ParseLabels(Line& l) {
    Labels labels;
    ++l.i;  // '{'
    for (;;) {
        l.SkipBlanks();
        if (l.Peek() == '}') {
            ++l.i;
            return labels;
        }
        const std::string name(l.Name());
        if (name.empty()) {
            return tl::unexpected(fmt::format("a label name expected at column {}", l.i + 1));
        }
        l.SkipBlanks();
        if (l.Peek() != '=') {
            return tl::unexpected(fmt::format("'=' expected after label '{}'", name));
        }
        ++l.i;
        l.SkipBlanks();
        if (l.Peek() != '"') {
            return tl::unexpected(fmt::format("a quoted value expected for label '{}'", name));
        }
        ++l.i;
        std::string value;
        for (;;) {
            if (l.Done()) {
                return tl::unexpected(fmt::format("unterminated value of label '{}'", name));
            }
            const char c = l.s[l.i++];
            if (c == '"') {
                break;
            }
            if (c != '\\') {
                value += c;
                continue;
            }
            if (l.Done()) {
                return tl::unexpected(fmt::format("unterminated value of label '{}'", name));
            }
            const char e = l.s[l.i++];
            if (e == 'n') {
                value += '\n';
            } else if (e == '\\' || e == '"') {
                value += e;
            } else {
                return tl::unexpected(fmt::format("bad escape '\\{}' in label '{}'", e, name));
            }
        }
        if (!labels.emplace(name, std::move(value)).second) {
            return tl::unexpected(fmt::format("label '{}' given twice", name));
        }
        l.SkipBlanks();
        if (l.Peek() == ',') {
            ++l.i;
        } else if (l.Peek() != '}') {
            return tl::unexpected(fmt::format("',' or '}}' expected after label '{}'", name));
        }
    }
}

}  // namespace

std::optional<double> ParseValue(std::string_view s) {
    if (s == "+Inf" || s == "Inf") {
        return std::numeric_limits<double>::infinity();
    }
    if (s == "-Inf") {
        return -std::numeric_limits<double>::infinity();
    }
    if (s == "NaN") {
        return std::numeric_limits<double>::quiet_NaN();
    }
    if (s.empty()) {
        return std::nullopt;
    }
    // strtod reads "inf"/"nan" spellings the format does not allow; digits, signs, '.', 'e' only.
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E')) {
            return std::nullopt;
        }
    }
    const std::string z(s);
    char* end = nullptr;
    const double v = std::strtod(z.c_str(), &end);
    if (end != z.c_str() + z.size()) {
        return std::nullopt;
    }
    return v;
}

tl::expected<Exposition, std::string> ParseText(std::string_view text) {
    Exposition x;
    size_t line_no = 0;
    for (size_t pos = 0; pos < text.size();) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) {
            eol = text.size();
        }
        Line l{text.substr(pos, eol - pos)};
        pos = eol + 1;
        ++line_no;
        if (!l.s.empty() && l.s.back() == '\r') {
            l.s.remove_suffix(1);
        }
        auto fail = [&](const std::string& why) {
            return tl::unexpected(fmt::format("line {}: {}", line_no, why));
        };
        l.SkipBlanks();
        if (l.Done()) {
            continue;
        }
        if (l.Peek() == '#') {
            ++l.i;
            l.SkipBlanks();
            const std::string_view keyword = l.Word();
            if (keyword != "TYPE") {
                continue;  // HELP and free comments say nothing `top` needs
            }
            l.SkipBlanks();
            const std::string family(l.Name());
            l.SkipBlanks();
            const std::string_view type = l.Word();
            if (family.empty() || (type != "counter" && type != "gauge" && type != "histogram" &&
                                   type != "summary" && type != "untyped")) {
                return fail(
                    "a TYPE line needs a metric name and one of counter, gauge, histogram, "
                    "summary, untyped");
            }
            x.types[family] = std::string(type);
            continue;
        }
        Sample sample;
        sample.name = std::string(l.Name());
        if (sample.name.empty()) {
            return fail(fmt::format("a metric name expected, found '{}'", l.s.substr(l.i, 20)));
        }
        l.SkipBlanks();
        if (l.Peek() == '{') {
            auto labels = ParseLabels(l);
            if (!labels) {
                return fail(labels.error());
            }
            sample.labels = std::move(*labels);
        }
        l.SkipBlanks();
        const std::string_view value = l.Word();
        const auto v = ParseValue(value);
        if (!v) {
            return fail(fmt::format("'{}' is not a sample value", value));
        }
        sample.value = *v;
        l.SkipBlanks();
        if (!l.Done()) {
            const std::string_view ts = l.Word();
            l.SkipBlanks();
            if (!ParseValue(ts) || !l.Done()) {
                return fail(fmt::format("unexpected '{}' after the value", l.s.substr(l.i - ts.size())));
            }
        }
        x.samples.push_back(std::move(sample));
    }
    return x;
}

std::vector<const Sample*> Exposition::Select(std::string_view name, const Labels& match) const {
    std::vector<const Sample*> out;
    for (const auto& s : samples) {
        if (s.name != name) {
            continue;
        }
        bool ok = true;
        for (const auto& [k, v] : match) {
            auto it = s.labels.find(k);
            if (it == s.labels.end() || it->second != v) {
                ok = false;
                break;
            }
        }
        if (ok) {
            out.push_back(&s);
        }
    }
    return out;
}

double Exposition::Sum(std::string_view name, const Labels& match) const {
    double sum = 0;
    for (const Sample* s : Select(name, match)) {
        sum += s->value;
    }
    return sum;
}

bool Exposition::Has(std::string_view name) const {
    for (const auto& s : samples) {
        if (s.name == name) {
            return true;
        }
    }
    return false;
}

}  // namespace cogs::cli::prom
