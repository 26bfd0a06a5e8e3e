#pragma once
// The simulated world the services share by convention, as a real business shares a map: the
// regions (lower-case names in every contract and routing key), the distances between them,
// and deterministic dice, so that a simulation with the same seed makes the same decisions
// however its messages interleave.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace depot::delivery {

const std::vector<std::string>& regions();
bool isRegion(std::string_view name);
// Road distance in km; 15 within a region. nullopt for an unknown region.
std::optional<std::uint32_t> distanceKm(std::string_view from, std::string_view to);

// A number in [0, 1) that depends only on its inputs: the same seed, subject and roll give the
// same number in every process and on every run.
double dice(std::uint64_t seed, std::string_view subject, std::uint64_t roll);

// A stable 64-bit hash of text (FNV-1a, finished with splitmix64's mixer).
std::uint64_t stableHash(std::string_view text, std::uint64_t seed = 0);

} // namespace depot::delivery
