// Names and the reserved parts of the namespace: 255 bytes at most (AMQP short strings), the
// amq. prefix belongs to the broker, the default exchange cannot be bound or deleted, and a
// missing exchange or queue is NOT_FOUND with RabbitMQ's wording (RABBITMQ-FACTS (iv), (vi)).

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"

#include <doctest/doctest.h>

#include <string>

using namespace depot::core;
using namespace depot::tests;

namespace {
const std::string NAME_255(255, 'n');
const std::string NAME_256(256, 'n');
} // namespace

TEST_CASE("names of 255 bytes are accepted and names of 256 bytes are refused") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    declareExchange(ch, "x", ExchangeType::DIRECT);

    SUBCASE("exchange.declare") {
        DEPOT_CHECK_OK(ch.declareExchange(NAME_255, ExchangeType::FANOUT));
        CHECK(codeOf(ch.declareExchange(NAME_256, ExchangeType::FANOUT)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.declareExchangePassive(NAME_256)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.deleteExchange(NAME_256)) == "SYNTAX_ERROR");
    }
    SUBCASE("queue.declare") {
        Result<QueueDeclareOk> ok = ch.declareQueue(NAME_255, {}, T0);
        DEPOT_REQUIRE_OK(ok);
        CHECK(ok->queue == NAME_255);
        CHECK(codeOf(ch.declareQueue(NAME_256, {}, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.declareQueuePassive(NAME_256, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.deleteQueue(NAME_256, false, false, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.purgeQueue(NAME_256, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.get(NAME_256, true, T0)) == "SYNTAX_ERROR");
    }
    SUBCASE("queue.bind") {
        DEPOT_CHECK_OK(ch.bindQueue("q", "x", NAME_255));
        CHECK(codeOf(ch.bindQueue("q", "x", NAME_256)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.bindQueue(NAME_256, "x", "k")) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.bindQueue("q", NAME_256, "k")) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.unbindQueue("q", "x", NAME_256)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.bindExchange(NAME_256, "x", "k")) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.bindExchange("x", "amq.direct", NAME_256)) == "SYNTAX_ERROR");
    }
    SUBCASE("basic.publish") {
        DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", NAME_255));
        Result<PublishResult> ok = ch.publish("x", NAME_255, {}, "m1", false, T0);
        DEPOT_REQUIRE_OK(ok);
        CHECK(ok->queues == 1);
        CHECK(codeOf(ch.publish("x", NAME_256, {}, "m2", false, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.publish(NAME_256, "k", {}, "m3", false, T0)) == "SYNTAX_ERROR");
        CHECK(codeOf(ch.publish(makeMessage("x", NAME_256, {}, "m4"), false, T0)) ==
              "SYNTAX_ERROR");
        CHECK(readyCount(broker.defaultVhost(), "q") == 1);
    }
    SUBCASE("basic.consume") {
        struct NullSink final : DeliverySink {
            void deliver(const Delivery&) override {}
            void onCancelled(std::string_view) override {}
        } sink;
        CHECK(codeOf(ch.consume("q", sink, consumeOptions(NAME_256), T0)) == "SYNTAX_ERROR");
        DEPOT_CHECK_OK(ch.consume("q", sink, consumeOptions(NAME_255), T0));
    }
}

TEST_CASE("declaring a name with the reserved amq. prefix is ACCESS_REFUSED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Status exchange = ch.declareExchange("amq.anything", ExchangeType::DIRECT);
    CHECK(codeOf(exchange) == "ACCESS_REFUSED");
    CHECK(textOf(exchange).find("amq.") != std::string::npos);
    CHECK(codeOf(ch.declareQueue("amq.q", {}, T0)) == "ACCESS_REFUSED");
    CHECK(vhost.findExchange("amq.anything") == nullptr);
    CHECK(vhost.findQueue("amq.q") == nullptr);
    // Only the exact prefix is reserved.
    DEPOT_CHECK_OK(ch.declareExchange("amqp.x", ExchangeType::DIRECT));
    DEPOT_CHECK_OK(ch.declareQueue("amq", {}, T0));
}

TEST_CASE("redeclaring a built-in amq. exchange with its own properties succeeds") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    ExchangeOptions durable;
    durable.durable = true;
    DEPOT_CHECK_OK(ch.declareExchange("amq.topic", ExchangeType::TOPIC, durable));
    DEPOT_CHECK_OK(ch.declareExchange("amq.match", ExchangeType::HEADERS, durable));
    CHECK(codeOf(ch.declareExchange("amq.topic", ExchangeType::TOPIC)) == "PRECONDITION_FAILED");
    CHECK(codeOf(ch.declareExchange("amq.topic", ExchangeType::DIRECT, durable)) ==
          "PRECONDITION_FAILED");
    DEPOT_CHECK_OK(ch.declareExchangePassive("amq.fanout"));
}

TEST_CASE("deleting a built-in amq. exchange is ACCESS_REFUSED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Status refused = ch.deleteExchange("amq.direct");
    CHECK(codeOf(refused) == "ACCESS_REFUSED");
    CHECK(textOf(refused) == "deletion of system exchange 'amq.direct' in vhost '/' not allowed");
    CHECK(vhost.findExchange("amq.direct") != nullptr);
    // RabbitMQ checks the prefix before existence, so even a missing amq. name is refused.
    CHECK(codeOf(ch.deleteExchange("amq.nothing")) == "ACCESS_REFUSED");
}

TEST_CASE("unbinding from an exchange or queue that does not exist succeeds, as in RabbitMQ") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    declareExchange(ch, "x", ExchangeType::DIRECT);
    DEPOT_CHECK_OK(ch.unbindQueue("q", "no-such-exchange", "k"));
    DEPOT_CHECK_OK(ch.unbindQueue("no-such-queue", "x", "k"));
    DEPOT_CHECK_OK(ch.unbindExchange("no-such-exchange", "x", "k"));
    DEPOT_CHECK_OK(ch.unbindExchange("x", "no-such-exchange", "k"));
    // Bad names are still syntax errors, and the default exchange still refuses.
    CHECK(codeOf(ch.unbindQueue("q", std::string(256, 'x'), "k")) == "SYNTAX_ERROR");
    CHECK(codeOf(ch.unbindExchange("", "x", "k")) == "ACCESS_REFUSED");
}

TEST_CASE("a passive declare of something missing is NOT_FOUND") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    Status exchange = ch.declareExchangePassive("nx");
    CHECK(codeOf(exchange) == "NOT_FOUND");
    CHECK(textOf(exchange) == "no exchange 'nx' in vhost '/'");
    auto queue = ch.declareQueuePassive("nq", T0);
    CHECK(codeOf(queue) == "NOT_FOUND");
    CHECK(textOf(queue) == "no queue 'nq' in vhost '/'");
}

TEST_CASE("a passive declare of an existing queue reports its counts") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 2);
    auto passive = ch.declareQueuePassive("q", T0);
    DEPOT_REQUIRE_OK(passive);
    CHECK(passive->queue == "q");
    CHECK(passive->messageCount == 2);
    CHECK(passive->consumerCount == 0);
}

TEST_CASE("publishing to a missing exchange is NOT_FOUND naming the exchange and the vhost") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    auto result = ch.publish("x", "k", {}, "m1", false, T0);
    CHECK(codeOf(result) == "NOT_FOUND");
    CHECK(textOf(result) == "no exchange 'x' in vhost '/'");
    CHECK(result.error().describe() == "NOT_FOUND - no exchange 'x' in vhost '/'");
    CHECK(static_cast<int>(result.error().code) == 404);
}

TEST_CASE("publishing to amq.default is NOT_FOUND: it is not an alias of the default exchange") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    auto result = ch.publish("amq.default", "q", {}, "m1", false, T0);
    CHECK(codeOf(result) == "NOT_FOUND");
    CHECK(textOf(result) == "no exchange 'amq.default' in vhost '/'");
    CHECK(readyCount(broker.defaultVhost(), "q") == 0);
}

TEST_CASE("the default exchange cannot be bound, unbound, declared or deleted") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    declareExchange(ch, "x", ExchangeType::FANOUT);
    Status bound = ch.bindQueue("q", "", "q");
    CHECK(codeOf(bound) == "ACCESS_REFUSED");
    CHECK(textOf(bound) == "operation not permitted on the default exchange");
    CHECK(codeOf(ch.unbindQueue("q", "", "q")) == "ACCESS_REFUSED");
    CHECK(codeOf(ch.bindExchange("x", "", "k")) == "ACCESS_REFUSED");
    CHECK(codeOf(ch.bindExchange("", "x", "k")) == "ACCESS_REFUSED");
    CHECK(codeOf(ch.deleteExchange("")) == "ACCESS_REFUSED");
    CHECK(codeOf(ch.declareExchange("", ExchangeType::DIRECT)) == "ACCESS_REFUSED");
    CHECK(vhost.findExchange("") != nullptr);
    CHECK(vhost.findExchange("x")->bindingCount() == 0);
}

TEST_CASE("publishing to an internal exchange is ACCESS_REFUSED, routing through it works") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    ExchangeOptions internal;
    internal.internal = true;
    declareExchange(ch, "inner", ExchangeType::FANOUT, internal);
    declareExchange(ch, "outer", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "inner", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("inner", "outer", ""));
    auto refused = ch.publish("inner", "", {}, "m1", false, T0);
    CHECK(codeOf(refused) == "ACCESS_REFUSED");
    CHECK(publish(ch, "outer", "", "m2").queues == 1);
    CHECK(drain(ch, "q") == std::vector<std::string>{"m2"});
}

TEST_CASE("exchange types parse from their names, anything else is COMMAND_INVALID") {
    for (ExchangeType type :
         {ExchangeType::DIRECT, ExchangeType::FANOUT, ExchangeType::TOPIC, ExchangeType::HEADERS}) {
        Result<ExchangeType> parsed = parseExchangeType(exchangeTypeName(type));
        REQUIRE(parsed.ok());
        CHECK(*parsed == type);
    }
    CHECK(std::string(exchangeTypeName(ExchangeType::TOPIC)) == "topic");
    for (const char* bad : {"x-delayed-message", "Direct", "", "topic "}) {
        CAPTURE(bad);
        CHECK(codeOf(parseExchangeType(bad)) == "COMMAND_INVALID");
    }
}

TEST_CASE("deleting a missing exchange succeeds, deleting a missing queue removes nothing") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    DEPOT_CHECK_OK(ch.deleteExchange("never-declared"));
    auto deleted = ch.deleteQueue("never-declared", false, false, T0);
    DEPOT_REQUIRE_OK(deleted);
    CHECK(*deleted == 0);
}

TEST_CASE("names may contain dots, spaces and any bytes") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    const std::string odd = std::string("a.b c/\xc3\xa9\x01", 8);
    declareQueue(ch, odd);
    CHECK(publish(ch, "", odd, "m1").queues == 1);
    CHECK(drain(ch, odd) == std::vector<std::string>{"m1"});
}
