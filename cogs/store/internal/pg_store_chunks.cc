// Image content in chunks (table image_chunks, bytea): each chunk its own short transaction on the
// writer connection, in order with the group commits; reads on the reader pool. libpq's parameters
// and rows are text here (cogs/pg), so a chunk travels as hex, twice its size on the wire.
#include <string>

#include "cogs/store/internal/pg_store_impl.h"

namespace cogs::store::internal {
namespace {

std::string ToHex(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(bytes.size() * 2, '0');
    for (size_t i = 0; i < bytes.size(); ++i) {
        const auto b = static_cast<unsigned char>(bytes[i]);
        out[2 * i] = kHex[b >> 4];
        out[2 * i + 1] = kHex[b & 15];
    }
    return out;
}

int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

Result<std::string> FromHex(std::string_view hex) {
    if (hex.size() % 2 != 0) {
        return MakeError(ErrorCode::kInternal, "a chunk read back as hex of odd length");
    }
    std::string out(hex.size() / 2, '\0');
    for (size_t i = 0; i < out.size(); ++i) {
        const int hi = HexDigit(hex[2 * i]);
        const int lo = HexDigit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return MakeError(ErrorCode::kInternal, "a chunk read back as something other than hex");
        }
        out[i] = static_cast<char>((hi << 4) | lo);
    }
    return out;
}

}  // namespace

Status PgStore::PutChunk(const std::string& blob, int64_t seq, std::string_view data) {
    auto put = Write<bool>([&](pg::Conn& db, SteadyTime deadline) -> Result<bool> {
        pg::Call c = PgCall(kPgPutChunk);
        c.params.Text(blob).Int(seq).Text(ToHex(data));
        COGS_TRY(db.Query(c, deadline));
        return true;
    });
    return put ? Ok() : MakeError(put.error());
}

Result<std::string> PgStore::GetChunk(const std::string& blob, int64_t seq) {
    return Read<std::string>([&](pg::Conn& db, SteadyTime deadline) -> Result<std::string> {
        pg::Call c = PgCall(kPgGetChunk);
        c.params.Text(blob).Int(seq);
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
        if (rows.empty()) {
            return MakeError(ErrorCode::kNotFound,
                             "no chunk " + std::to_string(seq) + " of image content " + blob);
        }
        return FromHex(rows.View(0, 0));
    });
}

Result<int64_t> PgStore::DeleteChunks(const std::string& blob) {
    return Write<int64_t>([&](pg::Conn& db, SteadyTime deadline) -> Result<int64_t> {
        pg::Call c = PgCall(kPgDeleteChunks);
        c.params.Text(blob);
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
        return rows.Changed();
    });
}

Result<int64_t> PgStore::CountChunks(const std::string& blob) {
    return Read<int64_t>([&](pg::Conn& db, SteadyTime deadline) -> Result<int64_t> {
        pg::Call c = PgCall(blob.empty() ? kPgCountAllChunks : kPgCountChunks);
        if (!blob.empty()) {
            c.params.Text(blob);
        }
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
        return rows.empty() ? int64_t{0} : rows.Int(0, 0);
    });
}

Result<std::vector<std::string>> PgStore::ListBlobs() {
    return Read<std::vector<std::string>>(
        [&](pg::Conn& db, SteadyTime deadline) -> Result<std::vector<std::string>> {
            COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(PgCall(kPgListBlobs), deadline));
            std::vector<std::string> out;
            for (int i = 0; i < rows.size(); ++i) {
                out.push_back(rows.Text(i, 0));
            }
            return out;
        });
}

}  // namespace cogs::store::internal
