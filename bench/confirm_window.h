#pragma once
// Persistent publishes with many confirms in flight: the fast way to publish durably (the
// broker writes what arrives together with one fsync). Used by the benchmarks that fill durable
// queues.

#include "client/connection.h"

#include <cstddef>
#include <deque>
#include <future>
#include <string>

namespace depot::bench {

// Publishes `count` persistent copies of `body` to `queue` through the default exchange, at most
// `window` confirms outstanding (publishConfirmedAsync), and waits for the last; returns how
// many were nacked.
inline std::size_t publishPersistentWindowed(client::Connection& connection,
                                             const std::string& queue, const std::string& body,
                                             std::size_t count, std::size_t window) {
    client::PublishOptions persistent;
    persistent.properties.deliveryMode = core::DeliveryMode::PERSISTENT;
    std::size_t nacked = 0;
    std::deque<std::future<client::Confirmation>> pending;
    auto settleOldest = [&] {
        if (!pending.front().get().ack)
            ++nacked;
        pending.pop_front();
    };
    for (std::size_t i = 0; i < count; ++i) {
        if (pending.size() >= window)
            settleOldest();
        pending.push_back(connection.publishConfirmedAsync("", queue, body, persistent));
    }
    while (!pending.empty())
        settleOldest();
    return nacked;
}

} // namespace depot::bench
