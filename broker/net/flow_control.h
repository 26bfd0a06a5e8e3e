#pragma once
// Flow control between publishers and the consumers of the queues they fill, as RabbitMQ's
// "flow" connection state: a connection that only publishes is not read while a queue its
// publishes reach holds more than highFor(queue) ready messages and that queue's consumers are
// draining it; it is read again once the queue is down to a quarter of that. The publisher
// feels TCP's backpressure, and the backlog stays bounded, in memory that is reused, instead of
// growing as fast as the publisher writes: in `depot-bench e2e --scenario 1to1-acks` it reached
// 415,000 messages and 213 MB, and depotd spent a quarter more CPU per message (page faults of
// fresh memory, colder caches). A wide band: each hold and release wakes the publisher's threads,
// and with 5,000 / 2,500 the clients' extra wake-ups cost more than depotd saved.
//
// Not a block: a queue whose ready messages do not fall for STUCK_TICKS while it holds
// publishers (its consumers stuck, or prefetch full and nothing acked, or requeueing what they
// take, or other publishers keeping it full) releases them and holds nobody until its ready
// messages fall again, so they go on as they do with RabbitMQ, and the memory alarm
// (--memory-limit) is what bounds it. No frame tells the client; it just waits.

#include "broker/core/broker.h"
#include "broker/core/queue.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace depot::net {

class FlowControl {
public:
    static constexpr std::uint64_t HIGH = 20'000;
    // A durable queue keeps in memory only its first inMemoryLength() ready messages (10,000
    // by default): past that, persistent ones page out and are read back from disk. So such a
    // queue holds its publishers at half of it: with 20,000, the persistent benchmark paged.
    // (At least LEAST: a queue told to keep a handful in memory would hold in lockstep.)
    static std::uint64_t highFor(const core::Queue& queue);
    // A quarter of highFor: where a hold ends, and past which a queue's consumers count as
    // behind: before any hold, a connection that only publishes to it reads in small bites
    // (Session::readChunk), so their acks do not wait behind a large read's publishes. Relative
    // to the queue's own mark: a fixed 5,000 never applied to a durable queue (held at 5,000),
    // whose consumer's acks then waited behind 32 KiB of persistent publishes, each costing
    // depotd about 2.5 µs: `depot-bench e2e --persistent` gained about a tenth.
    static std::uint64_t lowFor(const core::Queue& queue) { return highFor(queue) / 4; }
    static constexpr std::uint64_t LEAST = 1'000;
    static constexpr std::chrono::milliseconds TICK{20};
    static constexpr int STUCK_TICKS = 10; // 200 ms: a slow consumer's pause is not stuck

    // What a publish's queues say: the first one with consumers past its highFor (nullptr if
    // none), and whether any with consumers holds more than its lowFor.
    struct Pressure {
        const core::Queue* over = nullptr;
        bool behind = false;
    };
    static Pressure pressure(std::span<const core::Queue* const> routed);

    // What a held connection does when it may read again.
    using Release = std::function<void()>;

    explicit FlowControl(core::Broker& broker) : broker_(broker) {}

    // A connection that only publishes reached `queue` (which has consumers) in `vhost` while
    // it held more than highFor(queue) ready messages. Returns whether the connection must stop
    // reading: then `release` runs once it may read again (not from within this call). `owner`
    // names the connection: release() of a connection that is gone is dropped with it.
    bool hold(const std::string& vhost, const core::Queue& queue, std::weak_ptr<void> owner,
              Release release);
    // Releases the connections held for queues that are down to a quarter of highFor, gone, or
    // without consumers. Cheap when nobody is held: call it after anything that may have drained a
    // queue (acks read, deliveries resumed).
    void check() {
        if (!held_.empty())
            checkHeld();
    }
    // Every TICK: check(), and a queue whose ready messages have not fallen for STUCK_TICKS
    // releases its connections and holds nobody until they fall again.
    void tick();

private:
    struct Waiter {
        std::weak_ptr<void> owner;
        Release release;
    };
    struct Held {
        std::string vhost;
        std::string queue;
        std::uint64_t low = 0;   // released at this many ready messages
        std::uint64_t ready = 0; // the queue's ready messages at the last tick
        int quietTicks = 0;      // ticks since they last fell
        bool stuck = false;      // they did not fall for STUCK_TICKS: hold nobody
        std::vector<Waiter> waiters;
    };
    void checkHeld();
    const core::Queue* find(const Held& held) const;
    static void releaseAll(Held& held);

    core::Broker& broker_;
    std::vector<Held> held_; // a few queues at most: searched linearly
};

} // namespace depot::net
