// CIDRs, addresses and allocation pools as cogs-network reads them: the rules of cogs/netaddr, which
// cogsd applies to the same input before it starts a workflow. Each line of the input is an
// action of the network domain with its JSON input, "ACTION {...}", performed in order on a fresh
// domain that holds network "n1" (create_subnet, create_port with or without fixed_ip, update_port,
// delete_port, delete_subnet), as the kit performs them. Each line is also read as an address and
// as a CIDR on its own.
//
// What must hold: an address or CIDR that parses formats back to the same text; a refused CIDR says
// why; the records the actions wrote load into a new domain that then shows the same inventory.
#include <boost/json/parse.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "cogs/base/check.h"
#include "cogs/netaddr/ipv4.h"
#include "cogs/services/kit/dispatch.h"
#include "cogs/services/network/network.h"

namespace {

using namespace cogs::services;
using Records = std::map<std::pair<std::string, std::string>, std::string>;

void CheckText(std::string_view line) {
    using cogs::netaddr::FormatIpv4;
    using cogs::netaddr::ParseCidr;
    using cogs::netaddr::ParseIpv4;
    if (auto ip = ParseIpv4(line)) {
        COGS_CHECK(FormatIpv4(*ip) == line);
    }
    const auto cidr = ParseCidr(line);
    if (cidr.cidr) {
        COGS_CHECK(cidr.cidr->ToString() == line);
        COGS_CHECK(cidr.cidr->prefix >= cogs::netaddr::kMinPrefix &&
                   cidr.cidr->prefix <= cogs::netaddr::kMaxPrefix);
        COGS_CHECK(cidr.cidr->first_host() <= cidr.cidr->last_host());
    } else {
        COGS_CHECK(!cidr.problem.empty());
    }
}

void Perform(const kit::ActionTable& actions, std::string_view action, std::string_view input,
             Records& records) {
    kit::Tx tx;
    if (!actions.Perform(action, input, tx)) {
        return;  // refused: the kit drops the writes
    }
    for (const auto& w : tx.writes()) {
        if (w.erase) {
            records.erase({w.table, w.id});
        } else {
            records[{w.table, w.id}] = w.json;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<kit::Domain> domain = network::MakeNetworkDomain();
    const kit::ActionTable actions(*domain);
    Records records;
    Perform(actions, "create_network", R"({"id":"n1","name":"net","project_id":"p1"})", records);

    std::string_view rest(reinterpret_cast<const char*>(data), size);
    for (int lines = 0; !rest.empty() && lines < 64; ++lines) {
        const size_t end = rest.find('\n');
        const std::string_view line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        CheckText(line);
        const size_t space = line.find(' ');
        if (space != std::string_view::npos && actions.Has(line.substr(0, space))) {
            Perform(actions, line.substr(0, space), line.substr(space + 1), records);
        }
    }

    // What was written is what a restart loads (network.h: in any table order).
    const std::string inventory = domain->Inventory();
    boost::system::error_code ec;
    (void)boost::json::parse(inventory, ec);
    COGS_CHECK(!ec);
    std::unique_ptr<kit::Domain> reloaded = network::MakeNetworkDomain();
    for (const auto& [key, text] : records) {
        COGS_CHECK(reloaded->Load(key.first, key.second, text).has_value());
    }
    COGS_CHECK(reloaded->Inventory() == inventory);
    return 0;
}
