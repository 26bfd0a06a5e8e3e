// Length limits (x-max-length, x-max-length-bytes) and what a full queue does (x-overflow):
// drop-head drops the oldest ready message (dead-lettered as maxlen), reject-publish refuses
// the new one (a confirm nack), reject-publish-dlx refuses and dead-letters it. Limits count
// ready messages only, as in RabbitMQ.

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

QueueOptions maxLength(std::uint64_t limit, Overflow overflow = Overflow::DROP_HEAD) {
    QueueOptions options;
    options.maxLength = limit;
    options.overflow = overflow;
    return options;
}

QueueOptions withDeadLetters(QueueOptions options) {
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "dead";
    return options;
}

} // namespace

TEST_CASE("x-max-length with drop-head drops the oldest messages") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", maxLength(2));
    for (int i = 1; i <= 5; ++i) {
        PublishResult result = publish(ch, "", "q", "m" + std::to_string(i));
        CHECK(result.queues == 1);
        CHECK_FALSE(result.rejected);
        CHECK(readyCount(vhost, "q") <= 2);
    }
    CHECK(drain(ch, "q") == Names{"m4", "m5"});
}

TEST_CASE("drop-head dead-letters the dropped messages with reason maxlen") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "dead");
    declareQueue(ch, "q", withDeadLetters(maxLength(1)));
    publishNumbered(ch, "q", 1, 3);
    CHECK(drain(ch, "q") == Names{"m3"});
    auto first = get(ch, "dead", true);
    REQUIRE(first.has_value());
    CHECK(first->message->body == "m1");
    REQUIRE(first->message->deaths.size() == 1);
    CHECK(first->message->deaths[0].reason == DeathReason::MAXLEN);
    CHECK(first->message->deaths[0].queue == "q");
    CHECK(label(get(ch, "dead", true)) == "m2");
}

TEST_CASE("x-max-length-bytes drops from the head until the ready bodies fit") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.maxLengthBytes = 10;
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "aaaa");
    (void)publish(ch, "", "q", "bbbb");
    CHECK(queueInfo(vhost, "q")->readyBytes == 8);
    (void)publish(ch, "", "q", "cccc");
    CHECK(queueInfo(vhost, "q")->readyBytes == 8);
    (void)publish(ch, "", "q", "0123456789");
    CHECK(queueInfo(vhost, "q")->readyBytes == 10);
    CHECK(drain(ch, "q") == Names{"0123456789"});
}

TEST_CASE("a message larger than x-max-length-bytes is not kept") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.maxLengthBytes = 3;
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "abcd");
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(queueInfo(vhost, "q")->readyBytes == 0);
}

TEST_CASE("reject-publish refuses a message to a full queue and keeps the old ones") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "dead");
    declareQueue(ch, "q", withDeadLetters(maxLength(2, Overflow::REJECT_PUBLISH)));
    CHECK_FALSE(publish(ch, "", "q", "m1").rejected);
    CHECK_FALSE(publish(ch, "", "q", "m2").rejected);
    PublishResult refused = publish(ch, "", "q", "m3");
    CHECK(refused.rejected);
    CHECK_FALSE(refused.returned);
    CHECK(drain(ch, "q") == Names{"m1", "m2"});
    CHECK(readyCount(vhost, "dead") == 0);            // reject-publish does not dead-letter
    CHECK_FALSE(publish(ch, "", "q", "m4").rejected); // room again
}

TEST_CASE("reject-publish refuses only for the full queue, the others still get the message") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "full", maxLength(0, Overflow::REJECT_PUBLISH));
    declareQueue(ch, "open");
    DEPOT_REQUIRE_OK(ch.bindQueue("full", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("open", "f", ""));
    PublishResult result = publish(ch, "f", "", "m1");
    CHECK(result.rejected);
    CHECK(drain(ch, "open") == Names{"m1"});
    CHECK(drain(ch, "full").empty());
}

TEST_CASE("reject-publish with x-max-length-bytes refuses a message that would not fit") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    QueueOptions options;
    options.maxLengthBytes = 5;
    options.overflow = Overflow::REJECT_PUBLISH;
    declareQueue(ch, "q", options);
    CHECK_FALSE(publish(ch, "", "q", "abc").rejected);
    CHECK(publish(ch, "", "q", "def").rejected);
    CHECK_FALSE(publish(ch, "", "q", "gh").rejected);
    CHECK(drain(ch, "q") == Names{"abc", "gh"});
}

TEST_CASE("reject-publish-dlx refuses the message and dead-letters it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "dead");
    declareQueue(ch, "q", withDeadLetters(maxLength(1, Overflow::REJECT_PUBLISH_DLX)));
    CHECK_FALSE(publish(ch, "", "q", "m1").rejected);
    CHECK(publish(ch, "", "q", "m2").rejected);
    CHECK(drain(ch, "q") == Names{"m1"});
    auto dead = get(ch, "dead", true);
    REQUIRE(dead.has_value());
    CHECK(dead->message->body == "m2");
    REQUIRE(dead->message->deaths.size() == 1);
    CHECK(dead->message->deaths[0].reason == DeathReason::MAXLEN);
    CHECK(dead->message->deaths[0].queue == "q");
    CHECK(readyCount(vhost, "dead") == 0);
}

TEST_CASE("length limits count ready messages, not unacked ones") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    SUBCASE("drop-head") {
        declareQueue(ch, "q", maxLength(2));
    }
    SUBCASE("reject-publish") {
        declareQueue(ch, "q", maxLength(2, Overflow::REJECT_PUBLISH));
    }

    publishNumbered(ch, "q", 1, 2);
    auto m1 = get(ch, "q", false);
    REQUIRE(m1.has_value());
    CHECK_FALSE(publish(ch, "", "q", "m3").rejected);
    CHECK(readyCount(vhost, "q") == 2);
    CHECK(unackedCount(vhost, "q") == 1);
    CHECK(drain(ch, "q") == Names{"m2", "m3"});
}

TEST_CASE("x-max-length 0 still delivers to a waiting consumer") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q", maxLength(0));
    (void)publish(ch, "", "q", "nobody-waiting");
    CHECK(readyCount(vhost, "q") == 0);

    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1));
    (void)publish(ch, "", "q", "m1");
    (void)publish(ch, "", "q", "m2"); // the consumer is full: dropped
    CHECK(sink.bodies() == Names{"m1"});
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(unackedCount(vhost, "q") == 1);
}
