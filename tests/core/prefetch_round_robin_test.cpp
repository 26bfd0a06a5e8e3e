// Competing consumers, as RABBITMQ-FACTS (iii) records them: with prefetch 1 the next message
// goes to whichever consumer frees a slot first; without a limit delivery alternates in
// registration order. Also channel flow, exclusive consumers and consumer tags.

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

using namespace depot::core;
using namespace depot::tests;

namespace {
using Names = std::vector<std::string>;
}

TEST_CASE("two prefetch-1 consumers: the next message goes to whichever frees a slot first") {
    // RABBITMQ-FACTS (iii), as scripted there; one sink records both consumers in order.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& chA = vhost.openChannel();
    Channel& chB = vhost.openChannel();
    declareQueue(chA, "q");
    publishNumbered(chA, "q", 1, 10);
    RecordingSink sink;
    consume(chA, "q", sink, consumeOptions("A", 1));
    consume(chB, "q", sink, consumeOptions("B", 1));
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2"});

    auto ackA = [&] { DEPOT_REQUIRE_OK(chA.ack(sink.lastTagFor("A"), false, T0)); };
    auto ackB = [&] { DEPOT_REQUIRE_OK(chB.ack(sink.lastTagFor("B"), false, T0)); };
    ackA();
    ackB();
    ackB();
    ackA();
    ackA();
    ackA();
    CHECK(sink.taggedBodies() ==
          Names{"A:m1", "B:m2", "A:m3", "B:m4", "B:m5", "A:m6", "A:m7", "A:m8"});

    // B and A ack back to back: m9 to B, m10 to A.
    ackB();
    ackA();
    CHECK(sink.taggedBodies() ==
          Names{"A:m1", "B:m2", "A:m3", "B:m4", "B:m5", "A:m6", "A:m7", "A:m8", "B:m9", "A:m10"});
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(unackedCount(vhost, "q") == 2);
}

TEST_CASE("without a prefetch limit delivery alternates in registration order") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& chA = vhost.openChannel();
    Channel& chB = vhost.openChannel();
    declareQueue(chA, "q");
    RecordingSink sink;
    consume(chA, "q", sink, consumeOptions("A"));
    consume(chB, "q", sink, consumeOptions("B"));
    publishNumbered(chA, "q", 1, 6);
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2", "A:m3", "B:m4", "A:m5", "B:m6"});
}

TEST_CASE("three consumers on one channel take turns") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    for (const char* tag : {"A", "B", "C"})
        consume(ch, "q", sink, consumeOptions(tag));
    publishNumbered(ch, "q", 1, 7);
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2", "C:m3", "A:m4", "B:m5", "C:m6", "A:m7"});
}

TEST_CASE("a backlog is shared in registration order when consumers arrive") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 4);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("A", 1));
    consume(ch, "q", sink, consumeOptions("B", 2));
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2", "B:m3"});
}

TEST_CASE("prefetch limits how many deliveries a consumer holds unacked") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 5);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 2));
    CHECK(sink.bodies() == Names{"m1", "m2"});
    CHECK(readyCount(vhost, "q") == 3);
    DEPOT_REQUIRE_OK(ch.ack(sink.deliveries()[0].deliveryTag, false, T0));
    CHECK(sink.bodies() == Names{"m1", "m2", "m3"});
    DEPOT_REQUIRE_OK(ch.ack(0, true, T0)); // frees both slots
    CHECK(sink.bodies() == Names{"m1", "m2", "m3", "m4", "m5"});
}

TEST_CASE("a consumer at its prefetch limit is skipped, not waited for") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("A", 1));
    consume(ch, "q", sink, consumeOptions("B"));
    publishNumbered(ch, "q", 1, 4);
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2", "B:m3", "B:m4"});
}

TEST_CASE("channel flow off stops deliveries to its consumers, flow on resumes them") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c"));

    ch.setFlow(false, T0);
    CHECK_FALSE(ch.flowActive());
    publishNumbered(ch, "q", 1, 2);
    CHECK(sink.empty());
    CHECK(readyCount(vhost, "q") == 2);
    // basic.get is not a consumer delivery: flow does not stop it.
    CHECK(label(get(ch, "q", true)) == "m1");

    ch.setFlow(true, T0);
    CHECK(ch.flowActive());
    CHECK(sink.bodies() == Names{"m2"});
    publishNumbered(ch, "q", 3, 3);
    CHECK(sink.bodies() == Names{"m2", "m3"});
}

TEST_CASE("channel flow off sends the queue's messages to other channels' consumers") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& chA = vhost.openChannel();
    Channel& chB = vhost.openChannel();
    declareQueue(chA, "q");
    RecordingSink sink;
    consume(chA, "q", sink, consumeOptions("A"));
    consume(chB, "q", sink, consumeOptions("B"));
    chA.setFlow(false, T0);
    publishNumbered(chA, "q", 1, 3);
    CHECK(sink.taggedBodies() == Names{"B:m1", "B:m2", "B:m3"});
    chA.setFlow(true, T0);
    publishNumbered(chA, "q", 4, 5);
    CHECK(sink.bodiesFor("A").size() == 1);
    CHECK(sink.size() == 5);
}

TEST_CASE("an exclusive consumer refuses every other consumer with ACCESS_REFUSED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    const std::string tag = consume(ch, "q", sink, consumeOptions("excl", 0, false, true));

    auto refused = other.consume("q", sink, consumeOptions("b"), T0);
    CHECK(codeOf(refused) == "ACCESS_REFUSED");
    CHECK(codeOf(ch.consume("q", sink, consumeOptions("c"), T0)) == "ACCESS_REFUSED");
    CHECK(queueInfo(vhost, "q")->consumers == 1);
    CHECK(other.consumerCount() == 0);

    DEPOT_REQUIRE_OK(ch.cancel(tag, T0));
    DEPOT_CHECK_OK(other.consume("q", sink, consumeOptions("b"), T0));
}

TEST_CASE("an exclusive consume on a queue that has a consumer is ACCESS_REFUSED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("a"));
    CHECK(codeOf(other.consume("q", sink, consumeOptions("b", 0, false, true), T0)) ==
          "ACCESS_REFUSED");
}

TEST_CASE("reusing a consumer tag on one channel is NOT_ALLOWED, other channels may use it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    RecordingSink sink;
    consume(ch, "q1", sink, consumeOptions("tag"));
    auto reused = ch.consume("q2", sink, consumeOptions("tag"), T0);
    CHECK(codeOf(reused) == "NOT_ALLOWED");
    CHECK(ch.consumerCount() == 1);
    CHECK(queueInfo(vhost, "q2")->consumers == 0);
    DEPOT_CHECK_OK(other.consume("q2", sink, consumeOptions("tag"), T0));
    // After a cancel the tag is free again.
    DEPOT_REQUIRE_OK(ch.cancel("tag", T0));
    DEPOT_CHECK_OK(ch.consume("q2", sink, consumeOptions("tag"), T0));
}

TEST_CASE("generated consumer tags start with amq.ctag- and are distinct") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    std::set<std::string> tags;
    for (int i = 0; i < 3; ++i) {
        tags.insert(consume(ch, "q", sink, consumeOptions("")));
        tags.insert(consume(other, "q", sink, consumeOptions("")));
    }
    CHECK(tags.size() == 6);
    for (const std::string& tag : tags)
        CHECK(tag.starts_with("amq.ctag-"));
    publishNumbered(ch, "q", 1, 1);
    REQUIRE(sink.size() == 1);
    CHECK(tags.contains(sink.last().consumerTag));
}

TEST_CASE("consuming from a missing queue is NOT_FOUND") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    RecordingSink sink;
    CHECK(codeOf(ch.consume("missing", sink, consumeOptions("c"), T0)) == "NOT_FOUND");
    CHECK(ch.consumerCount() == 0);
}

TEST_CASE("a cancelled consumer gets nothing more and the others take its turn") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("A"));
    consume(ch, "q", sink, consumeOptions("B"));
    publishNumbered(ch, "q", 1, 2);
    DEPOT_REQUIRE_OK(ch.cancel("A", T0));
    publishNumbered(ch, "q", 3, 4);
    CHECK(sink.taggedBodies() == Names{"A:m1", "B:m2", "B:m3", "B:m4"});
}
