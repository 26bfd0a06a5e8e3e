#pragma once
// Where a binding leads: a queue or another exchange (an exchange-to-exchange binding). Stored
// as one tagged pointer so the routing indexes (topic trie, direct map) stay compact; the
// pointers never own, and the Vhost removes every binding to an object before destroying it.

#include <cstdint>
#include <functional>

namespace depot::core {

class Queue;
class Exchange;

class Destination {
public:
    static Destination toQueue(Queue* queue) {
        return Destination(reinterpret_cast<std::uintptr_t>(queue));
    }
    static Destination toExchange(Exchange* exchange) {
        return Destination(reinterpret_cast<std::uintptr_t>(exchange) | EXCHANGE_BIT);
    }

    bool isExchange() const { return (bits_ & EXCHANGE_BIT) != 0; }
    Queue* queue() const { return isExchange() ? nullptr : reinterpret_cast<Queue*>(bits_); }
    Exchange* exchange() const {
        return isExchange() ? reinterpret_cast<Exchange*>(bits_ & ~EXCHANGE_BIT) : nullptr;
    }
    std::uintptr_t bits() const { return bits_; }

    friend bool operator==(Destination a, Destination b) { return a.bits_ == b.bits_; }

private:
    // Queue and Exchange are heap objects aligned to at least 8 bytes, so bit 0 is free.
    static constexpr std::uintptr_t EXCHANGE_BIT = 1;
    explicit Destination(std::uintptr_t bits) : bits_(bits) {}
    std::uintptr_t bits_;
};

} // namespace depot::core

template <> struct std::hash<depot::core::Destination> {
    std::size_t operator()(depot::core::Destination d) const noexcept {
        // Heap addresses share low bits; a multiplicative mix spreads them over the buckets.
        return static_cast<std::size_t>((d.bits() >> 3) * 0x9E3779B97F4A7C15ull);
    }
};
