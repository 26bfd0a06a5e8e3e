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

// One message in one queue (ready or delivered and unacknowledged).
struct QueueEntry {
    MessageRef message;
    std::uint64_t seq = 0;       // position in this queue, for requeue to the original place
    TimePoint expiresAt = NEVER; // from x-message-ttl and the message's expiration
    bool redelivered = false;
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
    std::size_t consumerCount() const { return consumers_.size(); }
    const std::vector<Consumer*>& consumers() const { return consumers_; }
    bool hasExclusiveConsumer() const;
    bool hadConsumers() const { return hadConsumers_; }

    // --- called by Vhost and Channel ---

    // Adds a published (or dead-lettered) message. Returns false if the queue refused it
    // (x-overflow reject-publish while full).
    bool enqueue(const MessageRef& message, TimePoint now);
    // A message recovered from disk after a restart: appended as redelivered, without telling
    // the journal (which is where it came from). Its TTL counts from `enqueuedAt`, when it was
    // first enqueued (before the restart), as RabbitMQ's does: one that expired while the
    // broker was down expires now.
    void restore(const MessageRef& message, TimePoint enqueuedAt, TimePoint now);
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
    void expireHead(TimePoint now);
    void enforceLengthLimits(TimePoint now);
    bool overLimit(std::uint64_t extraMessages, std::uint64_t extraBytes) const;
    void deadLetter(QueueEntry entry, DeathReason reason, TimePoint now);
    // The vhost's MessageJournal, told about persistent messages of a durable queue.
    void journalIn(const MessageRef& message);
    void journalOut(const MessageRef& message);
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
    std::uint64_t unacked_ = 0;
    std::uint64_t nextSeq_ = 1;

    std::vector<Consumer*> consumers_;
    std::deque<Consumer*> ring_; // consumers that may take a message, next one first
    bool hadConsumers_ = false;

    TimePoint lastUsed_;
    TimePoint registeredDeadline_ = NEVER; // what the Vhost's deadline index holds for us
};

} // namespace depot::core
