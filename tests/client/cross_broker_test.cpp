// Behaviour where brokers could plausibly differ, pinned to RabbitMQ's: each body runs over
// embedded:, depot:// and amqp:// (a real RabbitMQ) through forEachUrl, so a Depot that drifts
// from RabbitMQ fails here (docs/compatibility.md lists the deliberate differences).

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

using depot::client::Connection;
using depot::client::Delivery;
using depot::client::PublishOptions;
using depot::client::QueueDeclareOptions;
using depot::core::DeathReason;
using depot::tests::eventually;
using depot::tests::forEachUrl;

namespace {

// Waits for the next message of `queue` (get, no ack).
std::optional<Delivery> next(Connection& connection, const std::string& queue) {
    std::optional<Delivery> got;
    (void)eventually([&] {
        got = connection.get(queue, true);
        return got.has_value();
    });
    return got;
}

QueueDeclareOptions deadLettersTo(const std::string& queue) {
    QueueDeclareOptions options;
    options.arguments.set("x-dead-letter-exchange", std::string(""));
    options.arguments.set("x-dead-letter-routing-key", queue);
    return options;
}

} // namespace

TEST_CASE("requeued messages go back to their original positions, flagged redelivered") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("line");
        for (const char* body : {"m0", "m1", "m2", "m3", "m4"})
            (void)connection->publishConfirmed("", "line", body);
        std::vector<Delivery> taken;
        for (int i = 0; i < 3; ++i) {
            auto d = connection->get("line");
            REQUIRE(d);
            taken.push_back(std::move(*d));
        }
        // Requeued out of order: each still goes back where it was.
        taken[2].reject(true);
        taken[0].nack(true);
        std::vector<std::string> order;
        std::vector<bool> redelivered;
        while (auto d = connection->get("line", true)) {
            order.push_back(d->body());
            redelivered.push_back(d->redelivered());
        }
        CHECK(order == std::vector<std::string>{"m0", "m2", "m3", "m4"});
        CHECK(redelivered == std::vector<bool>{true, true, false, false});
        taken[1].ack();
    });
}

TEST_CASE("dead-lettering: x-death says which queue, why, from where and how often") {
    forEachUrl([](const std::string& url) {
        auto connection = Connection::open(url);
        connection->declareQueue("dead");

        // Rejected without requeue.
        connection->declareQueue("work", deadLettersTo("dead"));
        (void)connection->publishConfirmed("", "work", "refused");
        auto refused = connection->get("work");
        REQUIRE(refused);
        refused->reject(false);
        auto first = next(*connection, "dead");
        REQUIRE(first);
        CHECK(first->body() == "refused");
        REQUIRE(first->deaths().size() == 1);
        CHECK(first->deaths()[0].queue == "work");
        CHECK(first->deaths()[0].reason == DeathReason::REJECTED);
        CHECK(first->deaths()[0].count == 1);
        CHECK(first->deaths()[0].exchange == "");
        CHECK(first->deaths()[0].routingKeys == std::vector<std::string>{"work"});

        // Expired (queue TTL).
        QueueDeclareOptions shortLived = deadLettersTo("dead");
        shortLived.arguments.set("x-message-ttl", std::int64_t{1});
        connection->declareQueue("short", shortLived);
        (void)connection->publishConfirmed("", "short", "too late");
        auto expired = next(*connection, "dead");
        REQUIRE(expired);
        CHECK(expired->body() == "too late");
        REQUIRE(expired->deaths().size() == 1);
        CHECK(expired->deaths()[0].reason == DeathReason::EXPIRED);
        CHECK(expired->deaths()[0].queue == "short");
        CHECK_FALSE(expired->deaths()[0].originalExpiration.has_value());

        // Expired by its own TTL: x-death keeps that TTL (original-expiration), the copy has
        // none.
        connection->declareQueue("own", deadLettersTo("dead"));
        PublishOptions ownTtl;
        ownTtl.properties.expiration = std::chrono::milliseconds(1);
        (void)connection->publishConfirmed("", "own", "its own time", ownTtl);
        auto own = next(*connection, "dead");
        REQUIRE(own);
        CHECK(own->body() == "its own time");
        REQUIRE(own->deaths().size() == 1);
        CHECK(own->deaths()[0].reason == DeathReason::EXPIRED);
        CHECK(own->deaths()[0].originalExpiration == std::chrono::milliseconds(1));
        CHECK_FALSE(own->properties().expiration.has_value());

        // Pushed out by the length limit (drop-head).
        QueueDeclareOptions bounded = deadLettersTo("dead");
        bounded.arguments.set("x-max-length", std::int64_t{1});
        connection->declareQueue("bounded", bounded);
        (void)connection->publishConfirmed("", "bounded", "oldest");
        (void)connection->publishConfirmed("", "bounded", "newest");
        auto dropped = next(*connection, "dead");
        REQUIRE(dropped);
        CHECK(dropped->body() == "oldest");
        REQUIRE(dropped->deaths().size() == 1);
        CHECK(dropped->deaths()[0].reason == DeathReason::MAXLEN);

        // Round a cycle twice (rejected in "a", expired in "b", back to "a"): one x-death entry
        // per (queue, reason), newest first, each counted twice.
        connection->declareQueue("a", deadLettersTo("b"));
        QueueDeclareOptions back = deadLettersTo("a");
        back.arguments.set("x-message-ttl", std::int64_t{1});
        connection->declareQueue("b", back);
        (void)connection->publishConfirmed("", "a", "round");
        for (int lap = 1; lap <= 2; ++lap) {
            std::optional<Delivery> got;
            REQUIRE(eventually([&] {
                got = connection->get("a");
                return got.has_value();
            }));
            CHECK(got->deaths().size() == (lap == 1 ? 0u : 2u));
            got->reject(false);
        }
        auto lapped = next(*connection, "a");
        REQUIRE(lapped);
        REQUIRE(lapped->deaths().size() == 2);
        CHECK(lapped->deaths()[0].queue == "b");
        CHECK(lapped->deaths()[0].reason == DeathReason::EXPIRED);
        CHECK(lapped->deaths()[0].count == 2);
        CHECK(lapped->deaths()[1].queue == "a");
        CHECK(lapped->deaths()[1].reason == DeathReason::REJECTED);
        CHECK(lapped->deaths()[1].count == 2);
    });
}
