// The CLI's config file (cogs/cli/internal/config.h): the text is written to a file that
// ResolveSettings reads as --config, with no environment. It is an answer or an error, never a
// crash; a url or token that loads is one of the file's scalars.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "cogs/base/check.h"
#include "cogs/cli/internal/config.h"

namespace {

// In memory where there is a /dev/shm: writing the file is most of an input's time.
const std::string& ConfigPath() {
    namespace fs = std::filesystem;
    static const std::string path =
        ((fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
         ("cogs-fuzz-cli-config-" + std::to_string(::getpid()) + ".yaml"))
            .string();
    return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& path = ConfigPath();
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    auto no_env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    auto settings = cogs::cli::ResolveSettings("", "", path, no_env);
    if (settings) {
        COGS_CHECK(settings->config_path == path);
        COGS_CHECK(!settings->url.empty());
    } else {
        COGS_CHECK(!settings.error().empty());
    }
    return 0;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)ConfigPath();  // made before the handler that removes it is registered, so it outlives it
    std::atexit([] { std::filesystem::remove(ConfigPath()); });
    return 0;
}
