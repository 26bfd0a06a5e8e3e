#include "broker/core/topic_trie.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using depot::core::TopicTrie;

namespace {

// Sorted and deduplicated: match() may report a value once per matching pattern.
std::vector<int> matchAll(TopicTrie<int>& trie, std::string_view routingKey) {
    std::vector<int> values;
    trie.match(routingKey, [&values](int value) { values.push_back(value); });
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return values;
}

bool topicMatches(std::string_view bindingKey, std::string_view routingKey) {
    TopicTrie<int> trie;
    trie.add(bindingKey, 1);
    return !matchAll(trie, routingKey).empty();
}

} // namespace

// One test per row of RABBITMQ-FACTS.md (vii).

TEST_CASE("topic pattern \"\" matches only the empty key, which has zero words") {
    CHECK(topicMatches("", ""));
    CHECK_FALSE(topicMatches("", "."));
    CHECK_FALSE(topicMatches("", "a"));
}

TEST_CASE("topic pattern # matches the empty key and the key of two empty words") {
    CHECK(topicMatches("#", ""));
    CHECK(topicMatches("#", "."));
    CHECK(topicMatches("#", "a.b.c"));
}

TEST_CASE("topic pattern #.# matches the empty key") {
    CHECK(topicMatches("#.#", ""));
    CHECK(topicMatches("#.#", "a"));
    CHECK(topicMatches("#.#", "a.b.c"));
}

TEST_CASE("topic pattern * needs exactly one word and matches the literal key #") {
    CHECK_FALSE(topicMatches("*", ""));
    CHECK_FALSE(topicMatches("*", "."));
    CHECK(topicMatches("*", "#"));
    CHECK(topicMatches("*", "a"));
}

TEST_CASE("topic pattern #. needs a trailing empty word") {
    CHECK_FALSE(topicMatches("#.", ""));
    CHECK(topicMatches("#.", "a."));
    CHECK(topicMatches("#.", "."));
    CHECK_FALSE(topicMatches("#.", "a"));
}

TEST_CASE("topic pattern .# does not match the empty key") {
    CHECK_FALSE(topicMatches(".#", ""));
    CHECK(topicMatches(".#", "."));
    CHECK(topicMatches(".#", ".a.b"));
    CHECK_FALSE(topicMatches(".#", "a"));
}

TEST_CASE("topic pattern *.* matches the key of two empty words") {
    CHECK(topicMatches("*.*", "."));
    CHECK(topicMatches("*.*", "a.b"));
    CHECK_FALSE(topicMatches("*.*", "a"));
}

TEST_CASE("topic pattern a.# matches a followed by an empty word") {
    CHECK(topicMatches("a.#", "a."));
    CHECK(topicMatches("a.#", "a"));
    CHECK(topicMatches("a.#", "a.b.c"));
    CHECK_FALSE(topicMatches("a.#", "b.a"));
}

TEST_CASE("topic pattern a.*.# does not match a alone") {
    CHECK_FALSE(topicMatches("a.*.#", "a"));
    CHECK(topicMatches("a.*.#", "a."));
    CHECK(topicMatches("a.*.#", "a.b.c.d"));
}

TEST_CASE("topic pattern #.a matches a alone") {
    CHECK(topicMatches("#.a", "a"));
    CHECK(topicMatches("#.a", "x.y.a"));
    CHECK_FALSE(topicMatches("#.a", "a.x"));
}

TEST_CASE("empty words count as words in patterns and keys") {
    CHECK(topicMatches("a..b", "a..b"));
    CHECK_FALSE(topicMatches("a..b", "a.b"));
    CHECK(topicMatches("a.*.b", "a..b"));
    CHECK(topicMatches("*.*.*", "a..b"));
    CHECK(topicMatches("a.", "a."));
    CHECK_FALSE(topicMatches("a.", "a"));
    CHECK(topicMatches(".", "."));
    CHECK(topicMatches("*.", "."));
    CHECK(topicMatches("..", ".."));
    CHECK_FALSE(topicMatches("..", "."));
}

TEST_CASE("star matches exactly one word") {
    CHECK(topicMatches("a.*", "a.b"));
    CHECK_FALSE(topicMatches("a.*", "a"));
    CHECK_FALSE(topicMatches("a.*", "a.b.c"));
    CHECK(topicMatches("*.b", "x.b"));
    CHECK_FALSE(topicMatches("*.b", "b"));
    CHECK(topicMatches("a.*.c", "a.zzz.c"));
    CHECK_FALSE(topicMatches("a.*.c", "a.c"));
}

TEST_CASE("hash matches zero or more words anywhere in the pattern") {
    CHECK(topicMatches("a.#.c", "a.c"));
    CHECK(topicMatches("a.#.c", "a.b.c"));
    CHECK(topicMatches("a.#.c", "a.x.y.z.c"));
    CHECK_FALSE(topicMatches("a.#.c", "a.c.d"));
    CHECK(topicMatches("#.b.#", "b"));
    CHECK(topicMatches("#.b.#", "a.b.c"));
    CHECK_FALSE(topicMatches("#.b.#", "a.c"));
    CHECK(topicMatches("#.*", "a"));
    CHECK_FALSE(topicMatches("#.*", ""));
    CHECK(topicMatches("*.#.*", "a.b"));
    CHECK_FALSE(topicMatches("*.#.*", "a"));
}

TEST_CASE("multi-word literal patterns match exactly and case-sensitively") {
    CHECK(topicMatches("orders.eu.created", "orders.eu.created"));
    CHECK_FALSE(topicMatches("orders.eu.created", "orders.EU.created"));
    CHECK_FALSE(topicMatches("orders.eu.created", "orders.eu"));
    CHECK_FALSE(topicMatches("orders.eu.created", "orders.eu.created.x"));
    CHECK_FALSE(topicMatches("orders.eu", "orders.eu.created"));
}

TEST_CASE("partial wildcards are literals") {
    CHECK(topicMatches("a*", "a*"));
    CHECK_FALSE(topicMatches("a*", "ab"));
    CHECK_FALSE(topicMatches("a*", "a"));
    CHECK(topicMatches("a.**", "a.**"));
    CHECK_FALSE(topicMatches("a.**", "a.b"));
    CHECK(topicMatches("a.##", "a.##"));
    CHECK_FALSE(topicMatches("a.##", "a"));
    CHECK_FALSE(topicMatches("a.##", "a.b.c"));
    CHECK(topicMatches("#a", "#a"));
    CHECK_FALSE(topicMatches("#a", "xa"));
}

TEST_CASE("wildcards in a routing key are ordinary words") {
    CHECK(topicMatches("a.*", "a.#"));
    CHECK_FALSE(topicMatches("a.b", "a.*"));
    CHECK_FALSE(topicMatches("a.b", "a.#"));
}

TEST_CASE("every matching binding is reported and non-matching ones are not") {
    TopicTrie<int> trie;
    trie.add("a.b", 1);
    trie.add("a.*", 2);
    trie.add("#", 3);
    trie.add("a.#", 4);
    trie.add("b.*", 5);
    trie.add("*.*.*", 6);
    CHECK(matchAll(trie, "a.b") == std::vector<int>{1, 2, 3, 4});
    CHECK(matchAll(trie, "a") == std::vector<int>{3, 4});
    CHECK(matchAll(trie, "b.b.b") == std::vector<int>{3, 6});
    CHECK(matchAll(trie, "") == std::vector<int>{3});
}

TEST_CASE("one value bound by several matching patterns is reported") {
    TopicTrie<int> trie;
    trie.add("a.*", 7);
    trie.add("#", 7);
    trie.add("a.b", 7);
    CHECK(matchAll(trie, "a.b") == std::vector<int>{7});
    CHECK(trie.bindingCount() == 3);
}

TEST_CASE("an empty trie matches nothing") {
    TopicTrie<int> trie;
    CHECK(trie.empty());
    CHECK(trie.bindingCount() == 0);
    CHECK(matchAll(trie, "").empty());
    CHECK(matchAll(trie, "a.b").empty());
}

TEST_CASE("a binding added twice still matches after one remove") {
    TopicTrie<int> trie;
    trie.add("a.*", 1);
    trie.add("a.*", 1);
    CHECK(trie.bindingCount() == 2);
    CHECK(trie.remove("a.*", 1));
    CHECK(trie.bindingCount() == 1);
    CHECK(matchAll(trie, "a.b") == std::vector<int>{1});
    CHECK(trie.remove("a.*", 1));
    CHECK(matchAll(trie, "a.b").empty());
    CHECK(trie.empty());
    CHECK_FALSE(trie.remove("a.*", 1));
}

TEST_CASE("remove returns false when the binding is absent") {
    TopicTrie<int> trie;
    CHECK_FALSE(trie.remove("a", 1));
    CHECK_FALSE(trie.remove("", 1));
    trie.add("a.b", 1);
    CHECK_FALSE(trie.remove("a.b", 2));
    CHECK_FALSE(trie.remove("a", 1));
    CHECK_FALSE(trie.remove("a.b.c", 1));
    CHECK_FALSE(trie.remove("a.*", 1));
    CHECK_FALSE(trie.remove("a.#", 1));
    CHECK(trie.bindingCount() == 1);
    CHECK(matchAll(trie, "a.b") == std::vector<int>{1});
}

TEST_CASE("remove prunes emptied nodes and keeps the bindings that share them") {
    TopicTrie<int> trie;
    trie.add("a.b.c", 1);
    trie.add("a.b", 2);
    trie.add("a.#", 3);
    trie.add("a.*.c", 4);
    trie.add("", 5);
    CHECK(trie.bindingCount() == 5);

    CHECK(trie.remove("a.b", 2));
    CHECK(matchAll(trie, "a.b.c") == std::vector<int>{1, 3, 4});
    CHECK(trie.remove("a.b.c", 1));
    CHECK(matchAll(trie, "a.b.c") == std::vector<int>{3, 4});
    CHECK(trie.remove("a.#", 3));
    CHECK(trie.remove("a.*.c", 4));
    CHECK(matchAll(trie, "a.b.c").empty());
    CHECK(trie.bindingCount() == 1);
    CHECK_FALSE(trie.empty());
    CHECK(trie.remove("", 5));
    CHECK(trie.empty());
    CHECK(trie.bindingCount() == 0);

    // The pruned paths can be rebuilt.
    trie.add("a.b.c", 1);
    CHECK(matchAll(trie, "a.b.c") == std::vector<int>{1});
}

TEST_CASE("a node with thousands of literal children survives adds and removes in any order") {
    TopicTrie<int> trie;
    std::vector<int> ids;
    for (int i = 0; i < 5000; ++i) {
        ids.push_back(i);
        trie.add("p." + std::to_string(i) + ".#", i);
    }
    std::mt19937 rng(7);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<bool> bound(5000, true);
    for (std::size_t n = 0; n < ids.size(); ++n) {
        REQUIRE(trie.remove("p." + std::to_string(ids[n]) + ".#", ids[n]));
        bound[static_cast<std::size_t>(ids[n])] = false;
        if (n % 500 == 0 || n + 10 > ids.size()) {
            for (int i = 0; i < 5000; ++i) {
                const auto values = matchAll(trie, "p." + std::to_string(i) + ".x");
                REQUIRE(values.size() == (bound[static_cast<std::size_t>(i)] ? 1u : 0u));
            }
        }
    }
    CHECK(trie.empty());
    CHECK(matchAll(trie, "p.1.x").empty());
}

TEST_CASE("keys with far more words than usual are matched correctly") {
    TopicTrie<int> trie;
    trie.add("#", 1);
    trie.add("*", 2);
    trie.add("#.", 3);
    trie.add("a.#", 4);
    trie.add("*.#.*", 5);
    trie.add("#.a.#", 6);

    const std::string dots(1000, '.'); // 1001 empty words
    CHECK(matchAll(trie, dots) == std::vector<int>{1, 3, 5});

    std::string words = "a";
    for (int i = 0; i < 400; ++i)
        words += ".b";
    CHECK(matchAll(trie, words) == std::vector<int>{1, 4, 5, 6});

    const std::string huge(1 << 20, '.');
    CHECK(matchAll(trie, huge) == std::vector<int>{1, 3, 5});
}

TEST_CASE("patterns with hundreds of words are added, matched and removed") {
    TopicTrie<int> trie;
    std::string pattern = "a";
    for (int i = 0; i < 300; ++i)
        pattern += i % 3 == 0 ? ".#" : ".*";
    trie.add(pattern, 1);
    std::string key = "a";
    for (int i = 0; i < 250; ++i)
        key += ".x";
    CHECK(matchAll(trie, key) == std::vector<int>{1});
    CHECK(trie.remove(pattern, 1));
    CHECK(trie.empty());

    // A very deep chain must be torn down without deep recursion.
    TopicTrie<int> deep;
    deep.add(std::string(200000, '.'), 1);
    CHECK(deep.bindingCount() == 1);
}

TEST_CASE("a pattern with many hashes against a long repetitive key completes") {
    TopicTrie<int> trie;
    trie.add("#.a.#.a.#.a.#.a.#", 1);
    trie.add("#.a.#.a.#.a.#.b", 2);
    std::string key = "a";
    while (key.size() + 2 <= 255)
        key += ".a";
    CHECK(matchAll(trie, key) == std::vector<int>{1});
}

TEST_CASE("a moved trie keeps its bindings") {
    TopicTrie<int> trie;
    trie.add("a.#", 1);
    CHECK(matchAll(trie, "a.b") == std::vector<int>{1});
    TopicTrie<int> moved(std::move(trie));
    CHECK(matchAll(moved, "a.b") == std::vector<int>{1});
    CHECK(moved.bindingCount() == 1);

    TopicTrie<int> assigned;
    assigned.add("x", 2);
    assigned = std::move(moved);
    CHECK(matchAll(assigned, "a.b") == std::vector<int>{1});
    CHECK(matchAll(assigned, "x").empty());
}

TEST_CASE("values need not be default-constructible") {
    struct Tagged {
        explicit Tagged(int id) : id(id) {}
        int id;
        bool operator==(const Tagged& other) const { return id == other.id; }
    };
    TopicTrie<Tagged> trie;
    trie.add("a.*", Tagged(3));
    int seen = 0;
    trie.match("a.b", [&seen](Tagged value) { seen = value.id; });
    CHECK(seen == 3);
    CHECK(trie.remove("a.*", Tagged(3)));
}
