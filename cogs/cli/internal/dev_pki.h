// The private CA of `cogs dev` (TLS on every link, on by default): <data dir>/pki/ holds a CA and
// one certificate per process, made with cogs/pki on the first start and reused afterwards.
// Internal to cogs/cli.
//
//   ca.crt ca.key              the CA (CN "cogs dev CA", 10 years): every process trusts it; the CLI
//                              trusts it through COGS_CACERT=<data dir>/pki/ca.crt
//   cogsd.crt cogsd.key        CN cogsd, SANs 127.0.0.1 and localhost: cogsd's API, and its client
//                              certificate to the services and agents (which accept only "cogsd")
//   network.* volume.*         CN cogs-network / cogs-volume, SANs 127.0.0.1 and localhost
//   host-N.crt host-N.key      CN host-N, DNS host-N, IP 127.0.0.1: the agent of host-N, as a server
//                              (cogsd verifies it by the host's name) and as cogsd's client
//   prometheus.*               CN prometheus: scrapes the services' /metrics (any certificate of the
//                              CA may read it)
// Keys are mode 0600. A certificate that is missing, unreadable, not issued by this CA, or that ends
// within 30 days is issued again (a new key too); a CA that is missing makes everything anew.
#pragma once

#include <string>

#include "cogs/base/result.h"

namespace cogs::cli {

struct DevPki {
    std::string dir;  // <data dir>/pki
    std::string ca() const { return dir + "/ca.crt"; }
    std::string cert(const std::string& name) const { return dir + "/" + name + ".crt"; }
    std::string key(const std::string& name) const { return dir + "/" + name + ".key"; }
};

// Makes or completes <data_dir>/pki for `hosts` hosts (host-1..host-N). Blocking file I/O.
Result<DevPki> EnsureDevPki(const std::string& data_dir, int hosts);

}  // namespace cogs::cli
