#pragma once
// The topic-matching rule written as plainly as possible, for the differential test against
// core::TopicTrie. Plain recursion, exponential on `#`-heavy patterns: keep inputs small.
// RabbitMQ's rules: split on '.', empty words count, the empty string is zero words, `*` is one
// word (possibly empty), `#` is zero or more words, anything else is a literal.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace depot::tests {

inline std::vector<std::string> referenceSplitTopic(std::string_view key) {
    std::vector<std::string> words;
    if (key.empty())
        return words;
    std::string word;
    for (char c : key) {
        if (c == '.') {
            words.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    words.push_back(word);
    return words;
}

inline bool referenceTopicMatchWords(const std::vector<std::string>& pattern, std::size_t p,
                                     const std::vector<std::string>& key, std::size_t k) {
    if (p == pattern.size())
        return k == key.size();
    if (pattern[p] == "#")
        return referenceTopicMatchWords(pattern, p + 1, key, k) ||
               (k < key.size() && referenceTopicMatchWords(pattern, p, key, k + 1));
    if (k == key.size())
        return false;
    if (pattern[p] == "*" || pattern[p] == key[k])
        return referenceTopicMatchWords(pattern, p + 1, key, k + 1);
    return false;
}

inline bool referenceTopicMatch(std::string_view pattern, std::string_view key) {
    return referenceTopicMatchWords(referenceSplitTopic(pattern), 0, referenceSplitTopic(key), 0);
}

} // namespace depot::tests
