#pragma once
// A message received from a queue, by a consumer or by get(). It owns a copy of everything it
// shows, so a copy of it (or one moved from it) may outlive the handler that received it.
// ack/nack/reject go back to the broker on the connection that received it; they never block, and
// after the connection is gone they do nothing (the broker has requeued the message already).

#include "broker/core/message.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace depot::client {

// Where a Delivery's acks go: implemented by each transport.
class AckTarget {
public:
    virtual ~AckTarget() = default;
    virtual void ack(std::uint64_t deliveryTag, bool multiple) = 0;
    virtual void nack(std::uint64_t deliveryTag, bool multiple, bool requeue) = 0;
    virtual void reject(std::uint64_t deliveryTag, bool requeue) = 0;
};

class Delivery {
public:
    Delivery() = default;
    Delivery(std::weak_ptr<AckTarget> target, std::string consumerTag, std::uint64_t deliveryTag,
             bool redelivered, std::string exchange, std::string routingKey,
             core::Properties properties, std::vector<core::DeathRecord> deaths, std::string body,
             bool needsAck);

    const std::string& consumerTag() const { return consumerTag_; } // "" for get()
    std::uint64_t deliveryTag() const { return deliveryTag_; }
    bool redelivered() const { return redelivered_; }
    const std::string& exchange() const { return exchange_; }
    const std::string& routingKey() const { return routingKey_; }
    const core::Properties& properties() const { return properties_; }
    const std::vector<core::DeathRecord>& deaths() const { return deaths_; } // x-death
    const std::string& body() const { return body_; }

    // Each does nothing when the delivery needs no ack (noAck consumer or get) or is settled.
    void ack(bool multiple = false);
    void nack(bool requeue = true, bool multiple = false);
    void reject(bool requeue = true);
    bool settled() const { return settled_; }

private:
    friend class DeliveryFields;
    std::weak_ptr<AckTarget> target_;
    std::string consumerTag_;
    std::uint64_t deliveryTag_ = 0;
    bool redelivered_ = false;
    std::string exchange_;
    std::string routingKey_;
    core::Properties properties_;
    std::vector<core::DeathRecord> deaths_;
    std::string body_;
    bool settled_ = true;
};

// For transports: a Delivery's fields, to fill in place from what was read (no temporaries to
// build and move in). Not for applications, which see a Delivery as read-only.
class DeliveryFields {
public:
    explicit DeliveryFields(Delivery& d) : d_(d) {}
    void head(std::weak_ptr<AckTarget> target, std::uint64_t deliveryTag, bool redelivered,
              bool needsAck) {
        d_.target_ = std::move(target);
        d_.deliveryTag_ = deliveryTag;
        d_.redelivered_ = redelivered;
        d_.settled_ = !needsAck;
    }
    std::string& consumerTag() { return d_.consumerTag_; }
    std::string& exchange() { return d_.exchange_; }
    std::string& routingKey() { return d_.routingKey_; }
    core::Properties& properties() { return d_.properties_; }
    std::vector<core::DeathRecord>& deaths() { return d_.deaths_; }
    std::string& body() { return d_.body_; }

private:
    Delivery& d_;
};

} // namespace depot::client
