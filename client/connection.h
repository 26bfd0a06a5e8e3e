#pragma once
// depot::client::Connection: what a service uses to talk to a broker. The same API over every
// transport: `embedded:` (a broker in this process, no sockets), `depot://...` (depotd over TCP)
// and `amqp://...` (RabbitMQ), so a test can swap one for the other.
//
// Threads: every call is safe from any thread. Blocking calls wait for the broker's answer and
// throw Error when it refuses. Handlers (consumers, RPC responders, events) run one at a time
// on the connection's dispatcher thread, never on the caller's or the network's thread: a
// handler may itself make blocking calls on the same connection. Each consumer's deliveries
// reach its handler in the order the broker sent them. A consumer may instead ask for an inline
// handler (ConsumeOptions::inlineHandler): short, never waiting for the broker, run without the
// hand-off to the dispatcher thread (over depot://, on the network thread: one at a time with
// the connection's other inline handlers, alongside its dispatched ones).

#include "client/delivery.h"
#include "client/error.h"
#include "client/listing.h"
#include "client/url.h"

#include "broker/core/exchange.h"
#include "broker/core/field_table.h"
#include "broker/core/message.h"

#include <kj/function.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace depot::client {

using core::ExchangeType;
using core::FieldTable;
using core::Properties;

struct ConnectionOptions {
    std::string clientName = "depot-client";          // shown by `depotctl list connections`
    std::chrono::milliseconds requestTimeout{10'000}; // for every blocking call
    std::chrono::milliseconds connectTimeout{5'000};
    std::uint32_t heartbeatSeconds = 10; // depot:// and amqp://; 0 = none
    // depot:// and amqp://: after the link breaks, reconnect with exponential backoff (100 ms
    // doubling to maxBackoff), declare again what this connection declared, and resume its
    // consumers.
    bool reconnect = true;
    std::chrono::milliseconds maxBackoff{5'000};
};

// What the application is told about the connection itself (on the dispatcher thread).
enum class ConnectionEvent { DISCONNECTED, RECONNECTED, BLOCKED, UNBLOCKED, CLOSED };

struct ExchangeDeclareOptions {
    bool passive = false;
    bool durable = false;
    bool autoDelete = false;
    bool internal = false;
    FieldTable arguments; // e.g. {"alternate-exchange", "ae"}
};

struct QueueDeclareOptions {
    bool passive = false;
    bool durable = false;
    bool exclusive = false; // deleted when this connection closes; only this connection may use it
    bool autoDelete = false;
    FieldTable arguments; // x-message-ttl, x-max-length, x-dead-letter-exchange, ...
};

struct QueueDeclared {
    std::string name; // the broker's choice when the declare gave ""
    std::uint64_t messageCount = 0;
    std::uint64_t consumerCount = 0;
};

struct PublishOptions {
    Properties properties;
    bool mandatory = false; // a message that routes nowhere comes back to onReturn
};

// The broker's answer to a confirmed publish.
struct Confirmation {
    bool ack = true; // false: a queue refused it (x-overflow reject-publish)
    // How many queues it reached; nullopt over amqp://, where the broker does not say.
    std::optional<std::uint32_t> queues;
    bool returned = false; // mandatory and routed nowhere
    std::string reason;    // for a nack
};

struct ConsumeOptions {
    std::string consumerTag;    // "" lets the broker choose
    std::uint32_t prefetch = 0; // unacked deliveries at most; 0 = no limit
    bool noAck = false;         // settled on delivery: no ack needed
    bool exclusive = false;
    // Over depot://, the handler runs on the connection's network thread as each delivery is
    // read, instead of on the dispatcher thread: no thread hand-off per batch of deliveries
    // (which on a busy machine costs more than a short handler), so a consumer spends up to a
    // quarter less CPU per delivery and an RPC responder answers sooner. For short handlers
    // that never block: while one runs, the connection reads nothing else. It may read the
    // delivery, ack, nack or reject it, publish, publishConfirmedAsync and cancel consumers,
    // but a call that waits for the broker (declare, delete, bind, purge, get,
    // publishConfirmed, request, consume, close, a ConfirmWindow) throws
    // Error(INVALID_ARGUMENT) there, over every transport. Dropping the last reference to a
    // connection there is allowed (a depot:// one is then destroyed on its dispatcher thread).
    // Mind that its publishes on its own connection are not held back by a full socket (bound
    // them with prefetch), that one to another depot:// connection waits while that one's
    // socket is full, and that a cancel from it does not wait for a call of that consumer's
    // handler in progress on another thread. embedded: and amqp:// run it on the dispatcher
    // thread, under the same rules.
    bool inlineHandler = false;
};

// A message that a mandatory publish could not route.
struct ReturnedMessage {
    std::string exchange;
    std::string routingKey;
    Properties properties;
    std::string body;
};

struct Reply {
    Properties properties;
    std::string body;
};

class Connection;

// A running consumer. Destroying it (or cancel()) stops deliveries; unacked ones stay
// acknowledgeable, as in AMQP.
class Consumer {
public:
    Consumer() = default;
    Consumer(Consumer&&) noexcept;
    Consumer& operator=(Consumer&&) noexcept;
    ~Consumer();

    const std::string& tag() const { return tag_; }
    void cancel();

private:
    friend class Connection;
    Consumer(std::weak_ptr<Connection> connection, std::string tag)
        : connection_(std::move(connection)), tag_(std::move(tag)) {}

    std::weak_ptr<Connection> connection_;
    std::string tag_;
};

// Where a ConfirmWindow hears of its publishes' outcomes: held by the transport until each is
// settled, as a shared pointer rather than a callback made (and allocated) per publish.
class ConfirmSink {
public:
    virtual ~ConfirmSink() = default;
    // As Connection::ConfirmCallback: the confirmation, or the failure.
    virtual void settled(const Confirmation* confirmation, const Error* failure) = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
public:
    using Handler = std::function<void(Delivery&)>;
    using Responder = std::function<std::string(const Delivery& request)>;

    // Connects and says hello; throws Error on a bad URL, refused credentials or timeout.
    static std::shared_ptr<Connection> open(std::string_view url, ConnectionOptions options = {});

    virtual ~Connection(); // out of line: State is incomplete here
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Closes cleanly: the broker requeues unacked deliveries and deletes exclusive queues.
    virtual void close() = 0;

    virtual void declareExchange(std::string_view name, ExchangeType type,
                                 const ExchangeDeclareOptions& options = {}) = 0;
    virtual void deleteExchange(std::string_view name, bool ifUnused = false) = 0;
    virtual QueueDeclared declareQueue(std::string_view name,
                                       const QueueDeclareOptions& options = {}) = 0;
    // Returns how many ready messages were deleted with it.
    virtual std::uint64_t deleteQueue(std::string_view name, bool ifUnused = false,
                                      bool ifEmpty = false) = 0;
    virtual std::uint64_t purge(std::string_view queue) = 0;
    virtual void bindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                           const FieldTable& arguments = {}) = 0;
    virtual void unbindQueue(std::string_view queue, std::string_view exchange,
                             std::string_view key, const FieldTable& arguments = {}) = 0;
    virtual void bindExchange(std::string_view destination, std::string_view source,
                              std::string_view key, const FieldTable& arguments = {}) = 0;
    virtual void unbindExchange(std::string_view destination, std::string_view source,
                                std::string_view key, const FieldTable& arguments = {}) = 0;

    // Fire and forget: returns once the message is on its way. A broker error (no such
    // exchange) reaches onError, not the caller.
    virtual void publish(std::string_view exchange, std::string_view routingKey, std::string body,
                         const PublishOptions& options = {}) = 0;
    // Waits for the publisher confirm: the message is in every queue it reached.
    virtual Confirmation publishConfirmed(std::string_view exchange, std::string_view routingKey,
                                          std::string body, const PublishOptions& options = {}) = 0;
    // Publishes and returns at once; the future holds the confirm, or throws the Error that
    // publishConfirmed would have thrown. Many may be in flight, answered in publish order:
    // the fast way to publish persistent messages (the broker writes them to disk together).
    // Keep a window: wait for the oldest before publishing more. The future is answered when
    // the broker answers or the link breaks; wait_for() bounds the wait. (Over embedded:,
    // where no disk is involved, it is answered before it returns.)
    virtual std::future<Confirmation> publishConfirmedAsync(std::string_view exchange,
                                                            std::string_view routingKey,
                                                            std::string body,
                                                            const PublishOptions& options = {});

    // Starts a consumer whose handler runs on the dispatcher thread (or inline: see
    // ConsumeOptions::inlineHandler). The Delivery it is given
    // is the handler's until it returns; to keep one longer (to ack it later), copy or move it.
    [[nodiscard]] Consumer consume(std::string_view queue, Handler handler,
                                   const ConsumeOptions& options = {});
    // basic.get: the head of the queue, or nullopt when it is empty.
    virtual std::optional<Delivery> get(std::string_view queue, bool noAck = false) = 0;

    // Management listings (depotctl list ...). Transports without them throw NOT_IMPLEMENTED.
    virtual Listing list(ListKind kind) {
        (void)kind;
        throw Error(ErrorKind::BROKER, "NOT_IMPLEMENTED - this transport has no listings",
                    core::ErrorCode::NOT_IMPLEMENTED);
    }

    // RPC over the broker: publishes `body` with reply-to and a fresh correlation id, and waits
    // for the reply (a reply queue per connection, made on first use). Throws Error(TIMEOUT);
    // a request the broker refuses (no such exchange, a full queue) throws Error(BROKER) at once.
    Reply request(std::string_view exchange, std::string_view routingKey, std::string body,
                  std::chrono::milliseconds timeout, Properties properties = {});
    // The other side: consumes `queue` and answers each request with the handler's result,
    // to its reply-to with its correlation id, then acks it. A handler that throws gets the
    // request rejected without requeue (dead-lettered if the queue says so).
    [[nodiscard]] Consumer serve(std::string_view queue, Responder responder,
                                 std::uint32_t prefetch = 16);
    // The same with options: prefetch, consumer tag, exclusive, and inlineHandler for a
    // responder that never blocks (it answers sooner over depot://); noAck is ignored.
    [[nodiscard]] Consumer serve(std::string_view queue, Responder responder,
                                 const ConsumeOptions& options);

    // Notifications, on the dispatcher thread. Set them before the traffic they concern.
    void onReturn(std::function<void(const ReturnedMessage&)> handler);
    void onError(std::function<void(const Error&)> handler); // failures nobody waited for
    void onEvent(std::function<void(ConnectionEvent)> handler);

protected:
    friend class ConfirmWindow; // publishes through publishConfirmedTo

    // A handler the transport calls on its own (I/O or broker) thread. It must not block; the
    // library's public handlers are RawHandlers that post to the dispatcher. The transport
    // hands it a function that fills a Delivery in place, every field of it: a consumer's
    // handler fills one that an earlier delivery used, whose strings keep their capacity, so
    // a steady stream allocates nothing per delivery.
    using FillDelivery = kj::FunctionParam<void(Delivery&)>;
    using RawHandler = std::function<void(FillDelivery)>;

    Connection();
    // Derived destructors must stop their threads first: nothing may post after that.
    void shutdownDispatcher();

    // --- what each transport implements ---
    // Starts a consumer and returns its tag; `handler` runs on the transport's thread.
    // Publishes with a confirm and tells `settled` its outcome (the confirmation, or the
    // failure), on the transport's thread or before returning; throws (and never tells
    // `settled`) when the connection is closed. request() waits for the reply alone and learns
    // of a refusal through this; ConfirmWindow counts confirms with it. By default:
    // publishConfirmed.
    using ConfirmCallback = std::function<void(const Confirmation*, const Error*)>;
    virtual void publishConfirmedThen(std::string_view exchange, std::string_view routingKey,
                                      std::string body, const PublishOptions& options,
                                      ConfirmCallback settled);
    // publishConfirmedThen, telling `sink`: a transport may keep the pointer rather than make a
    // callback per publish. By default: publishConfirmedThen with a callback that holds it.
    virtual void publishConfirmedTo(std::string_view exchange, std::string_view routingKey,
                                    std::string body, const PublishOptions& options,
                                    std::shared_ptr<ConfirmSink> sink) {
        publishConfirmedThen(
            exchange, routingKey, std::move(body), options,
            [sink = std::move(sink)](const Confirmation* confirmation, const Error* failure) {
                sink->settled(confirmation, failure);
            });
    }
    // request()'s publish: like publishConfirmedThen, but `settled` may never be told of a
    // granted publish (the reply says it), so a transport may spare the broker's answer; it is
    // told of a refusal that comes before forgetRequestPublish, which request() calls with what
    // this returns once the request is over (its reply came, or it timed out). By default:
    // publishConfirmedThen, and 0.
    virtual std::uint64_t publishRequest(std::string_view exchange, std::string_view routingKey,
                                         std::string body, const PublishOptions& options,
                                         ConfirmCallback settled) {
        publishConfirmedThen(exchange, routingKey, std::move(body), options, std::move(settled));
        return 0;
    }
    virtual void forgetRequestPublish(std::uint64_t) {}
    // serve()'s reply: a publish, which a transport may send sooner (someone waits for it).
    virtual void publishReply(std::string_view exchange, std::string_view routingKey,
                              std::string body, const PublishOptions& options) {
        publish(exchange, routingKey, std::move(body), options);
    }
    virtual std::string startConsumer(std::string_view queue, RawHandler handler,
                                      const ConsumeOptions& options) = 0;
    // Whether an inline handler may run on the transport's thread (the RawHandler's): only
    // where that thread is not needed for anything but this connection's I/O, and holds no lock
    // that an ack or a publish takes.
    virtual bool runsInlineHandlers() const { return false; }
    virtual void cancelConsumer(const std::string& tag) = 0;

    // --- what the base class gives transports ---
    class Dispatcher& dispatcher();
    // Each posts the matching user handler (if set) to the dispatcher.
    void notifyReturn(ReturnedMessage message);
    void notifyError(Error error);
    void notifyEvent(ConnectionEvent event);
    // The connection closed or its link broke: requests waiting for a reply fail with `reason`,
    // and the next request() declares a new reply queue (the old one, exclusive, is gone).
    void resetRequests(const Error& reason);

private:
    friend class Consumer;
    struct State; // handlers, the dispatcher, RPC's reply queue and pending calls
    std::unique_ptr<State> state_;
};

} // namespace depot::client
