// depotd's DurableMessages: a callback given to afterSync runs once everything journaled before
// the batch that took it is on disk. A session groups its publishers' confirms under one such
// callback while syncGeneration() has not changed; this is the contract that makes the
// grouping safe: what was journaled after a callback was handed to a batch is not covered by
// it, and the generation says so.

#include "tests/support/core_helpers.h"
#include "tests/support/process.h"

#include "broker/net/durable_messages.h"
#include "broker/store/message_store.h"

#include "protocol/convert.h"
#include "protocol/wire.capnp.h"

#include <asio.hpp>
#include <capnp/message.h>
#include <capnp/serialize.h>
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

// A broker with the durable queue "q", its persistent messages kept in `dir` by a
// DurableMessages (that first recovers what is there, for a restart).
struct Durable {
    asio::io_context io;
    core::Broker broker;
    core::Vhost& vhost = broker.defaultVhost();
    core::Channel& channel = vhost.openChannel();
    net::DurableMessages durable;
    std::size_t recovered = 0;
    Durable(const TempDir& dir, bool recover) : durable(dir.file("messages"), io, nullptr) {
        vhost.setJournal(&durable);
        declareQueue(channel, "q", queueOptions({}, /*durable=*/true));
        if (recover)
            recovered = durable.recover(broker, T0);
    }
    ~Durable() { vhost.setJournal(nullptr); }
    // Runs the loop until what was journaled so far is on disk.
    void sync() {
        bool synced = false;
        durable.afterSync([&](const std::string*) { synced = true; });
        runUntil(io, [&] { return synced; });
        REQUIRE(synced);
    }
};

} // namespace

TEST_CASE("durable messages: a sync callback covers what was journaled before its batch only") {
    TempDir dir;
    Durable f(dir, /*recover=*/false);
    asio::io_context& io = f.io;
    core::Channel& channel = f.channel;
    net::DurableMessages& durable = f.durable;

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
}

// What a persistent message carries comes back from disk unchanged: every property, the
// dead-letter history, and bodies empty, small and large.
TEST_CASE("durable messages: every field of a stored message comes back after a restart") {
    TempDir dir;
    core::Properties properties = everyProperty();
    properties.expiration = std::chrono::milliseconds(3'600'000); // not due during the test
    const std::vector<std::string> bodies = {"", "hello", std::string(16384, 'x') + "end"};
    {
        Durable f(dir, /*recover=*/false);
        core::Channel& channel = f.channel;
        // A dead-lettered one: rejected from "src" into "q", with its x-death.
        declareQueue(channel, "src",
                     queueOptions({{"x-dead-letter-exchange", std::string("")},
                                   {"x-dead-letter-routing-key", std::string("q")}}));
        for (const std::string& body : bodies)
            (void)publish(channel, "", "q", body, T0, properties);
        (void)publish(channel, "", "src", "dead", T0, properties);
        auto rejected = get(channel, "src", /*noAck=*/false);
        REQUIRE(rejected);
        DEPOT_REQUIRE_OK(channel.reject(rejected->deliveryTag, /*requeue=*/false, T0));
        f.sync();
    }
    Durable restarted(dir, /*recover=*/true);
    CHECK(restarted.recovered == 4);
    for (const std::string& body : bodies) {
        auto got = get(restarted.channel, "q", /*noAck=*/true);
        REQUIRE(got);
        CHECK(got->message->body == body);
        CHECK(got->message->exchange.empty());
        CHECK(got->message->routingKey == "q");
        CHECK(got->redelivered);
        checkSameProperties(got->message->properties.unpack(), properties);
        CHECK(got->message->deaths.empty());
    }
    auto dead = get(restarted.channel, "q", /*noAck=*/true);
    REQUIRE(dead);
    CHECK(dead->message->body == "dead");
    REQUIRE(dead->message->deaths.size() == 1);
    CHECK(dead->message->deaths[0].queue == "src");
    CHECK(dead->message->deaths[0].reason == core::DeathReason::REJECTED);
    CHECK(dead->message->deaths[0].routingKeys == std::vector<std::string>{"src"});
    CHECK(dead->message->deaths[0].originalExpiration == properties.expiration);
}

// A data dir written by an earlier version holds messages in Cap'n Proto's unpacked stream
// framing, the body inside: they are still read.
TEST_CASE("durable messages: a message stored in the earlier, unpacked form is read") {
    TempDir dir;
    {
        capnp::MallocMessageBuilder builder;
        auto m = builder.initRoot<wire::Message>();
        m.setRoutingKey("q");
        m.initProperties().setPersistent(true);
        m.getProperties().setCorrelationId("old-1");
        const std::string body = "written by 0.1";
        m.setBody(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(body.data()), body.size()));
        const auto flat = capnp::messageToFlatArray(builder);
        const auto bytes = flat.asChars();
        store::Recovered nothing;
        store::MessageStore::Options options;
        options.directory = dir.file("messages");
        auto store = store::MessageStore::open(options, nothing);
        store->enqueue("q", store->addMessage(std::string_view(bytes.begin(), bytes.size())));
        store->sync();
    }
    Durable restarted(dir, /*recover=*/true);
    CHECK(restarted.recovered == 1);
    auto got = get(restarted.channel, "q", /*noAck=*/true);
    REQUIRE(got);
    CHECK(got->message->body == "written by 0.1");
    CHECK(got->message->routingKey == "q");
    CHECK(got->message->properties.unpack().correlationId == "old-1");
}

// The form on disk keeps a small message small: its zeros packed, its body stored once.
TEST_CASE("durable messages: a 100-byte persistent message takes under 250 bytes on disk") {
    TempDir dir;
    Durable f(dir, /*recover=*/false);
    const std::uint64_t before = f.durable.stats().bytesOnDisk;
    for (int i = 0; i < 100; ++i)
        (void)publish(f.channel, "", "q", std::string(100, 'b'), T0, persistent());
    f.sync();
    const std::uint64_t perMessage = (f.durable.stats().bytesOnDisk - before) / 100;
    CAPTURE(perMessage);
    CHECK(perMessage < 250); // the message and its enqueue record; 342 unpacked
}
