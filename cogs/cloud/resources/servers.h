// Servers: built, deleted, started, stopped and rebooted by workflows (workflows/cloud/servers.yaml)
// over cogs-network (its port), placement (scheduler.claim), the compute agent of its host and
// cogs-volume. A server holds its quota (servers, vcpus, ram_mb and its port's ports unit) from its
// create until it is gone, or until its create rolled back.
//
// A create whose host failed during the build is built again elsewhere (heal/healer.h,
// Reschedule); a server.delete with ?delete_volumes=true deletes its volumes once it is gone.
// Evacuation, migration and repair are heal/'s.
#pragma once

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Volumes;
namespace heal {
class Healer;
}

// A server's user_data (Nova's): base64 in the create request, at most this many bytes once decoded
// (400 naming `user_data` beyond, or when it is not base64; nothing is written). Kept with the server
// (internal, never shown) and passed to every create_instance of it (create, evacuate, repair,
// migrate); the compute agent runs it at boot, and checks the same limit again
// (services/compute/internal/instance_fields.h, kMaxUserData).
inline constexpr size_t kMaxUserDataBytes = 64 * 1024;

// The public keys a server's instance is given (create_instance's `public_keys`, at its create and
// every rebuild): its key pair's (`key_name` at the create, docs/api.md "Key pairs"), kept with the
// server ("_public_key", never shown: the key pair may be deleted or another made with its name
// since, as in Nova), or none.
json::array PublicKeysOf(const Res& server);

class Servers {
public:
    // Registers the settle functions of server.create, server.delete, server.start|stop|reboot.
    Servers(Context& ctx, Volumes& volumes, heal::Healer& healer);

    // POST /v1/servers: one server, or with min_count/max_count many (docs/api.md "Bulk create"):
    // as many as the project's workflows in flight and quota allow between them, each with its own
    // port and server.create workflow, all committed in one transaction with the answer's
    // Idempotency-Key record, and answered {"reservation_id", "servers": [{id, name, status,
    // workflow_id}]}. Every server keeps its request's reservation_id.
    void Create(Creation c);
    // DELETE /v1/servers/{id}[?delete_volumes=true].
    void Delete(Call call);
    // POST /v1/servers/{id}/start|stop|reboot.
    void Act(Call call, std::string_view action);

private:
    // A create request, checked (nothing reserved or written yet).
    struct Plan {
        std::string project, name, net_id, group_id, policy, az, weigher;
        std::string port_id;               // a port of the project to boot on ("": a new one)
        std::string user_data;             // base64, as given (checked here, decoded by the compute agent)
        std::string key_name, public_key;  // a key pair of the project, and its key ("": none)
        const Res* flavor = nullptr;
        const Res* image = nullptr;
        std::vector<std::string> volume_ids;
        bool bulk = false;  // min_count or max_count given: the bulk answer
        int64_t min_count = 1, max_count = 1;
        // What one server of it holds: servers, vcpus, ram_mb, and a port unless it boots on one.
        Amount Quota() const;
    };
    // One server of `p` named `name` (its quota reserved) and its port in the model, BUILD, and the
    // launch of its server.create (whose undo erases them and gives the quota back). On the port
    // `p.port_id`: that port, bound to the server in the model at once (no other server may take it;
    // the undo unbinds it), and a server.create with keep_port.
    Launch Build(const Plan& p, const std::string& name, const std::string& reservation,
                 const std::string& traceparent);
    void SettleCreate(Settlement& s);
    void SettleDelete(Settlement& s);
    // A given port of `server_id` is free again (its create rolled back, its delete done), unless
    // another server holds it by now.
    void Unbind(Settlement& st, Res& port, const std::string& server_id);
    void SettlePower(Settlement& s, std::string_view action);
    Context& ctx_;
    Volumes& volumes_;
    heal::Healer& healer_;
};

}  // namespace cogs::cloud
