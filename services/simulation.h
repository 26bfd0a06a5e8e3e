#pragma once
// `delivery run`: a day of the business. It starts the services (in this process, each on its
// own connection), places orders as customers would, follows every order to its end through
// the events the services publish, and checks what it sees: every order ends (placed and then
// delivered or returned, or rejected), every delivered package is invoiced once, every event a
// customer should hear about is mailed once, and each package's mail is in its life's order.
//
// Deterministic for a seed: when the run starts every service itself, the orders, their prices
// and which deliveries fail depend only on the seed, so the counts are the same on every run;
// only the timings differ. Against services running elsewhere (which may remember earlier
// runs), the order ids also carry a random run number.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace depot::delivery {

struct SimulationOptions {
    std::string broker = "embedded:";
    std::uint64_t orders = 1000;
    std::uint32_t couriers = 20;
    std::uint64_t seed = 1;
    // The services to run in this process; the others must be running elsewhere (against the
    // same broker). Default: every one of serviceNames().
    std::vector<std::string> services;
    bool allServices = true;
    std::filesystem::path outbox = "delivery-outbox.txt";
    std::uint32_t window = 256;        // orders under way at most; the next waits for one to end
    std::chrono::seconds timeout{120}; // for the whole run to settle
};

struct SimulationResult {
    std::uint64_t ordersSent = 0;
    std::uint64_t placed = 0;
    std::uint64_t rejected = 0;
    std::uint64_t delivered = 0;
    std::uint64_t returned = 0;       // final failures: back to the sender
    std::uint64_t failedAttempts = 0; // every DeliveryFailed, final or not
    std::uint64_t invoiced = 0;
    std::uint64_t emails = 0;
    std::uint64_t published = 0;               // messages this process's buses sent
    std::uint64_t handled = 0;                 // messages this process's handlers completed
    std::vector<std::int64_t> latenciesMicros; // order sent -> its end, sorted
    double seconds = 0;
    std::vector<std::string> problems; // empty: everything checked out
    std::vector<std::string> serviceSummaries;
    bool settled = false;
};

// `progress(settled, total)` is called a few times a second from the calling thread.
SimulationResult runSimulation(const SimulationOptions& options,
                               const std::function<void(std::uint64_t, std::uint64_t)>& progress);

std::string formatSummary(const SimulationOptions& options, const SimulationResult& result);

} // namespace depot::delivery
