#include "broker/core/topic_exchange.h"

#include <algorithm>

namespace depot::core {

void TopicExchange::route(std::string_view routingKey, const FieldTable&,
                          std::vector<Destination>& out) {
    const std::uint64_t hash = hashKey(routingKey);
    if (cache_.lookup(routingKey, hash, out))
        return;
    const auto first = static_cast<std::ptrdiff_t>(out.size());
    trie_.match(routingKey, [&out](Destination d) { out.push_back(d); });
    // Several patterns may lead to one destination: keep each once, so a hit does no duplicate
    // work downstream (the router would drop the duplicates anyway).
    std::sort(out.begin() + first, out.end(),
              [](Destination a, Destination b) { return a.bits() < b.bits(); });
    out.erase(std::unique(out.begin() + first, out.end()), out.end());
    cache_.insert(routingKey, hash, out.data() + first,
                  out.size() - static_cast<std::size_t>(first));
}

void TopicExchange::indexAdd(const BindingEntry& binding) {
    trie_.add(binding.key, binding.destination);
    cache_.clear();
}

void TopicExchange::indexRemove(const BindingEntry& binding) {
    trie_.remove(binding.key, binding.destination);
    cache_.clear();
}

} // namespace depot::core
