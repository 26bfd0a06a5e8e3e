// Virtual hosts are isolated namespaces; their listings (queues, exchanges, bindings) report
// what a management tool shows; route() explains routing without enqueueing.

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

TEST_CASE("vhosts are isolated namespaces") {
    Broker broker;
    Result<Vhost*> added = broker.addVhost("tenant");
    REQUIRE(added.ok());
    Vhost& home = broker.defaultVhost();
    Vhost& tenant = **added;
    Channel& homeCh = home.openChannel();
    Channel& tenantCh = tenant.openChannel();

    declareQueue(homeCh, "q");
    declareQueue(tenantCh, "q");
    declareExchange(tenantCh, "only-in-tenant", ExchangeType::FANOUT);
    (void)publish(homeCh, "", "q", "home-message");

    CHECK(readyCount(home, "q") == 1);
    CHECK(readyCount(tenant, "q") == 0);
    CHECK(codeOf(homeCh.declareExchangePassive("only-in-tenant")) == "NOT_FOUND");
    auto missing = homeCh.publish("only-in-tenant", "", {}, "m", false, T0);
    CHECK(textOf(missing) == "no exchange 'only-in-tenant' in vhost '/'");
    auto missingQueue = tenantCh.get("home-only", true, T0);
    CHECK(textOf(missingQueue) == "no queue 'home-only' in vhost 'tenant'");
    // Same names, different objects: deleting one leaves the other.
    REQUIRE(tenantCh.deleteQueue("q", false, false, T0).ok());
    CHECK(home.findQueue("q") != nullptr);
}

TEST_CASE("vhosts can be added, listed and deleted") {
    Broker broker;
    CHECK(broker.vhostNames() == Names{"/"});
    Result<Vhost*> first = broker.addVhost("a");
    Result<Vhost*> again = broker.addVhost("a");
    REQUIRE((first.ok() && again.ok()));
    CHECK(*first == *again); // adding twice gives the same vhost
    CHECK(broker.findVhost("a") == *first);
    CHECK(broker.findVhost("b") == nullptr);
    CHECK(broker.vhostNames() == Names{"/", "a"});
    CHECK(codeOf(broker.addVhost("")) == "PRECONDITION_FAILED");
    CHECK(codeOf(broker.addVhost(std::string(256, 'v'))) == "SYNTAX_ERROR");

    CHECK(codeOf(broker.deleteVhost("/")) == "ACCESS_REFUSED");
    CHECK(codeOf(broker.deleteVhost("missing")) == "NOT_FOUND");
    DEPOT_CHECK_OK(broker.deleteVhost("a"));
    CHECK(broker.vhostNames() == Names{"/"});
}

TEST_CASE("deleting a vhost with channels, consumers and unacked messages is safe") {
    Broker broker;
    Result<Vhost*> added = broker.addVhost("doomed");
    REQUIRE(added.ok());
    Vhost& vhost = **added;
    Channel& ch = vhost.openChannel();
    QueueOptions options;
    options.messageTtl = Milliseconds(100);
    declareQueue(ch, "q", options);
    RecordingSink sink;
    consume(ch, "q", sink, consumeOptions("c", 1));
    publishNumbered(ch, "q", 1, 3);
    REQUIRE(sink.size() == 1);
    DEPOT_REQUIRE_OK(broker.deleteVhost("doomed"));
    CHECK(broker.nextDeadline() == NEVER);
    broker.advanceTo(at(1000));
}

TEST_CASE("listQueues reports counts and options, sorted by name") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    QueueOptions exclusive;
    exclusive.exclusive = true;
    exclusive.maxLength = 5;
    declareQueue(ch, "b", exclusive);
    declareQueue(ch, "a");
    (void)publish(ch, "", "a", "12345");
    (void)publish(ch, "", "a", "678");
    (void)publish(ch, "", "a", "9");
    (void)get(ch, "a", false);
    RecordingSink sink;
    consume(ch, "b", sink, consumeOptions("c"));

    std::vector<QueueInfo> queues = vhost.listQueues();
    REQUIRE(queues.size() == 2);
    CHECK(queues[0].name == "a");
    CHECK(queues[0].ready == 2);
    CHECK(queues[0].readyBytes == 4);
    CHECK(queues[0].unacked == 1);
    CHECK(queues[0].consumers == 0);
    CHECK_FALSE(queues[0].exclusiveOwned);
    CHECK(queues[0].options == QueueOptions{});
    CHECK(queues[1].name == "b");
    CHECK(queues[1].consumers == 1);
    CHECK(queues[1].exclusiveOwned);
    CHECK(queues[1].options == exclusive);
}

TEST_CASE("listExchanges shows the built-ins and declared exchanges with binding counts") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    ExchangeOptions options;
    options.internal = true;
    options.alternateExchange = "ae";
    declareExchange(ch, "events", ExchangeType::TOPIC, options);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "events", "a.#"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "events", "b.#"));

    std::vector<ExchangeInfo> exchanges = vhost.listExchanges();
    Names names;
    for (const ExchangeInfo& x : exchanges)
        names.push_back(x.name);
    CHECK(names ==
          Names{"", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic", "events"});
    const ExchangeInfo& events = exchanges.back();
    CHECK(events.type == ExchangeType::TOPIC);
    CHECK(events.options == options);
    CHECK(events.bindings == 2);
    CHECK(exchanges.front().bindings == 0); // the default exchange holds no bindings
}

TEST_CASE("listBindings lists queue and exchange bindings with their keys and arguments") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "h", ExchangeType::HEADERS);
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    const FieldTable arguments{{"x-match", "any"}, {"k", "v"}};
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "h", "", arguments));
    DEPOT_REQUIRE_OK(ch.bindExchange("h", "f", "key"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "amq.direct", "q"));

    std::vector<BindingInfo> bindings = vhost.listBindings();
    REQUIRE(bindings.size() == 3);
    CHECK(bindings[0].source == "amq.direct");
    CHECK(bindings[0].destination == "q");
    CHECK_FALSE(bindings[0].destinationIsExchange);
    CHECK(bindings[0].key == "q");
    CHECK(bindings[1].source == "f");
    CHECK(bindings[1].destination == "h");
    CHECK(bindings[1].destinationIsExchange);
    CHECK(bindings[1].key == "key");
    CHECK(bindings[2].source == "h");
    CHECK(bindings[2].destination == "q");
    CHECK(bindings[2].arguments == arguments);
}

TEST_CASE("route() reports the queues a message would reach without enqueueing it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "f", ""));

    std::vector<Queue*> out{nullptr, nullptr, nullptr}; // route() clears it first
    DEPOT_REQUIRE_OK(vhost.route("f", "k", {}, out));
    CHECK(out.size() == 2);
    CHECK(readyCount(vhost, "q1") == 0);
    CHECK(readyCount(vhost, "q2") == 0);

    DEPOT_REQUIRE_OK(vhost.route("", "q2", {}, out));
    REQUIRE(out.size() == 1);
    CHECK(out[0]->name() == "q2");

    Status missing = vhost.route("nx", "k", {}, out);
    CHECK(codeOf(missing) == "NOT_FOUND");
    CHECK(out.empty());
}

TEST_CASE("channelCount follows opened and closed channels") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    CHECK(vhost.channelCount() == 0);
    Channel& a = vhost.openChannel();
    Channel& b = vhost.openChannel();
    CHECK(a.id() != b.id());
    CHECK(vhost.channelCount() == 2);
    vhost.closeChannel(a, T0);
    CHECK(vhost.channelCount() == 1);
    CHECK(&b.vhost() == &vhost);
}

TEST_CASE("Vhost::publish takes a prebuilt message, and Channel::publish forwards it") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareQueue(ch, "q");
    MessageRef message = makeMessage("", "q", {}, "prebuilt");
    auto direct = vhost.publish(message, false, T0);
    DEPOT_REQUIRE_OK(direct);
    CHECK(direct->queues == 1);
    auto viaChannel = ch.publish(message, false, T0);
    DEPOT_REQUIRE_OK(viaChannel);
    auto first = get(ch, "q", true);
    auto second = get(ch, "q", true);
    REQUIRE((first && second));
    CHECK(first->message.get() == message.get());
    CHECK(second->message.get() == message.get());
}

TEST_CASE("a publish names the queues it reached, dead letters aside") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& channel = vhost.openChannel();
    declareQueue(channel, "a",
                 queueOptions({{"x-max-length", std::int64_t{1}},
                               {"x-dead-letter-exchange", std::string("")},
                               {"x-dead-letter-routing-key", std::string("dead")}}));
    declareQueue(channel, "b");
    declareQueue(channel, "dead");
    declareExchange(channel, "both", ExchangeType::FANOUT);
    DEPOT_REQUIRE_OK(channel.bindQueue("a", "both", ""));
    DEPOT_REQUIRE_OK(channel.bindQueue("b", "both", ""));
    (void)publish(channel, "both", "", "m1");
    // The second overflows "a": its head is dead-lettered to "dead" within this publish.
    const PublishResult result = publish(channel, "both", "", "m2");
    REQUIRE(result.routed.size() == 2);
    CHECK(result.routed[0]->name() != result.routed[1]->name());
    for (const Queue* q : result.routed)
        CHECK((q->name() == "a" || q->name() == "b"));
    CHECK(vhost.findQueue("dead")->readyCount() == 1);
}
