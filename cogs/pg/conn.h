// cogs::pg — the one adapter of libpq: a connection (Conn) with statements prepared by name, run
// in pipelines under a deadline, and the mapping of PostgreSQL's SQLSTATEs to cogs::Error. No
// file outside cogs/pg includes <libpq-fe.h>; its types appear here only as opaque pointers.
//
// Every call takes a deadline. The connection runs in libpq's non-blocking mode and waits with
// poll(2), so a server that stopped answering (paused, partitioned, restarted) costs at most the
// deadline, never a hung thread. A call that misses its deadline, or whose connection broke, leaves
// the connection Broken(): whatever was in flight has an unknown outcome (a COMMIT may or may not
// have been applied) and the owner reconnects (Connect again) and finds out from the data.
//
// Pipelines. Run() sends a list of calls in libpq's pipeline mode followed by one sync point, so
// a transaction of many statements costs one round trip. The server runs them in order; after the
// first that fails, the rest are not run (their result says so: Outcome::kSkipped). Text-format
// parameters and results: integers travel as decimal text.
//
// Errors. Each failure is an Error naming the server (host:port/db), the statement and the
// server's words, with the code a caller can act on:
//
//   23505 unique_violation              kAlreadyExists
//   other 23xxx (integrity)             kFailedPrecondition
//   22xxx data exception                kInvalidArgument (e.g. a NUL byte or invalid UTF-8)
//   53100 disk_full                     kNoSpace, retryable
//   08xxx connection, 57P0x shutdown,   kUnavailable, retryable (the outcome of what was in flight
//   40001/40P01 serialization/deadlock, is unknown only when the connection broke: Broken())
//   55P03 lock timeout, 53xxx resources,
//   a broken connection
//   57014 query_canceled, a deadline    kDeadlineExceeded, retryable
//   anything else                       kInternal (bad SQL, a bug)
//
// Threading: a Conn belongs to one thread at a time. Several Conns, in one process or several,
// are what PostgreSQL is for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

struct pg_conn;
struct pg_result;

namespace cogs::pg {

// The parameters of one call, in order ($1, $2, ...), kept as text.
class Params {
public:
    Params& Int(int64_t v) {
        values_.push_back(std::to_string(v));
        return *this;
    }
    Params& Text(std::string_view v) {
        values_.emplace_back(v);
        return *this;
    }
    Params& Bool(bool v) { return Int(v ? 1 : 0); }
    const std::vector<std::string>& values() const { return values_; }

private:
    std::vector<std::string> values_;
};

// One statement of a pipeline: a name given to Prepare(), or (name empty) `sql` run unprepared.
struct Call {
    std::string name;
    Params params;
    std::string sql;
};

// The result of one call: its rows (text) and the rows it changed. Owns the libpq result.
class Rows {
public:
    Rows() = default;
    explicit Rows(pg_result* r);
    Rows(Rows&& o) noexcept;
    Rows& operator=(Rows&& o) noexcept;
    Rows(const Rows&) = delete;
    Rows& operator=(const Rows&) = delete;
    ~Rows();

    int size() const;  // rows returned
    bool empty() const { return size() == 0; }
    int64_t Int(int row, int col) const;  // NULL reads as 0
    std::string Text(int row, int col) const;
    std::string_view View(int row, int col) const;  // valid while this Rows lives
    bool IsNull(int row, int col) const;
    int64_t Changed() const;  // rows changed by INSERT/UPDATE/DELETE (PQcmdTuples)

private:
    pg_result* r_ = nullptr;
};

// What became of one call of a pipeline.
enum class Outcome {
    kOk,
    kFailed,   // the server refused it: `error` says why; the calls after it were skipped
    kSkipped,  // not run: an earlier call of the pipeline failed
};

struct Reply {
    Outcome outcome = Outcome::kOk;
    Rows rows;
    Error error;  // for kFailed
    std::string sqlstate;
};

class Conn {
public:
    // Connects with a libpq connection string or URI ("host=/run/x port=5432 dbname=cogs" or
    // "postgresql://user@host:port/db"). kUnavailable if the server cannot be reached by the
    // deadline; the error names the server, never a password.
    static Result<std::unique_ptr<Conn>> Connect(const std::string& conninfo, Duration timeout);
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;
    ~Conn();

    // "host:port/db", for messages and logs (no credentials).
    const std::string& name() const { return name_; }
    // Whether the connection is lost (or left in an unknown state by a missed deadline): every call
    // fails at once with kUnavailable; connect again.
    bool Broken() const;

    // Closes the socket now: the connection is Broken() (tests: a reply lost on the way).
    void Drop();

    // Prepares `sql` under `name` on this connection (every statement of a store at connect).
    Status Prepare(const std::string& name, const std::string& sql, SteadyTime deadline);
    // Runs `sql` (one or several statements, no parameters): DDL, BEGIN, SET.
    Status Exec(std::string_view sql, SteadyTime deadline);

    // Sends `calls` as one pipeline and waits for every reply. The Result is an error only when
    // the connection failed or the deadline passed (then Broken(): what was sent may or may not
    // have run); a statement the server refused is a Reply with Outcome::kFailed.
    Result<std::vector<Reply>> Run(const std::vector<Call>& calls, SteadyTime deadline);
    // One call; its refusal is the Result's error.
    Result<Rows> Query(const Call& call, SteadyTime deadline);

private:
    Conn(pg_conn* c, std::string name) : c_(c), name_(std::move(name)) {}
    Status Fail(std::string_view what);  // marks the connection broken
    Status WaitFor(bool write, SteadyTime deadline);
    Status Flush(SteadyTime deadline);
    Status AwaitSent(const std::string& what, SteadyTime deadline);

    pg_conn* c_ = nullptr;
    std::string name_;
    bool broken_ = false;
};

// The cogs error for a SQLSTATE and the server's message (exposed for tests).
Error MapSqlState(std::string_view sqlstate, std::string message);

}  // namespace cogs::pg
