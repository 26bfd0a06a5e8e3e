// Exchange-to-exchange bindings, alternate exchanges and mandatory returns, as RABBITMQ-FACTS
// (v) and (vi) record them: a queue gets a message at most once per publish, however many
// routes lead to it, and cycles end.

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace depot::core;
using namespace depot::tests;

namespace {

using Names = std::vector<std::string>;

// RABBITMQ-FACTS (v): x1 (direct) bound to x2 (fanout) with key k; Q bound to x1 with k and
// to x2.
struct TwoPaths {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    TwoPaths() {
        declareExchange(ch, "x1", ExchangeType::DIRECT);
        declareExchange(ch, "x2", ExchangeType::FANOUT);
        DEPOT_REQUIRE_OK(ch.bindExchange("x2", "x1", "k"));
        declareQueue(ch, "Q");
        DEPOT_REQUIRE_OK(ch.bindQueue("Q", "x1", "k"));
        DEPOT_REQUIRE_OK(ch.bindQueue("Q", "x2", ""));
    }
};

} // namespace

TEST_CASE("a queue reachable by two paths gets one copy") {
    TwoPaths f;
    PublishResult result = publish(f.ch, "x1", "k", "m1");
    CHECK(result.queues == 1);
    CHECK(drain(f.ch, "Q") == Names{"m1"});
}

TEST_CASE("the key of an exchange-to-exchange binding filters") {
    TwoPaths f;
    PublishResult result = publish(f.ch, "x1", "other", "m1");
    CHECK(result.queues == 0);
    CHECK(drain(f.ch, "Q").empty());
}

TEST_CASE("publishing to the destination exchange reaches the queue through the fanout") {
    TwoPaths f;
    CHECK(publish(f.ch, "x2", "zzz", "m1").queues == 1);
    CHECK(drain(f.ch, "Q") == Names{"m1"});
}

TEST_CASE("a cycle of exchange bindings gives one copy and terminates") {
    TwoPaths f;
    DEPOT_REQUIRE_OK(f.ch.bindExchange("x1", "x2", "")); // x2 -> x1: a cycle with x1 -> x2
    CHECK(publish(f.ch, "x1", "k", "m1").queues == 1);
    CHECK(publish(f.ch, "x2", "zzz", "m2").queues == 1);
    CHECK(publish(f.ch, "x2", "k", "m3").queues == 1);
    CHECK(publish(f.ch, "x1", "other", "m4").queues == 0);
    CHECK(drain(f.ch, "Q") == Names{"m1", "m2", "m3"});
}

TEST_CASE("an exchange bound to itself routes once") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindExchange("f", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "f", ""));
    CHECK(publish(ch, "f", "", "m1").queues == 1);
    CHECK(drain(ch, "q") == Names{"m1"});
}

TEST_CASE("a queue bound three times to one topic exchange gets a.b once") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "t", ExchangeType::TOPIC);
    declareQueue(ch, "q");
    for (const char* pattern : {"a.*", "#", "a.b"})
        DEPOT_REQUIRE_OK(ch.bindQueue("q", "t", pattern));
    CHECK(publish(ch, "t", "a.b", "m1").queues == 1);
    CHECK(drain(ch, "q") == Names{"m1"});
}

TEST_CASE("a diamond of exchanges delivers once to each queue") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    for (const char* name : {"top", "left", "right", "bottom"})
        declareExchange(ch, name, ExchangeType::FANOUT);
    DEPOT_REQUIRE_OK(ch.bindExchange("left", "top", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("right", "top", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("bottom", "left", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("bottom", "right", ""));
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "bottom", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "left", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "right", ""));
    CHECK(publish(ch, "top", "", "m1").queues == 2);
    CHECK(drain(ch, "q1") == Names{"m1"});
    CHECK(drain(ch, "q2") == Names{"m1"});
}

TEST_CASE("unbinding an exchange-to-exchange binding stops the flow") {
    TwoPaths f;
    DEPOT_REQUIRE_OK(f.ch.unbindQueue("Q", "x1", "k"));
    CHECK(publish(f.ch, "x1", "k", "m1").queues == 1); // through x2 only now
    DEPOT_REQUIRE_OK(f.ch.unbindExchange("x2", "x1", "k"));
    CHECK(publish(f.ch, "x1", "k", "m2").queues == 0);
    CHECK(drain(f.ch, "Q") == Names{"m1"});
}

TEST_CASE("deleting a destination exchange removes the bindings to it") {
    TwoPaths f;
    DEPOT_REQUIRE_OK(f.ch.unbindQueue("Q", "x1", "k"));
    DEPOT_REQUIRE_OK(f.ch.deleteExchange("x2"));
    CHECK(f.vhost.findExchange("x1")->bindingCount() == 0);
    CHECK(publish(f.ch, "x1", "k", "m1").queues == 0);
    CHECK(f.vhost.listBindings().empty());
}

TEST_CASE("binding to or from a missing exchange is NOT_FOUND") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "x", ExchangeType::DIRECT);
    CHECK(codeOf(ch.bindExchange("missing", "x", "k")) == "NOT_FOUND");
    CHECK(codeOf(ch.bindExchange("x", "missing", "k")) == "NOT_FOUND");
    CHECK(textOf(ch.bindExchange("x", "missing", "k")) == "no exchange 'missing' in vhost '/'");
}

// --- alternate exchanges ---

namespace {

// Exchange "main" (direct, alternate-exchange "ae"); "ae" is a fanout to queue "unrouted";
// queue "q" is bound to main with key "k".
struct Alternate {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    Alternate() {
        declareExchange(ch, "ae", ExchangeType::FANOUT);
        ExchangeOptions options;
        options.alternateExchange = "ae";
        declareExchange(ch, "main", ExchangeType::DIRECT, options);
        declareQueue(ch, "unrouted");
        declareQueue(ch, "q");
        DEPOT_REQUIRE_OK(ch.bindQueue("unrouted", "ae", ""));
        DEPOT_REQUIRE_OK(ch.bindQueue("q", "main", "k"));
    }
};

} // namespace

TEST_CASE("the alternate exchange receives what the exchange cannot route") {
    Alternate f;
    PublishResult unroutable = publish(f.ch, "main", "nomatch", "m1", T0, {}, true);
    CHECK(unroutable.queues == 1);
    CHECK_FALSE(unroutable.returned); // routed, through the alternate
    CHECK(publish(f.ch, "main", "k", "m2").queues == 1);
    CHECK(drain(f.ch, "unrouted") == Names{"m1"});
    CHECK(drain(f.ch, "q") == Names{"m2"});
}

TEST_CASE("the alternate exchange applies where an exchange on an e2e path routes nowhere") {
    Alternate f;
    declareExchange(f.ch, "front", ExchangeType::TOPIC);
    DEPOT_REQUIRE_OK(f.ch.bindExchange("main", "front", "#"));
    CHECK(publish(f.ch, "front", "k", "m1").queues == 1);
    CHECK(publish(f.ch, "front", "zzz", "m2").queues == 1);
    CHECK(drain(f.ch, "q") == Names{"m1"});
    CHECK(drain(f.ch, "unrouted") == Names{"m2"});
}

TEST_CASE("an exchange that routes to another exchange does not use its own alternate") {
    Alternate f;
    // main now routes "k2" to exchange "sink", which has no bindings and no alternate.
    declareExchange(f.ch, "sink", ExchangeType::FANOUT);
    DEPOT_REQUIRE_OK(f.ch.bindExchange("sink", "main", "k2"));
    PublishResult result = publish(f.ch, "main", "k2", "m1", T0, {}, true);
    CHECK(result.queues == 0);
    CHECK(result.returned);
    CHECK(drain(f.ch, "unrouted").empty());
}

TEST_CASE("a missing alternate exchange leaves the message unroutable") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    ExchangeOptions options;
    options.alternateExchange = "not-declared";
    declareExchange(ch, "main", ExchangeType::DIRECT, options);
    PublishResult result = publish(ch, "main", "k", "m1", T0, {}, true);
    CHECK(result.queues == 0);
    CHECK(result.returned);
}

TEST_CASE("alternate exchanges chain, and a cycle of alternates terminates") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    ExchangeOptions toB;
    toB.alternateExchange = "b";
    ExchangeOptions toA;
    toA.alternateExchange = "a";
    declareExchange(ch, "a", ExchangeType::DIRECT, toB);
    declareExchange(ch, "b", ExchangeType::DIRECT, toA);
    PublishResult looped = publish(ch, "a", "k", "m1", T0, {}, true);
    CHECK(looped.queues == 0);
    CHECK(looped.returned);

    ExchangeOptions toLast;
    toLast.alternateExchange = "last";
    declareExchange(ch, "c", ExchangeType::DIRECT, toLast);
    declareExchange(ch, "last", ExchangeType::FANOUT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "last", ""));
    DEPOT_REQUIRE_OK(ch.bindExchange("c", "b", "k")); // b routes k to c, c's alternate is last
    CHECK(publish(ch, "a", "k", "m2").queues == 1);
    CHECK(drain(ch, "q") == Names{"m2"});
}

// --- mandatory ---

TEST_CASE("a mandatory unroutable publish is returned, a non-mandatory one is dropped") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "k"));

    PublishResult returned = publish(ch, "d", "other", "m1", T0, {}, true);
    CHECK(returned.returned);
    CHECK(returned.queues == 0);
    CHECK_FALSE(returned.rejected);

    PublishResult dropped = publish(ch, "d", "other", "m2", T0, {}, false);
    CHECK_FALSE(dropped.returned);
    CHECK(dropped.queues == 0);

    PublishResult routed = publish(ch, "d", "k", "m3", T0, {}, true);
    CHECK_FALSE(routed.returned);
    CHECK(routed.queues == 1);
    CHECK(drain(ch, "q") == Names{"m3"});
}
