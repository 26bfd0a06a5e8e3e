// depotd's network layer through its wire protocol, with a bare client: the handshake, each
// kind of request, and every kind of bad input. The server runs in this process (TestServer),
// so the sanitizers watch it too.

#include "protocol/convert.h"
#include "tests/net/raw_client.h"
#include "tests/net/test_server.h"
#include "tests/support/process.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace depot;
using namespace depot::tests;

namespace {

std::string errorOf(RawClient& client, wire::ErrorCode* code = nullptr, bool* fatal = nullptr) {
    std::string message;
    bool got = false;
    while (client.receive([&](wire::Frame::Reader f) {
        if (f.isError()) {
            message = f.getError().getMessage();
            if (code)
                *code = f.getError().getCode();
            if (fatal)
                *fatal = f.getError().getFatal();
            got = true;
        }
    })) {
        if (got)
            break;
    }
    return message;
}

void openClient(RawClient& client) {
    client.hello();
    REQUIRE(client.nextKind() == wire::Frame::HELLO_OK);
}

} // namespace

TEST_CASE("hello is answered with helloOk, the agreed heartbeat and the frame limit") {
    net::ServerConfig config;
    config.heartbeatSeconds = 30;
    TestServer server(config);
    RawClient client(server.port());
    client.hello("guest", "guest", 10);
    bool checked = false;
    REQUIRE(client.receive([&](wire::Frame::Reader f) {
        REQUIRE(f.isHelloOk());
        CHECK(f.getRequestId() == 1);
        CHECK(f.getHelloOk().getProtocolVersion() == wire::PROTOCOL_VERSION);
        CHECK(f.getHelloOk().getHeartbeatSeconds() == 10);
        CHECK(f.getHelloOk().getMaxFrameBytes() == config.maxFrameBytes);
        checked = true;
    }));
    CHECK(checked);
}

TEST_CASE("wrong credentials get ACCESS_REFUSED and the connection is closed") {
    TestServer server;
    RawClient client(server.port());
    client.hello("guest", "wrong");
    wire::ErrorCode code{};
    bool fatal = false;
    const std::string message = errorOf(client, &code, &fatal);
    CHECK(code == wire::ErrorCode::ACCESS_REFUSED);
    CHECK(fatal);
    CHECK(message.find("login was refused") != std::string::npos);
    CHECK(client.closedByServer());
}

TEST_CASE("a frame before hello is UNEXPECTED_FRAME and closes the connection") {
    TestServer server;
    RawClient client(server.port());
    client.send(7, [](wire::Frame::Builder f) { f.setPurge("q"); });
    wire::ErrorCode code{};
    errorOf(client, &code);
    CHECK(code == wire::ErrorCode::UNEXPECTED_FRAME);
    CHECK(client.closedByServer());
}

TEST_CASE("a client may not send server frames") {
    TestServer server;
    RawClient client(server.port());
    openClient(client);
    client.send(0, [](wire::Frame::Builder f) { f.initDeliver(); });
    wire::ErrorCode code{};
    const std::string message = errorOf(client, &code);
    CHECK(code == wire::ErrorCode::UNEXPECTED_FRAME);
    CHECK(message.find("deliver") != std::string::npos);
    CHECK(client.closedByServer());
}

TEST_CASE("garbage bytes are a FRAME_ERROR, and other connections carry on") {
    TestServer server;
    RawClient good(server.port());
    openClient(good);
    RawClient bad(server.port());
    const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bad.sendBytes(garbage.data(), garbage.size());
    wire::ErrorCode code{};
    errorOf(bad, &code);
    CHECK(code == wire::ErrorCode::FRAME_ERROR);
    CHECK(bad.closedByServer());

    good.send(2, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("still-here"); });
    CHECK(good.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
}

TEST_CASE("a frame larger than --max-frame is refused from its header, before its bytes") {
    net::ServerConfig config;
    config.maxFrameBytes = 64 * 1024;
    TestServer server(config);
    RawClient client(server.port());
    openClient(client);
    // One segment of 1 GiB announced: the server must not wait for (or allocate) it.
    const std::uint32_t header[2] = {0, (1u << 30) / 8};
    client.sendBytes(header, sizeof header);
    wire::ErrorCode code{};
    const std::string message = errorOf(client, &code);
    CHECK(code == wire::ErrorCode::FRAME_ERROR);
    CHECK(message.find("exceeds the limit") != std::string::npos);
    CHECK(client.closedByServer());
}

TEST_CASE("a frame announcing absurdly many segments is a FRAME_ERROR") {
    TestServer server;
    RawClient client(server.port());
    const std::uint32_t header[2] = {0xFFFFFFFFu, 1};
    client.sendBytes(header, sizeof header);
    wire::ErrorCode code{};
    errorOf(client, &code);
    CHECK(code == wire::ErrorCode::FRAME_ERROR);
    CHECK(client.closedByServer());
}

TEST_CASE("a frame whose pointers point outside it is a FRAME_ERROR, not a crash") {
    TestServer server;
    RawClient client(server.port());
    openClient(client);
    // One segment of two words: a root struct pointer whose offset runs far past the segment.
    const std::uint32_t words[6] = {0, 2, 0x7FFFFFF0u, 0x00010001u, 0, 0};
    client.sendBytes(words, sizeof words);
    wire::ErrorCode code{};
    errorOf(client, &code);
    CHECK(code == wire::ErrorCode::FRAME_ERROR);
    CHECK(client.closedByServer());
}

TEST_CASE("an unknown frame type gets NOT_IMPLEMENTED and the connection carries on") {
    TestServer server;
    RawClient client(server.port());
    openClient(client);
    capnp::MallocMessageBuilder builder;
    auto frame = builder.initRoot<wire::Frame>();
    frame.setRequestId(5);
    frame.setHeartbeat();
    kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
    // The union's discriminant is the UInt16 after requestId in the data section; a future
    // frame type has a number this server does not know.
    auto bytes = words.asBytes();
    const std::size_t dataStart = 8 /*table*/ + 8 /*root pointer*/;
    const std::uint16_t future = 999;
    std::memcpy(bytes.begin() + dataStart + 8, &future, sizeof future);
    client.sendBytes(bytes.begin(), bytes.size());
    wire::ErrorCode code{};
    const std::string message = errorOf(client, &code);
    CHECK(code == wire::ErrorCode::NOT_IMPLEMENTED);
    CHECK(message.find("unknown frame type 999") != std::string::npos);
    client.send(6, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("after"); });
    CHECK(client.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
}

TEST_CASE("a truncated frame followed by a hang-up leaves the server serving") {
    TestServer server;
    {
        RawClient client(server.port());
        openClient(client);
        const std::uint32_t header[2] = {0, 100}; // announces 800 bytes, sends 8
        client.sendBytes(header, sizeof header);
    }
    RawClient next(server.port());
    openClient(next);
}

TEST_CASE("a peer that connects and says nothing is closed after the handshake timeout") {
    net::ServerConfig config;
    config.handshakeTimeout = std::chrono::milliseconds(300);
    TestServer server(config);
    RawClient client(server.port());
    wire::ErrorCode code{};
    errorOf(client, &code);
    CHECK(code == wire::ErrorCode::FRAME_ERROR);
    CHECK(client.closedByServer());
    CHECK(server.run([](net::Server& s) { return s.sessionCount(); }) == 0);
}

TEST_CASE("a peer that stops sending heartbeats is dropped and its unacked messages requeued") {
    net::ServerConfig config;
    config.heartbeatSeconds = 1;
    TestServer server(config);
    RawClient client(server.port(), std::chrono::milliseconds(5000));
    client.hello("guest", "guest", 1);
    REQUIRE(client.nextKind() == wire::Frame::HELLO_OK);
    client.send(2, [](wire::Frame::Builder f) { f.initDeclareQueue().setName("q"); });
    REQUIRE(client.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
    client.send(0, [](wire::Frame::Builder f) {
        auto p = f.initPublish();
        p.setRoutingKey("q");
        p.setBody(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("m"), 1));
    });
    client.send(3, [](wire::Frame::Builder f) { f.initConsume().setQueue("q"); });
    REQUIRE(client.nextKind() == wire::Frame::CONSUME_OK);
    REQUIRE(client.nextKind() == wire::Frame::DELIVER);
    // Silence (no heartbeats, no acks): two missed intervals end the connection.
    CHECK(client.closedByServer());
    const auto queues =
        server.run([](net::Server& s) { return s.runtime().broker().defaultVhost().listQueues(); });
    REQUIRE(queues.size() == 1);
    CHECK(queues[0].ready == 1);
    CHECK(queues[0].unacked == 0);
}

TEST_CASE("a publish with refusalsOnly is answered only when it is refused") {
    TestServer server;
    RawClient client(server.port());
    openClient(client);
    client.send(2, [](wire::Frame::Builder f) {
        auto d = f.initDeclareQueue();
        d.setName("one");
        const core::FieldTable arguments{{"x-max-length", std::int64_t{1}},
                                         {"x-overflow", std::string("reject-publish")}};
        protocol::toWire(arguments, d.initArguments(static_cast<unsigned>(arguments.size())));
    });
    REQUIRE(client.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
    auto publish = [&](std::uint64_t id, const char* exchange, bool refusalsOnly) {
        client.send(id, [&](wire::Frame::Builder f) {
            auto p = f.initPublish();
            p.setExchange(exchange);
            p.setRoutingKey("one");
            p.setRefusalsOnly(refusalsOnly);
        });
    };
    publish(3, "", true);        // granted: no answer
    publish(4, "", true);        // the queue is full: a nack
    publish(5, "no-such", true); // an error
    publish(6, "", false);       // an ordinary confirmed publish: answered (a nack)
    client.send(7, [](wire::Frame::Builder f) {
        auto d = f.initDeclareQueue();
        d.setName("one");
        d.setPassive(true);
    });

    std::vector<std::uint64_t> answered;
    bool done = false;
    while (!done && client.receive([&](wire::Frame::Reader f) {
        if (f.isHeartbeat())
            return;
        answered.push_back(f.getRequestId());
        if (f.getRequestId() == 4 || f.getRequestId() == 6) {
            REQUIRE(f.isConfirm());
            CHECK_FALSE(f.getConfirm().getAck());
        }
        if (f.getRequestId() == 5) {
            REQUIRE(f.isError());
            CHECK(f.getError().getCode() == wire::ErrorCode::NOT_FOUND);
        }
        if (f.getRequestId() == 7) {
            REQUIRE(f.isDeclareQueueOk());
            CHECK(f.getDeclareQueueOk().getMessageCount() == 1);
            done = true;
        }
    })) {
    }
    CHECK(answered == std::vector<std::uint64_t>{4, 5, 6, 7});
}

TEST_CASE("a persistent refusalsOnly publish to a durable queue gets no answer once on disk") {
    TempDir dir;
    net::ServerConfig config;
    config.dataDir = dir.file("data");
    TestServer server(config);
    RawClient client(server.port());
    openClient(client);
    client.send(2, [](wire::Frame::Builder f) {
        auto d = f.initDeclareQueue();
        d.setName("kept");
        d.setDurable(true);
    });
    REQUIRE(client.nextKind() == wire::Frame::DECLARE_QUEUE_OK);
    auto publish = [&](std::uint64_t id, bool refusalsOnly) {
        client.send(id, [&](wire::Frame::Builder f) {
            auto p = f.initPublish();
            p.setRoutingKey("kept");
            p.initProperties().setPersistent(true);
            p.setRefusalsOnly(refusalsOnly);
        });
    };
    publish(3, true);
    publish(4, false); // its confirm comes once 3, journaled before it, is on disk too
    std::vector<std::uint64_t> answered;
    while (answered.empty() || answered.back() != 4) {
        REQUIRE(client.receive([&](wire::Frame::Reader f) {
            if (f.isHeartbeat())
                return;
            answered.push_back(f.getRequestId());
            if (f.isConfirm())
                CHECK(f.getConfirm().getAck());
        }));
    }
    CHECK(answered == std::vector<std::uint64_t>{4});
}
