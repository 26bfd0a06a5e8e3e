#pragma once
// A publish as the AMQP 0-9-1 bytes on the wire: a basic.publish method frame, a content header
// frame and as many body frames as the frame size requires, appended to a buffer. The amqp://
// transport writes many of these with one send() instead of letting rabbitmq-c send each frame
// of each publish on its own (three system calls per message, and three wake-ups of RabbitMQ's
// reader when it keeps up). rabbitmq-c still encodes the method's arguments and the properties
// (amqp_encode_method, amqp_encode_properties); this adds the framing around them.

#include <amqp.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace depot::client::amqp {

struct PublishFrame {
    amqp_channel_t channel = 0;
    std::string_view exchange;
    std::string_view routingKey;
    bool mandatory = false;
    const amqp_basic_properties_t* properties = nullptr;
    std::string_view body;
};

// Throws Error (INVALID_ARGUMENT) for an exchange name or routing key longer than AMQP's 255
// bytes.
void checkNames(std::string_view exchange, std::string_view routingKey);

// Appends the publish's frames to `out`, none larger than `frameMax` bytes (the negotiated
// frame_max, at least 4096). Throws Error (INVALID_ARGUMENT) when it cannot be encoded (see
// checkNames; properties larger than one frame, or a text property over 255 bytes); `out` is
// then unchanged.
void appendPublish(std::string& out, const PublishFrame& publish, std::size_t frameMax);

} // namespace depot::client::amqp
