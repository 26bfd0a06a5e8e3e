#include "broker/core/queue.h"

#include "broker/core/channel.h"
#include "broker/core/vhost.h"

#include <algorithm>

namespace depot::core {

namespace {

TimePoint expiryOf(const Message& message, const QueueOptions& options, TimePoint now) {
    std::optional<Milliseconds> ttl = options.messageTtl;
    if (message.properties.expiration && (!ttl || *message.properties.expiration < *ttl))
        ttl = message.properties.expiration;
    return ttl ? now + *ttl : NEVER;
}

} // namespace

Queue::Queue(Vhost& vhost, std::string name, QueueOptions options, const Channel* owner,
             TimePoint now)
    : vhost_(vhost), name_(std::move(name)), options_(std::move(options)), owner_(owner),
      lastUsed_(now) {
    updateDeadline();
}

bool Queue::hasExclusiveConsumer() const {
    return std::any_of(consumers_.begin(), consumers_.end(),
                       [](const Consumer* c) { return c->exclusive(); });
}

bool Queue::overLimit(std::uint64_t extraMessages, std::uint64_t extraBytes) const {
    return (options_.maxLength && readyCount() + extraMessages > *options_.maxLength) ||
           (options_.maxLengthBytes && readyBytes_ + extraBytes > *options_.maxLengthBytes);
}

bool Queue::enqueue(const MessageRef& message, TimePoint now) {
    const std::uint64_t bytes = message->body.size();
    if (options_.overflow != Overflow::DROP_HEAD && overLimit(1, bytes)) {
        if (options_.overflow == Overflow::REJECT_PUBLISH_DLX)
            deadLetter(QueueEntry{message, 0, NEVER, false}, DeathReason::MAXLEN, now);
        return false;
    }
    fresh_.push_back(QueueEntry{message, nextSeq_++, expiryOf(*message, options_, now), false});
    readyBytes_ += bytes;
    journalIn(message);
    // Deliver before enforcing limits and TTL: a waiting consumer takes the message even from a
    // queue with x-max-length 0 or a message TTL of 0, as in RabbitMQ.
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    updateDeadline();
    return true;
}

void Queue::restore(const MessageRef& message, TimePoint enqueuedAt, TimePoint now) {
    fresh_.push_back(
        QueueEntry{message, nextSeq_++, expiryOf(*message, options_, enqueuedAt), true});
    readyBytes_ += message->body.size();
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    updateDeadline();
}

void Queue::journalIn(const MessageRef& message) {
    if (options_.durable && message->properties.deliveryMode == DeliveryMode::PERSISTENT)
        if (MessageJournal* journal = vhost_.journal())
            journal->enqueued(*this, message);
}

void Queue::journalOut(const MessageRef& message) {
    if (options_.durable && message->properties.deliveryMode == DeliveryMode::PERSISTENT)
        if (MessageJournal* journal = vhost_.journal())
            journal->removed(*this, message);
}

QueueEntry Queue::popHead() {
    QueueEntry entry;
    if (!returned_.empty()) {
        auto it = returned_.begin();
        entry = std::move(it->second);
        returned_.erase(it);
    } else {
        entry = std::move(fresh_.front());
        fresh_.pop_front();
    }
    readyBytes_ -= entry.message->body.size();
    return entry;
}

std::optional<QueueEntry> Queue::popDeliverable(TimePoint now) {
    while (hasReady()) {
        QueueEntry entry = popHead();
        // Strictly past: a message whose TTL ends right now may still go to a waiting consumer.
        if (entry.expiresAt < now) {
            journalOut(entry.message);
            deadLetter(std::move(entry), DeathReason::EXPIRED, now);
            continue;
        }
        return entry;
    }
    return std::nullopt;
}

void Queue::dispatch(TimePoint now) {
    while (hasReady() && !ring_.empty()) {
        Consumer* consumer = ring_.front();
        ring_.pop_front();
        if (!consumer->canTake()) {
            consumer->inRing = false;
            continue;
        }
        std::optional<QueueEntry> entry = popDeliverable(now);
        if (!entry) {
            ring_.push_front(consumer);
            break;
        }
        const bool redelivered = entry->redelivered;
        MessageRef message = entry->message;
        if (!consumer->noAck()) {
            ++unacked_;
            consumer->onDelivered();
        } else {
            journalOut(message); // settled as it is delivered
        }
        std::uint64_t tag = consumer->channel().recordDelivery(consumer, *this, std::move(*entry),
                                                               consumer->noAck());
        // Round-robin: the consumer that just got a message goes to the back of the ring.
        if (consumer->canTake())
            ring_.push_back(consumer);
        else
            consumer->inRing = false;
        consumer->sink().deliver(
            Delivery{consumer->tag(), tag, redelivered, std::move(message), readyCount()});
    }
}

std::optional<QueueEntry> Queue::takeForGet(TimePoint now, bool noAck) {
    std::optional<QueueEntry> entry = popDeliverable(now);
    if (entry && !noAck)
        ++unacked_;
    else if (entry)
        journalOut(entry->message);
    updateDeadline();
    return entry;
}

void Queue::requeue(QueueEntry entry, TimePoint now) {
    DEPOT_ASSERT(fresh_.empty() || entry.seq < fresh_.front().seq,
                 "a requeued message is newer than a never-delivered one");
    --unacked_;
    entry.redelivered = true;
    readyBytes_ += entry.message->body.size();
    returned_.emplace(entry.seq, std::move(entry));
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    updateDeadline();
}

void Queue::settle(QueueEntry entry, bool deadLetterIt, TimePoint now) {
    --unacked_;
    journalOut(entry.message);
    if (deadLetterIt)
        deadLetter(std::move(entry), DeathReason::REJECTED, now);
}

void Queue::addConsumer(Consumer& consumer, TimePoint now) {
    consumers_.push_back(&consumer);
    hadConsumers_ = true;
    lastUsed_ = now;
    activate(consumer, now);
}

void Queue::removeConsumer(Consumer& consumer, TimePoint now) {
    std::erase(consumers_, &consumer);
    std::erase(ring_, &consumer);
    consumer.inRing = false;
    lastUsed_ = now;
    updateDeadline();
}

void Queue::activate(Consumer& consumer, TimePoint now) {
    if (!consumer.inRing && consumer.canTake()) {
        consumer.inRing = true;
        ring_.push_back(&consumer);
    }
    dispatch(now);
    expireHead(now);
    updateDeadline();
}

std::uint64_t Queue::purge(TimePoint now) {
    const std::uint64_t count = readyCount();
    for (const QueueEntry& entry : fresh_)
        journalOut(entry.message);
    for (const auto& [seq, entry] : returned_)
        journalOut(entry.message);
    fresh_.clear();
    returned_.clear();
    readyBytes_ = 0;
    lastUsed_ = now;
    updateDeadline();
    return count;
}

void Queue::touch(TimePoint now) {
    lastUsed_ = now;
    updateDeadline();
}

void Queue::expireHead(TimePoint now) {
    // Only the head expires, as in RabbitMQ: with a queue TTL the head is always the oldest;
    // with per-message TTLs an expired message behind a live one waits, but is never delivered.
    while (hasReady()) {
        const QueueEntry& head = returned_.empty() ? fresh_.front() : returned_.begin()->second;
        if (head.expiresAt > now)
            break;
        QueueEntry expired = popHead();
        journalOut(expired.message);
        deadLetter(std::move(expired), DeathReason::EXPIRED, now);
    }
}

void Queue::enforceLengthLimits(TimePoint now) {
    if (options_.overflow != Overflow::DROP_HEAD)
        return;
    while (hasReady() && overLimit(0, 0)) {
        QueueEntry dropped = popHead();
        journalOut(dropped.message);
        deadLetter(std::move(dropped), DeathReason::MAXLEN, now);
    }
}

bool Queue::advanceTo(TimePoint now) {
    expireHead(now);
    updateDeadline();
    return options_.expires && consumers_.empty() && now >= lastUsed_ + *options_.expires;
}

TimePoint Queue::nextDeadline() const {
    TimePoint deadline = NEVER;
    if (!returned_.empty())
        deadline = returned_.begin()->second.expiresAt;
    else if (!fresh_.empty())
        deadline = fresh_.front().expiresAt;
    if (options_.expires && consumers_.empty())
        deadline = std::min(deadline, lastUsed_ + *options_.expires);
    return deadline;
}

void Queue::updateDeadline() {
    TimePoint deadline = nextDeadline();
    if (deadline != registeredDeadline_) {
        vhost_.deadlineChanged(*this, registeredDeadline_, deadline);
        registeredDeadline_ = deadline;
    }
}

void Queue::deadLetter(QueueEntry entry, DeathReason reason, TimePoint now) {
    if (!options_.deadLetterExchange)
        return;
    const Message& original = *entry.message;
    Message message{*options_.deadLetterExchange,
                    options_.deadLetterRoutingKey.value_or(original.routingKey),
                    original.properties, original.deaths, original.body};
    // The death record: a repeat of (queue, reason) counts up and moves to the front.
    auto same =
        std::find_if(message.deaths.begin(), message.deaths.end(),
                     [&](const DeathRecord& d) { return d.queue == name_ && d.reason == reason; });
    DeathRecord record;
    if (same != message.deaths.end()) {
        record = std::move(*same);
        message.deaths.erase(same);
        ++record.count;
    } else {
        record = DeathRecord{name_,
                             reason,
                             1,
                             original.exchange,
                             {original.routingKey},
                             now,
                             original.properties.expiration};
    }
    record.time = now;
    message.deaths.insert(message.deaths.begin(), std::move(record));
    // The TTL that killed it must not kill it again in the dead-letter queue.
    message.properties.expiration.reset();
    vhost_.addDeadLetter(DeadLetter{std::make_shared<const Message>(std::move(message)),
                                    *options_.deadLetterExchange});
}

} // namespace depot::core
