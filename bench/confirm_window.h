#pragma once
// Persistent publishes with many confirms in flight: the fast way to publish durably (the
// broker writes what arrives together with one fsync). Used by the benchmarks that fill durable
// queues.

#include "client/confirm_window.h"
#include "client/connection.h"

#include <cstddef>
#include <string>

namespace depot::bench {

// Publishes `count` persistent copies of `body` to `queue` through the default exchange, at most
// `window` confirms outstanding (client::ConfirmWindow), and waits for the last; returns how
// many were not confirmed (nacked or failed).
inline std::size_t publishPersistentWindowed(client::Connection& connection,
                                             const std::string& queue, const std::string& body,
                                             std::size_t count, std::size_t window) {
    client::PublishOptions persistent;
    persistent.properties.deliveryMode = core::DeliveryMode::PERSISTENT;
    client::ConfirmWindow confirms(connection, window);
    for (std::size_t i = 0; i < count; ++i)
        confirms.publish("", queue, body, persistent);
    const client::ConfirmTally tally = confirms.wait();
    return static_cast<std::size_t>(tally.nacked + tally.failed);
}

} // namespace depot::bench
