#include "broker/core/direct_exchange.h"

namespace depot::core {

void DirectExchange::route(std::string_view routingKey, const FieldTable&,
                           std::vector<Destination>& out) {
    const std::uint64_t hash = hashKey(routingKey);
    if (cache_.lookup(routingKey, hash, out))
        return;
    const std::size_t first = out.size();
    if (auto it = byKey_.find(routingKey); it != byKey_.end())
        it->second.appendTo(out);
    cache_.insert(routingKey, hash, out.data() + first, out.size() - first);
}

void DirectExchange::indexAdd(const BindingEntry& binding) {
    byKey_[binding.key].add(binding.destination);
    cache_.clear();
}

void DirectExchange::indexRemove(const BindingEntry& binding) {
    auto it = byKey_.find(binding.key);
    if (it == byKey_.end())
        return;
    it->second.remove(binding.destination);
    cache_.clear();
    if (it->second.empty())
        byKey_.erase(it);
}

} // namespace depot::core
