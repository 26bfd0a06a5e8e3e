#pragma once
// Topic exchange: binding keys are patterns over dot-separated words (`*` one word, `#` zero or
// more; see topic_trie.h for RabbitMQ's exact rules). Matching walks a word trie; in front of it
// sits a bounded cache of routing key -> destinations (route_cache.h), cleared whenever a
// binding changes.

#include "broker/core/exchange.h"
#include "broker/core/route_cache.h"
#include "broker/core/topic_trie.h"

#include <string>

namespace depot::core {

class TopicExchange final : public Exchange {
public:
    static constexpr std::size_t MAX_CACHED_KEYS = RouteCache::MAX_KEYS;

    TopicExchange(std::string name, ExchangeOptions options)
        : Exchange(std::move(name), ExchangeType::TOPIC, std::move(options)) {}

    void route(std::string_view routingKey, const FieldTable& headers,
               std::vector<Destination>& out) override;

    std::size_t cachedKeys() const { return cache_.size(); }

private:
    void indexAdd(const BindingEntry& binding) override;
    void indexRemove(const BindingEntry& binding) override;

    TopicTrie<Destination> trie_;
    RouteCache cache_;
};

} // namespace depot::core
