#include "broker/runtime/embedded_consumer.h"

namespace depot::runtime {

EmbeddedConsumer::EmbeddedConsumer(asio::any_io_executor executor, Handler onDelivery,
                                   CancelHandler onCancelled)
    : executor_(std::move(executor)),
      state_(std::make_shared<State>(State{std::move(onDelivery), std::move(onCancelled), true})) {}

EmbeddedConsumer::~EmbeddedConsumer() {
    state_->alive = false;
}

void EmbeddedConsumer::deliver(const core::Delivery& delivery) {
    // The tag is a view into the core's consumer; the posted copy must own it.
    asio::post(executor_, [state = state_, tag = std::string(delivery.consumerTag),
                           copy = delivery]() mutable {
        if (!state->alive)
            return;
        copy.consumerTag = tag;
        state->onDelivery(copy);
    });
}

void EmbeddedConsumer::onCancelled(std::string_view consumerTag) {
    asio::post(executor_, [state = state_, tag = std::string(consumerTag)] {
        if (state->alive && state->onCancelled)
            state->onCancelled(tag);
    });
}

} // namespace depot::runtime
