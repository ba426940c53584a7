#include "cogs/workflow/internal/template.h"

#include <map>
#include <regex>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "cogs/base/secret.h"

namespace cogs::workflow::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A context over a map of step outputs that counts how often each is asked for.
class Context {
public:
    Context(std::string workflow_id, std::string input)
        : workflow_id_(std::move(workflow_id)), input_(std::move(input)) {
        ctx_.workflow_id = workflow_id_;
        ctx_.input = input_;
        ctx_.step_output = [this](std::string_view name) -> const std::string* {
            ++asked_[std::string(name)];
            auto it = outputs_.find(std::string(name));
            return it == outputs_.end() ? nullptr : &it->second;
        };
    }
    Context& Output(const std::string& step, std::string json) {
        outputs_[step] = std::move(json);
        return *this;
    }
    const RenderContext& ctx() const { return ctx_; }
    int asked(const std::string& step) const {
        auto it = asked_.find(step);
        return it == asked_.end() ? 0 : it->second;
    }

private:
    std::string workflow_id_;
    std::string input_;
    std::map<std::string, std::string> outputs_;
    std::map<std::string, int> asked_;
    RenderContext ctx_;
};

std::string Render(std::string_view tmpl, const Context& c) {
    auto r = RenderTemplate(tmpl, c.ctx());
    EXPECT_TRUE(r.has_value()) << r.error().message;
    if (!r) {
        return "";
    }
    boost::json::error_code ec;
    boost::json::parse_options deep;
    deep.max_depth = 1000;
    boost::json::parse(*r, ec, {}, deep);
    EXPECT_FALSE(ec) << "not JSON: " << *r;
    return *r;
}

std::string RenderError(std::string_view tmpl, const Context& c) {
    auto r = RenderTemplate(tmpl, c.ctx());
    EXPECT_FALSE(r.has_value()) << *r;
    if (r) {
        return "";
    }
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    return r.error().message;
}

const char kInput[] = R"({"n":5,"name":"web","f":1.5,"ok":true,"none":null,"obj":{"a":[1,2],"s":"x\"y"},)"
                      R"("nets":[{"id":"net-0"},{"id":"net-1","tags":["blue","green"]}]})";

TEST(RenderTemplateTest, WholeValueKeepsTheType) {
    Context c("wf-1", kInput);
    EXPECT_EQ(
        Render(R"({"n":"${input.n}","name":"${input.name}","ok":"${input.ok}","none":"${input.none}"})", c),
        R"({"n":5,"name":"web","ok":true,"none":null})");
    EXPECT_EQ(Render(R"({"obj":"${input.obj}","f":"${input.f}"})", c),
              R"({"obj":{"a":[1,2],"s":"x\"y"},"f":1.5E0})");
    EXPECT_EQ(Render(R"("${input.obj.a}")", c), "[1,2]");
    EXPECT_EQ(Render(R"(["${input}"])", c).substr(0, 8), R"([{"n":5,)");
}

TEST(RenderTemplateTest, InterpolatesText) {
    Context c("wf-1", kInput);
    EXPECT_EQ(Render(R"({"host":"${input.name}-${input.n}.example","flag":"ok=${input.ok}"})", c),
              R"({"host":"web-5.example","flag":"ok=true"})");
    // Objects interpolate as compact JSON, escaped into the string; quotes inside stay valid JSON.
    EXPECT_EQ(Render(R"({"s":"obj=${input.obj}"})", c), R"({"s":"obj={\"a\":[1,2],\"s\":\"x\\\"y\"}"})");
    EXPECT_EQ(Render(R"({"s":"q=${input.obj.s}"})", c), R"({"s":"q=x\"y"})");
}

TEST(RenderTemplateTest, NestedPathsAndArrayIndices) {
    Context c("wf-1", kInput);
    c.Output("allocate_ip", R"({"ip":"10.0.0.7","addrs":[{"ip":"10.0.0.7"},{"ip":"fe80::1","v":6}]})");
    EXPECT_EQ(Render(R"({"a":"${input.nets.1.tags.0}","b":"${steps.allocate_ip.output.addrs.1.v}",)"
                     R"("c":"${steps.allocate_ip.output.ip}/32"})",
                     c),
              R"({"a":"blue","b":6,"c":"10.0.0.7/32"})");
    EXPECT_EQ(Render(R"("${steps.allocate_ip.output}")", c),
              R"({"ip":"10.0.0.7","addrs":[{"ip":"10.0.0.7"},{"ip":"fe80::1","v":6}]})");
}

TEST(RenderTemplateTest, MissingPathIsNullOrEmpty) {
    Context c("wf-1", kInput);
    c.Output("a", R"({"x":1})");
    EXPECT_EQ(Render(R"({"a":"${input.nope}","b":"${input.nets.7.id}","c":"${input.n.deeper}",)"
                     R"("d":"${input.nets.x}","e":"${steps.a.output.y}","f":"${steps.never.output.x}"})",
                     c),
              R"({"a":null,"b":null,"c":null,"d":null,"e":null,"f":null})");
    EXPECT_EQ(Render(R"({"s":"[${input.nope}][${input.none}][${steps.never.output}]"})", c),
              R"({"s":"[][][]"})");
    // An empty input counts as null.
    Context empty("wf-1", "");
    EXPECT_EQ(Render(R"({"a":"${input}","b":"${input.x}"})", empty), R"({"a":null,"b":null})");
}

TEST(RenderTemplateTest, IdsAndWorkflowId) {
    Context c("wf-42", "{}");
    std::string out = Render(R"({"port":"${ids.port}","volume":"${ids.volume}","wf":"${workflow.id}",)"
                             R"("name":"srv-${workflow.id}-${ids.server}"})",
                             c);
    auto v = boost::json::parse(out).as_object();
    EXPECT_EQ(v["port"].as_string(), DeriveId("wf-42", "port"));
    EXPECT_EQ(v["volume"].as_string(), DeriveId("wf-42", "volume"));
    EXPECT_EQ(v["wf"].as_string(), "wf-42");
    EXPECT_EQ(v["name"].as_string(), "srv-wf-42-" + DeriveId("wf-42", "server"));
}

TEST(RenderTemplateTest, TemplatesWithoutPlaceholdersPassThrough) {
    Context c("wf-1", "not json at all");  // never parsed: nothing refers to it
    EXPECT_EQ(Render(R"({ "a" : [1, 2.50], "b": "$5" })", c), R"({ "a" : [1, 2.50], "b": "$5" })");
    // A \u escape may spell "${": such templates take the slow path and come out canonical.
    EXPECT_EQ(Render(R"({ "a" : "\u0041", "b": 2.50 })", c), R"({"a":"A","b":2.50})");
    EXPECT_EQ(Render(R"({"a":"\u0024{workflow.id}"})", c), R"({"a":"wf-1"})");
}

TEST(RenderTemplateTest, DollarDollarBraceIsALiteral) {
    Context c("wf-1", kInput);
    EXPECT_EQ(Render(R"({"a":"$${input.n}","b":"cost $$${input.n}","c":"$${"})", c),
              R"({"a":"${input.n}","b":"cost $${input.n}","c":"${"})");
}

TEST(RenderTemplateTest, ParsesEachDocumentOnceAndOnlyWhenNeeded) {
    Context c("wf-1", "this is not JSON");
    c.Output("a", R"({"x":1,"y":2})").Output("b", "not JSON either");
    EXPECT_EQ(Render(R"({"x":"${steps.a.output.x}","y":"${steps.a.output.y}","z":"${steps.a.output}"})", c),
              R"({"x":1,"y":2,"z":{"x":1,"y":2}})");
    EXPECT_EQ(c.asked("a"), 1);
    EXPECT_EQ(c.asked("b"), 0);
    EXPECT_THAT(RenderError(R"({"x":"${input.x}"})", c), HasSubstr("the workflow input is not valid JSON"));
    EXPECT_THAT(RenderError(R"({"x":"${steps.b.output}"})", c),
                HasSubstr("the output of step 'b' is not valid JSON"));
}

TEST(RenderTemplateTest, WithoutStepOutputFunctionStepsAreMissing) {
    RenderContext ctx;
    ctx.workflow_id = "w";
    ctx.input = R"({"a":1})";
    auto r = RenderTemplate(R"({"a":"${input.a}","b":"${steps.s.output.x}"})", ctx);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(*r, R"({"a":1,"b":null})");
}

TEST(RenderTemplateTest, RejectsMalformedTemplates) {
    Context c("wf-1", kInput);
    EXPECT_THAT(RenderError(R"({"a":"${input.n"})", c), HasSubstr("unterminated placeholder '${input.n'"));
    EXPECT_THAT(RenderError(R"({"a":"${secret}"})", c), HasSubstr("unknown root 'secret'"));
    EXPECT_THAT(RenderError(R"({"a":"${input..n}"})", c), HasSubstr("empty path segment"));
    EXPECT_THAT(RenderError(R"({"a":"${}"})", c), HasSubstr("empty path segment"));
    EXPECT_THAT(RenderError(R"({"a":"${steps.x}"})", c), HasSubstr("want ${steps.NAME.output}"));
    EXPECT_THAT(RenderError(R"({"a":"${steps.x.input}"})", c), HasSubstr("want ${steps.NAME.output}"));
    EXPECT_THAT(RenderError(R"({"a":"${ids}"})", c), HasSubstr("want ${ids.NAME}"));
    EXPECT_THAT(RenderError(R"({"a":"${ids.a.b}"})", c), HasSubstr("want ${ids.NAME}"));
    EXPECT_THAT(RenderError(R"({"a":"${workflow.name}"})", c), HasSubstr("want ${workflow.id}"));
    EXPECT_THAT(RenderError(R"({"a":"${input.a b}"})", c), HasSubstr("out of place"));
    EXPECT_THAT(RenderError(R"({"a":"${input}"} x)", c), HasSubstr("not valid JSON"));
    EXPECT_THAT(RenderError(R"({"a":"${input}")", c), HasSubstr("not valid JSON"));
}

TEST(CheckTemplateTest, BoundsNesting) {
    auto nest = [](int depth) { return std::string(depth, '[') + "\"${input}\"" + std::string(depth, ']'); };
    auto ok = CheckTemplate(nest(64));
    ASSERT_TRUE(ok.has_value()) << ok.error().message;
    EXPECT_EQ(ok->canonical, nest(64));
    EXPECT_FALSE(CheckTemplate(nest(65)).has_value());
    Context c("wf-1", "[[[[1]]]]");
    EXPECT_EQ(Render(nest(64), c), std::string(64, '[') + "[[[[1]]]]" + std::string(64, ']'));
}

TEST(CheckTemplateTest, CanonicalFormAndReferencedSteps) {
    auto t = CheckTemplate(
        " {\n \"b\" : [ 1 , -0.50e+2 , true,null ], \"a\": \"${steps.y.output}-${steps.x.output.k}\","
        " \"c\": {\"d\": \"${steps.y.output.z}\", \"e\": \"\\u00e9\\t\\/\"} } ");
    ASSERT_TRUE(t.has_value()) << t.error().message;
    EXPECT_EQ(t->canonical, R"({"b":[1,-0.50e+2,true,null],"a":"${steps.y.output}-${steps.x.output.k}",)"
                            R"("c":{"d":"${steps.y.output.z}",)"
                            "\"e\":\"\xc3\xa9\\t/\"}}");
    EXPECT_THAT(t->steps, ElementsAre("y", "x"));
    // The canonical form is a fixed point.
    auto again = CheckTemplate(t->canonical);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->canonical, t->canonical);
}

TEST(ReferencedStepsTest, ListsStepsOnceInOrder) {
    auto steps = ReferencedSteps(R"({"a":"${steps.boot.output.id}","b":["${steps.schedule.output}",)"
                                 R"("${input.x}${ids.port}${workflow.id}","$${steps.fake.output}"],)"
                                 R"("c":"${steps.boot.output.host}"})");
    ASSERT_TRUE(steps.has_value()) << steps.error().message;
    EXPECT_THAT(*steps, ElementsAre("boot", "schedule"));
    auto none = ReferencedSteps(R"([1, "two", {"three": null}])");
    ASSERT_TRUE(none.has_value());
    EXPECT_TRUE(none->empty());
}

TEST(ReferencedStepsTest, RejectsBadSyntaxRootsAndKeys) {
    EXPECT_THAT(ReferencedSteps(R"({"a":"${env.HOME}"})").error().message, HasSubstr("unknown root 'env'"));
    EXPECT_THAT(ReferencedSteps(R"({"a":)").error().message, HasSubstr("not valid JSON"));
    EXPECT_THAT(ReferencedSteps("").error().message, HasSubstr("not valid JSON"));
    EXPECT_THAT(ReferencedSteps(R"({"${input.k}":1})").error().message, HasSubstr("not allowed in keys"));
    EXPECT_THAT(ReferencedSteps(R"({"a":1,})").error().message, HasSubstr("not valid JSON"));
}

TEST(DeriveIdTest, StableDistinctAndUuidShaped) {
    const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    std::string id = DeriveId("wf-1", "port");
    EXPECT_TRUE(std::regex_match(id, uuid)) << id;
    EXPECT_EQ(id, DeriveId("wf-1", "port"));
    // Persisted by services: the value for a given pair must never change.
    EXPECT_EQ(id, DeriveId(std::string("wf-") + "1", std::string("po") + "rt"));

    std::set<std::string> ids;
    for (int w = 0; w < 100; ++w) {
        for (const char* name : {"port", "volume", "server", "porT", ""}) {
            std::string v = DeriveId("wf-" + std::to_string(w), name);
            EXPECT_TRUE(std::regex_match(v, uuid)) << v;
            ids.insert(v);
        }
    }
    EXPECT_EQ(ids.size(), 500u);
    // Both strings count, with their boundary.
    EXPECT_NE(DeriveId("ab", "c"), DeriveId("a", "bc"));
    EXPECT_NE(DeriveId("a", "b"), DeriveId("b", "a"));
}

TEST(DeriveIdTest, AVersion7WorkflowLendsItsTimeAndNoOtherIdChanges) {
    // Ids persisted before version-7 workflow ids existed derive as they always did (the values
    // are those of the code before it, 2026-12-06).
    EXPECT_EQ(DeriveId("0b5e6c1a-4f7d-4a2e-9c3b-2d1e0f9a8b7c", "port"),
              "a416ada9-05f4-8a28-86df-b5ac471b9fa9");
    EXPECT_EQ(DeriveId("wf-1", "port"), "cdf01071-5750-82b0-b652-b9747b5982a2");

    const std::regex v8("[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    const uint64_t t = 1796556600123;  // 01a24b1e-333b
    std::set<std::string> earlier, later;
    for (int i = 0; i < 200; ++i) {
        const std::string wf = NewUuidAt(t);
        for (const char* name : {"port", "volume"}) {
            const std::string id = DeriveId(wf, name);
            EXPECT_TRUE(std::regex_match(id, v8)) << id;
            EXPECT_EQ(id.substr(0, 13), "01a24b1e-333b") << id;
            EXPECT_EQ(id, DeriveId(wf, name));
            earlier.insert(id);
        }
        later.insert(DeriveId(NewUuidAt(t + 1), "port"));
    }
    EXPECT_EQ(earlier.size(), 400u);
    EXPECT_LT(*earlier.rbegin(), *later.begin());
}

TEST(AppendJsonQuotedTest, EscapesWhatJsonRequires) {
    std::string out;
    AppendJsonQuoted(out, std::string_view("a\"b\\c\n\t\x01\x1f/\xc3\xa9", 12));
    EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\xc3\xa9\"");
}

}  // namespace
}  // namespace cogs::workflow::internal
