#pragma once
// A virtual host: an isolated namespace of exchanges, queues and bindings, like RabbitMQ's.
// Each has the default exchange "" (routes to the queue named by the routing key; cannot be
// bound or deleted) and amq.direct, amq.fanout, amq.topic, amq.headers and amq.match.
// Clients act through Channels (openChannel); the vhost holds the objects, the binding graph,
// the deadline index that drives TTL and expiry, and the dead letters waiting to be routed.
// Owned by the Broker. Single-threaded; `now` is always the caller's clock reading.

#include "broker/core/channel.h"
#include "broker/core/error.h"
#include "broker/core/exchange.h"
#include "broker/core/key_hash.h"
#include "broker/core/message_journal.h"
#include "broker/core/queue.h"
#include "broker/core/router.h"

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace depot::core {

struct QueueInfo {
    std::string name;
    QueueOptions options;
    std::uint64_t ready = 0;
    std::uint64_t readyBytes = 0;
    std::uint64_t paged = 0;      // ready messages paged out: on disk only
    std::uint64_t pagedBytes = 0; // their bodies (part of readyBytes)
    std::uint64_t unacked = 0;
    std::uint64_t consumers = 0;
    bool exclusiveOwned = false;
};

struct ExchangeInfo {
    std::string name;
    ExchangeType type;
    ExchangeOptions options;
    std::size_t bindings = 0; // as the source
};

struct BindingInfo {
    std::string source;
    std::string destination;
    bool destinationIsExchange = false;
    std::string key;
    FieldTable arguments;
};

// A message on its way to a dead-letter exchange, routed after the current operation finishes.
struct DeadLetter {
    MessageRef message;
    std::string exchange;
};

class Vhost {
public:
    explicit Vhost(std::string name);
    ~Vhost();
    Vhost(const Vhost&) = delete;
    Vhost& operator=(const Vhost&) = delete;

    const std::string& name() const { return name_; }

    // The channel lives until closeChannel; closing requeues its unacked deliveries, ends its
    // consumers and deletes its exclusive queues.
    Channel& openChannel();
    void closeChannel(Channel& channel, TimePoint now);

    // Routes and enqueues. Most callers go through Channel::publish.
    Result<PublishResult> publish(const MessageRef& message, bool mandatory, TimePoint now);
    // Routing only, no enqueue: the queues a message with this key would reach (for the
    // benchmarks and for tools that explain routing). Clears `out` first.
    Status route(std::string_view exchange, std::string_view routingKey, const FieldTable& headers,
                 std::vector<Queue*>& out);

    // Expires messages and queues whose time has come.
    void advanceTo(TimePoint now);
    // The earliest moment advanceTo has work to do; NEVER if none.
    TimePoint nextDeadline() const;

    const Exchange* findExchange(std::string_view name) const;
    const Queue* findQueue(std::string_view name) const;
    std::vector<ExchangeInfo> listExchanges() const;
    std::vector<QueueInfo> listQueues() const;
    std::vector<BindingInfo> listBindings() const;
    std::size_t channelCount() const { return channels_.size(); }

    // --- for Channel and Queue ---

    Exchange* exchange(std::string_view name);
    Queue* queue(std::string_view name);
    Status declareExchange(std::string_view name, ExchangeType type,
                           const ExchangeOptions& options);
    Status deleteExchange(std::string_view name, bool ifUnused);
    Result<QueueDeclareOk> declareQueue(std::string_view name, const QueueOptions& options,
                                        const Channel& requester, TimePoint now);
    Result<std::uint64_t> deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty,
                                      const Channel& requester, TimePoint now);
    Status bind(std::string_view source, Destination destination, std::string_view key,
                const FieldTable& arguments);
    Status unbind(std::string_view source, Destination destination, std::string_view key,
                  const FieldTable& arguments);
    // RESOURCE_LOCKED unless `queue` is usable by `requester` (exclusive queues).
    Status checkAccess(const Queue& queue, const Channel& requester) const;
    Error lockedError(const Queue& queue) const;
    Error queueNotFound(std::string_view name) const;
    Error exchangeNotFound(std::string_view name) const;

    void addDeadLetter(DeadLetter letter) { deadLetters_.push_back(std::move(letter)); }
    // Whoever keeps persistent messages of durable queues on disk (nullptr: nobody).
    void setJournal(MessageJournal* journal) { journal_ = journal; }
    MessageJournal* journal() const { return journal_; }
    // Auto-delete: the queue lost its last consumer. Deleted when the current operation ends.
    void queueLostConsumers(Queue& queue);
    void deadlineChanged(Queue& queue, TimePoint from, TimePoint to);
    // Runs the work deferred during an operation (dead letters, auto-deletes) until none is
    // left. Every public entry point calls it before returning.
    void settle(TimePoint now);

private:
    MessageJournal* journal_ = nullptr;
    void destroyQueue(Queue& queue, TimePoint now);
    void destroyExchange(Exchange& exchange);
    void removeBindingsTo(Destination destination);
    void maybeAutoDelete(Exchange& source);
    void routeDeadLetter(const DeadLetter& letter, TimePoint now);
    static bool isAutomaticCycle(const std::vector<DeathRecord>& deaths, std::string_view target);
    void deleteUnusedExchanges();
    std::string generateQueueName();

    template <class T>
    using ByName = std::unordered_map<std::string, std::unique_ptr<T>, KeyHash, std::equal_to<>>;

    std::string name_;
    ByName<Exchange> exchanges_;
    ByName<Queue> queues_;
    std::unordered_map<std::uint64_t, std::unique_ptr<Channel>> channels_;
    std::uint64_t nextChannelId_ = 1;
    std::uint64_t nextGeneratedName_ = 1;
    // For each destination, the exchanges with bindings to it and how many: deleting a queue or
    // exchange visits only those, not every exchange.
    std::unordered_map<Destination, std::unordered_map<Exchange*, std::uint32_t>> boundFrom_;
    Router router_;
    std::vector<Queue*> routed_; // scratch for publish, reused to avoid an allocation each time
    // The same for dead letters: routed_ stays what the last publish reached (PublishResult).
    std::vector<Queue*> deadLetterRouted_;
    std::set<std::pair<TimePoint, Queue*>> deadlines_;
    std::vector<DeadLetter> deadLetters_;
    std::vector<std::string> pendingQueueDeletes_;
    std::vector<std::string> pendingExchangeDeletes_;
};

} // namespace depot::core
