// client/amqp_frames.h: a publish's AMQP frames, read back frame by frame with rabbitmq-c's own
// decoders, as RabbitMQ would read them. (The client tests over amqp:// send them to a real
// RabbitMQ; these pin the framing itself: sizes, channel, end bytes, body split.)

#include "client/amqp_codec.h"
#include "client/amqp_frames.h"
#include "client/error.h"

#include <amqp_framing.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace depot;
using client::amqp::appendPublish;
using client::amqp::PublishFrame;

namespace {

struct Frame {
    int type = 0;
    int channel = 0;
    std::string payload;
};

std::uint64_t get(const std::string& bytes, std::size_t at, int size) {
    std::uint64_t value = 0;
    for (int i = 0; i < size; ++i)
        value =
            (value << 8) | static_cast<unsigned char>(bytes.at(at + static_cast<std::size_t>(i)));
    return value;
}

// Splits bytes into frames, checking each frame's size and end byte; consumes everything.
std::vector<Frame> framesOf(const std::string& bytes) {
    std::vector<Frame> frames;
    std::size_t at = 0;
    while (at < bytes.size()) {
        REQUIRE(bytes.size() - at >= 8);
        Frame f;
        f.type = static_cast<int>(get(bytes, at, 1));
        f.channel = static_cast<int>(get(bytes, at + 1, 2));
        const std::size_t size = get(bytes, at + 3, 4);
        REQUIRE(bytes.size() - at >= 8 + size);
        f.payload = bytes.substr(at + 7, size);
        CHECK(static_cast<unsigned char>(bytes[at + 7 + size]) == AMQP_FRAME_END);
        frames.push_back(std::move(f));
        at += 8 + size;
    }
    return frames;
}

amqp_bytes_t view(std::string& s, std::size_t from) {
    return amqp_bytes_t{s.size() - from, s.data() + from};
}

struct Pool {
    Pool() { init_amqp_pool(&pool, 4096); }
    ~Pool() { empty_amqp_pool(&pool); }
    amqp_pool_t pool{};
};

} // namespace

TEST_CASE("amqp frames: a publish is a method, a content header and its body") {
    core::Properties properties;
    properties.contentType = "text/plain";
    properties.correlationId = "rpc-7";
    properties.replyTo = "amq.gen-1";
    properties.headers = core::FieldTable{{"attempt", std::int64_t{3}}};
    const client::amqp::EncodedProperties encoded(properties);
    std::string out = "before"; // appended to, not replaced
    appendPublish(out,
                  PublishFrame{2, "orders", "order.placed", true, encoded.get(), "hello, broker"},
                  131072);
    REQUIRE(out.substr(0, 6) == "before");
    std::vector<Frame> frames = framesOf(out.substr(6));
    REQUIRE(frames.size() == 3);
    for (const Frame& f : frames)
        CHECK(f.channel == 2);

    Pool pool;
    CHECK(frames[0].type == AMQP_FRAME_METHOD);
    CHECK(get(frames[0].payload, 0, 4) == AMQP_BASIC_PUBLISH_METHOD);
    void* decoded = nullptr;
    REQUIRE(amqp_decode_method(AMQP_BASIC_PUBLISH_METHOD, &pool.pool, view(frames[0].payload, 4),
                               &decoded) == AMQP_STATUS_OK);
    const auto* publish = static_cast<const amqp_basic_publish_t*>(decoded);
    CHECK(client::amqp::text(publish->exchange) == "orders");
    CHECK(client::amqp::text(publish->routing_key) == "order.placed");
    CHECK(publish->mandatory == 1);
    CHECK(publish->immediate == 0);

    CHECK(frames[1].type == AMQP_FRAME_HEADER);
    CHECK(get(frames[1].payload, 0, 2) == AMQP_BASIC_CLASS);
    CHECK(get(frames[1].payload, 2, 2) == 0);  // weight
    CHECK(get(frames[1].payload, 4, 8) == 13); // body size
    REQUIRE(amqp_decode_properties(AMQP_BASIC_CLASS, &pool.pool, view(frames[1].payload, 12),
                                   &decoded) == AMQP_STATUS_OK);
    const core::Properties back =
        client::amqp::decodeProperties(*static_cast<const amqp_basic_properties_t*>(decoded));
    CHECK(back.contentType == "text/plain");
    CHECK(back.correlationId == "rpc-7");
    CHECK(back.replyTo == "amq.gen-1");
    CHECK(back.headers == properties.headers);

    CHECK(frames[2].type == AMQP_FRAME_BODY);
    CHECK(frames[2].payload == "hello, broker");
}

TEST_CASE("amqp frames: a body larger than a frame is split, an empty one has no body frame") {
    std::string body;
    for (int i = 0; i < 10000; ++i)
        body.push_back(static_cast<char>('a' + i % 26));
    std::string out;
    appendPublish(out, PublishFrame{2, "", "q", false, nullptr, body}, 4096);
    std::vector<Frame> frames = framesOf(out);
    REQUIRE(frames.size() == 2 + 3); // 4088 + 4088 + 1824 bytes
    std::string joined;
    for (std::size_t i = 2; i < frames.size(); ++i) {
        CHECK(frames[i].type == AMQP_FRAME_BODY);
        CHECK(frames[i].payload.size() + 8 <= 4096);
        joined += frames[i].payload;
    }
    CHECK(joined == body);
    CHECK(get(frames[1].payload, 4, 8) == body.size());

    out.clear();
    appendPublish(out, PublishFrame{2, "", "q", false, nullptr, ""}, 4096);
    frames = framesOf(out);
    REQUIRE(frames.size() == 2);
    CHECK(get(frames[1].payload, 4, 8) == 0);
}

TEST_CASE("amqp frames: what AMQP cannot carry is refused and nothing is appended") {
    std::string out = "kept";
    CHECK_THROWS_AS(appendPublish(out,
                                  PublishFrame{2, std::string(256, 'x'), "q", false, nullptr, "b"},
                                  131072),
                    client::Error);
    CHECK_THROWS_AS(
        appendPublish(out, PublishFrame{2, "", std::string(300, 'k'), false, nullptr, "b"}, 131072),
        client::Error);
    core::Properties big;
    big.headers = core::FieldTable{{"blob", std::string(8000, 'z')}};
    const client::amqp::EncodedProperties encoded(big);
    CHECK_THROWS_AS(appendPublish(out, PublishFrame{2, "", "q", false, encoded.get(), "b"}, 4096),
                    client::Error);
    CHECK(out == "kept");
    // The same properties fit a frame of RabbitMQ's default size.
    appendPublish(out, PublishFrame{2, "", "q", false, encoded.get(), "b"}, 131072);
    CHECK(framesOf(out.substr(4)).size() == 3);
}
