// A queue is a FIFO: basic.get and consumers see messages in publish order; purge removes only
// ready messages; a message routed to several queues is stored once and shared.

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
}

TEST_CASE("basic.get returns messages in publish order") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 5);
    CHECK(drain(ch, "q") == Names{"m1", "m2", "m3", "m4", "m5"});
    CHECK_FALSE(get(ch, "q", true).has_value());
}

TEST_CASE("a consumer receives messages in publish order, backlog first") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c"));
    CHECK(sink.bodies() == Names{"m1", "m2", "m3"});
    publishNumbered(ch, "q", 4, 6);
    CHECK(sink.bodies() == Names{"m1", "m2", "m3", "m4", "m5", "m6"});
    for (const RecordedDelivery& d : sink.deliveries()) {
        CHECK(d.consumerTag == "c");
        CHECK_FALSE(d.redelivered);
    }
}

TEST_CASE("delivery tags count from 1 on each channel") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& a = vhost.openChannel();
    Channel& b = vhost.openChannel();
    declareQueue(a, "q");
    publishNumbered(a, "q", 1, 3);
    CHECK(get(a, "q", false)->deliveryTag == 1);
    CHECK(get(a, "q", true)->deliveryTag == 2); // no-ack gets take a tag too
    CHECK(get(b, "q", false)->deliveryTag == 1);
}

TEST_CASE("basic.get reports how many messages remain ready") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    CHECK(get(ch, "q", false)->messageCount == 2);
    CHECK(get(ch, "q", false)->messageCount == 1);
    auto last = get(ch, "q", false);
    REQUIRE(last.has_value());
    CHECK(last->messageCount == 0);
    CHECK(last->message->body == "m3");
    CHECK(last->consumerTag.empty());
}

TEST_CASE("purge removes ready messages but not unacked ones") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 5);
    auto m1 = get(ch, "q", false);
    auto m2 = get(ch, "q", false);
    REQUIRE((m1 && m2));

    Result<std::uint64_t> purged = ch.purgeQueue("q", T0);
    REQUIRE(purged.ok());
    CHECK(*purged == 3);
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(unackedCount(vhost, "q") == 2);
    CHECK(queueInfo(vhost, "q")->readyBytes == 0);

    // The unacked ones survive the purge: one acked, one requeued.
    DEPOT_CHECK_OK(ch.ack(m1->deliveryTag, false, T0));
    DEPOT_CHECK_OK(ch.nack(m2->deliveryTag, false, true, T0));
    CHECK(drain(ch, "q") == Names{"m2(R)"});
    CHECK(unackedCount(vhost, "q") == 0);
}

TEST_CASE("purging a missing queue is NOT_FOUND, purging an empty queue removes 0") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    CHECK(codeOf(ch.purgeQueue("missing", T0)) == "NOT_FOUND");
    declareQueue(ch, "q");
    Result<std::uint64_t> purged = ch.purgeQueue("q", T0);
    REQUIRE(purged.ok());
    CHECK(*purged == 0);
}

TEST_CASE("messages published after a purge are delivered in order") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    (void)ch.purgeQueue("q", T0);
    publishNumbered(ch, "q", 4, 5);
    CHECK(drain(ch, "q") == Names{"m4", "m5"});
}

TEST_CASE("ready counts and bytes follow publishes and gets") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    (void)publish(ch, "", "q", "abc");
    (void)publish(ch, "", "q", "de");
    auto info = queueInfo(vhost, "q");
    REQUIRE(info.has_value());
    CHECK(info->ready == 2);
    CHECK(info->readyBytes == 5);
    CHECK(info->unacked == 0);
    (void)get(ch, "q", false);
    info = queueInfo(vhost, "q");
    CHECK(info->ready == 1);
    CHECK(info->readyBytes == 2);
    CHECK(info->unacked == 1);
}

TEST_CASE("a message routed to two queues is stored once") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    declareQueue(ch, "q3");
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q3", "f", ""));
    CHECK(publish(ch, "f", "", "shared body").queues == 3);

    auto fromQ1 = get(ch, "q1", true);
    auto fromQ2 = get(ch, "q2", false);
    RecordingSink sink;
    consume(ch, "q3", sink, consumeOptions("c"));
    REQUIRE((fromQ1 && fromQ2 && sink.size() == 1));
    // One Message object, not three copies.
    CHECK(fromQ1->message.get() == fromQ2->message.get());
    CHECK(sink.last().message.get() == fromQ1->message.get());
    CHECK(fromQ1->message->body == "shared body");
    CHECK(fromQ1->message->exchange == "f");
}

TEST_CASE("a published message keeps its properties, exchange and routing key") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    Properties properties;
    properties.contentType = "text/plain";
    properties.correlationId = "c-1";
    properties.deliveryMode = DeliveryMode::PERSISTENT;
    properties.headers = FieldTable{{"k", std::int64_t{7}}};
    (void)publish(ch, "", "q", "body", T0, properties);
    auto got = get(ch, "q", true);
    REQUIRE(got.has_value());
    CHECK(got->message->exchange == "");
    CHECK(got->message->routingKey == "q");
    CHECK(got->message->properties.contentType() == "text/plain");
    CHECK(got->message->properties.correlationId() == "c-1");
    CHECK(got->message->properties.deliveryMode == DeliveryMode::PERSISTENT);
    CHECK(got->message->properties.headers.getInt("k") == std::int64_t{7});
    CHECK(got->message->deaths.empty());
}

TEST_CASE("basic.get from a missing queue is NOT_FOUND") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    auto got = ch.get("missing", true, T0);
    CHECK(codeOf(got) == "NOT_FOUND");
    CHECK(textOf(got) == "no queue 'missing' in vhost '/'");
}
