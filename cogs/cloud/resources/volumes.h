// Volumes: created, deleted, attached to and detached from servers by workflows on cogs-volume
// (and the server's host for attachments; workflows/cloud/volumes.yaml). A volume holds its quota
// (volumes, volume_gb) from its create until it is gone. Statuses are Cinder's (lower case).
//
// Refused before anything is written: a volume or server of another project, a size outside
// 1..16384 GiB, deleting an in-use volume, attaching one that is not available or to a server
// that is not ACTIVE or SHUTOFF, detaching one that is not in-use (409).
#pragma once

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Volumes {
public:
    // Registers the settle functions of volume.*.
    explicit Volumes(Context& ctx);

    void Create(Creation c);
    void Delete(Call call);
    // POST /v1/volumes/{id}/attach {"server_id"} and /detach {}.
    void Attach(Call call);
    void Detach(Call call);

    // volume.delete on `v` (also after its server's delete with delete_volumes=true).
    Launch Deletion(Res& v, const std::string& traceparent);

private:
    void SettleCreate(Settlement& s);
    void SettleAttachment(Settlement& s, bool attach);
    Context& ctx_;
};

}  // namespace cogs::cloud
