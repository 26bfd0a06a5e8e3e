#include "broker/core/channel.h"

#include "broker/core/names.h"
#include "broker/core/vhost.h"

#include <algorithm>

namespace depot::core {

bool Consumer::canTake() const {
    return channel_->flowActive() && sink_->acceptsMore() &&
           (noAck_ || prefetchCount_ == 0 || unacked_ < prefetchCount_);
}

Channel::Channel(Vhost& vhost, std::uint64_t id) : vhost_(vhost), id_(id) {}

Channel::~Channel() = default;

// --- topology ---

Status Channel::declareExchange(std::string_view name, ExchangeType type,
                                const ExchangeOptions& options) {
    return vhost_.declareExchange(name, type, options);
}

Status Channel::declareExchangePassive(std::string_view name) {
    if (Status s = validateName("exchange", name); !s)
        return s;
    if (vhost_.exchange(name) == nullptr)
        return vhost_.exchangeNotFound(name);
    return {};
}

Status Channel::deleteExchange(std::string_view name, bool ifUnused) {
    return vhost_.deleteExchange(name, ifUnused);
}

Result<QueueDeclareOk> Channel::declareQueue(std::string_view name, const QueueOptions& options,
                                             TimePoint now) {
    auto result = vhost_.declareQueue(name, options, *this, now);
    vhost_.settle(now);
    return result;
}

Result<QueueDeclareOk> Channel::declareQueuePassive(std::string_view name, TimePoint now) {
    Result<Queue*> queue = usableQueue(name);
    if (!queue)
        return queue.error();
    (*queue)->touch(now);
    return QueueDeclareOk{(*queue)->name(), (*queue)->readyCount(), (*queue)->consumerCount()};
}

Result<std::uint64_t> Channel::deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty,
                                           TimePoint now) {
    auto result = vhost_.deleteQueue(name, ifUnused, ifEmpty, *this, now);
    vhost_.settle(now);
    return result;
}

Result<std::uint64_t> Channel::purgeQueue(std::string_view name, TimePoint now) {
    Result<Queue*> queue = usableQueue(name);
    if (!queue)
        return queue.error();
    return (*queue)->purge(now);
}

Result<Queue*> Channel::usableQueue(std::string_view name) {
    if (Status s = validateName("queue", name); !s)
        return s.error();
    Queue* queue = vhost_.queue(name);
    if (queue == nullptr)
        return vhost_.queueNotFound(name);
    if (Status s = vhost_.checkAccess(*queue, *this); !s)
        return s.error();
    return queue;
}

Status Channel::bindQueue(std::string_view queue, std::string_view exchange,
                          std::string_view bindingKey, const FieldTable& arguments) {
    Result<Queue*> q = usableQueue(queue);
    if (!q)
        return q.error();
    return vhost_.bind(exchange, Destination::toQueue(*q), bindingKey, arguments);
}

Status Channel::unbindQueue(std::string_view queue, std::string_view exchange,
                            std::string_view bindingKey, const FieldTable& arguments) {
    if (Status s = validateName("queue", queue); !s)
        return s;
    // Unbinding from a queue that is gone succeeds, as in RabbitMQ 3.10: the binding is gone too.
    Queue* q = vhost_.queue(queue);
    if (q == nullptr)
        return {};
    if (Status s = vhost_.checkAccess(*q, *this); !s)
        return s;
    return vhost_.unbind(exchange, Destination::toQueue(q), bindingKey, arguments);
}

Status Channel::bindExchange(std::string_view destination, std::string_view source,
                             std::string_view bindingKey, const FieldTable& arguments) {
    if (Status s = validateName("exchange", destination); !s)
        return s;
    Exchange* x = vhost_.exchange(destination);
    if (x == nullptr)
        return vhost_.exchangeNotFound(destination);
    if (x->isDefault())
        return makeError(ErrorCode::ACCESS_REFUSED,
                         "operation not permitted on the default exchange");
    return vhost_.bind(source, Destination::toExchange(x), bindingKey, arguments);
}

Status Channel::unbindExchange(std::string_view destination, std::string_view source,
                               std::string_view bindingKey, const FieldTable& arguments) {
    if (Status s = validateName("exchange", destination); !s)
        return s;
    if (destination.empty())
        return makeError(ErrorCode::ACCESS_REFUSED,
                         "operation not permitted on the default exchange");
    Exchange* x = vhost_.exchange(destination);
    if (x == nullptr)
        return {}; // as for queues: nothing left to unbind
    return vhost_.unbind(source, Destination::toExchange(x), bindingKey, arguments);
}

// --- publishing ---

Result<PublishResult> Channel::publish(std::string_view exchange, std::string_view routingKey,
                                       Properties properties, std::string body, bool mandatory,
                                       TimePoint now) {
    // Check before building the message, so a bad publish costs no copy of its body.
    if (Status s = validateName("exchange", exchange); !s)
        return s.error();
    if (Status s = validateRoutingKey(routingKey); !s)
        return s.error();
    return vhost_.publish(makeMessage(std::string(exchange), std::string(routingKey),
                                      std::move(properties), std::move(body)),
                          mandatory, now);
}

Result<PublishResult> Channel::publish(const MessageRef& message, bool mandatory, TimePoint now) {
    return vhost_.publish(message, mandatory, now);
}

// --- consuming ---

Result<std::string> Channel::consume(std::string_view queueName, DeliverySink& sink,
                                     const ConsumeOptions& options, TimePoint now) {
    Result<Queue*> found = usableQueue(queueName);
    if (!found)
        return found.error();
    Queue& queue = **found;
    if (Status s = validateName("consumer tag", options.consumerTag); !s)
        return s.error();
    std::string tag = options.consumerTag;
    if (tag.empty()) {
        do {
            tag = "amq.ctag-" + std::to_string(id_) + "-" + std::to_string(nextConsumerNumber_++);
        } while (consumers_.contains(tag));
    } else if (consumers_.contains(tag)) {
        return makeError(ErrorCode::NOT_ALLOWED,
                         "attempt to reuse consumer tag '" + tag + "' on this channel");
    }
    if (queue.hasExclusiveConsumer() || (options.exclusive && queue.consumerCount() > 0))
        return makeError(ErrorCode::ACCESS_REFUSED, "queue '" + queue.name() + "' in vhost '" +
                                                        vhost_.name() + "' in exclusive use");
    auto consumer = std::make_unique<Consumer>(tag, queue, *this, sink, options);
    Consumer& added = *consumer;
    consumers_.emplace(tag, std::move(consumer));
    queue.addConsumer(added, now);
    vhost_.settle(now);
    return tag;
}

Status Channel::cancel(std::string_view consumerTag, TimePoint now) {
    auto it = consumers_.find(std::string(consumerTag));
    if (it == consumers_.end())
        return {};
    endConsumer(*it->second, now);
    vhost_.settle(now);
    return {};
}

void Channel::endConsumer(Consumer& consumer, TimePoint now) {
    Queue& queue = consumer.queue();
    queue.removeConsumer(consumer, now);
    for (Unacked& record : unacked_)
        if (record.consumer == &consumer)
            record.consumer = nullptr;
    if (queue.consumerCount() == 0)
        vhost_.queueLostConsumers(queue);
    const std::string tag = consumer.tag(); // erase() must not read the key it destroys
    consumers_.erase(tag);
}

std::uint64_t Channel::recordDelivery(Consumer* consumer, Queue& queue, QueueEntry entry,
                                      bool noAck) {
    const std::uint64_t tag = nextDeliveryTag_++;
    if (!noAck) {
        unacked_.push_back(Unacked{tag, &queue, consumer, std::move(entry), false});
        ++unsettled_;
    }
    return tag;
}

Result<std::optional<Delivery>> Channel::get(std::string_view queueName, bool noAck,
                                             TimePoint now) {
    Result<Queue*> found = usableQueue(queueName);
    if (!found)
        return found.error();
    Queue& queue = **found;
    queue.touch(now);
    std::optional<QueueEntry> entry = queue.takeForGet(now, noAck);
    std::optional<Delivery> delivery;
    if (entry) {
        const bool redelivered = entry->redelivered;
        MessageRef message = entry->message;
        delivery = Delivery{{}, 0, redelivered, std::move(message), queue.readyCount()};
        delivery->deliveryTag = recordDelivery(nullptr, queue, std::move(*entry), noAck);
    }
    vhost_.settle(now);
    return delivery;
}

// --- settling ---

Channel::Unacked* Channel::findUnacked(std::uint64_t deliveryTag) {
    auto it = std::lower_bound(unacked_.begin(), unacked_.end(), deliveryTag,
                               [](const Unacked& u, std::uint64_t tag) { return u.tag < tag; });
    if (it == unacked_.end() || it->tag != deliveryTag || it->settled)
        return nullptr;
    return &*it;
}

void Channel::popSettled() {
    while (!unacked_.empty() && unacked_.front().settled)
        unacked_.pop_front();
}

void Channel::settleOne(Unacked& record, Settlement how, TimePoint now) {
    record.settled = true;
    --unsettled_;
    if (record.queue == nullptr)
        return; // its queue was deleted: nothing to give back
    Queue& queue = *record.queue;
    switch (how) {
    case Settlement::ACK:
        queue.settle(std::move(record.entry), false, now);
        break;
    case Settlement::DEAD_LETTER:
        queue.settle(std::move(record.entry), true, now);
        break;
    case Settlement::REQUEUE:
        queue.requeue(std::move(record.entry), now);
        break;
    }
    record.entry.message.reset();
    if (record.consumer != nullptr) {
        record.consumer->onSettled();
        queue.activate(*record.consumer, now);
    }
}

Status Channel::settle(std::uint64_t deliveryTag, bool multiple, Settlement how, TimePoint now) {
    if (multiple) {
        if (deliveryTag != 0 && findUnacked(deliveryTag) == nullptr)
            return makeError(ErrorCode::PRECONDITION_FAILED,
                             "unknown delivery tag " + std::to_string(deliveryTag));
        // By index: a requeue can deliver to one of our consumers, which appends to unacked_
        // (a deque keeps references but not iterators valid on push_back).
        const std::size_t end = unacked_.size();
        for (std::size_t i = 0; i < end; ++i) {
            Unacked& record = unacked_[i];
            if (deliveryTag != 0 && record.tag > deliveryTag)
                break;
            if (!record.settled)
                settleOne(record, how, now);
        }
    } else {
        Unacked* record = findUnacked(deliveryTag);
        if (record == nullptr)
            return makeError(ErrorCode::PRECONDITION_FAILED,
                             "unknown delivery tag " + std::to_string(deliveryTag));
        settleOne(*record, how, now);
    }
    popSettled();
    vhost_.settle(now);
    return {};
}

Status Channel::ack(std::uint64_t deliveryTag, bool multiple, TimePoint now) {
    return settle(deliveryTag, multiple, Settlement::ACK, now);
}

Status Channel::nack(std::uint64_t deliveryTag, bool multiple, bool requeue, TimePoint now) {
    return settle(deliveryTag, multiple, requeue ? Settlement::REQUEUE : Settlement::DEAD_LETTER,
                  now);
}

Status Channel::reject(std::uint64_t deliveryTag, bool requeue, TimePoint now) {
    return nack(deliveryTag, false, requeue, now);
}

void Channel::recover(TimePoint now) {
    (void)settle(0, true, Settlement::REQUEUE, now);
}

void Channel::setFlow(bool active, TimePoint now) {
    if (flowActive_ == active)
        return;
    flowActive_ = active;
    if (active)
        resumeDeliveries(now);
}

void Channel::resumeDeliveries(TimePoint now) {
    for (auto& [tag, consumer] : consumers_)
        consumer->queue().activate(*consumer, now);
    vhost_.settle(now);
}

// --- lifecycle ---

void Channel::forgetQueue(const Queue& queue) {
    for (Unacked& record : unacked_) {
        if (record.queue == &queue && !record.settled) {
            record.queue = nullptr;
            record.consumer = nullptr;
        }
    }
    std::vector<Consumer*> ending;
    for (auto& [tag, consumer] : consumers_)
        if (&consumer->queue() == &queue)
            ending.push_back(consumer.get());
    for (Consumer* consumer : ending) {
        DeliverySink& sink = consumer->sink();
        std::string tag = consumer->tag();
        consumers_.erase(tag);
        sink.onCancelled(tag);
    }
}

void Channel::shutdown(TimePoint now) {
    // End consumers first, so requeued messages go to other channels' consumers, not ours.
    while (!consumers_.empty())
        endConsumer(*consumers_.begin()->second, now);
    for (std::size_t i = 0, end = unacked_.size(); i < end; ++i)
        if (!unacked_[i].settled)
            settleOne(unacked_[i], Settlement::REQUEUE, now);
    unacked_.clear();
}

} // namespace depot::core
