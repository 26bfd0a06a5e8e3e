// Flow control: a consumer that stops reading must not make depotd buffer without limit, nor
// a publisher that outruns the consumers of its queue; a consumer that takes nothing holds
// nobody.

#include "broker/net/flow_control.h"
#include "tests/net/raw_client.h"
#include "tests/net/test_server.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>

using namespace depot;
using namespace depot::tests;

TEST_CASE("a consumer that stops reading leaves messages in the queue, and loses none") {
    TestServer server;
    constexpr int MESSAGES = 3000;
    const std::string body(16 * 1024, 'b');

    RawClient consumer(server.port());
    consumer.hello();
    REQUIRE(consumer.nextKind() == wire::Frame::HELLO_OK);
    consumer.send(2, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("q"); });
    REQUIRE(consumer.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
    consumer.send(3, [](wire::Frame::Builder f) {
        auto c = f.initConsume();
        c.setQueue("q");
        c.setNoAck(true); // no prefetch bound at all: only flow control holds the broker back
    });
    REQUIRE(consumer.nextKind() == wire::Frame::CONSUME_OK);
    // From here the consumer reads nothing until the publisher is done.

    RawClient publisher(server.port());
    publisher.hello();
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    for (int i = 0; i < MESSAGES; ++i)
        publisher.send(0, [&](wire::Frame::Builder f) {
            auto p = f.initPublish();
            p.setRoutingKey("q");
            p.setBody(
                capnp::Data::Reader(reinterpret_cast<const kj::byte*>(body.data()), body.size()));
        });
    // A confirmed publish after them: when it is answered, all of them have been routed.
    publisher.send(9, [](wire::Frame::Builder f) { f.initPublish().setRoutingKey("nowhere"); });
    REQUIRE(publisher.nextKind() == wire::Frame::CONFIRM);

    const auto queues =
        server.run([](net::Server& s) { return s.runtime().broker().defaultVhost().listQueues(); });
    REQUIRE(queues.size() == 1);
    // 48 MiB were published; socket buffers and the 512 KiB outbox hold a fraction of it.
    CHECK(queues[0].ready * body.size() >= 24u * 1024 * 1024);

    int delivered = 0;
    while (delivered < MESSAGES) {
        const auto kind = consumer.nextKind();
        REQUIRE(kind.has_value());
        if (*kind == wire::Frame::DELIVER)
            ++delivered;
    }
    CHECK(delivered == MESSAGES);
}

namespace {

void publishSmall(RawClient& publisher, int count) {
    for (int i = 0; i < count; ++i)
        publisher.send(0, [](wire::Frame::Builder f) {
            auto p = f.initPublish();
            p.setRoutingKey("q");
            p.setBody(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("0123456789"), 10));
        });
}

// Makes `consumer` consume "q" with acks and this prefetch.
void startConsumer(RawClient& consumer, std::uint32_t prefetch, std::uint32_t heartbeat = 0) {
    consumer.hello("guest", "guest", heartbeat);
    REQUIRE(consumer.nextKind() == wire::Frame::HELLO_OK);
    consumer.send(2, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("q"); });
    REQUIRE(consumer.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
    consumer.send(3, [&](wire::Frame::Builder f) {
        auto c = f.initConsume();
        c.setQueue("q");
        c.setPrefetchCount(prefetch);
    });
    REQUIRE(consumer.nextKind() == wire::Frame::CONSUME_OK);
}

std::uint64_t readyIn(TestServer& server, const std::string& queue) {
    return server.run([&](net::Server& s) {
        return s.runtime().broker().defaultVhost().findQueue(queue)->readyCount();
    });
}

} // namespace

TEST_CASE("a publisher that outruns the consumers of its queue is held near the flow limit, "
          "and loses nothing") {
    TestServer server;
    constexpr int MESSAGES = 60'000;
    RawClient consumer(server.port(), std::chrono::milliseconds(5000));
    startConsumer(consumer, 100);

    // Much faster than the consumer below: without flow control the whole run piles up.
    RawClient publisher(server.port(), std::chrono::milliseconds(5000));
    publisher.hello();
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    std::thread publishing([&] { publishSmall(publisher, MESSAGES); });

    std::atomic<bool> consuming = true;
    std::uint64_t mostReady = 0;
    bool listedInFlow = false; // as `depotctl list connections` shows it
    std::thread sampling([&] {
        while (consuming) {
            mostReady = std::max(mostReady, readyIn(server, "q"));
            for (const net::SessionInfo& s :
                 server.run([](net::Server& s) { return s.listSessions(); }))
                listedInFlow |= s.flow;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    });
    int delivered = 0;
    while (delivered < MESSAGES) {
        std::uint64_t tag = 0;
        REQUIRE(consumer.receive([&](wire::Frame::Reader f) {
            if (f.which() == wire::Frame::DELIVER)
                tag = f.getDeliver().getMessage().getDeliveryTag();
        }));
        if (tag == 0)
            continue;
        ++delivered;
        consumer.send(0, [&](wire::Frame::Builder f) { f.initAck().setDeliveryTag(tag); });
        if (delivered % 25 == 0) // about 25,000 a second at most
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    consuming = false;
    sampling.join();
    publishing.join();
    CHECK(delivered == MESSAGES);
    // Past the limit, the frames of the publisher's last read are still routed, and 200 ms in
    // which the consumer took nothing (a slow machine, a sanitizer build) release the publisher
    // until the queue drains again. Without flow control the backlog passes 45,000 here.
    CHECK(mostReady > net::FlowControl::HIGH / 2);
    CHECK(mostReady < 2 * net::FlowControl::HIGH);
    CHECK(listedInFlow);
}

TEST_CASE("a queue whose consumer takes nothing more holds no publisher") {
    TestServer server;
    constexpr int MESSAGES = 3 * static_cast<int>(net::FlowControl::HIGH);
    RawClient consumer(server.port(), std::chrono::milliseconds(5000));
    startConsumer(consumer, 1); // never acks: stuck after the first delivery

    RawClient publisher(server.port(), std::chrono::milliseconds(5000));
    publisher.hello();
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    std::thread publishing([&] { publishSmall(publisher, MESSAGES); });
    publishing.join();
    // A confirmed publish after them: when it is answered, all of them have been routed.
    publisher.send(9, [](wire::Frame::Builder f) { f.initPublish().setRoutingKey("nowhere"); });
    REQUIRE(publisher.nextKind() == wire::Frame::CONFIRM);
    CHECK(readyIn(server, "q") == MESSAGES - 1);
}

TEST_CASE("a queue whose consumer requeues all it takes holds its publisher only for a moment") {
    TestServer server;
    constexpr int MESSAGES = 2 * static_cast<int>(net::FlowControl::HIGH);
    RawClient consumer(server.port(), std::chrono::milliseconds(500));
    startConsumer(consumer, 10);
    std::atomic<bool> publishing = true;
    std::thread requeueing([&] { // takes all the time, and the queue never shrinks
        while (publishing) {
            std::uint64_t tag = 0;
            if (!consumer.receive([&](wire::Frame::Reader f) {
                    if (f.which() == wire::Frame::DELIVER)
                        tag = f.getDeliver().getMessage().getDeliveryTag();
                }))
                continue;
            if (tag != 0)
                consumer.send(0, [&](wire::Frame::Builder f) {
                    auto n = f.initNack();
                    n.setDeliveryTag(tag);
                    n.setRequeue(true);
                });
        }
    });

    RawClient publisher(server.port(), std::chrono::milliseconds(5000));
    publisher.hello();
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    publishSmall(publisher, MESSAGES);
    publisher.send(9, [](wire::Frame::Builder f) { f.initPublish().setRoutingKey("nowhere"); });
    const auto answer = publisher.nextKind();
    publishing = false;
    requeueing.join();
    REQUIRE(answer == wire::Frame::CONFIRM);
    CHECK(readyIn(server, "q") > net::FlowControl::HIGH);
}

TEST_CASE("a publisher held longer than two heartbeat intervals is not taken for dead") {
    net::ServerConfig config;
    config.heartbeatSeconds = 1;
    TestServer server(config);
    constexpr int MESSAGES = static_cast<int>(net::FlowControl::HIGH) + 5'000;
    RawClient consumer(server.port(), std::chrono::milliseconds(5000));
    startConsumer(consumer, 100, 1);
    std::atomic<int> delivered = 0;
    std::thread consuming([&] { // at most 5,000 a second: draining to the release takes 3 s
        while (delivered < MESSAGES) {
            std::uint64_t tag = 0;
            if (!consumer.receive([&](wire::Frame::Reader f) {
                    if (f.which() == wire::Frame::DELIVER)
                        tag = f.getDeliver().getMessage().getDeliveryTag();
                }))
                break;
            if (tag == 0)
                continue;
            consumer.send(0, [&](wire::Frame::Builder f) { f.initAck().setDeliveryTag(tag); });
            if (++delivered % 5 == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });

    // Silent but for its publishes, which the broker does not read while it holds them.
    RawClient publisher(server.port(), std::chrono::milliseconds(10'000));
    publisher.hello("guest", "guest", 1);
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    publishSmall(publisher, MESSAGES);
    publisher.send(9, [](wire::Frame::Builder f) { f.initPublish().setRoutingKey("nowhere"); });
    const auto answer = publisher.nextKind();
    consuming.join();
    CHECK(answer == wire::Frame::CONFIRM);
    CHECK(delivered == MESSAGES);
}
