#include "broker/core/queue.h"

#include "broker/core/channel.h"
#include "broker/core/vhost.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace depot::core {

namespace {

TimePoint expiryOf(std::optional<Milliseconds> expiration, const QueueOptions& options,
                   TimePoint now) {
    std::optional<Milliseconds> ttl = options.messageTtl;
    if (expiration && (!ttl || *expiration < *ttl))
        ttl = expiration;
    return ttl ? now + *ttl : NEVER;
}

std::uint64_t bodyBytes(const QueueEntry& entry) {
    return entry.message ? entry.message->body.size() : entry.pagedBytes;
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
            deadLetter(QueueEntry{message, 0, NEVER, 0, 0, false}, DeathReason::MAXLEN, now);
        return false;
    }
    QueueEntry entry;
    entry.message = message;
    entry.seq = nextSeq_++;
    entry.expiresAt = expiryOf(message->properties.expiration, options_, now);
    fresh_.push_back(std::move(entry));
    readyBytes_ += bytes;
    journalIn(message);
    // Deliver before enforcing limits and TTL: a waiting consumer takes the message even from a
    // queue with x-max-length 0 or a message TTL of 0, as in RabbitMQ.
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    pageOutTail();
    updateDeadline();
    return true;
}

void Queue::restore(const PagedMessage& message, TimePoint enqueuedAt, TimePoint now) {
    QueueEntry entry;
    entry.seq = nextSeq_++;
    entry.expiresAt = expiryOf(message.expiration, options_, enqueuedAt);
    entry.pagedHandle = message.handle;
    entry.pagedBytes = message.bodyBytes;
    entry.redelivered = true;
    fresh_.push_back(std::move(entry));
    readyBytes_ += message.bodyBytes;
    ++paged_;
    pagedBytes_ += message.bodyBytes;
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    updateDeadline();
}

bool Queue::journaled(const Message& message) const {
    return options_.durable && message.properties.deliveryMode == DeliveryMode::PERSISTENT;
}

void Queue::journalIn(const MessageRef& message) {
    if (journaled(*message))
        if (MessageJournal* journal = vhost_.journal())
            journal->enqueued(*this, message);
}

void Queue::journalOut(const QueueEntry& entry) {
    std::uint64_t handle = entry.pagedHandle; // paged out: only journaled messages are
    if (entry.message) {
        if (!journaled(*entry.message))
            return;
        handle = entry.message->journalHandle;
    }
    if (MessageJournal* journal = vhost_.journal())
        journal->removed(*this, handle);
}

// Only the newest ready message is ever paged out, as it arrives, when the ready messages in
// memory exceed the limits: at most inMemoryLength() of them (and about inMemoryBytes()) are
// held. The limits count what is in memory, not the backlog: once the head has drained, new
// arrivals stay in memory even behind paged-out ones (pageIn reads around them), so a backlog
// that stays past the limit is not read back from disk message by message.
// Only a message the journal can give back (a persistent one in a durable queue, with a handle).
void Queue::pageOutTail() {
    if (fresh_.empty() || !fresh_.back().message)
        return;
    QueueEntry& tail = fresh_.back();
    const Message& message = *tail.message;
    if (readyCount() - paged_ <= options_.inMemoryLength() &&
        readyBytes_ - pagedBytes_ <= options_.inMemoryBytes())
        return;
    if (!journaled(message) || message.journalHandle == 0 || vhost_.journal() == nullptr ||
        message.body.size() > std::numeric_limits<std::uint32_t>::max())
        return;
    tail.pagedHandle = message.journalHandle;
    tail.pagedBytes = static_cast<std::uint32_t>(message.body.size());
    tail.message.reset(); // freed here unless another queue still holds it in memory
    ++paged_;
    pagedBytes_ += tail.pagedBytes;
}

// On a taken entry (out of the ready list already). The paged-out messages right behind it are
// read with it (they are taken next): one call, and for a store one read from disk, for many.
bool Queue::pageIn(QueueEntry& entry) {
    if (entry.message)
        return true;
    MessageJournal* journal = vhost_.journal();
    if (journal == nullptr)
        return false;
    constexpr std::size_t READ_AHEAD = 128;
    constexpr std::uint64_t READ_AHEAD_BYTES = std::uint64_t{1} << 20;
    std::vector<std::uint64_t> handles{entry.pagedHandle};
    std::vector<QueueEntry*> ahead;
    std::uint64_t bytes = entry.pagedBytes;
    for (std::size_t i = 0; i < fresh_.size() && i < READ_AHEAD; ++i) {
        QueueEntry& next = fresh_[i];
        if (next.message)
            continue;
        if (bytes + next.pagedBytes > READ_AHEAD_BYTES)
            break;
        handles.push_back(next.pagedHandle);
        ahead.push_back(&next);
        bytes += next.pagedBytes;
    }
    std::vector<MessageRef> messages(handles.size());
    journal->reload(handles, messages);
    for (std::size_t i = 0; i < ahead.size(); ++i) {
        QueueEntry& next = *ahead[i];
        if (!messages[i + 1])
            continue; // stays paged out: tried again (and skipped) when it is taken
        next.message = std::move(messages[i + 1]);
        --paged_;
        pagedBytes_ -= next.pagedBytes;
        next.pagedHandle = 0;
        next.pagedBytes = 0;
    }
    // Unreadable now (the journal said why): it leaves this queue, but the journal is not told
    // it left, so that it keeps the message for the next start rather than losing it for good.
    entry.message = std::move(messages[0]);
    if (!entry.message)
        return false;
    entry.pagedHandle = 0;
    entry.pagedBytes = 0;
    return true;
}

void Queue::drop(QueueEntry entry, DeathReason reason, TimePoint now) {
    // A dead letter needs the contents: read back before the journal lets go of them.
    if (options_.deadLetterExchange && !pageIn(entry))
        return;
    journalOut(entry);
    deadLetter(std::move(entry), reason, now);
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
    readyBytes_ -= bodyBytes(entry);
    if (!entry.message) {
        --paged_;
        pagedBytes_ -= entry.pagedBytes;
    }
    return entry;
}

std::optional<QueueEntry> Queue::popDeliverable(TimePoint now) {
    while (hasReady()) {
        QueueEntry entry = popHead();
        // Strictly past: a message whose TTL ends right now may still go to a waiting consumer.
        if (entry.expiresAt < now) {
            drop(std::move(entry), DeathReason::EXPIRED, now);
            continue;
        }
        if (pageIn(entry))
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
            journalOut(*entry); // settled as it is delivered
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
        journalOut(*entry);
    updateDeadline();
    return entry;
}

void Queue::requeue(QueueEntry entry, TimePoint now) {
    DEPOT_ASSERT(fresh_.empty() || entry.seq < fresh_.front().seq,
                 "a requeued message is newer than a never-delivered one");
    --unacked_;
    entry.redelivered = true;
    readyBytes_ += bodyBytes(entry);
    returned_.emplace(entry.seq, std::move(entry));
    dispatch(now);
    enforceLengthLimits(now);
    expireHead(now);
    updateDeadline();
}

void Queue::settle(QueueEntry entry, bool deadLetterIt, TimePoint now) {
    --unacked_;
    journalOut(entry);
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
        journalOut(entry);
    for (const auto& [seq, entry] : returned_)
        journalOut(entry);
    fresh_.clear();
    returned_.clear();
    readyBytes_ = 0;
    paged_ = 0;
    pagedBytes_ = 0;
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
        drop(popHead(), DeathReason::EXPIRED, now);
    }
}

void Queue::enforceLengthLimits(TimePoint now) {
    if (options_.overflow != Overflow::DROP_HEAD)
        return;
    while (hasReady() && overLimit(0, 0)) {
        drop(popHead(), DeathReason::MAXLEN, now);
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
    if (!options_.deadLetterExchange || !entry.message)
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
