// depot:// across a broker restart: the connection comes back by itself, declares again what it
// had declared, resumes its consumers, and tells the application.

#include "client/connection.h"
#include "tests/client/client_helpers.h"
#include "tests/net/test_server.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <vector>

using namespace depot;
using namespace depot::client;

TEST_CASE("after depotd restarts, topology is declared again and consumers resume") {
    std::optional<tests::TestServer> server;
    server.emplace();
    const unsigned short port = server->port();
    const std::string url = server->url();

    // Before the connection: its last event (CLOSED) arrives while it is destroyed.
    std::mutex mutex;
    std::vector<ConnectionEvent> events;
    ConnectionOptions options;
    options.maxBackoff = std::chrono::milliseconds(200);
    auto connection = Connection::open(url, options);
    connection->onEvent([&](ConnectionEvent event) {
        std::lock_guard lock(mutex);
        events.push_back(event);
    });
    connection->declareExchange("events", ExchangeType::TOPIC);
    connection->declareQueue("audit");
    connection->bindQueue("audit", "events", "parcel.#");
    std::atomic<int> received{0};
    auto consumer = connection->consume("audit", [&](Delivery& d) {
        ++received;
        d.ack();
    });

    server.reset(); // the broker goes away (and with it every queue and binding)
    auto saw = [&](ConnectionEvent e) {
        std::lock_guard lock(mutex);
        return std::find(events.begin(), events.end(), e) != events.end();
    };
    REQUIRE(tests::eventually([&] { return saw(ConnectionEvent::DISCONNECTED); }));

    server.emplace(net::ServerConfig{}, port); // a fresh broker on the same port
    REQUIRE(tests::eventually([&] { return saw(ConnectionEvent::RECONNECTED); },
                              std::chrono::seconds(10)));

    // The queue, the binding and the consumer are back: a message from another client arrives.
    auto publisher = Connection::open(url);
    const Confirmation confirmation = publisher->publishConfirmed("events", "parcel.eu.1", "hi");
    CHECK(confirmation.queues == 1);
    CHECK(tests::eventually([&] { return received.load() == 1; }));
    // And the reconnected connection works for new calls.
    CHECK(connection->declareQueue("after").name == "after");
}
