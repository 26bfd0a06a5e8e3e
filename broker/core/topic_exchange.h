#pragma once
// Topic exchange: binding keys are patterns over dot-separated words (`*` one word, `#` zero or
// more; see topic_trie.h for RabbitMQ's exact rules). Matching walks a word trie; in front of it
// sits a bounded cache of routing key -> destinations, cleared whenever a binding changes, since
// real traffic repeats a modest set of keys and a hash lookup beats a trie walk.

#include "broker/core/exchange.h"
#include "broker/core/topic_trie.h"

#include <string>
#include <unordered_map>

namespace depot::core {

class TopicExchange final : public Exchange {
public:
    // Past this many distinct cached keys the cache is cleared and refilled: memory stays
    // bounded under key churn (unique ids in keys), and hot keys come back within a few publishes.
    static constexpr std::size_t MAX_CACHED_KEYS = 4096;

    TopicExchange(std::string name, ExchangeOptions options)
        : Exchange(std::move(name), ExchangeType::TOPIC, std::move(options)) {}

    void route(std::string_view routingKey, const FieldTable& headers,
               std::vector<Destination>& out) override;

    std::size_t cachedKeys() const { return cache_.size(); }

private:
    void indexAdd(const BindingEntry& binding) override;
    void indexRemove(const BindingEntry& binding) override;

    struct KeyHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    TopicTrie<Destination> trie_;
    std::unordered_map<std::string, std::vector<Destination>, KeyHash, std::equal_to<>> cache_;
};

} // namespace depot::core
