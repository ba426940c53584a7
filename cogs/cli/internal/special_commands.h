// The commands the resource table cannot express with its generic verbs; the table names the first
// five (resources.cc), cli.cc adds `whoami`. Internal to cogs/cli.
//
//   server console REF [--length N]   GET /v1/servers/{id}/console[?length=N]: the instance's output
//       as it is (lines and tabs kept, other control characters escaped); -o json the API's answer.
//   host drain NAME [--reason R] [--wait]   POST /v1/hosts/{name}/drain; --wait then lists the host's
//       servers every 0.5 s, printing the count by status when it changes, until none is left (exit
//       0) or none left can be migrated (exit 1).
//   host enroll NAME [--out DIR]   POST /v1/hosts/{name}/enroll (admin): the host's credentials —
//       its host token (the agent -> cogsd) and its agent token (cogsd -> the agent) — printed once,
//       or written to DIR/host.token and DIR/agent.token (mode 0600; DIR made 0700) with the agent's
//       command line. Enrolling again revokes the host's earlier host token.
//   project quota show REF | set REF --servers N ...   GET / PUT /v1/projects/{id}/quotas: a
//       RESOURCE / LIMIT / IN_USE table (-1 shown as "unlimited"); set names at least one quota.
//   workflow show ID     the step timeline (state, attempts, start offset, duration, error), with
//       the workflow's reason, resource and trace id when it has them.
//   workflow cancel ID   POST /v1/workflows/{id}/cancel.
//   whoami               GET /v1/whoami.
#pragma once

#include "cogs/cli/internal/resources.h"

namespace cogs::cli {

void AddServerConsole(Invocation& inv, const Resource& servers, const Verb& verb, CLI::App* group);
void AddHostDrain(Invocation& inv, const Resource& hosts, const Verb& verb, CLI::App* group);
void AddHostEnroll(Invocation& inv, const Resource& hosts, const Verb& verb, CLI::App* group);
void AddProjectQuota(Invocation& inv, const Resource& projects, const Verb& verb, CLI::App* group);
void AddWorkflowShow(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group);
void AddWorkflowCancel(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group);
void AddWorkflowRetry(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group);
// image create NAME [--os OS] [--min-disk-gb N] [--file ARCHIVE]   POST /v1/images, then (--file)
//     PUT /v1/images/{id}/file?sha256=... from the file (image_commands.cc); a refused upload deletes
//     the image again.
void AddImageCreate(Invocation& inv, const Resource& images, const Verb& verb, CLI::App* group);

void AddWhoami(Invocation& inv, CLI::App& app);
// `extension list` (GET /v1/extensions) and `extension reload` (POST /v1/extensions/reload).
void AddExtension(Invocation& inv, CLI::App& app);

}  // namespace cogs::cli
