#pragma once
// A list of destinations with a count each: two bindings that differ only in their arguments
// (or a topic pattern and its equivalent) lead to the same destination, and removing one of
// them must keep the other routing. Kept as a flat vector: per key there are few destinations.

#include "broker/core/destination.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace depot::core {

class CountedDestinations {
public:
    void add(Destination d) {
        for (auto& entry : entries_)
            if (entry.first == d) {
                ++entry.second;
                return;
            }
        entries_.emplace_back(d, 1);
    }

    // Returns false if `d` was not present.
    bool remove(Destination d) {
        auto it = std::find_if(entries_.begin(), entries_.end(),
                               [d](const auto& entry) { return entry.first == d; });
        if (it == entries_.end())
            return false;
        if (--it->second == 0)
            entries_.erase(it);
        return true;
    }

    void appendTo(std::vector<Destination>& out) const {
        for (const auto& entry : entries_)
            out.push_back(entry.first);
    }

    bool empty() const { return entries_.empty(); }
    std::size_t size() const { return entries_.size(); }

private:
    std::vector<std::pair<Destination, std::uint32_t>> entries_;
};

} // namespace depot::core
