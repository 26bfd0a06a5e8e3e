#include "services/simulation.h"

#include "services/addresses.h"
#include "services/outbox.h"
#include "services/service.h"
#include "services/world.h"

#include "client/bus.h"
#include "protocol/delivery.capnp.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>

namespace depot::delivery {

namespace {

using namespace std::chrono_literals;
using client::Received;

std::int64_t nowMicros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Follows every order of this run through the events, by correlation id (the PlaceOrder's
// message id, which every message an order causes carries).
class Monitor {
public:
    explicit Monitor(client::Bus& bus) : subscription_(bus.subscribe("", exclusiveOptions())) {
        subscription_
            .on<contracts::OrderPlaced>(
                [this](const Received<contracts::OrderPlaced>& m) {
                    update(m, [&](Order& o) { o.placed = true; });
                },
                {"#"})
            .on<contracts::OrderRejected>(
                [this](const Received<contracts::OrderRejected>& m) {
                    update(m, [&](Order& o) {
                        ++rejected_;
                        end(o);
                    });
                },
                {"#"})
            .on<contracts::PackageDelivered>(
                [this](const Received<contracts::PackageDelivered>& m) {
                    update(m, [&](Order& o) {
                        ++delivered_;
                        end(o);
                    });
                },
                {"#"})
            .on<contracts::DeliveryFailed>(
                [this](const Received<contracts::DeliveryFailed>& m) {
                    const bool final = m->getFinal();
                    update(m, [&](Order& o) {
                        ++failedAttempts_;
                        if (final) {
                            ++returned_;
                            end(o);
                        }
                    });
                },
                {"#"})
            .on<contracts::InvoiceIssued>(
                [this](const Received<contracts::InvoiceIssued>& m) {
                    const std::string tracking = m->getTrackingId();
                    update(m, [&](Order& o) {
                        if (++o.invoices > 1)
                            problems_.push_back(tracking + " invoiced more than once");
                        ++invoiced_;
                    });
                },
                {"#"})
            .on<contracts::EmailSent>(
                [this](const Received<contracts::EmailSent>& m) {
                    update(m, [&](Order&) { ++emails_; });
                },
                {"#"});
        subscription_.start();
    }

    void expect(const std::string& correlation) {
        std::lock_guard lock(mutex_);
        orders_[correlation].sentMicros = nowMicros();
        ++sent_;
    }

    // Waits until fewer than `window` orders are under way; false at the deadline.
    bool waitForRoom(std::uint64_t window, std::chrono::steady_clock::time_point deadline) {
        std::unique_lock lock(mutex_);
        return changed_.wait_until(lock, deadline, [&] { return sent_ - ended_ < window; });
    }

    // Waits up to `step` for everything to be done; true once it is.
    bool waitDone(std::chrono::milliseconds step) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, step, [&] { return done(); });
    }

    std::uint64_t ended() const {
        std::lock_guard lock(mutex_);
        return ended_;
    }

    void fill(SimulationResult& result) const {
        std::lock_guard lock(mutex_);
        result.placed = 0;
        for (const auto& [id, order] : orders_)
            result.placed += order.placed ? 1 : 0;
        result.rejected = rejected_;
        result.delivered = delivered_;
        result.returned = returned_;
        result.failedAttempts = failedAttempts_;
        result.invoiced = invoiced_;
        result.emails = emails_;
        result.latenciesMicros = latencies_;
        std::sort(result.latenciesMicros.begin(), result.latenciesMicros.end());
        result.problems = problems_;
        if (ended_ < sent_)
            result.problems.push_back(std::to_string(sent_ - ended_) +
                                      " orders never ended (is every service running?)");
        if (invoiced_ < delivered_)
            result.problems.push_back(std::to_string(delivered_ - invoiced_) +
                                      " delivered packages not invoiced");
        if (emails_ != expectedEmails())
            result.problems.push_back("expected " + std::to_string(expectedEmails()) +
                                      " emails, saw " + std::to_string(emails_));
        result.settled = done();
    }

private:
    struct Order {
        std::int64_t sentMicros = 0;
        bool placed = false;
        bool ended = false;
        int invoices = 0;
    };

    static client::SubscribeOptions exclusiveOptions() {
        client::SubscribeOptions options;
        options.exclusive = true;
        options.prefetch = 256;
        options.inbox = std::make_shared<client::Inbox>(); // at-least-once: drop the copies
        return options;
    }

    template <typename T, typename F> void update(const Received<T>& message, F&& change) {
        {
            std::lock_guard lock(mutex_);
            auto it = orders_.find(message.meta().getCorrelationId().cStr());
            if (it == orders_.end())
                return; // not this run's
            change(it->second);
        }
        changed_.notify_all();
    }

    void end(Order& order) {
        if (order.ended) {
            problems_.push_back("an order ended twice");
            return;
        }
        order.ended = true;
        ++ended_;
        latencies_.push_back(nowMicros() - order.sentMicros);
    }

    std::uint64_t expectedEmails() const {
        std::uint64_t placed = 0;
        for (const auto& [id, order] : orders_)
            placed += order.placed ? 1 : 0;
        return placed + rejected_ + failedAttempts_ + delivered_ + invoiced_;
    }

    bool done() const {
        return sent_ > 0 && ended_ == sent_ && invoiced_ >= delivered_ &&
               emails_ >= expectedEmails();
    }

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::unordered_map<std::string, Order> orders_;
    std::uint64_t sent_ = 0, ended_ = 0, rejected_ = 0, delivered_ = 0, returned_ = 0;
    std::uint64_t failedAttempts_ = 0, invoiced_ = 0, emails_ = 0;
    std::vector<std::int64_t> latencies_;
    std::vector<std::string> problems_;
    client::Subscription subscription_; // last: its handlers use the members above
};

// The customers' side: orders drawn from the seed alone (std::mt19937_64 is the same
// everywhere; its numbers are mapped here rather than by <random>'s distributions, whose
// results differ between standard libraries).
class Customers {
public:
    Customers(std::uint64_t seed, std::uint64_t orders)
        : random_(seed), customers_(std::max<std::uint64_t>(5, orders / 8)), seed_(seed) {}

    // `run`: "" when this run owns every service (a fresh start: the order ids, and with them
    // the tracking ids and the couriers' dice, depend on the seed alone); otherwise a word that
    // keeps this run's orders apart from an earlier run's in services that remember them.
    void next(std::uint64_t i, contracts::PlaceOrder::Builder order, const std::string& run) {
        const auto& all = regions();
        order.setOrderId("order-" + std::to_string(seed_) + "-" + run + (run.empty() ? "" : "-") +
                         std::to_string(i + 1));
        order.setCustomer("customer-" + std::to_string(pick(customers_) + 1));
        order.setFromRegion(all[pick(all.size())]);
        // One order in a hundred is for a place the business does not serve.
        order.setToRegion(pick(100) == 0 ? std::string("atlantis") : all[pick(all.size())]);
        const std::uint64_t size = pick(100);
        std::uint32_t grams = 0;
        if (size < 92)
            grams = 200 + static_cast<std::uint32_t>(pick(19'800));
        else if (size < 97)
            grams = 20'000 + static_cast<std::uint32_t>(pick(10'000));
        else
            grams = 30'001 + static_cast<std::uint32_t>(pick(15'000)); // too heavy
        order.setWeightGrams(grams);
        order.setSpeed(pick(4) == 0 ? contracts::Speed::EXPRESS : contracts::Speed::STANDARD);
    }

private:
    std::uint64_t pick(std::uint64_t n) { return random_() % n; }

    std::mt19937_64 random_;
    std::uint64_t customers_;
    std::uint64_t seed_;
};

} // namespace

SimulationResult runSimulation(const SimulationOptions& options,
                               const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
    SimulationResult result;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + options.timeout;

    ServiceOptions serviceOptions;
    serviceOptions.broker = options.broker;
    serviceOptions.seed = options.seed;
    serviceOptions.couriers = options.couriers;
    serviceOptions.outbox = options.outbox;
    std::vector<std::unique_ptr<Service>> services;
    const std::vector<std::string>& names = options.allServices ? serviceNames() : options.services;
    bool mails = false;
    for (const std::string& name : names) {
        services.push_back(makeService(name, serviceOptions));
        services.back()->start();
        mails = mails || name == "notifications";
    }

    client::ConnectionOptions connectionOptions;
    connectionOptions.clientName = "delivery-run";
    auto connection = client::Connection::open(options.broker, connectionOptions);
    client::Bus bus(connection, "delivery-run");
    {
        Monitor monitor(bus);
        // The orders queue may not exist yet when the orders service runs elsewhere and has
        // not started: declared the same way it declares it, the orders wait there.
        client::QueueDeclareOptions ordersQueue;
        ordersQueue.durable = true;
        connection->declareQueue(ORDERS_QUEUE, ordersQueue);

        Customers customers(options.seed, options.orders);
        std::string run;
        if (!options.allServices) {
            std::random_device random;
            run = std::to_string(random() % 1'000'000);
        }
        auto lastReport = std::chrono::steady_clock::now();
        auto report = [&](bool force) {
            const auto now = std::chrono::steady_clock::now();
            if (progress && (force || now - lastReport >= 100ms)) {
                progress(monitor.ended(), options.orders);
                lastReport = now;
            }
        };
        for (std::uint64_t i = 0; i < options.orders; ++i) {
            while (!monitor.waitForRoom(
                std::max<std::uint32_t>(1, options.window),
                std::min(deadline, std::chrono::steady_clock::now() + 100ms))) {
                report(false);
                if (std::chrono::steady_clock::now() >= deadline)
                    break;
            }
            if (std::chrono::steady_clock::now() >= deadline)
                break;
            client::Outgoing<contracts::PlaceOrder> order;
            customers.next(i, order.body(), run);
            const std::string id = "place-" + std::string(order->getOrderId().cStr());
            order->getMeta().setMessageId(id);
            monitor.expect(id);
            bus.send(order, ORDERS_QUEUE);
            ++result.ordersSent;
            report(false);
        }
        while (!monitor.waitDone(100ms)) {
            report(false);
            if (std::chrono::steady_clock::now() >= deadline)
                break;
        }
        report(true);
        monitor.fill(result);
    }
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    for (auto& service : services) {
        result.serviceSummaries.push_back(service->summary());
        const client::BusStats stats = service->busStats();
        result.published += stats.published;
        result.handled += stats.handled;
    }
    result.published += bus.stats().published;
    result.handled += bus.stats().handled;
    for (auto it = services.rbegin(); it != services.rend(); ++it)
        (*it)->stop();
    connection->close();

    if (mails) {
        for (const std::string& problem : outboxProblems(readOutbox(options.outbox)))
            result.problems.push_back("outbox: " + problem);
    }
    return result;
}

std::string formatSummary(const SimulationOptions& options, const SimulationResult& r) {
    auto line = [](const char* label, const std::string& value) {
        char text[256];
        std::snprintf(text, sizeof text, "  %-22s %s\n", label, value.c_str());
        return std::string(text);
    };
    auto n = [](std::uint64_t v) { return std::to_string(v); };
    auto ms = [&](double q) {
        if (r.latenciesMicros.empty())
            return std::string("-");
        const std::size_t i =
            std::min(r.latenciesMicros.size() - 1,
                     static_cast<std::size_t>(q * static_cast<double>(r.latenciesMicros.size())));
        char text[32];
        std::snprintf(text, sizeof text, "%.1f ms",
                      static_cast<double>(r.latenciesMicros[i]) / 1000.0);
        return std::string(text);
    };
    std::string out = "delivery run: " + n(r.ordersSent) + " orders, seed " + n(options.seed) +
                      ", " + n(options.couriers) + " couriers, broker " + options.broker + "\n";
    out += line("orders", n(r.ordersSent) + " sent: " + n(r.placed) + " placed, " + n(r.rejected) +
                              " rejected");
    out += line("delivered", n(r.delivered) + " (returned to sender " + n(r.returned) +
                                 ", failed attempts " + n(r.failedAttempts) + ")");
    out += line("invoiced", n(r.invoiced));
    out += line("notifications sent", n(r.emails));
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.2f s, %.0f orders/s", r.seconds,
                  r.seconds > 0 ? static_cast<double>(r.ordersSent) / r.seconds : 0.0);
    out += line("messages routed",
                n(r.published) + " published, " + n(r.handled) + " handled in this process");
    out += line("time", rate);
    out +=
        line("end-to-end latency", "p50 " + ms(0.50) + ", p90 " + ms(0.90) + ", p99 " + ms(0.99) +
                                       ", max " + ms(1.0) + " (order sent to its end)");
    for (const std::string& summary : r.serviceSummaries)
        out += "  - " + summary + "\n";
    if (r.problems.empty()) {
        out += line("checks", "ok: every order ended, every delivery invoiced once, mail in order");
    } else {
        out += line("checks", "FAILED");
        for (const std::string& problem : r.problems)
            out += "    " + problem + "\n";
    }
    return out;
}

} // namespace depot::delivery
