// Hooks (definition.h): loading them from YAML and weaving them into workflows.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cogs/workflow/definition.h"

namespace cogs::workflow {
namespace {

constexpr char kShipped[] = R"(workflows:
  - type: server.create
    steps:
      - name: create_port
        action: network.create_port
        input: {id: "${input.port_id}"}
      - name: claim
        action: scheduler.claim
      - name: boot
        action: compute.create_instance
        depends_on: [create_port, claim]
      - name: attach_volumes
        action: volume.attach_volumes
        depends_on: [boot]
  - type: server.delete
    steps:
      - name: delete_instance
        action: compute.delete_instance
      - name: delete_port
        action: network.delete_port
        depends_on: [delete_instance]
)";

std::vector<Definition> Shipped() {
    auto defs = LoadDefinitionsFromString(kShipped, "servers.yaml");
    EXPECT_TRUE(defs.has_value()) << defs.error().message;
    return defs ? *defs : std::vector<Definition>{};
}

std::vector<Hook> Hooks(const std::string& text) {
    auto hooks = LoadHooksFromString(text, "dns.yaml");
    EXPECT_TRUE(hooks.has_value()) << hooks.error().message;
    return hooks ? *hooks : std::vector<Hook>{};
}

const StepDef& Step(const Definition& def, const std::string& name) {
    const int i = def.StepIndex(name);
    EXPECT_GE(i, 0) << name;
    return def.steps.at(static_cast<size_t>(i));
}

// The names of the steps in the order the engine may start them.
std::vector<std::string> Order(const Definition& def) {
    std::vector<std::string> out;
    for (int i : def.topo_order) {
        out.push_back(def.steps[static_cast<size_t>(i)].name);
    }
    return out;
}

Error Refusal(const std::string& hooks_yaml) {
    auto hooks = LoadHooksFromString(hooks_yaml, "dns.yaml");
    if (!hooks) return hooks.error();
    auto woven = ApplyHooks(Shipped(), *hooks);
    EXPECT_FALSE(woven.has_value());
    return woven ? Error(ErrorCode::kInternal, "accepted") : woven.error();
}

TEST(HooksTest, AHookAfterAStepRunsBeforeEveryStepThatFollowedIt) {
    auto hooks = Hooks(R"(hooks:
  - workflow: server.create
    after: boot
    name: dns_register
    action: dns.register
    input: {server_id: "${input.server_id}", address: "${steps.create_port.output.fixed_ip}"}
    timeout: 3s
    retry: {max_attempts: 7}
    compensation:
      action: dns.unregister
      input: {server_id: "${input.server_id}"}
)");
    ASSERT_EQ(hooks.size(), 1u);
    EXPECT_EQ(hooks[0].origin, "dns.yaml:2");
    EXPECT_EQ(hooks[0].step.action.origin, "dns.yaml:5");
    auto woven = ApplyHooks(Shipped(), hooks);
    ASSERT_TRUE(woven.has_value()) << woven.error().message;
    const Definition& create = (*woven)[0];
    const StepDef& dns = Step(create, "dns_register");
    EXPECT_EQ(dns.depends_on, std::vector<std::string>{"boot"});
    EXPECT_EQ(dns.timeout, std::chrono::seconds(3));
    EXPECT_EQ(dns.retry.max_attempts, 7);
    ASSERT_TRUE(dns.compensation.has_value());
    EXPECT_EQ(dns.compensation->action.FullName(), "dns.unregister");
    EXPECT_EQ(Step(create, "attach_volumes").depends_on, (std::vector<std::string>{"boot", "dns_register"}));
    EXPECT_EQ(Order(create),
              (std::vector<std::string>{"create_port", "claim", "boot", "dns_register", "attach_volumes"}));
    // The other workflow is untouched; the woven one is a new version's text.
    EXPECT_EQ(ToYaml((*woven)[1]), ToYaml(Shipped()[1]));
    EXPECT_NE(ToYaml(create), ToYaml(Shipped()[0]));
    auto again = LoadDefinitionsFromString(ToYaml(create), "again.yaml");
    ASSERT_TRUE(again.has_value()) << again.error().message;
    EXPECT_EQ(ToYaml((*again)[0]), ToYaml(create));
}

TEST(HooksTest, AHookBeforeAStepRunsAfterItsDependenciesAndHoldsItBack) {
    auto woven = ApplyHooks(Shipped(), Hooks(R"(
workflow: server.delete
before: delete_port
name: cmdb_retire
action: cmdb.retire
)"));
    ASSERT_TRUE(woven.has_value()) << woven.error().message;
    const Definition& del = (*woven)[1];
    EXPECT_EQ(Step(del, "cmdb_retire").depends_on, std::vector<std::string>{"delete_instance"});
    EXPECT_EQ(Step(del, "delete_port").depends_on,
              (std::vector<std::string>{"delete_instance", "cmdb_retire"}));
    EXPECT_EQ(Order(del), (std::vector<std::string>{"delete_instance", "cmdb_retire", "delete_port"}));

    // Before the first step: it runs first.
    woven =
        ApplyHooks(Shipped(), Hooks("{workflow: server.delete, before: delete_instance, name: cmdb_retire, "
                                    "action: cmdb.retire}"));
    ASSERT_TRUE(woven.has_value()) << woven.error().message;
    EXPECT_EQ(Order((*woven)[1]),
              (std::vector<std::string>{"cmdb_retire", "delete_instance", "delete_port"}));
}

TEST(HooksTest, HooksAtOnePlaceRunSideBySide) {
    auto woven = ApplyHooks(Shipped(), Hooks(R"(hooks:
  - {workflow: server.create, after: boot, name: dns_register, action: dns.register}
  - {workflow: server.create, after: boot, name: billing_tag, action: billing.tag}
)"));
    ASSERT_TRUE(woven.has_value()) << woven.error().message;
    const Definition& create = (*woven)[0];
    EXPECT_EQ(Step(create, "dns_register").depends_on, std::vector<std::string>{"boot"});
    EXPECT_EQ(Step(create, "billing_tag").depends_on, std::vector<std::string>{"boot"});
    EXPECT_EQ(Step(create, "attach_volumes").depends_on,
              (std::vector<std::string>{"boot", "dns_register", "billing_tag"}));
}

TEST(HooksTest, AHookThatCannotBePlacedIsRefusedNamingItsFileAndLine) {
    EXPECT_EQ(Refusal("\n{workflow: server.craete, after: boot, name: dns, action: dns.register}").message,
              "dns.yaml:2: hook 'dns' of workflow 'server.craete': no such workflow (the workflows: "
              "server.create, server.delete)");
    EXPECT_EQ(
        Refusal("{workflow: server.create, after: bot, name: dns, action: dns.register}").message,
        "dns.yaml:1: hook 'dns' of workflow 'server.create': no step 'bot' (its steps: create_port, claim, "
        "boot, attach_volumes)");
    EXPECT_EQ(
        Refusal("{workflow: server.create, after: boot, name: claim, action: dns.register}").message,
        "dns.yaml:1: hook 'claim' of workflow 'server.create': the name 'claim' is already a step of the "
        "workflow");
    // Its input may name only steps that run before it.
    const Error e = Refusal(R"(hooks:
  - workflow: server.create
    before: claim
    name: dns
    action: dns.register
    input: {address: "${steps.create_port.output.fixed_ip}"}
)");
    EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(e.message.find("dns.yaml:2"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("'create_port', which does not run before it"), std::string::npos) << e.message;
}

TEST(HooksTest, ABadHookFileIsRefusedNamingTheLine) {
    const auto message = [](const std::string& text) {
        auto hooks = LoadHooksFromString(text, "h.yaml");
        return hooks ? std::string("accepted") : hooks.error().message;
    };
    EXPECT_EQ(message("hooks:\n  - {workflow: server.create, name: dns, action: dns.register}\n"),
              "h.yaml:2: hook 'dns' needs exactly one of 'after' and 'before' (the step it is placed by)");
    EXPECT_EQ(message("hooks:\n  - {workflow: w, after: a, before: b, name: dns, action: dns.register}\n"),
              "h.yaml:2: hook 'dns' needs exactly one of 'after' and 'before' (the step it is placed by)");
    EXPECT_NE(message("{workflow: w, after: a, name: dns, action: dns.register, depends_on: [a]}")
                  .find("h.yaml:1: unknown field 'depends_on' in hook 'dns'"),
              std::string::npos);
    EXPECT_EQ(message("{after: a, name: dns, action: dns.register}"),
              "h.yaml:1: hook 'dns' has no 'workflow' (the type of the workflow it joins)");
    EXPECT_EQ(message("{workflow: w, after: a, name: dns, action: dnsregister}").substr(0, 27),
              "h.yaml:1: hook 'dns': actio");
    EXPECT_EQ(message("hooks: {}"), "h.yaml:1: 'hooks' must be a list");
    EXPECT_EQ(message("# nothing yet\n"), "accepted");
}

TEST(HooksTest, ADirectoryOfHookFilesLoadsInNameOrder) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("cogs-hooks-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "b.yaml") << "{workflow: server.create, after: boot, name: b, action: x.b}\n";
    std::ofstream(dir / "a.yml") << "{workflow: server.create, after: boot, name: a, action: x.a}\n";
    std::ofstream(dir / ".a.yaml.swp") << "not yaml: [";
    auto hooks = LoadHooksFromDirectory(dir.string());
    fs::remove_all(dir);
    ASSERT_TRUE(hooks.has_value()) << hooks.error().message;
    ASSERT_EQ(hooks->size(), 2u);
    EXPECT_EQ((*hooks)[0].step.name, "a");
    EXPECT_EQ((*hooks)[1].step.name, "b");
    EXPECT_EQ((*hooks)[1].origin, (dir / "b.yaml").string() + ":1");
}

}  // namespace
}  // namespace cogs::workflow
