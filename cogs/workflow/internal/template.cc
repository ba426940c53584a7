#include "cogs/workflow/internal/template.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <utility>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include "cogs/base/secret.h"

namespace cogs::workflow::internal {
namespace {

namespace json = boost::json;

// Templates are written by people: deeper nesting is a mistake, and the limit bounds the comma
// stack. Inputs and outputs come from programs and may nest deeper.
constexpr std::size_t kMaxTemplateDepth = 64;
constexpr std::size_t kMaxDocumentDepth = 256;

enum class Root { kInput, kStep, kId, kWorkflowId };

// One parsed placeholder; the views point into the string being scanned.
struct Ref {
    Root root = Root::kInput;
    std::string_view name;  // the step (kStep) or the id (kId)
    std::string_view path;  // dot-separated, empty for the whole value
};

tl::unexpected<Error> Invalid(std::string message) {
    return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

bool ValidSegment(std::string_view seg) {
    if (seg.empty()) {
        return false;
    }
    for (char c : seg) {
        if (c == '{' || c == '$' || static_cast<unsigned char>(c) <= ' ') {
            return false;
        }
    }
    return true;
}

// Splits the first dot-separated segment off `rest`.
std::string_view NextSegment(std::string_view& rest) {
    std::size_t dot = rest.find('.');
    std::string_view seg = rest.substr(0, dot);
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    return seg;
}

// Parses the text between "${" and "}".
Result<Ref> ParseRef(std::string_view body) {
    auto bad = [&](std::string_view why) {
        return Invalid("placeholder '${" + std::string(body) + "}': " + std::string(why));
    };
    // Every segment must be non-empty and plain; a trailing or doubled dot is an empty segment.
    for (std::string_view rest = body;;) {
        bool last = rest.find('.') == std::string_view::npos;
        if (!ValidSegment(NextSegment(rest))) {
            return bad("empty path segment or a character out of place ('{', '$', space)");
        }
        if (last) {
            break;
        }
    }
    std::string_view rest = body;
    std::string_view root = NextSegment(rest);
    Ref ref;
    if (root == "input") {
        ref.root = Root::kInput;
        ref.path = rest;
    } else if (root == "steps") {
        ref.root = Root::kStep;
        ref.name = NextSegment(rest);
        if (ref.name.empty() || NextSegment(rest) != "output") {
            return bad("want ${steps.NAME.output} or ${steps.NAME.output.PATH}");
        }
        ref.path = rest;
    } else if (root == "ids") {
        ref.root = Root::kId;
        ref.name = NextSegment(rest);
        if (ref.name.empty() || !rest.empty()) {
            return bad("want ${ids.NAME}");
        }
    } else if (root == "workflow") {
        ref.root = Root::kWorkflowId;
        if (rest != "id") {
            return bad("want ${workflow.id}");
        }
    } else {
        return bad("unknown root '" + std::string(root) + "' (want input, steps, ids or workflow)");
    }
    return ref;
}

// Splits `s` into literal text and placeholders, calling on_literal(string_view) and
// on_ref(const Ref&) -> Status in order. "$${" is the literal "${".
template <typename OnLiteral, typename OnRef>
Status Scan(std::string_view s, OnLiteral&& on_literal, OnRef&& on_ref) {
    std::size_t lit = 0;
    std::size_t i = 0;
    while ((i = s.find('$', i)) != std::string_view::npos) {
        if (s.substr(i, 3) == "$${") {
            on_literal(s.substr(lit, i + 1 - lit));  // up to and including one '$'
            lit = i = i + 2;                         // the '{' starts the next literal
            continue;
        }
        if (s.substr(i, 2) != "${") {
            ++i;
            continue;
        }
        std::size_t close = s.find('}', i + 2);
        if (close == std::string_view::npos) {
            return Invalid("unterminated placeholder '" + std::string(s.substr(i)) + "'");
        }
        auto ref = ParseRef(s.substr(i + 2, close - i - 2));
        if (!ref) {
            return MakeError(std::move(ref.error()));
        }
        on_literal(s.substr(lit, i - lit));
        if (auto st = on_ref(*ref); !st) {
            return st;
        }
        lit = i = close + 1;
    }
    on_literal(s.substr(lit));
    return Ok();
}

// Whether `s` is exactly one placeholder (and so takes the referenced value with its type).
bool IsWholeValue(std::string_view s) {
    return s.size() >= 3 && s.substr(0, 2) == "${" && s.find('}') == s.size() - 1;
}

const json::value* Lookup(const json::value* v, std::string_view path) {
    if (path.empty()) {
        return v;
    }
    for (std::string_view rest = path; v != nullptr;) {
        bool last = rest.find('.') == std::string_view::npos;
        std::string_view seg = NextSegment(rest);
        if (const json::object* o = v->if_object()) {
            v = o->if_contains(json::string_view(seg.data(), seg.size()));
        } else if (const json::array* a = v->if_array()) {
            std::size_t index = 0;
            auto [end, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), index);
            bool ok = ec == std::errc() && end == seg.data() + seg.size() && index < a->size();
            v = ok ? &(*a)[index] : nullptr;
        } else {
            v = nullptr;
        }
        if (last) {
            break;
        }
    }
    return v;
}

void AppendSerialized(std::string& out, const json::value& v) {
    json::serializer sr;
    sr.reset(&v);
    char buf[512];
    while (!sr.done()) {
        json::string_view part = sr.read(buf, sizeof(buf));
        out.append(part.data(), part.size());
    }
}

// What a placeholder resolved to: a JSON value, a plain string (ids, workflow id), or nothing.
struct Resolved {
    const json::value* value = nullptr;
    std::optional<std::string_view> text;
};

// The SAX handler behind CheckTemplate and RenderTemplate: re-emits the template in canonical
// form, and either records referenced steps (ctx_ == nullptr) or substitutes placeholders.
class TemplateHandler {
public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    TemplateHandler(std::string* out, const RenderContext* ctx, std::vector<std::string>* steps)
        : out_(out), ctx_(ctx), steps_(steps) {}

    const std::optional<Error>& error() const { return error_; }

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_array_begin(json::error_code&) { return Open('['); }
    bool on_array_end(std::size_t, json::error_code&) { return Close(']'); }
    bool on_object_begin(json::error_code&) { return Open('{'); }
    bool on_object_end(std::size_t, json::error_code&) { return Close('}'); }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        str_.append(s.data(), s.size());
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code& ec) {
        str_.append(s.data(), s.size());
        BeforeValue();
        Status st = ctx_ == nullptr ? CheckString() : RenderString();
        str_.clear();
        return Done(st, ec);
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        str_.append(s.data(), s.size());
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
        str_.append(s.data(), s.size());
        Status st = Ok();
        if (str_.find("${") != std::string::npos) {
            st = Invalid("object key '" + str_ + "': placeholders are not allowed in keys");
        }
        BeforeValue();
        AppendJsonQuoted(*out_, str_);
        *out_ += ':';
        after_key_ = true;
        str_.clear();
        return Done(st, ec);
    }
    bool on_number_part(json::string_view s, json::error_code&) {
        num_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t, json::string_view s, json::error_code&) { return Number(s); }
    bool on_uint64(std::uint64_t, json::string_view s, json::error_code&) { return Number(s); }
    bool on_double(double, json::string_view s, json::error_code&) { return Number(s); }
    bool on_bool(bool b, json::error_code&) {
        BeforeValue();
        *out_ += b ? "true" : "false";
        return true;
    }
    bool on_null(json::error_code&) {
        BeforeValue();
        *out_ += "null";
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }

private:
    // Commas: `first_` holds, per open container, whether nothing has been written into it yet.
    void BeforeValue() {
        if (after_key_) {
            after_key_ = false;
        } else if (depth_ > 0) {
            if (!first_[depth_ - 1]) {
                *out_ += ',';
            }
            first_[depth_ - 1] = false;
        }
    }
    bool Open(char c) {
        BeforeValue();
        *out_ += c;
        first_[depth_++] = true;  // depth_ < kMaxTemplateDepth: the parser enforces max_depth
        return true;
    }
    bool Close(char c) {
        --depth_;
        *out_ += c;
        return true;
    }
    bool Number(json::string_view last) {
        BeforeValue();
        *out_ += num_;
        out_->append(last.data(), last.size());
        num_.clear();
        return true;
    }
    bool Done(Status& st, json::error_code& ec) {
        if (st) {
            return true;
        }
        error_ = std::move(st.error());
        ec = json::error::exception;  // any code: the caller reports error_
        return false;
    }

    Status CheckString() {
        AppendJsonQuoted(*out_, str_);
        if (str_.find("${") == std::string::npos) {
            return Ok();
        }
        return Scan(
            str_, [](std::string_view) {},
            [&](const Ref& ref) -> Status {
                if (ref.root == Root::kStep) {
                    bool seen = false;
                    for (const std::string& s : *steps_) {
                        seen = seen || s == ref.name;
                    }
                    if (!seen) {
                        steps_->emplace_back(ref.name);
                    }
                }
                return Ok();
            });
    }

    Status RenderString() {
        if (str_.find("${") == std::string::npos) {
            AppendJsonQuoted(*out_, str_);
            return Ok();
        }
        if (IsWholeValue(str_)) {
            auto ref = ParseRef(std::string_view(str_).substr(2, str_.size() - 3));
            if (!ref) {
                return MakeError(std::move(ref.error()));
            }
            auto r = Resolve(*ref);
            if (!r) {
                return MakeError(std::move(r.error()));
            }
            if (r->text) {
                AppendJsonQuoted(*out_, *r->text);
            } else if (r->value != nullptr) {
                AppendSerialized(*out_, *r->value);
            } else {
                *out_ += "null";
            }
            return Ok();
        }
        text_.clear();
        Status st = Scan(
            str_, [&](std::string_view lit) { text_.append(lit); },
            [&](const Ref& ref) -> Status {
                auto r = Resolve(ref);
                if (!r) {
                    return MakeError(std::move(r.error()));
                }
                if (r->text) {
                    text_.append(*r->text);
                } else if (r->value == nullptr || r->value->is_null()) {
                    // A missing path or a null interpolates as nothing.
                } else if (const json::string* s = r->value->if_string()) {
                    text_.append(s->data(), s->size());
                } else if (const bool* b = r->value->if_bool()) {
                    text_ += *b ? "true" : "false";
                } else {
                    AppendSerialized(text_, *r->value);
                }
                return Ok();
            });
        if (!st) {
            return st;
        }
        AppendJsonQuoted(*out_, text_);
        return Ok();
    }

    Result<Resolved> Resolve(const Ref& ref) {
        Resolved r;
        switch (ref.root) {
            case Root::kWorkflowId: r.text = ctx_->workflow_id; return r;
            case Root::kId:
                id_ = DeriveId(ctx_->workflow_id, ref.name);
                r.text = id_;
                return r;
            case Root::kInput: {
                if (!input_parsed_) {
                    if (!ctx_->input.empty()) {
                        auto doc = Parse(ctx_->input, "the workflow input");
                        if (!doc) {
                            return MakeError(std::move(doc.error()));
                        }
                        input_.emplace(std::move(*doc));
                    }
                    input_parsed_ = true;
                }
                r.value = input_ ? Lookup(&*input_, ref.path) : nullptr;
                return r;
            }
            case Root::kStep: {
                // A pointer into outputs_ is used before the next Resolve: growth cannot dangle it.
                std::optional<json::value>* doc = nullptr;
                for (auto& [name, parsed] : outputs_) {
                    if (name == ref.name) {
                        doc = &parsed;
                    }
                }
                if (doc == nullptr) {
                    const std::string* text = ctx_->step_output ? ctx_->step_output(ref.name) : nullptr;
                    doc = &outputs_.emplace_back(std::string(ref.name), std::nullopt).second;
                    if (text != nullptr && !text->empty()) {
                        auto parsed = Parse(*text, "the output of step '" + std::string(ref.name) + "'");
                        if (!parsed) {
                            return MakeError(std::move(parsed.error()));
                        }
                        doc->emplace(std::move(*parsed));
                    }
                }
                r.value = *doc ? Lookup(&**doc, ref.path) : nullptr;
                return r;
            }
        }
        return r;
    }

    Result<json::value> Parse(std::string_view text, const std::string& what) {
        json::parse_options opt;
        opt.max_depth = kMaxDocumentDepth;
        json::error_code ec;
        json::value v = json::parse(json::string_view(text.data(), text.size()), ec, &mr_, opt);
        if (ec) {
            return Invalid(what + " is not valid JSON: " + ec.message());
        }
        return v;
    }

    std::string* out_;
    const RenderContext* ctx_;         // null: checking, not rendering
    std::vector<std::string>* steps_;  // checking: the steps referenced
    std::optional<Error> error_;
    std::string str_;   // the string or key being assembled
    std::string num_;   // the number being assembled
    std::string text_;  // an interpolated string being built
    std::string id_;    // the last derived id
    std::array<bool, kMaxTemplateDepth + 1> first_{};
    std::size_t depth_ = 0;
    bool after_key_ = false;

    // Documents parsed on demand, in a per-call arena: most templates reference a few small ones.
    unsigned char arena_[2048];
    json::monotonic_resource mr_{arena_, sizeof(arena_)};
    bool input_parsed_ = false;
    std::optional<json::value> input_;
    std::vector<std::pair<std::string, std::optional<json::value>>> outputs_;
};

// Parses `tmpl` through a TemplateHandler writing to `out`.
Status Process(std::string_view tmpl, std::string* out, const RenderContext* ctx,
               std::vector<std::string>* steps) {
    json::parse_options opt;
    opt.max_depth = kMaxTemplateDepth;
    json::basic_parser<TemplateHandler> parser(opt, out, ctx, steps);
    json::error_code ec;
    std::size_t n = parser.write_some(false, tmpl.data(), tmpl.size(), ec);
    if (const auto& e = parser.handler().error()) {
        return MakeError(*e);
    }
    if (ec) {
        return Invalid("not valid JSON (at offset " + std::to_string(n) + "): " + ec.message());
    }
    if (n != tmpl.size()) {
        return Invalid("not valid JSON (at offset " + std::to_string(n) + "): text after the value");
    }
    return Ok();
}

std::uint64_t Fmix64(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

}  // namespace

void AppendJsonQuoted(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.reserve(out.size() + s.size() + 2);
    out += '"';
    std::size_t run = 0;  // start of the pending run of characters that need no escape
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        out.append(s.substr(run, i - run));
        run = i + 1;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                out += "\\u00";
                out += kHex[c >> 4];
                out += kHex[c & 0xf];
        }
    }
    out.append(s.substr(run));
    out += '"';
}

Result<std::string> RenderTemplate(std::string_view template_json, const RenderContext& ctx) {
    // Only a "${" (or a \u escape that might spell one) can make the output differ from the input.
    if (template_json.find("${") == std::string_view::npos &&
        template_json.find("\\u") == std::string_view::npos) {
        return std::string(template_json);
    }
    std::string out;
    out.reserve(template_json.size() + 64);
    if (auto st = Process(template_json, &out, &ctx, nullptr); !st) {
        return MakeError(std::move(st.error()));
    }
    return out;
}

Result<CheckedTemplate> CheckTemplate(std::string_view template_json) {
    CheckedTemplate t;
    t.canonical.reserve(template_json.size());
    if (auto st = Process(template_json, &t.canonical, nullptr, &t.steps); !st) {
        return MakeError(std::move(st.error()));
    }
    return t;
}

Result<std::vector<std::string>> ReferencedSteps(std::string_view template_json) {
    auto t = CheckTemplate(template_json);
    if (!t) {
        return MakeError(std::move(t.error()));
    }
    return std::move(t->steps);
}

std::string DeriveId(std::string_view workflow_id, std::string_view name) {
    // FNV-1a, 128 bits, over a version tag and both strings length-prefixed (so ("ab", "c") and
    // ("a", "bc") differ), then a murmur3 finalizer so every input bit reaches every output bit.
    __extension__ using U128 = unsigned __int128;
    U128 h = (U128(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
    // h * (2^88 + 0x13b), the FNV-128 prime, as a shift and a 64-bit multiply.
    auto mix = [&](unsigned char c) {
        h ^= c;
        h = (h << 88) + h * 0x13bu;
    };
    auto feed = [&](std::string_view s) {
        for (char c : s) {
            mix(static_cast<unsigned char>(c));
        }
    };
    auto feed_len = [&](std::size_t n) {
        for (int i = 0; i < 8; ++i) {
            mix(static_cast<unsigned char>(static_cast<std::uint64_t>(n) >> (8 * i)));
        }
    };
    feed("cogs.id.v1");
    feed_len(workflow_id.size());
    feed(workflow_id);
    feed_len(name.size());
    feed(name);
    auto hi = static_cast<std::uint64_t>(h >> 64);
    auto lo = static_cast<std::uint64_t>(h);
    std::uint64_t a = Fmix64(hi ^ (lo * 0x9e3779b97f4a7c15ULL));
    std::uint64_t b = Fmix64(lo ^ a);

    std::array<unsigned char, 16> bytes;
    for (int i = 0; i < 8; ++i) {
        bytes[i] = static_cast<unsigned char>(a >> (56 - 8 * i));
        bytes[8 + i] = static_cast<unsigned char>(b >> (56 - 8 * i));
    }
    // A workflow id that is a version-7 UUID (cogs's own, base/secret.h) lends its 48 bits of time
    // to the ids derived from it, so they too sort by when their workflow began (the stores' B-trees
    // take a batch's inserts at their right edge). Any other id (those made before, tests' "wf-1")
    // derives as it always did: a derived id, once persisted, never changes.
    if (std::optional<std::uint64_t> ms = UuidV7Time(workflow_id)) {
        for (int i = 0; i < 6; ++i) {
            bytes[i] = static_cast<unsigned char>(*ms >> (40 - 8 * i));
        }
    }
    bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x80);  // version 8: custom
    bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // variant 10xx
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id;
    id.reserve(36);
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            id += '-';
        }
        id += kHex[bytes[i] >> 4];
        id += kHex[bytes[i] & 0xf];
    }
    return id;
}

}  // namespace cogs::workflow::internal
