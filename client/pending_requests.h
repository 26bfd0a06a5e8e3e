#pragma once
// Requests waiting for their answers, by request id: what a transport keeps between sending a
// request and reading its answer. Ids are given in increasing order and appended, so the
// entries stay sorted without a tree or a hash table. Answers mostly come in order (the front
// entry); one that comes out of order (an error answered at once while confirms before it wait
// for the disk, a call that timed out) is found by binary search and left empty until the
// entries before it have gone. No allocation per request beyond the deque's blocks: a hash map
// allocated a node for every confirmed publish.
//
// Not thread-safe: the owner locks.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace depot::client {

template <class Value> class PendingRequests {
public:
    // `id` must be greater than every id added before.
    void add(std::uint64_t id, Value value) {
        entries_.push_back(Entry{id, std::move(value)});
        ++live_;
    }

    // The value waiting under `id`, removed; nullopt when there is none (answered, taken).
    std::optional<Value> take(std::uint64_t id) {
        auto it = entries_.begin();
        if (it == entries_.end())
            return std::nullopt;
        if (it->id != id) {
            it = std::lower_bound(
                entries_.begin(), entries_.end(), id,
                [](const Entry& entry, std::uint64_t wanted) { return entry.id < wanted; });
            if (it == entries_.end() || it->id != id)
                return std::nullopt;
        }
        if (!it->value)
            return std::nullopt;
        std::optional<Value> taken = std::move(it->value);
        it->value.reset();
        --live_;
        while (!entries_.empty() && !entries_.front().value)
            entries_.pop_front();
        return taken;
    }

    // Every value still waiting, in id order; none remain.
    std::vector<Value> takeAll() {
        std::vector<Value> all;
        all.reserve(live_);
        for (Entry& entry : entries_)
            if (entry.value)
                all.push_back(std::move(*entry.value));
        entries_.clear();
        live_ = 0;
        return all;
    }

    bool empty() const { return live_ == 0; }
    std::size_t size() const { return live_; }

private:
    struct Entry {
        std::uint64_t id;
        std::optional<Value> value; // empty once taken, until the entries before it go
    };
    std::deque<Entry> entries_;
    std::size_t live_ = 0;
};

} // namespace depot::client
