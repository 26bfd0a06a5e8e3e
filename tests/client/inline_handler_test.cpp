// Inline handlers (ConsumeOptions::inlineHandler): over depot:// they run on the connection's
// network thread, with no hand-off to the dispatcher; elsewhere on the dispatcher thread. Over
// every transport the same rules: deliveries in order, one at a time, acks that settle them, and
// every call that waits for the broker refused with INVALID_ARGUMENT.

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using depot::client::Connection;
using depot::client::ConsumeOptions;
using depot::client::Consumer;
using depot::client::Delivery;
using depot::client::Error;
using depot::client::ErrorKind;
using depot::tests::errorOf;
using depot::tests::eventually;
using depot::tests::forEachUrl;
using depot::tests::Inbox;
using depot::tests::readyCount;

namespace {

std::uint64_t consumersOf(Connection& connection, const std::string& queue) {
    depot::client::QueueDeclareOptions passive;
    passive.passive = true;
    return connection.declareQueue(queue, passive).consumerCount;
}

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

TEST_CASE("an inline handler may cancel its own consumer: what comes after goes back to the "
          "queue") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> seen;
        auto connection = Connection::open(url);
        connection->declareQueue("q");
        for (int i = 0; i < 20; ++i)
            (void)connection->publishConfirmed("", "q", "m" + std::to_string(i));
        std::unique_ptr<Consumer> consumer;
        std::promise<void> started;
        std::shared_future<void> ready = started.get_future().share();
        consumer = std::make_unique<Consumer>(connection->consume(
            "q",
            [&seen, &consumer, ready](Delivery& d) {
                ready.wait(); // until `consumer` is set
                d.ack();
                seen.push(d.body());
                consumer->cancel(); // returns at once; the broker hears of it soon after
            },
            inlineOptions()));
        started.set_value();
        REQUIRE(seen.waitFor(1));
        CHECK(eventually([&] { return consumersOf(*connection, "q") == 0; }));
        // Once no consumer is left, the others come back to the queue (as they are rejected).
        CHECK(eventually([&] { return readyCount(*connection, "q") == 19; }));
        CHECK(seen.items() == std::vector<std::string>{"m0"});
        auto next = connection->get("q");
        REQUIRE(next);
        CHECK(next->body() == "m1");
    });
}

TEST_CASE("an inline handler that throws is reported, and the next delivery is handled") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> errors;
        Inbox<std::string> handled;
        auto connection = Connection::open(url);
        connection->onError([&errors](const Error& e) {
            if (e.kind() == ErrorKind::HANDLER_FAILED)
                errors.push(e.what());
        });
        connection->declareQueue("q");
        Consumer consumer = connection->consume(
            "q",
            [&handled](Delivery& d) {
                d.ack();
                if (d.body() == "bad")
                    throw std::runtime_error("cannot handle it");
                handled.push(d.body());
            },
            inlineOptions(10));
        connection->publish("", "q", "bad");
        connection->publish("", "q", "good");
        REQUIRE(handled.waitFor(1));
        CHECK(handled.at(0) == "good");
        REQUIRE(errors.waitFor(1));
        CHECK(errors.at(0).find("cannot handle it") != std::string::npos);
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

TEST_CASE("an inline handler may drop the last reference to its own connection") {
    forEachUrl([](const std::string& url) {
        Inbox<std::string> done;
        auto observer = Connection::open(url);
        observer->declareQueue("q");
        (void)observer->publishConfirmed("", "q", "last words");
        std::shared_ptr<Connection> worker = Connection::open(url);
        std::promise<void> started;
        std::shared_future<void> ready = started.get_future().share();
        Connection::Handler handler = [&worker, &done, ready](Delivery& d) {
            ready.wait(); // until consume() has returned: the test no longer touches `worker`
            d.ack();
            std::shared_ptr<Connection> last = std::move(worker);
            last.reset(); // the connection goes, though this thread is the one reading it
            done.push(d.body());
        };
        Consumer consumer = worker->consume("q", std::move(handler), inlineOptions());
        started.set_value();
        REQUIRE(done.waitFor(1));
        CHECK(done.at(0) == "last words");
        // Gone, and its ack reached the broker first (else the close would have requeued it).
        CHECK(eventually([&] { return consumersOf(*observer, "q") == 0; }));
        CHECK(readyCount(*observer, "q") == 0);
        consumer.cancel(); // its connection is gone: nothing to do
    });
}
