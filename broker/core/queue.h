#pragma once
// A queue: a FIFO of messages waiting for consumers. Ready messages are delivered to consumers
// round-robin, at most prefetchCount unacknowledged each; a delivered message stays the queue's
// responsibility until its channel acks it. A message that is requeued (nack, reject, or its
// channel closing) goes back to its original position, not the tail, as in RabbitMQ: ready
// messages are ordered by the sequence number they got when they were enqueued.
// Owned by its Vhost; the Vhost and Channel are the only callers of the mutating methods.

#include "broker/core/consumer.h"
#include "broker/core/message.h"
#include "broker/core/queue_options.h"
#include "broker/core/time.h"

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace depot::core {

class Channel;
class Vhost;

// One message in one queue (ready or delivered and unacknowledged). A ready message far from
// the head may be paged out: then `message` is null and the journal holds it under `pagedHandle`.
struct QueueEntry {
    MessageRef message;
    std::uint64_t seq = 0;       // position in this queue, for requeue to the original place
    TimePoint expiresAt = NEVER; // from x-message-ttl and the message's expiration
    std::uint64_t pagedHandle = 0;
    std::uint32_t pagedBytes = 0; // the paged-out message's body size
    bool redelivered = false;
};

// A message a journal holds on disk, as a queue needs to know it without its contents.
struct PagedMessage {
    std::uint64_t handle = 0;
    std::uint32_t bodyBytes = 0;
    std::optional<Milliseconds> expiration; // its per-message TTL
};

class Queue {
public:
    // `vhost` outlives the queue. `owner` is the channel of an exclusive queue, else nullptr.
    Queue(Vhost& vhost, std::string name, QueueOptions options, const Channel* owner,
          TimePoint now);
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;

    const std::string& name() const { return name_; }
    const QueueOptions& options() const { return options_; }
    const Channel* owner() const { return owner_; }

    std::uint64_t readyCount() const { return fresh_.size() + returned_.size(); }
    std::uint64_t readyBytes() const { return readyBytes_; }
    std::uint64_t unackedCount() const { return unacked_; }
    // Ready messages paged out (on disk only; see QueueOptions::inMemoryLength).
    std::uint64_t pagedCount() const { return paged_; }
    std::uint64_t pagedBytes() const { return pagedBytes_; }
    std::size_t consumerCount() const { return consumers_.size(); }
    const std::vector<Consumer*>& consumers() const { return consumers_; }
    bool hasExclusiveConsumer() const;
    bool hadConsumers() const { return hadConsumers_; }

    // --- called by Vhost and Channel ---

    // Adds a published (or dead-lettered) message. Returns false if the queue refused it
    // (x-overflow reject-publish while full).
    bool enqueue(const MessageRef& message, TimePoint now);
    // A message recovered from disk after a restart: appended, paged out, as redelivered,
    // without telling the journal (which is where it came from). Its TTL counts from
    // `enqueuedAt`, when it was first enqueued (before the restart), as RabbitMQ's does: one that
    // expired while the broker was down expires now.
    void restore(const PagedMessage& message, TimePoint enqueuedAt, TimePoint now);
    // Removes the ready head for basic.get, skipping (and dead-lettering) expired messages.
    std::optional<QueueEntry> takeForGet(TimePoint now, bool noAck);
    // A delivered message came back unsettled: back to its position, marked redelivered.
    void requeue(QueueEntry entry, TimePoint now);
    // A delivered message was acked, or nacked without requeue (then dead-lettered).
    void settle(QueueEntry entry, bool deadLetter, TimePoint now);

    void addConsumer(Consumer& consumer, TimePoint now);
    void removeConsumer(Consumer& consumer, TimePoint now);
    // A consumer may take messages again (it acked, or its channel's flow resumed).
    void activate(Consumer& consumer, TimePoint now);

    std::uint64_t purge(TimePoint now);
    // The queue was used (declared, consumed from, polled): restarts the x-expires countdown.
    void touch(TimePoint now);
    // Expires messages whose TTL has passed; true if the queue itself expired (x-expires).
    bool advanceTo(TimePoint now);
    TimePoint nextDeadline() const;
    TimePoint registeredDeadline() const { return registeredDeadline_; }

    std::uint64_t routeMark = 0; // Router bookkeeping: the publish this queue last received

private:
    void dispatch(TimePoint now);
    bool hasReady() const { return !fresh_.empty() || !returned_.empty(); }
    QueueEntry popHead();
    std::optional<QueueEntry> popDeliverable(TimePoint now);
    // Paging: the newest message leaves memory when the queue holds more than its in-memory
    // limits; a paged-out one is read back when it is taken. False: it could not be (skipped).
    void pageOutTail();
    bool pageIn(QueueEntry& entry);
    void expireHead(TimePoint now);
    void enforceLengthLimits(TimePoint now);
    bool overLimit(std::uint64_t extraMessages, std::uint64_t extraBytes) const;
    // Expired or over a length limit: leaves for good, dead-lettered when the queue says so.
    void drop(QueueEntry entry, DeathReason reason, TimePoint now);
    void deadLetter(QueueEntry entry, DeathReason reason, TimePoint now);
    // The vhost's MessageJournal, told about persistent messages of a durable queue.
    bool journaled(const Message& message) const;
    void journalIn(const MessageRef& message);
    void journalOut(const QueueEntry& entry);
    void updateDeadline();

    Vhost& vhost_;
    std::string name_;
    QueueOptions options_;
    const Channel* owner_;

    // Ready messages = returned_ (requeued, in seq order) followed by fresh_ (never delivered).
    // Every requeued message was delivered from the head, so its seq is below all of fresh_.
    std::deque<QueueEntry> fresh_;
    std::map<std::uint64_t, QueueEntry> returned_;
    std::uint64_t readyBytes_ = 0;
    std::uint64_t paged_ = 0;
    std::uint64_t pagedBytes_ = 0;
    std::uint64_t unacked_ = 0;
    std::uint64_t nextSeq_ = 1;

    std::vector<Consumer*> consumers_;
    std::deque<Consumer*> ring_; // consumers that may take a message, next one first
    bool hadConsumers_ = false;

    TimePoint lastUsed_;
    TimePoint registeredDeadline_ = NEVER; // what the Vhost's deadline index holds for us
};

} // namespace depot::core
