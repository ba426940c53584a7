// The election thread of a replica (../leadership.h). Every round, on the database's clock:
//   leader:    renew (the row must still carry its token, else it was deposed);
//   candidate: read the row; if its lease has expired (or names this replica), take it in one
//              transaction under a row lock, with a fresh token from the lease counter;
//   both:      record this replica as seen, and keep the row as read (followers forward there).
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cogs/pg/conn.h"
#include "cogs/store/internal/pg_store_impl.h"
#include "cogs/store/leadership.h"

namespace cogs::store {
namespace {

#define COGS_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

pg::Call Sql(const char* text) { return pg::Call{"", {}, text}; }

constexpr const char* kReadLeader =
    "SELECT replica, address, token, since_ms, expires_ms > " COGS_NOW_MS " FROM leader WHERE id = 1";
constexpr const char* kLockLeader =
    "SELECT replica, expires_ms <= " COGS_NOW_MS " FROM leader WHERE id = 1 FOR UPDATE";
constexpr const char* kTakeLeader =
    "UPDATE leader SET replica = $1, address = $2, token = $3, expires_ms = " COGS_NOW_MS
    " + $4, since_ms = " COGS_NOW_MS " WHERE id = 1";
constexpr const char* kRenewLeader =
    "UPDATE leader SET expires_ms = " COGS_NOW_MS " + $2 WHERE id = 1 AND token = $1 RETURNING token";
constexpr const char* kGiveUp = "UPDATE leader SET expires_ms = 0 WHERE id = 1 AND token = $1";
constexpr const char* kNextToken =
    "UPDATE counters SET value = value + 1 WHERE name = 'lease_token' RETURNING value";
constexpr const char* kSeen =
    "INSERT INTO replicas(id, address, version, started_ms, seen_ms) VALUES($1, $2, $3, " COGS_NOW_MS
    ", " COGS_NOW_MS
    ") ON CONFLICT (id) DO UPDATE SET address = "
    "excluded.address, version = excluded.version, seen_ms = excluded.seen_ms";
constexpr const char* kStarted = "UPDATE replicas SET started_ms = " COGS_NOW_MS " WHERE id = $1";
constexpr const char* kReplicas = "SELECT r.id, r.address, r.version, r.started_ms, r.seen_ms, " COGS_NOW_MS
                                  " - r.seen_ms, "
                                  "(r.id = l.replica AND l.expires_ms > " COGS_NOW_MS
                                  ") FROM replicas r, leader l "
                                  "WHERE l.id = 1 AND r.seen_ms > " COGS_NOW_MS " - $1 ORDER BY r.id";

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

class Elector::Impl {
public:
    explicit Impl(ElectorOptions o) : options_(std::move(o)) {}

    Status Connect() {
        PgOptions po;
        po.conninfo = options_.conninfo;
        po.statement_timeout = options_.statement_timeout;
        COGS_ASSIGN_OR_RETURN(db_, pg::Conn::Connect(options_.conninfo, options_.statement_timeout));
        if (!migrated_) {
            COGS_TRY(internal::PgMigrate(*db_, po));
            migrated_ = true;
        }
        return Ok();
    }

    void Run() {
        pthread_setname_np(pthread_self(), "cogs-elector");
        std::unique_lock lock(mu_);
        while (!stopping_) {
            lock.unlock();
            (void)Round();  // a failed round is retried at the next; LeaseValid tells what it costs
            lock.lock();
            cv_.wait_for(lock, options_.renew_every, [&] { return stopping_ || poked_; });
            poked_ = false;
        }
    }

    Status Round() {
        if (db_ == nullptr || db_->Broken()) {
            COGS_TRY(Connect());
            COGS_TRY(Query(kStarted, pg::Params().Text(options_.replica_id)));
        }
        const SteadyTime sent = SteadyClock::now();
        if (leading_.load()) {
            COGS_ASSIGN_OR_RETURN(
                pg::Rows r,
                Query(kRenewLeader,
                      pg::Params().Int(static_cast<int64_t>(token_.load())).Int(Ms(options_.ttl))));
            if (r.empty()) {
                leading_ = false;
                if (options_.on_deposed) {
                    options_.on_deposed("leader token " + std::to_string(token_.load()) +
                                        " was superseded: another replica took the lease");
                }
            } else {
                renewed_at_.store(sent.time_since_epoch().count());
            }
        }
        COGS_TRY(Query(kSeen,
                       pg::Params().Text(options_.replica_id).Text(options_.address).Text(options_.version)));
        COGS_ASSIGN_OR_RETURN(LeaderInfo leader, ReadLeader());
        Record(leader);  // what followers forward by, even if the takeover below fails
        if (!leading_.load() && options_.candidate && (!leader.alive || leader.id == options_.replica_id)) {
            COGS_TRY(TryTakeOver(sent));
            COGS_ASSIGN_OR_RETURN(leader, ReadLeader());
        }
        Record(leader);
        std::lock_guard lock(mu_);
        ++rounds_;
        return Ok();
    }

    void Record(const LeaderInfo& leader) {
        std::lock_guard lock(mu_);
        if (!leader_ || leader_->token != leader.token) {
            ++leader_changes_;
        }
        leader_ = leader;
    }

    Status TryTakeOver(SteadyTime sent) {
        const SteadyTime deadline = SteadyClock::now() + options_.statement_timeout;
        COGS_TRY(db_->Exec("BEGIN", deadline));
        Status st = [&]() -> Status {
            COGS_ASSIGN_OR_RETURN(pg::Rows row, db_->Query(Sql(kLockLeader), deadline));
            const bool expired = row.Text(0, 1) == "t";
            if (!expired && row.Text(0, 0) != options_.replica_id) {
                return db_->Exec("COMMIT", deadline);  // someone was quicker
            }
            COGS_ASSIGN_OR_RETURN(pg::Rows token, db_->Query(Sql(kNextToken), deadline));
            pg::Call take = Sql(kTakeLeader);
            take.params.Text(options_.replica_id)
                .Text(options_.address)
                .Int(token.Int(0, 0))
                .Int(Ms(options_.ttl));
            COGS_TRY(db_->Query(take, deadline));
            COGS_TRY(db_->Exec("COMMIT", deadline));
            token_ = static_cast<uint64_t>(token.Int(0, 0));
            renewed_at_.store(sent.time_since_epoch().count());
            {
                // Leader() names this replica before IsLeader() says so.
                std::lock_guard lock(mu_);
                leader_ = LeaderInfo{options_.replica_id, options_.address, token_.load(), 0, true,
                                     SteadyClock::now()};
                ++leader_changes_;
            }
            leading_ = true;
            if (options_.on_elected) {
                options_.on_elected(token_.load());
            }
            return Ok();
        }();
        if (!st && !db_->Broken()) {
            (void)db_->Exec("ROLLBACK", deadline);
        }
        return st;
    }

    Result<LeaderInfo> ReadLeader() {
        COGS_ASSIGN_OR_RETURN(pg::Rows r, Query(kReadLeader, {}));
        LeaderInfo l;
        l.id = r.Text(0, 0);
        l.address = r.Text(0, 1);
        l.token = static_cast<uint64_t>(r.Int(0, 2));
        l.since_ms = r.Int(0, 3);
        l.alive = r.Text(0, 4) == "t";
        l.read_at = SteadyClock::now();
        return l;
    }

    Result<pg::Rows> Query(const char* sql, pg::Params params) {
        return db_->Query(pg::Call{"", std::move(params), sql},
                          SteadyClock::now() + options_.statement_timeout);
    }

    void Stop() {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) {
            thread_.join();
        }
        if (leading_.load() && db_ != nullptr && !db_->Broken()) {
            (void)Query(kGiveUp, pg::Params().Int(static_cast<int64_t>(token_.load())));
            leading_ = false;
        }
    }

    const ElectorOptions options_;
    std::unique_ptr<pg::Conn> db_;  // the election thread's (the opening thread's before it starts)
    bool migrated_ = false;
    std::atomic<bool> leading_{false};
    std::atomic<uint64_t> token_{0};
    std::atomic<SteadyTime::rep> renewed_at_{0};

    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    bool poked_ = false;
    std::optional<LeaderInfo> leader_;
    uint64_t rounds_ = 0;
    uint64_t leader_changes_ = 0;
    std::thread thread_;
};

Result<std::unique_ptr<Elector>> Elector::Start(ElectorOptions options) {
    if (options.conninfo.empty() || options.replica_id.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "an elector needs a database and a replica id");
    }
    auto impl = std::make_unique<Impl>(std::move(options));
    COGS_TRY(impl->Round());  // connects, migrates, records this replica, maybe leads already
    Impl* raw = impl.get();
    impl->thread_ = std::thread([raw] { raw->Run(); });
    return std::unique_ptr<Elector>(new Elector(std::move(impl)));
}

Elector::Elector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Elector::~Elector() { impl_->Stop(); }

void Elector::Poke() {
    {
        std::lock_guard lock(impl_->mu_);
        impl_->poked_ = true;
    }
    impl_->cv_.notify_all();
}

bool Elector::IsLeader() const { return impl_->leading_.load(); }
uint64_t Elector::token() const { return impl_->token_.load(); }

bool Elector::LeaseValid() const {
    if (!impl_->leading_.load()) {
        return false;
    }
    const SteadyTime renewed{SteadyTime::duration(impl_->renewed_at_.load())};
    return SteadyClock::now() < renewed + impl_->options_.ttl;
}

std::optional<LeaderInfo> Elector::Leader() const {
    std::lock_guard lock(impl_->mu_);
    return impl_->leader_;
}

uint64_t Elector::rounds() const {
    std::lock_guard lock(impl_->mu_);
    return impl_->rounds_;
}

uint64_t Elector::leader_changes() const {
    std::lock_guard lock(impl_->mu_);
    return impl_->leader_changes_;
}

Result<std::vector<ReplicaInfo>> Elector::Replicas(Duration within) {
    const auto& o = impl_->options_;
    COGS_ASSIGN_OR_RETURN(auto db, pg::Conn::Connect(o.conninfo, o.statement_timeout));
    COGS_ASSIGN_OR_RETURN(pg::Rows r, db->Query(pg::Call{"", pg::Params().Int(Ms(within)), kReplicas},
                                                SteadyClock::now() + o.statement_timeout));
    std::vector<ReplicaInfo> out;
    for (int i = 0; i < r.size(); ++i) {
        ReplicaInfo& info = out.emplace_back();
        info.id = r.Text(i, 0);
        info.address = r.Text(i, 1);
        info.version = r.Text(i, 2);
        info.started_ms = r.Int(i, 3);
        info.seen_ms = r.Int(i, 4);
        info.age_ms = r.Int(i, 5);
        info.leader = r.Text(i, 6) == "t";
    }
    return out;
}

#undef COGS_NOW_MS

}  // namespace cogs::store
