#pragma once
// Direct exchange: a message goes to the bindings whose key equals its routing key exactly.
// Indexed by a hash map from key to destinations, so routing cost does not depend on how many
// bindings there are; a route cache (route_cache.h) in front of it keeps hot keys in one flat
// table, since a 100,000-key node map misses the CPU caches on every lookup.

#include "broker/core/counted_destinations.h"
#include "broker/core/exchange.h"
#include "broker/core/key_hash.h"
#include "broker/core/route_cache.h"

#include <string>
#include <unordered_map>

namespace depot::core {

class DirectExchange final : public Exchange {
public:
    DirectExchange(std::string name, ExchangeOptions options)
        : Exchange(std::move(name), ExchangeType::DIRECT, std::move(options)) {}

    void route(std::string_view routingKey, const FieldTable& headers,
               std::vector<Destination>& out) override;

private:
    void indexAdd(const BindingEntry& binding) override;
    void indexRemove(const BindingEntry& binding) override;

    std::unordered_map<std::string, CountedDestinations, KeyHash, std::equal_to<>> byKey_;
    RouteCache cache_;
};

} // namespace depot::core
