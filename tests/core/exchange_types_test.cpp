// Each exchange type routes as RabbitMQ's does: the default exchange by queue name, direct by
// exact key, fanout to all, topic by pattern (with RabbitMQ's empty-word rules, RABBITMQ-FACTS
// (vii)), headers by x-match over the message headers. Every vhost has the amq.* built-ins.

#include "broker/core/broker.h"
#include "tests/support/core_helpers.h"
#include "tests/support/recording_sink.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace depot::core;
using namespace depot::tests;

namespace {

// The names of the queues a message would reach, sorted, without enqueueing anything.
std::vector<std::string> routeNames(Vhost& vhost, std::string_view exchange,
                                    std::string_view routingKey, const FieldTable& headers = {}) {
    std::vector<Queue*> queues;
    Status routed = vhost.route(exchange, routingKey, headers, queues);
    REQUIRE_MESSAGE(routed.ok(), describe(routed));
    std::vector<std::string> names;
    for (const Queue* q : queues)
        names.push_back(q->name());
    std::sort(names.begin(), names.end());
    return names;
}

using Names = std::vector<std::string>;

} // namespace

TEST_CASE("default exchange delivers to the queue named by the routing key") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "tasks");
    declareQueue(ch, "other");

    PublishResult result = publish(ch, "", "tasks", "hello");
    CHECK(result.queues == 1);
    CHECK_FALSE(result.returned);
    CHECK(drain(ch, "tasks") == Names{"hello"});
    CHECK(drain(ch, "other").empty());
}

TEST_CASE("default exchange: a key naming no queue is returned if mandatory, else dropped") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "tasks");

    PublishResult mandatory = publish(ch, "", "nosuchqueue", "m1", T0, {}, true);
    CHECK(mandatory.queues == 0);
    CHECK(mandatory.returned);

    PublishResult plain = publish(ch, "", "nosuchqueue", "m2", T0, {}, false);
    CHECK(plain.queues == 0);
    CHECK_FALSE(plain.returned);
    CHECK(drain(ch, "tasks").empty());
}

TEST_CASE("default exchange matches queue names exactly and case-sensitively") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareQueue(ch, "Tasks");
    CHECK(publish(ch, "", "tasks", "m1").queues == 0);
    CHECK(publish(ch, "", "Tasks.", "m2").queues == 0);
    CHECK(publish(ch, "", "Tasks", "m3").queues == 1);
}

TEST_CASE("direct exchange delivers only on an exact key match") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    for (const char* q : {"q1", "q2", "q3"})
        declareQueue(ch, q);
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "d", "a"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "d", "b"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q3", "d", "a"));

    CHECK(routeNames(vhost, "d", "a") == Names{"q1", "q3"});
    CHECK(routeNames(vhost, "d", "b") == Names{"q2"});
    CHECK(routeNames(vhost, "d", "A").empty());
    CHECK(routeNames(vhost, "d", "a.b").empty());
    CHECK(routeNames(vhost, "d", "").empty());

    CHECK(publish(ch, "d", "a", "m1").queues == 2);
    CHECK(drain(ch, "q1") == Names{"m1"});
    CHECK(drain(ch, "q3") == Names{"m1"});
    CHECK(drain(ch, "q2").empty());
}

TEST_CASE("direct exchange: a queue bound with two keys gets each, and unbinding one keeps the "
          "other") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "b"));
    CHECK(routeNames(vhost, "d", "a") == Names{"q"});
    CHECK(routeNames(vhost, "d", "b") == Names{"q"});

    DEPOT_REQUIRE_OK(ch.unbindQueue("q", "d", "a"));
    CHECK(routeNames(vhost, "d", "a").empty());
    CHECK(routeNames(vhost, "d", "b") == Names{"q"});
}

TEST_CASE("a key that routed nowhere reaches a binding added later (the route cache forgets)") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    declareExchange(ch, "t", ExchangeType::TOPIC);
    declareQueue(ch, "q");
    CHECK(routeNames(vhost, "d", "a.b").empty());
    CHECK(routeNames(vhost, "t", "a.b").empty());
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a.b"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "t", "a.*"));
    CHECK(routeNames(vhost, "d", "a.b") == Names{"q"});
    CHECK(routeNames(vhost, "t", "a.b") == Names{"q"});
}

TEST_CASE("binding twice with the same key and arguments is one binding") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a"));
    CHECK(vhost.findExchange("d")->bindingCount() == 1);
    // One unbind removes it: there was only one.
    DEPOT_REQUIRE_OK(ch.unbindQueue("q", "d", "a"));
    CHECK(routeNames(vhost, "d", "a").empty());
}

TEST_CASE("direct bindings that differ only in arguments route once and survive one unbind") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "d", ExchangeType::DIRECT);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a", FieldTable{{"v", std::int64_t{1}}}));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "d", "a", FieldTable{{"v", std::int64_t{2}}}));
    CHECK(vhost.findExchange("d")->bindingCount() == 2);
    CHECK(publish(ch, "d", "a", "m1").queues == 1);
    DEPOT_REQUIRE_OK(ch.unbindQueue("q", "d", "a", FieldTable{{"v", std::int64_t{1}}}));
    CHECK(routeNames(vhost, "d", "a") == Names{"q"});
    CHECK(drain(ch, "q") == Names{"m1"});
}

TEST_CASE("fanout exchange delivers to every bound queue whatever the key") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "f", ExchangeType::FANOUT);
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    declareQueue(ch, "unbound");
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "f", ""));
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "f", "ignored"));

    CHECK(routeNames(vhost, "f", "") == Names{"q1", "q2"});
    CHECK(routeNames(vhost, "f", "anything.at.all") == Names{"q1", "q2"});
    CHECK(publish(ch, "f", "x", "m1").queues == 2);
    CHECK(drain(ch, "q1") == Names{"m1"});
    CHECK(drain(ch, "q2") == Names{"m1"});
    CHECK(drain(ch, "unbound").empty());

    DEPOT_REQUIRE_OK(ch.unbindQueue("q1", "f", ""));
    CHECK(routeNames(vhost, "f", "x") == Names{"q2"});
}

TEST_CASE("topic exchange routes by pattern") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "t", ExchangeType::TOPIC);
    const std::vector<std::pair<std::string, std::string>> bindings = {
        {"star", "a.*"}, {"hash", "a.#"}, {"all", "#"}, {"end", "*.b"}, {"exact", "a.b.c"}};
    for (const auto& [queue, pattern] : bindings) {
        declareQueue(ch, queue);
        DEPOT_REQUIRE_OK(ch.bindQueue(queue, "t", pattern));
    }

    CHECK(routeNames(vhost, "t", "a.b") == Names{"all", "end", "hash", "star"});
    CHECK(routeNames(vhost, "t", "a") == Names{"all", "hash"});
    CHECK(routeNames(vhost, "t", "a.b.c") == Names{"all", "exact", "hash"});
    CHECK(routeNames(vhost, "t", "x.b") == Names{"all", "end"});
    CHECK(routeNames(vhost, "t", "A.b") == Names{"all", "end"}); // case-sensitive
    CHECK(routeNames(vhost, "t", "b") == Names{"all"});

    CHECK(publish(ch, "t", "a.b", "m1").queues == 4);
    CHECK(drain(ch, "star") == Names{"m1"});
    CHECK(drain(ch, "exact").empty());
}

TEST_CASE("topic exchange follows RabbitMQ's empty-word rules") {
    // RABBITMQ-FACTS (vii): the table of patterns against "", "." and a few other keys.
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "t", ExchangeType::TOPIC);
    const std::vector<std::pair<std::string, std::string>> bindings = {
        {"empty", ""},       {"hash", "#"},     {"hashhash", "#.#"},
        {"star", "*"},       {"hashdot", "#."}, {"dothash", ".#"},
        {"starstar", "*.*"}, {"a-hash", "a.#"}, {"a-star-hash", "a.*.#"},
        {"hash-a", "#.a"},   {"astar", "a*"},   {"a-dstar", "a.**"}};
    for (const auto& [queue, pattern] : bindings) {
        declareQueue(ch, queue);
        DEPOT_REQUIRE_OK(ch.bindQueue(queue, "t", pattern));
    }

    // "" is zero words: matched by "", "#" and "#.#", not by "*", "#." or ".#".
    CHECK(routeNames(vhost, "t", "") == Names{"empty", "hash", "hashhash"});
    // "." is two empty words: "#", "#.#", "*.*", "#." and ".#" match; "" and "*" do not.
    CHECK(routeNames(vhost, "t", ".") ==
          Names{"dothash", "hash", "hashdot", "hashhash", "starstar"});
    // "*" matches the one-word key "#" (a literal word here).
    CHECK(routeNames(vhost, "t", "#") == Names{"hash", "hashhash", "star"});
    // "a." is "a" then an empty word.
    CHECK(routeNames(vhost, "t", "a.") ==
          Names{"a-hash", "a-star-hash", "hash", "hashdot", "hashhash", "starstar"});
    // "a.*.#" needs a second word; "#.a" matches "a" alone.
    CHECK(routeNames(vhost, "t", "a") == Names{"a-hash", "hash", "hash-a", "hashhash", "star"});
    // No partial wildcards: "a*" and "a.**" are literal.
    CHECK(routeNames(vhost, "t", "a*") == Names{"astar", "hash", "hashhash", "star"});
    CHECK(routeNames(vhost, "t", "a.**") ==
          Names{"a-dstar", "a-hash", "a-star-hash", "hash", "hashhash", "starstar"});
    CHECK(routeNames(vhost, "t", "ab").size() == 3); // hash, hashhash, star only
    // "a..b" is three words.
    CHECK(routeNames(vhost, "t", "a..b") == Names{"a-hash", "a-star-hash", "hash", "hashhash"});
}

TEST_CASE("topic exchange: unbinding a pattern stops it matching a key routed before") {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();
    declareExchange(ch, "t", ExchangeType::TOPIC);
    declareQueue(ch, "q1");
    declareQueue(ch, "q2");
    DEPOT_REQUIRE_OK(ch.bindQueue("q1", "t", "a.*"));
    CHECK(publish(ch, "t", "a.b", "m1").queues == 1); // the key is now routed once (cached)
    DEPOT_REQUIRE_OK(ch.bindQueue("q2", "t", "#.b"));
    CHECK(publish(ch, "t", "a.b", "m2").queues == 2);
    DEPOT_REQUIRE_OK(ch.unbindQueue("q1", "t", "a.*"));
    CHECK(publish(ch, "t", "a.b", "m3").queues == 1);
    CHECK(drain(ch, "q1") == Names{"m1", "m2"});
    CHECK(drain(ch, "q2") == Names{"m2", "m3"});
}

TEST_CASE("topic exchange: two patterns matching one key give the queue one copy") {
    Broker broker;
    Channel& ch = broker.defaultVhost().openChannel();
    declareExchange(ch, "t", ExchangeType::TOPIC);
    declareQueue(ch, "q");
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "t", "a.*"));
    DEPOT_REQUIRE_OK(ch.bindQueue("q", "t", "*.b"));
    CHECK(publish(ch, "t", "a.b", "m1").queues == 1);
    CHECK(drain(ch, "q") == Names{"m1"});
}

// --- headers ---

namespace {

struct HeadersFixture {
    Broker broker;
    Vhost& vhost = broker.defaultVhost();
    Channel& ch = vhost.openChannel();

    HeadersFixture() { declareExchange(ch, "h", ExchangeType::HEADERS); }

    void bind(const std::string& queue, const FieldTable& arguments) {
        declareQueue(ch, queue);
        DEPOT_REQUIRE_OK(ch.bindQueue(queue, "h", "", arguments));
    }

    Names route(const FieldTable& headers) { return routeNames(vhost, "h", "any.key", headers); }
};

} // namespace

TEST_CASE("headers exchange x-match all needs every bound header with an equal value") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"x-match", "all"}, {"format", "pdf"}, {"type", "report"}});
    CHECK(f.route(FieldTable{{"format", "pdf"}, {"type", "report"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"format", "pdf"}, {"type", "report"}, {"extra", "1"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"format", "pdf"}}).empty());
    CHECK(f.route(FieldTable{{"format", "pdf"}, {"type", "log"}}).empty());
    CHECK(f.route(FieldTable{}).empty());
}

TEST_CASE("headers exchange without x-match defaults to all") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"format", "pdf"}, {"type", "report"}});
    CHECK(f.route(FieldTable{{"format", "pdf"}, {"type", "report"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"format", "pdf"}}).empty());
}

TEST_CASE("headers exchange x-match any needs one bound header with an equal value") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"x-match", "any"}, {"format", "pdf"}, {"type", "report"}});
    CHECK(f.route(FieldTable{{"format", "pdf"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"type", "report"}, {"format", "zip"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"format", "zip"}}).empty());
    CHECK(f.route(FieldTable{}).empty());
}

TEST_CASE("headers exchange compares values with their types") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"n", std::int64_t{1}}});
    CHECK(f.route(FieldTable{{"n", std::int64_t{1}}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"n", "1"}}).empty());
    CHECK(f.route(FieldTable{{"n", std::int64_t{2}}}).empty());
    CHECK(f.route(FieldTable{{"n", true}}).empty());
}

TEST_CASE("headers exchange: a void binding value matches on presence alone") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"trace", std::monostate{}}});
    CHECK(f.route(FieldTable{{"trace", "yes"}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"trace", std::int64_t{0}}}) == Names{"q"});
    CHECK(f.route(FieldTable{{"other", "yes"}}).empty());
}

TEST_CASE("headers exchange ignores x- binding arguments unless x-match ends in -with-x") {
    HeadersFixture f;
    f.bind("all", FieldTable{{"x-match", "all"}, {"x-tenant", "t1"}, {"k", "v"}});
    f.bind("any", FieldTable{{"x-match", "any"}, {"x-tenant", "t1"}});
    f.bind("allx", FieldTable{{"x-match", "all-with-x"}, {"x-tenant", "t1"}, {"k", "v"}});
    f.bind("anyx", FieldTable{{"x-match", "any-with-x"}, {"x-tenant", "t1"}});

    // x-tenant is ignored by "all" (only k counts) and by "any" (nothing left: no match).
    CHECK(f.route(FieldTable{{"k", "v"}}) == Names{"all"});
    CHECK(f.route(FieldTable{{"k", "v"}, {"x-tenant", "t1"}}) == Names{"all", "allx", "anyx"});
    CHECK(f.route(FieldTable{{"x-tenant", "t1"}}) == Names{"anyx"});
    CHECK(f.route(FieldTable{{"k", "v"}, {"x-tenant", "t2"}}) == Names{"all"});
}

TEST_CASE("headers exchange: a binding without arguments matches everything with all, nothing "
          "with any") {
    HeadersFixture f;
    f.bind("all", FieldTable{});
    f.bind("any", FieldTable{{"x-match", "any"}});
    CHECK(f.route(FieldTable{}) == Names{"all"});
    CHECK(f.route(FieldTable{{"k", "v"}}) == Names{"all"});
}

TEST_CASE("headers exchange: an invalid x-match is PRECONDITION_FAILED") {
    HeadersFixture f;
    declareQueue(f.ch, "q");
    Status wrongWord = f.ch.bindQueue("q", "h", "", FieldTable{{"x-match", "some"}});
    CHECK(codeOf(wrongWord) == "PRECONDITION_FAILED");
    CHECK(textOf(wrongWord).find("x-match") != std::string::npos);
    CHECK(codeOf(f.ch.bindQueue("q", "h", "", FieldTable{{"x-match", std::int64_t{1}}})) ==
          "PRECONDITION_FAILED");
    CHECK(f.vhost.findExchange("h")->bindingCount() == 0);
}

TEST_CASE("headers exchange ignores the routing key and unbinds by arguments") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"k", "v"}});
    CHECK(routeNames(f.vhost, "h", "", FieldTable{{"k", "v"}}) == Names{"q"});
    CHECK(routeNames(f.vhost, "h", "whatever", FieldTable{{"k", "v"}}) == Names{"q"});
    DEPOT_REQUIRE_OK(f.ch.unbindQueue("q", "h", "", FieldTable{{"k", "v"}}));
    CHECK(f.route(FieldTable{{"k", "v"}}).empty());
}

TEST_CASE("headers exchange routes on the headers of a published message") {
    HeadersFixture f;
    f.bind("q", FieldTable{{"x-match", "any"}, {"a", "1"}});
    Properties match;
    match.headers = FieldTable{{"a", "1"}};
    CHECK(publish(f.ch, "h", "", "m1", T0, match).queues == 1);
    CHECK(publish(f.ch, "h", "", "m2").queues == 0);
    CHECK(drain(f.ch, "q") == Names{"m1"});
}

TEST_CASE("every vhost has the default exchange and the amq.* built-ins") {
    Broker broker;
    Result<Vhost*> added = broker.addVhost("other");
    REQUIRE(added.ok());
    for (Vhost* vhost : {&broker.defaultVhost(), *added}) {
        CAPTURE(vhost->name());
        const std::vector<std::pair<std::string, ExchangeType>> builtIns = {
            {"", ExchangeType::DIRECT},
            {"amq.direct", ExchangeType::DIRECT},
            {"amq.fanout", ExchangeType::FANOUT},
            {"amq.topic", ExchangeType::TOPIC},
            {"amq.headers", ExchangeType::HEADERS},
            {"amq.match", ExchangeType::HEADERS}};
        for (const auto& builtIn : builtIns) {
            const std::string& name = builtIn.first;
            const ExchangeType type = builtIn.second;
            CAPTURE(name);
            const Exchange* x = vhost->findExchange(name);
            REQUIRE(x != nullptr);
            CHECK(x->type() == type);
            CHECK(x->options().durable);
        }
        CHECK(vhost->listExchanges().size() == builtIns.size());
        // They route like any exchange of their type.
        Channel& ch = vhost->openChannel();
        declareQueue(ch, "q");
        DEPOT_REQUIRE_OK(ch.bindQueue("q", "amq.topic", "a.#"));
        CHECK(publish(ch, "amq.topic", "a.b", "m1").queues == 1);
        CHECK(drain(ch, "q") == Names{"m1"});
    }
}
