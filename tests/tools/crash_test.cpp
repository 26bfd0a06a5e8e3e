// The crash test of issue 5: depotd --data-dir is killed with SIGKILL at random moments while a
// publisher sends persistent messages with confirms and a consumer acks them, 20 times, and is
// restarted on the same data dir each time. Every confirmed message must be delivered at least
// once, and messages delivered for the first time (not redelivered) must come in publish order.
// Once with a plain durable queue, once with a lazy one whose consumer starts late in each round:
// its messages wait paged out and are read back from the store (pending, being written, or on
// disk) while depotd is killed.

#include "tests/support/process.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace depot::tests;
using depot::client::Connection;

namespace {

struct Seen {
    std::mutex mutex;
    std::map<int, int> deliveries;     // id -> how often
    std::vector<int> firstTimeInOrder; // ids of deliveries not marked redelivered
    void record(int id, bool redelivered) {
        std::lock_guard lock(mutex);
        ++deliveries[id];
        if (!redelivered)
            firstTimeInOrder.push_back(id);
    }
};

std::shared_ptr<Connection> open(const std::string& url) {
    depot::client::ConnectionOptions options;
    options.reconnect = false; // each round has its own depotd (and port)
    return Connection::open(url, options);
}

} // namespace

// `lateConsumer`: each round's consumer starts halfway through it, so that a backlog builds.
void crashRounds(const depot::core::FieldTable& arguments, bool lateConsumer) {
    constexpr int KILLS = 20;
    TempDir data;
    const std::string dir = data.file("depot");
    std::mt19937 random(20261129); // fixed: a failure can be replayed
    Seen seen;
    std::set<int> confirmed;
    int nextId = 0;
    depot::client::PublishOptions persistent;
    persistent.properties.deliveryMode = depot::core::DeliveryMode::PERSISTENT;
    depot::client::QueueDeclareOptions durable;
    durable.durable = true;
    durable.arguments = arguments;
    auto consume = [&](Connection& connection) {
        depot::client::ConsumeOptions options;
        options.prefetch = 50;
        return connection.consume(
            "crash",
            [&seen](depot::client::Delivery& d) {
                seen.record(std::stoi(d.body()), d.redelivered());
                d.ack();
            },
            options);
    };

    for (int kill = 0; kill < KILLS; ++kill) {
        DepotdProcess depotd({"--data-dir", dir});
        auto consumerConnection = open(depotd.url());
        consumerConnection->declareQueue("crash", durable);
        depot::client::Consumer consumer;
        if (!lateConsumer)
            consumer = consume(*consumerConnection);
        auto publisherConnection = open(depotd.url());
        std::atomic<bool> stop{false};
        std::thread publisher([&] {
            while (!stop) {
                const int id = nextId++;
                try {
                    if (publisherConnection
                            ->publishConfirmed("", "crash", std::to_string(id), persistent)
                            .ack)
                        confirmed.insert(id);
                } catch (const depot::client::Error&) {
                    return; // the broker died with this one in flight: it may or may not be kept
                }
            }
        });
        const int lifetime = std::uniform_int_distribution<int>(60, 260)(random);
        if (lateConsumer) {
            std::this_thread::sleep_for(std::chrono::milliseconds(lifetime / 2));
            consumer = consume(*consumerConnection);
        }
        std::this_thread::sleep_for(
            std::chrono::milliseconds(lateConsumer ? lifetime / 2 : lifetime));
        depotd.process().signal(SIGKILL);
        depotd.process().wait();
        stop = true;
        publisher.join();
        consumer.cancel();
    }

    // Last start: take whatever is left.
    DepotdProcess depotd({"--data-dir", dir});
    auto connection = open(depotd.url());
    connection->declareQueue("crash", durable);
    while (auto message = connection->get("crash", true))
        seen.record(std::stoi(message->body()), message->redelivered());

    std::lock_guard lock(seen.mutex);
    std::size_t lost = 0;
    for (int id : confirmed)
        if (seen.deliveries.count(id) == 0)
            ++lost;
    MESSAGE("kills: " << KILLS << ", confirmed messages checked: " << confirmed.size()
                      << ", delivered: " << seen.deliveries.size() << ", lost: " << lost);
    CHECK(confirmed.size() > static_cast<std::size_t>(KILLS)); // the test did publish
    CHECK(lost == 0);
    for (std::size_t i = 1; i < seen.firstTimeInOrder.size(); ++i)
        CHECK_MESSAGE(seen.firstTimeInOrder[i - 1] < seen.firstTimeInOrder[i],
                      "first deliveries out of publish order at " << i);
}

TEST_CASE("crash: kill -9 at random moments, 20 times: no confirmed message is lost") {
    crashRounds({}, /*lateConsumer=*/false);
}

TEST_CASE("crash: the same with a lazy queue whose backlog waits paged out") {
    crashRounds({{"x-queue-mode", std::string("lazy")}}, /*lateConsumer=*/true);
}
