// The model's indexes (core/model.h): each test changes records the ways the control plane does —
// a Put that replaces, an erase, a change in place through a pointer the model handed out, before
// or after a read in the same io-thread handler — and checks that every index answers what a walk
// over the records would.
#include "cogs/cloud/core/model.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cogs::cloud {
namespace {

// A model whose end-of-handler callbacks wait until the test ends the handler (EndHandler()).
class ModelTest : public ::testing::Test {
protected:
    Model m_{[this](std::function<void()> fn) { later_.push_back(std::move(fn)); }};

    void EndHandler() {
        auto fns = std::exchange(later_, {});
        for (auto& fn : fns) {
            fn();
        }
    }

    static Res Server(const std::string& id, const std::string& project, const std::string& status,
                      const std::string& host = "", const std::string& group = "") {
        Res r{std::string(kServer), id, project, {}};
        r.body = {{"id", id}, {"status", status}, {"host", host}, {"server_group_id", group}};
        return r;
    }
    static Res Port(const std::string& id, const std::string& project, const std::string& network,
                    const std::string& status, const std::string& subnet = "") {
        Res r{std::string(kPort), id, project, {}};
        r.body = {{"id", id}, {"status", status}, {"network_id", network}, {"subnet_id", subnet}};
        return r;
    }

    static std::vector<std::string> IdsOf(const Model::Ids& ids) {
        std::vector<std::string> out;
        for (const Res* r : ids) {
            out.push_back(r->id);
        }
        return out;
    }
    // The ids after `marker`, as a list's next page walks them.
    static std::vector<std::string> After(const Model::Ids& ids, const std::string& marker) {
        std::vector<std::string> out;
        for (auto it = ids.upper_bound(marker); it != ids.end(); ++it) {
            out.push_back((*it)->id);
        }
        return out;
    }
    std::map<std::string, int64_t> Counts(std::string_view kind) const {
        const auto& c = m_.StatusCounts(kind);
        return {c.begin(), c.end()};
    }

    std::vector<std::function<void()>> later_;
};

using Ids = std::vector<std::string>;
using Counted = std::map<std::string, int64_t>;

TEST_F(ModelTest, AProjectsRecordsAreItsOwnInIdOrderAndPageFromAMarker) {
    // Interleaved with two other projects' records, put in no particular order.
    for (const auto& [id, project] : std::vector<std::pair<std::string, std::string>>{
             {"s5", "a"}, {"s1", "b"}, {"s3", "a"}, {"s2", "c"}, {"s4", "b"}, {"s0", "a"}, {"s6", "c"}}) {
        m_.Put(Server(id, project, "ACTIVE"));
    }
    EXPECT_EQ(IdsOf(m_.OfProject(kServer, "a")), (Ids{"s0", "s3", "s5"}));
    EXPECT_EQ(IdsOf(m_.OfProject(kServer, "b")), (Ids{"s1", "s4"}));
    EXPECT_EQ(After(m_.OfProject(kServer, "a"), "s0"), (Ids{"s3", "s5"}));
    EXPECT_EQ(After(m_.OfProject(kServer, "a"), "s1"), (Ids{"s3", "s5"})) << "a marker of another's id";
    EXPECT_EQ(After(m_.OfProject(kServer, "a"), "s5"), Ids{});
    EXPECT_TRUE(m_.OfProject(kServer, "nobody").empty());
    EXPECT_TRUE(m_.OfProject(kPort, "a").empty()) << "per kind";
}

TEST_F(ModelTest, APutThatReplacesARecordMovesItWhereItsNewValuesAre) {
    m_.Put(Port("p1", "a", "n1", "BUILD"));
    m_.Put(Port("p2", "a", "n1", "BUILD"));
    m_.Put(Port("p1", "b", "n2", "ACTIVE", "sub"));

    EXPECT_EQ(IdsOf(m_.OfProject(kPort, "a")), Ids{"p2"});
    EXPECT_EQ(IdsOf(m_.OfProject(kPort, "b")), Ids{"p1"});
    EXPECT_EQ(IdsOf(m_.Having(kPort, "network_id", "n1")), Ids{"p2"});
    EXPECT_EQ(IdsOf(m_.Having(kPort, "network_id", "n2")), Ids{"p1"});
    EXPECT_EQ(IdsOf(m_.Having(kPort, "subnet_id", "sub")), Ids{"p1"});
    EXPECT_EQ(Counts(kPort), (Counted{{"ACTIVE", 1}, {"BUILD", 1}}));
    EXPECT_EQ(m_.All(kPort).size(), 2u);
}

TEST_F(ModelTest, AnEraseTakesTheRecordOutOfEveryIndex) {
    m_.Put(Server("s1", "a", "ACTIVE", "h1", "g1"));
    m_.Put(Server("s2", "a", "ERROR", "h1"));
    m_.Erase(kServer, "s1");
    m_.Erase(kServer, "nothing");

    EXPECT_EQ(IdsOf(m_.OfProject(kServer, "a")), Ids{"s2"});
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h1")), Ids{"s2"});
    EXPECT_TRUE(m_.Having(kServer, "server_group_id", "g1").empty());
    EXPECT_EQ(Counts(kServer), (Counted{{"ERROR", 1}})) << "no status is left counted at 0";

    m_.Erase(kServer, "s2");
    EXPECT_TRUE(m_.OfProject(kServer, "a").empty());
    EXPECT_TRUE(Counts(kServer).empty());
    EndHandler();  // debug builds check the indexes against the records here
}

TEST_F(ModelTest, AChangeInPlaceIsSeenByTheNextRead) {
    m_.Put(Server("s1", "a", "BUILD"));
    EndHandler();
    // A build settles: its host and status change in place.
    Res* s = m_.Find(kServer, "s1");
    s->body["host"] = "h1";
    s->set_status(ServerStatus::kActive);
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h1")), Ids{"s1"});
    EXPECT_EQ(Counts(kServer), (Counted{{"ACTIVE", 1}}));
    EndHandler();

    // Through Put's answer, and FindByIdOrName's.
    Res& p = m_.Put(Port("p1", "a", "n1", "BUILD"));
    p.body["subnet_id"] = "sub";
    EXPECT_EQ(IdsOf(m_.Having(kPort, "subnet_id", "sub")), Ids{"p1"});
    m_.FindByIdOrName(kServer, "s1")->body["host"] = "h2";
    EXPECT_TRUE(m_.Having(kServer, "host", "h1").empty());
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h2")), Ids{"s1"});
    EndHandler();
}

TEST_F(ModelTest, AChangeMadeAfterAReadInTheSameHandlerIsSeenByTheNextRead) {
    // What a network's delete does: find it, ask for its dependents, then change its status.
    m_.Put(Port("p1", "a", "n1", "ACTIVE"));
    EndHandler();
    Res* p = m_.Find(kPort, "p1");
    EXPECT_EQ(Counts(kPort), (Counted{{"ACTIVE", 1}}));
    p->set_status(NetStatus::kDeleting);
    p->body["network_id"] = "n2";
    EXPECT_EQ(Counts(kPort), (Counted{{"DELETING", 1}}));
    EXPECT_EQ(IdsOf(m_.Having(kPort, "network_id", "n2")), Ids{"p1"});
    p->set_status(NetStatus::kError);  // after a second read, still the same handler
    EndHandler();
    EXPECT_EQ(Counts(kPort), (Counted{{"ERROR", 1}}));
    EXPECT_TRUE(later_.empty()) << "nothing handed out since: nothing to look at again";
}

// A read catches up the records of its own kind handed out this turn: a server changed in place
// around reads of ports is seen by the next read of servers, in that turn and after it.
TEST_F(ModelTest, AReadOfAnotherKindLeavesAChangeInPlaceForTheReadsOfItsOwn) {
    m_.Put(Server("s1", "a", "BUILD"));
    m_.Put(Port("p1", "a", "n1", "ACTIVE"));
    EndHandler();
    Res* s = m_.Find(kServer, "s1");
    s->body["host"] = "h1";
    EXPECT_EQ(IdsOf(m_.Having(kPort, "network_id", "n1")), Ids{"p1"});
    s->set_status(ServerStatus::kActive);
    EXPECT_EQ(Counts(kPort), (Counted{{"ACTIVE", 1}}));
    EXPECT_EQ(IdsOf(m_.Having(kServer, "status", "ACTIVE")), Ids{"s1"});
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h1")), Ids{"s1"});
    s->body["host"] = "h2";  // after the reads of both kinds
    EndHandler();
    EXPECT_TRUE(m_.Having(kServer, "host", "h1").empty());
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h2")), Ids{"s1"});
    EXPECT_EQ(Counts(kServer), (Counted{{"ACTIVE", 1}}));
}

// Frozen records (core/model.h): whoever asks in a turn — a lookup, a read-only one, an index's
// walk — gets the same Res; a read-only lookup hands nothing out for change, so only what was
// changed is frozen again at the end of the turn.
TEST_F(ModelTest, ARecordIsOneResForTheRestOfItsTurnWhoeverAsks) {
    m_.Put(Server("s1", "a", "ACTIVE", "h1"));
    EndHandler();
    EXPECT_TRUE(m_.Has(kServer, "s1"));
    EXPECT_FALSE(m_.Has(kServer, "s2"));
    EXPECT_FALSE(m_.Has(kPort, "s1"));
    EXPECT_TRUE(later_.empty()) << "Has thaws nothing";
    const Model& read_only = m_;
    const Res* read = read_only.Find(kServer, "s1");
    ASSERT_NE(read, nullptr);
    EXPECT_EQ(*m_.OfProject(kServer, "a").begin(), read);
    EXPECT_EQ(*m_.Having(kServer, "host", "h1").begin(), read);
    EXPECT_EQ(m_.Find(kServer, "s1"), read) << "handed out for change: the same one";
    EXPECT_EQ(m_.Find(kServer, "nothing"), nullptr);
    EXPECT_EQ(later_.size(), 1u) << "one end of turn, whatever was thawed";
    EndHandler();
    EXPECT_EQ(Str(m_.Find(kServer, "s1")->body, "host"), "h1");
}

// A walk over a kind thaws each record into its own Res, one at a time: it leaves nothing thawed
// for the turn (nothing to free at its end), and gives a record thawed this turn as it is now.
TEST_F(ModelTest, AWalkOverAKindThawsOneRecordAtATimeAndSeesTheTurnsChanges) {
    for (const char* id : {"s1", "s2", "s3"}) {
        m_.Put(Server(id, "a", "BUILD"));
    }
    EndHandler();
    std::vector<std::string> walked;
    for (const auto& [id, r] : m_.All(kServer)) {
        walked.push_back(id + "=" + r.id + ":" + r.status_text() + "@" + r.project);
    }
    EXPECT_EQ(walked, (Ids{"s1=s1:BUILD@a", "s2=s2:BUILD@a", "s3=s3:BUILD@a"}));
    EXPECT_TRUE(later_.empty()) << "a walk leaves nothing thawed for the turn";

    m_.Find(kServer, "s2")->set_status(ServerStatus::kActive);
    walked.clear();
    const auto all = m_.All(kServer);
    for (auto it = all.upper_bound("s1"); it != all.end(); ++it) {
        walked.push_back(it->first + ":" + it->second.status_text());
    }
    EXPECT_EQ(walked, (Ids{"s2:ACTIVE", "s3:BUILD"}));
    EndHandler();
    EXPECT_EQ(m_.Find(kServer, "s2")->status_text(), "ACTIVE") << "frozen again with its change";
}

// The start-up load: each record frozen at once, filed, nothing thawed for a turn.
TEST_F(ModelTest, ALoadedRecordIsFiledAndFrozenAtOnce) {
    m_.Load(Server("s1", "a", "ACTIVE", "h1"));
    m_.Load(Port("p1", "a", "n1", "BUILD"));
    EXPECT_TRUE(later_.empty());
    EXPECT_EQ(Counts(kServer), (Counted{{"ACTIVE", 1}}));
    EXPECT_EQ(IdsOf(m_.Having(kPort, "network_id", "n1")), Ids{"p1"});
    EXPECT_EQ(IdsOf(m_.OfProject(kServer, "a")), Ids{"s1"});
    EXPECT_EQ(Str(m_.Find(kServer, "s1")->body, "host"), "h1");
    EndHandler();
}

// A record erased in the turn it was thawed: gone from the turn's too.
TEST_F(ModelTest, ARecordErasedInItsTurnIsGoneAndTheTurnEndsWell) {
    m_.Put(Server("s1", "a", "ACTIVE"));
    m_.Put(Server("s2", "a", "ACTIVE"));
    EndHandler();
    m_.Find(kServer, "s1")->body["host"] = "h1";
    m_.Erase(kServer, "s1");
    EndHandler();
    EXPECT_EQ(m_.Find(kServer, "s1"), nullptr);
    EXPECT_EQ(IdsOf(m_.OfProject(kServer, "a")), Ids{"s2"});
    EXPECT_TRUE(m_.Having(kServer, "host", "h1").empty());
}

TEST_F(ModelTest, EmptyValuesAreInNoIndex) {
    m_.Put(Server("s1", "", "BUILD", "", ""));
    EXPECT_TRUE(m_.OfProject(kServer, "").empty());
    EXPECT_TRUE(m_.Having(kServer, "host", "").empty());
    EXPECT_TRUE(m_.Having(kServer, "server_group_id", "").empty());
    EXPECT_EQ(Counts(kServer), (Counted{{"BUILD", 1}}));
    EXPECT_TRUE(Counts(kHost).empty()) << "only the status kinds are counted";
}

TEST_F(ModelTest, OnlyTheIndexedFieldsCanBeAskedFor) {
    EXPECT_TRUE(Model::Indexed(kPort, "network_id"));
    EXPECT_FALSE(Model::Indexed(kServer, "network_id"));
    EXPECT_DEATH(m_.Having(kServer, "name", "x"), "does not index");
}

#if defined(__SANITIZE_ADDRESS__)
// A Res* kept past the handler that obtained it is freed memory at the end of the turn: the
// sanitizer build (`make test` runs every test under it) reports a use of it.
TEST_F(ModelTest, APointerKeptPastItsHandlerIsFreedMemoryInTheSanitizerBuild) {
    Res* kept = &m_.Put(Server("s1", "a", "ACTIVE", "h1"));
    EndHandler();
    EXPECT_DEATH(kept->body["host"] = "h2", "heap-use-after-free");
}
#endif

// Memory (the README's "Memory"): a body built field by field, or grown by a change in place, holds
// room for more; once the handler that changed it has returned the model keeps it frozen, and thaws
// exactly its fields, in the same order, with the indexes still right.
TEST_F(ModelTest, ABodyChangedInPlaceKeepsItsFieldsInExactlyTheirRoom) {
    Res r = Server("s1", "p1", "BUILD");
    for (int i = 0; i < 10; ++i) {
        r.body["_f" + std::to_string(i)] = "value " + std::to_string(i);
    }
    ASSERT_GT(r.body.capacity(), r.body.size());  // boost::json grew it by half again
    const json::object want_put = r.body;
    const Res& stored = m_.Put(std::move(r));
    EXPECT_EQ(stored.body, want_put);
    EndHandler();
    EXPECT_EQ(m_.Find(kServer, "s1")->body.capacity(), want_put.size());
    EndHandler();

    Res* s = m_.Find(kServer, "s1");
    s->set_status(ServerStatus::kActive);
    s->body["host"] = "h1";
    s->body["_cidr"] = "10.0.0.0/24";
    s->body["_gateway_ip"] = "10.0.0.1";
    json::object want = s->body;
    EndHandler();
    const Res* after = m_.Find(kServer, "s1");
    EXPECT_EQ(after->body, want);
    std::vector<std::string> keys, want_keys;
    for (const auto& kv : after->body)
        keys.emplace_back(kv.key());
    for (const auto& kv : want)
        want_keys.emplace_back(kv.key());
    EXPECT_EQ(keys, want_keys);
    EXPECT_EQ(after->body.capacity(), after->body.size());
    EXPECT_EQ(IdsOf(m_.Having(kServer, "host", "h1")), std::vector<std::string>{"s1"});
    EXPECT_EQ(Counts(kServer), (std::map<std::string, int64_t>{{"ACTIVE", 1}}));
}

}  // namespace
}  // namespace cogs::cloud
