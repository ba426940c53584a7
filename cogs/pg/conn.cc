// libpq in non-blocking mode: every wait is a poll(2) on the connection's socket bounded by the
// caller's deadline, and pipelines keep reading replies while they send, so a long pipeline never
// deadlocks with a server that blocks on its own full output buffer.
#include "cogs/pg/conn.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cogs::pg {
namespace {

// Run(): how many calls are buffered between two flushes of the socket.
constexpr size_t kFlushEvery = 64;

std::string Trim(const char* s) {
    std::string out = s == nullptr ? "" : s;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
        out.pop_back();
    }
    return out;
}

int RemainingMs(SteadyTime deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

std::string NameOf(pg_conn* c) {
    std::string host = Trim(PQhost(c));
    return host + ":" + Trim(PQport(c)) + "/" + Trim(PQdb(c));
}

// Statement names are ours; unprepared SQL is shown by its start.
std::string What(const Call& call) {
    if (!call.name.empty()) {
        return call.name;
    }
    return call.sql.size() > 60 ? call.sql.substr(0, 60) + "…" : call.sql;
}

}  // namespace

Error MapSqlState(std::string_view state, std::string message) {
    auto is = [&](std::string_view prefix) { return state.substr(0, prefix.size()) == prefix; };
    ErrorCode code = ErrorCode::kInternal;
    if (state == "23505") {
        code = ErrorCode::kAlreadyExists;
    } else if (is("23")) {
        code = ErrorCode::kFailedPrecondition;
    } else if (is("22")) {
        code = ErrorCode::kInvalidArgument;
    } else if (state == "53100") {
        code = ErrorCode::kNoSpace;
    } else if (state == "57014") {
        code = ErrorCode::kDeadlineExceeded;
    } else if (is("08") || is("57P") || is("53") || state == "40001" || state == "40P01" ||
               state == "55P03") {
        code = ErrorCode::kUnavailable;
    }
    return Error(code, std::move(message));
}

// ---- Rows

Rows::Rows(pg_result* r) : r_(r) {}
Rows::Rows(Rows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
Rows& Rows::operator=(Rows&& o) noexcept {
    if (this != &o) {
        if (r_ != nullptr) {
            PQclear(r_);
        }
        r_ = o.r_;
        o.r_ = nullptr;
    }
    return *this;
}
Rows::~Rows() {
    if (r_ != nullptr) {
        PQclear(r_);
    }
}
int Rows::size() const { return r_ == nullptr ? 0 : PQntuples(r_); }
int64_t Rows::Int(int row, int col) const {
    const char* v = PQgetvalue(r_, row, col);
    return v == nullptr ? 0 : std::strtoll(v, nullptr, 10);
}
std::string Rows::Text(int row, int col) const { return std::string(View(row, col)); }
std::string_view Rows::View(int row, int col) const {
    return {PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))};
}
bool Rows::IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
int64_t Rows::Changed() const {
    const char* n = r_ == nullptr ? nullptr : PQcmdTuples(r_);
    return n == nullptr || *n == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

// ---- Conn

Result<std::unique_ptr<Conn>> Conn::Connect(const std::string& conninfo, Duration timeout) {
    const SteadyTime deadline = SteadyClock::now() + timeout;
    pg_conn* c = PQconnectStart(conninfo.c_str());
    if (c == nullptr) {
        return MakeError(ErrorCode::kUnavailable, "postgresql: out of memory starting a connection");
    }
    std::unique_ptr<Conn> conn(new Conn(c, ""));
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (PQstatus(c) == CONNECTION_BAD || st == PGRES_POLLING_FAILED) {
            return MakeError(ErrorCode::kUnavailable,
                             "postgresql " + NameOf(c) + ": cannot connect: " + Trim(PQerrorMessage(c)));
        }
        if (Status w = conn->WaitFor(st == PGRES_POLLING_WRITING, deadline); !w) {
            return MakeError(
                ErrorCode::kUnavailable,
                "postgresql " + NameOf(c) + ": no connection within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
                    " ms");
        }
        st = PQconnectPoll(c);
    }
    conn->name_ = NameOf(c);
    // The server's notices ("relation ... already exists, skipping") are not errors; libpq would
    // print them on stderr.
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
    if (PQsetnonblocking(c, 1) != 0) {
        return MakeError(conn->Fail("set non-blocking").error());
    }
    return conn;
}

Conn::~Conn() {
    if (c_ != nullptr) {
        PQfinish(c_);
    }
}

void Conn::Drop() {
    broken_ = true;
    ::shutdown(PQsocket(c_), SHUT_RDWR);
}

bool Conn::Broken() const { return broken_ || PQstatus(c_) == CONNECTION_BAD; }

Status Conn::Fail(std::string_view what) {
    broken_ = true;
    return MakeError(ErrorCode::kUnavailable,
                     "postgresql " + name_ + ": " + std::string(what) + ": " + Trim(PQerrorMessage(c_)));
}

Status Conn::WaitFor(bool write, SteadyTime deadline) {
    pollfd p{PQsocket(c_), static_cast<short>(write ? (POLLOUT | POLLIN) : POLLIN), 0};
    for (;;) {
        const int ms = RemainingMs(deadline);
        const int n = ::poll(&p, 1, ms);
        if (n > 0) {
            return Ok();
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        broken_ = true;  // a reply may still come: nothing on this connection can be trusted now
        return MakeError(ErrorCode::kDeadlineExceeded, "postgresql " + name_ + ": no answer by the deadline");
    }
}

// Sends what libpq buffered, reading meanwhile (the server may be waiting for us to read).
Status Conn::Flush(SteadyTime deadline) {
    for (;;) {
        const int f = PQflush(c_);
        if (f == 0) {
            return Ok();
        }
        if (f < 0) {
            return Fail("send");
        }
        COGS_TRY(WaitFor(/*write=*/true, deadline));
        if (PQconsumeInput(c_) == 0) {
            return Fail("receive");
        }
    }
}

Status Conn::Exec(std::string_view sql, SteadyTime deadline) {
    if (Broken()) {
        return Fail("connection lost");
    }
    const std::string text(sql);
    if (PQsendQuery(c_, text.c_str()) == 0) {
        return Fail("send");
    }
    return AwaitSent(What(Call{"", {}, text}), deadline);
}

Status Conn::Prepare(const std::string& name, const std::string& sql, SteadyTime deadline) {
    if (Broken()) {
        return Fail("connection lost");
    }
    if (PQsendPrepare(c_, name.c_str(), sql.c_str(), 0, nullptr) == 0) {
        return Fail("send");
    }
    return AwaitSent("prepare " + name, deadline);
}

// Sends what was queued outside a pipeline and reads every result; the first error the server
// answered is returned.
Status Conn::AwaitSent(const std::string& what, SteadyTime deadline) {
    COGS_TRY(Flush(deadline));
    Status result = Ok();
    for (;;) {
        while (PQisBusy(c_) != 0) {
            COGS_TRY(WaitFor(false, deadline));
            if (PQconsumeInput(c_) == 0) {
                return Fail("receive");
            }
        }
        pg_result* r = PQgetResult(c_);
        if (r == nullptr) {
            return result;
        }
        if (PQresultStatus(r) == PGRES_FATAL_ERROR && result) {
            result = MakeError(
                MapSqlState(Trim(PQresultErrorField(r, PG_DIAG_SQLSTATE)),
                            "postgresql " + name_ + ": " + what + ": " + Trim(PQresultErrorMessage(r))));
        }
        PQclear(r);
    }
}

Result<std::vector<Reply>> Conn::Run(const std::vector<Call>& calls, SteadyTime deadline) {
    if (Broken()) {
        return MakeError(Fail("connection lost").error());
    }
    if (PQenterPipelineMode(c_) == 0) {
        return MakeError(Fail("enter pipeline mode").error());
    }
    std::vector<Reply> replies(calls.size());
    size_t next = 0;        // the call whose reply comes next
    bool in_reply = false;  // its result arrived; the NULL that ends it has not
    bool synced = false;
    // Takes every reply libpq has read so far, without waiting.
    auto drain = [&]() -> Status {
        while (!synced && PQisBusy(c_) == 0) {
            pg_result* r = PQgetResult(c_);
            if (r == nullptr) {
                if (in_reply) {
                    in_reply = false;
                    ++next;
                    continue;
                }
                return Ok();  // nothing more until the server sends it
            }
            const ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                synced = true;
                break;
            }
            if (next >= replies.size()) {
                PQclear(r);
                return MakeError(ErrorCode::kInternal, "postgresql " + name_ + ": more replies than calls");
            }
            Reply& reply = replies[next];
            in_reply = true;
            if (st == PGRES_PIPELINE_ABORTED) {
                reply.outcome = Outcome::kSkipped;
                PQclear(r);
            } else if (st == PGRES_FATAL_ERROR) {
                reply.outcome = Outcome::kFailed;
                reply.sqlstate = Trim(PQresultErrorField(r, PG_DIAG_SQLSTATE));
                reply.error = MapSqlState(reply.sqlstate, "postgresql " + name_ + ": " + What(calls[next]) +
                                                              ": " + Trim(PQresultErrorMessage(r)));
                PQclear(r);
            } else {
                reply.rows = Rows(r);
            }
        }
        return Ok();
    };
    std::vector<const char*> values;
    size_t unflushed = 0;  // calls buffered by libpq since the last flush
    for (const Call& call : calls) {
        values.clear();
        for (const std::string& v : call.params.values()) {
            values.push_back(v.c_str());
        }
        const int n = static_cast<int>(values.size());
        const int sent =
            call.name.empty()
                ? PQsendQueryParams(c_, call.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0)
                : PQsendQueryPrepared(c_, call.name.c_str(), n, values.data(), nullptr, nullptr, 0);
        if (sent == 0) {
            return MakeError(Fail("send " + What(call)).error());
        }
        // Every kFlushEvery calls, send what libpq holds, reading replies meanwhile (so that they
        // cannot fill the server's buffers), and wait while the socket is full: the server is behind
        // and sending more now would only spin. A flush after each call was a send(2), a recv(2) and,
        // once the server fell behind, an EAGAIN of each per call: profiled, ~40 % of the store
        // writer's CPU (a step's call is ~300 bytes).
        if (++unflushed < kFlushEvery) {
            continue;
        }
        unflushed = 0;
        COGS_TRY(Flush(deadline));
        COGS_TRY(drain());
    }
    if (PQpipelineSync(c_) == 0) {
        return MakeError(Fail("sync").error());
    }
    COGS_TRY(Flush(deadline));
    for (;;) {
        COGS_TRY(drain());
        if (synced) {
            break;
        }
        COGS_TRY(WaitFor(false, deadline));
        if (PQconsumeInput(c_) == 0) {
            return MakeError(Fail("receive").error());
        }
    }
    if (next != replies.size()) {
        broken_ = true;
        return MakeError(ErrorCode::kInternal, "postgresql " + name_ + ": " + std::to_string(next) +
                                                   " replies for " + std::to_string(replies.size()) +
                                                   " calls");
    }
    if (PQexitPipelineMode(c_) == 0) {
        return MakeError(Fail("exit pipeline mode").error());
    }
    return replies;
}

Result<Rows> Conn::Query(const Call& call, SteadyTime deadline) {
    COGS_ASSIGN_OR_RETURN(std::vector<Reply> replies, Run({call}, deadline));
    if (replies[0].outcome != Outcome::kOk) {
        return MakeError(std::move(replies[0].error));
    }
    return std::move(replies[0].rows);
}

}  // namespace cogs::pg
