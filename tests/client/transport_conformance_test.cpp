// The client API's behaviour, the same over every transport: each body runs once per URL in
// forEachUrl (embedded:, depot:// to a depotd started for the test, amqp:// to RabbitMQ). AMQP
// 0-9-1 is the reference: routing, acks, prefetch, requeue with the redelivered flag, exclusive
// queues, mandatory returns and publisher confirms.

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/confirm_window.h"
#include "client/connection.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using depot::client::Connection;
using depot::client::ConnectionEvent;
using depot::client::ConsumeOptions;
using depot::client::Consumer;
using depot::client::Delivery;
using depot::client::Error;
using depot::client::ExchangeDeclareOptions;
using depot::client::ExchangeType;
using depot::client::PublishOptions;
using depot::client::QueueDeclareOptions;
using depot::client::ReturnedMessage;
using depot::tests::bodies;
using depot::tests::consumerCount;
using depot::tests::errorOf;
using depot::tests::forEachUrl;
using depot::tests::Inbox;
using depot::tests::reached;
using depot::tests::readyCount;

namespace {

// A consumer handler that keeps every delivery (unsettled) for the test to look at.
Connection::Handler into(Inbox<Delivery>& inbox) {
    return [&inbox](Delivery& d) { inbox.push(d); };
}

Connection::Handler ackingInto(Inbox<Delivery>& inbox) {
    return [&inbox](Delivery& d) {
        d.ack();
        inbox.push(d);
    };
}

// A queue that takes 150 messages and nacks the publishes past them.
QueueDeclareOptions refusingPast150() {
    QueueDeclareOptions bounded;
    bounded.arguments.set("x-max-length", std::int64_t{150});
    bounded.arguments.set("x-overflow", std::string("reject-publish"));
    return bounded;
}

// A consumer's handler on the dispatcher thread, then inline (ConsumeOptions::inlineHandler):
// what holds for one holds for the other.
constexpr bool DISPATCHED_THEN_INLINE[] = {false, true};

ConsumeOptions handlerOptions(bool inlineHandler) {
    ConsumeOptions options;
    options.inlineHandler = inlineHandler;
    return options;
}

} // namespace

TEST_CASE("declare, bind, publish and consume: the message arrives with its properties") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto connection = Connection::open(url);
        connection->declareExchange("orders", ExchangeType::DIRECT);
        CHECK(connection->declareQueue("new-orders").name == "new-orders");
        connection->bindQueue("new-orders", "orders", "order.new");
        Consumer consumer = connection->consume("new-orders", ackingInto(inbox));

        PublishOptions options;
        options.properties.correlationId = "c-1";
        options.properties.contentType = "text/plain";
        options.properties.headers.set("region", std::string("eu"));
        connection->publish("orders", "order.new", "parcel 42", options);
        connection->publish("orders", "order.other", "not bound", options);

        REQUIRE(inbox.waitFor(1));
        const Delivery d = inbox.at(0);
        CHECK(d.body() == "parcel 42");
        CHECK(d.exchange() == "orders");
        CHECK(d.routingKey() == "order.new");
        CHECK(d.consumerTag() == consumer.tag());
        CHECK_FALSE(d.redelivered());
        CHECK(d.properties().correlationId == "c-1");
        CHECK(d.properties().contentType == "text/plain");
        REQUIRE(d.properties().headers.getString("region"));
        CHECK(*d.properties().headers.getString("region") == "eu");
        CHECK(readyCount(*connection, "new-orders") == 0);
    });
}

// A handled Delivery's storage is filled again by later ones (its strings keep their
// capacity): nothing of an earlier message may show through in a later one.
TEST_CASE("a delivery shows only its own message, after deliveries with every property set") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto connection = Connection::open(url);
        connection->declareExchange("full", ExchangeType::FANOUT);
        connection->declareQueue("reused");
        connection->bindQueue("reused", "full", "");
        Consumer consumer = connection->consume("reused", ackingInto(inbox));

        PublishOptions full;
        auto& p = full.properties;
        p.contentType = "text/plain";
        p.contentEncoding = "identity";
        p.correlationId = "c-1";
        p.replyTo = "somewhere";
        p.messageId = "m-1";
        p.type = "kind";
        p.appId = "app";
        p.expiration = std::chrono::milliseconds(60'000);
        p.priority = 3;
        p.timestamp = 1'700'000'000;
        p.headers.set("region", std::string("eu"));
        // One at a time, so that each is a batch of its own and later ones reuse its storage.
        std::size_t expected = 0;
        for (int i = 0; i < 3; ++i) {
            connection->publish("full", "a.long.routing.key", std::string(300, 'f'), full);
            REQUIRE(inbox.waitFor(++expected));
        }
        // And one with x-death: rejected from a queue that dead-letters into "reused".
        QueueDeclareOptions deadLetters;
        deadLetters.arguments.set("x-dead-letter-exchange", std::string(""));
        deadLetters.arguments.set("x-dead-letter-routing-key", std::string("reused"));
        connection->declareQueue("reused-source", deadLetters);
        (void)connection->publishConfirmed("", "reused-source", "dead");
        std::optional<Delivery> refused = connection->get("reused-source");
        REQUIRE(refused);
        refused->reject(false);
        REQUIRE(inbox.waitFor(++expected));
        for (int i = 0; i < 3; ++i) {
            connection->publish("", "reused", "plain");
            REQUIRE(inbox.waitFor(++expected));
        }

        CHECK(inbox.at(0).properties().messageId == "m-1");
        CHECK(inbox.at(3).deaths().size() == 1);
        for (std::size_t i = 4; i < expected; ++i) {
            const Delivery d = inbox.at(i);
            CHECK(d.body() == "plain");
            CHECK(d.exchange() == "");
            CHECK(d.routingKey() == "reused");
            CHECK(d.deaths().empty());
            const auto& q = d.properties();
            CHECK(q.contentType.empty());
            CHECK(q.contentEncoding.empty());
            CHECK(q.correlationId.empty());
            CHECK(q.replyTo.empty());
            CHECK(q.messageId.empty());
            CHECK(q.type.empty());
            CHECK(q.appId.empty());
            CHECK_FALSE(q.expiration.has_value());
            CHECK(q.priority == 0);
            CHECK(q.timestamp == 0);
            CHECK(q.headers.empty());
        }
    });
}

TEST_CASE("point-to-point through the default exchange, between two connections") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto sender = Connection::open(url);
        auto receiver = Connection::open(url);
        receiver->declareQueue("tasks");
        Consumer consumer = receiver->consume("tasks", ackingInto(inbox));

        const auto confirmation = sender->publishConfirmed("", "tasks", "task 1");
        CHECK(confirmation.ack);
        CHECK(reached(confirmation, 1, url));
        CHECK_FALSE(confirmation.returned);
        sender->publish("", "tasks", "task 2");

        REQUIRE(inbox.waitFor(2));
        CHECK(bodies(inbox.items()) == std::vector<std::string>{"task 1", "task 2"});
        CHECK(inbox.at(0).exchange().empty());
        CHECK(inbox.at(0).routingKey() == "tasks");
    });
}

TEST_CASE("fanout: every bound queue gets a copy") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> billing;
        Inbox<Delivery> tracking;
        auto connection = Connection::open(url);
        connection->declareExchange("package-events", ExchangeType::FANOUT);
        for (const char* queue : {"billing", "tracking"}) {
            connection->declareQueue(queue);
            connection->bindQueue(queue, "package-events", "ignored");
        }
        Consumer a = connection->consume("billing", ackingInto(billing));
        Consumer b = connection->consume("tracking", ackingInto(tracking));

        connection->publish("package-events", "any.key", "delivered");
        REQUIRE(billing.waitFor(1));
        REQUIRE(tracking.waitFor(1));
        CHECK(billing.at(0).body() == "delivered");
        CHECK(tracking.at(0).body() == "delivered");
    });
}

TEST_CASE("topic: * matches one word, # matches any number") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> eu;
        Inbox<Delivery> all;
        auto connection = Connection::open(url);
        connection->declareExchange("packages", ExchangeType::TOPIC);
        connection->declareQueue("eu");
        connection->declareQueue("all");
        connection->bindQueue("eu", "packages", "package.eu.*");
        connection->bindQueue("all", "packages", "package.#");
        Consumer a = connection->consume("eu", ackingInto(eu));
        Consumer b = connection->consume("all", ackingInto(all));

        for (const char* key : {"package.eu.delivered", "package.us.delivered",
                                "package.eu.hub.arrived", "invoice.eu.sent"}) {
            const auto confirmation = connection->publishConfirmed("packages", key, key);
            CHECK(reached(confirmation,
                          std::string(key) == "package.eu.delivered" ? 2u
                          : std::string(key).starts_with("package.") ? 1u
                                                                     : 0u,
                          url));
        }
        REQUIRE(all.waitFor(3));
        REQUIRE(eu.waitFor(1));
        CHECK(bodies(eu.items()) == std::vector<std::string>{"package.eu.delivered"});
        CHECK(bodies(all.items()) == std::vector<std::string>{"package.eu.delivered",
                                                              "package.us.delivered",
                                                              "package.eu.hub.arrived"});
    });
}

TEST_CASE("competing consumers share a queue round-robin") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> first;
        Inbox<Delivery> second;
        auto one = Connection::open(url);
        auto two = Connection::open(url);
        one->declareQueue("work");
        Consumer a = one->consume("work", ackingInto(first));
        Consumer b = two->consume("work", ackingInto(second));

        for (int i = 0; i < 6; ++i)
            (void)one->publishConfirmed("", "work", "job " + std::to_string(i));
        REQUIRE(first.waitFor(3));
        REQUIRE(second.waitFor(3));
        CHECK(first.size() == 3);
        CHECK(second.size() == 3);
        // Alternating: one gets the even jobs and the other the odd ones.
        const std::vector<std::string> even{"job 0", "job 2", "job 4"};
        const std::vector<std::string> odd{"job 1", "job 3", "job 5"};
        const auto got = bodies(first.items());
        CHECK((got == even || got == odd));
    });
}

TEST_CASE("prefetch: a consumer holds at most `prefetch` unacked deliveries") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto connection = Connection::open(url);
        connection->declareQueue("slow");
        ConsumeOptions options;
        options.prefetch = 2;
        Consumer consumer = connection->consume("slow", into(inbox), options);
        for (int i = 0; i < 5; ++i)
            (void)connection->publishConfirmed("", "slow", "m" + std::to_string(i));

        REQUIRE(inbox.waitFor(2));
        // The broker has decided by the time the confirms are back: 3 wait in the queue.
        CHECK(readyCount(*connection, "slow") == 3);
        CHECK(inbox.size() == 2);

        Delivery oldest = inbox.at(0);
        oldest.ack();
        REQUIRE(inbox.waitFor(3));
        CHECK(bodies(inbox.items()) == std::vector<std::string>{"m0", "m1", "m2"});
        CHECK(readyCount(*connection, "slow") == 2);
    });
}

TEST_CASE("acks made by handlers reach the broker: a small prefetch window keeps moving") {
    // Over depot:// a handler's acks are held back until its batch of deliveries is done (or 256
    // are held): the batch's end must send them, or a window smaller than that would stall.
    forEachUrl([](const std::string& url) {
        auto observer = Connection::open(url);
        for (const std::uint32_t prefetch : {1U, 3U, 100U}) {
            CAPTURE(prefetch);
            const std::string queue = "window-" + std::to_string(prefetch);
            observer->declareQueue(queue);
            for (int i = 0; i < 300; ++i)
                observer->publish("", queue, std::to_string(i));
            Inbox<Delivery> inbox;
            {
                auto connection = Connection::open(url);
                ConsumeOptions options;
                options.prefetch = prefetch;
                Consumer consumer = connection->consume(queue, ackingInto(inbox), options);
                REQUIRE(inbox.waitFor(300));
                CHECK(inbox.at(299).body() == "299");
                connection->close(); // would requeue whatever the broker saw no ack for
            }
            CHECK(readyCount(*observer, queue) == 0);
        }
    });
}

TEST_CASE("a handler whose batch never ends still gets its acks to depotd, 256 at a time") {
    depot::tests::TestServer server;
    auto observer = Connection::open(server.url());
    observer->declareQueue("flood");
    for (int i = 0; i < 1000; ++i)
        observer->publish("", "flood", std::to_string(i));
    auto unacked = [&] {
        const depot::client::Listing listing = observer->list(depot::client::ListKind::QUEUES);
        const auto name = std::find(listing.columns.begin(), listing.columns.end(), "name");
        const auto count =
            std::find(listing.columns.begin(), listing.columns.end(), "messages_unacked");
        REQUIRE(name != listing.columns.end());
        REQUIRE(count != listing.columns.end());
        for (const auto& row : listing.rows)
            if (std::get<std::string>(row[name - listing.columns.begin()]) == "flood")
                return std::get<std::int64_t>(row[count - listing.columns.begin()]);
        FAIL("no queue 'flood'");
        return std::int64_t{-1};
    };

    auto connection = Connection::open(server.url());
    std::promise<void> reached;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    int handled = 0; // the dispatcher runs one handler at a time
    // No prefetch limit: all 1000 arrive while the first handler waits, and the rest are one
    // batch, blocked again at the 600th: the batch does not end.
    Consumer consumer = connection->consume("flood", [&](Delivery& d) {
        if (handled == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
        d.ack();
        if (++handled == 600) {
            reached.set_value();
            released.wait();
        }
    });
    REQUIRE(reached.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    bool sent = false; // 2 x 256 of the 600 acks left without waiting for the batch to end
    for (int tries = 0; tries < 250 && !sent; ++tries) {
        sent = unacked() <= 1000 - 512;
        if (!sent)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(sent);
    release.set_value();
}

TEST_CASE("nack and reject with requeue redeliver the message with the redelivered flag") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto connection = Connection::open(url);
        connection->declareQueue("retry");
        int calls = 0;
        Consumer consumer = connection->consume("retry", [&inbox, &calls](Delivery& d) {
            ++calls; // the dispatcher runs one handler at a time
            if (calls == 1)
                d.nack(true);
            else if (calls == 2)
                d.reject(true);
            else
                d.ack();
            inbox.push(d);
        });
        connection->publish("", "retry", "flaky");
        REQUIRE(inbox.waitFor(3));
        const auto got = inbox.items();
        CHECK_FALSE(got[0].redelivered());
        CHECK(got[1].redelivered());
        CHECK(got[2].redelivered());
        CHECK(bodies(got) == std::vector<std::string>{"flaky", "flaky", "flaky"});
        CHECK(readyCount(*connection, "retry") == 0);
    });
}

TEST_CASE("reject and nack without requeue drop the message") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        (void)connection->publishConfirmed("", "q", "a");
        (void)connection->publishConfirmed("", "q", "b");
        auto a = connection->get("q");
        REQUIRE(a);
        a->reject(false);
        auto b = connection->get("q");
        REQUIRE(b);
        CHECK(b->body() == "b");
        b->nack(false);
        CHECK_FALSE(connection->get("q"));
        connection->close();
        auto other = Connection::open(url);
        CHECK(readyCount(*other, "q") == 0); // nothing came back when the channel closed
    });
}

TEST_CASE("get takes the head of the queue: purge empties it") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        CHECK_FALSE(connection->get("q"));
        for (const char* body : {"one", "two", "three", "four"})
            (void)connection->publishConfirmed("", "q", body);

        std::optional<Delivery> first = connection->get("q");
        REQUIRE(first);
        CHECK(first->body() == "one");
        CHECK(first->consumerTag().empty());
        CHECK_FALSE(first->redelivered());
        CHECK_FALSE(first->settled());
        first->reject(true); // back to the head
        std::optional<Delivery> again = connection->get("q");
        REQUIRE(again);
        CHECK(again->body() == "one");
        CHECK(again->redelivered());
        again->ack();

        std::optional<Delivery> noAck = connection->get("q", true);
        REQUIRE(noAck);
        CHECK(noAck->body() == "two");
        CHECK(noAck->settled()); // nothing to acknowledge

        CHECK(connection->purge("q") == 2);
        CHECK_FALSE(connection->get("q"));
        CHECK(connection->deleteQueue("q") == 0);
    });
}

TEST_CASE("broker refusals are thrown as Error with AMQP's code") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        CHECK(errorOf([&] { connection->bindQueue("q", "no-such-exchange", "k"); }) ==
              "BROKER/NOT_FOUND");
        QueueDeclareOptions durable;
        durable.durable = true;
        CHECK(errorOf([&] { (void)connection->declareQueue("q", durable); }) ==
              "BROKER/PRECONDITION_FAILED");
        QueueDeclareOptions passive;
        passive.passive = true;
        CHECK(errorOf([&] { (void)connection->declareQueue("missing", passive); }) ==
              "BROKER/NOT_FOUND");
        ExchangeDeclareOptions passiveExchange;
        passiveExchange.passive = true;
        CHECK(errorOf([&] {
                  connection->declareExchange("missing", ExchangeType::DIRECT, passiveExchange);
              }) == "BROKER/NOT_FOUND");
        CHECK(errorOf([&] { (void)connection->publishConfirmed("no-such-exchange", "k", "x"); }) ==
              "BROKER/NOT_FOUND");
        CHECK(errorOf([&] { connection->declareExchange("amq.mine", ExchangeType::FANOUT); }) ==
              "BROKER/ACCESS_REFUSED");
        QueueDeclareOptions badArgument;
        badArgument.arguments.set("x-message-ttl", std::string("soon"));
        CHECK(errorOf([&] { (void)connection->declareQueue("ttl", badArgument); }) ==
              "BROKER/PRECONDITION_FAILED");

        try {
            connection->bindQueue("q", "no-such-exchange", "k");
        } catch (const Error& e) {
            CHECK(std::string(e.what()) == "NOT_FOUND - no exchange 'no-such-exchange' in vhost '" +
                                               depot::client::BrokerUrl::parse(url).vhost + "'");
        }
        // The connection is still usable after a refusal.
        CHECK(connection->publishConfirmed("", "q", "still fine").ack);
    });
}

TEST_CASE("a fire-and-forget publish that the broker refuses reaches onError") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> errors;
        auto connection = Connection::open(url);
        connection->onError([&errors](const Error& e) {
            errors.push(e.kind() == depot::client::ErrorKind::BROKER
                            ? std::string(depot::core::errorCodeName(e.code()))
                            : std::string("other"));
        });
        connection->publish("no-such-exchange", "k", "lost");
        REQUIRE(errors.waitFor(1));
        CHECK(errors.at(0) == "NOT_FOUND");
    });
}

// Over amqp:// the publish channel enters confirm mode at the first confirmed publish, right
// after the fire-and-forget ones before it are written: the broker's answer to those (a refusal
// that closes the channel, a mandatory message returned) comes while confirm mode is being
// asked for, and belongs to them, not to the confirmed publish.
TEST_CASE("what the broker says of fire-and-forget publishes does not spill onto the next "
          "confirmed one") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> errors;
        Inbox<ReturnedMessage> returned;
        std::atomic<int> disconnects{0};
        auto connection = Connection::open(url);
        connection->onError([&errors](const Error& e) { errors.push(e.what()); });
        connection->onReturn([&returned](const ReturnedMessage& m) { returned.push(m); });
        connection->onEvent([&disconnects](ConnectionEvent event) {
            if (event == ConnectionEvent::DISCONNECTED)
                ++disconnects;
        });
        connection->declareQueue("kept");

        connection->publish("no-such-exchange", "k", "refused");
        const auto first = connection->publishConfirmed("", "kept", "one");
        CHECK(first.ack);
        REQUIRE(errors.waitFor(1));
        CHECK(errors.at(0).find("NOT_FOUND") != std::string::npos);

        auto fresh = Connection::open(url); // a connection not yet in confirm mode
        fresh->onReturn([&returned](const ReturnedMessage& m) { returned.push(m); });
        PublishOptions mandatory;
        mandatory.mandatory = true;
        fresh->publish("", "nowhere", "comes back", mandatory);
        const auto second = fresh->publishConfirmed("", "kept", "two", mandatory);
        CHECK(second.ack);
        CHECK_FALSE(second.returned); // "kept" took it: the return was the other one's
        REQUIRE(returned.waitFor(1));
        CHECK(returned.at(0).body == "comes back");

        CHECK(readyCount(*connection, "kept") == 2);
        CHECK(disconnects.load() == 0);
    });
}

TEST_CASE("a mandatory message that routes nowhere comes back to onReturn") {
    forEachUrl([](const std::string& url) {
        Inbox<ReturnedMessage> returned;
        auto connection = Connection::open(url);
        connection->onReturn([&returned](const ReturnedMessage& m) { returned.push(m); });
        connection->declareExchange("events", ExchangeType::DIRECT);

        PublishOptions mandatory;
        mandatory.mandatory = true;
        mandatory.properties.messageId = "m-7";
        connection->publish("events", "nobody.listens", "echo", mandatory);
        REQUIRE(returned.waitFor(1));
        CHECK(returned.at(0).exchange == "events");
        CHECK(returned.at(0).routingKey == "nobody.listens");
        CHECK(returned.at(0).body == "echo");
        CHECK(returned.at(0).properties.messageId == "m-7");

        const auto confirmation = connection->publishConfirmed("", "no-queue", "x", mandatory);
        CHECK(confirmation.ack);
        CHECK(confirmation.returned);
        CHECK(reached(confirmation, 0, url));
        REQUIRE(returned.waitFor(2));

        // Without mandatory, an unroutable message is dropped silently.
        const auto dropped = connection->publishConfirmed("", "no-queue", "x");
        CHECK_FALSE(dropped.returned);
        CHECK(reached(dropped, 0, url));
    });
}

// Over amqp:// fire-and-forget publishes are buffered and written in batches, and the publish
// channel enters confirm mode at the first publish that asks for a confirm: neither may reorder
// what the application published, nor make a confirm answer for the wrong publish.
TEST_CASE("publishes reach their queue in the order made, confirmed or not") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        Inbox<ReturnedMessage> returned;
        auto connection = Connection::open(url);
        connection->onReturn([&returned](const ReturnedMessage& m) { returned.push(m); });
        connection->declareQueue("ordered");
        connection->declareQueue("bounded", refusingPast150());
        std::vector<std::string> sent;
        auto publish = [&](bool confirmed) {
            const std::string body = "m" + std::to_string(sent.size());
            if (confirmed)
                CHECK(connection->publishConfirmed("", "ordered", body).ack);
            else
                connection->publish("", "ordered", body);
            sent.push_back(body);
        };
        PublishOptions mandatory;
        mandatory.mandatory = true;
        connection->publish("", "nowhere", "back", mandatory); // returned, never confirmed
        for (int i = 0; i < 500; ++i)
            publish(false);
        // The first confirms: counted from here, not from the publishes before them.
        for (int i = 0; i < 150; ++i)
            REQUIRE(connection->publishConfirmed("", "bounded", "in").ack);
        CHECK_FALSE(connection->publishConfirmed("", "bounded", "refused").ack);
        REQUIRE(returned.waitFor(1));
        publish(true); // not "returned": that was the unconfirmed one's
        for (int i = 0; i < 1000; ++i)
            publish(i % 7 == 0);
        const auto last = connection->publishConfirmed("", "ordered", "last");
        CHECK(last.ack);
        CHECK_FALSE(last.returned);
        sent.push_back("last");

        Consumer consumer = connection->consume("ordered", ackingInto(inbox));
        REQUIRE(inbox.waitFor(sent.size()));
        std::vector<std::string> received;
        for (std::size_t i = 0; i < sent.size(); ++i)
            received.push_back(inbox.at(i).body());
        CHECK(received == sent);
    });
}

// AMQP's routing key is a short string: over amqp:// the client refuses a longer one before
// sending anything (rabbitmq-c's refusal used to take the link down), Depot's broker refuses it
// as RabbitMQ's would refuse a name that long. Either way the connection goes on.
TEST_CASE("a routing key longer than 255 bytes is refused, and the connection goes on") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("after-refusal");
        try {
            (void)connection->publishConfirmed("", std::string(256, 'k'), "too long");
            FAIL("a 256-byte routing key was accepted");
        } catch (const depot::client::Error& e) {
            if (depot::tests::isAmqp(url)) {
                CHECK(e.kind() == depot::client::ErrorKind::INVALID_ARGUMENT);
            } else {
                CHECK(e.kind() == depot::client::ErrorKind::BROKER);
                CHECK(e.code() == depot::core::ErrorCode::SYNTAX_ERROR);
            }
        }
        CHECK(connection->publishConfirmed("", "after-refusal", "fine").ack);
        std::optional<Delivery> got = connection->get("after-refusal", true);
        REQUIRE(got);
        CHECK(got->body() == "fine");
    });
}

TEST_CASE("publishConfirmed counts the queues reached, and a full queue nacks") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareExchange("broadcast", ExchangeType::FANOUT);
        for (const char* queue : {"q1", "q2", "q3"}) {
            connection->declareQueue(queue);
            connection->bindQueue(queue, "broadcast", "");
        }
        CHECK(reached(connection->publishConfirmed("broadcast", "", "hello"), 3, url));

        QueueDeclareOptions bounded;
        bounded.arguments.set("x-max-length", std::int64_t{1});
        bounded.arguments.set("x-overflow", std::string("reject-publish"));
        connection->declareQueue("bounded", bounded);
        CHECK(connection->publishConfirmed("", "bounded", "first").ack);
        const auto refused = connection->publishConfirmed("", "bounded", "second");
        CHECK_FALSE(refused.ack);
        CHECK_FALSE(refused.reason.empty());
        CHECK(readyCount(*connection, "bounded") == 1);
    });
}

TEST_CASE("exchange arguments: an alternate exchange takes what the exchange cannot route") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareExchange("unrouted", ExchangeType::FANOUT);
        connection->declareQueue("lost-and-found");
        connection->bindQueue("lost-and-found", "unrouted", "");
        ExchangeDeclareOptions options;
        options.arguments.set("alternate-exchange", std::string("unrouted"));
        connection->declareExchange("main", ExchangeType::DIRECT, options);
        connection->declareQueue("known");
        connection->bindQueue("known", "main", "known");

        CHECK(reached(connection->publishConfirmed("main", "unknown", "stray"), 1, url));
        auto stray = connection->get("lost-and-found", true);
        REQUIRE(stray);
        CHECK(stray->body() == "stray");
        // Redeclaring with the same arguments is fine; without them it is not equivalent.
        connection->declareExchange("main", ExchangeType::DIRECT, options);
        CHECK(errorOf([&] { connection->declareExchange("main", ExchangeType::DIRECT); }) ==
              "BROKER/PRECONDITION_FAILED");
    });
}

TEST_CASE("exchange-to-exchange bindings and unbinding") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareExchange("front", ExchangeType::TOPIC);
        connection->declareExchange("back", ExchangeType::FANOUT);
        connection->declareQueue("sink");
        connection->bindQueue("sink", "back", "");
        connection->bindExchange("back", "front", "a.*");
        CHECK(reached(connection->publishConfirmed("front", "a.b", "x"), 1, url));
        CHECK(reached(connection->publishConfirmed("front", "z.b", "x"), 0, url));
        connection->unbindExchange("back", "front", "a.*");
        CHECK(reached(connection->publishConfirmed("front", "a.b", "x"), 0, url));
        connection->unbindQueue("sink", "back", "");
        CHECK(reached(connection->publishConfirmed("back", "", "x"), 0, url));
        connection->deleteExchange("front");
        CHECK(errorOf([&] { (void)connection->publishConfirmed("front", "a.b", "x"); }) ==
              "BROKER/NOT_FOUND");
    });
}

TEST_CASE("an exclusive queue is its connection's alone and is deleted when it closes") {
    forEachUrl([](const std::string& url) {
        auto owner = Connection::open(url);
        auto other = Connection::open(url);
        QueueDeclareOptions exclusive;
        exclusive.exclusive = true;
        owner->declareQueue("private", exclusive);
        CHECK(errorOf([&] { (void)other->get("private"); }) == "BROKER/RESOURCE_LOCKED");

        // A server-named queue: the broker picks the name.
        const std::string generated = owner->declareQueue("", exclusive).name;
        CHECK_FALSE(generated.empty());

        owner->close();
        CHECK(errorOf([&] { (void)readyCount(*other, "private"); }) == "BROKER/NOT_FOUND");
        CHECK(errorOf([&] { (void)readyCount(*other, generated); }) == "BROKER/NOT_FOUND");
        CHECK(errorOf([&] { owner->declareQueue("again"); }) == "CONNECTION_LOST");
    });
}

TEST_CASE("unacked deliveries are requeued, redelivered, when their connection closes") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto observer = Connection::open(url);
        observer->declareQueue("jobs");
        (void)observer->publishConfirmed("", "jobs", "job A");
        (void)observer->publishConfirmed("", "jobs", "job B");
        {
            auto worker = Connection::open(url);
            Consumer consumer = worker->consume("jobs", into(inbox));
            REQUIRE(inbox.waitFor(2));
            CHECK(readyCount(*observer, "jobs") == 0);
            worker->close();
        }
        CHECK(readyCount(*observer, "jobs") == 2);
        auto a = observer->get("jobs");
        REQUIRE(a);
        CHECK(a->body() == "job A");
        CHECK(a->redelivered());

        // The same when the connection is just dropped, without close().
        auto worker = Connection::open(url);
        auto held = worker->get("jobs");
        REQUIRE(held);
        CHECK(held->body() == "job B");
        worker.reset();
        CHECK(readyCount(*observer, "jobs") == 1);
        // Acknowledging after the connection is gone does nothing.
        held->ack();
        CHECK(held->settled());
    });
}

TEST_CASE("acks settle exactly what was acked, in any order, even right before a close") {
    // Over depot:// acks in delivery order travel as one "ack multiple" (the client coalesces
    // them): the broker must still settle those and only those.
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto observer = Connection::open(url);
        observer->declareQueue("work");
        for (int i = 0; i < 8; ++i)
            (void)observer->publishConfirmed("", "work", "m" + std::to_string(i));
        {
            auto worker = Connection::open(url);
            Consumer consumer = worker->consume("work", into(inbox));
            REQUIRE(inbox.waitFor(8));
            auto held = inbox.items();
            held[0].ack();
            held[1].ack();
            held[3].ack();         // out of order: m2 is still held
            held[2].reject(false); // dropped
            held[4].ack();
            held[6].ack();   // m5 and m7 stay unacked
            worker->close(); // at once: no ack may be left behind
        }
        // m5 and m7 come back, redelivered; nothing else does.
        CHECK(readyCount(*observer, "work") == 2);
        auto first = observer->get("work", true);
        auto second = observer->get("work", true);
        REQUIRE(first);
        REQUIRE(second);
        CHECK(first->body() == "m5");
        CHECK(second->body() == "m7");
        CHECK(first->redelivered());
    });
}

TEST_CASE("destroying a Consumer cancels it: its handler is not called again") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        {
            Consumer consumer = connection->consume("q", ackingInto(inbox));
            connection->publish("", "q", "before");
            REQUIRE(inbox.waitFor(1));
        }
        CHECK(reached(connection->publishConfirmed("", "q", "after"), 1, url));
        auto after = connection->get("q");
        REQUIRE(after);
        CHECK(after->body() == "after");
        CHECK(inbox.size() == 1);

        // cancel() is the same; twice is harmless; a moved-from Consumer owns nothing.
        Consumer first = connection->consume("q", ackingInto(inbox));
        Consumer moved = std::move(first);
        first.cancel();
        connection->publish("", "q", "to moved");
        REQUIRE(inbox.waitFor(2));
        moved.cancel();
        moved.cancel();
        CHECK(reached(connection->publishConfirmed("", "q", "nobody"), 1, url));
        CHECK(inbox.size() == 2);
    });
}

TEST_CASE("deliveries queued for a cancelled consumer go back to the queue") {
    forEachUrl([](const std::string& url) {
        for (const bool inlineHandler : DISPATCHED_THEN_INLINE) {
            CAPTURE(inlineHandler);
            Inbox<std::string> seen;
            auto connection = Connection::open(url);
            connection->declareQueue("q");
            for (int i = 0; i < 20; ++i)
                (void)connection->publishConfirmed("", "q", "m" + std::to_string(i));
            std::unique_ptr<Consumer> consumer;
            std::promise<void> started;
            std::shared_future<void> ready = started.get_future().share();
            // The first handler call cancels its own consumer: the 19 deliveries already on
            // their way to it are not handled, and the broker gets them back. (From an inline
            // handler cancel() returns at once; the broker hears of it soon after.)
            consumer = std::make_unique<Consumer>(connection->consume(
                "q",
                [&seen, &consumer, ready](Delivery& d) {
                    ready.wait(); // until `consumer` is set
                    d.ack();
                    seen.push(d.body());
                    consumer->cancel();
                },
                handlerOptions(inlineHandler)));
            started.set_value();
            REQUIRE(seen.waitFor(1));
            CHECK(depot::tests::eventually([&] { return consumerCount(*connection, "q") == 0; }));
            CHECK(depot::tests::eventually([&] { return readyCount(*connection, "q") == 19; }));
            CHECK(seen.size() == 1);
            auto next = connection->get("q");
            REQUIRE(next);
            CHECK(next->body() == "m1");
            connection->deleteQueue("q");
        }
    });
}

// The consumers of one connection share its dispatcher: each still gets its own deliveries in
// order, and cancelling one returns only its queued deliveries.
TEST_CASE("consumers sharing a connection: each in order, one cancelled, the other goes on") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> seenA;
        Inbox<std::string> seenB;
        auto connection = Connection::open(url);
        connection->declareQueue("a");
        connection->declareQueue("b");
        for (int i = 0; i < 100; ++i) {
            (void)connection->publishConfirmed("", "a", "a" + std::to_string(i));
            (void)connection->publishConfirmed("", "b", "b" + std::to_string(i));
        }
        std::unique_ptr<Consumer> consumerA;
        std::promise<void> started;
        std::shared_future<void> ready = started.get_future().share();
        consumerA = std::make_unique<Consumer>(
            connection->consume("a", [&seenA, &consumerA, ready](Delivery& d) {
                ready.wait(); // until `consumerA` is set
                d.ack();
                seenA.push(d.body());
                if (seenA.size() == 10)
                    consumerA->cancel();
            }));
        Consumer consumerB = connection->consume("b", [&seenB](Delivery& d) {
            d.ack();
            seenB.push(d.body());
        });
        started.set_value();
        REQUIRE(seenB.waitFor(100));
        std::vector<std::string> expectedB;
        for (int i = 0; i < 100; ++i)
            expectedB.push_back("b" + std::to_string(i));
        CHECK(seenB.items() == expectedB);
        CHECK(depot::tests::eventually([&] { return readyCount(*connection, "a") == 90; }));
        std::vector<std::string> expectedA;
        for (int i = 0; i < 10; ++i)
            expectedA.push_back("a" + std::to_string(i));
        CHECK(seenA.items() == expectedA);
        auto next = connection->get("a");
        REQUIRE(next);
        CHECK(next->body() == "a10");
    });
}

TEST_CASE("a Consumer that outlives its connection is harmless") {
    forEachUrl([](const std::string& url) {
        Inbox<Delivery> inbox;
        Consumer consumer;
        {
            auto connection = Connection::open(url);
            connection->declareQueue("q");
            consumer = connection->consume("q", into(inbox));
            (void)connection->publishConfirmed("", "q", "x");
            REQUIRE(inbox.waitFor(1));
        }
        consumer.cancel();
        Delivery late = inbox.at(0);
        late.ack(); // the connection is gone: nothing to do
        CHECK(late.settled());
    });
}

TEST_CASE("a handler may make blocking calls on its own connection") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> results;
        auto connection = Connection::open(url);
        connection->declareQueue("requests");
        Connection& c = *connection;
        Consumer consumer = c.consume("requests", [&c, &results](Delivery& d) {
            c.declareQueue("audit");
            const auto confirmation = c.publishConfirmed("", "audit", "saw " + d.body());
            auto copy = c.get("audit", true);
            d.ack();
            results.push((confirmation.ack ? "1:" : "0:") + (copy ? copy->body() : "-"));
        });
        connection->publish("", "requests", "r1");
        REQUIRE(results.waitFor(1));
        CHECK(results.at(0) == "1:saw r1");
    });
}

TEST_CASE("handlers run one at a time, in order, off the caller's thread") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> order;
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        int running = 0;
        bool overlapped = false;
        const auto caller = std::this_thread::get_id();
        bool onCaller = false;
        Consumer consumer = connection->consume(
            "q", [&order, &running, &overlapped, &onCaller, caller](Delivery& d) {
                overlapped = overlapped || ++running > 1;
                onCaller = onCaller || std::this_thread::get_id() == caller;
                d.ack();
                --running;
                order.push(d.body());
            });
        std::vector<std::string> expected;
        for (int i = 0; i < 50; ++i) {
            expected.push_back(std::to_string(i));
            connection->publish("", "q", expected.back());
        }
        REQUIRE(order.waitFor(50));
        CHECK(order.items() == expected);
        CHECK_FALSE(overlapped);
        CHECK_FALSE(onCaller);
    });
}

TEST_CASE("a handler may drop the last reference to its own connection") {
    forEachUrl([](const std::string& url) {
        for (const bool inlineHandler : DISPATCHED_THEN_INLINE) {
            CAPTURE(inlineHandler);
            Inbox<std::string> done;
            auto observer = Connection::open(url);
            observer->declareQueue("q");
            (void)observer->publishConfirmed("", "q", "last words");
            std::shared_ptr<Connection> worker = Connection::open(url);
            std::promise<void> started;
            std::shared_future<void> ready = started.get_future().share();
            Connection::Handler handler = [&worker, &done, ready](Delivery& d) {
                ready.wait(); // until consume() has returned: the test no longer touches it
                d.ack();
                std::shared_ptr<Connection> last = std::move(worker);
                last.reset(); // the connection closes (over depot://, on its dispatcher thread)
                done.push(d.body());
            };
            Consumer consumer =
                worker->consume("q", std::move(handler), handlerOptions(inlineHandler));
            started.set_value();
            REQUIRE(done.waitFor(1));
            CHECK(done.at(0) == "last words");
            // Gone, and its ack reached the broker first (else the close would requeue it).
            CHECK(depot::tests::eventually([&] { return consumerCount(*observer, "q") == 0; }));
            CHECK(readyCount(*observer, "q") == 0);
            CHECK(
                depot::tests::eventually([&] { return observer->get("q", true) == std::nullopt; }));
            consumer.cancel(); // its connection is gone: nothing to do
        }
    });
}

TEST_CASE("a handler that throws is reported to onError: the consumer goes on") {
    forEachUrl([](const std::string& url) {
        for (const bool inlineHandler : DISPATCHED_THEN_INLINE) {
            CAPTURE(inlineHandler);
            Inbox<std::string> errors;
            Inbox<std::string> handled;
            auto connection = Connection::open(url);
            connection->onError([&errors](const Error& e) { errors.push(e.what()); });
            connection->declareQueue("q");
            Consumer consumer = connection->consume(
                "q",
                [&handled](Delivery& d) {
                    d.ack();
                    if (d.body() == "bad")
                        throw std::runtime_error("cannot parse");
                    handled.push(d.body());
                },
                handlerOptions(inlineHandler));
            connection->publish("", "q", "bad");
            connection->publish("", "q", "good");
            REQUIRE(errors.waitFor(1));
            REQUIRE(handled.waitFor(1));
            CHECK(errors.at(0).find("cannot parse") != std::string::npos);
            CHECK(handled.at(0) == "good");
        }
    });
}

TEST_CASE("close: CLOSED reaches onEvent, later calls throw CONNECTION_LOST") {
    forEachUrl([](const std::string& url) {
        Inbox<ConnectionEvent> events;
        auto connection = Connection::open(url);
        connection->onEvent([&events](ConnectionEvent e) { events.push(e); });
        connection->declareQueue("q");
        connection->close();
        connection->close(); // twice is harmless
        REQUIRE(events.waitFor(1));
        CHECK(events.at(0) == ConnectionEvent::CLOSED);
        CHECK(errorOf([&] { connection->publish("", "q", "x"); }) == "CONNECTION_LOST");
        CHECK(errorOf([&] { (void)connection->get("q"); }) == "CONNECTION_LOST");
        CHECK(errorOf([&] { (void)connection->consume("q", [](Delivery&) {}); }) ==
              "CONNECTION_LOST");
    });
}

TEST_CASE("ConfirmWindow: a bounded window of confirms, tallied, in publish order") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("windowed");
        connection->declareQueue("windowed-bounded", refusingPast150());

        depot::client::ConfirmWindow window(*connection, 16);
        for (int i = 0; i < 200; ++i) {
            window.publish("", "windowed", std::to_string(i));
            CHECK(window.unsettled() <= 16);
        }
        for (int i = 0; i < 200; ++i)
            window.publish("", "windowed-bounded", std::to_string(i));
        const depot::client::ConfirmTally tally = window.wait();
        CHECK(window.unsettled() == 0);
        CHECK(tally.acked == 350); // the bounded queue takes 150 and refuses the rest
        CHECK(tally.nacked == 50);
        CHECK_FALSE(tally.firstNackReason.empty());
        CHECK(tally.failed == 0);
        CHECK_FALSE(tally.allAcked());
        CHECK(readyCount(*connection, "windowed") == 200);
        auto first = connection->get("windowed", true);
        REQUIRE(first);
        CHECK(first->body() == "0");

        // A refusal is counted as failed, with the broker's error; the tally starts again.
        window.publish("no-such-exchange", "k", "x");
        const depot::client::ConfirmTally refused = window.wait();
        CHECK(refused.failed == 1);
        CHECK(refused.acked == 0);
        REQUIRE(refused.firstError);
        CHECK(errorOf([&] { throw *refused.firstError; }) == "BROKER/NOT_FOUND");
        window.publish("", "windowed", "after");
        CHECK(window.wait().acked == 1);
    });
}

TEST_CASE("ConfirmWindow: a publish on a closed connection throws and leaves nothing unsettled") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        depot::client::ConfirmWindow window(*connection, 4);
        connection->close();
        CHECK(errorOf([&] { window.publish("", "q", "x"); }) == "CONNECTION_LOST");
        CHECK(window.unsettled() == 0);
        const depot::client::ConfirmTally tally = window.wait();
        CHECK(tally.acked + tally.failed == 0);
    });
}

TEST_CASE("Connection::open rejects bad URLs before connecting") {
    CHECK(errorOf([] { (void)Connection::open("amqps://localhost"); }) == "INVALID_ARGUMENT");
    CHECK(errorOf([] { (void)Connection::open("nonsense"); }) == "INVALID_ARGUMENT");
}

TEST_CASE("publishConfirmedAsync: many confirms in flight, answered in order") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("bulk");
        connection->declareQueue("bounded", refusingPast150());
        std::vector<std::future<depot::client::Confirmation>> pending;
        for (int i = 0; i < 200; ++i)
            pending.push_back(connection->publishConfirmedAsync("", "bulk", std::to_string(i)));
        for (int i = 0; i < 200; ++i)
            pending.push_back(connection->publishConfirmedAsync("", "bounded", std::to_string(i)));
        std::vector<bool> acks;
        for (auto& confirmation : pending)
            acks.push_back(confirmation.get().ack);
        CHECK(std::count(acks.begin(), acks.begin() + 200, true) == 200);
        // The queue takes 150; the rest are refused, each with its own nack.
        CHECK(std::count(acks.begin() + 200, acks.end(), true) == 150);
        CHECK(std::all_of(acks.begin() + 200, acks.begin() + 350, [](bool a) { return a; }));
        CHECK(readyCount(*connection, "bulk") == 200);
        auto first = connection->get("bulk", true);
        REQUIRE(first);
        CHECK(first->body() == "0");
        // A refusal is the future's exception.
        auto refused = connection->publishConfirmedAsync("no-such-exchange", "k", "x");
        CHECK(errorOf([&] { (void)refused.get(); }) == "BROKER/NOT_FOUND");
        CHECK(connection->publishConfirmedAsync("", "bulk", "after").get().ack);
    });
}
