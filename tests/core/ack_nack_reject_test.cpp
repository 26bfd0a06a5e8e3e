// Acknowledgements, as RABBITMQ-FACTS (i) and (ii) record them: a requeued message goes back to
// its original position marked redelivered, a closing channel requeues everything it had not
// acked, and unknown delivery tags are PRECONDITION_FAILED.

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

TEST_CASE("nack and reject with requeue put messages back at their original positions") {
    // RABBITMQ-FACTS (i), as scripted there.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 5);
    auto m1 = get(ch, "q", false);
    auto m2 = get(ch, "q", false);
    auto m3 = get(ch, "q", false);
    REQUIRE((m1 && m2 && m3));
    CHECK(label(m1) == "m1");
    CHECK(label(m3) == "m3");

    DEPOT_REQUIRE_OK(ch.nack(m2->deliveryTag, false, true, T0));
    DEPOT_REQUIRE_OK(ch.reject(m1->deliveryTag, true, T0));
    CHECK(unackedCount(vhost, "q") == 1); // m3

    // The original order, not the order of requeueing.
    Channel& reader = vhost.openChannel();
    CHECK(drain(reader, "q") == Names{"m1(R)", "m2(R)", "m4", "m5"});

    DEPOT_REQUIRE_OK(ch.nack(m3->deliveryTag, false, true, T0));
    CHECK(drain(reader, "q") == Names{"m3(R)"});
    CHECK(unackedCount(vhost, "q") == 0);
}

TEST_CASE("a requeued message goes before messages never delivered") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 4);
    auto m1 = get(ch, "q", false);
    auto m2 = get(ch, "q", false);
    REQUIRE((m1 && m2));
    DEPOT_REQUIRE_OK(ch.reject(m2->deliveryTag, true, T0));
    auto again = get(ch, "q", false);
    CHECK(label(again) == "m2(R)");
    DEPOT_REQUIRE_OK(ch.reject(m1->deliveryTag, true, T0));
    DEPOT_REQUIRE_OK(ch.reject(again->deliveryTag, true, T0));
    CHECK(drain(ch, "q") == Names{"m1(R)", "m2(R)", "m3", "m4"});
}

TEST_CASE("a prefetch-1 consumer that nacks with requeue gets the same message back at once") {
    // RABBITMQ-FACTS (i): the sequence was m1, m1(R), m1(R), m2, m3.
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1));
    REQUIRE(sink.size() == 1);

    DEPOT_REQUIRE_OK(ch.nack(sink.last().deliveryTag, false, true, T0));
    DEPOT_REQUIRE_OK(ch.nack(sink.last().deliveryTag, false, true, T0));
    DEPOT_REQUIRE_OK(ch.ack(sink.last().deliveryTag, false, T0));
    DEPOT_REQUIRE_OK(ch.ack(sink.last().deliveryTag, false, T0));
    CHECK(sink.bodies() == Names{"m1", "m1(R)", "m1(R)", "m2", "m3"});
}

TEST_CASE("closing a channel requeues its unacked messages at their original positions") {
    // RABBITMQ-FACTS (ii): prefetch 3, got m1..m3, acked m2, got m4, then the connection closed.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& consumerChannel = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(other, "q");
    publishNumbered(other, "q", 1, 6);
    RecordingSink sink;
    consume(consumerChannel, "q", sink, consumeOptions("c", 3));
    REQUIRE(sink.bodies() == Names{"m1", "m2", "m3"});
    DEPOT_REQUIRE_OK(consumerChannel.ack(sink.deliveries()[1].deliveryTag, false, T0));
    REQUIRE(sink.bodies() == Names{"m1", "m2", "m3", "m4"});

    vhost.closeChannel(consumerChannel, T0);
    CHECK(vhost.channelCount() == 1);
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(queueInfo(vhost, "q")->consumers == 0);
    CHECK(drain(other, "q") == Names{"m1(R)", "m3(R)", "m4(R)", "m5", "m6"});
}

TEST_CASE("a closing channel's unacked messages go to the remaining consumers") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& first = vhost.openChannel();
    Channel& second = vhost.openChannel();
    declareQueue(first, "q");
    RecordingSink firstSink;
    consume(first, "q", firstSink, consumeOptions("a", 2));
    publishNumbered(first, "q", 1, 2);
    REQUIRE(firstSink.bodies() == Names{"m1", "m2"});
    RecordingSink secondSink;
    consume(second, "q", secondSink, consumeOptions("b"));
    vhost.closeChannel(first, T0);
    CHECK(secondSink.bodies() == Names{"m1(R)", "m2(R)"});
}

TEST_CASE("ack with multiple settles every delivery up to and including the tag") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 4);
    for (int i = 0; i < 4; ++i)
        REQUIRE(get(ch, "q", false).has_value()); // tags 1..4

    DEPOT_REQUIRE_OK(ch.ack(3, true, T0));
    CHECK(ch.unackedCount() == 1);
    CHECK(unackedCount(vhost, "q") == 1);
    CHECK(codeOf(ch.ack(2, false, T0)) == "PRECONDITION_FAILED"); // already settled
    DEPOT_CHECK_OK(ch.ack(4, false, T0));
    CHECK(ch.unackedCount() == 0);
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(readyCount(vhost, "q") == 0);
}

TEST_CASE("ack multiple skips deliveries already settled out of order") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 4);
    for (int i = 0; i < 4; ++i)
        REQUIRE(get(ch, "q", false).has_value());
    DEPOT_REQUIRE_OK(ch.nack(2, false, true, T0)); // m2 back to the queue
    DEPOT_REQUIRE_OK(ch.ack(3, true, T0));         // settles 1 and 3
    CHECK(ch.unackedCount() == 1);
    CHECK(drain(ch, "q") == Names{"m2(R)"});
}

TEST_CASE("ack with tag 0 and multiple settles everything outstanding") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    DEPOT_CHECK_OK(ch.ack(0, true, T0)); // nothing outstanding: still fine
    publishNumbered(ch, "q", 1, 3);
    for (int i = 0; i < 3; ++i)
        REQUIRE(get(ch, "q", false).has_value());
    DEPOT_REQUIRE_OK(ch.ack(0, true, T0));
    CHECK(ch.unackedCount() == 0);
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(codeOf(ch.ack(1, false, T0)) == "PRECONDITION_FAILED");
}

TEST_CASE("nack multiple with requeue returns every delivery in its original order") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 4);
    for (int i = 0; i < 3; ++i)
        REQUIRE(get(ch, "q", false).has_value());
    DEPOT_REQUIRE_OK(ch.nack(0, true, true, T0));
    CHECK(ch.unackedCount() == 0);
    CHECK(drain(ch, "q") == Names{"m1(R)", "m2(R)", "m3(R)", "m4"});
}

TEST_CASE("unknown delivery tags are PRECONDITION_FAILED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 2);
    auto m1 = get(ch, "q", false);
    REQUIRE(m1.has_value());

    SUBCASE("a tag never handed out") {
        CHECK(codeOf(ch.ack(99, false, T0)) == "PRECONDITION_FAILED");
        CHECK(ch.unackedCount() == 1); // the failed ack changed nothing
        CHECK(textOf(ch.ack(99, false, T0)) == "unknown delivery tag 99");
        CHECK(codeOf(ch.ack(99, true, T0)) == "PRECONDITION_FAILED");
        CHECK(codeOf(ch.nack(99, false, true, T0)) == "PRECONDITION_FAILED");
        CHECK(codeOf(ch.reject(99, false, T0)) == "PRECONDITION_FAILED");
        CHECK(unackedCount(vhost, "q") == 1);
        CHECK(readyCount(vhost, "q") == 1);
    }
    SUBCASE("tag 0 without multiple") {
        CHECK(codeOf(ch.ack(0, false, T0)) == "PRECONDITION_FAILED");
    }
    SUBCASE("a double ack") {
        DEPOT_REQUIRE_OK(ch.ack(m1->deliveryTag, false, T0));
        CHECK(codeOf(ch.ack(m1->deliveryTag, false, T0)) == "PRECONDITION_FAILED");
        CHECK(codeOf(ch.reject(m1->deliveryTag, true, T0)) == "PRECONDITION_FAILED");
    }
    SUBCASE("a tag of another channel") {
        CHECK(codeOf(other.ack(m1->deliveryTag, false, T0)) == "PRECONDITION_FAILED");
        CHECK(ch.unackedCount() == 1);
    }
    SUBCASE("a no-ack delivery's tag") {
        auto m2 = get(ch, "q", true);
        REQUIRE(m2.has_value());
        CHECK(codeOf(ch.ack(m2->deliveryTag, false, T0)) == "PRECONDITION_FAILED");
    }
}

TEST_CASE("reject without requeue and without a dead-letter exchange drops the message") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 2);
    auto m1 = get(ch, "q", false);
    REQUIRE(m1.has_value());
    DEPOT_REQUIRE_OK(ch.reject(m1->deliveryTag, false, T0));
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(drain(ch, "q") == Names{"m2"});
}

TEST_CASE("nack without requeue drops every covered delivery") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    for (int i = 0; i < 2; ++i)
        REQUIRE(get(ch, "q", false).has_value());
    DEPOT_REQUIRE_OK(ch.nack(2, true, false, T0));
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(drain(ch, "q") == Names{"m3"});
}

TEST_CASE("basic.recover requeues every unacked delivery") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    REQUIRE(get(ch, "q", false).has_value());
    REQUIRE(get(ch, "q", false).has_value());
    ch.recover(T0);
    CHECK(ch.unackedCount() == 0);
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(drain(ch, "q") == Names{"m1(R)", "m2(R)", "m3"});
}

TEST_CASE("basic.recover redelivers to the channel's own consumer") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c"));
    publishNumbered(ch, "q", 1, 2);
    ch.recover(T0);
    CHECK(sink.bodies() == Names{"m1", "m2", "m1(R)", "m2(R)"});
    CHECK(ch.unackedCount() == 2);
    // The old tags were settled by the recover; the new ones are live.
    CHECK(codeOf(ch.ack(1, false, T0)) == "PRECONDITION_FAILED");
    DEPOT_CHECK_OK(ch.ack(sink.last().deliveryTag, true, T0));
    CHECK(ch.unackedCount() == 0);
}

TEST_CASE("a cancelled consumer's unacked deliveries stay acknowledgeable until the channel "
          "closes") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    RecordingSink sink;
    const std::string tag = consume(ch, "q", sink, consumeOptions("c", 2));
    REQUIRE(sink.bodies() == Names{"m1", "m2"});

    DEPOT_REQUIRE_OK(ch.cancel(tag, T0));
    CHECK(ch.consumerCount() == 0);
    CHECK(queueInfo(vhost, "q")->consumers == 0);
    CHECK(unackedCount(vhost, "q") == 2); // RabbitMQ keeps them with the channel
    CHECK(sink.cancelled().empty());      // a client cancel is not a server cancel

    DEPOT_CHECK_OK(ch.ack(sink.deliveries()[0].deliveryTag, false, T0));
    CHECK(unackedCount(vhost, "q") == 1);
    CHECK(sink.size() == 2); // acking freed no slot for a consumer that is gone

    vhost.closeChannel(ch, T0);
    CHECK(drain(other, "q") == Names{"m2(R)", "m3"});
}

TEST_CASE("cancelling an unknown consumer tag is fine") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    DEPOT_CHECK_OK(ch.cancel("nobody", T0));
}

TEST_CASE("a no-ack consumer's deliveries are settled when delivered") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    RecordingSink sink;
    // prefetchCount is ignored with noAck, as in RabbitMQ.
    consume(ch, "q", sink, consumeOptions("c", 1, true));
    CHECK(sink.bodies() == Names{"m1", "m2", "m3"});
    CHECK(ch.unackedCount() == 0);
    CHECK(unackedCount(vhost, "q") == 0);
    CHECK(codeOf(ch.ack(sink.last().deliveryTag, false, T0)) == "PRECONDITION_FAILED");

    vhost.closeChannel(ch, T0);
    CHECK(drain(other, "q").empty()); // nothing to requeue
}

TEST_CASE("basic.get with no-ack settles at once") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 1);
    REQUIRE(get(ch, "q", true).has_value());
    CHECK(ch.unackedCount() == 0);
    CHECK(unackedCount(vhost, "q") == 0);
    vhost.closeChannel(ch, T0);
    CHECK(drain(other, "q").empty());
}

TEST_CASE("acking a delivery whose queue was deleted succeeds and changes nothing") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 2);
    auto m1 = get(ch, "q", false);
    auto m2 = get(ch, "q", false);
    REQUIRE((m1 && m2));
    REQUIRE(ch.deleteQueue("q", false, false, T0).ok());
    DEPOT_CHECK_OK(ch.ack(m1->deliveryTag, false, T0));
    DEPOT_CHECK_OK(ch.nack(m2->deliveryTag, false, true, T0));
    CHECK(ch.unackedCount() == 0);
    CHECK_FALSE(queueInfo(vhost, "q").has_value());
    vhost.closeChannel(ch, T0);
}
