#pragma once
// A DeliverySink for core tests: it records what the core hands out (deliveries and
// server-sent cancellations) and nothing else, as a sink must (STYLE.md, 5). Labels read "m1"
// for a first delivery and "m1(R)" for a redelivery, the notation of RABBITMQ-FACTS.md, so a
// test compares a whole sequence in one CHECK. The sink must outlive the consumers using it.

#include "broker/core/delivery_sink.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace depot::tests {

struct RecordedDelivery {
    std::string consumerTag;
    std::uint64_t deliveryTag = 0;
    bool redelivered = false;
    core::MessageRef message;
    std::string body;
    std::uint64_t messageCount = 0;
};

// "m1" or "m1(R)".
inline std::string deliveryLabel(std::string_view body, bool redelivered) {
    std::string label(body);
    if (redelivered)
        label += "(R)";
    return label;
}

class RecordingSink final : public core::DeliverySink {
public:
    void deliver(const core::Delivery& delivery) override {
        // consumerTag is a view valid only during the call: copy it.
        deliveries_.push_back(RecordedDelivery{
            std::string(delivery.consumerTag), delivery.deliveryTag, delivery.redelivered,
            delivery.message, delivery.message->body, delivery.messageCount});
    }

    void onCancelled(std::string_view consumerTag) override {
        cancelled_.emplace_back(consumerTag);
    }

    const std::vector<RecordedDelivery>& deliveries() const { return deliveries_; }
    const std::vector<std::string>& cancelled() const { return cancelled_; }
    std::size_t size() const { return deliveries_.size(); }
    bool empty() const { return deliveries_.empty(); }
    const RecordedDelivery& last() const { return deliveries_.back(); }

    // Every delivery as "m1" / "m1(R)", in arrival order.
    std::vector<std::string> bodies() const {
        std::vector<std::string> out;
        for (const RecordedDelivery& d : deliveries_)
            out.push_back(deliveryLabel(d.body, d.redelivered));
        return out;
    }

    // Every delivery as "A:m1" / "B:m2(R)": for several consumers sharing one sink.
    std::vector<std::string> taggedBodies() const {
        std::vector<std::string> out;
        for (const RecordedDelivery& d : deliveries_)
            out.push_back(d.consumerTag + ":" + deliveryLabel(d.body, d.redelivered));
        return out;
    }

    // The deliveries of one consumer, as labels.
    std::vector<std::string> bodiesFor(std::string_view consumerTag) const {
        std::vector<std::string> out;
        for (const RecordedDelivery& d : deliveries_)
            if (d.consumerTag == consumerTag)
                out.push_back(deliveryLabel(d.body, d.redelivered));
        return out;
    }

    // The delivery tag of a consumer's latest delivery (0 if it has none).
    std::uint64_t lastTagFor(std::string_view consumerTag) const {
        for (auto it = deliveries_.rbegin(); it != deliveries_.rend(); ++it)
            if (it->consumerTag == consumerTag)
                return it->deliveryTag;
        return 0;
    }

    void clear() {
        deliveries_.clear();
        cancelled_.clear();
    }

private:
    std::vector<RecordedDelivery> deliveries_;
    std::vector<std::string> cancelled_;
};

} // namespace depot::tests
