#pragma once
// One hash for every name and routing key the core looks up: exchange and queue names, direct
// binding keys, the route cache. Keys are short (at most 255 bytes, usually 10 to 40), so this
// reads 8 bytes at a time and mixes with one multiply per word; std::hash (Murmur over bytes)
// costs about twice as much on such keys. Seeded once per process, so a client cannot
// precompute colliding names offline.

#include <cstdint>
#include <cstring>
#include <string_view>

namespace depot::core {

std::uint64_t makeKeyHashSeed();

// A function-local static rather than a global, so a Broker built during static initialization
// cannot hash with a seed that changes afterwards.
inline std::uint64_t keyHashSeed() {
    static const std::uint64_t seed = makeKeyHashSeed();
    return seed;
}

inline std::uint64_t hashKey(std::string_view key) {
    constexpr std::uint64_t MUL = 0x9E3779B97F4A7C15ull; // 2^64 / golden ratio
    std::uint64_t h = keyHashSeed() ^ (key.size() * MUL);
    const char* p = key.data();
    std::size_t n = key.size();
    auto mix = [&h](std::uint64_t word) {
        const unsigned __int128 product = static_cast<unsigned __int128>(h ^ word) * MUL;
        h = static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
    };
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        mix(word);
    }
    if (n > 0) {
        std::uint64_t word = 0;
        std::memcpy(&word, p, n);
        mix(word);
    }
    mix(0); // so the last word's bits reach the low bits, which pick the bucket
    return h;
}

// For std::unordered_map with heterogeneous lookup. Deliberately not noexcept: libstdc++ then
// stores each node's hash code and compares it before the key, which saves a memcmp per probe.
struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return hashKey(key); }
};

} // namespace depot::core
