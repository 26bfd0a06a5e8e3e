// Inline handlers (ConsumeOptions::inlineHandler): over depot:// they run on the connection's
// network thread, with no hand-off to the dispatcher; elsewhere on the dispatcher thread. Over
// every transport the same rules: deliveries in order, one at a time, acks that settle them, and
// every call that waits for the broker refused with INVALID_ARGUMENT. (Cancelling its own
// consumer, throwing, and dropping the last reference to its connection are tested for both
// kinds of handler in transport_conformance_test.cpp.)

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

using depot::client::Connection;
using depot::client::ConsumeOptions;
using depot::client::Consumer;
using depot::client::Delivery;
using depot::tests::errorOf;
using depot::tests::eventually;
using depot::tests::forEachUrl;
using depot::tests::Inbox;
using depot::tests::readyCount;

namespace {

ConsumeOptions inlineOptions(std::uint32_t prefetch = 0) {
    ConsumeOptions options;
    options.inlineHandler = true;
    options.prefetch = prefetch;
    return options;
}

} // namespace

TEST_CASE("an inline handler gets each delivery in order, one at a time, and its acks settle "
          "them") {
    forEachUrl([](const std::string& url) {
        auto observer = Connection::open(url);
        for (const std::uint32_t prefetch : {1U, 3U, 100U}) {
            CAPTURE(prefetch);
            const std::string queue = "inline-" + std::to_string(prefetch);
            observer->declareQueue(queue);
            std::vector<std::string> expected;
            for (int i = 0; i < 300; ++i) {
                expected.push_back(std::to_string(i));
                observer->publish("", queue, expected.back());
            }
            Inbox<std::string> order;
            int running = 0;
            bool overlapped = false;
            bool onCaller = false;
            const auto caller = std::this_thread::get_id();
            {
                auto connection = Connection::open(url);
                Consumer consumer = connection->consume(
                    queue,
                    [&](Delivery& d) {
                        overlapped = overlapped || ++running > 1;
                        onCaller = onCaller || std::this_thread::get_id() == caller;
                        d.ack();
                        --running;
                        order.push(d.body());
                    },
                    inlineOptions(prefetch));
                REQUIRE(order.waitFor(300));
                connection->close(); // would requeue whatever the broker saw no ack for
            }
            CHECK(order.items() == expected);
            CHECK_FALSE(overlapped);
            CHECK_FALSE(onCaller);
            CHECK(readyCount(*observer, queue) == 0);
        }
    });
}

TEST_CASE("an inline handler cannot wait for the broker, but may publish, confirm "
          "asynchronously, ack and reject") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> refused;
        std::promise<std::future<depot::client::Confirmation>> confirm;
        auto connection = Connection::open(url);
        connection->declareQueue("work");
        connection->declareQueue("audit");
        connection->declareQueue("confirmed");
        Connection& c = *connection;
        Consumer consumer = c.consume(
            "work",
            [&](Delivery& d) {
                if (d.body() == "reject me") {
                    d.reject(false);
                    return;
                }
                refused.push("declare " + errorOf([&] { c.declareQueue("other"); }));
                refused.push("publishConfirmed " +
                             errorOf([&] { (void)c.publishConfirmed("", "audit", "x"); }));
                refused.push("get " + errorOf([&] { (void)c.get("audit"); }));
                refused.push("purge " + errorOf([&] { (void)c.purge("audit"); }));
                refused.push("request " + errorOf([&] {
                                 (void)c.request("", "audit", "x", std::chrono::seconds(1));
                             }));
                refused.push("consume " +
                             errorOf([&] { (void)c.consume("audit", [](Delivery&) {}); }));
                refused.push("close " + errorOf([&] { c.close(); }));
                c.publish("", "audit", "saw " + d.body());
                confirm.set_value(c.publishConfirmedAsync("", "confirmed", "safe"));
                d.ack();
            },
            inlineOptions());
        connection->publish("", "work", "reject me");
        connection->publish("", "work", "job");
        REQUIRE(refused.waitFor(7));
        CHECK(refused.items() ==
              std::vector<std::string>{"declare INVALID_ARGUMENT",
                                       "publishConfirmed INVALID_ARGUMENT", "get INVALID_ARGUMENT",
                                       "purge INVALID_ARGUMENT", "request INVALID_ARGUMENT",
                                       "consume INVALID_ARGUMENT", "close INVALID_ARGUMENT"});
        std::future<depot::client::Confirmation> confirmed = confirm.get_future().get();
        REQUIRE(confirmed.wait_for(depot::tests::WAIT_LIMIT) == std::future_status::ready);
        CHECK(confirmed.get().ack);
        // The connection is still open, and what the handler did reached the broker.
        auto audit = connection->get("audit", true);
        REQUIRE(audit);
        CHECK(audit->body() == "saw job");
        CHECK(eventually([&] { return readyCount(*connection, "work") == 0; }));
        CHECK(readyCount(*connection, "confirmed") == 1);
    });
}

TEST_CASE("serve with an inline responder answers every request") {
    forEachUrl([](const std::string& url) {
        auto server = Connection::open(url);
        auto client = Connection::open(url);
        server->declareQueue("echo");
        ConsumeOptions options = inlineOptions(16);
        options.noAck = true; // ignored: a request is acked once answered
        Consumer responder = server->serve(
            "echo", [](const Delivery& request) { return "re: " + request.body(); }, options);
        for (int i = 0; i < 50; ++i)
            CHECK(client->request("", "echo", std::to_string(i), std::chrono::seconds(5)).body ==
                  "re: " + std::to_string(i));
        CHECK(readyCount(*server, "echo") == 0);
    });
}

// What makes it inline over depot://: its deliveries do not wait for the dispatcher thread,
// here busy with another consumer's handler until the inline one has run.
TEST_CASE("over depot:// an inline handler runs while the dispatcher thread is busy") {
    depot::tests::TestServer server;
    Inbox<std::string> inlineSeen;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    auto connection = Connection::open(server.url());
    connection->declareQueue("slow");
    connection->declareQueue("fast");
    Consumer slow = connection->consume("slow", [released](Delivery& d) {
        released.wait_for(depot::tests::WAIT_LIMIT); // holds the dispatcher thread
        d.ack();
    });
    Consumer fast = connection->consume(
        "fast",
        [&inlineSeen, &release](Delivery& d) {
            d.ack();
            inlineSeen.push(d.body());
            release.set_value();
        },
        inlineOptions());
    (void)connection->publishConfirmed("", "slow", "occupy the dispatcher");
    (void)connection->publishConfirmed("", "fast", "inline");
    CHECK(inlineSeen.waitFor(1, std::chrono::seconds(2)));
}
