// cogs-network: the network micro-service (cogs/services/network) served by the micro-service kit
// until SIGTERM or SIGINT.
//
//   cogs-network --listen 127.0.0.1:0 --port-file /tmp/net.port --state /tmp/net.db
//   cogs-network --driver linux --netns-prefix cg ...     # a Linux bridge per network (root)
//
// Flags are the kit's (cogs/services/kit/flags.h): --listen --port-file --state --seed --token-file
// --log-level --max-body-bytes and the fault flags, plus --driver, --netns-prefix and
// --sweep-interval-s. Without --state everything lives in memory.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/network/network.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-network: networks, subnets, ports and their addresses"};
    cogs::services::kit::ServeOptions options;
    cogs::services::kit::AddServeFlags(app, options);
    cogs::services::network::NetworkOptions network;
    int64_t sweep_s = 60;
    app.add_option("--driver", network.driver,
                   "what carries the networks: none (records only), linux (a Linux bridge per network on "
                   "this machine; root)")
        ->check(CLI::IsMember({"none", "linux"}))
        ->capture_default_str();
    app.add_option(
           "--netns-prefix", network.prefix,
           "linux: the prefix of the bridges' and veths' names, as the compute agents' --netns-prefix")
        ->capture_default_str();
    app.add_option("--sweep-interval-s", sweep_s,
                   "linux: how often bridges and veths that no network or port owns are collected (0: only "
                   "at start)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    network.sweep_interval = std::chrono::seconds(sweep_s);
    auto domain = cogs::services::network::MakeNetworkDomain(network);
    if (!domain) {
        spdlog::critical("{}", domain.error().message);
        return 2;
    }
    return cogs::services::kit::Serve(options, std::move(*domain));
}
