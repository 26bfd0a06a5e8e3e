#pragma once
// A channel is one client's conversation with a vhost: every AMQP method (declare, bind,
// publish, consume, ack, get, ...) is called on a channel. It owns its consumers, numbers its
// deliveries (delivery tags, from 1) and holds the unacknowledged ones; when it closes, they are
// requeued and its exclusive queues are deleted. depotd opens one per connection; an embedded
// client opens one per Connection. Open with Vhost::openChannel, end with Vhost::closeChannel.
// Single-threaded like the rest of the core; `now` is the caller's clock reading.

#include "broker/core/consumer.h"
#include "broker/core/error.h"
#include "broker/core/exchange.h"
#include "broker/core/queue.h"
#include "broker/core/queue_options.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace depot::core {

class Vhost;

struct QueueDeclareOk {
    std::string queue; // the name, which the broker chooses when the declare gave none
    std::uint64_t messageCount = 0;
    std::uint64_t consumerCount = 0;
};

struct PublishResult {
    std::size_t queues = 0; // how many queues received the message
    bool returned = false;  // mandatory and routed to no queue: hand it back (basic.return)
    bool rejected = false;  // a full queue with x-overflow reject-publish refused it (confirm nack)
    // The queues that received it, for depotd's flow control to see how far behind their
    // consumers are. Valid until the vhost's next publish: read it at once.
    std::span<const Queue* const> routed;
};

class Channel {
public:
    Channel(Vhost& vhost, std::uint64_t id);
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    std::uint64_t id() const { return id_; }
    Vhost& vhost() const { return vhost_; }

    Status declareExchange(std::string_view name, ExchangeType type,
                           const ExchangeOptions& options = {});
    Status declareExchangePassive(std::string_view name);
    // Deleting an exchange that does not exist succeeds, as in RabbitMQ 3.x.
    Status deleteExchange(std::string_view name, bool ifUnused = false);

    Result<QueueDeclareOk> declareQueue(std::string_view name, const QueueOptions& options,
                                        TimePoint now);
    Result<QueueDeclareOk> declareQueuePassive(std::string_view name, TimePoint now);
    // Returns the number of ready messages deleted with the queue (0 if it did not exist).
    Result<std::uint64_t> deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty,
                                      TimePoint now);
    // Removes ready messages (not unacked ones); returns how many.
    Result<std::uint64_t> purgeQueue(std::string_view name, TimePoint now);

    Status bindQueue(std::string_view queue, std::string_view exchange, std::string_view bindingKey,
                     const FieldTable& arguments = {});
    Status unbindQueue(std::string_view queue, std::string_view exchange,
                       std::string_view bindingKey, const FieldTable& arguments = {});
    // Exchange-to-exchange: messages routed by `source` with a matching key go on to `destination`.
    Status bindExchange(std::string_view destination, std::string_view source,
                        std::string_view bindingKey, const FieldTable& arguments = {});
    Status unbindExchange(std::string_view destination, std::string_view source,
                          std::string_view bindingKey, const FieldTable& arguments = {});

    // Copies `body` once into an immutable message shared by every queue it reaches.
    Result<PublishResult> publish(std::string_view exchange, std::string_view routingKey,
                                  Properties properties, std::string body, bool mandatory,
                                  TimePoint now);
    // Publishes a message built by the caller (its exchange and routingKey say where).
    Result<PublishResult> publish(const MessageRef& message, bool mandatory, TimePoint now);

    // Returns the consumer tag (generated as "amq.ctag-..." when options.consumerTag is empty).
    // `sink` receives this consumer's deliveries and must outlive it.
    Result<std::string> consume(std::string_view queue, DeliverySink& sink,
                                const ConsumeOptions& options, TimePoint now);
    // Unacked deliveries of a cancelled consumer stay on the channel, acknowledgeable, until the
    // channel closes (then they are requeued): RabbitMQ's behaviour. Unknown tags are ignored.
    Status cancel(std::string_view consumerTag, TimePoint now);

    // `multiple` settles every outstanding delivery up to and including the tag; tag 0 with
    // `multiple` means all of them. An unknown tag is PRECONDITION_FAILED, as in RabbitMQ.
    Status ack(std::uint64_t deliveryTag, bool multiple, TimePoint now);
    // Without requeue the message is dead-lettered (reason "rejected") or dropped.
    Status nack(std::uint64_t deliveryTag, bool multiple, bool requeue, TimePoint now);
    Status reject(std::uint64_t deliveryTag, bool requeue, TimePoint now);
    // basic.recover with requeue: every unacked delivery goes back to its queue.
    void recover(TimePoint now);

    // basic.get: the head of the queue, or nullopt if it has no ready message.
    Result<std::optional<Delivery>> get(std::string_view queue, bool noAck, TimePoint now);

    // Flow control (AMQP channel.flow): while off, this channel's consumers get no deliveries.
    void setFlow(bool active, TimePoint now);
    bool flowActive() const { return flowActive_; }
    // A sink that said no to acceptsMore() can take deliveries again: offer them.
    void resumeDeliveries(TimePoint now);

    std::size_t unackedCount() const { return unsettled_; }
    std::size_t consumerCount() const { return consumers_.size(); }
    // For listings: calls fn(const Consumer&) for each consumer of this channel.
    template <class F> void forEachConsumer(F&& fn) const {
        for (const auto& entry : consumers_)
            fn(static_cast<const Consumer&>(*entry.second));
    }

    // --- called by Queue and Vhost ---

    // Hands `entry` to `consumer` (nullptr for basic.get) and returns its delivery tag. Unless
    // noAck, the channel keeps the entry until it is settled.
    std::uint64_t recordDelivery(Consumer* consumer, Queue& queue, QueueEntry entry, bool noAck);
    // The queue is being deleted: its consumers end (the sinks are told) and unacked deliveries
    // from it can no longer be requeued.
    void forgetQueue(const Queue& queue);
    // Closing: consumers end silently, unacked deliveries are requeued.
    void shutdown(TimePoint now);

private:
    struct Unacked {
        std::uint64_t tag;
        Queue* queue;       // nullptr once the queue was deleted
        Consumer* consumer; // nullptr for basic.get, or once the consumer was cancelled
        QueueEntry entry;
        bool settled;
    };
    enum class Settlement { ACK, REQUEUE, DEAD_LETTER };

    Status settle(std::uint64_t deliveryTag, bool multiple, Settlement how, TimePoint now);
    void settleOne(Unacked& record, Settlement how, TimePoint now);
    Unacked* findUnacked(std::uint64_t deliveryTag);
    void popSettled();
    Result<Queue*> usableQueue(std::string_view name);
    void endConsumer(Consumer& consumer, TimePoint now);

    Vhost& vhost_;
    std::uint64_t id_;
    std::uint64_t nextDeliveryTag_ = 1;
    std::uint64_t nextConsumerNumber_ = 1;
    bool flowActive_ = true;
    // In delivery-tag order; settled records stay until the ones before them are settled, so
    // lookups are a binary search and an in-order ack pops the front.
    std::deque<Unacked> unacked_;
    std::size_t unsettled_ = 0;
    std::unordered_map<std::string, std::unique_ptr<Consumer>> consumers_;
};

} // namespace depot::core
