// cogs-volume: serves the volume domain (cogs/services/volume) with the micro-service kit until
// SIGTERM or SIGINT.
//
//   cogs-volume --listen 127.0.0.1:0 --port-file /tmp/v.port --state /tmp/v/state.db --driver file
//
// --driver sim (default) keeps records only; --driver file backs every volume with a sparse file
// holding an ext4 file system (mkfs.ext4, from e2fsprogs) in --volume-dir (default: <directory of
// --state>/volumes, or ./volumes without --state).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <filesystem>

#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/volume/volume.h"

int main(int argc, char** argv) {
    using namespace cogs::services;
    CLI::App app{"cogs-volume: the cogs block-volume micro-service"};
    kit::ServeOptions options;
    kit::AddServeFlags(app, options);
    std::string driver_name = "sim";
    std::string volume_dir;
    app.add_option("--driver", driver_name,
                   "what backs volumes: sim (records only) or file (sparse files holding ext4)")
        ->check(CLI::IsMember({"sim", "file"}))
        ->capture_default_str();
    app.add_option("--volume-dir", volume_dir,
                   "directory of the file driver's volumes (default: <dir of --state>/volumes)");
    CLI11_PARSE(app, argc, argv);
    if (!kit::SetupProcessLogging(options, "cogs-volume")) {
        return 2;
    }

    if (volume_dir.empty() && driver_name == "file") {
        const std::filesystem::path state(options.service.state_path);
        const std::filesystem::path parent = state.has_parent_path() ? state.parent_path() : ".";
        volume_dir = (parent / "volumes").string();
    }
    auto driver = volume::MakeVolumeDriver(driver_name, volume_dir);
    if (!driver) {
        spdlog::critical("{}", driver.error().message);
        return 2;
    }
    if (driver_name == "file") {
        spdlog::info("file driver, volumes in {}", volume_dir);
    }
    return kit::Serve(options, volume::MakeVolumeDomain(std::move(*driver)));
}
