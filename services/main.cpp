// delivery: the package-delivery business on Depot.
//
//   delivery run [--orders N] [--couriers N] [--seed S] [--broker URL]   a day of the business
//   delivery <service> --broker depot://...                              one service, alone
//   delivery order --from A --to B --weight KG [--express]               place one order
//   delivery track ID                                                    a package's history
//
// Exit status: 0 success, 1 failure (a refused order, a run whose checks failed, no broker),
// 2 usage error.

#include "services/addresses.h"
#include "services/service.h"
#include "services/simulation.h"
#include "services/world.h"

#include "client/bus.h"
#include "protocol/delivery.capnp.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using namespace depot::delivery;
namespace contracts = depot::contracts;
using depot::client::Bus;
using depot::client::Connection;
using depot::client::Outgoing;
using depot::client::Received;

constexpr const char* DEFAULT_DEPOTD = "depot://guest:guest@127.0.0.1:7672/";

std::string money(std::uint64_t cents) {
    char text[32];
    std::snprintf(text, sizeof text, "%llu.%02llu", static_cast<unsigned long long>(cents / 100),
                  static_cast<unsigned long long>(cents % 100));
    return text;
}

std::string localTime(std::int64_t micros) {
    const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
    std::tm tm{};
    ::localtime_r(&seconds, &tm);
    char text[40];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
    char full[48];
    std::snprintf(full, sizeof full, "%s.%03d", text, static_cast<int>(micros / 1000 % 1000));
    return full;
}

// A service's SIGINT and SIGTERM: blocked in every thread, taken by runService.
sigset_t stopSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

int runService(const std::string& name, const ServiceOptions& options,
               std::chrono::seconds statusInterval) {
    // Blocked before the service starts any thread, so every thread inherits the mask and the
    // signals wait for sigtimedwait below. (Other commands keep the default: Ctrl-C ends them.)
    const sigset_t signals = stopSignals();
    ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    auto service = makeService(name, options);
    service->start();
    std::cout << service->instance() << ": running on " << options.broker
              << (options.stateDir.empty() ? std::string(", state in memory")
                                           : ", state in " + options.stateDir.string())
              << std::endl;
    for (;;) {
        timespec wait{};
        wait.tv_sec = statusInterval.count() > 0 ? statusInterval.count() : 3600;
        const int signal = ::sigtimedwait(&signals, nullptr, &wait);
        if (signal == SIGINT || signal == SIGTERM)
            break;
        if (statusInterval.count() > 0)
            std::cout << service->summary() << std::endl;
    }
    service->stop();
    std::cout << service->summary() << "\n" << service->instance() << ": stopped" << std::endl;
    return 0;
}

int runSimulationCommand(SimulationOptions options, bool showProgress) {
    const bool bar = showProgress && ::isatty(STDERR_FILENO);
    std::uint64_t lastTenth = 0;
    auto progress = [&](std::uint64_t settled, std::uint64_t total) {
        if (total == 0)
            return;
        if (bar) {
            constexpr int WIDTH = 40;
            const int filled = static_cast<int>(WIDTH * settled / total);
            std::fprintf(stderr, "\r  [%s%s] %llu/%llu orders settled",
                         std::string(static_cast<std::size_t>(filled), '#').c_str(),
                         std::string(static_cast<std::size_t>(WIDTH - filled), '.').c_str(),
                         static_cast<unsigned long long>(settled),
                         static_cast<unsigned long long>(total));
            std::fflush(stderr);
        } else if (showProgress && settled * 10 / total > lastTenth) {
            lastTenth = settled * 10 / total;
            std::fprintf(stderr, "  %llu/%llu orders settled\n",
                         static_cast<unsigned long long>(settled),
                         static_cast<unsigned long long>(total));
        }
    };
    const SimulationResult result = runSimulation(options, progress);
    if (bar)
        std::fprintf(stderr, "\n");
    std::cout << formatSummary(options, result);
    if (std::find(options.services.begin(), options.services.end(), "notifications") !=
            options.services.end() ||
        options.allServices)
        std::cout << "  emails are in " << options.outbox.string() << "\n";
    return result.problems.empty() && result.settled ? 0 : 1;
}

int placeOrder(const std::string& broker, const std::string& from, const std::string& to,
               double kilograms, bool express, const std::string& customer,
               std::chrono::seconds timeout) {
    depot::client::ConnectionOptions connectionOptions;
    connectionOptions.clientName = "delivery-order";
    connectionOptions.reconnect = false;
    auto connection = Connection::open(broker, connectionOptions);
    Bus bus(connection, "delivery-order");

    std::random_device random;
    const std::string orderId =
        "order-" + std::to_string(random()) + "-" + std::to_string(random() % 100000);

    // The answer is an event, not a reply: listen before asking.
    std::mutex mutex;
    std::condition_variable answered;
    std::string outcome;
    bool placed = false;
    depot::client::SubscribeOptions listen;
    listen.exclusive = true;
    auto answers = bus.subscribe("", listen);
    answers
        .on<contracts::OrderPlaced>(
            [&](const Received<contracts::OrderPlaced>& m) {
                if (m->getOrderId() != orderId)
                    return;
                std::lock_guard lock(mutex);
                placed = true;
                outcome = std::string(m->getTrackingId().cStr()) + "\norder " + orderId +
                          " placed: tracking id " + m->getTrackingId().cStr() + ", price " +
                          money(m->getPriceCents());
                answered.notify_all();
            },
            {"#"})
        .on<contracts::OrderRejected>(
            [&](const Received<contracts::OrderRejected>& m) {
                if (m->getOrderId() != orderId)
                    return;
                std::lock_guard lock(mutex);
                outcome = "order " + orderId + " rejected: " + m->getReason().cStr();
                answered.notify_all();
            },
            {"#"});
    answers.start();

    depot::client::QueueDeclareOptions ordersQueue; // as the orders service declares it
    ordersQueue.durable = true;
    connection->declareQueue(ORDERS_QUEUE, ordersQueue);
    Outgoing<contracts::PlaceOrder> order;
    order->setOrderId(orderId);
    order->setCustomer(customer);
    order->setFromRegion(from);
    order->setToRegion(to);
    order->setWeightGrams(static_cast<std::uint32_t>(std::lround(kilograms * 1000)));
    order->setSpeed(express ? contracts::Speed::EXPRESS : contracts::Speed::STANDARD);
    bus.send(order, ORDERS_QUEUE);

    std::unique_lock lock(mutex);
    if (!answered.wait_for(lock, timeout, [&] { return !outcome.empty(); })) {
        std::cerr << "delivery: order " << orderId << " sent, but no answer within "
                  << timeout.count() << " s (is the orders service running?)\n";
        return 1;
    }
    if (placed) {
        std::cout << outcome << "\n";
        return 0;
    }
    std::cerr << "delivery: " << outcome << "\n";
    return 1;
}

int track(const std::string& broker, const std::string& trackingId, std::chrono::seconds timeout) {
    depot::client::ConnectionOptions connectionOptions;
    connectionOptions.clientName = "delivery-track";
    connectionOptions.reconnect = false;
    auto connection = Connection::open(broker, connectionOptions);
    Bus bus(connection, "delivery-track");
    Outgoing<contracts::TrackRequest> request;
    request->setTrackingId(trackingId);
    auto reply = bus.request<contracts::TrackReply>(request, TRACKING_QUEUE, timeout);
    if (!reply->getFound()) {
        std::cerr << "delivery: no package " << trackingId << "\n";
        return 1;
    }
    std::cout << trackingId << ": " << reply->getStatus().cStr() << "\n";
    for (auto step : reply->getHistory()) {
        char line[64];
        std::snprintf(line, sizeof line, "  %s  %-15s",
                      localTime(step.getTimestampMicros()).c_str(), step.getStep().cStr());
        std::cout << line << step.getDetail().cStr() << "\n";
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"delivery: a package-delivery business of autonomous services that talk only "
                 "through a Depot broker"};
    app.require_subcommand(1);

    SimulationOptions simulation;
    std::vector<std::string> only;
    bool noProgress = false;
    std::uint64_t timeoutSeconds = 120;
    auto* run = app.add_subcommand(
        "run", "simulate a day: start every service (with no --broker, on a broker inside this "
               "process), place orders, follow each to its end, print a summary; exit 1 if a "
               "check fails");
    run->add_option("--orders", simulation.orders, "orders to place")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{10'000'000}))
        ->capture_default_str();
    run->add_option("--couriers", simulation.couriers, "couriers on the road")
        ->check(CLI::Range(1u, 100'000u))
        ->capture_default_str();
    run->add_option("--seed", simulation.seed, "same seed, same orders and outcomes")
        ->capture_default_str();
    run->add_option("--broker", simulation.broker,
                    "embedded:, depot://user:pass@host:port/ (depotd) or "
                    "amqp://user:pass@host:port/vhost (RabbitMQ)")
        ->capture_default_str();
    run->add_option("--services", only,
                    "run only these services here (the others run elsewhere); 'none' for none")
        ->delimiter(',');
    run->add_option("--outbox", simulation.outbox, "where notifications writes the emails")
        ->capture_default_str();
    run->add_option("--window", simulation.window, "orders under way at most")
        ->check(CLI::Range(1u, 1'000'000u))
        ->capture_default_str();
    run->add_option("--timeout", timeoutSeconds, "seconds for everything to settle")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{86'400}))
        ->capture_default_str();
    run->add_flag("--no-progress", noProgress, "no progress on stderr");

    // One subcommand per service, with the same options.
    ServiceOptions service;
    service.broker = DEFAULT_DEPOTD;
    std::uint64_t workMs = 0;
    std::uint64_t statusSeconds = 10;
    std::map<std::string, CLI::App*> serviceCommands;
    for (const std::string& name : runnableServices()) {
        auto* command =
            app.add_subcommand(name, "run the " + name + " service alone, until SIGTERM");
        command->add_option("--broker", service.broker, "the broker: depot://... or amqp://...")
            ->capture_default_str();
        command->add_option("--state-dir", service.stateDir,
                            "keep inbox and ledgers here, to survive a restart");
        command->add_option("--instance", service.instance,
                            "this instance's name (a second instance needs its own)");
        command->add_option("--seed", service.seed, "couriers: the dice")->capture_default_str();
        command->add_option("--couriers", service.couriers, "dispatch: couriers on the road")
            ->check(CLI::Range(1u, 100'000u))
            ->capture_default_str();
        command->add_option("--work-ms", workMs, "simulated work per message, in ms")
            ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{60'000}))
            ->capture_default_str();
        command->add_option("--outbox", service.outbox, "notifications: the email outbox file");
        command
            ->add_option("--status-interval", statusSeconds,
                         "seconds between status lines; 0 for none")
            ->capture_default_str();
        serviceCommands[name] = command;
    }

    std::string broker = DEFAULT_DEPOTD;
    std::uint64_t answerSeconds = 10;
    std::string from, to, customer = "cli-customer";
    double kilograms = 0;
    bool express = false;
    auto* order = app.add_subcommand("order", "place one order; prints its tracking id");
    order->add_option("--from", from, "pickup region")->required()->check(CLI::IsMember(regions()));
    order->add_option("--to", to, "destination region")
        ->required()
        ->check(CLI::IsMember(regions()));
    order->add_option("--weight", kilograms, "kilograms")
        ->required()
        ->check(CLI::Range(0.001, 1000.0));
    order->add_flag("--express", express, "express delivery");
    order->add_option("--customer", customer, "who orders")->capture_default_str();
    order->add_option("--broker", broker, "the broker")->capture_default_str();
    order->add_option("--timeout", answerSeconds, "seconds to wait for the answer")
        ->capture_default_str();

    std::string trackingId;
    auto* trackCommand = app.add_subcommand("track", "print a package's history");
    trackCommand->add_option("id", trackingId, "tracking id")->required();
    trackCommand->add_option("--broker", broker, "the broker")->capture_default_str();
    trackCommand->add_option("--timeout", answerSeconds, "seconds to wait for the answer")
        ->capture_default_str();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    try {
        if (run->parsed()) {
            if (!only.empty()) {
                simulation.allServices = false;
                for (const std::string& name : only) {
                    if (name == "none")
                        continue;
                    if (std::find(runnableServices().begin(), runnableServices().end(), name) ==
                        runnableServices().end()) {
                        std::cerr << "delivery: --services: no service '" << name << "'\n";
                        return 2;
                    }
                    simulation.services.push_back(name);
                }
            }
            simulation.timeout = std::chrono::seconds(timeoutSeconds);
            return runSimulationCommand(simulation, !noProgress);
        }
        for (const auto& [name, command] : serviceCommands) {
            if (command->parsed()) {
                service.workTime = std::chrono::milliseconds(workMs);
                return runService(name, service, std::chrono::seconds(statusSeconds));
            }
        }
        if (order->parsed())
            return placeOrder(broker, from, to, kilograms, express, customer,
                              std::chrono::seconds(answerSeconds));
        if (trackCommand->parsed())
            return track(broker, trackingId, std::chrono::seconds(answerSeconds));
    } catch (const depot::client::Error& e) {
        std::cerr << "delivery: " << e.what() << "\n";
        return e.kind() == depot::client::ErrorKind::INVALID_ARGUMENT ? 2 : 1;
    } catch (const std::exception& e) {
        std::cerr << "delivery: " << e.what() << "\n";
        return 1;
    }
    return 2;
}
