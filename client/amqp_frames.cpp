#include "client/amqp_frames.h"

#include "client/error.h"

#include <amqp_framing.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace depot::client::amqp {
namespace {

constexpr std::size_t FRAME_HEADER = 7; // type, channel, payload size
constexpr char FRAME_END = static_cast<char>(AMQP_FRAME_END);
constexpr std::size_t CONTENT_HEADER = 12; // class, weight, body size (before the properties)

void put(std::string& out, std::uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; --i)
        out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void frameHeader(std::string& out, std::uint8_t type, amqp_channel_t channel, std::size_t payload) {
    put(out, type, 1);
    put(out, channel, 2);
    put(out, payload, 4);
}

// Scratch space for rabbitmq-c's encoders, one per thread, grown to the largest frame asked.
amqp_bytes_t scratch(std::size_t size) {
    thread_local std::vector<char> buffer;
    if (buffer.size() < size)
        buffer.resize(size);
    return amqp_bytes_t{size, buffer.data()};
}

} // namespace

void checkNames(std::string_view exchange, std::string_view routingKey) {
    if (exchange.size() > UINT8_MAX || routingKey.size() > UINT8_MAX)
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "an AMQP exchange name or routing key is at most 255 bytes");
}

void appendPublish(std::string& out, const PublishFrame& publish, std::size_t frameMax) {
    const std::size_t payloadMax = frameMax - FRAME_HEADER - 1;
    checkNames(publish.exchange, publish.routingKey);

    amqp_basic_publish_t method{};
    method.exchange =
        amqp_bytes_t{publish.exchange.size(), const_cast<char*>(publish.exchange.data())};
    method.routing_key =
        amqp_bytes_t{publish.routingKey.size(), const_cast<char*>(publish.routingKey.data())};
    method.mandatory = publish.mandatory ? 1 : 0;
    const amqp_bytes_t methodSpace = scratch(payloadMax);
    const int methodBytes = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &method, methodSpace);
    if (methodBytes < 0)
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    std::string("basic.publish could not be encoded: ") +
                        amqp_error_string2(methodBytes));
    const std::size_t start = out.size();
    frameHeader(out, AMQP_FRAME_METHOD, publish.channel, 4 + static_cast<std::size_t>(methodBytes));
    put(out, AMQP_BASIC_PUBLISH_METHOD, 4);
    out.append(static_cast<const char*>(methodSpace.bytes), static_cast<std::size_t>(methodBytes));
    out.push_back(FRAME_END);

    amqp_basic_properties_t none{};
    const amqp_bytes_t propertySpace = scratch(payloadMax - CONTENT_HEADER);
    const int propertyBytes =
        amqp_encode_properties(AMQP_BASIC_CLASS,
                               const_cast<amqp_basic_properties_t*>(
                                   publish.properties != nullptr ? publish.properties : &none),
                               propertySpace);
    if (propertyBytes < 0) {
        out.resize(start);
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "the message's properties cannot be sent over AMQP: larger than one frame of " +
                        std::to_string(frameMax) + " bytes, or a text property over 255 bytes (" +
                        amqp_error_string2(propertyBytes) + ")");
    }
    frameHeader(out, AMQP_FRAME_HEADER, publish.channel,
                CONTENT_HEADER + static_cast<std::size_t>(propertyBytes));
    put(out, AMQP_BASIC_CLASS, 2);
    put(out, 0, 2); // weight
    put(out, publish.body.size(), 8);
    out.append(static_cast<const char*>(propertySpace.bytes),
               static_cast<std::size_t>(propertyBytes));
    out.push_back(FRAME_END);

    for (std::size_t offset = 0; offset < publish.body.size(); offset += payloadMax) {
        const std::size_t size = std::min(payloadMax, publish.body.size() - offset);
        frameHeader(out, AMQP_FRAME_BODY, publish.channel, size);
        out.append(publish.body.data() + offset, size);
        out.push_back(FRAME_END);
    }
}

} // namespace depot::client::amqp
