#include "cogs/cli/internal/resources.h"

#include <algorithm>

#include <fmt/format.h>

#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/special_commands.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

Column Col(std::string header, std::string field) {
    return {std::move(header), [field](const json::object& o) { return Cell(o, field); }};
}

// "used/total" for a host's capacity.
Column UsedOf(std::string header, std::string field) {
    return {std::move(header),
            [field](const json::object& o) { return Cell(o, "used." + field) + "/" + Cell(o, field); }};
}

// The flavor's name where the API gives it, else its id.
Column FlavorCol() {
    return {"FLAVOR", [](const json::object& o) {
                const std::string name = Cell(o, "flavor");
                return name.empty() ? Cell(o, "flavor_id") : name;
            }};
}

Flag MakeFlag(std::string name, Flag::Type type, std::string key, std::string help) {
    Flag f;
    f.name = std::move(name);
    f.type = type;
    f.key = std::move(key);
    f.help = std::move(help);
    return f;
}

Verb MakeVerb(Verb::Kind kind, std::string name, std::string help, std::vector<Flag> flags = {}) {
    Verb v{kind, std::move(name), std::move(help)};
    v.flags = std::move(flags);
    return v;
}

std::vector<Resource> MakeTable() {
    return {
        {.noun = "server",
         .collection = "servers",
         .help = "servers (virtual machines)",
         .ref_help = "server name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("STATUS", "status"), FlavorCol(),
                     Col("IP", "ip_address"), Col("HOST", "host"), Col("FAULT", "fault.message")},
         .verbs = {Create(
                       "create a server",
                       {Text("name", "name", "server name").Required(),
                        // Flavors and images: names as they are (the API takes them).
                        Text("--flavor", "flavor", "flavor name or id").Required(),
                        Text("--image", "image", "image name or id").Required(),
                        Text("--network", "network_id", "network name or id (or --port)").IdsOf("networks"),
                        Text("--port", "port_id",
                             "a free port name or id to boot on (its network and address); the port "
                             "stays yours when the server is deleted")
                            .IdsOf("ports"),
                        Texts("--volume", "volume_ids", "volume name or id to attach (repeatable)")
                            .IdsOf("volumes"),
                        Text("--group", "server_group_id", "server group name or id").IdsOf("server-groups"),
                        Text("--az", "availability_zone", "availability zone"),
                        Text("--weigher", "weigher", "placement weigher").OneOf({"spread", "pack"}),
                        Text("--user-data", "user_data",
                             "file run as a shell script in the server at every boot (at most 64 KiB)")
                            .FileBase64(),
                        Text("--key-name", "key_name",
                             "key pair whose public key the server gets (/run/cogs/authorized_keys)"),
                        Int("--min-count", "min_count",
                            "make at least this many servers, named NAME-1, NAME-2, ... (one request, "
                            "one reservation)")
                            .Positive(),
                        Int("--max-count", "max_count",
                            "make at most this many: as many as the quota allows from --min-count "
                            "(default: --min-count)")
                            .Positive()})
                       .Wait("ACTIVE"),
                   List("list servers", {Text("--status", "status", "only servers in this status"),
                                         Text("--name", "name", "only servers with this name"),
                                         Text("--host", "host", "only servers on this host (admin)"),
                                         Text("--reservation", "reservation_id",
                                              "only the servers of this reservation (one create request)")})
                       .Limit(),
                   Show("show a server"),
                   Delete("delete a server",
                          {Switch("--delete-volumes", "delete_volumes", "also delete its volumes")})
                       .Wait(),
                   Action("start", "start a server").Wait("ACTIVE"),
                   Action("stop", "stop a server").Wait("SHUTOFF"),
                   Action("reboot", "reboot a server").Wait("ACTIVE"), Events(),
                   Special("console", "show a server's console log (its output)", AddServerConsole)}},
        {.noun = "network",
         .collection = "networks",
         .help = "networks",
         .ref_help = "network name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("STATUS", "status"),
                     Col("PROJECT", "project_id")},
         .verbs =
             {Create("create a network", {Text("name", "name", "network name").Required()}).Wait("ACTIVE"),
              List("list networks", {Text("--name", "name", "only networks with this name")}).Limit(),
              Show("show a network"), Delete("delete a network").Wait(), Events()}},
        {.noun = "subnet",
         .collection = "subnets",
         .help = "subnets of networks",
         .ref_help = "subnet name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("NETWORK", "network_id"), Col("CIDR", "cidr"),
                     Col("GATEWAY", "gateway_ip"), Col("STATUS", "status")},
         .verbs =
             {Create("create a subnet",
                     {Text("name", "name", "subnet name").Required(),
                      Text("--network", "network_id", "network name or id").Required().IdsOf("networks"),
                      Text("--cidr", "cidr", "IPv4 CIDR, e.g. 10.0.0.0/24").Required(),
                      Text("--gateway", "gateway_ip", "gateway address (default: the first host address)"),
                      Texts("--pool", "allocation_pools", "allocation pool START-END (repeatable)").Ranges()})
                  .Wait(),
              List("list subnets", {Text("--name", "name", "only subnets with this name")}).Limit(),
              Show("show a subnet"), Delete("delete a subnet").Wait(), Events()}},
        {.noun = "port",
         .collection = "ports",
         .help = "network ports",
         .ref_help = "port name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("NETWORK", "network_id"),
                     Col("FIXED_IP", "fixed_ip"), Col("MAC", "mac_address"), Col("DEVICE", "device_id"),
                     Col("STATUS", "status")},
         .verbs = {Create("create a port",
                          {Text("--network", "network_id", "network name or id").Required().IdsOf("networks"),
                           Text("--name", "name", "port name"),
                           Text("--fixed-ip", "fixed_ip", "the address to take")})
                       .Wait(),
                   List("list ports", {Text("--name", "name", "only ports with this name")}).Limit(),
                   Show("show a port"), Delete("delete a port").Wait(), Events()}},
        {.noun = "volume",
         .collection = "volumes",
         .help = "block volumes",
         .ref_help = "volume name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("SIZE_GB", "size_gb"), Col("STATUS", "status"),
                     Col("SERVER", "server_id")},
         .verbs = {Create("create a volume", {Text("name", "name", "volume name").Required(),
                                              Int("--size", "size_gb", "size in GiB").Required().Positive()})
                       .Wait("available"),
                   List("list volumes", {Text("--status", "status", "only volumes in this status"),
                                         Text("--name", "name", "only volumes with this name")})
                       .Limit(),
                   Show("show a volume"),
                   Action("attach", "attach a volume to a server",
                          {Text("--server", "server_id", "server name or id").Required().IdsOf("servers")})
                       .Wait("in-use"),
                   Action("detach", "detach a volume from its server").Wait("available"),
                   Delete("delete a volume").Wait(), Events()}},
        {.noun = "flavor",
         .collection = "flavors",
         .help = "flavors (server sizes)",
         .ref_help = "flavor name or id",
         .naming = Naming::kByNameOrAsIs,
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("VCPUS", "vcpus"), Col("RAM_MB", "ram_mb"),
                     Col("DISK_GB", "disk_gb")},
         .verbs = {Create("create a flavor (admin)",
                          {Text("name", "name", "flavor name").Required(),
                           Int("--vcpus", "vcpus", "virtual CPUs").Required(),
                           Int("--ram-mb", "ram_mb", "memory in MiB").Required(),
                           Int("--disk-gb", "disk_gb", "root disk in GiB").Required()}),
                   List("list flavors"), Show("show a flavor"), Delete("delete a flavor (admin)")}},
        {.noun = "image",
         .collection = "images",
         .help = "images",
         .ref_help = "image name or id",
         .naming = Naming::kByNameOrAsIs,
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("OS", "os"), Col("STATUS", "status"),
                     Col("SIZE_BYTES", "size_bytes")},
         .verbs = {Special("create", "create an image (admin); --file uploads its root filesystem",
                           AddImageCreate),
                   List("list images"), Show("show an image"), Delete("delete an image (admin)")}},
        {.noun = "replica",
         .collection = "replicas",
         .help = "the control plane's replicas and which one leads (admin; docs/ha.md)",
         .ref_help = "replica id",
         .naming = Naming::kAsIs,
         .columns = {Col("ID", "id"), Col("ROLE", "role"), Col("ADDRESS", "address"),
                     Col("VERSION", "version"), Col("LEASE_AGE_MS", "lease_age_ms")},
         .verbs = {List("list the replicas (a single cogsd on SQLite lists itself)")}},
        {.noun = "host",
         .collection = "hosts",
         .help = "compute hosts (admin)",
         .ref_help = "host name",
         .naming = Naming::kAsIs,
         .columns = {Col("NAME", "name"), Col("STATE", "state"), Col("ENABLED", "enabled"),
                     Col("DRAINING", "draining"), Col("AZ", "availability_zone"), UsedOf("VCPUS", "vcpus"),
                     UsedOf("RAM_MB", "ram_mb"), UsedOf("DISK_GB", "disk_gb"), Col("SERVERS", "servers")},
         .verbs = {List("list hosts"), Show("show a host"), Action("enable", "let a host take new servers"),
                   Action("disable", "stop placing new servers on a host",
                          {Text("--reason", "reason", "why (shown with the host)")}),
                   Special("drain", "disable a host and cold-migrate every server off it", AddHostDrain),
                   Special("enroll", "give a host its credentials (revoking its earlier ones)",
                           AddHostEnroll),
                   Delete("delete a host that holds no server, revoking its credentials (admin)"),
                   Events()}},  // registered, down, up again, enabled, disabled, deleted
        {.noun = "project",
         .collection = "projects",
         .help = "projects and their quotas (admin)",
         .ref_help = "project name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("DESCRIPTION", "description")},
         .verbs = {Create("create a project", {Text("name", "name", "project name").Required(),
                                               Text("--description", "description", "description")}),
                   List("list projects"), Show("show a project"), Delete("delete a project"),
                   Special("quota", "a project's quotas", AddProjectQuota)}},
        {.noun = "token",
         .collection = "tokens",
         .help = "API tokens (admin)",
         .ref_help = "token id",
         .naming = Naming::kAsIs,
         .columns = {Col("ID", "id"), Col("PROJECT", "project_id"), Col("ROLE", "role"), Col("NAME", "name"),
                     Col("CREATED", "created_at"), Col("EXPIRES", "expires_at")},
         .verbs = {Create("create a token (its secret is shown once)",
                          {Text("--project", "project_id", "project name or id").Required().IdsOf("projects"),
                           Text("--role", "role", "role").Required().OneOf({"admin", "member", "reader"}),
                           Text("--name", "name", "a name to recognise it by")})
                       .Note("note: the secret is shown only this once; the API keeps only its hash"),
                   List("list tokens (no secrets)",
                        {Text("--project", "project_id", "only this project's tokens").IdsOf("projects")}),
                   Delete("revoke a token at once").Named("revoke"),
                   Action("rotate", "give a token a new secret (shown once); the old one stops working",
                          {Int("--grace", "grace_s",
                               "seconds the old secret keeps working (default 0: it stops at once)")})
                       .Note("note: the new secret is shown only this once; the API keeps only its hash")}},
        {.noun = "user",
         .collection = "users",
         .help = "users who log in with a password: the OpenStack identity API's password method (admin)",
         .ref_help = "user name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("PROJECT", "project_id"), Col("ROLE", "role"),
                     Col("CREATED", "created_at")},
         .verbs = {Create(
                       "create a user",
                       {Text("name", "name", "user name (unique in the cloud)").Required(),
                        Text("--project", "project_id", "project name or id").Required().IdsOf("projects"),
                        Text("--role", "role", "role").Required().OneOf({"admin", "member", "reader"}),
                        Text("--password-file", "password",
                             "file whose first line is the password, 8 to 1024 bytes ('-': standard input)")
                            .Required()
                            .FileLine()}),
                   List("list users (no passwords)",
                        {Text("--project", "project_id", "only this project's users").IdsOf("projects"),
                         Text("--name", "name", "only the user with this name")}),
                   Show("show a user"), Delete("delete a user, revoking the tokens its logins made")}},
        {.noun = "keypair",
         .collection = "keypairs",
         .help = "SSH key pairs: public keys a server gets at boot (--key-name)",
         .ref_help = "key pair name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("FINGERPRINT", "fingerprint")},
         .verbs = {Create("import a public key (cogs never makes or holds a private key)",
                          {Text("name", "name", "key pair name (unique in the project)").Required(),
                           Text("--public-key", "public_key",
                                "an OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub")
                               .Required()
                               .FileLine()}),
                   List("list key pairs"), Show("show a key pair"), Delete("delete a key pair")}},
        {.noun = "server group",
         .collection = "server-groups",
         .help = "server groups (affinity rules)",
         .ref_help = "group name or id",
         .columns = {Col("ID", "id"), Col("NAME", "name"), Col("POLICY", "policy"),
                     Col("MEMBERS", "members")},
         .verbs = {Create("create a server group", {Text("name", "name", "group name").Required(),
                                                    Text("--policy", "policy", "placement policy")
                                                        .Required()
                                                        .OneOf({"affinity", "anti-affinity"})}),
                   List("list server groups"), Show("show a server group"), Delete("delete a server group")}},
        {.noun = "workflow",
         .collection = "workflows",
         .help = "the workflows that carry out operations",
         .ref_help = "workflow id",
         .naming = Naming::kAsIs,
         .columns = {Col("ID", "id"), Col("TYPE", "type"), Col("STATE", "state"),
                     Col("CREATED", "created_at"), Col("FINISHED", "finished_at"), Col("REASON", "reason")},
         .verbs = {List("list workflows",
                        {Text("--state", "state", "running, compensating, succeeded, rolled_back, failed"),
                         Text("--type", "type", "e.g. server.create")})
                       .Limit(),
                   Special("show", "show a workflow's step timeline", AddWorkflowShow),
                   Special("cancel", "cancel a workflow (it rolls back)", AddWorkflowCancel),
                   Special("retry", "run a failed workflow's compensations again (admin)",
                           AddWorkflowRetry)}},
    };
}

}  // namespace

Flag Text(std::string name, std::string key, std::string help) {
    return MakeFlag(std::move(name), Flag::Type::kText, std::move(key), std::move(help));
}
Flag Int(std::string name, std::string key, std::string help) {
    return MakeFlag(std::move(name), Flag::Type::kInt, std::move(key), std::move(help));
}
Flag Texts(std::string name, std::string key, std::string help) {
    return MakeFlag(std::move(name), Flag::Type::kTexts, std::move(key), std::move(help));
}
Flag Switch(std::string name, std::string key, std::string help) {
    return MakeFlag(std::move(name), Flag::Type::kSwitch, std::move(key), std::move(help));
}

Verb Create(std::string help, std::vector<Flag> flags) {
    return MakeVerb(Verb::Kind::kCreate, "create", std::move(help), std::move(flags));
}
Verb List(std::string help, std::vector<Flag> filters) {
    return MakeVerb(Verb::Kind::kList, "list", std::move(help), std::move(filters));
}
Verb Show(std::string help) { return MakeVerb(Verb::Kind::kShow, "show", std::move(help)); }
Verb Delete(std::string help, std::vector<Flag> flags) {
    return MakeVerb(Verb::Kind::kDelete, "delete", std::move(help), std::move(flags));
}
Verb Action(std::string name, std::string help, std::vector<Flag> flags) {
    return MakeVerb(Verb::Kind::kAction, std::move(name), std::move(help), std::move(flags));
}
Verb Events() { return MakeVerb(Verb::Kind::kEvents, "events", ""); }
Verb Special(std::string name, std::string help, SpecialCommand registers) {
    Verb v = MakeVerb(Verb::Kind::kSpecial, std::move(name), std::move(help));
    v.special = registers;
    return v;
}

std::string Resource::Command() const {
    std::string c = noun;
    std::replace(c.begin(), c.end(), ' ', '-');
    return c;
}

std::string Resource::ListKey() const {
    std::string k = collection;
    std::replace(k.begin(), k.end(), '-', '_');
    return k;
}

std::string Resource::Path(const std::string& id) const {
    return fmt::format("/v1/{}/{}", collection, http::UrlEncode(id));
}

const std::vector<Resource>& Resources() {
    static const std::vector<Resource> kTable = MakeTable();
    return kTable;
}

}  // namespace cogs::cli
