// Differential test: TopicTrie against the plain recursive matcher, over random patterns and keys
// built from the words that exercise RabbitMQ's edge cases (empty words, `*`, `#`, and
// wildcards appearing literally in routing keys).

#include "broker/core/topic_trie.h"
#include "tests/support/reference_topic_matcher.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

using depot::core::TopicTrie;
using depot::tests::referenceTopicMatch;

namespace {

std::string randomKey(std::mt19937& rng, const std::vector<std::string>& alphabet) {
    const int wordCount = std::uniform_int_distribution<int>(0, 6)(rng);
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string key;
    for (int i = 0; i < wordCount; ++i) {
        if (i > 0)
            key += '.';
        key += alphabet[pick(rng)];
    }
    return key;
}

struct Binding {
    std::string bindingKey;
    int value;
};

// Checks every key in `routingKeys` and returns how many comparisons were made.
int checkAgainstReference(TopicTrie<int>& trie, const std::vector<Binding>& bindings,
                          const std::vector<std::string>& routingKeys) {
    for (const auto& routingKey : routingKeys) {
        std::set<int> expected;
        for (const auto& binding : bindings)
            if (referenceTopicMatch(binding.bindingKey, routingKey))
                expected.insert(binding.value);
        std::set<int> actual;
        trie.match(routingKey, [&actual](int value) { actual.insert(value); });
        INFO("routing key: '", routingKey, "'");
        REQUIRE(actual == expected);
    }
    return static_cast<int>(routingKeys.size());
}

} // namespace

TEST_CASE("topic trie agrees with the reference matcher on random bindings and keys") {
    const std::vector<std::string> patternWords{"", "a", "b", "*", "#"};
    const std::vector<std::string> keyWords{"", "a", "b", "#", "*"};
    std::mt19937 rng(20261128);
    int comparisons = 0;

    for (int round = 0; round < 3000; ++round) {
        TopicTrie<int> trie;
        std::vector<Binding> bindings;
        const int bindingCount = std::uniform_int_distribution<int>(1, 8)(rng);
        for (int i = 0; i < bindingCount; ++i) {
            // Values repeat and patterns may repeat: both counted and multi-pattern values occur.
            Binding binding{randomKey(rng, patternWords),
                            std::uniform_int_distribution<int>(0, 5)(rng)};
            trie.add(binding.bindingKey, binding.value);
            bindings.push_back(binding);
        }
        REQUIRE(trie.bindingCount() == bindings.size());

        std::vector<std::string> routingKeys{"", ".", "a", "a.", ".a"};
        for (int i = 0; i < 12; ++i)
            routingKeys.push_back(randomKey(rng, keyWords));
        comparisons += checkAgainstReference(trie, bindings, routingKeys);

        std::shuffle(bindings.begin(), bindings.end(), rng);
        const std::size_t keep =
            std::uniform_int_distribution<std::size_t>(0, bindings.size())(rng);
        while (bindings.size() > keep) {
            REQUIRE(trie.remove(bindings.back().bindingKey, bindings.back().value));
            bindings.pop_back();
        }
        REQUIRE(trie.bindingCount() == bindings.size());
        comparisons += checkAgainstReference(trie, bindings, routingKeys);

        // A binding that was never added (no value 99 is ever bound) is rejected and changes
        // nothing.
        CHECK_FALSE(trie.remove(randomKey(rng, patternWords), 99));
        REQUIRE(trie.bindingCount() == bindings.size());

        while (!bindings.empty()) {
            REQUIRE(trie.remove(bindings.back().bindingKey, bindings.back().value));
            bindings.pop_back();
        }
        CHECK(trie.empty());
        comparisons += checkAgainstReference(trie, bindings, routingKeys);
    }
    CHECK(comparisons > 100000);
}
