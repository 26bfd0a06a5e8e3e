#include "client/embedded_connection.h"

#include "client/inline_handler.h"

#include "broker/core/broker.h"
#include "broker/core/names.h"
#include "broker/core/queue_options.h"
#include "broker/runtime/broker_runtime.h"
#include "broker/runtime/clock.h"

#include <asio.hpp>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

namespace depot::client {
namespace {

// Connection::RawHandler (protected there).
using DeliveryHandler = std::function<void(kj::FunctionParam<void(Delivery&)>)>;

// One in-process broker: a core on an io_context that runs on a thread of its own. Owned
// (shared) by the connections that use it; the last one to go stops the thread. Nothing that
// runs on that thread owns it, so it is never destroyed there.
class EmbeddedBroker {
public:
    EmbeddedBroker()
        : runtime_(io_, clock_), work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {
    }
    ~EmbeddedBroker() {
        work_.reset();
        io_.stop();
        thread_.join();
    }
    EmbeddedBroker(const EmbeddedBroker&) = delete;
    EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

    runtime::BrokerRuntime& runtime() { return runtime_; }
    bool onBrokerThread() { return io_.get_executor().running_in_this_thread(); }

private:
    asio::io_context io_;
    runtime::SteadyClock clock_;
    runtime::BrokerRuntime runtime_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::thread thread_;
};

// The process-wide registry that `embedded:NAME` implies. It keeps no broker alive: a name whose
// connections are all gone starts afresh with an empty broker.
std::shared_ptr<EmbeddedBroker> embeddedBroker(const std::string& name) {
    static std::mutex mutex;
    static std::map<std::string, std::weak_ptr<EmbeddedBroker>> brokers;
    std::lock_guard lock(mutex);
    std::erase_if(brokers, [](const auto& entry) { return entry.second.expired(); });
    std::weak_ptr<EmbeddedBroker>& slot = brokers[name];
    std::shared_ptr<EmbeddedBroker> broker = slot.lock();
    if (!broker) {
        broker = std::make_shared<EmbeddedBroker>();
        slot = broker;
    }
    return broker;
}

Error connectionClosed() {
    return Error(ErrorKind::CONNECTION_LOST, "the connection was closed");
}

void check(const core::Status& status) {
    if (!status)
        throw Error::broker(status.error());
}

template <class T> T unwrap(core::Result<T>&& result) {
    if (!result)
        throw Error::broker(result.error());
    return std::move(result).value();
}

// Sets every field of `out`, which may hold an earlier delivery: assigning keeps the capacity
// of its strings.
void fillDelivery(Delivery& out, std::weak_ptr<AckTarget> acks, const core::Delivery& delivery,
                  bool needsAck) {
    const core::Message& message = *delivery.message;
    DeliveryFields fields(out);
    fields.head(std::move(acks), delivery.deliveryTag, delivery.redelivered, needsAck);
    fields.consumerTag() = delivery.consumerTag;
    fields.exchange() = message.exchange;
    fields.routingKey() = message.routingKey;
    message.properties.unpack(fields.properties());
    fields.deaths() = message.deaths;
    fields.body() = message.body;
}

Delivery toDelivery(std::weak_ptr<AckTarget> acks, const core::Delivery& delivery, bool needsAck) {
    Delivery out;
    fillDelivery(out, std::move(acks), delivery, needsAck);
    return out;
}

// The message is built on the caller's thread, so the broker thread does not copy the body;
// Channel::publish(MessageRef) leaves the name checks to us.
core::Result<core::PublishResult> publishMessage(core::Channel& channel,
                                                 const core::MessageRef& message, bool mandatory,
                                                 core::TimePoint now) {
    if (core::Status s = core::validateName("exchange", message->exchange); !s)
        return s.error();
    if (core::Status s = core::validateRoutingKey(message->routingKey); !s)
        return s.error();
    return channel.publish(message, mandatory, now);
}

// One consumer's sink. Called inside core calls on the broker thread: it copies the delivery
// out of the shared message and hands it to the raw handler, which only posts it on.
class ConsumerSink final : public core::DeliverySink {
public:
    ConsumerSink(std::weak_ptr<AckTarget> acks, DeliveryHandler handler, bool noAck)
        : acks_(std::move(acks)), handler_(std::move(handler)), noAck_(noAck) {}

    void deliver(const core::Delivery& delivery) override {
        handler_([&](Delivery& out) { fillDelivery(out, acks_, delivery, !noAck_); });
    }
    // The queue was deleted: the consumer has ended; the next startConsumer drops the sink.
    void onCancelled(std::string_view) override { cancelled = true; }

    bool cancelled = false;

private:
    std::weak_ptr<AckTarget> acks_;
    DeliveryHandler handler_;
    bool noAck_;
};

class EmbeddedConnection;

// One connection as the broker thread sees it: its channel, its consumers' sinks and the way
// back to the connection for errors and returns. Shared by the connection and by every task
// posted for it, and weakly by its deliveries (as their AckTarget): once the channel is closed
// `channel` is null, and a task or an ack that arrives later does nothing. Every field is used
// on the broker thread only.
class Link final : public AckTarget, public std::enable_shared_from_this<Link> {
public:
    explicit Link(std::weak_ptr<EmbeddedBroker> broker) : broker_(std::move(broker)) {}

    // Runs fn(link, channel, now) on the broker thread, if the channel is still open then.
    template <class F> void post(F fn) {
        std::shared_ptr<EmbeddedBroker> broker = broker_.lock();
        if (!broker)
            return;
        broker->runtime().post([self = shared_from_this(),
                                fn = std::move(fn)](core::Broker&, core::TimePoint now) mutable {
            if (self->channel != nullptr)
                fn(*self, *self->channel, now);
        });
    }

    // From Delivery, on any thread: settled on the broker thread; a refusal (unknown tag)
    // reaches onError.
    void ack(std::uint64_t deliveryTag, bool multiple) override {
        post([deliveryTag, multiple](Link& link, core::Channel& channel, core::TimePoint now) {
            link.report(channel.ack(deliveryTag, multiple, now));
        });
    }
    void nack(std::uint64_t deliveryTag, bool multiple, bool requeue) override {
        post([deliveryTag, multiple, requeue](Link& link, core::Channel& channel,
                                              core::TimePoint now) {
            link.report(channel.nack(deliveryTag, multiple, requeue, now));
        });
    }
    void reject(std::uint64_t deliveryTag, bool requeue) override {
        post([deliveryTag, requeue](Link& link, core::Channel& channel, core::TimePoint now) {
            link.report(channel.reject(deliveryTag, requeue, now));
        });
    }

    void report(const core::Status& status);
    void reportReturn(const core::Message& message);

    // Closes the channel: the core requeues its unacked deliveries, ends its consumers and
    // deletes its exclusive queues. Idempotent.
    void shutdown(core::TimePoint now) {
        if (channel == nullptr)
            return;
        owner = nullptr;
        core::Channel* closing = std::exchange(channel, nullptr);
        closing->vhost().closeChannel(*closing, now);
        sinks.clear(); // the core holds none of them any more
    }

    core::Channel* channel = nullptr;
    EmbeddedConnection* owner = nullptr;                                  // null once closed
    std::unordered_map<std::string, std::unique_ptr<ConsumerSink>> sinks; // by consumer tag

private:
    std::weak_ptr<EmbeddedBroker> broker_;
};

class EmbeddedConnection final : public Connection {
public:
    EmbeddedConnection(std::shared_ptr<EmbeddedBroker> broker, ConnectionOptions options)
        : broker_(std::move(broker)), options_(std::move(options)),
          link_(std::make_shared<Link>(broker_)) {}

    ~EmbeddedConnection() override {
        closed_ = true;
        // No deadline here: the broker thread never blocks, so this returns; returning early
        // would leave the core holding this connection's sinks and handlers.
        closeChannel(std::nullopt);
        shutdownDispatcher();
    }

    void openChannel(const std::string& vhostName) {
        EmbeddedConnection* owner = this;
        onBroker(
            "open",
            [vhostName, owner](Link& link, core::Broker& broker, core::TimePoint) {
                core::Vhost* vhost = broker.findVhost(vhostName);
                if (vhost == nullptr)
                    throw Error::broker(core::makeError(core::ErrorCode::NOT_FOUND,
                                                        "no vhost '" + vhostName + "'"));
                link.channel = &vhost->openChannel();
                link.owner = owner;
            },
            options_.connectTimeout);
    }

    void close() override {
        refuseInInlineHandler();
        if (closed_.exchange(true))
            return;
        std::exception_ptr failure;
        try {
            closeChannel(options_.requestTimeout);
        } catch (...) {
            failure = std::current_exception();
        }
        resetRequests(connectionClosed());
        notifyEvent(ConnectionEvent::CLOSED);
        if (failure)
            std::rethrow_exception(failure);
    }

    void declareExchange(std::string_view name, ExchangeType type,
                         const ExchangeDeclareOptions& options) override {
        if (options.passive) {
            call("declareExchange",
                 [name = std::string(name)](Link&, core::Channel& channel, core::TimePoint) {
                     check(channel.declareExchangePassive(name));
                 });
            return;
        }
        core::ExchangeOptions exchangeOptions = core::exchangeOptionsFromArguments(
            options.durable, options.autoDelete, options.internal, options.arguments);
        call("declareExchange",
             [name = std::string(name), type, exchangeOptions = std::move(exchangeOptions)](
                 Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.declareExchange(name, type, exchangeOptions));
             });
    }

    void deleteExchange(std::string_view name, bool ifUnused) override {
        call("deleteExchange",
             [name = std::string(name), ifUnused](Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.deleteExchange(name, ifUnused));
             });
    }

    QueueDeclared declareQueue(std::string_view name, const QueueDeclareOptions& options) override {
        core::QueueDeclareOk ok;
        if (options.passive) {
            ok = call("declareQueue", [name = std::string(name)](Link&, core::Channel& channel,
                                                                 core::TimePoint now) {
                return unwrap(channel.declareQueuePassive(name, now));
            });
        } else {
            core::QueueOptions queueOptions = unwrap(core::queueOptionsFromArguments(
                options.durable, options.exclusive, options.autoDelete, options.arguments));
            ok = call("declareQueue", [name = std::string(name), queueOptions](
                                          Link&, core::Channel& channel, core::TimePoint now) {
                return unwrap(channel.declareQueue(name, queueOptions, now));
            });
        }
        return QueueDeclared{std::move(ok.queue), ok.messageCount, ok.consumerCount};
    }

    std::uint64_t deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty) override {
        return call("deleteQueue", [name = std::string(name), ifUnused,
                                    ifEmpty](Link&, core::Channel& channel, core::TimePoint now) {
            return unwrap(channel.deleteQueue(name, ifUnused, ifEmpty, now));
        });
    }

    std::uint64_t purge(std::string_view queue) override {
        return call("purge", [queue = std::string(queue)](Link&, core::Channel& channel,
                                                          core::TimePoint now) {
            return unwrap(channel.purgeQueue(queue, now));
        });
    }

    void bindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                   const FieldTable& arguments) override {
        call("bindQueue",
             [queue = std::string(queue), exchange = std::string(exchange), key = std::string(key),
              arguments](Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.bindQueue(queue, exchange, key, arguments));
             });
    }

    void unbindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                     const FieldTable& arguments) override {
        call("unbindQueue",
             [queue = std::string(queue), exchange = std::string(exchange), key = std::string(key),
              arguments](Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.unbindQueue(queue, exchange, key, arguments));
             });
    }

    void bindExchange(std::string_view destination, std::string_view source, std::string_view key,
                      const FieldTable& arguments) override {
        call("bindExchange",
             [destination = std::string(destination), source = std::string(source),
              key = std::string(key), arguments](Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.bindExchange(destination, source, key, arguments));
             });
    }

    void unbindExchange(std::string_view destination, std::string_view source, std::string_view key,
                        const FieldTable& arguments) override {
        call("unbindExchange",
             [destination = std::string(destination), source = std::string(source),
              key = std::string(key), arguments](Link&, core::Channel& channel, core::TimePoint) {
                 check(channel.unbindExchange(destination, source, key, arguments));
             });
    }

    void publish(std::string_view exchange, std::string_view routingKey, std::string body,
                 const PublishOptions& options) override {
        if (closed_)
            throw connectionClosed();
        core::MessageRef message = core::makeMessage(std::string(exchange), std::string(routingKey),
                                                     options.properties, std::move(body));
        link_->post([message, mandatory = options.mandatory](Link& link, core::Channel& channel,
                                                             core::TimePoint now) {
            core::Result<core::PublishResult> result =
                publishMessage(channel, message, mandatory, now);
            if (!result)
                link.report(result.error());
            else if (result->returned)
                link.reportReturn(*message);
        });
    }

    // Answered before it returns (the broker thread never waits for another), which an inline
    // handler may wait for, as it may call publishConfirmedAsync over every transport.
    std::future<Confirmation> publishConfirmedAsync(std::string_view exchange,
                                                    std::string_view routingKey, std::string body,
                                                    const PublishOptions& options) override {
        const InlineHandlerScope allowed(false);
        return Connection::publishConfirmedAsync(exchange, routingKey, std::move(body), options);
    }

    Confirmation publishConfirmed(std::string_view exchange, std::string_view routingKey,
                                  std::string body, const PublishOptions& options) override {
        core::MessageRef message = core::makeMessage(std::string(exchange), std::string(routingKey),
                                                     options.properties, std::move(body));
        const core::PublishResult result =
            call("publishConfirmed", [message, mandatory = options.mandatory](
                                         Link& link, core::Channel& channel, core::TimePoint now) {
                core::PublishResult published =
                    unwrap(publishMessage(channel, message, mandatory, now));
                if (published.returned) // basic.return comes before the confirm, as in AMQP
                    link.reportReturn(*message);
                return published;
            });
        Confirmation confirmation;
        confirmation.ack = !result.rejected;
        confirmation.queues = static_cast<std::uint32_t>(result.queues);
        confirmation.returned = result.returned;
        if (result.rejected)
            confirmation.reason = "a full queue refused it (x-overflow reject-publish)";
        return confirmation;
    }

    std::optional<Delivery> get(std::string_view queue, bool noAck) override {
        std::optional<core::Delivery> got =
            call("get", [queue = std::string(queue), noAck](Link&, core::Channel& channel,
                                                            core::TimePoint now) {
                return unwrap(channel.get(queue, noAck, now));
            });
        if (!got)
            return std::nullopt;
        return toDelivery(link_, *got, !noAck); // the message is immutable: safe to read here
    }

    void reportError(Error error) { notifyError(std::move(error)); }
    void reportReturn(ReturnedMessage message) { notifyReturn(std::move(message)); }

protected:
    std::string startConsumer(std::string_view queue, RawHandler handler,
                              const ConsumeOptions& options) override {
        core::ConsumeOptions consumeOptions;
        consumeOptions.consumerTag = options.consumerTag;
        consumeOptions.prefetchCount = options.prefetch;
        consumeOptions.noAck = options.noAck;
        consumeOptions.exclusive = options.exclusive;
        return call("consume", [queue = std::string(queue), handler = std::move(handler),
                                consumeOptions](Link& link, core::Channel& channel,
                                                core::TimePoint now) mutable {
            std::erase_if(link.sinks, [](const auto& entry) { return entry.second->cancelled; });
            auto sink = std::make_unique<ConsumerSink>(link.weak_from_this(), std::move(handler),
                                                       consumeOptions.noAck);
            std::string tag = unwrap(channel.consume(queue, *sink, consumeOptions, now));
            link.sinks[tag] = std::move(sink);
            return tag;
        });
    }

    void cancelConsumer(const std::string& tag) override {
        call("cancel", [tag](Link& link, core::Channel& channel, core::TimePoint now) {
            check(channel.cancel(tag, now));
            link.sinks.erase(tag);
        });
    }

private:
    // Runs fn(link, broker, now) on the broker thread and waits for its result, or for the Error
    // it threw (rethrown here); without a timeout, waits as long as it takes.
    template <class F, class R = std::invoke_result_t<F&, Link&, core::Broker&, core::TimePoint>>
    R onBroker(const char* what, F fn, std::optional<std::chrono::milliseconds> timeout) {
        using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
        using Outcome = std::variant<Value, Failure>;
        auto promise = std::make_shared<std::promise<Outcome>>();
        std::future<Outcome> future = promise->get_future();
        auto task = [link = link_, promise, fn = std::move(fn)](core::Broker& broker,
                                                                core::TimePoint now) mutable {
            try {
                if constexpr (std::is_void_v<R>) {
                    fn(*link, broker, now);
                    promise->set_value(Outcome(std::in_place_index<0>));
                } else {
                    promise->set_value(Outcome(std::in_place_index<0>, fn(*link, broker, now)));
                }
            } catch (const Error& e) {
                promise->set_value(Outcome(std::in_place_index<1>, e));
            } catch (...) {
                promise->set_exception(std::current_exception()); // a bug, or out of memory
            }
        };
        runtime::BrokerRuntime& runtime = broker_->runtime();
        if (broker_->onBrokerThread()) { // only a destructor could get here; posting would hang
            task(runtime.broker(), runtime.now());
            runtime.rearm();
        } else {
            runtime.post(std::move(task));
        }
        if (timeout && future.wait_for(*timeout) != std::future_status::ready)
            throw Error(ErrorKind::TIMEOUT, std::string("no answer from the embedded broker to ") +
                                                what + " within " +
                                                std::to_string(timeout->count()) + " ms");
        Outcome outcome = future.get();
        if (outcome.index() == 1)
            throw std::get<1>(outcome).error();
        if constexpr (!std::is_void_v<R>)
            return std::get<0>(std::move(outcome));
    }

    // An operation on the open channel, with the request timeout.
    template <class F, class R = std::invoke_result_t<F&, Link&, core::Channel&, core::TimePoint>>
    R call(const char* what, F fn) {
        refuseInInlineHandler();
        if (closed_)
            throw connectionClosed();
        return onBroker(
            what,
            [fn = std::move(fn)](Link& link, core::Broker&, core::TimePoint now) mutable {
                if (link.channel == nullptr)
                    throw connectionClosed();
                return fn(link, *link.channel, now);
            },
            options_.requestTimeout);
    }

    void closeChannel(std::optional<std::chrono::milliseconds> timeout) {
        onBroker(
            "close", [](Link& link, core::Broker&, core::TimePoint now) { link.shutdown(now); },
            timeout);
    }

    const std::shared_ptr<EmbeddedBroker> broker_;
    const ConnectionOptions options_;
    const std::shared_ptr<Link> link_;
    std::atomic<bool> closed_{false};
};

void Link::report(const core::Status& status) {
    if (!status && owner != nullptr)
        owner->reportError(Error::broker(status.error()));
}

void Link::reportReturn(const core::Message& message) {
    if (owner != nullptr)
        owner->reportReturn(ReturnedMessage{message.exchange, message.routingKey,
                                            message.properties.unpack(), message.body});
}

} // namespace

std::shared_ptr<Connection> openEmbeddedConnection(const BrokerUrl& url,
                                                   const ConnectionOptions& options) {
    auto connection = std::make_shared<EmbeddedConnection>(embeddedBroker(url.name), options);
    connection->openChannel(url.vhost);
    return connection;
}

} // namespace depot::client
