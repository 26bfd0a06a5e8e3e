#include "services/world.h"

#include <algorithm>
#include <array>

namespace depot::delivery {

namespace {

// Kilometres between region centres; symmetric.
constexpr std::array<std::array<std::uint32_t, 5>, 5> DISTANCES{{
    // north south east west central
    {15, 620, 340, 360, 300}, // north
    {620, 15, 380, 350, 320}, // south
    {340, 380, 15, 560, 210}, // east
    {360, 350, 560, 15, 240}, // west
    {300, 320, 210, 240, 15}, // central
}};

std::optional<std::size_t> indexOf(std::string_view name) {
    const auto& all = regions();
    auto it = std::find(all.begin(), all.end(), name);
    if (it == all.end())
        return std::nullopt;
    return static_cast<std::size_t>(it - all.begin());
}

} // namespace

const std::vector<std::string>& regions() {
    static const std::vector<std::string> all{"north", "south", "east", "west", "central"};
    return all;
}

bool isRegion(std::string_view name) {
    return indexOf(name).has_value();
}

std::optional<std::uint32_t> distanceKm(std::string_view from, std::string_view to) {
    const auto a = indexOf(from);
    const auto b = indexOf(to);
    if (!a || !b)
        return std::nullopt;
    return DISTANCES[*a][*b];
}

std::uint64_t stableHash(std::string_view text, std::uint64_t seed) {
    std::uint64_t h = 0xcbf29ce484222325ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
    for (unsigned char c : text) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

double dice(std::uint64_t seed, std::string_view subject, std::uint64_t roll) {
    const std::uint64_t h = stableHash(subject, seed * 1'000'003ULL + roll);
    return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0); // 53 bits
}

} // namespace depot::delivery
