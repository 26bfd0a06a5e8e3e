#pragma once
// A DeliverySink for code that consumes in the same process as the broker. deliver() only
// posts the user's handler to an executor, so the handler runs on a later loop turn and may
// freely ack, cancel or delete queues (the core is never re-entered from inside a delivery).
// Destroying the consumer drops handler calls that were posted but have not run yet.

#include "broker/core/delivery_sink.h"

#include <asio.hpp>

#include <functional>
#include <memory>
#include <string>

namespace depot::runtime {

class EmbeddedConsumer final : public core::DeliverySink {
public:
    using Handler = std::function<void(const core::Delivery&)>;
    using CancelHandler = std::function<void(const std::string& consumerTag)>;

    EmbeddedConsumer(asio::any_io_executor executor, Handler onDelivery,
                     CancelHandler onCancelled = {});
    ~EmbeddedConsumer();
    EmbeddedConsumer(const EmbeddedConsumer&) = delete;
    EmbeddedConsumer& operator=(const EmbeddedConsumer&) = delete;

    void deliver(const core::Delivery& delivery) override;
    void onCancelled(std::string_view consumerTag) override;

private:
    // Shared with handler calls in flight: they outlive deliver(), and must see `alive` drop.
    struct State {
        Handler onDelivery;
        CancelHandler onCancelled;
        bool alive = true;
    };
    asio::any_io_executor executor_;
    std::shared_ptr<State> state_;
};

} // namespace depot::runtime
