#pragma once
// Validation of the names clients choose: exchange and queue names, routing and binding keys.
// AMQP carries them as short strings, so 255 bytes is the hard limit; names starting with
// "amq." are reserved for the broker (RabbitMQ answers ACCESS_REFUSED when a client declares one).

#include "broker/core/error.h"

#include <cstddef>
#include <string_view>

namespace depot::core {

inline constexpr std::size_t MAX_NAME_BYTES = 255;

// For exchange.declare and queue.declare (not passive): length, and the reserved amq. prefix.
Status validateNewExchangeName(std::string_view name);
Status validateNewQueueName(std::string_view name);
// For every other use of a name (lookups, bindings, publish): length only.
Status validateName(std::string_view kind, std::string_view name);
// Routing keys on publish and binding keys on bind.
Status validateRoutingKey(std::string_view key);

bool hasReservedPrefix(std::string_view name);

} // namespace depot::core
