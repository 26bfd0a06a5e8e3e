// Each service through its contracts only, as another service would see it: pricing's quotes,
// tracking's answers, billing's exactly-once invoices, dispatch's competing consumers, and the
// mail that waits while notifications is stopped.

#include "tests/client/client_helpers.h"
#include "tests/client/test_urls.h"
#include "tests/support/process.h"

#include "services/addresses.h"
#include "services/outbox.h"
#include "services/service.h"

#include "client/bus.h"
#include "protocol/delivery.capnp.h"

#include <doctest/doctest.h>

#include <map>

using namespace std::chrono_literals;
using depot::client::Bus;
using depot::client::Connection;
using depot::client::Outgoing;
using depot::client::Received;
using depot::delivery::makeService;
using depot::delivery::ServiceOptions;
using depot::tests::eventually;
using depot::tests::TempDir;
namespace contracts = depot::contracts;

namespace {

ServiceOptions on(const std::string& broker) {
    ServiceOptions options;
    options.broker = broker;
    return options;
}

Outgoing<contracts::OrderPlaced> placed(const std::string& tracking, std::uint64_t cents = 1234) {
    Outgoing<contracts::OrderPlaced> event;
    event->setOrderId("order-" + tracking);
    event->setTrackingId(tracking);
    event->setCustomer("grace");
    event->setFromRegion("north");
    event->setToRegion("east");
    event->setWeightGrams(2000);
    event->setPriceCents(cents);
    return event;
}

Outgoing<contracts::PackageDelivered> delivered(const std::string& tracking) {
    Outgoing<contracts::PackageDelivered> event;
    event->setTrackingId(tracking);
    event->setCourierId("courier-east-1");
    event->setRegion("east");
    event->setCustomer("grace");
    event->setAttempt(1);
    return event;
}

} // namespace

TEST_CASE("pricing: quotes by weight, distance and speed, refuses what it cannot carry") {
    const std::string url = depot::tests::freshEmbeddedUrl();
    auto pricing = makeService("pricing", on(url));
    pricing->start();
    Bus bus(Connection::open(url), "test");
    auto quote = [&](std::uint32_t grams, std::uint32_t km, contracts::Speed speed) {
        Outgoing<contracts::QuoteRequest> request;
        request->setWeightGrams(grams);
        request->setDistanceKm(km);
        request->setSpeed(speed);
        return bus.request<contracts::Quote>(request, depot::delivery::PRICING_QUEUE, 5s);
    };
    auto standard = quote(2'500, 300, contracts::Speed::STANDARD);
    CHECK(standard->getAccepted());
    CHECK(standard->getPriceCents() == 490 + 3 * 35 + 30 * 15);
    auto express = quote(2'500, 300, contracts::Speed::EXPRESS);
    CHECK(express->getPriceCents() > standard->getPriceCents());
    auto heavy = quote(30'001, 10, contracts::Speed::STANDARD);
    CHECK_FALSE(heavy->getAccepted());
    CHECK(heavy->getReason() == "parcels above 30 kg are not accepted");
}

TEST_CASE("tracking: answers with a package's history in the order it happened") {
    const std::string url = depot::tests::freshEmbeddedUrl();
    auto tracking = makeService("tracking", on(url));
    tracking->start();
    Bus bus(Connection::open(url), "test");
    auto first = placed("DPTEST1");
    bus.publish(first, "order.north.placed");
    Outgoing<contracts::PackagePickedUp> picked;
    picked->setTrackingId("DPTEST1");
    picked->setRegion("north");
    bus.publish(picked, "package.north.picked-up");
    auto done = delivered("DPTEST1");
    bus.publish(done, "package.east.delivered");
    bus.publish(done, "package.east.delivered"); // a duplicate: recorded once

    auto ask = [&](const std::string& id) {
        Outgoing<contracts::TrackRequest> request;
        request->setTrackingId(id);
        return bus.request<contracts::TrackReply>(request, depot::delivery::TRACKING_QUEUE, 5s);
    };
    REQUIRE(eventually([&] { return tracking->busStats().handled == 4; })); // the copy too
    REQUIRE(ask("DPTEST1")->getHistory().size() == 3);
    auto reply = ask("DPTEST1");
    CHECK(reply->getFound());
    CHECK(reply->getStatus() == "delivered");
    CHECK(reply->getHistory()[0].getStep() == "placed");
    CHECK(reply->getHistory()[1].getStep() == "picked-up");
    CHECK(reply->getHistory()[2].getStep() == "delivered");
    CHECK_FALSE(ask("DPNOPE")->getFound());
}

TEST_CASE("billing: one invoice per package, however often its delivery is reported") {
    TempDir state;
    const std::string url = depot::tests::freshEmbeddedUrl();
    depot::tests::Inbox<std::string> invoices;
    Bus bus(Connection::open(url), "test");
    depot::client::SubscribeOptions deduplicating;
    deduplicating.inbox = std::make_shared<depot::client::Inbox>();
    auto watch = bus.subscribe("invoices-seen", deduplicating);
    watch.on<contracts::InvoiceIssued>(
        [&](const Received<contracts::InvoiceIssued>& m) {
            invoices.push(std::string(m->getTrackingId().cStr()) + " " +
                          std::to_string(m->getAmountCents()));
        },
        {"#"});
    watch.start();

    ServiceOptions options = on(url);
    options.stateDir = state.file("billing");
    {
        auto billing = makeService("billing", options);
        billing->start();
        auto order = placed("DPBILL1", 2500);
        bus.publish(order, "order.north.placed");
        auto once = delivered("DPBILL1");
        bus.publish(once, "package.east.delivered");
        auto twice = delivered("DPBILL1"); // reported again, with another message id
        bus.publish(twice, "package.east.delivered");
        REQUIRE(invoices.waitFor(1));
        REQUIRE(eventually([&] { return billing->busStats().handled == 3; }));
    }
    { // restarted with the same state: still one invoice
        auto billing = makeService("billing", options);
        billing->start();
        auto late = delivered("DPBILL1");
        bus.publish(late, "package.east.delivered");
        REQUIRE(eventually([&] { return billing->busStats().handled == 1; }));
        CHECK(billing->summary().rfind("billing: 1 invoices,", 0) == 0); // its own ledger
    }
    CHECK(invoices.items() == std::vector<std::string>{"DPBILL1 2500"});
}

TEST_CASE("dispatch: two instances share the orders (competing consumers)") {
    const std::string url = depot::tests::freshEmbeddedUrl();
    std::mutex mutex;
    std::map<std::string, int> byDispatcher;
    int total = 0;
    Bus bus(Connection::open(url), "test");
    auto watch = bus.subscribe("assignments-seen");
    watch.on<contracts::CourierAssigned>(
        [&](const Received<contracts::CourierAssigned>& m) {
            std::lock_guard lock(mutex);
            ++byDispatcher[m->getDispatcher().cStr()];
            ++total;
        },
        {"#"});
    watch.start();

    ServiceOptions first = on(url), second = on(url);
    first.instance = "dispatch-1";
    second.instance = "dispatch-2";
    first.workTime = second.workTime = 2ms; // busy enough that both are needed
    auto one = makeService("dispatch", first);
    auto two = makeService("dispatch", second);
    one->start();
    two->start();
    for (int i = 0; i < 100; ++i) {
        auto order = placed("DPFAIR" + std::to_string(i));
        bus.publish(order, "order.north.placed");
    }
    REQUIRE(eventually(
        [&] {
            std::lock_guard lock(mutex);
            return total == 100;
        },
        20s));
    std::lock_guard lock(mutex);
    // Turn by turn, each about half; a quarter each leaves room for a loaded machine.
    CHECK(byDispatcher["dispatch-1"] >= 25);
    CHECK(byDispatcher["dispatch-2"] >= 25);
}

TEST_CASE("notifications: while it is stopped the mail waits in its queue, then goes in order") {
    TempDir state;
    const std::string url = depot::tests::freshEmbeddedUrl();
    ServiceOptions options = on(url);
    options.stateDir = state.file("mail");
    Bus bus(Connection::open(url), "test");
    {
        auto notifications = makeService("notifications", options); // declares its queue
        notifications->start();
    }
    for (int i = 0; i < 5; ++i) {
        auto order = placed("DPMAIL" + std::to_string(i));
        bus.publish(order, "order.north.placed");
        auto done = delivered("DPMAIL" + std::to_string(i));
        bus.publish(done, "package.east.delivered");
    }
    const std::string outbox = state.file("mail/notifications.outbox");
    CHECK(depot::delivery::readOutbox(outbox).empty());

    auto notifications = makeService("notifications", options);
    notifications->start();
    REQUIRE(eventually([&] { return depot::delivery::readOutbox(outbox).size() == 10; }));
    const auto emails = depot::delivery::readOutbox(outbox);
    for (int i = 0; i < 5; ++i) {
        CHECK(emails[2 * i].kind == "order-placed");
        CHECK(emails[2 * i].trackingId == "DPMAIL" + std::to_string(i));
        CHECK(emails[2 * i + 1].kind == "delivered");
        CHECK(emails[2 * i + 1].trackingId == "DPMAIL" + std::to_string(i));
    }
    CHECK(depot::delivery::outboxProblems(emails).empty());
}
