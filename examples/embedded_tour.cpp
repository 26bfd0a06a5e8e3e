// depot-tour: a short tour of an embedded Depot broker, printed as it happens. Everything runs
// in this process on one thread: no sockets, no daemon. Each part shows one messaging pattern:
// point-to-point with competing consumers, publish/subscribe with fanout and topic exchanges,
// acknowledgements with a requeue, and a message TTL that dead-letters through the runtime's
// timer. The README's main command runs it until the delivery business replaces it.

#include "broker/core/broker.h"
#include "broker/runtime/broker_runtime.h"
#include "broker/runtime/clock.h"
#include "broker/runtime/embedded_consumer.h"

#include <asio.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

using depot::core::Channel;
using depot::core::Delivery;
using depot::runtime::BrokerRuntime;
using depot::runtime::EmbeddedConsumer;

// The tour treats any broker error as a bug in the tour itself: say what failed and stop.
template <class R> auto check(R&& result, const char* what) {
    if (!result) {
        std::fprintf(stderr, "depot-tour: %s failed: %s\n", what,
                     result.error().describe().c_str());
        std::exit(1);
    }
    if constexpr (requires { result.value(); })
        return std::forward<R>(result).value();
}

class Tour {
public:
    Tour() : runtime_(io_, clock_), channel_(runtime_.broker().defaultVhost().openChannel()) {}

    void run() {
        pointToPoint();
        publishSubscribe();
        topicRouting();
        acknowledgements();
        ttlAndDeadLetters();
        std::printf("\nTour complete.\n");
    }

private:
    depot::core::TimePoint now() { return runtime_.now(); }

    // Lets posted handlers run, and the deadline timer fire, until `done` or a timeout.
    void runUntil(const std::function<bool()>& done) {
        runtime_.rearm();
        const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done() && std::chrono::steady_clock::now() < limit) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(10));
        }
        if (!done()) {
            std::fprintf(stderr, "depot-tour: timed out waiting for deliveries\n");
            std::exit(1);
        }
    }

    EmbeddedConsumer& consumer(std::function<void(const Delivery&)> handler) {
        consumers_.push_back(
            std::make_unique<EmbeddedConsumer>(io_.get_executor(), std::move(handler)));
        return *consumers_.back();
    }

    void publish(const std::string& exchange, const std::string& key, const std::string& body) {
        check(channel_.publish(exchange, key, {}, body, false, now()), "publish");
    }

    static std::string text(const Delivery& d) { return d.message->body; }

    void pointToPoint() {
        std::printf("1. Point-to-point: one queue, two competing workers (prefetch 1)\n");
        check(channel_.declareQueue("tasks", {}, now()), "declare queue tasks");
        int handled = 0;
        for (const char* worker : {"worker-a", "worker-b"}) {
            auto& sink = consumer([this, worker, &handled](const Delivery& d) {
                std::printf("   %s got '%s'\n", worker, text(d).c_str());
                check(channel_.ack(d.deliveryTag, false, now()), "ack");
                ++handled;
            });
            depot::core::ConsumeOptions options;
            options.prefetchCount = 1;
            check(channel_.consume("tasks", sink, options, now()), "consume tasks");
        }
        for (int i = 1; i <= 4; ++i)
            publish("", "tasks", "task " + std::to_string(i)); // the default exchange: by name
        runUntil([&] { return handled == 4; });
    }

    void publishSubscribe() {
        std::printf("\n2. Publish/subscribe: a fanout exchange copies each message to every "
                    "subscriber\n");
        check(channel_.declareExchange("news", depot::core::ExchangeType::FANOUT), "declare news");
        int received = 0;
        for (const char* subscriber : {"billing", "tracking", "mailer"}) {
            std::string queue = std::string("news.") + subscriber;
            check(channel_.declareQueue(queue, {}, now()), "declare subscriber queue");
            check(channel_.bindQueue(queue, "news", ""), "bind subscriber queue");
            auto& sink = consumer([subscriber, &received](const Delivery& d) {
                std::printf("   %-8s heard '%s'\n", subscriber, text(d).c_str());
                ++received;
            });
            depot::core::ConsumeOptions options;
            options.noAck = true;
            check(channel_.consume(queue, sink, options, now()), "consume news");
        }
        publish("news", "", "depot opened a new hub");
        runUntil([&] { return received == 3; });
    }

    void topicRouting() {
        std::printf("\n3. Topic routing: '*' matches one word, '#' zero or more\n");
        check(channel_.declareExchange("package-events", depot::core::ExchangeType::TOPIC),
              "declare package-events");
        struct Subscription {
            const char* queue;
            const char* pattern;
        };
        int received = 0;
        for (Subscription s : {Subscription{"all-deliveries", "package.*.delivered"},
                               Subscription{"eu-everything", "package.eu.#"}}) {
            check(channel_.declareQueue(s.queue, {}, now()), "declare topic queue");
            check(channel_.bindQueue(s.queue, "package-events", s.pattern), "bind topic queue");
            auto& sink = consumer([s, &received](const Delivery& d) {
                std::printf("   %-15s (%s) got %s\n", s.queue, s.pattern,
                            d.message->routingKey.c_str());
                ++received;
            });
            depot::core::ConsumeOptions options;
            options.noAck = true;
            check(channel_.consume(s.queue, sink, options, now()), "consume topic queue");
        }
        for (const char* key : {"package.eu.delivered", "package.us.delivered",
                                "package.eu.picked-up", "package.eu.hub.berlin"})
            publish("package-events", key, key);
        // eu.delivered reaches both queues, us.delivered one, the two other eu events one each.
        runUntil([&] { return received == 5; });
    }

    void acknowledgements() {
        std::printf("\n4. Acknowledgements: a nack with requeue brings the message back, "
                    "marked redelivered\n");
        check(channel_.declareQueue("flaky-work", {}, now()), "declare flaky-work");
        bool done = false;
        auto& sink = consumer([this, &done](const Delivery& d) {
            if (!d.redelivered) {
                std::printf("   first try of '%s' failed: nack, requeue\n", text(d).c_str());
                check(channel_.nack(d.deliveryTag, false, true, now()), "nack");
                return;
            }
            std::printf("   '%s' came back (redelivered=true): ack\n", text(d).c_str());
            check(channel_.ack(d.deliveryTag, false, now()), "ack");
            done = true;
        });
        check(channel_.consume("flaky-work", sink, {}, now()), "consume flaky-work");
        publish("", "flaky-work", "charge order 42");
        runUntil([&] { return done; });
    }

    void ttlAndDeadLetters() {
        std::printf("\n5. TTL and dead-lettering: an unread message expires after 100 ms into "
                    "a dead-letter queue\n");
        check(channel_.declareExchange("dlx", depot::core::ExchangeType::FANOUT), "declare dlx");
        check(channel_.declareQueue("expired", {}, now()), "declare expired");
        check(channel_.bindQueue("expired", "dlx", ""), "bind expired");
        depot::core::QueueOptions options;
        options.messageTtl = std::chrono::milliseconds(100);
        options.deadLetterExchange = "dlx";
        check(channel_.declareQueue("quotes", options, now()), "declare quotes");
        publish("", "quotes", "quote valid for 100 ms");
        std::optional<Delivery> got;
        auto& sink = consumer([&got](const Delivery& d) { got = d; });
        depot::core::ConsumeOptions consume;
        consume.noAck = true;
        check(channel_.consume("expired", sink, consume, now()), "consume expired");
        runUntil([&] { return got.has_value(); });
        const auto& death = got->message->deaths.front();
        std::printf("   'expired' got '%s': x-death queue=%s reason=%s count=%llu\n",
                    text(*got).c_str(), death.queue.c_str(),
                    depot::core::deathReasonName(death.reason),
                    static_cast<unsigned long long>(death.count));
    }

    asio::io_context io_;
    depot::runtime::SteadyClock clock_;
    BrokerRuntime runtime_;
    Channel& channel_;
    std::vector<std::unique_ptr<EmbeddedConsumer>> consumers_;
};

} // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        std::printf("usage: depot-tour\n\nA guided run of an embedded Depot broker: "
                    "point-to-point, publish/subscribe,\ntopic routing, acks with requeue, "
                    "and TTL with dead-lettering. Takes no options.\n");
        return std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ? 0 : 2;
    }
    std::printf("Depot embedded broker tour\n\n");
    Tour().run();
    return 0;
}
