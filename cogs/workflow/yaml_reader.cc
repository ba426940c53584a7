// YamlReader (yaml_reader.h).
#include "cogs/workflow/yaml_reader.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <optional>
#include <set>
#include <sstream>

#include "cogs/workflow/internal/template.h"

namespace cogs::workflow {
namespace {

constexpr int kMaxInputDepth = 64;
constexpr std::size_t kMaxInputNodes = 100000;  // aliases can make a small file expand enormously

// JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view s) {
    std::size_t i = 0;
    auto digits = [&] {
        std::size_t start = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            ++i;
        }
        return i - start;
    };
    if (i < s.size() && s[i] == '-') {
        ++i;
    }
    if (i < s.size() && s[i] == '0') {
        ++i;
    } else if (digits() == 0) {
        return false;
    }
    if (i < s.size() && s[i] == '.') {
        ++i;
        if (digits() == 0) {
            return false;
        }
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
            ++i;
        }
        if (digits() == 0) {
            return false;
        }
    }
    return i == s.size();
}

// yaml-cpp 0.7's LoadAll loops forever, allocating, when a document starts with a token that cannot
// start a node (a stray ',' at the top level): the token is never consumed, so every round yields
// another empty document at the same place (jbeder/yaml-cpp#1040, fixed upstream after 0.7). A
// first pass through the event parser spots that stall before LoadAll sees the text.
class StallDetector : public YAML::EventHandler {
public:
    // Where a document started where the previous one did, if one did.
    const std::optional<YAML::Mark>& stall() const { return stall_; }

    void OnDocumentStart(const YAML::Mark& mark) override {
        if (last_ && last_->pos == mark.pos) {
            stall_ = mark;
        }
        last_ = mark;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}

private:
    std::optional<YAML::Mark> last_;
    std::optional<YAML::Mark> stall_;
};

}  // namespace

Status YamlReader::ForEachDocument(const std::string& text,
                                   const std::function<Status(const YAML::Node&)>& load) const {
    try {
        std::istringstream in(text);
        YAML::Parser parser(in);
        StallDetector detector;
        while (parser.HandleNextDocument(detector)) {
            if (const auto& at = detector.stall()) {
                return MakeError(ErrorCode::kInvalidArgument,
                                 At(*at) + ": unexpected text where a document or a value should start");
            }
        }
        for (const YAML::Node& doc : YAML::LoadAll(text)) {
            COGS_TRY(load(doc));
        }
    } catch (const YAML::Exception& e) {
        return MakeError(ErrorCode::kInvalidArgument, At(e.mark) + ": " + e.msg);
    }
    return Ok();
}

Status YamlReader::ForEachItem(const std::string& text, const std::string& list, const std::string& one,
                               const std::function<Status(const YAML::Node&)>& load) const {
    return ForEachDocument(text, [&](const YAML::Node& doc) -> Status {
        if (doc.IsNull()) {
            return Ok();
        }
        if (!doc.IsMap()) {
            return Fail(doc, "want a mapping: '" + list + ":' with a list, or a single " + one);
        }
        const YAML::Node items = doc[list];
        if (!items) {
            return load(doc);
        }
        COGS_TRY(CheckFields(doc, "the document", {list}));
        if (!items.IsSequence()) {
            return Fail(items, "'" + list + "' must be a list");
        }
        for (const YAML::Node& n : items) {
            COGS_TRY(load(n));
        }
        return Ok();
    });
}

std::string YamlReader::At(const YAML::Mark& m) const {
    return m.line < 0 ? source_ : source_ + ":" + std::to_string(m.line + 1);
}

tl::unexpected<Error> YamlReader::Fail(const YAML::Node& n, const std::string& problem) const {
    return MakeError(ErrorCode::kInvalidArgument, At(n) + ": " + problem);
}

Status YamlReader::CheckFields(const YAML::Node& n, const std::string& what,
                               std::initializer_list<std::string_view> known) const {
    if (!n.IsMap()) {
        return Fail(n, what + " must be a mapping");
    }
    std::set<std::string, std::less<>> seen;
    for (const auto& kv : n) {
        const YAML::Node& key = kv.first;
        if (!key.IsScalar()) {
            return Fail(key, what + " has a key that is not a string");
        }
        const std::string& name = key.Scalar();
        if (std::find(known.begin(), known.end(), name) == known.end()) {
            std::string list;
            for (std::string_view k : known) {
                list += (list.empty() ? "" : ", ") + std::string(k);
            }
            return Fail(key, "unknown field '" + name + "' in " + what + " (known: " + list + ")");
        }
        if (!seen.insert(name).second) {
            return Fail(key, "field '" + name + "' given twice in " + what);
        }
    }
    return Ok();
}

Result<std::string> YamlReader::String(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) {
        return Fail(n, what + " must be a string");
    }
    return n.Scalar();
}

Result<std::string> YamlReader::Json(const YAML::Node& n, const std::string& what) const {
    std::string out;
    std::size_t budget = kMaxInputNodes;
    COGS_TRY(ToJson(n, what, 0, budget, out));
    return out;
}

Status YamlReader::ToJson(const YAML::Node& n, const std::string& what, int depth, std::size_t& budget,
                          std::string& out) const {
    if (depth > kMaxInputDepth) {
        return Fail(n, what + " is nested more than " + std::to_string(kMaxInputDepth) + " deep");
    }
    if (budget-- == 0) {
        return Fail(n, what + " has more than " + std::to_string(kMaxInputNodes) + " values");
    }
    if (n.IsNull()) {
        out += "null";
    } else if (n.IsScalar()) {
        const std::string& s = n.Scalar();
        const std::string& tag = n.Tag();
        if (tag == "?") {
            if (s == "true" || s == "True" || s == "TRUE") {
                out += "true";
            } else if (s == "false" || s == "False" || s == "FALSE") {
                out += "false";
            } else if (IsJsonNumber(s)) {
                out += s;
            } else {
                internal::AppendJsonQuoted(out, s);
            }
        } else if (tag == "!" || tag == "tag:yaml.org,2002:str") {
            internal::AppendJsonQuoted(out, s);
        } else {
            return Fail(n, what + ": unsupported YAML tag '" + tag + "'");
        }
    } else if (n.IsSequence()) {
        out += '[';
        bool first = true;
        for (const YAML::Node& item : n) {
            out += first ? "" : ",";
            first = false;
            COGS_TRY(ToJson(item, what, depth + 1, budget, out));
        }
        out += ']';
    } else if (n.IsMap()) {
        out += '{';
        std::set<std::string, std::less<>> keys;
        for (const auto& kv : n) {
            if (!kv.first.IsScalar()) {
                return Fail(kv.first, what + ": keys must be strings");
            }
            if (!keys.insert(kv.first.Scalar()).second) {
                return Fail(kv.first, what + ": key '" + kv.first.Scalar() + "' given twice");
            }
            out += keys.size() == 1 ? "" : ",";
            internal::AppendJsonQuoted(out, kv.first.Scalar());
            out += ':';
            COGS_TRY(ToJson(kv.second, what, depth + 1, budget, out));
        }
        out += '}';
    } else {
        return Fail(n, what + ": unsupported YAML node");
    }
    return Ok();
}

}  // namespace cogs::workflow
