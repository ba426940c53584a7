// Reading cogs's YAML files — workflows and hooks (definition_yaml.cc), cogsd's services.d and
// kinds.d (cogs/extend) — the same way: the one guard against yaml-cpp 0.7's LoadAll stall, every
// refusal worded "<source>:<line>: <problem>", unknown and repeated keys refused. yaml-cpp's types
// are this adapter's surface: include it only from a file that parses YAML.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "cogs/base/result.h"

namespace cogs::workflow {

class YamlReader {
public:
    explicit YamlReader(std::string source) : source_(std::move(source)) {}

    // Calls `load` for every document of `text` (an empty one is a null node), in order, stopping
    // at the first error. A syntax error, or text where no document or value can start, is
    // kInvalidArgument naming its line.
    Status ForEachDocument(const std::string& text,
                           const std::function<Status(const YAML::Node&)>& load) const;

    // Calls `load` for each item of every document: the items of its list under `list` ("workflows:
    // [...]"), or the document itself when it has no such key (a single `one`). An empty document
    // holds none; another shape is "want a mapping: '<list>:' with a list, or a single <one>".
    Status ForEachItem(const std::string& text, const std::string& list, const std::string& one,
                       const std::function<Status(const YAML::Node&)>& load) const;

    // "<source>:<line>" (the source alone without a line).
    std::string At(const YAML::Mark& m) const;
    std::string At(const YAML::Node& n) const { return At(n.Mark()); }
    // kInvalidArgument "<source>:<line of n>: <problem>".
    tl::unexpected<Error> Fail(const YAML::Node& n, const std::string& problem) const;
    // `n` is a mapping whose keys are all in `known`, each at most once; else "unknown field 'x' in
    // <what> (known: a, b)", "field 'x' given twice in <what>" or "<what> must be a mapping".
    Status CheckFields(const YAML::Node& n, const std::string& what,
                       std::initializer_list<std::string_view> known) const;
    // A scalar's text; else "<what> must be a string".
    Result<std::string> String(const YAML::Node& n, const std::string& what) const;

    // Any YAML value as JSON text. Quoted scalars are strings; plain ones that read as JSON
    // numbers, true/false or null keep that type (YAML 1.2's core schema, minus its hex, octal and
    // .inf forms, which stay strings); the number text is kept as written. Bounded: nested at most 64
    // deep, at most 100,000 values (aliases can make a small file expand enormously), else
    // "<what> is nested more than ..." / "<what> has more than ...".
    Result<std::string> Json(const YAML::Node& n, const std::string& what) const;

    const std::string& source() const { return source_; }

private:
    Status ToJson(const YAML::Node& n, const std::string& what, int depth, std::size_t& budget,
                  std::string& out) const;

    std::string source_;
};

}  // namespace cogs::workflow
