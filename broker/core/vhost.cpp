#include "broker/core/vhost.h"

#include "broker/core/direct_exchange.h"
#include "broker/core/fanout_exchange.h"
#include "broker/core/headers_exchange.h"
#include "broker/core/names.h"
#include "broker/core/topic_exchange.h"

#include <algorithm>

namespace depot::core {

namespace {

ExchangeOptions durableOptions() {
    ExchangeOptions options;
    options.durable = true;
    return options;
}

// The default exchange "" routes to the queue whose name is the routing key. It holds no
// bindings of its own (binding to it is refused); it looks the queue up in the vhost.
template <class QueueMap> class DefaultExchange final : public Exchange {
public:
    explicit DefaultExchange(const QueueMap& queues)
        : Exchange("", ExchangeType::DIRECT, durableOptions()), queues_(queues) {}

    void route(std::string_view routingKey, const FieldTable&,
               std::vector<Destination>& out) override {
        if (auto it = queues_.find(routingKey); it != queues_.end())
            out.push_back(Destination::toQueue(it->second.get()));
    }

private:
    void indexAdd(const BindingEntry&) override {}
    void indexRemove(const BindingEntry&) override {}
    const QueueMap& queues_;
};

std::unique_ptr<Exchange> makeExchange(std::string name, ExchangeType type,
                                       ExchangeOptions options) {
    switch (type) {
    case ExchangeType::DIRECT:
        return std::make_unique<DirectExchange>(std::move(name), std::move(options));
    case ExchangeType::FANOUT:
        return std::make_unique<FanoutExchange>(std::move(name), std::move(options));
    case ExchangeType::TOPIC:
        return std::make_unique<TopicExchange>(std::move(name), std::move(options));
    case ExchangeType::HEADERS:
        return std::make_unique<HeadersExchange>(std::move(name), std::move(options));
    }
    DEPOT_ASSERT(false, "exchange type outside the enum");
}

Error defaultExchangeRefused() {
    return makeError(ErrorCode::ACCESS_REFUSED, "operation not permitted on the default exchange");
}

std::string flag(bool b) {
    return b ? "true" : "false";
}

} // namespace

Vhost::Vhost(std::string name)
    : name_(std::move(name)), router_([this](std::string_view n) { return exchange(n); }) {
    exchanges_.emplace("", std::make_unique<DefaultExchange<ByName<Queue>>>(queues_));
    const ExchangeOptions builtIn = durableOptions();
    for (auto [n, type] : {std::pair{"amq.direct", ExchangeType::DIRECT},
                           std::pair{"amq.fanout", ExchangeType::FANOUT},
                           std::pair{"amq.topic", ExchangeType::TOPIC},
                           std::pair{"amq.headers", ExchangeType::HEADERS},
                           std::pair{"amq.match", ExchangeType::HEADERS}})
        exchanges_.emplace(n, makeExchange(n, type, builtIn));
}

Vhost::~Vhost() {
    // Channels first: they hold pointers to queues and consumers.
    channels_.clear();
    queues_.clear();
    exchanges_.clear();
}

// --- lookups and errors ---

Exchange* Vhost::exchange(std::string_view name) {
    auto it = exchanges_.find(name);
    return it == exchanges_.end() ? nullptr : it->second.get();
}

Queue* Vhost::queue(std::string_view name) {
    auto it = queues_.find(name);
    return it == queues_.end() ? nullptr : it->second.get();
}

const Exchange* Vhost::findExchange(std::string_view name) const {
    auto it = exchanges_.find(name);
    return it == exchanges_.end() ? nullptr : it->second.get();
}

const Queue* Vhost::findQueue(std::string_view name) const {
    auto it = queues_.find(name);
    return it == queues_.end() ? nullptr : it->second.get();
}

Error Vhost::queueNotFound(std::string_view name) const {
    return makeError(ErrorCode::NOT_FOUND,
                     "no queue '" + std::string(name) + "' in vhost '" + name_ + "'");
}

Error Vhost::exchangeNotFound(std::string_view name) const {
    return makeError(ErrorCode::NOT_FOUND,
                     "no exchange '" + std::string(name) + "' in vhost '" + name_ + "'");
}

Status Vhost::checkAccess(const Queue& queue, const Channel& requester) const {
    if (queue.owner() == nullptr || queue.owner() == &requester)
        return {};
    return lockedError(queue);
}

Error Vhost::lockedError(const Queue& queue) const {
    return makeError(ErrorCode::RESOURCE_LOCKED,
                     "cannot obtain exclusive access to locked queue '" + queue.name() +
                         "' in vhost '" + name_ +
                         "'. It could be originally declared on another connection or the "
                         "exclusive property value does not match that of the original "
                         "declaration.");
}

// --- channels ---

Channel& Vhost::openChannel() {
    const std::uint64_t id = nextChannelId_++;
    auto [it, inserted] = channels_.emplace(id, std::make_unique<Channel>(*this, id));
    return *it->second;
}

void Vhost::closeChannel(Channel& channel, TimePoint now) {
    channel.shutdown(now);
    for (auto& [name, queue] : queues_)
        if (queue->owner() == &channel)
            pendingQueueDeletes_.push_back(name);
    settle(now);
    channels_.erase(channel.id());
}

// --- exchanges ---

Status Vhost::declareExchange(std::string_view name, ExchangeType type,
                              const ExchangeOptions& options) {
    if (name.empty())
        return defaultExchangeRefused();
    Exchange* existing = exchange(name);
    if (existing == nullptr) {
        // The reserved-prefix check applies only to creating: redeclaring amq.topic is fine.
        if (Status s = validateNewExchangeName(name); !s)
            return s;
        exchanges_.emplace(std::string(name), makeExchange(std::string(name), type, options));
        return {};
    }
    auto inequivalent = [&](const char* arg, const std::string& received,
                            const std::string& current) {
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "inequivalent arg '" + std::string(arg) + "' for exchange '" +
                             std::string(name) + "' in vhost '" + name_ + "': received '" +
                             received + "' but current is '" + current + "'");
    };
    const ExchangeOptions& current = existing->options();
    if (existing->type() != type)
        return inequivalent("type", exchangeTypeName(type), exchangeTypeName(existing->type()));
    if (options.durable != current.durable)
        return inequivalent("durable", flag(options.durable), flag(current.durable));
    if (options.autoDelete != current.autoDelete)
        return inequivalent("auto_delete", flag(options.autoDelete), flag(current.autoDelete));
    if (options.internal != current.internal)
        return inequivalent("internal", flag(options.internal), flag(current.internal));
    if (options.alternateExchange != current.alternateExchange)
        return inequivalent("alternate-exchange", options.alternateExchange,
                            current.alternateExchange);
    return {};
}

Status Vhost::deleteExchange(std::string_view name, bool ifUnused) {
    if (name.empty())
        return defaultExchangeRefused();
    if (Status s = validateName("exchange", name); !s)
        return s;
    // Checked before existence, as RabbitMQ does: no amq.* exchange may be deleted.
    if (hasReservedPrefix(name))
        return makeError(ErrorCode::ACCESS_REFUSED, "deletion of system exchange '" +
                                                        std::string(name) + "' in vhost '" + name_ +
                                                        "' not allowed");
    Exchange* x = exchange(name);
    if (x == nullptr)
        return {};
    // "Unused" means no bindings from the exchange, as in RabbitMQ (conditional_delete checks
    // has_for_source): being the destination of an exchange-to-exchange binding does not count.
    if (ifUnused && x->bindingCount() > 0)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "exchange '" + std::string(name) + "' in vhost '" + name_ + "' in use");
    destroyExchange(*x);
    deleteUnusedExchanges();
    return {};
}

void Vhost::destroyExchange(Exchange& x) {
    const Destination self = Destination::toExchange(&x);
    // Bindings from x: forget them in each destination's reverse index.
    for (const BindingEntry& binding : x.bindings()) {
        auto it = boundFrom_.find(binding.destination);
        if (it != boundFrom_.end()) {
            it->second.erase(&x);
            if (it->second.empty())
                boundFrom_.erase(it);
        }
    }
    removeBindingsTo(self);
    exchanges_.erase(x.name()); // destroys x
}

void Vhost::removeBindingsTo(Destination destination) {
    auto it = boundFrom_.find(destination);
    if (it == boundFrom_.end())
        return;
    std::vector<Exchange*> sources;
    for (auto& [source, count] : it->second)
        sources.push_back(source);
    boundFrom_.erase(it);
    for (Exchange* source : sources) {
        source->removeBindingsTo(destination);
        maybeAutoDelete(*source);
    }
}

void Vhost::maybeAutoDelete(Exchange& source) {
    if (source.options().autoDelete && source.hadBindings() && source.bindingCount() == 0)
        pendingExchangeDeletes_.push_back(source.name());
}

// --- queues ---

std::string Vhost::generateQueueName() {
    std::string name;
    do {
        name = "amq.gen-" + std::to_string(nextGeneratedName_++);
    } while (queues_.contains(name));
    return name;
}

Result<QueueDeclareOk> Vhost::declareQueue(std::string_view name, const QueueOptions& options,
                                           const Channel& requester, TimePoint now) {
    if (Status s = validateQueueOptions(options); !s)
        return s.error();
    if (Queue* existing = queue(name)) {
        if (Status s = checkAccess(*existing, requester); !s)
            return s.error();
        if (options.exclusive != existing->options().exclusive)
            return lockedError(*existing);
        if (std::string diff = describeInequivalence(options, existing->options()); !diff.empty())
            return makeError(ErrorCode::PRECONDITION_FAILED,
                             diff + " (queue '" + existing->name() + "' in vhost '" + name_ + "')");
        existing->touch(now);
        return QueueDeclareOk{existing->name(), existing->readyCount(), existing->consumerCount()};
    }
    std::string queueName;
    if (name.empty()) {
        queueName = generateQueueName();
    } else {
        if (Status s = validateNewQueueName(name); !s)
            return s.error();
        queueName = name;
    }
    auto created = std::make_unique<Queue>(*this, queueName, options,
                                           options.exclusive ? &requester : nullptr, now);
    queues_.emplace(queueName, std::move(created));
    return QueueDeclareOk{queueName, 0, 0};
}

Result<std::uint64_t> Vhost::deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty,
                                         const Channel& requester, TimePoint now) {
    if (Status s = validateName("queue", name); !s)
        return s.error();
    Queue* q = queue(name);
    if (q == nullptr)
        return std::uint64_t{0};
    if (Status s = checkAccess(*q, requester); !s)
        return s.error();
    if (ifUnused && q->consumerCount() > 0)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "queue '" + q->name() + "' in vhost '" + name_ + "' in use");
    if (ifEmpty && q->readyCount() > 0)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "queue '" + q->name() + "' in vhost '" + name_ + "' is not empty");
    const std::uint64_t count = q->readyCount();
    destroyQueue(*q, now);
    return count;
}

void Vhost::destroyQueue(Queue& q, TimePoint now) {
    (void)now;
    if (journal_ != nullptr && q.options().durable)
        journal_->queueDeleted(q);
    removeBindingsTo(Destination::toQueue(&q));
    for (auto& [id, channel] : channels_)
        channel->forgetQueue(q);
    deadlineChanged(q, q.registeredDeadline(), NEVER);
    // Find and erase by identity: the name alone could in theory be reused by now.
    auto it = queues_.find(q.name());
    DEPOT_ASSERT(it != queues_.end() && it->second.get() == &q, "destroying an unknown queue");
    queues_.erase(it);
}

void Vhost::queueLostConsumers(Queue& q) {
    if (q.options().autoDelete && q.hadConsumers() && q.consumerCount() == 0)
        pendingQueueDeletes_.push_back(q.name());
}

void Vhost::deadlineChanged(Queue& q, TimePoint from, TimePoint to) {
    if (from != NEVER)
        deadlines_.erase({from, &q});
    if (to != NEVER)
        deadlines_.insert({to, &q});
}

// --- bindings ---

Status Vhost::bind(std::string_view source, Destination destination, std::string_view key,
                   const FieldTable& arguments) {
    if (Status s = validateName("exchange", source); !s)
        return s;
    if (Status s = validateRoutingKey(key); !s)
        return s;
    if (source.empty())
        return defaultExchangeRefused();
    Exchange* x = exchange(source);
    if (x == nullptr)
        return exchangeNotFound(source);
    if (Status s = x->validateBinding(key, arguments); !s)
        return s;
    if (x->addBinding(BindingEntry{destination, std::string(key), arguments}))
        ++boundFrom_[destination][x];
    return {};
}

Status Vhost::unbind(std::string_view source, Destination destination, std::string_view key,
                     const FieldTable& arguments) {
    if (Status s = validateName("exchange", source); !s)
        return s;
    if (Status s = validateRoutingKey(key); !s)
        return s;
    if (source.empty())
        return defaultExchangeRefused();
    // Unbinding what is not bound, even from an exchange that does not exist, succeeds, as in
    // RabbitMQ 3.10.
    Exchange* x = exchange(source);
    if (x == nullptr)
        return {};
    if (!x->removeBinding(BindingEntry{destination, std::string(key), arguments}))
        return {};
    auto it = boundFrom_.find(destination);
    if (it != boundFrom_.end() && --it->second[x] == 0) {
        it->second.erase(x);
        if (it->second.empty())
            boundFrom_.erase(it);
    }
    maybeAutoDelete(*x);
    deleteUnusedExchanges();
    return {};
}

// --- publishing and routing ---

Result<PublishResult> Vhost::publish(const MessageRef& message, bool mandatory, TimePoint now) {
    if (Status s = validateName("exchange", message->exchange); !s)
        return s.error();
    if (Status s = validateRoutingKey(message->routingKey); !s)
        return s.error();
    Exchange* x = exchange(message->exchange);
    if (x == nullptr)
        return exchangeNotFound(message->exchange);
    if (x->options().internal)
        return makeError(ErrorCode::ACCESS_REFUSED, "cannot publish to internal exchange '" +
                                                        x->name() + "' in vhost '" + name_ + "'");
    routed_.clear();
    router_.route(*x, message->routingKey, message->properties.headers, routed_);
    PublishResult result;
    result.queues = routed_.size();
    result.returned = mandatory && routed_.empty();
    // enqueue() never routes: dead letters wait in deadLetters_ until settle().
    for (Queue* q : routed_)
        result.rejected |= !q->enqueue(message, now);
    settle(now);
    result.routed = std::span<const Queue* const>(routed_.data(), routed_.size());
    return result;
}

Status Vhost::route(std::string_view exchangeName, std::string_view routingKey,
                    const FieldTable& headers, std::vector<Queue*>& out) {
    out.clear();
    Exchange* x = exchange(exchangeName);
    if (x == nullptr)
        return exchangeNotFound(exchangeName);
    router_.route(*x, routingKey, headers, out);
    return {};
}

// A message that died without any client rejecting it (TTL, max length) and would return to a
// queue it already died in would go round forever: RabbitMQ drops it, and so do we. A rejection
// anywhere since its last death in that queue means a client is in the loop, so it may go on.
bool Vhost::isAutomaticCycle(const std::vector<DeathRecord>& deaths, std::string_view target) {
    if (deaths.empty() || deaths.front().reason == DeathReason::REJECTED)
        return false;
    for (const DeathRecord& death : deaths) { // newest first
        if (death.reason == DeathReason::REJECTED)
            return false;
        if (death.queue == target)
            return true;
    }
    return false;
}

void Vhost::routeDeadLetter(const DeadLetter& letter, TimePoint now) {
    Exchange* x = exchange(letter.exchange);
    if (x == nullptr)
        return; // RabbitMQ drops dead letters whose exchange is missing
    deadLetterRouted_.clear();
    router_.route(*x, letter.message->routingKey, letter.message->properties.headers,
                  deadLetterRouted_);
    for (Queue* q : deadLetterRouted_)
        if (!isAutomaticCycle(letter.message->deaths, q->name()))
            (void)q->enqueue(letter.message, now);
}

void Vhost::settle(TimePoint now) {
    while (!deadLetters_.empty() || !pendingQueueDeletes_.empty() ||
           !pendingExchangeDeletes_.empty()) {
        std::vector<DeadLetter> letters;
        letters.swap(deadLetters_);
        for (const DeadLetter& letter : letters)
            routeDeadLetter(letter, now);

        std::vector<std::string> queueNames;
        queueNames.swap(pendingQueueDeletes_);
        for (const std::string& name : queueNames)
            if (Queue* q = queue(name))
                destroyQueue(*q, now);

        deleteUnusedExchanges();
    }
}

void Vhost::deleteUnusedExchanges() {
    while (!pendingExchangeDeletes_.empty()) {
        std::vector<std::string> names;
        names.swap(pendingExchangeDeletes_);
        for (const std::string& name : names) {
            Exchange* x = exchange(name);
            if (x != nullptr && x->options().autoDelete && x->bindingCount() == 0)
                destroyExchange(*x); // may queue further auto-deletes upstream
        }
    }
}

// --- time ---

void Vhost::advanceTo(TimePoint now) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        Queue* q = deadlines_.begin()->second;
        if (q->advanceTo(now)) {
            destroyQueue(*q, now); // x-expires: unused for too long
        } else {
            DEPOT_ASSERT(q->nextDeadline() > now, "a queue's deadline did not move forward");
        }
        settle(now);
    }
}

TimePoint Vhost::nextDeadline() const {
    return deadlines_.empty() ? NEVER : deadlines_.begin()->first;
}

// --- listings ---

std::vector<ExchangeInfo> Vhost::listExchanges() const {
    std::vector<ExchangeInfo> out;
    for (const auto& [name, x] : exchanges_)
        out.push_back(ExchangeInfo{name, x->type(), x->options(), x->bindingCount()});
    std::sort(out.begin(), out.end(),
              [](const ExchangeInfo& a, const ExchangeInfo& b) { return a.name < b.name; });
    return out;
}

std::vector<QueueInfo> Vhost::listQueues() const {
    std::vector<QueueInfo> out;
    for (const auto& [name, q] : queues_)
        out.push_back(QueueInfo{name, q->options(), q->readyCount(), q->readyBytes(),
                                q->pagedCount(), q->pagedBytes(), q->unackedCount(),
                                q->consumerCount(), q->owner() != nullptr});
    std::sort(out.begin(), out.end(),
              [](const QueueInfo& a, const QueueInfo& b) { return a.name < b.name; });
    return out;
}

std::vector<BindingInfo> Vhost::listBindings() const {
    std::vector<BindingInfo> out;
    for (const auto& [name, x] : exchanges_) {
        for (const BindingEntry& b : x->bindings()) {
            const bool toExchange = b.destination.isExchange();
            out.push_back(BindingInfo{
                name, toExchange ? b.destination.exchange()->name() : b.destination.queue()->name(),
                toExchange, b.key, b.arguments});
        }
    }
    std::sort(out.begin(), out.end(), [](const BindingInfo& a, const BindingInfo& b) {
        return std::tie(a.source, a.destination, a.key) < std::tie(b.source, b.destination, b.key);
    });
    return out;
}

} // namespace depot::core
