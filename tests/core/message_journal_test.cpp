// The MessageJournal seam: what the core reports for a store to keep. Only persistent messages
// in durable queues, in when they enter, out when they leave for good (ack, reject, no-ack
// delivery and get, TTL, length limit, purge), never for a requeue; and durable queue deletion.

#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include "broker/core/message_journal.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace depot;
using namespace depot::tests;

namespace {

class RecordingJournal final : public core::MessageJournal {
public:
    void enqueued(const core::Queue& q, const core::MessageRef& m) override {
        events.push_back("in " + q.name() + " " + m->body);
    }
    void removed(const core::Queue& q, const core::MessageRef& m) override {
        events.push_back("out " + q.name() + " " + m->body);
    }
    void queueDeleted(const core::Queue& q) override { events.push_back("deleted " + q.name()); }
    std::vector<std::string> take() { return std::exchange(events, {}); }
    std::vector<std::string> events;
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
    auto stale = core::makeMessage("", "ttl", persistent(), "stale");
    auto fresh = core::makeMessage("", "ttl", persistent(), "fresh");
    const core::TimePoint restart = at(1'000);
    queue->restore(stale, restart - core::Milliseconds(150), restart); // 50 ms past its TTL
    queue->restore(fresh, restart - core::Milliseconds(60), restart);  // 40 ms left
    CHECK(f.journal.take() == std::vector<std::string>{"out ttl stale"});
    CHECK(queue->readyCount() == 1);
    f.broker.advanceTo(restart + core::Milliseconds(39));
    CHECK(queue->readyCount() == 1);
    f.broker.advanceTo(restart + core::Milliseconds(40));
    CHECK(queue->readyCount() == 0);
    CHECK(f.journal.take() == std::vector<std::string>{"out ttl fresh"});
}
