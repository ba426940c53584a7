// `cogs dev`: the one-command local cloud (see README.md). Internal to cogs/cli.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace cogs::cli {

struct DevOptions {
    std::string data_dir = ".cogs";
    uint16_t port = 8780;  // the API's port; 0 picks a free one (written to <data-dir>/dev.json)
    int hosts = 3;
    int boot_ms = 200;
    std::string volume_driver = "file";
    int start_timeout_s = 60;  // per child: its port file, then the hosts up
    std::vector<std::string> cogsd_args;  // appended to cogsd's (e.g. --lease-ttl-ms=1000)
};

// Starts the services, cogsd and the compute hosts as children, seeds the catalog, prints the
// endpoint and admin token, then supervises until SIGINT/SIGTERM. Returns the exit code.
int RunDev(const DevOptions& options, std::ostream& out, std::ostream& err);

}  // namespace cogs::cli
