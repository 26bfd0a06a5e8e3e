#pragma once
// A bounded memo of routing key -> destinations, for exchanges whose answer depends only on the
// key (topic, direct). Real traffic repeats a modest set of keys, and one probe of a flat table
// is cheaper than a trie walk or a node-based map miss in a 100,000-binding index.
//
// Flat on purpose: slots hold the hash and offsets into two arenas (key bytes, destinations),
// so a hit touches one slot, one key and one run of destinations, and filling the cache on a
// miss allocates nothing once the arenas have grown. Clearing bumps a generation instead of
// wiping slots, so binding churn costs O(1) per change. Memory is bounded by MAX_KEYS and
// MAX_DESTINATIONS; past either, the cache starts over, and hot keys come back in a few routes.

#include "broker/core/destination.h"
#include "broker/core/key_hash.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace depot::core {

class RouteCache {
public:
    static constexpr std::size_t MAX_KEYS = 4096;
    static constexpr std::size_t MAX_DESTINATIONS = 65536;

    // Appends the cached destinations of `key` to `out`; false if the key is not cached.
    bool lookup(std::string_view key, std::uint64_t hash, std::vector<Destination>& out) const;

    // Caches `count` destinations for `key`, which must not be cached yet.
    void insert(std::string_view key, std::uint64_t hash, const Destination* destinations,
                std::size_t count);

    void clear();
    std::size_t size() const { return size_; }

private:
    struct Slot {
        std::uint64_t hash = 0;
        std::uint32_t generation = 0; // the slot is in use only if this is generation_
        std::uint32_t keyOffset = 0;
        std::uint32_t keyLength = 0;
        std::uint32_t destinationOffset = 0;
        std::uint32_t destinationCount = 0;
    };

    void grow();

    std::vector<Slot> slots_; // a power of two, at most half full
    std::string keys_;
    std::vector<Destination> destinations_;
    std::size_t size_ = 0;
    std::uint32_t generation_ = 1;
};

} // namespace depot::core
