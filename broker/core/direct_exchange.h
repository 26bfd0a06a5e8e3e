#pragma once
// Direct exchange: a message goes to the bindings whose key equals its routing key exactly.
// Indexed by a hash map from key to destinations, so routing cost does not depend on how many
// bindings there are.

#include "broker/core/counted_destinations.h"
#include "broker/core/exchange.h"

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

    struct KeyHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::unordered_map<std::string, CountedDestinations, KeyHash, std::equal_to<>> byKey_;
};

} // namespace depot::core
