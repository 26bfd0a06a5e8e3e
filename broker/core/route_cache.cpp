#include "broker/core/route_cache.h"

#include <algorithm>

namespace depot::core {

bool RouteCache::lookup(std::string_view key, std::uint64_t hash,
                        std::vector<Destination>& out) const {
    if (size_ == 0)
        return false;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& slot = slots_[i];
        if (slot.generation != generation_)
            return false;
        if (slot.hash == hash && slot.keyLength == key.size() &&
            std::string_view(keys_).substr(slot.keyOffset, slot.keyLength) == key) {
            const Destination* first = destinations_.data() + slot.destinationOffset;
            out.insert(out.end(), first, first + slot.destinationCount);
            return true;
        }
    }
}

void RouteCache::insert(std::string_view key, std::uint64_t hash, const Destination* destinations,
                        std::size_t count) {
    if (count > MAX_DESTINATIONS)
        return; // one huge answer would evict everything else; the index answers it directly
    if (size_ >= MAX_KEYS || destinations_.size() + count > MAX_DESTINATIONS)
        clear();
    if ((size_ + 1) * 2 > slots_.size())
        grow();
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    while (slots_[i].generation == generation_)
        i = (i + 1) & mask;
    slots_[i] = Slot{hash,
                     generation_,
                     static_cast<std::uint32_t>(keys_.size()),
                     static_cast<std::uint32_t>(key.size()),
                     static_cast<std::uint32_t>(destinations_.size()),
                     static_cast<std::uint32_t>(count)};
    keys_.append(key);
    destinations_.insert(destinations_.end(), destinations, destinations + count);
    ++size_;
}

void RouteCache::clear() {
    if (size_ == 0)
        return;
    size_ = 0;
    keys_.clear();
    destinations_.clear();
    if (++generation_ == 0) { // wrapped after 4 billion clears: old stamps could look current
        std::fill(slots_.begin(), slots_.end(), Slot{});
        generation_ = 1;
    }
}

// Doubles the table (from 16 slots) and re-places the live slots; the arenas stay as they are.
void RouteCache::grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    const std::size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
        if (slot.generation != generation_)
            continue;
        std::size_t i = slot.hash & mask;
        while (slots_[i].generation == generation_)
            i = (i + 1) & mask;
        slots_[i] = slot;
    }
}

} // namespace depot::core
