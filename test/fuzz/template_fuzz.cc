// Workflow input templates (cogs/workflow/internal/template.h). The input holds up to three parts
// split at NUL bytes: a template, the workflow's input (JSON text) and one step's output. The
// template is checked; one that passes is rendered against the input and the output, and whatever
// it renders is JSON.
#include <boost/json/parse.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cogs/base/check.h"
#include "cogs/workflow/internal/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace cogs::workflow::internal;
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    auto next = [&rest] {
        const size_t end = rest.find('\0');
        std::string_view part = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        return part;
    };
    const std::string_view tmpl = next();
    const std::string_view input = next();
    const std::string output(next());

    (void)ReferencedSteps(tmpl);
    auto checked = CheckTemplate(tmpl);
    if (!checked) {
        return 0;
    }
    // The canonical form is a fixed point.
    auto twice = CheckTemplate(checked->canonical);
    COGS_CHECK(twice.has_value() && twice->canonical == checked->canonical && twice->steps == checked->steps);

    RenderContext ctx;
    ctx.workflow_id = "wf-fuzz";
    ctx.input = input;
    ctx.step_output = [&output](std::string_view name) -> const std::string* {
        return name == "missing" ? nullptr : &output;
    };
    auto rendered = RenderTemplate(checked->canonical, ctx);
    if (rendered) {
        boost::system::error_code ec;
        (void)boost::json::parse(*rendered, ec);
        COGS_CHECK(!ec);
    }
    (void)DeriveId(input, output);
    return 0;
}
