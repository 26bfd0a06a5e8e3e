// depotd's DurableMessages: a callback given to afterSync runs once everything journaled before
// the batch that took it is on disk. A session groups its publishers' confirms under one such
// callback while syncGeneration() has not changed; this is the contract that makes the
// grouping safe: what was journaled after a callback was handed to a batch is not covered by
// it, and the generation says so.

#include "tests/support/core_helpers.h"
#include "tests/support/process.h"

#include "broker/net/durable_messages.h"
#include "broker/store/message_store.h"

#include <asio.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace depot;
using namespace depot::tests;

namespace {

core::Properties persistent() {
    core::Properties p;
    p.deliveryMode = core::DeliveryMode::PERSISTENT;
    return p;
}

// Runs the loop until `done` or a second has passed.
template <class Done> void runUntil(asio::io_context& io, Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(std::chrono::milliseconds(5));
    }
}

// The messages a fresh store finds in the data dir: what was on disk.
std::size_t onDisk(const TempDir& dir) {
    store::Recovered recovered;
    store::MessageStore::Options options;
    options.directory = dir.file("messages");
    (void)store::MessageStore::open(options, recovered);
    return recovered.messages.size();
}

} // namespace

TEST_CASE("durable messages: a sync callback covers what was journaled before its batch only") {
    TempDir dir;
    asio::io_context io;
    core::Broker broker;
    core::Vhost& vhost = broker.defaultVhost();
    net::DurableMessages durable(dir.file("messages"), io, nullptr);
    vhost.setJournal(&durable);
    core::Channel& channel = vhost.openChannel();
    declareQueue(channel, "q", queueOptions({}, /*durable=*/true));

    CHECK_FALSE(durable.syncPending());
    (void)publish(channel, "", "q", "first", T0, persistent());
    REQUIRE(durable.syncPending());
    const std::uint64_t generation = durable.syncGeneration();
    std::vector<std::size_t> onDiskWhenCalled;
    durable.afterSync([&](const std::string* failure) {
        CHECK(failure == nullptr);
        onDiskWhenCalled.push_back(onDisk(dir));
    });
    // Journaled before the loop turned: the same batch takes it, the same callback covers it.
    (void)publish(channel, "", "q", "second", T0, persistent());
    CHECK(durable.syncGeneration() == generation);

    // The loop hands the callback to a batch: from then on, what is journaled needs another.
    runUntil(io, [&] { return durable.syncGeneration() != generation; });
    REQUIRE(durable.syncGeneration() != generation);
    (void)publish(channel, "", "q", "third", T0, persistent());
    bool thirdCovered = false;
    durable.afterSync([&](const std::string*) { thirdCovered = onDisk(dir) == 3; });

    runUntil(io, [&] { return thirdCovered; });
    REQUIRE(onDiskWhenCalled.size() == 1);
    CHECK(onDiskWhenCalled[0] >= 2); // the first two were on disk when the first callback ran
    CHECK(thirdCovered);
    vhost.setJournal(nullptr);
}
