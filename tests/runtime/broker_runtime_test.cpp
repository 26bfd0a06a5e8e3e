// The runtime puts a core on an io_context: deliveries reach handlers on a later loop turn,
// and one timer at the core's next deadline expires messages without anyone polling.

#include "broker/runtime/broker_runtime.h"
#include "broker/runtime/clock.h"
#include "broker/runtime/embedded_consumer.h"

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using depot::core::Delivery;
using depot::runtime::BrokerRuntime;
using depot::runtime::EmbeddedConsumer;

namespace {

// Runs the loop until `done` holds; the generous limit only stops a broken test from hanging.
template <class F> bool runUntil(asio::io_context& io, F done) {
    const auto limit = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < limit) {
        io.restart();
        io.run_for(5ms);
    }
    return done();
}

} // namespace

TEST_CASE("embedded consumer runs the handler on a later loop turn, not inside publish") {
    asio::io_context io;
    depot::runtime::ManualClock clock;
    BrokerRuntime runtime(io, clock);
    auto& channel = runtime.broker().defaultVhost().openChannel();
    REQUIRE(channel.declareQueue("q", {}, clock.now()));

    std::vector<std::string> seen;
    EmbeddedConsumer sink(io.get_executor(), [&seen](const Delivery& d) {
        seen.push_back(std::string(d.consumerTag) + ":" + d.message->body);
    });
    depot::core::ConsumeOptions options;
    options.consumerTag = "c1";
    options.noAck = true;
    REQUIRE(channel.consume("q", sink, options, clock.now()));
    REQUIRE(channel.publish("", "q", {}, "hello", false, clock.now()));
    CHECK(seen.empty());
    io.poll();
    CHECK(seen == std::vector<std::string>{"c1:hello"});
}

TEST_CASE("a destroyed embedded consumer drops handler calls still in flight") {
    asio::io_context io;
    depot::runtime::ManualClock clock;
    BrokerRuntime runtime(io, clock);
    auto& channel = runtime.broker().defaultVhost().openChannel();
    REQUIRE(channel.declareQueue("q", {}, clock.now()));
    int calls = 0;
    {
        EmbeddedConsumer sink(io.get_executor(), [&calls](const Delivery&) { ++calls; });
        depot::core::ConsumeOptions options;
        options.noAck = true;
        auto tag = channel.consume("q", sink, options, clock.now());
        REQUIRE(tag);
        REQUIRE(channel.publish("", "q", {}, "x", false, clock.now()));
        REQUIRE(channel.cancel(*tag, clock.now()));
    }
    io.poll();
    CHECK(calls == 0);
}

TEST_CASE("the deadline timer expires a TTL message into its dead-letter queue") {
    asio::io_context io;
    depot::runtime::SteadyClock clock;
    BrokerRuntime runtime(io, clock);
    auto& channel = runtime.broker().defaultVhost().openChannel();
    depot::core::QueueOptions options;
    options.messageTtl = 20ms;
    options.deadLetterExchange = "";
    options.deadLetterRoutingKey = "expired";
    REQUIRE(channel.declareQueue("expired", {}, clock.now()));
    REQUIRE(channel.declareQueue("short-lived", options, clock.now()));
    REQUIRE(channel.publish("", "short-lived", {}, "m", false, clock.now()));
    runtime.rearm();

    const auto* expired = runtime.broker().defaultVhost().findQueue("expired");
    REQUIRE(expired != nullptr);
    CHECK(expired->readyCount() == 0);
    CHECK(runUntil(io, [&] { return expired->readyCount() == 1; }));
    CHECK(runtime.broker().defaultVhost().findQueue("short-lived")->readyCount() == 0);
}

TEST_CASE("rearm with a manual clock expires what is due at the clock's time") {
    asio::io_context io;
    depot::runtime::ManualClock clock;
    BrokerRuntime runtime(io, clock);
    auto& channel = runtime.broker().defaultVhost().openChannel();
    depot::core::QueueOptions options;
    options.messageTtl = 1000ms;
    REQUIRE(channel.declareQueue("q", options, clock.now()));
    REQUIRE(channel.publish("", "q", {}, "m", false, clock.now()));
    runtime.rearm();
    const auto* q = runtime.broker().defaultVhost().findQueue("q");
    CHECK(q->readyCount() == 1);
    clock.advance(999ms);
    runtime.rearm();
    CHECK(q->readyCount() == 1);
    clock.advance(1ms);
    runtime.rearm();
    CHECK(q->readyCount() == 0);
    CHECK(runtime.broker().nextDeadline() == depot::core::NEVER);
}

TEST_CASE("post runs work on the io thread with the clock's time") {
    asio::io_context io;
    depot::runtime::ManualClock clock(depot::core::TimePoint{} + 5s);
    BrokerRuntime runtime(io, clock);
    auto guard = asio::make_work_guard(io);
    std::thread loop([&io] { io.run(); });

    std::promise<std::pair<std::thread::id, depot::core::TimePoint>> seen;
    runtime.post([&seen](depot::core::Broker& broker, depot::core::TimePoint now) {
        auto& channel = broker.defaultVhost().openChannel();
        (void)channel.declareQueue("from-another-thread", {}, now);
        seen.set_value({std::this_thread::get_id(), now});
    });
    auto [threadId, now] = seen.get_future().get();
    CHECK(threadId == loop.get_id());
    CHECK(now == depot::core::TimePoint{} + 5s);
    guard.reset();
    io.stop();
    loop.join();
    CHECK(runtime.broker().defaultVhost().findQueue("from-another-thread") != nullptr);
}
