// Message TTL (x-message-ttl and the expiration property) and queue expiry (x-expires). Time
// is a value: the tests publish at T0 + n ms and call Broker::advanceTo, as the runtime does
// when the timer it armed at nextDeadline() fires.

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace depot::core;
using namespace depot::tests;

namespace {

using Names = std::vector<std::string>;

QueueOptions ttl(std::int64_t ms) {
    QueueOptions options;
    options.messageTtl = Milliseconds(ms);
    return options;
}

QueueOptions expires(std::int64_t ms) {
    QueueOptions options;
    options.expires = Milliseconds(ms);
    return options;
}

} // namespace

TEST_CASE("x-message-ttl expires each message at its deadline") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", ttl(100));
    (void)publish(ch, "", "q", "m1", at(0));
    (void)publish(ch, "", "q", "m2", at(50));
    CHECK(broker.nextDeadline() == at(100));

    broker.advanceTo(at(99));
    CHECK(readyCount(vhost, "q") == 2);
    broker.advanceTo(at(100));
    CHECK(readyCount(vhost, "q") == 1);
    CHECK(broker.nextDeadline() == at(150));
    broker.advanceTo(at(149));
    CHECK(readyCount(vhost, "q") == 1);
    broker.advanceTo(at(150));
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("advancing far past several deadlines expires them all at once") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", ttl(10));
    for (int i = 0; i < 5; ++i)
        (void)publish(ch, "", "q", "m" + std::to_string(i), at(i));
    (void)publish(ch, "", "q", "late", at(100));
    broker.advanceTo(at(50));
    CHECK(drain(ch, "q", at(50)) == Names{"late"});
}

TEST_CASE("a message's expiration property is its own TTL") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    (void)publish(ch, "", "q", "m1", at(0), expiringIn(50));
    (void)publish(ch, "", "q", "m2", at(0));
    CHECK(broker.nextDeadline() == at(50));
    broker.advanceTo(at(50));
    CHECK(drain(ch, "q", at(50)) == Names{"m2"});
}

TEST_CASE("the smaller of the queue's and the message's TTL applies") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "short-message", ttl(100));
    declareQueue(ch, "short-queue", ttl(100));
    (void)publish(ch, "", "short-message", "m1", at(0), expiringIn(30));
    (void)publish(ch, "", "short-queue", "m2", at(0), expiringIn(500));
    CHECK(broker.nextDeadline() == at(30));
    broker.advanceTo(at(30));
    CHECK(readyCount(vhost, "short-message") == 0);
    CHECK(readyCount(vhost, "short-queue") == 1);
    CHECK(broker.nextDeadline() == at(100));
    broker.advanceTo(at(100));
    CHECK(readyCount(vhost, "short-queue") == 0);
}

TEST_CASE("a TTL of 0 reaches a waiting consumer but is dropped otherwise") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    SUBCASE("queue TTL 0") {
        declareQueue(ch, "q", ttl(0));
    }
    SUBCASE("message expiration 0") {
        declareQueue(ch, "q");
    }
    auto properties = [&] {
        return vhost.findQueue("q")->options().messageTtl ? Properties{} : expiringIn(0);
    };

    (void)publish(ch, "", "q", "nobody-waiting", at(10), properties());
    CHECK(readyCount(vhost, "q") == 0);
    CHECK_FALSE(get(ch, "q", true, at(10)).has_value());

    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1));
    (void)publish(ch, "", "q", "m1", at(20), properties());
    CHECK(sink.bodies() == Names{"m1"});
    // The consumer is full now: the next one has nobody waiting and is dropped.
    (void)publish(ch, "", "q", "m2", at(20), properties());
    CHECK(readyCount(vhost, "q") == 0);
    DEPOT_REQUIRE_OK(ch.ack(sink.last().deliveryTag, false, at(21)));
    CHECK(sink.bodies() == Names{"m1"});
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("an expired message is never delivered, even behind a live head") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    (void)publish(ch, "", "q", "m1", at(0));
    (void)publish(ch, "", "q", "m2", at(0), expiringIn(10));
    (void)publish(ch, "", "q", "m3", at(0));

    SUBCASE("basic.get skips it") {
        CHECK(drain(ch, "q", at(20)) == Names{"m1", "m3"});
    }
    SUBCASE("a consumer never sees it") {
        broker.advanceTo(at(20)); // the head is live, so nothing expires yet
        RecordingSink sink;
        consume(ch, "q", sink, consumeOptions("c"), at(20));
        CHECK(sink.bodies() == Names{"m1", "m3"});
    }
    CHECK(readyCount(vhost, "q") == 0);
}

TEST_CASE("basic.get drops an expired head even before advanceTo runs") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q", ttl(10));
    (void)publish(ch, "", "q", "old", at(0));
    (void)publish(ch, "", "q", "new", at(15));
    CHECK(label(get(ch, "q", true, at(20))) == "new");
}

TEST_CASE("a requeued message keeps its original expiry") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", ttl(100));
    (void)publish(ch, "", "q", "m1", at(0));
    auto first = get(ch, "q", false, at(50));
    REQUIRE(first.has_value());
    DEPOT_REQUIRE_OK(ch.nack(first->deliveryTag, false, true, at(80)));
    CHECK(broker.nextDeadline() == at(100)); // not 180
    auto second = get(ch, "q", false, at(90));
    CHECK(label(second) == "m1(R)");
    DEPOT_REQUIRE_OK(ch.nack(second->deliveryTag, false, true, at(95)));
    broker.advanceTo(at(100));
    CHECK(readyCount(vhost, "q") == 0);
}

TEST_CASE("unacked messages do not expire, but one requeued after its deadline is dropped") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", ttl(100));
    (void)publish(ch, "", "q", "m1", at(0));
    (void)publish(ch, "", "q", "m2", at(0));
    auto m1 = get(ch, "q", false, at(10));
    auto m2 = get(ch, "q", false, at(10));
    REQUIRE((m1 && m2));
    broker.advanceTo(at(500));
    CHECK(unackedCount(vhost, "q") == 2);
    DEPOT_CHECK_OK(ch.ack(m1->deliveryTag, false, at(500)));
    DEPOT_CHECK_OK(ch.nack(m2->deliveryTag, false, true, at(500)));
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(unackedCount(vhost, "q") == 0);
}

TEST_CASE("Broker::nextDeadline covers every vhost, and advanceTo reaches each") {
    Broker broker;
    Result<Vhost*> added = broker.addVhost("v2");
    REQUIRE(added.ok());
    Vhost& v1 = broker.defaultVhost();
    Vhost& v2 = **added;
    Channel& ch1 = v1.openChannel();
    Channel& ch2 = v2.openChannel();
    CHECK(broker.nextDeadline() == NEVER);

    declareQueue(ch1, "q", ttl(100));
    declareQueue(ch2, "q", ttl(50));
    (void)publish(ch1, "", "q", "m1", at(0));
    (void)publish(ch2, "", "q", "m1", at(0));
    CHECK(v1.nextDeadline() == at(100));
    CHECK(v2.nextDeadline() == at(50));
    CHECK(broker.nextDeadline() == at(50));

    broker.advanceTo(broker.nextDeadline());
    CHECK(readyCount(v2, "q") == 0);
    CHECK(readyCount(v1, "q") == 1);
    CHECK(broker.nextDeadline() == at(100));
    broker.advanceTo(broker.nextDeadline());
    CHECK(readyCount(v1, "q") == 0);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("deadlines go away when the messages do") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q", ttl(100));
    (void)publish(ch, "", "q", "m1", at(0));
    REQUIRE(broker.nextDeadline() == at(100));

    SUBCASE("taken by get") {
        (void)get(ch, "q", true, at(1));
    }
    SUBCASE("purged") {
        REQUIRE(ch.purgeQueue("q", at(1)).ok());
    }
    SUBCASE("queue deleted") {
        REQUIRE(ch.deleteQueue("q", false, false, at(1)).ok());
    }
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("x-expires deletes a queue left unused") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", expires(100), at(0));
    (void)publish(ch, "", "q", "publishing does not count as use", at(50));
    CHECK(broker.nextDeadline() == at(100));
    broker.advanceTo(at(99));
    CHECK(vhost.findQueue("q") != nullptr);
    broker.advanceTo(at(100));
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("x-expires does not delete a queue while it has a consumer") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", expires(100), at(0));
    RecordingSink sink;
    const std::string tag = consume(ch, "q", sink, consumeOptions("c"), at(10));
    CHECK(broker.nextDeadline() == NEVER);
    broker.advanceTo(at(1000));
    CHECK(vhost.findQueue("q") != nullptr);

    DEPOT_REQUIRE_OK(ch.cancel(tag, at(1000)));
    CHECK(broker.nextDeadline() == at(1100));
    broker.advanceTo(at(1099));
    CHECK(vhost.findQueue("q") != nullptr);
    broker.advanceTo(at(1100));
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(sink.cancelled().empty()); // it had no consumer left to tell
}

TEST_CASE("x-expires restarts its countdown on basic.get and on declare") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", expires(100), at(0));

    CHECK_FALSE(get(ch, "q", true, at(60)).has_value()); // even an empty get counts
    CHECK(broker.nextDeadline() == at(160));
    broker.advanceTo(at(150));
    REQUIRE(vhost.findQueue("q") != nullptr);

    declareQueue(ch, "q", expires(100), at(150));
    CHECK(broker.nextDeadline() == at(250));
    broker.advanceTo(at(240));
    REQUIRE(vhost.findQueue("q") != nullptr);

    DEPOT_REQUIRE_OK(ch.declareQueuePassive("q", at(240)));
    broker.advanceTo(at(339));
    REQUIRE(vhost.findQueue("q") != nullptr);
    broker.advanceTo(at(340));
    CHECK(vhost.findQueue("q") == nullptr);
}

TEST_CASE("an expired queue takes its messages and bindings with it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "x", ExchangeType::FANOUT);
    declareQueue(ch, "q", expires(100), at(0));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", ""));
    (void)publish(ch, "x", "", "m1", at(10));
    broker.advanceTo(at(100));
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(vhost.listBindings().empty());
    CHECK(publish(ch, "x", "", "m2", at(101)).queues == 0);
}

TEST_CASE("TTLs and expiries too large for the clock are refused, not overflowed") {
    const auto ttl = queueOptionsFromArguments(
        false, false, false, FieldTable{{"x-message-ttl", std::int64_t{INT64_MAX}}});
    CHECK(codeOf(ttl) == "PRECONDITION_FAILED");
    const auto expires = queueOptionsFromArguments(
        false, false, false, FieldTable{{"x-expires", std::int64_t{INT64_MAX / 2}}});
    CHECK(codeOf(expires) == "PRECONDITION_FAILED");
    // The same through a declare with options built in code.
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    QueueOptions options;
    options.messageTtl = Milliseconds(INT64_MAX / 1000);
    CHECK(codeOf(ch.declareQueue("q", options, T0)) == "PRECONDITION_FAILED");
}
