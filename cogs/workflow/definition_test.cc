#include "cogs/workflow/definition.h"

#include "cogs/base/paths.h"
#include "test/support/temp_dir.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cogs::workflow {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The benchmark's reference workflow, found beside the build tree (not through __FILE__, which
// ccache's base directory makes relative).
std::string ReferenceWorkflow() { return base::FindProjectPath("bench/workflows") + "/server_create.yaml"; }

void ExpectSameRetry(const RetryPolicy& a, const RetryPolicy& b) {
    EXPECT_EQ(a.max_attempts, b.max_attempts);
    EXPECT_EQ(a.initial_backoff, b.initial_backoff);
    EXPECT_EQ(a.max_backoff, b.max_backoff);
    EXPECT_EQ(a.multiplier, b.multiplier);
    EXPECT_EQ(a.retry_on, b.retry_on);
}

// Every field, including the ones Validate fills.
void ExpectSameDefinition(const Definition& a, const Definition& b) {
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(a.version, b.version);
    EXPECT_EQ(a.deadline, b.deadline);
    EXPECT_EQ(a.topo_order, b.topo_order);
    ASSERT_EQ(a.steps.size(), b.steps.size());
    for (std::size_t i = 0; i < a.steps.size(); ++i) {
        SCOPED_TRACE("step " + a.steps[i].name);
        const StepDef& x = a.steps[i];
        const StepDef& y = b.steps[i];
        EXPECT_EQ(x.name, y.name);
        EXPECT_EQ(x.action.FullName(), y.action.FullName());
        EXPECT_EQ(x.depends_on, y.depends_on);
        EXPECT_EQ(x.input, y.input);
        ExpectSameRetry(x.retry, y.retry);
        EXPECT_EQ(x.timeout, y.timeout);
        EXPECT_EQ(x.deadline, y.deadline);
        EXPECT_EQ(x.deps, y.deps);
        EXPECT_EQ(x.dependents, y.dependents);
        ASSERT_EQ(x.compensation.has_value(), y.compensation.has_value());
        if (x.compensation) {
            EXPECT_EQ(x.compensation->action.FullName(), y.compensation->action.FullName());
            EXPECT_EQ(x.compensation->input, y.compensation->input);
            EXPECT_EQ(x.compensation->timeout, y.compensation->timeout);
            ExpectSameRetry(x.compensation->retry, y.compensation->retry);
        }
    }
}

// The message of the error `r` holds; fails the test if `r` holds a value.
template <typename T>
std::string ErrorOf(const Result<T>& r) {
    EXPECT_FALSE(r.has_value()) << "expected an error";
    if (r.has_value()) {
        return "";
    }
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
    return r.error().message;
}

// A valid chain a -> b -> c to break in one place.
Definition Chain() {
    auto def = DefinitionBuilder("test.chain")
                   .Step("a", "svc.do_a")
                   .Step("b", "svc.do_b")
                   .After("a")
                   .Step("c", "svc.do_c")
                   .After("b")
                   .Build();
    EXPECT_TRUE(def.has_value()) << def.error().message;
    return *def;
}

// ---- Builder and Validate ------------------------------------------------------------------------

TEST(DefinitionBuilderTest, DiamondResolvesDepsAndOrder) {
    auto def =
        DefinitionBuilder("test.server_create")
            .Deadline(minutes(5))
            .Step("allocate_ip", "network.allocate_ip")
            .Input(R"({"net": "${input.net}"})")
            .Timeout(seconds(2))
            .Compensate("network.release_ip", R"({"ip":"${steps.allocate_ip.output.ip}"})")
            .Step("create_port", "network.create_port")
            .After("allocate_ip")
            .Step("create_volume", "volume.create_volume")
            .After("allocate_ip")
            .StepDeadline(minutes(10))
            .Step("boot", "compute.boot")
            .After("create_volume")
            .After("create_port")
            .Input(R"({"ip":"${steps.allocate_ip.output.ip}","port":"${steps.create_port.output.id}"})")
            .Build();
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->type, "test.server_create");
    EXPECT_EQ(def->deadline, minutes(5));
    ASSERT_EQ(def->steps.size(), 4u);
    EXPECT_EQ(def->steps[0].action.service, "network");
    EXPECT_EQ(def->steps[0].action.action, "allocate_ip");
    EXPECT_EQ(def->steps[0].timeout, seconds(2));
    EXPECT_EQ(def->steps[0].input, R"({"net":"${input.net}"})");  // canonical: compact
    ASSERT_TRUE(def->steps[0].compensation.has_value());
    EXPECT_EQ(def->steps[0].compensation->action.FullName(), "network.release_ip");
    EXPECT_EQ(def->steps[2].deadline, minutes(10));
    EXPECT_THAT(def->steps[0].deps, ElementsAre());
    EXPECT_THAT(def->steps[0].dependents, ElementsAre(1, 2));
    EXPECT_THAT(def->steps[3].deps, ElementsAre(2, 1));  // in depends_on order
    EXPECT_THAT(def->steps[1].dependents, ElementsAre(3));
    EXPECT_THAT(def->topo_order, ElementsAre(0, 1, 2, 3));
    EXPECT_EQ(def->StepIndex("boot"), 3);
    EXPECT_EQ(def->StepIndex("allocate_ip"), 0);
    EXPECT_EQ(def->StepIndex("nope"), -1);
}

TEST(DefinitionBuilderTest, TopologicalOrderBreaksTiesByDefinitionOrder) {
    // c needs b needs a, defined backwards; x and y are free and come first in their places.
    auto def = DefinitionBuilder("t")
                   .Step("c", "s.c")
                   .After("b")
                   .Step("x", "s.x")
                   .Step("b", "s.b")
                   .After("a")
                   .Step("a", "s.a")
                   .Step("y", "s.y")
                   .Build();
    ASSERT_TRUE(def.has_value()) << def.error().message;
    // Ready at first: x(1), a(3), y(4). Then b(2) once a is done, then c(0).
    EXPECT_THAT(def->topo_order, ElementsAre(1, 3, 2, 0, 4));
}

TEST(DefinitionBuilderTest, CollectsCallErrors) {
    auto def = DefinitionBuilder("t")
                   .Input("{}")
                   .Step("a", "noaction")
                   .Step("b", "s.b")
                   .CompensationRetry({})
                   .Build();
    std::string m = ErrorOf(def);
    EXPECT_THAT(m, HasSubstr("workflow 't'"));
    EXPECT_THAT(m, HasSubstr("Input() before any Step()"));
    EXPECT_THAT(m, HasSubstr("step 'a': action 'noaction' must read service.action"));
    EXPECT_THAT(m, HasSubstr("step 'b': CompensationRetry() before Compensate()"));
}

TEST(DefinitionBuilderTest, BuildValidates) {
    auto def = DefinitionBuilder("t").Step("a", "s.a").After("ghost").Build();
    EXPECT_THAT(ErrorOf(def), HasSubstr("workflow 't': step 'a': depends_on names unknown step 'ghost'"));
}

TEST(ParseActionRefTest, SplitsServiceAndAction) {
    auto ref = ParseActionRef("compute.boot");
    ASSERT_TRUE(ref.has_value());
    EXPECT_EQ(ref->service, "compute");
    EXPECT_EQ(ref->action, "boot");
    EXPECT_EQ(ref->FullName(), "compute.boot");
    for (const char* bad : {"", "compute", ".boot", "compute.", "a.b.c", "comp ute.boot", "compute.bo/ot"}) {
        SCOPED_TRACE(bad);
        EXPECT_THAT(ErrorOf(ParseActionRef(bad)), HasSubstr("must read service.action"));
    }
}

TEST(ValidateTest, ReportsCycleWithItsSteps) {
    Definition def = Chain();
    def.steps[0].depends_on = {"c"};  // a needs c needs b needs a
    std::string m = ErrorOf(Validate(def, "cycle.yaml:3"));
    EXPECT_THAT(m, StartsWith("cycle.yaml:3: "));
    EXPECT_THAT(m, HasSubstr("cycle: a -> c -> b -> a"));
}

TEST(ValidateTest, ReportsCycleNotReachableFromFreeSteps) {
    // A free step first, then a 2-cycle, then a step that hangs off the cycle.
    Definition def = DefinitionBuilder("t").Step("free", "s.f").Build().value();
    StepDef p;
    p.name = "p";
    p.action = {"s", "p"};
    p.depends_on = {"q"};
    StepDef q = p;
    q.name = "q";
    q.depends_on = {"p"};
    StepDef r = p;
    r.name = "r";
    r.depends_on = {"q"};
    def.steps.insert(def.steps.end(), {r, p, q});
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("cycle: q -> p -> q"));
}

TEST(ValidateTest, UnknownDependencyNamesStepAndOrigin) {
    Definition def = Chain();
    def.steps[2].depends_on = {"shedule"};
    EXPECT_EQ(ErrorOf(Validate(def, "server.yaml:14")),
              "server.yaml:14: step 'c': depends_on names unknown step 'shedule'");
}

TEST(ValidateTest, RejectsSelfAndRepeatedDependency) {
    Definition def = Chain();
    def.steps[1].depends_on = {"b"};
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': depends on itself"));
    def = Chain();
    def.steps[2].depends_on = {"b", "a", "b"};
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'c': depends_on lists 'b' twice"));
}

TEST(ValidateTest, RejectsDuplicateAndMalformedNames) {
    Definition def = Chain();
    def.steps[2].name = "a";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'a': duplicate step name (also step #1)"));
    def = Chain();
    def.steps[1].name = "Boot Server";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'Boot Server': name must be"));
    def = Chain();
    def.steps[1].name = "";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step #2: name must be"));
}

TEST(ValidateTest, RejectsBadTypeAndEmptyWorkflow) {
    Definition def = Chain();
    def.type = "Server Create";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("type 'Server Create' must be"));
    def.type = "";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("type '' must be"));
    Definition empty;
    empty.type = "empty";
    EXPECT_THAT(ErrorOf(Validate(empty)), HasSubstr("workflow 'empty': has no steps"));
}

TEST(ValidateTest, RejectsBadAction) {
    Definition def = Chain();
    def.steps[1].action = {"", "boot"};
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': action '.boot' must read service.action"));
    def = Chain();
    def.steps[1].compensation = Compensation{};
    def.steps[1].compensation->action = {"svc", ""};
    EXPECT_THAT(ErrorOf(Validate(def)),
                HasSubstr("step 'b': compensation.action 'svc.' must read service.action"));
}

TEST(ValidateTest, RejectsBadRetryValues) {
    struct Case {
        void (*mutate)(RetryPolicy&);
        const char* message;
    };
    const Case cases[] = {
        {[](RetryPolicy& p) { p.max_attempts = 0; }, "retry.max_attempts is 0; want 1..1000"},
        {[](RetryPolicy& p) { p.max_attempts = 1001; }, "retry.max_attempts is 1001"},
        {[](RetryPolicy& p) { p.initial_backoff = milliseconds(-1); }, "retry.initial_backoff is negative"},
        {[](RetryPolicy& p) { p.max_backoff = milliseconds(10); }, "retry.max_backoff is below "},
        {[](RetryPolicy& p) { p.multiplier = 0.5; }, "retry.multiplier is 0.5"},
        {[](RetryPolicy& p) { p.multiplier = 101; }, "retry.multiplier is 101"},
        {[](RetryPolicy& p) { p.multiplier = std::nan(""); }, "retry.multiplier is nan"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.message);
        Definition def = Chain();
        c.mutate(def.steps[1].retry);
        EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr(std::string("step 'b': ") + c.message));
        def = Chain();
        def.steps[1].compensation = Compensation{{"s", "undo_b"}, "", {}, seconds(1)};
        c.mutate(def.steps[1].compensation->retry);
        EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr(std::string("step 'b': compensation.") + c.message));
    }
    // The edges are fine.
    Definition def = Chain();
    def.steps[1].retry = RetryPolicy{1, Duration(0), Duration(0), 1.0, {}};
    def.steps[2].retry = RetryPolicy{1000, seconds(1), seconds(1), 100.0, {ErrorCode::kUnavailable}};
    EXPECT_TRUE(Validate(def).has_value());
}

TEST(ValidateTest, RejectsBadTimeoutsAndDeadlines) {
    Definition def = Chain();
    def.steps[0].timeout = Duration(0);
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'a': timeout must be positive"));
    def = Chain();
    def.steps[0].deadline = seconds(-1);
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'a': deadline is negative"));
    def = Chain();
    def.deadline = seconds(-1);
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("workflow 'test.chain': deadline is negative"));
    def = Chain();
    def.steps[0].compensation = Compensation{{"s", "undo"}, "", {}, Duration(0)};
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'a': compensation.timeout must be positive"));
}

TEST(ValidateTest, ReportsEveryProblemItFinds) {
    Definition def = Chain();
    def.steps[0].timeout = Duration(0);
    def.steps[2].retry.max_attempts = 0;
    std::string m = ErrorOf(Validate(def));
    EXPECT_THAT(m, HasSubstr("step 'a': timeout must be positive"));
    EXPECT_THAT(m, HasSubstr("step 'c': retry.max_attempts is 0"));
}

TEST(ValidateTest, PlaceholdersMustNameAncestors) {
    Definition def = Chain();
    def.steps[2].input = R"({"x":"${steps.a.output.x}","y":"${steps.b.output}"})";  // a is transitive
    EXPECT_TRUE(Validate(def).has_value());

    def = Chain();
    def.steps[0].input = R"({"x":"${steps.b.output.x}"})";  // b runs after a
    EXPECT_THAT(ErrorOf(Validate(def)),
                HasSubstr("step 'a': input references step 'b', which does not run before it"));

    def = Chain();
    def.steps[1].input = R"({"x":"${steps.b.output.x}"})";  // itself
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': input references step 'b'"));

    def = Chain();
    def.steps[1].input = R"({"x":"host-${steps.nope.output.x}"})";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': input references unknown step 'nope'"));

    // Siblings are not ancestors of each other.
    auto sib = DefinitionBuilder("t")
                   .Step("root", "s.r")
                   .Step("left", "s.l")
                   .After("root")
                   .Step("right", "s.r")
                   .After("root")
                   .Input(R"({"x":"${steps.left.output}"})")
                   .Build();
    EXPECT_THAT(ErrorOf(sib), HasSubstr("step 'right': input references step 'left'"));
}

TEST(ValidateTest, CompensationMayReferenceItsOwnStep) {
    Definition def = Chain();
    def.steps[1].compensation = Compensation{
        {"s", "undo_b"}, R"({"id":"${steps.b.output.id}","a":"${steps.a.output}"})", {}, seconds(1)};
    EXPECT_TRUE(Validate(def).has_value());
    def.steps[1].compensation->input = R"({"id":"${steps.c.output.id}"})";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': compensation.input references step 'c'"));
}

TEST(ValidateTest, RejectsBadTemplates) {
    Definition def = Chain();
    def.steps[1].input = R"({"x": )";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': input: not valid JSON"));
    def = Chain();
    def.steps[1].input = R"({"x":"${secrets.password}"})";
    EXPECT_THAT(ErrorOf(Validate(def)),
                HasSubstr("step 'b': input: placeholder '${secrets.password}': unknown root"));
    def = Chain();
    def.steps[1].input = R"({"x":"${input.a"})";
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("unterminated placeholder"));
    def = Chain();
    def.steps[1].compensation = Compensation{{"s", "undo"}, "[1,]", {}, seconds(1)};
    EXPECT_THAT(ErrorOf(Validate(def)), HasSubstr("step 'b': compensation.input: not valid JSON"));
}

TEST(ValidateTest, IsIdempotent) {
    Definition def = Chain();
    auto again = Validate(def);
    ASSERT_TRUE(again.has_value());
    ExpectSameDefinition(def, *again);  // deps and dependents are rebuilt, not appended
}

// ---- YAML ----------------------------------------------------------------------------------------

TEST(YamlTest, LoadsTheReferenceWorkflow) {
    auto defs = LoadDefinitionsFromFile(ReferenceWorkflow());
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    ASSERT_EQ(defs->size(), 1u);
    const Definition& d = (*defs)[0];
    EXPECT_EQ(d.type, "bench.server_create");
    const char* names[] = {"allocate_ip", "create_port", "create_volume",
                           "schedule",    "boot",        "attach_volume"};
    const char* undo[] = {"network.release_ip", "network.delete_port",     "volume.delete_volume",
                          "scheduler.release",  "compute.delete_instance", "volume.detach_volume"};
    ASSERT_EQ(d.steps.size(), 6u);
    EXPECT_THAT(d.topo_order, ElementsAre(0, 1, 2, 3, 4, 5));
    for (int i = 0; i < 6; ++i) {
        const StepDef& s = d.steps[i];
        SCOPED_TRACE(s.name);
        EXPECT_EQ(s.name, names[i]);
        if (i == 0) {
            EXPECT_TRUE(s.deps.empty());
        } else {
            EXPECT_THAT(s.deps, ElementsAre(i - 1));
        }
        EXPECT_EQ(s.timeout, seconds(2));
        EXPECT_EQ(s.retry.max_attempts, 5);
        EXPECT_EQ(s.retry.initial_backoff, milliseconds(20));
        EXPECT_EQ(s.retry.max_backoff, seconds(1));
        ASSERT_TRUE(s.compensation.has_value());
        EXPECT_EQ(s.compensation->action.FullName(), undo[i]);
    }
    EXPECT_EQ(d.steps[1].input, R"({"port_id":"${ids.port}","network_id":"${input.network_id}",)"
                                R"("ip":"${steps.allocate_ip.output.ip}"})");
}

TEST(YamlTest, ListAndSingleWorkflowForms) {
    const std::string single = R"(
type: solo
deadline: 1h
steps:
  - name: only
    action: svc.act
    timeout: 250ms
    deadline: 5m
    retry: {max_attempts: 3, initial_backoff: 1500, max_backoff: 2s, multiplier: 1.5,
            retry_on: [unavailable, deadline_exceeded, resource_exhausted]}
)";
    auto defs = LoadDefinitionsFromString(single, "solo.yaml");
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    ASSERT_EQ(defs->size(), 1u);
    const Definition& d = (*defs)[0];
    EXPECT_EQ(d.type, "solo");
    EXPECT_EQ(d.deadline, hours(1));
    const StepDef& s = d.steps[0];
    EXPECT_EQ(s.input, "{}");
    EXPECT_EQ(s.timeout, milliseconds(250));
    EXPECT_EQ(s.deadline, minutes(5));
    EXPECT_EQ(s.retry.max_attempts, 3);
    EXPECT_EQ(s.retry.initial_backoff, milliseconds(1500));  // a bare integer is milliseconds
    EXPECT_EQ(s.retry.max_backoff, seconds(2));
    EXPECT_EQ(s.retry.multiplier, 1.5);
    EXPECT_THAT(s.retry.retry_on, ElementsAre(ErrorCode::kUnavailable, ErrorCode::kDeadlineExceeded,
                                              ErrorCode::kResourceExhausted));
    EXPECT_FALSE(s.compensation.has_value());

    auto two = LoadDefinitionsFromString(
        "workflows:\n"
        "  - {type: one, steps: [{name: s, action: a.b}]}\n"
        "  - {type: two, steps: [{name: s, action: a.b}]}\n",
        "two.yaml");
    ASSERT_TRUE(two.has_value()) << two.error().message;
    ASSERT_EQ(two->size(), 2u);
    EXPECT_EQ((*two)[1].type, "two");
}

TEST(YamlTest, InputKeepsYamlTypes) {
    const std::string text = R"(
type: t
steps:
  - name: s
    action: a.b
    input:
      n: 5
      neg: -3
      f: 1.50
      e: 2e3
      yes_bool: true
      no_bool: False
      nothing: null
      tilde: ~
      empty:
      quoted_number: "5"
      quoted_bool: 'true'
      zip: 007
      word: hello world
      list: [1, "2", [x]]
      nested: {k: "${input.k}", "a b": "tab\there"}
)";
    auto defs = LoadDefinitionsFromString(text, "types.yaml");
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    EXPECT_EQ(
        (*defs)[0].steps[0].input,
        R"({"n":5,"neg":-3,"f":1.50,"e":2e3,"yes_bool":true,"no_bool":false,"nothing":null,"tilde":null,)"
        R"("empty":null,"quoted_number":"5","quoted_bool":"true","zip":"007","word":"hello world",)"
        R"("list":[1,"2",["x"]],"nested":{"k":"${input.k}","a b":"tab\there"}})");
}

TEST(YamlTest, InputExpansionIsBounded) {
    // Aliases to aliases double at each level: 2^30 values from a few lines.
    std::string text = "type: t\nsteps:\n  - name: s\n    action: a.b\n    input:\n      l0: &l0 [1, 1]\n";
    for (int i = 1; i <= 30; ++i) {
        text += "      l" + std::to_string(i) + ": &l" + std::to_string(i) + " [*l" + std::to_string(i - 1) +
                ", *l" + std::to_string(i - 1) + "]\n";
    }
    EXPECT_THAT(ErrorOf(LoadDefinitionsFromString(text, "bomb.yaml")),
                HasSubstr("has more than 100000 values"));
}

TEST(YamlTest, UnknownFieldsAreRejectedWithTheirLine) {
    struct Case {
        const char* text;
        const char* message;
    };
    const Case cases[] = {
        {"type: t\nstepz: []\n", "f.yaml:2: unknown field 'stepz' in workflow 't'"},
        {"workflows: []\nextra: 1\n", "f.yaml:2: unknown field 'extra' in the document"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    retries: 3\n",
         "f.yaml:5: unknown field 'retries' in step 's'"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    retry:\n      attempts: 3\n",
         "f.yaml:6: unknown field 'attempts' in step 's' retry"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    compensation:\n      action: a.c\n      inputs: "
         "{}\n",
         "f.yaml:7: unknown field 'inputs' in step 's' compensation"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    compensation:\n      action: a.c\n"
         "      retry: {max_attempts: 2, jitter: true}\n",
         "f.yaml:7: unknown field 'jitter' in step 's' compensation retry"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    name: s2\n",
         "f.yaml:5: field 'name' given twice"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.text);
        EXPECT_THAT(ErrorOf(LoadDefinitionsFromString(c.text, "f.yaml")), HasSubstr(c.message));
    }
}

TEST(YamlTest, BadValuesNameTheField) {
    struct Case {
        const char* text;
        const char* message;
    };
    const Case cases[] = {
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    timeout: soon\n",
         "f.yaml:5: step 's': bad duration 'soon' for 'timeout'"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    timeout: -2s\n",
         "bad duration '-2s' for 'timeout'"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    timeout: 2.5s\n",
         "bad duration '2.5s' for 'timeout'"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    timeout: 99999999999999h\n", "bad duration"},
        {"type: t\ndeadline: [1]\nsteps: []\n", "f.yaml:2: workflow 't': 'deadline' must be a duration"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    retry: {max_attempts: many}\n",
         "f.yaml:5: step 's' retry: 'max_attempts' must be an integer"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    retry: {multiplier: x2}\n",
         "'multiplier' must be a number"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    retry: {retry_on: [unavailable, flaky]}\n",
         "f.yaml:5: step 's' retry: unknown error code 'flaky' in retry_on"},
        {"type: t\nsteps:\n  - name: s\n    action: ab\n",
         "f.yaml:4: step 's': action 'ab' must read service.action"},
        {"type: t\nsteps:\n  - name: s\n", "f.yaml:3: step 's' has no 'action'"},
        {"type: t\nsteps: {name: s}\n", "f.yaml:2: workflow 't': 'steps' must be a list"},
        {"steps: []\n", "f.yaml:1: workflow has no 'type'"},
        {"- a\n- b\n", "f.yaml:1: want a mapping"},
        {"type: t\nsteps:\n  - name: s\n    action: a.b\n    input: {a: 1, a: 2}\n", "key 'a' given twice"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.text);
        EXPECT_THAT(ErrorOf(LoadDefinitionsFromString(c.text, "f.yaml")), HasSubstr(c.message));
    }
}

TEST(YamlTest, SyntaxErrorCarriesItsLine) {
    const std::string text = "type: t\nsteps:\n  - name: s\n    action: a.b\n    input: {a: [1, 2}\n";
    std::string m = ErrorOf(LoadDefinitionsFromString(text, "broken.yaml"));
    EXPECT_THAT(m, StartsWith("broken.yaml:5: "));
}

TEST(YamlTest, StrayCommaIsAnErrorNotAHang) {
    // yaml-cpp 0.7's LoadAll alone loops forever on these, allocating until the process dies.
    EXPECT_THAT(ErrorOf(LoadDefinitionsFromString(",\n", "comma.yaml")),
                StartsWith("comma.yaml:1: unexpected text"));
    EXPECT_THAT(ErrorOf(LoadDefinitionsFromString("# c\n, x\ntype: t\n", "comma.yaml")),
                StartsWith("comma.yaml:2: unexpected text"));
    EXPECT_THAT(
        ErrorOf(LoadDefinitionsFromString("type: t\nsteps: [{name: s, action: a.b}]\n---\n,\n", "c.yaml")),
        StartsWith("c.yaml:4: unexpected text"));
}

TEST(YamlTest, ValidationErrorsPointAtTheStep) {
    const std::string text =
        "workflows:\n"
        "  - type: test.server_create\n"
        "    steps:\n"
        "      - name: schedule\n"
        "        action: scheduler.schedule\n"
        "      - name: boot\n"
        "        action: compute.boot\n"
        "        depends_on: [shedule]\n";
    EXPECT_EQ(ErrorOf(LoadDefinitionsFromString(text, "server.yaml")),
              "server.yaml:6: step 'boot': depends_on names unknown step 'shedule'");
}

TEST(YamlTest, AllOrNothing) {
    const std::string text =
        "workflows:\n"
        "  - type: good\n"
        "    steps: [{name: s, action: a.b}]\n"
        "  - type: bad\n"
        "    steps: [{name: s, action: a.b, depends_on: [s]}]\n";
    auto defs = LoadDefinitionsFromString(text, "mixed.yaml");
    EXPECT_THAT(ErrorOf(defs), HasSubstr("step 's': depends on itself"));

    const std::string twice =
        "workflows:\n"
        "  - {type: same, steps: [{name: s, action: a.b}]}\n"
        "  - {type: same, steps: [{name: s, action: a.b}]}\n";
    EXPECT_EQ(ErrorOf(LoadDefinitionsFromString(twice, "twice.yaml")),
              "twice.yaml:3: workflow type 'same' is defined twice (also at twice.yaml:2)");
}

TEST(YamlTest, EmptyDocumentHoldsNoDefinitions) {
    auto defs = LoadDefinitionsFromString("# nothing yet\n", "empty.yaml");
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    EXPECT_TRUE(defs->empty());
}

using cogs::testing::TempDir;

TEST(YamlTest, LoadsADirectoryInNameOrder) {
    TempDir dir;
    dir.Write("b.yml", "type: bee\nsteps: [{name: s, action: a.b}]\n");
    dir.Write("a.yaml", "type: ay\nsteps: [{name: s, action: a.b}]\n");
    dir.Write("c.txt", "not yaml: [");
    dir.Write(".swap.yaml", "not yaml: [");
    auto defs = LoadDefinitionsFromDirectory(dir.path());
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    ASSERT_EQ(defs->size(), 2u);
    EXPECT_EQ((*defs)[0].type, "ay");
    EXPECT_EQ((*defs)[1].type, "bee");

    dir.Write("c.yaml", "type: ay\nsteps: [{name: s, action: a.b}]\n");
    std::string m = ErrorOf(LoadDefinitionsFromDirectory(dir.path()));
    EXPECT_THAT(m, HasSubstr("c.yaml:1: workflow type 'ay' is defined twice (also at "));
    EXPECT_THAT(m, HasSubstr("a.yaml:1)"));
}

TEST(YamlTest, DirectoryIsAllOrNothing) {
    TempDir dir;
    dir.Write("a.yaml", "type: ay\nsteps: [{name: s, action: a.b}]\n");
    dir.Write("b.yaml", "type: bee\nsteps: [{name: s, action: a.b, timeout: 0}]\n");
    EXPECT_THAT(ErrorOf(LoadDefinitionsFromDirectory(dir.path())),
                HasSubstr("b.yaml:2: step 's': timeout must be"));
}

TEST(YamlTest, MissingFileOrDirectoryIsNotFound) {
    auto f = LoadDefinitionsFromFile("/nonexistent/cogs/x.yaml");
    ASSERT_FALSE(f.has_value());
    EXPECT_EQ(f.error().code, ErrorCode::kNotFound);
    auto d = LoadDefinitionsFromDirectory("/nonexistent/cogs");
    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().code, ErrorCode::kNotFound);
}

TEST(YamlTest, ToYamlRoundTripsTheReferenceWorkflow) {
    auto defs = LoadDefinitionsFromFile(ReferenceWorkflow());
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    std::string yaml = ToYaml((*defs)[0]);
    auto again = LoadDefinitionsFromString(yaml, "canonical.yaml");
    ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << yaml;
    ASSERT_EQ(again->size(), 1u);
    ExpectSameDefinition((*defs)[0], (*again)[0]);
    EXPECT_EQ(ToYaml((*again)[0]), yaml);
}

TEST(YamlTest, ToYamlRoundTripsEveryField) {
    RetryPolicy odd{
        7, microseconds(1500), minutes(90), 1.1, {ErrorCode::kFailedPrecondition, ErrorCode::kInternal}};
    auto def = DefinitionBuilder("odd-type_1.x")
                   .Deadline(hours(2) + milliseconds(1))
                   .Step("s1", "svc.act_1")
                   .Input(R"({"quote\"s":"a\\b\n\u0001é","num":1.50,"neg":-0,)"
                          R"("big":123456789012345678901234,"e":1E+5,"t":true,"n":null,)"
                          R"("looks_number":"123","looks_bool":"true","empty":"",)"
                          R"("":{"nested":[[],{}," # not a comment"]},"ref":"${input.a.0}","esc":"$${x}"})")
                   .Timeout(Duration(1))
                   .Retry(odd)
                   .Compensate("svc.undo-1")
                   .CompensationRetry(odd)
                   .Step("s2", "Svc.Act")
                   .After("s1")
                   .Input(R"(["${steps.s1.output}", 5])")
                   .StepDeadline(seconds(61))
                   .Compensate("svc.undo", R"("${steps.s2.output.id}")")
                   .Step("s3", "svc.act")
                   .Input("null")
                   .Step("s4", "svc.act")
                   .After("s3")
                   .After("s2")
                   .Input("-12.5e-3")
                   .Compensate("svc.undo", "{}")
                   .Build();
    ASSERT_TRUE(def.has_value()) << def.error().message;
    std::string yaml = ToYaml(*def);
    auto again = LoadDefinitionsFromString(yaml, "canonical.yaml");
    ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << yaml;
    ASSERT_EQ(again->size(), 1u);
    ExpectSameDefinition(*def, (*again)[0]);
}

// A client that is never called: the catalog only has to know the name.
class NamedOnly : public ServiceClient {
public:
    void Invoke(ActionCall, Callback done) override { done(MakeError(ErrorCode::kInternal, "not here")); }
    void Status(ActionCall, Callback done) override { done(MakeError(ErrorCode::kInternal, "not here")); }
};

// A workflow that names a service the control plane does not have is refused before it is
// registered, naming the file and line of the step (or its compensation) and the services there are.
TEST(CheckServicesTest, AnUnknownServiceIsRefusedNamingTheFileAndLine) {
    ServiceCatalog catalog;
    catalog.Add("network", std::make_shared<NamedOnly>());
    catalog.Add("compute", std::make_shared<NamedOnly>());
    const std::string text = R"(workflows:
  - type: server.create
    steps:
      - name: port
        action: network.create_port
        compensation:
          action: network.delete_port
      - name: dns
        action: dns.register
        depends_on: [port]
  - type: server.delete
    steps:
      - name: stop
        action: compute.stop
        compensation:
          action: cmdb.reopen
)";
    auto defs = LoadDefinitionsFromString(text, "cloud.yaml");
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    auto st = CheckServices(*defs, catalog);
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(st.error().message,
              "cloud.yaml:9: workflow 'server.create' step 'dns': no service 'dns' (the services: compute, "
              "network)");

    catalog.Add("dns", std::make_shared<NamedOnly>());
    st = CheckServices(*defs, catalog);
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(
        st.error().message,
        "cloud.yaml:16: workflow 'server.delete' step 'stop' compensation: no service 'cmdb' (the services: "
        "compute, dns, network)");

    catalog.Add("cmdb", std::make_shared<NamedOnly>());
    EXPECT_TRUE(CheckServices(*defs, catalog).has_value());
}

TEST(CheckServicesTest, AnActionTheServiceDoesNotHaveIsRefusedNamingTheFileAndLine) {
    ServiceCatalog catalog;
    catalog.Add("network", std::make_shared<NamedOnly>(), {"create_port", "delete_port"});
    catalog.Add("dns", std::make_shared<NamedOnly>(), {"register", "unregister"});
    const std::string text = R"(workflows:
  - type: server.create
    steps:
      - name: port
        action: network.create_port
        compensation:
          action: network.delete_port
      - name: dns
        action: dns.register
        depends_on: [port]
        compensation:
          action: dns.unregistr
)";
    auto defs = LoadDefinitionsFromString(text, "hooks.yaml");
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    auto st = CheckServices(*defs, catalog);
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(st.error().message,
              "hooks.yaml:12: workflow 'server.create' step 'dns' compensation: service 'dns' has no action "
              "'unregistr' (its actions: register, unregister)");

    catalog.Add("dns", std::make_shared<NamedOnly>(), {"register", "unregister", "unregistr"});
    EXPECT_TRUE(CheckServices(*defs, catalog).has_value());
    catalog.Remove("dns");
    EXPECT_FALSE(CheckServices(*defs, catalog).has_value());
}

}  // namespace
}  // namespace cogs::workflow
