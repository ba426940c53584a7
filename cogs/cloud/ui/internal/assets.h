// The console's files as embedded at build time: embed.cmake writes the definition of Assets() from
// cogs/cloud/ui/web into the build directory (ui_assets.cc), one entry per file, named by its path
// under web/ with '/' separators ("index.html", "js/api.js").
#pragma once

#include <span>
#include <string_view>

namespace cogs::cloud::ui::internal {

struct Asset {
    std::string_view name;
    std::string_view content;
};

// Every embedded file, sorted by name.
std::span<const Asset> Assets();

}  // namespace cogs::cloud::ui::internal
