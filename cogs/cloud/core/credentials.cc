#include "cogs/cloud/core/credentials.h"

#include "cogs/base/secret.h"
#include "cogs/cloud/core/context.h"

namespace cogs::cloud {

std::string AgentToken(std::string_view agent_key, std::string_view host, std::string_view enrollment) {
    std::string message = "cogs-agent-token/v1\n";
    message.append(host).append("\n").append(enrollment);
    return HmacSha256Hex(agent_key, message);
}

std::string EnrollmentOf(const Model& model, std::string_view host) {
    if (host.empty()) return "";
    const auto& tokens = model.Having(kToken, "host", host);
    return tokens.empty() ? std::string() : (*tokens.begin())->id;
}

std::string TokenFor(const Context& ctx, std::string_view service, const std::string& host) {
    if (service == "network") return ctx.options.network_token;
    if (service == "volume") return ctx.options.volume_token;
    if (service != "compute" || ctx.options.agent_key.empty()) return "";
    return AgentToken(ctx.options.agent_key, host, EnrollmentOf(ctx.model, host));
}

}  // namespace cogs::cloud
