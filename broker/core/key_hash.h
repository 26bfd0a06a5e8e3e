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
    const char* p = key.data();
    const std::size_t n = key.size();
    std::uint64_t h = keyHashSeed() ^ (n * MUL); // the length is in, so tails may overlap
    auto mix = [&h](std::uint64_t word) {
        const unsigned __int128 product = static_cast<unsigned __int128>(h ^ word) * MUL;
        h = static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
    };
    auto load64 = [](const char* at) {
        std::uint64_t word;
        std::memcpy(&word, at, 8);
        return word;
    };
    // Tails are read with whole loads, never assembled byte by byte on the stack: that costs a
    // failed store-to-load forward (about 15 cycles), as much as the rest of a short key.
    if (n >= 8) {
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8)
            mix(load64(p + i));
        if (i < n)
            mix(load64(p + n - 8)); // the last 8 bytes, overlapping the previous word
    } else if (n >= 4) {
        std::uint32_t head;
        std::uint32_t tail;
        std::memcpy(&head, p, 4);
        std::memcpy(&tail, p + n - 4, 4);
        mix((std::uint64_t{tail} << 32) | head);
    } else if (n > 0) {
        const auto byte = [p](std::size_t i) {
            return std::uint64_t{static_cast<unsigned char>(p[i])};
        };
        mix((byte(0) << 16) | (byte(n / 2) << 8) | byte(n - 1));
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
