// The memory alarm (--memory-limit): publishers are blocked, not dropped, and go on once the
// queues drain; consumers keep working throughout.

#include "tests/net/raw_client.h"
#include "tests/net/test_server.h"

#include <doctest/doctest.h>

#include <string>
#include <thread>

using namespace depot;
using namespace depot::tests;

TEST_CASE("past --memory-limit publishers are blocked until consumers drain the queue") {
    net::ServerConfig config;
    config.memoryLimitBytes = 1 << 20;
    TestServer server(config);
    constexpr int MESSAGES = 200;
    const std::string body(16 * 1024, 'm'); // 3.2 MB in all: three times the limit

    RawClient publisher(server.port(), std::chrono::milliseconds(5000));
    publisher.hello();
    REQUIRE(publisher.nextKind() == wire::Frame::HELLO_OK);
    publisher.send(2, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("q"); });
    REQUIRE(publisher.nextKind() == wire::Frame::DECLARE_QUEUE_OK);

    // Sends may block once the broker stops reading: publish from a thread of its own.
    std::thread publishing([&] {
        for (int i = 0; i < MESSAGES; ++i)
            publisher.send(0, [&](wire::Frame::Builder f) {
                auto p = f.initPublish();
                p.setRoutingKey("q");
                p.setBody(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(body.data()),
                                              body.size()));
            });
    });

    REQUIRE(publisher.nextKind() == wire::Frame::BLOCKED);
    // Blocked: what is queued stays near the limit (plus the frames of one read).
    const auto readyBytes = [&] {
        return server.run([](net::Server& s) {
            return s.runtime().broker().defaultVhost().listQueues().at(0).readyBytes;
        });
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(200)); // let a leak show, if any
    CHECK(readyBytes() < 2u * 1024 * 1024);
    CHECK(server.run([](net::Server& s) { return s.publishBlockReason(); })
              .rfind("memory alarm", 0) == 0);

    // A consumer on its own connection is not blocked; draining clears the alarm.
    RawClient consumer(server.port(), std::chrono::milliseconds(5000));
    consumer.hello();
    REQUIRE(consumer.nextKind() == wire::Frame::HELLO_OK);
    consumer.send(3, [](wire::Frame::Builder f) {
        auto c = f.initConsume();
        c.setQueue("q");
        c.setNoAck(true);
    });
    REQUIRE(consumer.nextKind() == wire::Frame::CONSUME_OK);
    int delivered = 0;
    while (delivered < MESSAGES) {
        const auto kind = consumer.nextKind();
        REQUIRE(kind.has_value());
        if (*kind == wire::Frame::DELIVER)
            ++delivered;
    }
    publishing.join();
    CHECK(delivered == MESSAGES);
    CHECK(publisher.nextKind() == wire::Frame::UNBLOCKED);
}
