// Declares are idempotent only with equal properties (else PRECONDITION_FAILED "inequivalent
// arg"), and objects have lifetimes: exclusive queues belong to their channel, auto-delete
// queues and exchanges go with their last consumer or binding. Queue x-arguments are parsed and
// checked with RabbitMQ's rules.

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

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}
} // namespace

// --- exchanges ---

TEST_CASE("redeclaring an exchange with other properties is PRECONDITION_FAILED") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "x", ExchangeType::DIRECT);
    ExchangeOptions options;

    SUBCASE("type") {
        Status s = ch.declareExchange("x", ExchangeType::TOPIC, options);
        CHECK(codeOf(s) == "PRECONDITION_FAILED");
        CHECK(textOf(s) == "inequivalent arg 'type' for exchange 'x' in vhost '/': received "
                           "'topic' but current is 'direct'");
    }
    SUBCASE("durable") {
        options.durable = true;
        Status s = ch.declareExchange("x", ExchangeType::DIRECT, options);
        CHECK(codeOf(s) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(s), "inequivalent arg 'durable'"));
    }
    SUBCASE("auto-delete") {
        options.autoDelete = true;
        Status s = ch.declareExchange("x", ExchangeType::DIRECT, options);
        CHECK(codeOf(s) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(s), "inequivalent arg 'auto_delete'"));
    }
    SUBCASE("internal") {
        options.internal = true;
        Status s = ch.declareExchange("x", ExchangeType::DIRECT, options);
        CHECK(codeOf(s) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(s), "inequivalent arg 'internal'"));
    }
    SUBCASE("alternate exchange") {
        options.alternateExchange = "ae";
        Status s = ch.declareExchange("x", ExchangeType::DIRECT, options);
        CHECK(codeOf(s) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(s), "inequivalent arg 'alternate-exchange'"));
    }
    // The exchange is unchanged.
    CHECK(broker.defaultVhost().findExchange("x")->type() == ExchangeType::DIRECT);
    CHECK(broker.defaultVhost().findExchange("x")->options() == ExchangeOptions{});
}

TEST_CASE("redeclaring an exchange with the same properties succeeds and keeps its bindings") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    ExchangeOptions options;
    options.durable = true;
    declareExchange(ch, "x", ExchangeType::FANOUT, options);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", ""));
    DEPOT_CHECK_OK(ch.declareExchange("x", ExchangeType::FANOUT, options));
    CHECK(vhost.findExchange("x")->bindingCount() == 1);
}

// --- queues ---

TEST_CASE("redeclaring a queue with other properties is PRECONDITION_FAILED") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions original;
    original.messageTtl = Milliseconds(200);
    original.maxLength = 10;
    declareQueue(ch, "q", original);
    QueueOptions other = original;

    SUBCASE("durable") {
        other.durable = true;
        auto r = ch.declareQueue("q", other, T0);
        CHECK(codeOf(r) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(r), "inequivalent arg 'durable'"));
    }
    SUBCASE("message TTL") {
        other.messageTtl = Milliseconds(100);
        auto r = ch.declareQueue("q", other, T0);
        CHECK(codeOf(r) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(r), "inequivalent arg 'x-message-ttl'"));
        CHECK(contains(textOf(r), "received '100' but current is '200'"));
    }
    SUBCASE("no message TTL") {
        other.messageTtl.reset();
        CHECK(codeOf(ch.declareQueue("q", other, T0)) == "PRECONDITION_FAILED");
    }
    SUBCASE("max length") {
        other.maxLength = 11;
        auto r = ch.declareQueue("q", other, T0);
        CHECK(codeOf(r) == "PRECONDITION_FAILED");
        CHECK(contains(textOf(r), "inequivalent arg 'x-max-length'"));
    }
    SUBCASE("overflow") {
        other.overflow = Overflow::REJECT_PUBLISH;
        CHECK(codeOf(ch.declareQueue("q", other, T0)) == "PRECONDITION_FAILED");
    }
    SUBCASE("dead-letter exchange") {
        other.deadLetterExchange = "dlx";
        CHECK(codeOf(ch.declareQueue("q", other, T0)) == "PRECONDITION_FAILED");
    }
    SUBCASE("auto-delete") {
        other.autoDelete = true;
        CHECK(codeOf(ch.declareQueue("q", other, T0)) == "PRECONDITION_FAILED");
    }
    CHECK(vhost.findQueue("q")->options() == original);
}

TEST_CASE("redeclaring a queue with other exclusivity is RESOURCE_LOCKED") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    QueueOptions exclusive;
    exclusive.exclusive = true;
    CHECK(codeOf(ch.declareQueue("q", exclusive, T0)) == "RESOURCE_LOCKED");
}

TEST_CASE("redeclaring a queue with the same properties returns its message and consumer "
          "counts") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    QueueOptions options;
    options.maxLength = 10;
    declareQueue(ch, "q", options);
    publishNumbered(ch, "q", 1, 3);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1)); // takes m1; two stay ready
    auto redeclared = other.declareQueue("q", options, T0);
    DEPOT_REQUIRE_OK(redeclared);
    CHECK(redeclared->queue == "q");
    CHECK(redeclared->messageCount == 2);
    CHECK(redeclared->consumerCount == 1);
}

TEST_CASE("a declare without a name creates a server-named amq.gen- queue") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    std::set<std::string> names;
    for (int i = 0; i < 3; ++i) {
        QueueDeclareOk declared = declareQueue(ch, "");
        CHECK(declared.queue.starts_with("amq.gen-"));
        CHECK(declared.messageCount == 0);
        CHECK(vhost.findQueue(declared.queue) != nullptr);
        names.insert(declared.queue);
    }
    CHECK(names.size() == 3);
    // The generated name can be used like any other, including a redeclare.
    const std::string name = *names.begin();
    CHECK(publish(ch, "", name, "m1").queues == 1);
    DEPOT_CHECK_OK(ch.declareQueue(name, {}, T0));
    DEPOT_CHECK_OK(ch.declareQueuePassive(name, T0));
}

// --- exclusive queues ---

TEST_CASE("an exclusive queue is RESOURCE_LOCKED for other channels") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& owner = vhost.openChannel();
    Channel& other = vhost.openChannel();
    QueueOptions exclusive;
    exclusive.exclusive = true;
    declareQueue(owner, "q", exclusive);
    declareExchange(owner, "x", ExchangeType::FANOUT);
    publishNumbered(owner, "q", 1, 1);
    RecordingSink sink;

    CHECK(codeOf(other.declareQueue("q", exclusive, T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.declareQueue("q", {}, T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.declareQueuePassive("q", T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.consume("q", sink, consumeOptions("c"), T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.get("q", true, T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.bindQueue("q", "x", "")) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.unbindQueue("q", "x", "")) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.deleteQueue("q", false, false, T0)) == "RESOURCE_LOCKED");
    CHECK(codeOf(other.purgeQueue("q", T0)) == "RESOURCE_LOCKED");
    CHECK(contains(textOf(other.get("q", true, T0)), "cannot obtain exclusive access"));

    // Nothing happened to it, and the owner may do all of that.
    CHECK(readyCount(vhost, "q") == 1);
    CHECK(queueInfo(vhost, "q")->exclusiveOwned);
    DEPOT_CHECK_OK(owner.declareQueue("q", exclusive, T0));
    DEPOT_CHECK_OK(owner.bindQueue("q", "x", ""));
    // Anyone may publish to it.
    CHECK(publish(other, "x", "", "m2").queues == 1);
    CHECK(drain(owner, "q") == Names{"m1", "m2"});
}

TEST_CASE("an exclusive queue is deleted when its channel closes") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& owner = vhost.openChannel();
    Channel& other = vhost.openChannel();
    QueueOptions exclusive;
    exclusive.exclusive = true;
    declareQueue(owner, "q", exclusive);
    declareExchange(owner, "x", ExchangeType::FANOUT);
    DEPOT_REQUIRE_OK(owner.bindQueue("q", "x", ""));
    publishNumbered(owner, "q", 1, 2);
    REQUIRE(get(owner, "q", false).has_value()); // unacked when the channel closes

    vhost.closeChannel(owner, T0);
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(vhost.listBindings().empty());
    // The name is free again.
    DEPOT_CHECK_OK(other.declareQueue("q", {}, T0));
}

// --- auto-delete ---

TEST_CASE("an auto-delete queue is deleted when its last consumer cancels") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions autoDelete;
    autoDelete.autoDelete = true;
    declareQueue(ch, "q", autoDelete);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("a"));
    consume(ch, "q", sink, consumeOptions("b"));
    DEPOT_REQUIRE_OK(ch.cancel("a", T0));
    CHECK(vhost.findQueue("q") != nullptr);
    DEPOT_REQUIRE_OK(ch.cancel("b", T0));
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(sink.cancelled().empty());
}

TEST_CASE("an auto-delete queue is not deleted before it ever had a consumer") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions autoDelete;
    autoDelete.autoDelete = true;
    declareQueue(ch, "q", autoDelete);
    publishNumbered(ch, "q", 1, 2);
    (void)get(ch, "q", true);
    broker.advanceTo(at(100000));
    Channel& other = vhost.openChannel();
    vhost.closeChannel(other, at(100000));
    CHECK(vhost.findQueue("q") != nullptr);
    CHECK(readyCount(vhost, "q") == 1);
}

TEST_CASE("an auto-delete queue is deleted when its consumer's channel closes") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& declarer = vhost.openChannel();
    QueueOptions autoDelete;
    autoDelete.autoDelete = true;
    declareQueue(declarer, "q", autoDelete);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c"));
    vhost.closeChannel(ch, T0);
    CHECK(vhost.findQueue("q") == nullptr);
}

TEST_CASE("an auto-delete exchange is deleted when its last binding goes") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    ExchangeOptions autoDelete;
    autoDelete.autoDelete = true;
    declareExchange(ch, "x", ExchangeType::DIRECT, autoDelete);
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    CHECK(vhost.findExchange("x") != nullptr); // never bound: stays

    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "x", "a"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "x", "b"));

    SUBCASE("by unbinding") {
        DEPOT_REQUIRE_OK(ch.unbindQueue("q1", "x", "a"));
        CHECK(vhost.findExchange("x") != nullptr);
        DEPOT_REQUIRE_OK(ch.unbindQueue("q2", "x", "b"));
        CHECK(vhost.findExchange("x") == nullptr);
    }
    SUBCASE("by deleting the queues") {
        REQUIRE(ch.deleteQueue("q1", false, false, T0).ok());
        CHECK(vhost.findExchange("x") != nullptr);
        REQUIRE(ch.deleteQueue("q2", false, false, T0).ok());
        CHECK(vhost.findExchange("x") == nullptr);
    }
    SUBCASE("cascading to an auto-delete exchange bound to it") {
        declareExchange(ch, "upstream", ExchangeType::FANOUT, autoDelete);
        DEPOT_REQUIRE_OK(ch.bindExchange("x", "upstream", ""));
        DEPOT_REQUIRE_OK(ch.unbindQueue("q1", "x", "a"));
        DEPOT_REQUIRE_OK(ch.unbindQueue("q2", "x", "b"));
        CHECK(vhost.findExchange("x") == nullptr);
        CHECK(vhost.findExchange("upstream") == nullptr);
    }
}

// --- delete ---

TEST_CASE("deleting a queue removes its bindings and cancels its consumers") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    Channel& other = vhost.openChannel();
    declareExchange(ch, "x", ExchangeType::DIRECT);
    declareQueue(ch, "q");
    declareQueue(ch, "keep");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", "k"));
    DEPOT_REQUIRE_OK(ch.bindQueue("keep", "x", "k"));
    RecordingSink sink;
    RecordingSink otherSink;
    consume(ch, "q", sink, consumeOptions("c1"));
    consume(other, "q", otherSink, consumeOptions("c2"));
    consume(ch, "keep", sink, consumeOptions("c3"));
    publishNumbered(ch, "q", 1, 3);

    auto deleted = other.deleteQueue("q", false, false, T0);
    DEPOT_REQUIRE_OK(deleted);
    CHECK(*deleted == 0); // all three were delivered, none ready
    CHECK(vhost.findQueue("q") == nullptr);
    CHECK(sink.cancelled() == Names{"c1"});
    CHECK(otherSink.cancelled() == Names{"c2"});
    CHECK(ch.consumerCount() == 1);
    CHECK(other.consumerCount() == 0);
    CHECK(vhost.listBindings().size() == 1);
    CHECK(publish(ch, "x", "k", "m4").queues == 1);
    // The tag is free on the channel again.
    declareQueue(ch, "q");
    DEPOT_CHECK_OK(ch.consume("q", sink, consumeOptions("c1"), T0));
}

TEST_CASE("queue.delete returns the number of ready messages deleted") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q");
    publishNumbered(ch, "q", 1, 3);
    (void)get(ch, "q", false);
    auto deleted = ch.deleteQueue("q", false, false, T0);
    DEPOT_REQUIRE_OK(deleted);
    CHECK(*deleted == 2);
}

TEST_CASE("queue.delete if-unused and if-empty refuse a queue in use or not empty") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1));
    publishNumbered(ch, "q", 1, 2); // m1 delivered, m2 ready

    CHECK(codeOf(ch.deleteQueue("q", true, false, T0)) == "PRECONDITION_FAILED");
    CHECK(codeOf(ch.deleteQueue("q", false, true, T0)) == "PRECONDITION_FAILED");
    CHECK(vhost.findQueue("q") != nullptr);

    DEPOT_REQUIRE_OK(ch.cancel("c", T0));
    CHECK(codeOf(ch.deleteQueue("q", true, true, T0)) == "PRECONDITION_FAILED"); // m2 ready
    (void)get(ch, "q", true);
    // Unacked messages do not make a queue non-empty, as in RabbitMQ.
    DEPOT_CHECK_OK(ch.deleteQueue("q", true, true, T0));
    CHECK(vhost.findQueue("q") == nullptr);
}

TEST_CASE("exchange.delete if-unused refuses an exchange that has bindings as a source") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "x", ExchangeType::FANOUT);
    declareExchange(ch, "upstream", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", ""));
    Status inUse = ch.deleteExchange("x", true);
    CHECK(codeOf(inUse) == "PRECONDITION_FAILED");
    CHECK(textOf(inUse) == "exchange 'x' in vhost '/' in use");
    DEPOT_REQUIRE_OK(ch.unbindQueue("q", "x", ""));
    // Being the destination of an exchange-to-exchange binding is not "in use": RabbitMQ's
    // if-unused looks only at bindings from the exchange.
    DEPOT_REQUIRE_OK(ch.bindExchange("x", "upstream", ""));
    DEPOT_CHECK_OK(ch.deleteExchange("x", true));
    CHECK(vhost.findExchange("x") == nullptr);
    CHECK(vhost.findExchange("upstream")->bindingCount() == 0);
    CHECK(vhost.listBindings().empty());
}

TEST_CASE("deleting an exchange removes the bindings from and to it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "x", ExchangeType::FANOUT);
    declareExchange(ch, "upstream", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "x", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("x", "upstream", ""));
    DEPOT_REQUIRE_OK(ch.deleteExchange("x"));
    CHECK(vhost.listBindings().empty());
    CHECK(vhost.findExchange("upstream")->bindingCount() == 0);
    CHECK(publish(ch, "upstream", "", "m1").queues == 0);
    // The queue itself stays.
    CHECK(vhost.findQueue("q") != nullptr);
}

// --- x-arguments ---

TEST_CASE("queueOptionsFromArguments parses every x-argument") {
    FieldTable arguments{
        {"x-message-ttl", std::int64_t{1000}}, {"x-expires", std::int64_t{60000}},
        {"x-max-length", std::int64_t{10}},    {"x-max-length-bytes", std::int64_t{4096}},
        {"x-overflow", "reject-publish-dlx"},  {"x-dead-letter-exchange", "dlx"},
        {"x-dead-letter-routing-key", "dead"}};
    auto options = queueOptionsFromArguments(true, false, true, arguments);
    DEPOT_REQUIRE_OK(options);
    CHECK(options->durable);
    CHECK_FALSE(options->exclusive);
    CHECK(options->autoDelete);
    CHECK(options->messageTtl == Milliseconds(1000));
    CHECK(options->expires == Milliseconds(60000));
    CHECK(options->maxLength == 10u);
    CHECK(options->maxLengthBytes == 4096u);
    CHECK(options->overflow == Overflow::REJECT_PUBLISH_DLX);
    CHECK(options->deadLetterExchange == "dlx");
    CHECK(options->deadLetterRoutingKey == "dead");
    // queueArguments gives back the same table.
    CHECK(queueArguments(*options) == arguments);

    auto defaults = queueOptionsFromArguments(false, false, false, {});
    DEPOT_REQUIRE_OK(defaults);
    CHECK(*defaults == QueueOptions{});
    CHECK(queueArguments(*defaults).empty());

    for (const char* overflow : {"drop-head", "reject-publish"}) {
        auto parsed = queueOptionsFromArguments(false, false, false, {{"x-overflow", overflow}});
        DEPOT_REQUIRE_OK(parsed);
        CHECK(std::string(overflowName(parsed->overflow)) == overflow);
    }
    // x-message-ttl 0 and x-max-length 0 are allowed.
    DEPOT_CHECK_OK(queueOptionsFromArguments(
        false, false, false,
        {{"x-message-ttl", std::int64_t{0}}, {"x-max-length", std::int64_t{0}}}));
}

TEST_CASE("queueOptionsFromArguments: wrong types and negative values are PRECONDITION_FAILED") {
    const std::vector<FieldTable> bad = {
        {{"x-message-ttl", "1000"}},
        {{"x-message-ttl", std::int64_t{-1}}},
        {{"x-message-ttl", 1.5}},
        {{"x-expires", std::int64_t{0}}},
        {{"x-expires", std::int64_t{-5}}},
        {{"x-expires", true}},
        {{"x-max-length", std::int64_t{-1}}},
        {{"x-max-length", "10"}},
        {{"x-max-length-bytes", std::int64_t{-1}}},
        {{"x-overflow", "drop-tail"}},
        {{"x-overflow", std::int64_t{1}}},
        {{"x-dead-letter-exchange", std::int64_t{5}}},
        {{"x-dead-letter-routing-key", std::monostate{}}, {"x-dead-letter-exchange", "d"}},
    };
    for (const FieldTable& arguments : bad) {
        auto parsed = queueOptionsFromArguments(false, false, false, arguments);
        CAPTURE(arguments.begin()->first);
        CHECK(codeOf(parsed) == "PRECONDITION_FAILED");
    }
    auto parsed = queueOptionsFromArguments(false, false, false, {{"x-message-ttl", "abc"}});
    CHECK(contains(textOf(parsed), "x-message-ttl"));
}

TEST_CASE("queueOptionsFromArguments: queue types and features Depot lacks are NOT_IMPLEMENTED") {
    const std::vector<FieldTable> unsupported = {
        {{"x-queue-type", "quorum"}},
        {{"x-queue-type", "stream"}},
        {{"x-max-priority", std::int64_t{10}}},
        {{"x-single-active-consumer", true}},
    };
    for (const FieldTable& arguments : unsupported) {
        CAPTURE(arguments.begin()->first);
        CHECK(codeOf(queueOptionsFromArguments(false, false, false, arguments)) ==
              "NOT_IMPLEMENTED");
    }
    DEPOT_CHECK_OK(queueOptionsFromArguments(false, false, false, {{"x-queue-type", "classic"}}));
}

TEST_CASE("queueOptionsFromArguments ignores unknown arguments") {
    auto parsed = queueOptionsFromArguments(
        false, false, false, {{"x-queue-master-locator", "min-masters"}, {"foo", 1.0}});
    DEPOT_REQUIRE_OK(parsed);
    CHECK(*parsed == QueueOptions{});
}

TEST_CASE("queueOptionsFromArguments: x-queue-mode and the in-memory limits") {
    const FieldTable arguments = {{"x-queue-mode", "lazy"},
                                  {"x-max-in-memory-length", std::int64_t{5}},
                                  {"x-max-in-memory-bytes", std::int64_t{1000}}};
    auto lazy = queueOptionsFromArguments(true, false, false, arguments);
    DEPOT_REQUIRE_OK(lazy);
    CHECK(lazy->mode == QueueMode::LAZY);
    CHECK(lazy->inMemoryLength() == 0); // lazy: nothing kept in memory that can be paged out
    CHECK(lazy->inMemoryBytes() == 0);
    CHECK(queueArguments(*lazy) == arguments);

    auto limited = queueOptionsFromArguments(
        true, false, false,
        {{"x-queue-mode", "default"}, {"x-max-in-memory-length", std::int64_t{5}}});
    DEPOT_REQUIRE_OK(limited);
    CHECK(limited->inMemoryLength() == 5);
    CHECK(limited->inMemoryBytes() == DEFAULT_IN_MEMORY_BYTES);
    CHECK(QueueOptions{}.inMemoryLength() == DEFAULT_IN_MEMORY_LENGTH);

    for (const FieldTable& bad :
         std::vector<FieldTable>{{{"x-queue-mode", "eager"}},
                                 {{"x-queue-mode", std::int64_t{1}}},
                                 {{"x-max-in-memory-length", "5"}},
                                 {{"x-max-in-memory-bytes", std::int64_t{-1}}}}) {
        CAPTURE(bad.begin()->first);
        CHECK(codeOf(queueOptionsFromArguments(true, false, false, bad)) == "PRECONDITION_FAILED");
    }

    // Not compared on a redeclare (a queue kept from before they existed would refuse every
    // client that declares it lazy): the first declare's values stay.
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "q", *lazy);
    DEPOT_CHECK_OK(ch.declareQueue("q", *limited, T0));
    CHECK(broker.defaultVhost().findQueue("q")->options().mode == QueueMode::LAZY);
}

TEST_CASE("a dead-letter routing key without a dead-letter exchange is PRECONDITION_FAILED") {
    CHECK(codeOf(queueOptionsFromArguments(
              false, false, false, {{"x-dead-letter-routing-key", "k"}})) == "PRECONDITION_FAILED");
    // Options built in code are checked at declare too.
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    QueueOptions options;
    options.deadLetterRoutingKey = "k";
    CHECK(codeOf(ch.declareQueue("q", options, T0)) == "PRECONDITION_FAILED");
    CHECK(broker.defaultVhost().findQueue("q") == nullptr);
    options.expires = Milliseconds(0);
    options.deadLetterExchange = "dlx";
    CHECK(codeOf(ch.declareQueue("q", options, T0)) == "PRECONDITION_FAILED");
}
