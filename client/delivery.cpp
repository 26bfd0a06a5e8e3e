#include "client/delivery.h"

#include <utility>

namespace depot::client {

Delivery::Delivery(std::weak_ptr<AckTarget> target, std::string consumerTag,
                   std::uint64_t deliveryTag, bool redelivered, std::string exchange,
                   std::string routingKey, core::Properties properties,
                   std::vector<core::DeathRecord> deaths, std::string body, bool needsAck)
    : target_(std::move(target)), consumerTag_(std::move(consumerTag)), deliveryTag_(deliveryTag),
      redelivered_(redelivered), exchange_(std::move(exchange)), routingKey_(std::move(routingKey)),
      properties_(std::move(properties)), deaths_(std::move(deaths)), body_(std::move(body)),
      settled_(!needsAck) {}

void Delivery::ack(bool multiple) {
    if (settled_)
        return;
    settled_ = true;
    if (std::shared_ptr<AckTarget> target = target_.lock())
        target->ack(deliveryTag_, multiple);
}

void Delivery::nack(bool requeue, bool multiple) {
    if (settled_)
        return;
    settled_ = true;
    if (std::shared_ptr<AckTarget> target = target_.lock())
        target->nack(deliveryTag_, multiple, requeue);
}

void Delivery::reject(bool requeue) {
    if (settled_)
        return;
    settled_ = true;
    if (std::shared_ptr<AckTarget> target = target_.lock())
        target->reject(deliveryTag_, requeue);
}

} // namespace depot::client
