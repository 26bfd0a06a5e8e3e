#include "client/bus.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>

namespace depot::client {

namespace {

std::int64_t nowMicros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// 128 bits of two FNV-1a passes, each finished with splitmix64's mixer: plenty against
// collisions among a business's message ids, and stable across builds and machines.
std::string derivedId(std::string_view parent, std::string_view type, std::uint64_t n) {
    auto pass = [&](std::uint64_t h) {
        auto eat = [&h](std::string_view bytes) {
            for (unsigned char c : bytes) {
                h ^= c;
                h *= 0x100000001b3ULL;
            }
            h ^= 0xff; // a separator no byte sequence can fake
            h *= 0x100000001b3ULL;
        };
        eat(parent);
        eat(type);
        eat(std::to_string(n));
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebULL;
        h ^= h >> 31;
        return h;
    };
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx",
                  static_cast<unsigned long long>(pass(0xcbf29ce484222325ULL)),
                  static_cast<unsigned long long>(pass(0x84222325cbf29ce4ULL)));
    return out;
}

std::string freshId() {
    thread_local std::mt19937_64 random{std::random_device{}()};
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(random()),
                  static_cast<unsigned long long>(random()));
    return out;
}

// The message this thread is handling, if any: what a publish inside a handler derives from.
struct HandlingContext {
    std::string messageId;
    std::string correlationId;
    std::map<std::string, std::uint64_t, std::less<>> published; // per type, for derived ids
    std::uint64_t sent = 0; // messages sent while handling, derived ids or not
};
thread_local HandlingContext* handling = nullptr;

class HandlingScope {
public:
    HandlingScope(std::string messageId, std::string correlationId)
        : previous_(handling), context_{std::move(messageId), std::move(correlationId), {}} {
        handling = &context_;
    }
    ~HandlingScope() { handling = previous_; }
    HandlingScope(const HandlingScope&) = delete;
    HandlingScope& operator=(const HandlingScope&) = delete;
    std::uint64_t sent() const { return context_.sent; }

private:
    HandlingContext* previous_;
    HandlingContext context_;
};

std::string describe(std::exception_ptr failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        return e.what();
    } catch (const kj::Exception& e) {
        return e.getDescription().cStr();
    } catch (...) {
        return "unknown exception";
    }
}

} // namespace

// --- DecodedBody ---

struct DecodedBody::Words {
    kj::Array<capnp::word> words;
    std::optional<capnp::FlatArrayMessageReader> reader;
};

DecodedBody::DecodedBody(const std::string& bytes) : words_(std::make_unique<Words>()) {
    if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0)
        throw std::invalid_argument("not a Cap'n Proto message (" + std::to_string(bytes.size()) +
                                    " bytes)");
    // A copy, because a std::string's bytes need not be aligned to a word.
    words_->words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words_->words.begin(), bytes.data(), bytes.size());
    try {
        words_->reader.emplace(words_->words.asPtr());
    } catch (const kj::Exception& e) {
        throw std::invalid_argument(std::string("not a Cap'n Proto message: ") +
                                    e.getDescription().cStr());
    }
}

DecodedBody::~DecodedBody() = default;

capnp::MessageReader& DecodedBody::reader() {
    return *words_->reader;
}

// --- RetryPolicy ---

std::chrono::milliseconds RetryPolicy::delayBefore(std::uint32_t attempt) const {
    double delay = static_cast<double>(backoff.count());
    for (std::uint32_t i = 2; i < attempt; ++i)
        delay *= multiplier;
    delay = std::min(delay, static_cast<double>(maxBackoff.count()));
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::max(0.0, delay)));
}

// --- Subscription ---

Subscription::Subscription(Bus& bus, std::string queue, SubscribeOptions options)
    : bus_(&bus), queue_(std::move(queue)), options_(std::move(options)),
      routes_(std::make_shared<std::map<std::string, Route, std::less<>>>()) {}

Subscription::Subscription(Subscription&&) noexcept = default;
Subscription& Subscription::operator=(Subscription&&) noexcept = default;
Subscription::~Subscription() = default; // the Consumer cancels itself

void Subscription::addRoute(Route route) {
    if (started_)
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "subscription to '" + queue_ + "': on<T>() after start()");
    std::string type = route.type;
    if (!routes_->emplace(type, std::move(route)).second)
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "subscription to '" + queue_ + "' already handles '" + type + "'");
}

const std::string& Subscription::start() {
    if (started_)
        return queue_;
    if (routes_->empty())
        throw Error(ErrorKind::INVALID_ARGUMENT,
                    "subscription to '" + queue_ + "' handles no message type");
    Connection& connection = bus_->connection();
    QueueDeclareOptions queueOptions;
    queueOptions.durable = !options_.exclusive;
    queueOptions.exclusive = options_.exclusive;
    queueOptions.autoDelete = options_.exclusive;
    queue_ = connection.declareQueue(queue_, queueOptions).name;
    if (!options_.exclusive) {
        QueueDeclareOptions errorOptions;
        errorOptions.durable = true;
        errorQueue_ = connection.declareQueue(queue_ + ".error", errorOptions).name;
    }
    for (const auto& [type, route] : *routes_) {
        if (route.bindingKeys.empty())
            continue;
        bus_->declareEventExchange(type);
        for (const std::string& key : route.bindingKeys)
            connection.bindQueue(queue_, type, key);
    }

    ConsumeOptions consumeOptions;
    consumeOptions.prefetch = options_.prefetch;
    Bus* bus = bus_;
    std::string queue = queue_;
    std::string errorQueue = errorQueue_;
    SubscribeOptions options = options_;
    auto routes = routes_; // const from here on: on() refuses after start()
    consumer_ = connection.consume(
        queue_,
        [bus, queue, errorQueue, options, routes](Delivery& delivery) {
            bus->dispatch(queue, errorQueue, options, *routes, delivery);
        },
        consumeOptions);
    started_ = true;
    return queue_;
}

void Subscription::stop() {
    consumer_.cancel();
}

// --- Bus ---

Bus::Bus(std::shared_ptr<Connection> connection, std::string service)
    : connection_(std::move(connection)), service_(std::move(service)) {}

Subscription Bus::subscribe(std::string queue, SubscribeOptions options) {
    return Subscription(*this, std::move(queue), std::move(options));
}

BusStats Bus::stats() const {
    BusStats s;
    s.published = published_.load();
    s.handled = handled_.load();
    s.duplicates = duplicates_.load();
    s.retries = retries_.load();
    s.deadLettered = deadLettered_.load();
    return s;
}

void Bus::handleWithin(contracts::Meta::Reader meta, const std::function<void()>& handle) {
    std::string id = meta.getMessageId().cStr();
    std::string correlation = meta.getCorrelationId().cStr();
    HandlingScope scope(id, correlation.empty() ? id : correlation);
    handle();
}

void Bus::declareEventExchange(const std::string& name) {
    std::lock_guard lock(declaredMutex_);
    if (declaredExchanges_.count(name))
        return;
    ExchangeDeclareOptions options;
    options.durable = true;
    connection_->declareExchange(name, ExchangeType::TOPIC, options);
    declaredExchanges_.insert(name);
}

std::string Bus::seal(const std::string& type, contracts::Meta::Builder meta,
                      capnp::MessageBuilder& message) {
    if (meta.getMessageId().size() == 0) {
        // A handled message without an id (sent by a tool that set none) cannot give its
        // children stable ids: they get fresh ones.
        if (handling && !handling->messageId.empty())
            meta.setMessageId(derivedId(handling->messageId, type, handling->published[type]++));
        else
            meta.setMessageId(freshId());
    }
    if (meta.getCorrelationId().size() == 0)
        meta.setCorrelationId(handling ? handling->correlationId
                                       : std::string(meta.getMessageId().cStr()));
    if (handling && meta.getCausationId().size() == 0)
        meta.setCausationId(handling->messageId);
    if (meta.getTimestampMicros() == 0)
        meta.setTimestampMicros(nowMicros());
    kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
    kj::ArrayPtr<const char> bytes = words.asChars();
    return std::string(bytes.begin(), bytes.size());
}

Properties Bus::propertiesFor(const std::string& type, contracts::Meta::Reader meta) const {
    Properties properties;
    properties.type = type;
    properties.messageId = meta.getMessageId().cStr();
    properties.correlationId = meta.getCorrelationId().cStr();
    properties.timestamp = meta.getTimestampMicros() / 1'000'000;
    properties.appId = service_;
    properties.contentType = "application/x-capnp";
    properties.deliveryMode = core::DeliveryMode::PERSISTENT;
    return properties;
}

void Bus::send(const std::string& type, contracts::Meta::Builder meta,
               capnp::MessageBuilder& message, std::string_view exchange,
               std::string_view routingKey) {
    std::string body = seal(type, meta, message);
    PublishOptions options;
    options.properties = propertiesFor(type, meta.asReader());
    connection_->publish(exchange, routingKey, std::move(body), options);
    ++published_;
    if (handling)
        ++handling->sent;
}

Delivery Bus::call(const std::string& type, contracts::Meta::Builder meta,
                   capnp::MessageBuilder& message, std::string_view queue,
                   std::chrono::milliseconds timeout) {
    std::string body = seal(type, meta, message);
    Properties properties = propertiesFor(type, meta.asReader());
    properties.deliveryMode = core::DeliveryMode::TRANSIENT; // a reply outlives no restart
    ++published_;
    Reply reply = connection_->request("", queue, std::move(body), timeout, std::move(properties));
    return Delivery({}, "", 0, false, "", std::string(queue), std::move(reply.properties), {},
                    std::move(reply.body), false);
}

Consumer Bus::serveRaw(std::string_view queue, std::uint32_t prefetch,
                       std::function<std::string(const Delivery&)> respond) {
    (void)connection_->declareQueue(queue);
    return connection_->serve(
        queue,
        [this, respond = std::move(respond)](const Delivery& request) {
            std::string reply = respond(request);
            ++handled_;
            ++published_;
            return reply;
        },
        prefetch);
}

void Bus::dispatch(const std::string& queue, const std::string& errorQueue,
                   const SubscribeOptions& options,
                   const std::map<std::string, Subscription::Route, std::less<>>& routes,
                   Delivery& delivery) {
    const Properties& properties = delivery.properties();
    const std::string& id = properties.messageId;
    if (options.inbox && !id.empty() && options.inbox->contains(id)) {
        ++duplicates_;
        delivery.ack();
        return;
    }

    // The end of the road for a message no handler could take. Its copy goes to the error
    // queue and it is acked, without entering the inbox (an operator may send it back once the
    // cause is fixed). A private (exclusive) subscription has no error queue: the message is
    // rejected, dead-lettered if its queue says so. When the error queue refuses, the message
    // goes back to its queue after a pause, and the connection's onError hears why.
    auto giveUp = [&](const std::string& reason, std::uint32_t attempts) {
        if (errorQueue.empty()) {
            delivery.reject(false);
            throw Error(ErrorKind::HANDLER_FAILED,
                        "'" + queue + "': message '" + id + "' dropped: " + reason);
        }
        try {
            deadLetter(errorQueue, delivery, reason, attempts);
        } catch (...) {
            std::this_thread::sleep_for(options.retry.maxBackoff);
            delivery.nack(true);
            throw;
        }
        delivery.ack();
    };

    auto route = routes.find(properties.type);
    if (route == routes.end()) {
        giveUp("no handler for message type '" + properties.type + "' on '" + queue + "'", 0);
        return;
    }
    std::shared_ptr<DecodedBody> body;
    try {
        body = std::make_shared<DecodedBody>(delivery.body());
    } catch (const std::exception& e) {
        giveUp(e.what(), 0);
        return;
    }

    const std::uint32_t attempts = std::max<std::uint32_t>(1, options.retry.attempts);
    std::string reason;
    bool done = false;
    std::uint64_t sent = 0;
    for (std::uint32_t attempt = 1; attempt <= attempts && !done; ++attempt) {
        if (attempt > 1) {
            ++retries_;
            std::this_thread::sleep_for(options.retry.delayBefore(attempt));
        }
        try {
            HandlingScope scope(id,
                                properties.correlationId.empty() ? id : properties.correlationId);
            route->second.handle(body, delivery);
            sent = scope.sent();
            done = true;
        } catch (...) {
            reason = describe(std::current_exception());
        }
    }
    if (!done) {
        giveUp(reason, attempts);
        return;
    }
    ++handled_;
    // Outside the handler's try: a handler that succeeded is never called again. When its id
    // cannot be recorded, it is acked all the same (its effects happened) and onError hears.
    try {
        if (options.inbox && !id.empty()) {
            // Only once the broker has routed what the handler sent: were the id recorded
            // while those messages still sat in this process (a kill -9 now loses them), the
            // redelivered message would be dropped as done and its effects never happen. A
            // connection's frames are handled in order, so one answered request is the proof.
            if (sent > 0) {
                QueueDeclareOptions passive;
                passive.passive = true;
                (void)connection_->declareQueue(queue, passive);
            }
            options.inbox->record(id);
        }
    } catch (...) {
        delivery.ack();
        throw;
    }
    delivery.ack();
}

// Confirmed, so that the original is acked only once its copy is safe in the error queue.
void Bus::deadLetter(const std::string& errorQueue, Delivery& delivery, const std::string& reason,
                     std::uint32_t attempts) {
    PublishOptions options;
    options.properties = delivery.properties();
    options.properties.expiration.reset(); // waits for an operator, however long
    options.properties.deliveryMode = core::DeliveryMode::PERSISTENT;
    options.mandatory = true; // over amqp:// a return is how a missing queue shows
    FieldTable& headers = options.properties.headers;
    headers.set("x-error-reason", core::FieldValue(reason));
    headers.set("x-error-attempts", core::FieldValue(static_cast<std::int64_t>(attempts)));
    headers.set("x-error-service", core::FieldValue(service_));
    headers.set("x-original-exchange", core::FieldValue(delivery.exchange()));
    headers.set("x-original-routing-key", core::FieldValue(delivery.routingKey()));
    const Confirmation confirmation =
        connection_->publishConfirmed("", errorQueue, delivery.body(), options);
    if (!confirmation.ack || confirmation.returned || confirmation.queues == 0u)
        throw Error(ErrorKind::BROKER,
                    "error queue '" + errorQueue + "' refused a message: " +
                        (confirmation.reason.empty() ? "no such queue" : confirmation.reason));
    ++deadLettered_;
}

} // namespace depot::client
