#include "cogs/workflow/registry.h"

namespace cogs::workflow {

Status Registry::LoadFromStore() {
    auto saved = store_->LoadDefinitions();
    if (!saved) {
        return MakeError(saved.error());
    }
    for (const auto& rec : *saved) {
        auto defs =
            LoadDefinitionsFromString(rec.text, "store:" + rec.type + "@" + std::to_string(rec.version));
        if (!defs) {
            return MakeError(defs.error());
        }
        if (defs->size() != 1) {
            return MakeError(ErrorCode::kInternal, "stored definition " + rec.type + " holds " +
                                                       std::to_string(defs->size()) + " workflows");
        }
        Definition d = std::move(defs->front());
        d.version = rec.version;
        defs_[rec.type][rec.version] = std::make_shared<const Definition>(std::move(d));
    }
    return Ok();
}

Result<int> Registry::Register(Definition def) {
    auto valid = Validate(std::move(def));
    if (!valid) {
        return MakeError(valid.error());
    }
    const std::string text = ToYaml(*valid);
    if (const Definition* latest = Latest(valid->type); latest != nullptr && ToYaml(*latest) == text) {
        return latest->version;
    }
    valid->version = Latest(valid->type) == nullptr ? 1 : Latest(valid->type)->version + 1;
    if (auto saved = store_->SaveDefinition({valid->type, valid->version, text}); !saved) {
        return MakeError(saved.error());
    }
    const int version = valid->version;
    const std::string type = valid->type;  // not valid->type below: the right side is moved first
    defs_[type][version] = std::make_shared<const Definition>(std::move(*valid));
    return version;
}

Status Registry::RegisterAll(std::vector<Definition> defs) {
    // Validate everything first so that a bad definition registers nothing.
    std::vector<Definition> valid;
    for (auto& d : defs) {
        auto v = Validate(std::move(d));
        if (!v) {
            return MakeError(v.error());
        }
        valid.push_back(std::move(*v));
    }
    for (auto& d : valid) {
        if (auto r = Register(std::move(d)); !r) {
            return MakeError(r.error());
        }
    }
    return Ok();
}

const Definition* Registry::Latest(const std::string& type) const {
    auto it = defs_.find(type);
    if (it == defs_.end() || it->second.empty()) {
        return nullptr;
    }
    return it->second.rbegin()->second.get();
}

const Definition* Registry::Get(const std::string& type, int version) const {
    auto it = defs_.find(type);
    if (it == defs_.end()) {
        return nullptr;
    }
    auto v = it->second.find(version);
    return v == it->second.end() ? nullptr : v->second.get();
}

std::vector<std::string> Registry::Types() const {
    std::vector<std::string> out;
    for (const auto& [type, _] : defs_) {
        out.push_back(type);
    }
    return out;
}

}  // namespace cogs::workflow
