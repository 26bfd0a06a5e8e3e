// Flow control: a consumer that stops reading must not make depotd buffer without limit.

#include "tests/net/raw_client.h"
#include "tests/net/test_server.h"

#include <doctest/doctest.h>

#include <string>

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
