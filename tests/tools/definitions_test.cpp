// depotd --data-dir: durable exchanges, queues and bindings survive a restart (even a kill -9
// right after the declare was answered), non-durable ones do not, and a damaged definitions
// file stops depotd with a clear error instead of a half-configured broker. Confirmed
// persistent messages in durable queues survive a kill -9 too, and their queues' length limits,
// dead-lettering and requeue work after it as before.

#include "tests/support/process.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace depot::tests;
using depot::client::Connection;
using depot::client::ExchangeDeclareOptions;
using depot::client::ExchangeType;
using depot::client::Listing;
using depot::client::ListKind;
using depot::client::QueueDeclareOptions;

namespace {

const std::string DEPOTD = std::string(DEPOT_BINARY_DIR) + "/depotd";

// Each row of a listing as "column=value" texts, for finding what a user would see.
std::vector<std::string> rows(Connection& connection, ListKind kind,
                              const std::vector<std::string>& columns) {
    const Listing listing = connection.list(kind);
    std::vector<std::string> out;
    for (const auto& row : listing.rows) {
        std::string line;
        for (const std::string& column : columns) {
            const auto at = std::find(listing.columns.begin(), listing.columns.end(), column);
            REQUIRE(at != listing.columns.end());
            line += (line.empty() ? "" : " ") + column + "=" +
                    depot::core::fieldValueText(
                        row[static_cast<std::size_t>(at - listing.columns.begin())]);
        }
        out.push_back(line);
    }
    return out;
}

bool has(const std::vector<std::string>& lines, const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
}

depot::client::PublishOptions persistentMessage() {
    depot::client::PublishOptions options;
    options.properties.deliveryMode = depot::core::DeliveryMode::PERSISTENT;
    return options;
}

QueueDeclareOptions durableQueue(depot::core::FieldTable arguments = {}) {
    QueueDeclareOptions options;
    options.durable = true;
    options.arguments = std::move(arguments);
    return options;
}

// Dead-letters to `queue` through the default exchange.
depot::core::FieldTable deadLettersTo(const std::string& queue) {
    return {{"x-dead-letter-exchange", std::string("")}, {"x-dead-letter-routing-key", queue}};
}

void crash(DepotdProcess& depotd) {
    depotd.process().signal(SIGKILL);
    depotd.process().wait();
}

} // namespace

TEST_CASE("depotd --data-dir: durable definitions survive a kill -9, the others do not") {
    TempDir data;
    const std::string dir = data.file("depot");
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        ExchangeDeclareOptions durableExchange;
        durableExchange.durable = true;
        connection->declareExchange("orders-x", ExchangeType::TOPIC, durableExchange);
        connection->declareExchange("temp-x", ExchangeType::FANOUT);
        QueueDeclareOptions durableQueue;
        durableQueue.durable = true;
        durableQueue.arguments.set("x-message-ttl", std::int64_t{60'000});
        connection->declareQueue("q-durable", durableQueue);
        connection->declareQueue("q-temp");
        QueueDeclareOptions gone = durableQueue;
        connection->declareQueue("q-deleted", gone);
        connection->bindQueue("q-durable", "orders-x", "a.#");
        connection->bindQueue("q-durable", "amq.direct", "k");
        connection->bindQueue("q-temp", "orders-x", "b");
        connection->bindExchange("temp-x", "orders-x", "c");
        connection->deleteQueue("q-deleted");
        // No goodbye: every answered change must already be on disk.
        depotd.process().signal(SIGKILL);
        depotd.process().wait();
    }
    DepotdProcess again({"--data-dir", dir});
    auto connection = Connection::open(again.url());
    const auto exchanges = rows(*connection, ListKind::EXCHANGES, {"name", "type", "durable"});
    CHECK(has(exchanges, "name=orders-x type=topic durable=true"));
    CHECK(has(exchanges, "name=amq.direct type=direct durable=true")); // built in, as ever
    for (const auto& line : exchanges)
        CHECK(line.find("temp-x") == std::string::npos);
    const auto queues = rows(*connection, ListKind::QUEUES, {"name", "durable", "arguments"});
    CHECK(has(queues, "name=q-durable durable=true arguments=x-message-ttl=60000"));
    for (const auto& line : queues) {
        CHECK(line.find("q-temp") == std::string::npos);
        CHECK(line.find("q-deleted") == std::string::npos);
    }
    const auto bindings =
        rows(*connection, ListKind::BINDINGS, {"source", "destination", "routing_key"});
    CHECK(has(bindings, "source=orders-x destination=q-durable routing_key=a.#"));
    CHECK(has(bindings, "source=amq.direct destination=q-durable routing_key=k"));
    for (const auto& line : bindings) {
        CHECK(line.find("q-temp") == std::string::npos);
        CHECK(line.find("temp-x") == std::string::npos);
    }
    // The recovered definitions work: a message routed by the recovered binding arrives.
    connection->publishConfirmed("orders-x", "a.b", "after restart");
    auto got = connection->get("q-durable");
    REQUIRE(got);
    CHECK(got->body() == "after restart");
}

TEST_CASE("depotd --data-dir: a damaged definitions file stops depotd with a clear error") {
    TempDir data;
    const std::string dir = data.file("depot");
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/definitions") << "not cap'n proto, not 8-byte aligned";
    Process depotd(DEPOTD, {"--listen", "127.0.0.1:0", "--data-dir", dir});
    CHECK(depotd.wait() == 1);
    CHECK(depotd.err().find("definitions " + dir + "/definitions: damaged") != std::string::npos);
}

TEST_CASE("depotd --data-dir: a data dir that cannot be created is a clear error") {
    TempDir data;
    std::ofstream(data.file("a-file")) << "x";
    Process depotd(DEPOTD, {"--listen", "127.0.0.1:0", "--data-dir", data.file("a-file/sub")});
    CHECK(depotd.wait() == 1);
    CHECK(depotd.err().find("depotd: --data-dir ") == 0);
}

TEST_CASE("depotd --data-dir: confirmed persistent messages survive a kill -9, in order") {
    TempDir data;
    const std::string dir = data.file("depot");
    depot::client::PublishOptions persistent;
    persistent.properties.deliveryMode = depot::core::DeliveryMode::PERSISTENT;
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        QueueDeclareOptions durable;
        durable.durable = true;
        connection->declareQueue("jobs", durable);
        connection->declareQueue("scratch"); // not durable: its messages are not kept
        for (int i = 1; i <= 5; ++i)
            CHECK(connection->publishConfirmed("", "jobs", "job-" + std::to_string(i), persistent)
                      .ack);
        connection->publishConfirmed("", "jobs", "transient"); // dropped on restart
        connection->publishConfirmed("", "scratch", "gone", persistent);
        auto first = connection->get("jobs"); // taken and acked: must not come back
        REQUIRE(first);
        CHECK(first->body() == "job-1");
        first->ack();
        // An ack is not answered: a confirmed publish behind it shows it was handled.
        connection->publishConfirmed("", "jobs", "job-6", persistent);
        depotd.process().signal(SIGKILL);
        depotd.process().wait();
    }
    DepotdProcess again({"--data-dir", dir});
    auto connection = Connection::open(again.url());
    std::vector<std::string> bodies;
    while (auto message = connection->get("jobs", true)) {
        CHECK(message->redelivered());
        CHECK(message->properties().deliveryMode == depot::core::DeliveryMode::PERSISTENT);
        bodies.push_back(message->body());
    }
    CHECK(bodies == std::vector<std::string>{"job-2", "job-3", "job-4", "job-5", "job-6"});
    CHECK_THROWS_AS(connection->get("scratch"), depot::client::Error); // not durable: gone
}

TEST_CASE("depotd: one depotd per data dir, and --in-memory excludes --data-dir") {
    TempDir data;
    const std::string dir = data.file("depot");
    DepotdProcess first({"--data-dir", dir});
    Process second(DEPOTD, {"--listen", "127.0.0.1:0", "--data-dir", dir});
    CHECK(second.wait() == 1);
    CHECK(second.err() ==
          "depotd: data dir " + dir + " is in use by another depotd (" + dir + "/lock)\n");
    Process both(DEPOTD, {"--in-memory", "--data-dir", dir});
    CHECK(both.wait() == 2);
    Process help(DEPOTD, {"--help"});
    CHECK(help.wait() == 0);
    CHECK(help.out().find("--in-memory") != std::string::npos);
    CHECK(help.out().find("/var/lib/depot") != std::string::npos);
}

// A durable queue's length limit, dead-lettering and requeue work after a kill -9 as before it:
// the arguments come back with the queue, the recovered messages count against the limit, and a
// dead-lettered copy keeps its x-death across a second crash.
TEST_CASE("depotd --data-dir: max length, dead-lettering and requeue after a kill -9") {
    TempDir data;
    const std::string dir = data.file("depot");
    const auto persistent = persistentMessage();
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        connection->declareQueue("dead", durableQueue());
        QueueDeclareOptions bounded = durableQueue(deadLettersTo("dead"));
        bounded.arguments.set("x-max-length", std::int64_t{2});
        connection->declareQueue("bounded", bounded);
        connection->declareQueue("full",
                                 durableQueue({{"x-max-length", std::int64_t{1}},
                                               {"x-overflow", std::string("reject-publish")}}));
        for (const char* body : {"p1", "p2"})
            CHECK(connection->publishConfirmed("", "bounded", body, persistent).ack);
        CHECK(connection->publishConfirmed("", "full", "only", persistent).ack);
        crash(depotd);
    }
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        // The limit counts the recovered messages: p3 pushes p1 out, to "dead".
        CHECK(connection->publishConfirmed("", "bounded", "p3", persistent).ack);
        CHECK_FALSE(connection->publishConfirmed("", "full", "refused", persistent).ack);
        auto p2 = connection->get("bounded");
        REQUIRE(p2);
        CHECK(p2->body() == "p2");
        CHECK(p2->redelivered());
        p2->reject(false); // dead-lettered too
        auto p3 = connection->get("bounded");
        REQUIRE(p3);
        CHECK(p3->body() == "p3");
        p3->nack(true); // back at the head
        auto again = connection->get("bounded", true);
        REQUIRE(again);
        CHECK(again->body() == "p3");
        CHECK(again->redelivered());
        // What "dead" holds is on disk: a confirmed publish behind it shows it was handled.
        CHECK(connection->publishConfirmed("", "full", "still full", persistent).ack == false);
        crash(depotd);
    }
    DepotdProcess depotd({"--data-dir", dir});
    auto connection = Connection::open(depotd.url());
    std::vector<std::string> bodies;
    std::vector<depot::core::DeathReason> reasons;
    while (auto message = connection->get("dead", true)) {
        bodies.push_back(message->body());
        REQUIRE(message->deaths().size() == 1);
        CHECK(message->deaths()[0].queue == "bounded");
        reasons.push_back(message->deaths()[0].reason);
    }
    CHECK(bodies == std::vector<std::string>{"p1", "p2"});
    CHECK(reasons == std::vector<depot::core::DeathReason>{depot::core::DeathReason::MAXLEN,
                                                           depot::core::DeathReason::REJECTED});
    CHECK_FALSE(connection->get("bounded")); // p3 was taken without ack: gone
    auto only = connection->get("full", true);
    REQUIRE(only);
    CHECK(only->body() == "only");
}

// A message's TTL counts from when it was enqueued, not from the restart, as in RabbitMQ: one
// whose TTL ran out while depotd was down is dead-lettered as soon as depotd is back, and one
// with time left keeps only what was left.
TEST_CASE("depotd --data-dir: a TTL keeps counting across a kill -9") {
    TempDir data;
    const std::string dir = data.file("depot");
    const auto persistent = persistentMessage();
    auto longLived = persistentMessage();
    longLived.properties.expiration = std::chrono::milliseconds(3'600'000);
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        connection->declareQueue("expired", durableQueue());
        QueueDeclareOptions shortLived = durableQueue(deadLettersTo("expired"));
        shortLived.arguments.set("x-message-ttl", std::int64_t{1'500});
        connection->declareQueue("offers", shortLived);
        CHECK(connection->publishConfirmed("", "offers", "stale", persistent).ack);
        connection->declareQueue("archive", durableQueue());
        CHECK(connection->publishConfirmed("", "archive", "kept", longLived).ack);
        crash(depotd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2'000)); // past the 1.5 s TTL
    DepotdProcess depotd({"--data-dir", dir});
    auto connection = Connection::open(depotd.url());
    CHECK_FALSE(connection->get("offers", true)); // expired while depotd was down
    auto dead = connection->get("expired", true);
    REQUIRE(dead);
    CHECK(dead->body() == "stale");
    REQUIRE(dead->deaths().size() == 1);
    CHECK(dead->deaths()[0].reason == depot::core::DeathReason::EXPIRED);
    auto kept = connection->get("archive", true); // an hour to live: still there
    REQUIRE(kept);
    CHECK(kept->body() == "kept");

    // What expiry took during recovery, and the dead letter it made, were written like any
    // other change: after another crash the expired message does not come back to be
    // dead-lettered a second time. (A confirmed publish first: everything before it is on disk.)
    CHECK(connection->publishConfirmed("", "archive", "marker", persistent).ack);
    crash(depotd);
    DepotdProcess again({"--data-dir", dir});
    auto after = Connection::open(again.url());
    CHECK_FALSE(after->get("offers", true));
    CHECK_FALSE(after->get("expired", true));
    auto marker = after->get("archive", true);
    REQUIRE(marker);
    CHECK(marker->body() == "marker");
}

// A backlog past a queue's in-memory limits waits on disk (x-queue-mode lazy: all of it; else
// past x-max-in-memory-length): the listing says how much, every message comes back whole and in
// order when consumed, and after a kill -9 the rest comes back paged out again.
TEST_CASE("depotd --data-dir: a lazy queue keeps its backlog on disk and gives it back in order") {
    TempDir data;
    const std::string dir = data.file("depot");
    auto persistent = persistentMessage();
    persistent.properties.correlationId = "corr";
    persistent.properties.headers.set("x-kind", std::string("parcel"));
    const auto body = [](int i) { return "parcel-" + std::to_string(i) + std::string(500, '.'); };
    {
        DepotdProcess depotd({"--data-dir", dir});
        auto connection = Connection::open(depotd.url());
        connection->declareQueue("lazy", durableQueue({{"x-queue-mode", std::string("lazy")}}));
        connection->declareQueue("limited",
                                 durableQueue({{"x-max-in-memory-length", std::int64_t{10}}}));
        connection->declareExchange("both", ExchangeType::FANOUT, ExchangeDeclareOptions{});
        connection->bindQueue("lazy", "both", "");
        connection->bindQueue("limited", "both", "");
        for (int i = 1; i <= 300; ++i)
            REQUIRE(connection->publishConfirmed("both", "", body(i), persistent).ack);
        connection->publishConfirmed("both", "", "transient"); // stays in memory
        const auto listed =
            rows(*connection, ListKind::QUEUES, {"name", "messages_ready", "messages_paged_out"});
        CHECK(has(listed, "name=lazy messages_ready=301 messages_paged_out=300"));
        CHECK(has(listed, "name=limited messages_ready=301 messages_paged_out=290"));
        for (int i = 1; i <= 100; ++i) {
            auto message = connection->get("lazy");
            REQUIRE(message);
            CHECK(message->body() == body(i));
            CHECK(message->properties().correlationId == "corr");
            const depot::core::FieldValue* kind = message->properties().headers.find("x-kind");
            REQUIRE(kind != nullptr);
            CHECK(*kind == depot::core::FieldValue(std::string("parcel")));
            CHECK_FALSE(message->redelivered());
            message->ack();
        }
        auto requeued = connection->get("lazy"); // read back from disk, then returned
        REQUIRE(requeued);
        CHECK(requeued->body() == body(101));
        requeued->nack(true);
        CHECK(connection->publishConfirmed("", "limited", "marker", persistent).ack);
        // The first take read 129 back: itself and the 128 behind it (read-ahead).
        CHECK(has(rows(*connection, ListKind::QUEUES, {"name", "messages_paged_out"}),
                  "name=lazy messages_paged_out=171"));
        crash(depotd);
    }
    DepotdProcess depotd({"--data-dir", dir});
    auto connection = Connection::open(depotd.url());
    CHECK(has(rows(*connection, ListKind::QUEUES, {"name", "messages_ready", "messages_paged_out"}),
              "name=lazy messages_ready=200 messages_paged_out=200"));
    for (int i = 101; i <= 300; ++i) {
        auto message = connection->get("lazy", true);
        REQUIRE(message);
        CHECK(message->body() == body(i));
        CHECK(message->redelivered());
    }
    CHECK_FALSE(connection->get("lazy", true)); // the transient one is gone, as in RabbitMQ
    int limited = 0;
    while (auto message = connection->get("limited", true)) {
        if (limited < 300)
            CHECK(message->body() == body(limited + 1));
        else
            CHECK(message->body() == "marker");
        ++limited;
    }
    CHECK(limited == 301);
}

// A body past Cap'n Proto's default read limit (64 MiB) is read back from disk whole.
TEST_CASE("depotd --data-dir: a 70 MiB persistent message paged out comes back whole") {
    TempDir data;
    DepotdProcess depotd({"--data-dir", data.file("depot")});
    auto connection = Connection::open(depotd.url());
    connection->declareQueue("big", durableQueue({{"x-queue-mode", std::string("lazy")}}));
    std::string body(70u << 20, 'b');
    body.front() = 'F';
    body.back() = 'L';
    REQUIRE(connection->publishConfirmed("", "big", body, persistentMessage()).ack);
    CHECK(has(rows(*connection, ListKind::QUEUES, {"name", "messages_paged_out"}),
              "name=big messages_paged_out=1"));
    auto message = connection->get("big", true);
    REQUIRE(message);
    CHECK(message->body().size() == body.size());
    CHECK(message->body() == body);
}
