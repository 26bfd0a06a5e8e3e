// depot:// across a broker restart, and amqp:// across a broken link: the connection comes back
// by itself, declares again what it had declared, resumes its consumers, and tells the
// application.

#include "client/connection.h"
#include "tests/client/client_helpers.h"
#include "tests/net/test_server.h"
#include "tests/support/rabbitmq.h"
#include "tests/support/tcp_proxy.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

using namespace depot;
using namespace depot::client;

namespace {

// What onEvent reported. Declare it before the connection: the connection's last event
// (CLOSED) arrives while it is destroyed.
class EventLog {
public:
    std::function<void(ConnectionEvent)> recorder() {
        return [this](ConnectionEvent event) {
            std::lock_guard lock(mutex_);
            events_.push_back(event);
        };
    }
    long count(ConnectionEvent e) const {
        std::lock_guard lock(mutex_);
        return std::count(events_.begin(), events_.end(), e);
    }

private:
    mutable std::mutex mutex_;
    std::vector<ConnectionEvent> events_;
};

// Reconnects quickly, for a test.
ConnectionOptions quickReconnect() {
    ConnectionOptions options;
    options.maxBackoff = std::chrono::milliseconds(200);
    return options;
}

} // namespace

TEST_CASE("after depotd restarts, topology is declared again and consumers resume") {
    for (const bool inlineHandler : {false, true}) { // dispatched, and on the network thread
        CAPTURE(inlineHandler);
        std::optional<tests::TestServer> server;
        server.emplace();
        const unsigned short port = server->port();
        const std::string url = server->url();

        EventLog events;
        auto connection = Connection::open(url, quickReconnect());
        connection->onEvent(events.recorder());
        connection->declareExchange("events", ExchangeType::TOPIC);
        connection->declareQueue("audit");
        connection->bindQueue("audit", "events", "parcel.#");
        std::atomic<int> received{0};
        client::ConsumeOptions options;
        options.inlineHandler = inlineHandler;
        auto consumer = connection->consume(
            "audit",
            [&](Delivery& d) {
                ++received;
                d.ack();
            },
            options);

        server.reset(); // the broker goes away (and with it every queue and binding)
        REQUIRE(tests::eventually([&] { return events.count(ConnectionEvent::DISCONNECTED) > 0; }));

        server.emplace(net::ServerConfig{}, port); // a fresh broker on the same port
        REQUIRE(tests::eventually([&] { return events.count(ConnectionEvent::RECONNECTED) > 0; },
                                  std::chrono::seconds(10)));

        // The queue, the binding and the consumer are back: a message from another client arrives.
        auto publisher = Connection::open(url);
        const Confirmation confirmation =
            publisher->publishConfirmed("events", "parcel.eu.1", "hi");
        CHECK(confirmation.queues == 1);
        CHECK(tests::eventually([&] { return received.load() == 1; }));
        // And the reconnected connection works for new calls.
        CHECK(connection->declareQueue("after").name == "after");
    }
}

// amqp:// when the link to RabbitMQ breaks (a proxy cuts it): RabbitMQ deletes the connection's
// exclusive queue, so only a transport that declares it again, binds it again and restarts its
// consumer gets the next message.
TEST_CASE(
    "amqp: after the link breaks, exclusive topology is declared again and consumers resume") {
    const auto rabbit = tests::freshAmqpUrl();
    if (!rabbit) {
        MESSAGE("no test RabbitMQ node (rabbitmq-server not installed when cmake ran)");
        return;
    }
    const BrokerUrl direct = BrokerUrl::parse(*rabbit);
    tests::TcpProxy proxy(direct.port);
    const std::string url =
        "amqp://guest:guest@127.0.0.1:" + std::to_string(proxy.port()) + "/" + direct.vhost;

    EventLog events;
    auto connection = Connection::open(url, quickReconnect());
    connection->onEvent(events.recorder());
    connection->declareExchange("events", ExchangeType::TOPIC);
    QueueDeclareOptions exclusive;
    exclusive.exclusive = true;
    const std::string queue = connection->declareQueue("", exclusive).name;
    connection->bindQueue(queue, "events", "parcel.#");
    std::atomic<int> received{0};
    auto consumer = connection->consume(queue, [&](Delivery& d) {
        ++received;
        d.ack();
    });
    // Its publish channel in confirm mode before the break: a new link starts without it.
    CHECK(connection->publishConfirmed("events", "parcel.before", "0").ack);
    REQUIRE(tests::eventually([&] { return received.load() == 1; }));

    proxy.cut();
    REQUIRE(tests::eventually([&] { return events.count(ConnectionEvent::DISCONNECTED) == 1; }));
    REQUIRE(tests::eventually([&] { return events.count(ConnectionEvent::RECONNECTED) == 1; },
                              std::chrono::seconds(10)));

    auto publisher = Connection::open(*rabbit);
    PublishOptions mandatory;
    mandatory.mandatory = true;
    const Confirmation confirmation =
        publisher->publishConfirmed("events", "parcel.eu.1", "hi", mandatory);
    CHECK(confirmation.ack);
    CHECK_FALSE(confirmation.returned); // the new exclusive queue is bound
    CHECK(tests::eventually([&] { return received.load() == 2; }));
    CHECK(connection->declareQueue("after").name == "after");

    // The reconnected connection publishes again, unconfirmed and confirmed, from its own
    // channel's fresh count.
    connection->publish("events", "parcel.after.1", "3");
    const Confirmation again = connection->publishConfirmed("events", "parcel.after.2", "4");
    CHECK(again.ack);
    CHECK(tests::eventually([&] { return received.load() == 4; }));
}
