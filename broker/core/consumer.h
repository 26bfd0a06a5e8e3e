#pragma once
// A consumer: a subscription of one channel to one queue. It has a tag (unique on its channel),
// a prefetch limit (how many deliveries may be unacknowledged at once; 0 = no limit) and, for
// no-ack consumers, none of that bookkeeping. Owned by its Channel; the Queue keeps a pointer
// in its consumer list and its round-robin ring until the consumer is cancelled.

#include "broker/core/delivery_sink.h"

#include <cstdint>
#include <string>

namespace depot::core {

class Channel;
class Queue;

struct ConsumeOptions {
    std::string consumerTag;         // empty: the broker generates "amq.ctag-..."
    std::uint32_t prefetchCount = 0; // 0 = unlimited; ignored with noAck, as in RabbitMQ
    bool noAck = false;              // auto-ack: a message is settled as soon as it is delivered
    bool exclusive = false;          // no other consumer may use the queue meanwhile
};

class Consumer {
public:
    Consumer(std::string tag, Queue& queue, Channel& channel, DeliverySink& sink,
             const ConsumeOptions& options)
        : tag_(std::move(tag)), queue_(&queue), channel_(&channel), sink_(&sink),
          prefetchCount_(options.prefetchCount), noAck_(options.noAck),
          exclusive_(options.exclusive) {}

    const std::string& tag() const { return tag_; }
    Queue& queue() const { return *queue_; }
    Channel& channel() const { return *channel_; }
    DeliverySink& sink() const { return *sink_; }
    std::uint32_t prefetchCount() const { return prefetchCount_; }
    bool noAck() const { return noAck_; }
    bool exclusive() const { return exclusive_; }
    std::uint32_t unackedCount() const { return unacked_; }

    // Whether this consumer can take one more message now (prefetch room, channel flow on).
    bool canTake() const;

    // Bookkeeping by Queue and Channel.
    void onDelivered() { ++unacked_; }
    void onSettled() { --unacked_; }
    bool inRing = false; // in its queue's round-robin ring of consumers ready for messages

private:
    std::string tag_;
    Queue* queue_;
    Channel* channel_;
    DeliverySink* sink_;
    std::uint32_t prefetchCount_;
    bool noAck_;
    bool exclusive_;
    std::uint32_t unacked_ = 0;
};

} // namespace depot::core
