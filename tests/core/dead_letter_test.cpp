// Dead-lettering: a message rejected without requeue, expired, or dropped for length is
// republished to the queue's dead-letter exchange with an x-death record, as RabbitMQ does.
// Automatic cycles (TTL or length back into a queue it died in) are dropped; cycles with a
// rejection in them are allowed.

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

// "work" (direct) routes key "k" to queue "q", whose dead-letter exchange is "dlx" (direct);
// "dead" is bound to dlx with "k", so a dead letter keeping its routing key lands there.
struct DeadLetterSetup {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    explicit DeadLetterSetup(QueueOptions options = {}) {
        declareExchange(ch, "work", ExchangeType::DIRECT);
        declareExchange(ch, "dlx", ExchangeType::DIRECT);
        if (!options.deadLetterExchange)
            options.deadLetterExchange = "dlx";
        declareQueue(ch, "q", options);
        declareQueue(ch, "dead");
        DEPOT_REQUIRE_OK(ch.bindQueue("q", "work", "k"));
        DEPOT_REQUIRE_OK(ch.bindQueue("dead", "dlx", "k"));
    }

    // The one message in "dead", taken with no-ack.
    MessageRef takeDead(TimePoint now = T0) {
        auto delivery = get(ch, "dead", true, now);
        REQUIRE(delivery.has_value());
        return delivery->message;
    }
};

QueueOptions withTtl(std::int64_t ms) {
    QueueOptions options;
    options.messageTtl = Milliseconds(ms);
    return options;
}

} // namespace

TEST_CASE("reject without requeue dead-letters with x-death") {
    DeadLetterSetup f;
    Properties properties;
    properties.correlationId = "c-7";
    properties.headers = FieldTable{{"h", "v"}};
    (void)publish(f.ch, "work", "k", "m1", at(0), properties);
    auto delivered = get(f.ch, "q", false, at(5));
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(f.ch.reject(delivered->deliveryTag, false, at(7)));
    CHECK(readyCount(f.vhost, "q") == 0);
    CHECK(unackedCount(f.vhost, "q") == 0);
    REQUIRE(readyCount(f.vhost, "dead") == 1);

    MessageRef dead = f.takeDead();
    CHECK(dead->body == "m1");
    CHECK(dead->exchange == "dlx");
    CHECK(dead->routingKey == "k");
    CHECK(dead->properties.correlationId() == "c-7");
    CHECK(dead->properties.headers.getString("h") == "v");
    REQUIRE(dead->deaths.size() == 1);
    const DeathRecord& death = dead->deaths.front();
    CHECK(death.queue == "q");
    CHECK(death.reason == DeathReason::REJECTED);
    CHECK(std::string(deathReasonName(death.reason)) == "rejected");
    CHECK(death.count == 1);
    CHECK(death.exchange == "work");
    CHECK(death.routingKeys == std::vector<std::string>{"k"});
    CHECK(death.time == at(7));
    CHECK_FALSE(death.originalExpiration.has_value());
    // The delivered message itself is immutable: it has no x-death.
    CHECK(delivered->message->deaths.empty());
    CHECK(delivered->message->exchange == "work");
}

TEST_CASE("nack without requeue dead-letters every covered delivery as rejected") {
    DeadLetterSetup f;
    (void)publish(f.ch, "work", "k", "m1");
    (void)publish(f.ch, "work", "k", "m2");
    RecordingSink sink;
    consume(f.ch, "q", sink, consumeOptions("c"));
    REQUIRE(sink.size() == 2);
    DEPOT_REQUIRE_OK(f.ch.nack(0, true, false, T0));
    CHECK(drain(f.ch, "dead") == Names{"m1", "m2"});
}

TEST_CASE("an expired message is dead-lettered with reason expired and its original "
          "expiration") {
    DeadLetterSetup f;
    (void)publish(f.ch, "work", "k", "m1", at(0), expiringIn(50));
    f.broker.advanceTo(at(50));
    CHECK(readyCount(f.vhost, "q") == 0);
    MessageRef dead = f.takeDead(at(50));
    REQUIRE(dead->deaths.size() == 1);
    CHECK(dead->deaths[0].queue == "q");
    CHECK(dead->deaths[0].reason == DeathReason::EXPIRED);
    CHECK(std::string(deathReasonName(dead->deaths[0].reason)) == "expired");
    CHECK(dead->deaths[0].originalExpiration == Milliseconds(50));
    CHECK(dead->deaths[0].time == at(50));
    // The expiration that killed it is gone from the copy.
    CHECK_FALSE(dead->properties.expiration.has_value());
}

TEST_CASE("queue TTL expiry dead-letters with reason expired and no original expiration") {
    DeadLetterSetup f(withTtl(30));
    (void)publish(f.ch, "work", "k", "m1", at(0));
    f.broker.advanceTo(at(30));
    MessageRef dead = f.takeDead(at(30));
    REQUIRE(dead->deaths.size() == 1);
    CHECK(dead->deaths[0].reason == DeathReason::EXPIRED);
    CHECK_FALSE(dead->deaths[0].originalExpiration.has_value());
}

TEST_CASE("a dead-lettered copy does not expire again in the dead-letter queue") {
    DeadLetterSetup f;
    (void)publish(f.ch, "work", "k", "m1", at(0), expiringIn(1000));
    auto delivered = get(f.ch, "q", false, at(1));
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(f.ch.reject(delivered->deliveryTag, false, at(2)));
    f.broker.advanceTo(at(5000));
    REQUIRE(readyCount(f.vhost, "dead") == 1);
    MessageRef dead = f.takeDead(at(5000));
    CHECK_FALSE(dead->properties.expiration.has_value());
    CHECK(dead->deaths[0].originalExpiration == Milliseconds(1000));
    CHECK(dead->deaths[0].reason == DeathReason::REJECTED);
}

TEST_CASE("a message dropped by x-max-length is dead-lettered with reason maxlen") {
    QueueOptions options;
    options.maxLength = 1;
    DeadLetterSetup f(options);
    (void)publish(f.ch, "work", "k", "m1");
    (void)publish(f.ch, "work", "k", "m2");
    CHECK(drain(f.ch, "q") == Names{"m2"});
    MessageRef dead = f.takeDead();
    CHECK(dead->body == "m1");
    REQUIRE(dead->deaths.size() == 1);
    CHECK(dead->deaths[0].reason == DeathReason::MAXLEN);
    CHECK(std::string(deathReasonName(dead->deaths[0].reason)) == "maxlen");
}

TEST_CASE("x-dead-letter-routing-key replaces the routing key of the dead letter") {
    QueueOptions options;
    options.deadLetterExchange = "dlx";
    options.deadLetterRoutingKey = "other";
    DeadLetterSetup f(options);
    declareQueue(f.ch, "other-dead");
    DEPOT_REQUIRE_OK(f.ch.bindQueue("other-dead", "dlx", "other"));
    (void)publish(f.ch, "work", "k", "m1");
    auto delivered = get(f.ch, "q", false);
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(f.ch.reject(delivered->deliveryTag, false, T0));
    CHECK(readyCount(f.vhost, "dead") == 0);
    auto dead = get(f.ch, "other-dead", true);
    REQUIRE(dead.has_value());
    CHECK(dead->message->routingKey == "other");
    // x-death keeps the key it was published with.
    CHECK(dead->message->deaths[0].routingKeys == std::vector<std::string>{"k"});
}

TEST_CASE("dead letters route through the dead-letter exchange by its type") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "dlx", ExchangeType::FANOUT);
    QueueOptions options;
    options.deadLetterExchange = "dlx";
    declareQueue(ch, "q", options);
    declareQueue(ch, "d1");
    declareQueue(ch, "d2");
    DEPOT_REQUIRE_OK(ch.bindQueue("d1", "dlx", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("d2", "dlx", ""));
    (void)publish(ch, "", "q", "m1");
    auto delivered = get(ch, "q", false);
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(ch.reject(delivered->deliveryTag, false, T0));
    CHECK(drain(ch, "d1") == Names{"m1"});
    CHECK(drain(ch, "d2") == Names{"m1"});
}

TEST_CASE("the default exchange as dead-letter exchange routes by the dead-letter routing key") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "parking";
    declareQueue(ch, "q", options);
    declareQueue(ch, "parking");
    (void)publish(ch, "", "q", "m1");
    auto delivered = get(ch, "q", false);
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(ch.reject(delivered->deliveryTag, false, T0));
    auto parked = get(ch, "parking", true);
    REQUIRE(parked.has_value());
    CHECK(parked->message->exchange == "");
    CHECK(parked->message->routingKey == "parking");
    CHECK(parked->message->deaths[0].exchange == "");
    CHECK(parked->message->deaths[0].routingKeys == std::vector<std::string>{"q"});
}

TEST_CASE("a repeated death counts up and its record moves to the front") {
    // q1 and q2 dead-letter into each other; a client rejects the message in each in turn.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions toQ2;
    toQ2.deadLetterExchange = "";
    toQ2.deadLetterRoutingKey = "q2";
    QueueOptions toQ1;
    toQ1.deadLetterExchange = "";
    toQ1.deadLetterRoutingKey = "q1";
    declareQueue(ch, "q1", toQ2);
    declareQueue(ch, "q2", toQ1);
    (void)publish(ch, "", "q1", "m1");

    auto rejectIn = [&](const char* queue) {
        auto delivery = get(ch, queue, false);
        REQUIRE(delivery.has_value());
        DEPOT_REQUIRE_OK(ch.reject(delivery->deliveryTag, false, T0));
    };
    auto peek = [&](const char* queue) {
        auto delivery = get(ch, queue, false);
        REQUIRE(delivery.has_value());
        MessageRef message = delivery->message;
        DEPOT_REQUIRE_OK(ch.reject(delivery->deliveryTag, true, T0)); // put it back
        return message;
    };

    rejectIn("q1");
    rejectIn("q2");
    MessageRef twice = peek("q1");
    REQUIRE(twice->deaths.size() == 2);
    CHECK(twice->deaths[0].queue == "q2");
    CHECK(twice->deaths[1].queue == "q1");

    rejectIn("q1");
    MessageRef thrice = peek("q2");
    REQUIRE(thrice->deaths.size() == 2);
    CHECK(thrice->deaths[0].queue == "q1");
    CHECK(thrice->deaths[0].count == 2);
    CHECK(thrice->deaths[0].reason == DeathReason::REJECTED);
    CHECK(thrice->deaths[1].queue == "q2");
    CHECK(thrice->deaths[1].count == 1);
}

TEST_CASE("deaths for different reasons in one queue are separate records") {
    // q (TTL 10) dead-letters to q2, q2 back to q. Rejected in q, rejected in q2, expired in q:
    // q then has two records, one per reason.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions toQ2;
    toQ2.deadLetterExchange = "";
    toQ2.deadLetterRoutingKey = "q2";
    toQ2.messageTtl = Milliseconds(10);
    QueueOptions toQ;
    toQ.deadLetterExchange = "";
    toQ.deadLetterRoutingKey = "q";
    declareQueue(ch, "q", toQ2);
    declareQueue(ch, "q2", toQ);
    (void)publish(ch, "", "q", "m1", at(0));

    auto rejectIn = [&](const char* queue, TimePoint now) {
        auto delivery = get(ch, queue, false, now);
        REQUIRE(delivery.has_value());
        DEPOT_REQUIRE_OK(ch.reject(delivery->deliveryTag, false, now));
    };
    rejectIn("q", at(1));
    rejectIn("q2", at(2));
    REQUIRE(readyCount(vhost, "q") == 1);
    // A rejection lies between this death and the last one in q2: not an automatic cycle.
    broker.advanceTo(at(12));
    REQUIRE(readyCount(vhost, "q2") == 1);
    auto last = get(ch, "q2", true, at(12));
    REQUIRE(last.has_value());
    const std::vector<DeathRecord>& deaths = last->message->deaths;
    REQUIRE(deaths.size() == 3);
    CHECK(deaths[0].queue == "q");
    CHECK(deaths[0].reason == DeathReason::EXPIRED);
    CHECK(deaths[0].time == at(12));
    CHECK(deaths[1].queue == "q2");
    CHECK(deaths[1].reason == DeathReason::REJECTED);
    CHECK(deaths[2].queue == "q");
    CHECK(deaths[2].reason == DeathReason::REJECTED);
    CHECK(deaths[2].time == at(1));
    for (const DeathRecord& death : deaths)
        CHECK(death.count == 1);
}

TEST_CASE("expiring back into the queue it expired in is a cycle even after rejections") {
    // RabbitMQ's cycle check includes the death being recorded: the route from q back to q
    // has no rejection in it, whatever happened to the message before.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "q";
    options.messageTtl = Milliseconds(10);
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "m1", at(0));
    auto delivered = get(ch, "q", false, at(1));
    REQUIRE(delivered.has_value());
    DEPOT_REQUIRE_OK(ch.reject(delivered->deliveryTag, false, at(2))); // back into q: allowed
    REQUIRE(readyCount(vhost, "q") == 1);
    broker.advanceTo(at(12));
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("a missing dead-letter exchange drops the dead letter silently") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.deadLetterExchange = "not-declared";
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "m1");
    auto delivered = get(ch, "q", false);
    REQUIRE(delivered.has_value());
    DEPOT_CHECK_OK(ch.reject(delivered->deliveryTag, false, T0));
    CHECK(readyCount(vhost, "q") == 0);
    CHECK(unackedCount(vhost, "q") == 0);
}

TEST_CASE("a TTL cycle back into the same queue is dropped, not looped") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "dlx", ExchangeType::FANOUT);
    QueueOptions options;
    options.deadLetterExchange = "dlx";
    options.messageTtl = Milliseconds(10);
    declareQueue(ch, "q1", options);
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "dlx", ""));
    (void)publish(ch, "", "q1", "m1", at(0));
    broker.advanceTo(at(10));
    CHECK(readyCount(vhost, "q1") == 0);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("a TTL cycle through two queues stops when it reaches the first again") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions toQ2;
    toQ2.deadLetterExchange = "";
    toQ2.deadLetterRoutingKey = "q2";
    toQ2.messageTtl = Milliseconds(10);
    QueueOptions toQ1 = toQ2;
    toQ1.deadLetterRoutingKey = "q1";
    declareQueue(ch, "q1", toQ2);
    declareQueue(ch, "q2", toQ1);
    (void)publish(ch, "", "q1", "m1", at(0));
    broker.advanceTo(at(10));
    CHECK(readyCount(vhost, "q1") == 0);
    CHECK(readyCount(vhost, "q2") == 1);
    broker.advanceTo(at(20));
    CHECK(readyCount(vhost, "q1") == 0);
    CHECK(readyCount(vhost, "q2") == 0);
    CHECK(broker.nextDeadline() == NEVER);
}

TEST_CASE("a max-length cycle back into the same queue is dropped") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "q";
    options.maxLength = 1;
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "m1");
    (void)publish(ch, "", "q", "m2");
    CHECK(drain(ch, "q") == Names{"m2"});
}

TEST_CASE("a rejection cycle back into the same queue is allowed") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "q";
    declareQueue(ch, "q", options);
    (void)publish(ch, "", "q", "m1");
    for (std::uint64_t round = 1; round <= 3; ++round) {
        auto delivered = get(ch, "q", false);
        REQUIRE(delivered.has_value());
        if (round > 1) {
            REQUIRE(delivered->message->deaths.size() == 1);
            CHECK(delivered->message->deaths[0].count == round - 1);
        }
        DEPOT_REQUIRE_OK(ch.reject(delivered->deliveryTag, false, T0));
        CHECK(readyCount(vhost, "q") == 1);
    }
}
