// `delivery run` as a library call: the whole business in one process, on an embedded broker,
// over depot:// and over amqp:// (RabbitMQ), checked from the outside (the counts, and the
// outbox file read back).

#include "tests/client/test_urls.h"
#include "tests/support/process.h"

#include "services/outbox.h"
#include "services/simulation.h"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <tuple>

using depot::delivery::readOutbox;
using depot::delivery::runSimulation;
using depot::delivery::SimulationOptions;
using depot::delivery::SimulationResult;
using depot::tests::TempDir;

namespace {

SimulationResult simulate(const std::string& broker, std::uint64_t orders, std::uint64_t seed,
                          const TempDir& dir) {
    SimulationOptions options;
    options.broker = broker;
    options.orders = orders;
    options.seed = seed;
    options.outbox = dir.file("outbox.txt");
    options.timeout = std::chrono::seconds(90);
    return runSimulation(options, {});
}

auto counts(const SimulationResult& r) {
    return std::make_tuple(r.ordersSent, r.placed, r.rejected, r.delivered, r.returned,
                           r.failedAttempts, r.invoiced, r.emails);
}

// What a customer reads: their mail, checked against the run's counts.
void checkOutbox(const TempDir& dir, const SimulationResult& r) {
    const auto emails = readOutbox(dir.file("outbox.txt"));
    CHECK(emails.size() == r.emails);
    std::map<std::string, std::uint64_t> byKind;
    std::set<std::string> invoiced;
    for (const auto& email : emails) {
        ++byKind[email.kind];
        if (email.kind == "invoice")
            CHECK(invoiced.insert(email.trackingId).second); // one invoice mail per package
    }
    CHECK(byKind["order-placed"] == r.placed);
    CHECK(byKind["order-rejected"] == r.rejected);
    CHECK(byKind["delivered"] == r.delivered);
    CHECK(byKind["returned"] == r.returned);
    CHECK(byKind["invoice"] == r.delivered);
    CHECK(depot::delivery::outboxProblems(emails).empty());
    // Each customer's mail in the order of their parcels' lives: per package, the placed mail
    // first and the invoice last.
    std::map<std::string, std::vector<std::string>> lives;
    for (const auto& email : emails)
        if (!email.trackingId.empty())
            lives[email.trackingId].push_back(email.kind);
    for (const auto& life : lives) { // (clang 14 cannot capture structured bindings)
        const std::vector<std::string>& kinds = life.second;
        CAPTURE(life.first);
        CHECK(kinds.front() == "order-placed");
        CHECK((kinds.back() == "invoice" || kinds.back() == "returned"));
    }
}

} // namespace

TEST_CASE("delivery run: every order ends, each delivery is invoiced once and mailed in order") {
    TempDir dir;
    const SimulationResult r = simulate(depot::tests::freshEmbeddedUrl(), 400, 3, dir);
    for (const auto& problem : r.problems)
        FAIL_CHECK(problem);
    CHECK(r.settled);
    CHECK(r.ordersSent == 400);
    CHECK(r.placed + r.rejected == 400);
    CHECK(r.delivered + r.returned == r.placed);
    CHECK(r.rejected > 0);       // some parcels are too heavy, or for nowhere
    CHECK(r.failedAttempts > 0); // couriers miss some customers
    CHECK(r.invoiced == r.delivered);
    CHECK(r.emails == r.placed + r.rejected + r.failedAttempts + r.delivered + r.invoiced);
    CHECK(r.latenciesMicros.size() == 400);
    // Billing's own ledger, not the events: a second invoice would show there.
    bool billed = false;
    for (const auto& summary : r.serviceSummaries)
        if (summary.rfind("billing: ", 0) == 0) {
            CHECK(summary.rfind("billing: " + std::to_string(r.delivered) + " invoices,", 0) == 0);
            billed = true;
        }
    CHECK(billed);
    checkOutbox(dir, r);
}

TEST_CASE("delivery run: the same seed gives the same counts, another seed others") {
    TempDir a, b, c;
    const SimulationResult first = simulate(depot::tests::freshEmbeddedUrl(), 300, 11, a);
    const SimulationResult again = simulate(depot::tests::freshEmbeddedUrl(), 300, 11, b);
    const SimulationResult other = simulate(depot::tests::freshEmbeddedUrl(), 300, 12, c);
    CHECK(first.problems.empty());
    CHECK(counts(first) == counts(again));
    CHECK(counts(first) != counts(other));
}

TEST_CASE("delivery run: the same business over depot:// to a broker in another thread") {
    depot::tests::TestServer server;
    TempDir dir;
    const SimulationResult r = simulate(server.url(), 200, 5, dir);
    for (const auto& problem : r.problems)
        FAIL_CHECK(problem);
    CHECK(r.settled);
    checkOutbox(dir, r);
}

// The scale-out path: the same services, unchanged, on RabbitMQ (the test node, a vhost of its
// own). Nothing in services/ knows which broker it talks to.
TEST_CASE("delivery run: the same business over amqp:// on RabbitMQ") {
    const auto url = depot::tests::freshAmqpUrl();
    if (!url) {
        MESSAGE("no test RabbitMQ node (rabbitmq-server not installed when cmake ran)");
        return;
    }
    TempDir dir;
    const SimulationResult r = simulate(*url, 200, 5, dir);
    for (const auto& problem : r.problems)
        FAIL_CHECK(problem);
    CHECK(r.settled);
    checkOutbox(dir, r);
}
