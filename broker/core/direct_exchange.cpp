#include "broker/core/direct_exchange.h"

namespace depot::core {

void DirectExchange::route(std::string_view routingKey, const FieldTable&,
                           std::vector<Destination>& out) {
    auto it = byKey_.find(routingKey);
    if (it != byKey_.end())
        it->second.appendTo(out);
}

void DirectExchange::indexAdd(const BindingEntry& binding) {
    byKey_[binding.key].add(binding.destination);
}

void DirectExchange::indexRemove(const BindingEntry& binding) {
    auto it = byKey_.find(binding.key);
    if (it == byKey_.end())
        return;
    it->second.remove(binding.destination);
    if (it->second.empty())
        byKey_.erase(it);
}

} // namespace depot::core
