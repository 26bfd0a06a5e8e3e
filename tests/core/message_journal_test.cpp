// The MessageJournal seam: what the core reports for a store to keep. Only persistent messages
// in durable queues, in when they enter, out when they leave for good (ack, reject, no-ack
// delivery and get, TTL, length limit, purge), never for a requeue; and durable queue deletion.
// And paging: past its in-memory limits a queue keeps only the journal's handle of a message and
// asks for it back (reload) when it is taken.

#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include "broker/core/message_journal.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <vector>

using namespace depot;
using namespace depot::tests;

namespace {

// Keeps a copy of every message it is given, under a handle, as a store would on disk.
class RecordingJournal final : public core::MessageJournal {
public:
    void enqueued(const core::Queue& q, const core::MessageRef& m) override {
        if (m->journalHandle == 0) {
            m->journalHandle = nextHandle++;
            kept.emplace(m->journalHandle, *m);
        }
        events.push_back("in " + q.name() + " " + m->body);
    }
    void removed(const core::Queue& q, std::uint64_t handle) override {
        events.push_back("out " + q.name() + " " + kept.at(handle).body);
    }
    void queueDeleted(const core::Queue& q) override { events.push_back("deleted " + q.name()); }
    void reload(std::span<const std::uint64_t> handles, std::span<core::MessageRef> out) override {
        ++reloadCalls;
        for (std::size_t i = 0; i < handles.size(); ++i) {
            ++reloads;
            out[i] =
                failReloads ? nullptr : std::make_shared<const core::Message>(kept.at(handles[i]));
            if (out[i])
                out[i]->journalHandle = handles[i];
        }
    }
    std::vector<std::string> take() { return std::exchange(events, {}); }
    std::vector<std::string> events;
    std::map<std::uint64_t, core::Message> kept;
    std::uint64_t nextHandle = 1;
    int reloads = 0; // messages asked for
    int reloadCalls = 0;
    bool failReloads = false;
};

core::Properties persistent() {
    core::Properties p;
    p.deliveryMode = core::DeliveryMode::PERSISTENT;
    return p;
}

struct Fixture {
    core::Broker broker;
    core::Vhost& vhost = broker.defaultVhost();
    core::Channel& channel = vhost.openChannel();
    RecordingJournal journal;
    Fixture() {
        vhost.setJournal(&journal);
        declareQueue(channel, "d", queueOptions({}, /*durable=*/true));
        declareQueue(channel, "t", queueOptions({}, /*durable=*/false));
    }
};

// A durable queue "q" that keeps two messages in memory, given m1..m5: three are paged out.
core::Queue* fiveInTwoInMemory(Fixture& f) {
    declareQueue(f.channel, "q",
                 queueOptions({{"x-max-in-memory-length", std::int64_t{2}}}, /*durable=*/true));
    core::Queue* queue = f.vhost.queue("q");
    REQUIRE(queue != nullptr);
    for (int i = 1; i <= 5; ++i)
        (void)publish(f.channel, "", "q", "m" + std::to_string(i), T0, persistent());
    CHECK(queue->pagedCount() == 3);
    return queue;
}

} // namespace

TEST_CASE("journal: only persistent messages in durable queues are reported") {
    Fixture f;
    (void)publish(f.channel, "", "d", "kept", T0, persistent());
    (void)publish(f.channel, "", "d", "transient", T0);
    (void)publish(f.channel, "", "t", "not durable", T0, persistent());
    CHECK(f.journal.take() == std::vector<std::string>{"in d kept"});
}

TEST_CASE("journal: ack and reject are outs, a requeue is not") {
    Fixture f;
    (void)publish(f.channel, "", "d", "a", T0, persistent());
    (void)publish(f.channel, "", "d", "b", T0, persistent());
    f.journal.take();
    auto first = get(f.channel, "d", false);
    REQUIRE(first);
    DEPOT_REQUIRE_OK(f.channel.reject(first->deliveryTag, /*requeue=*/true, T0));
    CHECK(f.journal.take().empty()); // back in the queue: still kept
    auto again = get(f.channel, "d", false);
    REQUIRE(again);
    DEPOT_REQUIRE_OK(f.channel.ack(again->deliveryTag, false, T0));
    auto second = get(f.channel, "d", false);
    REQUIRE(second);
    DEPOT_REQUIRE_OK(f.channel.reject(second->deliveryTag, /*requeue=*/false, T0));
    CHECK(f.journal.take() == std::vector<std::string>{"out d a", "out d b"});
}

TEST_CASE("journal: no-ack get, TTL, length limit and purge are outs, deletion is reported") {
    Fixture f;
    (void)publish(f.channel, "", "d", "taken", T0, persistent());
    (void)get(f.channel, "d", /*noAck=*/true);
    declareQueue(f.channel, "short", queueOptions({{"x-max-length", std::int64_t{1}}}, true));
    (void)publish(f.channel, "", "short", "old", T0, persistent());
    (void)publish(f.channel, "", "short", "new", T0, persistent());
    declareQueue(f.channel, "ttl", queueOptions({{"x-message-ttl", std::int64_t{10}}}, true));
    (void)publish(f.channel, "", "ttl", "stale", T0, persistent());
    f.broker.advanceTo(at(20));
    (void)publish(f.channel, "", "d", "purged", T0, persistent());
    DEPOT_REQUIRE_OK(f.channel.purgeQueue("d", T0));
    DEPOT_REQUIRE_OK(f.channel.deleteQueue("short", false, false, T0));
    CHECK(f.journal.take() ==
          std::vector<std::string>{"in d taken", "out d taken", "in short old", "in short new",
                                   "out short old", "in ttl stale", "out ttl stale", "in d purged",
                                   "out d purged", "deleted short"});
}

// Recovery after a restart: a restored message's TTL counts from its original enqueue, so one
// that expired while the broker was down goes at once, and one with time left keeps only that.
TEST_CASE("journal: a restored message's TTL counts from its original enqueue") {
    Fixture f;
    declareQueue(f.channel, "ttl", queueOptions({{"x-message-ttl", std::int64_t{100}}}, true));
    core::Queue* queue = f.vhost.queue("ttl");
    REQUIRE(queue != nullptr);
    f.journal.kept.emplace(101, *core::makeMessage("", "ttl", persistent(), "stale"));
    f.journal.kept.emplace(102, *core::makeMessage("", "ttl", persistent(), "fresh"));
    const core::TimePoint restart = at(1'000);
    // 50 ms past its TTL, and 40 ms left:
    queue->restore(core::PagedMessage{101, 5, {}}, restart - core::Milliseconds(150), restart);
    queue->restore(core::PagedMessage{102, 5, {}}, restart - core::Milliseconds(60), restart);
    CHECK(f.journal.take() == std::vector<std::string>{"out ttl stale"});
    CHECK(queue->readyCount() == 1);
    f.broker.advanceTo(restart + core::Milliseconds(39));
    CHECK(queue->readyCount() == 1);
    f.broker.advanceTo(restart + core::Milliseconds(40));
    CHECK(queue->readyCount() == 0);
    CHECK(f.journal.take() == std::vector<std::string>{"out ttl fresh"});
}

TEST_CASE("journal: a restored message comes back paged out, and is read back when taken") {
    Fixture f;
    core::Queue* queue = f.vhost.queue("d");
    REQUIRE(queue != nullptr);
    f.journal.kept.emplace(7, *core::makeMessage("", "d", persistent(), "back"));
    queue->restore(core::PagedMessage{7, 4, core::Milliseconds(500)}, T0, T0);
    CHECK(queue->pagedCount() == 1);
    CHECK(queue->readyBytes() == 4);
    auto got = get(f.channel, "d", false);
    REQUIRE(got);
    CHECK(label(got) == "back(R)");
    CHECK(got->message->journalHandle == 7);
    CHECK(f.journal.reloads == 1);
    CHECK(queue->pagedCount() == 0);
    DEPOT_REQUIRE_OK(f.channel.ack(got->deliveryTag, false, T0));
    CHECK(f.journal.take() == std::vector<std::string>{"out d back"});
    // Its own expiration came back with it: a second one expires after 500 ms.
    queue->restore(core::PagedMessage{7, 4, core::Milliseconds(500)}, T0, T0);
    f.broker.advanceTo(at(501));
    CHECK(queue->readyCount() == 0);
    CHECK(f.journal.reloads == 1); // expired without being read: no dead-letter exchange
}

TEST_CASE("journal: a lazy queue pages out every persistent message and gives them back in order") {
    Fixture f;
    declareQueue(f.channel, "lazy",
                 queueOptions({{"x-queue-mode", std::string("lazy")}}, /*durable=*/true));
    core::Queue* queue = f.vhost.queue("lazy");
    REQUIRE(queue != nullptr);
    (void)publish(f.channel, "", "lazy", "p1", T0, persistent());
    (void)publish(f.channel, "", "lazy", "t2", T0); // transient: nothing to read it back from
    (void)publish(f.channel, "", "lazy", "p3", T0, persistent());
    CHECK(queue->readyCount() == 3);
    CHECK(queue->pagedCount() == 2);
    CHECK(queue->readyBytes() == 6);
    CHECK(drain(f.channel, "lazy") == std::vector<std::string>{"p1", "t2", "p3"});
    CHECK(f.journal.reloads == 2);
    CHECK(f.journal.reloadCalls == 1); // p3 read ahead with p1
    CHECK(queue->readyBytes() == 0);
}

TEST_CASE("journal: x-max-in-memory-length keeps the head in memory and pages out the rest") {
    Fixture f;
    core::Queue* queue = fiveInTwoInMemory(f);
    auto first = get(f.channel, "q", false);
    auto second = get(f.channel, "q", false);
    CHECK(f.journal.reloads == 0); // the head was in memory
    auto third = get(f.channel, "q", false);
    // Read back with the two behind it, in one call.
    CHECK(f.journal.reloads == 3);
    CHECK(f.journal.reloadCalls == 1);
    CHECK(queue->pagedCount() == 0);
    REQUIRE(third);
    CHECK(label(third) == "m3");
    // A message read back and requeued goes back to its place, in memory.
    DEPOT_REQUIRE_OK(f.channel.reject(third->deliveryTag, /*requeue=*/true, T0));
    CHECK(drain(f.channel, "q") == std::vector<std::string>{"m3(R)", "m4", "m5"});
    CHECK(f.journal.reloadCalls == 1);
}

TEST_CASE("journal: the in-memory limits count what is in memory, not the backlog") {
    // A backlog past the limit must not page out every later arrival: once the head drained,
    // new messages are kept in memory again, up to the limit, and still come out in order.
    Fixture f;
    core::Queue* queue = fiveInTwoInMemory(f);
    auto first = get(f.channel, "q", /*noAck=*/true);
    auto second = get(f.channel, "q", /*noAck=*/true);
    for (int i = 6; i <= 8; ++i)
        (void)publish(f.channel, "", "q", "m" + std::to_string(i), T0, persistent());
    CHECK(queue->pagedCount() == 4); // m6 and m7 took the places m1 and m2 left; m8 is paged
    CHECK(drain(f.channel, "q") == std::vector<std::string>{"m3", "m4", "m5", "m6", "m7", "m8"});
    CHECK(f.journal.reloads == 4);
}

TEST_CASE("journal: x-max-in-memory-bytes pages out by body size") {
    Fixture f;
    declareQueue(f.channel, "q",
                 queueOptions({{"x-max-in-memory-bytes", std::int64_t{10}}}, /*durable=*/true));
    core::Queue* queue = f.vhost.queue("q");
    REQUIRE(queue != nullptr);
    (void)publish(f.channel, "", "q", std::string(6, 'a'), T0, persistent());
    (void)publish(f.channel, "", "q", std::string(4, 'b'), T0, persistent());
    CHECK(queue->pagedCount() == 0);
    (void)publish(f.channel, "", "q", std::string(1, 'c'), T0, persistent());
    CHECK(queue->pagedCount() == 1);
    CHECK(queue->readyBytes() == 11);
}

TEST_CASE("journal: paged messages expire, overflow and are dead-lettered with their contents") {
    Fixture f;
    declareQueue(f.channel, "dlq", queueOptions({}, /*durable=*/true));
    declareQueue(f.channel, "src",
                 queueOptions({{"x-queue-mode", std::string("lazy")},
                               {"x-message-ttl", std::int64_t{100}},
                               {"x-max-length", std::int64_t{2}},
                               {"x-dead-letter-exchange", std::string("")},
                               {"x-dead-letter-routing-key", std::string("dlq")}},
                              /*durable=*/true));
    core::Queue* src = f.vhost.queue("src");
    REQUIRE(src != nullptr);
    (void)publish(f.channel, "", "src", "first", T0, persistent());
    (void)publish(f.channel, "", "src", "second", T0, persistent());
    (void)publish(f.channel, "", "src", "third", at(10), persistent()); // drops "first"
    CHECK(src->readyCount() == 2);
    f.broker.advanceTo(at(200)); // the other two expire
    CHECK(src->readyCount() == 0);
    CHECK(src->pagedCount() == 0);
    CHECK(drain(f.channel, "dlq") == std::vector<std::string>{"first", "second", "third"});
    auto events = f.journal.take();
    CHECK(std::count(events.begin(), events.end(), "out src first") == 1);
    CHECK(std::count(events.begin(), events.end(), "out src third") == 1);
}

// Skipped, not acked: the journal keeps it (depotd delivers it again after a restart).
TEST_CASE("journal: a paged message the journal cannot give back is skipped, not removed") {
    Fixture f;
    declareQueue(f.channel, "lazy",
                 queueOptions({{"x-queue-mode", std::string("lazy")}}, /*durable=*/true));
    (void)publish(f.channel, "", "lazy", "lost", T0, persistent());
    (void)publish(f.channel, "", "lazy", "kept", T0);
    f.journal.take();
    f.journal.failReloads = true;
    CHECK(drain(f.channel, "lazy") == std::vector<std::string>{"kept"});
    CHECK(f.journal.take().empty());
    CHECK(f.vhost.queue("lazy")->pagedCount() == 0);
}

TEST_CASE("journal: purging a queue with paged messages reports each one out") {
    Fixture f;
    declareQueue(f.channel, "lazy",
                 queueOptions({{"x-queue-mode", std::string("lazy")}}, /*durable=*/true));
    (void)publish(f.channel, "", "lazy", "a", T0, persistent());
    (void)publish(f.channel, "", "lazy", "b", T0, persistent());
    f.journal.take();
    DEPOT_REQUIRE_OK(f.channel.purgeQueue("lazy", T0));
    CHECK(f.journal.take() == std::vector<std::string>{"out lazy a", "out lazy b"});
    CHECK(f.vhost.queue("lazy")->pagedCount() == 0);
    CHECK(f.journal.reloads == 0);
}

TEST_CASE("journal: read-ahead stops at 128 messages and 1 MiB") {
    Fixture f;
    declareQueue(f.channel, "lazy",
                 queueOptions({{"x-queue-mode", std::string("lazy")}}, /*durable=*/true));
    core::Queue* queue = f.vhost.queue("lazy");
    for (int i = 0; i < 300; ++i)
        (void)publish(f.channel, "", "lazy", "m" + std::to_string(i), T0, persistent());
    (void)get(f.channel, "lazy", true);
    CHECK(f.journal.reloads == 129); // the one taken and the 128 behind it
    CHECK(queue->pagedCount() == 300 - 129);
    DEPOT_REQUIRE_OK(f.channel.purgeQueue("lazy", T0));
    for (int i = 0; i < 10; ++i)
        (void)publish(f.channel, "", "lazy", std::string(300'000, 'x'), T0, persistent());
    f.journal.reloads = 0;
    (void)get(f.channel, "lazy", true);
    CHECK(f.journal.reloads == 3); // a fourth 300 KB would pass 1 MiB
}
