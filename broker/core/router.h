#pragma once
// Routing written once for every exchange type: starting at the exchange a message was
// published to, ask each exchange for its destinations, follow exchange-to-exchange bindings
// (and alternate exchanges where an exchange routes nowhere), and collect each queue once.
// Marks on the objects ("visited in publish N") replace a visited set, so a route allocates
// nothing, cycles end, and a queue reachable by several paths gets the message once, as in
// RabbitMQ.

#include "broker/core/destination.h"
#include "broker/core/field_table.h"

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace depot::core {

class Exchange;
class Queue;

class Router {
public:
    // Looks up an alternate exchange by name; nullptr if it does not exist.
    using ExchangeLookup = std::function<Exchange*(std::string_view)>;

    explicit Router(ExchangeLookup lookup) : lookup_(std::move(lookup)) {}

    // Appends to `out` every queue the message reaches, once each.
    void route(Exchange& start, std::string_view routingKey, const FieldTable& headers,
               std::vector<Queue*>& out);

private:
    ExchangeLookup lookup_;
    std::uint64_t epoch_ = 0;
    std::vector<Exchange*> pending_;        // exchanges still to visit
    std::vector<Destination> destinations_; // one exchange's answer
};

} // namespace depot::core
