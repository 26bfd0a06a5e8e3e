#include "broker/core/topic_exchange.h"

#include <algorithm>

namespace depot::core {

void TopicExchange::route(std::string_view routingKey, const FieldTable&,
                          std::vector<Destination>& out) {
    if (auto it = cache_.find(routingKey); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
    }
    const std::size_t first = out.size();
    trie_.match(routingKey, [&out](Destination d) { out.push_back(d); });

    if (cache_.size() >= MAX_CACHED_KEYS)
        cache_.clear();
    // Cache each destination once, so a hit does no duplicate work downstream.
    std::vector<Destination> matched(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
    std::sort(matched.begin(), matched.end(),
              [](Destination a, Destination b) { return a.bits() < b.bits(); });
    matched.erase(std::unique(matched.begin(), matched.end()), matched.end());
    cache_.emplace(std::string(routingKey), std::move(matched));
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
