// The typed bus (client/bus.h) over both transports: events by type and key, commands to a
// queue, several types on one queue, typed RPC, derived message ids, the inbox that drops
// duplicates, retries, the error queue, and contracts read across versions.

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/bus.h"

#include "protocol/delivery.capnp.h"
#include "tests/contracts/delivery_v2.capnp.h"

#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using depot::client::Bus;
using depot::client::Connection;
using depot::client::Outgoing;
using depot::client::Received;
using depot::client::SubscribeOptions;
using depot::client::Subscription;
using depot::tests::eventually;
using depot::tests::forEachUrl;
using depot::tests::readyCount;
namespace contracts = depot::contracts;

namespace {

struct Seen {
    std::string type;
    std::string id;
    std::string messageId;
    std::string correlationId;
    std::string causationId;
    std::string routingKey;
    bool operator==(const Seen&) const = default;
};

Outgoing<contracts::OrderPlaced> orderPlaced(const std::string& orderId,
                                             const std::string& region = "north") {
    Outgoing<contracts::OrderPlaced> event;
    event->setOrderId(orderId);
    event->setTrackingId("T-" + orderId);
    event->setCustomer("ada");
    event->setFromRegion(region);
    event->setToRegion("south");
    event->setWeightGrams(1200);
    event->setPriceCents(990);
    return event;
}

template <typename T> Seen seen(const Received<T>& message, std::string id) {
    return Seen{depot::client::contractName<T>(),       std::move(id),
                message.meta().getMessageId().cStr(),   message.meta().getCorrelationId().cStr(),
                message.meta().getCausationId().cStr(), message.delivery().routingKey()};
}

SubscribeOptions quickRetries(std::uint32_t attempts) {
    SubscribeOptions options;
    options.retry.attempts = attempts;
    options.retry.backoff = 1ms;
    return options;
}

} // namespace

TEST_CASE("bus: an event goes to the subscribers whose keys match, with its meta filled in") {
    forEachUrl([](const std::string& url) {
        depot::tests::Inbox<Seen> north, south;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription northern = bus.subscribe("north-orders");
        northern.on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                CHECK(m->getCustomer() == "ada");
                CHECK(m->getPriceCents() == 990);
                CHECK(m.meta().getTimestampMicros() > 0);
                CHECK(m.delivery().properties().type == "OrderPlaced");
                CHECK(m.delivery().exchange() == "OrderPlaced");
                north.push(seen(m, m->getOrderId().cStr()));
            },
            {"order.north.*"});
        northern.start();
        Subscription southern = bus.subscribe("south-orders");
        southern.on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                south.push(seen(m, m->getOrderId().cStr()));
            },
            {"order.south.*"});
        southern.start();

        auto first = orderPlaced("o-1");
        bus.publish(first, "order.north.placed");
        auto second = orderPlaced("o-2", "south");
        bus.publish(second, "order.south.placed");

        REQUIRE(north.waitFor(1));
        REQUIRE(south.waitFor(1));
        const Seen got = north.at(0);
        CHECK(got.id == "o-1");
        CHECK(got.routingKey == "order.north.placed");
        CHECK(got.messageId.size() == 32);
        CHECK(got.correlationId == got.messageId); // a first message starts its conversation
        CHECK(got.causationId.empty());
        CHECK(south.at(0).id == "o-2");
        CHECK(bus.stats().published == 2);
        CHECK(eventually([&] { return bus.stats().handled == 2; }));
        CHECK(north.size() == 1);
    });
}

TEST_CASE("bus: one queue carries commands and events of several types, in order") {
    forEachUrl([](const std::string& url) {
        depot::tests::Inbox<std::string> order;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription inbox = bus.subscribe("mixed");
        inbox
            .on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>& m) {
                order.push("PlaceOrder " + std::string(m->getOrderId().cStr()));
            })
            .on<contracts::OrderPlaced>(
                [&](const Received<contracts::OrderPlaced>& m) {
                    order.push("OrderPlaced " + std::string(m->getOrderId().cStr()));
                },
                {"#"});
        inbox.start();

        for (int i = 0; i < 3; ++i) {
            Outgoing<contracts::PlaceOrder> command;
            command->setOrderId("c" + std::to_string(i));
            bus.send(command, "mixed");
            auto event = orderPlaced("e" + std::to_string(i));
            bus.publish(event, "order.north.placed");
        }
        REQUIRE(order.waitFor(6));
        CHECK(order.items() == std::vector<std::string>{"PlaceOrder c0", "OrderPlaced e0",
                                                        "PlaceOrder c1", "OrderPlaced e1",
                                                        "PlaceOrder c2", "OrderPlaced e2"});
    });
}

TEST_CASE("bus: request and serve carry typed contracts, the reply continues the conversation") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        Bus pricing(server, "pricing");
        Bus orders(client, "orders");
        depot::client::Consumer responder =
            pricing.serve<contracts::QuoteRequest, contracts::Quote>(
                "quotes", [](const Received<contracts::QuoteRequest>& request,
                             Outgoing<contracts::Quote>& quote) {
                    quote->setAccepted(request->getWeightGrams() <= 30'000);
                    quote->setPriceCents(request->getWeightGrams() / 10);
                    if (!quote->getAccepted())
                        quote->setReason("too heavy");
                });

        Outgoing<contracts::QuoteRequest> request;
        request->setWeightGrams(2'500);
        request->getMeta().setCorrelationId("order-7");
        auto quote = orders.request<contracts::Quote>(request, "quotes", 2s);
        CHECK(quote->getAccepted());
        CHECK(quote->getPriceCents() == 250);
        CHECK(quote.meta().getCorrelationId() == "order-7");
        CHECK(quote.meta().getCausationId() == request->getMeta().getMessageId());

        Outgoing<contracts::QuoteRequest> heavy;
        heavy->setWeightGrams(40'000);
        auto refused = orders.request<contracts::Quote>(heavy, "quotes", 2s);
        CHECK_FALSE(refused->getAccepted());
        CHECK(refused->getReason() == "too heavy");
    });
}

TEST_CASE("bus: a message handled again publishes the same ids, and an inbox drops the copy") {
    forEachUrl([](const std::string& url) {
        depot::tests::Inbox<Seen> downstream;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        // The worker turns each PlaceOrder into an OrderPlaced; it has no inbox, so it handles
        // the duplicate command too. The subscriber after it has one.
        Subscription worker = bus.subscribe("work");
        worker.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>& m) {
            auto event = orderPlaced(m->getOrderId().cStr());
            bus.publish(event, "order.north.placed");
        });
        worker.start();
        SubscribeOptions deduplicating;
        deduplicating.inbox = std::make_shared<depot::client::Inbox>();
        Subscription audit = bus.subscribe("audit", deduplicating);
        audit.on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                downstream.push(seen(m, m->getOrderId().cStr()));
            },
            {"#"});
        audit.start();

        for (int copy = 0; copy < 2; ++copy) {
            Outgoing<contracts::PlaceOrder> command;
            command->setOrderId("o-9");
            command->getMeta().setMessageId("place-o-9"); // the same command, sent twice
            bus.send(command, "work");
        }
        Outgoing<contracts::PlaceOrder> other;
        other->setOrderId("o-10");
        bus.send(other, "work");

        REQUIRE(downstream.waitFor(2));
        CHECK(eventually([&] { return bus.stats().duplicates == 1; }));
        const Seen first = downstream.at(0);
        CHECK(first.id == "o-9");
        CHECK(first.causationId == "place-o-9");
        CHECK(first.correlationId == "place-o-9");
        CHECK(downstream.at(1).id == "o-10");
        CHECK(downstream.size() == 2);
        // Recorded after the handler returns: not necessarily yet when it has pushed.
        CHECK(eventually([&] { return deduplicating.inbox->size() == 2; }));
    });
}

TEST_CASE("bus: a failing handler is retried, then succeeds, nothing goes to the error queue") {
    forEachUrl([](const std::string& url) {
        std::atomic<int> calls{0};
        depot::tests::Inbox<int> done;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription flaky = bus.subscribe("flaky", quickRetries(3));
        flaky.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>&) {
            if (++calls < 3)
                throw std::runtime_error("database busy");
            done.push(calls.load());
        });
        flaky.start();
        Outgoing<contracts::PlaceOrder> command;
        bus.send(command, "flaky");
        REQUIRE(done.waitFor(1));
        CHECK(done.at(0) == 3);
        CHECK(eventually([&] { return bus.stats().handled == 1; }));
        CHECK(bus.stats().retries == 2);
        CHECK(readyCount(*connection, "flaky.error") == 0);
    });
}

TEST_CASE("bus: a message that keeps failing goes to <queue>.error with the reason") {
    forEachUrl([](const std::string& url) {
        std::atomic<int> calls{0};
        auto connection = Connection::open(url);
        Bus bus(connection, "billing");
        Subscription broken = bus.subscribe("broken", quickRetries(3));
        broken.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>&) {
            ++calls;
            throw std::runtime_error("card declined");
        });
        broken.start();
        Outgoing<contracts::PlaceOrder> command;
        command->setOrderId("o-13");
        bus.send(command, "broken");

        REQUIRE(eventually([&] { return readyCount(*connection, "broken.error") == 1; }));
        CHECK(calls == 3);
        CHECK(eventually([&] { return bus.stats().deadLettered == 1; }));
        broken.stop();
        connection->close(); // an unacked message would be requeued now
        connection = Connection::open(url);
        CHECK(readyCount(*connection, "broken") == 0); // acked, not looping
        auto failed = connection->get("broken.error");
        REQUIRE(failed);
        const auto& headers = failed->properties().headers;
        CHECK(headers.getString("x-error-reason") == "card declined");
        CHECK(headers.getInt("x-error-attempts") == 3);
        CHECK(headers.getString("x-error-service") == "billing");
        CHECK(headers.getString("x-original-routing-key") == "broken");
        CHECK(failed->properties().type == "PlaceOrder");
        depot::client::DecodedBody body(failed->body());
        CHECK(body.root<contracts::PlaceOrder>().getOrderId() == "o-13"); // the message, intact
    });
}

TEST_CASE("bus: an unreadable body or an unknown type goes straight to the error queue") {
    forEachUrl([](const std::string& url) {
        std::atomic<int> calls{0};
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription strict = bus.subscribe("strict", quickRetries(5));
        strict.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>&) { ++calls; });
        strict.start();

        depot::client::PublishOptions garbage;
        garbage.properties.type = "PlaceOrder";
        connection->publish("", "strict", "not capnp", garbage);
        depot::client::PublishOptions stranger;
        stranger.properties.type = "CancelOrder";
        connection->publish("", "strict", std::string(8, '\0'), stranger);

        REQUIRE(eventually([&] { return readyCount(*connection, "strict.error") == 2; }));
        CHECK(calls == 0);
        CHECK(bus.stats().retries == 0);
        strict.stop();
        auto first = connection->get("strict.error");
        auto second = connection->get("strict.error");
        REQUIRE(first);
        REQUIRE(second);
        CHECK(std::string(*first->properties().headers.getString("x-error-reason"))
                  .find("not a Cap'n Proto message") != std::string::npos);
        CHECK(second->properties().headers.getString("x-error-reason") ==
              "no handler for message type 'CancelOrder' on 'strict'");
    });
}

TEST_CASE("bus: contracts are read across versions: new fields are ignored or defaulted") {
    forEachUrl([](const std::string& url) {
        depot::tests::Inbox<std::string> oldReader, newReader;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription before = bus.subscribe("v1-reader");
        before.on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                oldReader.push(std::string(m->getOrderId().cStr()) + " " +
                               std::to_string(m->getPriceCents()));
            },
            {"#"});
        before.start();
        Subscription after = bus.subscribe("v2-reader");
        after.on<contracts::v2::OrderPlaced>(
            [&](const Received<contracts::v2::OrderPlaced>& m) {
                newReader.push(std::string(m->getOrderId().cStr()) + " " +
                               std::to_string(m->getInsuredCents()) + " '" +
                               m->getGiftNote().cStr() + "'");
            },
            {"#"});
        after.start();

        Outgoing<contracts::v2::OrderPlaced> upgraded; // a v2 publisher
        upgraded->setOrderId("new");
        upgraded->setPriceCents(500);
        upgraded->setInsuredCents(10'000);
        upgraded->setGiftNote("happy birthday");
        bus.publish(upgraded, "order.north.placed");
        auto old = orderPlaced("old"); // a v1 publisher
        bus.publish(old, "order.north.placed");

        REQUIRE(oldReader.waitFor(2));
        REQUIRE(newReader.waitFor(2));
        CHECK(oldReader.items() == std::vector<std::string>{"new 500", "old 990"});
        CHECK(newReader.items() ==
              std::vector<std::string>{"new 10000 'happy birthday'", "old 0 ''"});
    });
}

TEST_CASE("bus: a message sent back from the error queue is handled again, not dropped") {
    forEachUrl([](const std::string& url) {
        std::atomic<bool> fixed{false};
        depot::tests::Inbox<std::string> handled;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        SubscribeOptions options = quickRetries(2);
        options.inbox = std::make_shared<depot::client::Inbox>();
        Subscription work = bus.subscribe("fixable", options);
        work.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>& m) {
            if (!fixed)
                throw std::runtime_error("pricing table missing");
            handled.push(m->getOrderId().cStr());
        });
        work.start();
        Outgoing<contracts::PlaceOrder> command;
        command->setOrderId("o-21");
        bus.send(command, "fixable");
        REQUIRE(eventually([&] { return readyCount(*connection, "fixable.error") == 1; }));

        fixed = true; // the operator fixes the cause and moves the message back
        auto failed = connection->get("fixable.error");
        REQUIRE(failed);
        depot::client::PublishOptions again;
        again.properties = failed->properties();
        connection->publish("", "fixable", failed->body(), again);
        REQUIRE(handled.waitFor(1));
        CHECK(handled.at(0) == "o-21");
        CHECK(bus.stats().duplicates == 0);
    });
}

TEST_CASE("bus: what a handler publishes for a message without an id gets fresh ids") {
    forEachUrl([](const std::string& url) {
        depot::tests::Inbox<std::string> ids;
        auto connection = Connection::open(url);
        Bus bus(connection, "test");
        Subscription relay = bus.subscribe("relay");
        relay.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>& m) {
            auto event = orderPlaced(m->getOrderId().cStr());
            event->getMeta().setMessageId(""); // derived, if it could be
            bus.publish(event, "order.north.placed");
        });
        relay.start();
        Subscription watch = bus.subscribe("relayed");
        watch.on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                ids.push(m.meta().getMessageId().cStr());
            },
            {"#"});
        watch.start();

        for (int i = 0; i < 2; ++i) { // as a tool that sets no message id would send them
            Outgoing<contracts::PlaceOrder> command;
            command->setOrderId("o-" + std::to_string(i));
            capnp::MessageBuilder& message = command.message();
            const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
            depot::client::PublishOptions bare;
            bare.properties.type = "PlaceOrder";
            connection->publish("", "relay",
                                std::string(words.asChars().begin(), words.asChars().size()), bare);
        }
        REQUIRE(ids.waitFor(2));
        CHECK(ids.at(0) != ids.at(1));
        CHECK(ids.at(0).size() == 32);
    });
}

TEST_CASE("bus: an exclusive subscription has no error queue: what fails is rejected") {
    forEachUrl([](const std::string& url) {
        std::atomic<int> calls{0};
        std::atomic<int> reported{0};
        auto connection = Connection::open(url);
        connection->onError([&](const depot::client::Error&) { ++reported; });
        Bus bus(connection, "test");
        SubscribeOptions options = quickRetries(2);
        options.exclusive = true;
        Subscription mine = bus.subscribe("", options);
        mine.on<contracts::PlaceOrder>([&](const Received<contracts::PlaceOrder>&) {
            ++calls;
            throw std::runtime_error("no");
        });
        const std::string queue = mine.start();
        CHECK(mine.errorQueue().empty());
        Outgoing<contracts::PlaceOrder> command;
        bus.send(command, queue);
        REQUIRE(eventually([&] { return reported == 1; }));
        CHECK(calls == 2);
        CHECK(readyCount(*connection, queue) == 0);
    });
}
