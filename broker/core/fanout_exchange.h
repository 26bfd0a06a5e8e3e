#pragma once
// Fanout exchange: every bound destination gets every message; keys are ignored.

#include "broker/core/counted_destinations.h"
#include "broker/core/exchange.h"

namespace depot::core {

class FanoutExchange final : public Exchange {
public:
    FanoutExchange(std::string name, ExchangeOptions options)
        : Exchange(std::move(name), ExchangeType::FANOUT, std::move(options)) {}

    void route(std::string_view, const FieldTable&, std::vector<Destination>& out) override {
        destinations_.appendTo(out);
    }

private:
    void indexAdd(const BindingEntry& binding) override { destinations_.add(binding.destination); }
    void indexRemove(const BindingEntry& binding) override {
        destinations_.remove(binding.destination);
    }

    CountedDestinations destinations_;
};

} // namespace depot::core
