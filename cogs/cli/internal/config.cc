#include "cogs/cli/internal/config.h"

#include <filesystem>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace cogs::cli {

std::string DefaultConfigPath(const GetEnv& getenv) {
    if (auto xdg = getenv("XDG_CONFIG_HOME"); xdg && !xdg->empty()) {
        return *xdg + "/cogs/config.yaml";
    }
    if (auto home = getenv("HOME"); home && !home->empty()) {
        return *home + "/.config/cogs/config.yaml";
    }
    return "";
}

tl::expected<Settings, std::string> ResolveSettings(const std::string& flag_url,
                                                    const std::string& flag_token,
                                                    const std::string& flag_config, const GetEnv& getenv) {
    Settings s;
    std::string file_url;
    std::string file_token;
    s.config_path = flag_config.empty() ? DefaultConfigPath(getenv) : flag_config;
    std::error_code ec;
    if (!s.config_path.empty() && std::filesystem::exists(s.config_path, ec)) {
        try {
            const YAML::Node root = YAML::LoadFile(s.config_path);
            if (root && !root.IsNull()) {
                if (!root.IsMap()) {
                    return tl::unexpected(
                        fmt::format("{}: expected a map with url and token", s.config_path));
                }
                for (const auto& kv : root) {
                    const auto key = kv.first.as<std::string>();
                    if (key != "url" && key != "token") {
                        return tl::unexpected(fmt::format("{}:{}: unknown key '{}' (expected url, token)",
                                                          s.config_path, kv.first.Mark().line + 1, key));
                    }
                    if (!kv.second.IsScalar()) {
                        return tl::unexpected(fmt::format("{}:{}: {} must be a string", s.config_path,
                                                          kv.second.Mark().line + 1, key));
                    }
                    (key == "url" ? file_url : file_token) = kv.second.as<std::string>();
                }
            }
        } catch (const YAML::Exception& e) {
            return tl::unexpected(fmt::format("{}: {}", s.config_path, e.what()));
        }
    } else if (!flag_config.empty()) {
        return tl::unexpected(fmt::format("{}: no such config file", flag_config));
    } else {
        s.config_path.clear();
    }
    auto pick = [&](const std::string& flag, const char* env, const std::string& file) -> std::string {
        if (!flag.empty()) {
            return flag;
        }
        if (auto v = getenv(env); v && !v->empty()) {
            return *v;
        }
        return file;
    };
    s.url = pick(flag_url, "COGS_URL", file_url);
    if (s.url.empty()) {
        s.url = kDefaultUrl;
    }
    s.token = pick(flag_token, "COGS_TOKEN", file_token);
    s.ca_file = pick("", "COGS_CACERT", "");
    return s;
}

}  // namespace cogs::cli
