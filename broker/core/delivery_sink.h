#pragma once
// How the core hands messages out. A consumer registers with a DeliverySink; the queue calls
// deliver() for each message it gives that consumer. Implementations only enqueue (append to an
// outbox, or post to an executor) and never call back into the core from inside deliver():
// the core is in the middle of a mutation when it calls them (STYLE.md, 5).

#include "broker/core/message.h"

#include <cstdint>
#include <string_view>

namespace depot::core {

struct Delivery {
    std::string_view consumerTag;  // valid during the call only; empty for a basic.get
    std::uint64_t deliveryTag = 0; // per channel, from 1; what ack/nack/reject name
    bool redelivered = false;      // delivered before and requeued (or its channel closed)
    MessageRef message;
    std::uint64_t messageCount = 0; // ready messages left in the queue (basic.get-ok reports it)
};

class DeliverySink {
public:
    virtual void deliver(const Delivery& delivery) = 0;
    // The broker ended this consumer (its queue was deleted): AMQP's server-sent basic.cancel.
    virtual void onCancelled(std::string_view consumerTag) = 0;
    // Whether the sink can take more deliveries now. A network sink says no while its socket
    // backlog is full: its consumers then stop taking messages (which go to other consumers, or
    // wait in the queue) until the owner calls Channel::resumeDeliveries. Must not call the core.
    virtual bool acceptsMore() const { return true; }

protected:
    ~DeliverySink() = default;
};

} // namespace depot::core
