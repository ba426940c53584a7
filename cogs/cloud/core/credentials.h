// What cogsd presents when it calls out: the network and volume services their own tokens
// (CloudOptions::network_token, volume_token), and each compute host's agent its own agent token,
// derived here so that cogsd stores nothing but the agent key (docs/decisions.md, decision 33):
//
//   agent token = hex HMAC-SHA256(agent key, "cogs-agent-token/v1\n" + host + "\n" + enrollment)
//
// where `enrollment` is the id of the host's current host token (the token its agent presents to
// cogsd, made by POST /v1/hosts/{name}/enroll). So one agent's token says nothing about another's
// or about the key, and enrolling a host again (which revokes its host token) changes its agent
// token too. A host never enrolled has enrollment "": its agent must run with --insecure.
#pragma once

#include <string>
#include <string_view>

namespace cogs::cloud {

class Context;
class Model;

std::string AgentToken(std::string_view agent_key, std::string_view host, std::string_view enrollment);

// The id of `host`'s current host token ("" if it has none).
std::string EnrollmentOf(const Model& model, std::string_view host);

// The token to present to `service` ("network", "volume", or "compute" for `host`'s agent); ""
// when cogsd has none for it (started with --insecure).
std::string TokenFor(const Context& ctx, std::string_view service, const std::string& host = "");

}  // namespace cogs::cloud
