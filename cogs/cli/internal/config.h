// Where the CLI finds its endpoint and token: flags > environment (COGS_URL, COGS_TOKEN; COGS_CACERT,
// the CA of an https endpoint, from the environment or --ca-file only) > the
// config file (--config, default $XDG_CONFIG_HOME/cogs/config.yaml or ~/.config/cogs/config.yaml,
// YAML {url, token}) > the default URL of `cogs dev` (http://127.0.0.1:8780) and no token.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <tl/expected.hpp>

namespace cogs::cli {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

inline constexpr const char* kDefaultUrl = "http://127.0.0.1:8780";

struct Settings {
    std::string url{};
    std::string token{};
    std::string ca_file{};      // COGS_CACERT: the CA of an https endpoint (--ca-file overrides)
    std::string config_path{};  // the file consulted ("" if none)
};

// The default config file path ("" if neither XDG_CONFIG_HOME nor HOME is set).
std::string DefaultConfigPath(const GetEnv& getenv);

// Resolves url and token. A missing file is fine at the default path, an error when named with
// --config; a file that is not YAML, or whose url/token are not strings, is an error.
tl::expected<Settings, std::string> ResolveSettings(const std::string& flag_url,
                                                    const std::string& flag_token,
                                                    const std::string& flag_config, const GetEnv& getenv);

}  // namespace cogs::cli
