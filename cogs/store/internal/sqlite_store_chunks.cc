// Image content in chunks (table image_chunks): each chunk its own short write transaction on the
// writer thread, in order with the group commits, so that an upload of hundreds of MiB never holds
// the write lock for long; reads on the read pool.
#include <string>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

Status SqliteStore::PutChunk(const std::string& blob, int64_t seq, std::string_view data) {
    auto put = Write<bool>([&]() -> Result<bool> {
        Query q(*writer_db_, kPutChunk);
        q->Text(blob).Int(seq).Blob(data);
        COGS_TRY(q->Run());
        return true;
    });
    return put ? Ok() : MakeError(put.error());
}

Result<std::string> SqliteStore::GetChunk(const std::string& blob, int64_t seq) {
    return Read<std::string>([&](Connection& db) -> Result<std::string> {
        Query q(db, kGetChunk);
        q->Text(blob).Int(seq);
        COGS_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) {
            return MakeError(ErrorCode::kNotFound,
                             "no chunk " + std::to_string(seq) + " of image content " + blob);
        }
        return std::string(q->ColumnView(0));
    });
}

Result<int64_t> SqliteStore::DeleteChunks(const std::string& blob) {
    return Write<int64_t>([&]() -> Result<int64_t> {
        Query q(*writer_db_, kDeleteChunks);
        q->Text(blob);
        COGS_TRY(q->Run());
        return writer_db_->db().Changes();
    });
}

Result<int64_t> SqliteStore::CountChunks(const std::string& blob) {
    return Read<int64_t>([&](Connection& db) -> Result<int64_t> {
        Query q(db, blob.empty() ? kCountAllChunks : kCountChunks);
        if (!blob.empty()) {
            q->Text(blob);
        }
        COGS_ASSIGN_OR_RETURN(bool row, q->Step());
        return row ? q->ColumnInt(0) : 0;
    });
}

Result<std::vector<std::string>> SqliteStore::ListBlobs() {
    return Read<std::vector<std::string>>([&](Connection& db) -> Result<std::vector<std::string>> {
        std::vector<std::string> out;
        Query q(db, kListBlobs);
        COGS_TRY(q->ForEachRow([&] { out.push_back(q->ColumnText(0)); }));
        return out;
    });
}

}  // namespace cogs::store::internal
