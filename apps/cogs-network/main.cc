// cogs-network: the network micro-service (cogs/services/network) served by the micro-service kit
// until SIGTERM or SIGINT.
//
//   cogs-network --listen 127.0.0.1:0 --port-file /tmp/net.port --state /tmp/net.db
//
// Flags are the kit's (cogs/services/kit/flags.h): --listen --port-file --state --seed --token-file
// --log-level --max-body-bytes and the fault flags. Without --state everything lives in memory.
#include <CLI/CLI.hpp>

#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/network/network.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-network: networks, subnets, ports and their addresses"};
    cogs::services::kit::ServeOptions options;
    cogs::services::kit::AddServeFlags(app, options);
    CLI11_PARSE(app, argc, argv);
    return cogs::services::kit::Serve(options, cogs::services::network::MakeNetworkDomain());
}
