#pragma once
// Fewer ack frames for the same acks. A consumer that acks its deliveries in the order they
// came (the usual case) would send one frame per message; the broker would decode and settle
// each. Instead, an ack of the oldest delivery still unsettled joins a pending "ack multiple up
// to tag T", sent with the next write: one frame for every ack made meanwhile, and the broker
// settles exactly the same deliveries (AMQP's multiple flag covers every unacked tag up to T,
// and every tag below T is acked or was settled by a frame sent before it).
//
// Anything else goes out as it is, in order: an ack out of order (the application holds an
// older delivery), a nack or reject; the pending multiple ack is written before it, so the
// broker sees the acks and nacks in the order the application made them. Not thread-safe: the
// owner locks (the TCP transport with its outbox's lock, the AMQP transport with its
// connection's, one coalescer per channel).

#include <cstddef>
#include <cstdint>
#include <deque>

namespace depot::client {

// A handler's acks wait for the end of its batch (the dispatcher's idle hook), but at most this
// many, for a consumer whose deliveries never pause (no prefetch limit). Measured with prefetch
// 100 over depot://: acking at the end of each batch beat acking every 32 or 64 (fewer, larger
// writes both ways; on this VM a loopback write costs several microseconds of system time).
inline constexpr std::size_t ACK_BATCH = 256;

class AckCoalescer {
public:
    // A delivery that needs an ack arrived; tags ascend (one channel numbers them in order).
    void delivered(std::uint64_t tag) { unacked_.push_back(tag); }

    // The application acks. True: absorbed into the pending multiple ack, nothing to send
    // now. False: send this ack as it is, after the pending one (takePending).
    bool ack(std::uint64_t tag, bool multiple);
    // The application nacks or rejects: forget the tags it settles. Send it after takePending.
    void settledOtherwise(std::uint64_t tag, bool multiple);

    // The pending "ack multiple up to" tag, 0 for none; forgets it (the caller sends it).
    std::uint64_t takePending();
    bool hasPending() const { return pending_ != 0; }
    // A new link: tags start again.
    void reset();

private:
    void forgetUpTo(std::uint64_t tag); // 0: all
    bool forget(std::uint64_t tag);

    std::deque<std::uint64_t> unacked_; // delivered, not yet settled by the application
    std::uint64_t pending_ = 0;
};

} // namespace depot::client
