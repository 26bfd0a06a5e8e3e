#include "client/connection.h"

#include "client/amqp_connection.h"
#include "client/dispatcher.h"
#include "client/embedded_connection.h"
#include "client/inline_handler.h"
#include "client/tcp_connection.h"

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>

namespace depot::client {
namespace {

// Lets a consumer's handler calls through until its Consumer is cancelled. Once close(true)
// returns the handler is not running and is not called again, so it may capture what the
// Consumer's owner is about to destroy; it does not wait for a call that its own thread is
// making (a handler cancelling its own consumer).
class Gate {
public:
    // On the thread that runs the handler: runs `call` (which must not throw) unless the gate
    // is closed; says whether it ran.
    template <class F> bool pass(F&& call) {
        std::lock_guard lock(running_);
        if (!open_)
            return false;
        // Relaxed: only the runner stores its id here, and close() compares it with its own.
        runner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        call();
        runner_.store(std::thread::id(), std::memory_order_relaxed);
        return true;
    }

    // `wait`: also for a call in progress on another thread. An inline handler does not wait
    // (the call it would wait for may itself wait on the network thread it holds).
    void close(bool wait) {
        open_ = false;
        if (wait && runner_.load(std::memory_order_relaxed) != std::this_thread::get_id())
            std::lock_guard lock(running_); // for a handler call in progress
    }

private:
    std::mutex running_;
    std::atomic<bool> open_{true};
    std::atomic<std::thread::id> runner_{};
};

// Deliveries received for one consumer and not yet handed to its handler. Handled ones are
// not destroyed but filled again by later deliveries: their strings keep their capacity, so a
// steady stream allocates nothing per delivery, and nothing the transport's thread allocates
// is freed on the dispatcher's (which the C library's malloc serves slowly). The transport
// fills `filling` while the dispatcher handles an earlier batch; they swap under the lock.
struct Mailbox {
    // What a handled Delivery may keep for reuse: a larger body is freed (its allocation costs
    // little next to its copy).
    static constexpr std::size_t KEPT_BODY_BYTES = 4 * 1024;
    // Handled Deliveries kept for reuse at most, in each of the two batches (filling, spare):
    // a larger batch's tail is freed. So a consumer keeps at most about 10 MiB. (256 lost much
    // of the gain for a consumer draining a backlog, whose batches are thousands.)
    static constexpr std::size_t KEPT_DELIVERIES = 1024;

    std::mutex mutex;
    std::vector<Delivery> filling; // the first `filled` are waiting; the rest are for reuse
    std::size_t filled = 0;
    std::vector<Delivery> spare; // a handled batch, to become `filling` after the next swap
    bool scheduled = false;      // a drain task is posted and has not finished

    // With the lock held: the next slot, for the transport to fill in full.
    Delivery& next() {
        if (filled == filling.size())
            filling.emplace_back();
        return filling[filled];
    }
};

using ReplyOutcome = std::variant<Reply, Failure>;

Error connectionClosed() {
    return Error(ErrorKind::CONNECTION_LOST, "the connection was closed");
}

std::string describeFailure(std::exception_ptr failure) {
    try {
        std::rethrow_exception(std::move(failure));
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

} // namespace

struct Connection::State {
    std::mutex handlersMutex;
    std::shared_ptr<const std::function<void(const ReturnedMessage&)>> onReturn;
    std::shared_ptr<const std::function<void(const Error&)>> onError;
    std::shared_ptr<const std::function<void(ConnectionEvent)>> onEvent;

    std::mutex gatesMutex;
    std::unordered_map<std::string, std::shared_ptr<Gate>> gates; // by consumer tag
    bool shutDown = false;

    // RPC. setupMutex serializes the (blocking) creation of the reply queue; pendingMutex
    // guards the rest and is never held across a call, because the transport's thread takes it
    // to complete a request.
    std::mutex setupMutex;
    std::mutex pendingMutex;
    std::string replyQueue; // "" until the first request (and after resetRequests)
    std::uint64_t nextCorrelationId = 1;
    std::unordered_map<std::string, std::shared_ptr<std::promise<ReplyOutcome>>> pending;

    // On the transport's thread: hands a reply to the request waiting for it. A reply nobody
    // waits for (it timed out, or it is not ours) is dropped.
    // Takes the reply's properties and body (the Delivery is not used again).
    void completeRequest(Delivery& reply) {
        std::shared_ptr<std::promise<ReplyOutcome>> waiting;
        {
            std::lock_guard lock(pendingMutex);
            auto it = pending.find(reply.properties().correlationId);
            if (it == pending.end())
                return;
            waiting = std::move(it->second);
            pending.erase(it);
        }
        DeliveryFields fields(reply);
        waiting->set_value(
            ReplyOutcome(Reply{std::move(fields.properties()), std::move(fields.body())}));
    }

    // Fails the request waiting under `correlationId` (its publish was refused), if any.
    void failRequest(const std::string& correlationId, const Error& error) {
        std::shared_ptr<std::promise<ReplyOutcome>> waiting;
        {
            std::lock_guard lock(pendingMutex);
            auto it = pending.find(correlationId);
            if (it == pending.end())
                return;
            waiting = std::move(it->second);
            pending.erase(it);
        }
        waiting->set_value(ReplyOutcome(std::in_place_index<1>, error));
    }

    bool forgetRequest(const std::string& correlationId) {
        std::lock_guard lock(pendingMutex);
        return pending.erase(correlationId) == 1;
    }

    // Last, so it is destroyed (stopped and joined) first, while the rest is still valid.
    Dispatcher dispatcher;
};

// --- Consumer ---

Consumer::Consumer(Consumer&& other) noexcept
    : connection_(std::move(other.connection_)), tag_(std::move(other.tag_)) {
    other.connection_.reset();
}

Consumer& Consumer::operator=(Consumer&& other) noexcept {
    if (this != &other) {
        cancel();
        connection_ = std::move(other.connection_);
        tag_ = std::move(other.tag_);
        other.connection_.reset();
    }
    return *this;
}

Consumer::~Consumer() {
    cancel();
}

void Consumer::cancel() {
    std::shared_ptr<Connection> connection = connection_.lock();
    connection_.reset();
    if (!connection)
        return; // never started, cancelled already, or the connection is gone (and with it
                // the broker's side of the consumer)
    Connection::State& state = *connection->state_;
    // From an inline handler too: no transport's cancel waits on the thread an inline handler
    // holds (over depot:// it is a task for the network thread, elsewhere such a handler runs
    // on the dispatcher thread, which may wait).
    const bool fromInlineHandler = inInlineHandler();
    try {
        const InlineHandlerScope allowed(false);
        connection->cancelConsumer(tag_);
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::CONNECTION_LOST)
            connection->notifyError(e);
    } catch (const std::exception& e) {
        connection->notifyError(Error(ErrorKind::HANDLER_FAILED,
                                      "cancelling consumer '" + tag_ + "' failed: " + e.what()));
    }
    // After the broker stopped sending (over depot://, from the network thread: once this
    // read is done): deliveries still queued for the handler are dropped (and requeued), and a
    // handler call in progress on another thread is waited for, unless this is an inline
    // handler (that call may be waiting for the network thread this one holds).
    std::shared_ptr<Gate> gate;
    {
        std::lock_guard lock(state.gatesMutex);
        auto it = state.gates.find(tag_);
        if (it != state.gates.end()) {
            gate = std::move(it->second);
            state.gates.erase(it);
        }
    }
    if (gate)
        gate->close(!fromInlineHandler);
    // `connection` may be the last reference: the connection closes here, on this thread (over
    // depot://, from its network thread, on its dispatcher thread instead).
}

// --- Connection ---

Connection::Connection() : state_(std::make_unique<State>()) {}

Connection::~Connection() = default;

std::shared_ptr<Connection> Connection::open(std::string_view url, ConnectionOptions options) {
    const BrokerUrl parsed = BrokerUrl::parse(url);
    switch (parsed.scheme) {
    case BrokerUrl::Scheme::EMBEDDED:
        return openEmbeddedConnection(parsed, options);
    case BrokerUrl::Scheme::DEPOT:
        return openTcpConnection(parsed, options);
    case BrokerUrl::Scheme::AMQP:
        return openAmqpConnection(parsed, options);
    }
    throw Error(ErrorKind::INVALID_ARGUMENT, "unknown URL scheme in '" + std::string(url) + "'");
}

std::future<Confirmation> Connection::publishConfirmedAsync(std::string_view exchange,
                                                            std::string_view routingKey,
                                                            std::string body,
                                                            const PublishOptions& options) {
    std::promise<Confirmation> answered;
    try {
        answered.set_value(publishConfirmed(exchange, routingKey, std::move(body), options));
    } catch (...) {
        answered.set_exception(std::current_exception());
    }
    return answered.get_future();
}

Consumer Connection::consume(std::string_view queue, Handler handler,
                             const ConsumeOptions& options) {
    auto gate = std::make_shared<Gate>();
    auto userHandler = std::make_shared<const Handler>(std::move(handler));
    std::weak_ptr<Connection> weak = weak_from_this();
    // One delivery to the handler, through the gate: one that comes after the consumer was
    // cancelled goes back to its queue; a handler that throws leaves the delivery as it left it
    // (unsettled unless it settled it), as in AMQP clients, and the application hears of it.
    const bool inlineHandler = options.inlineHandler;
    auto handOver = [gate, userHandler, weak, inlineHandler](Delivery& delivery) {
        std::exception_ptr failure;
        const bool ran = gate->pass([&] {
            std::optional<InlineHandlerScope> scope;
            if (inlineHandler)
                scope.emplace();
            try {
                (*userHandler)(delivery);
            } catch (...) {
                failure = std::current_exception();
            }
        });
        if (!ran) {
            delivery.reject(true);
        } else if (failure) {
            if (std::shared_ptr<Connection> connection = weak.lock())
                connection->notifyError(Error(ErrorKind::HANDLER_FAILED,
                                              "the handler of consumer '" + delivery.consumerTag() +
                                                  "' threw: " + describeFailure(failure)));
        }
        if (std::string& body = DeliveryFields(delivery).body();
            body.capacity() > Mailbox::KEPT_BODY_BYTES)
            body = std::string(); // too large to keep for reuse
    };
    RawHandler raw;
    if (inlineHandler && runsInlineHandlers()) {
        // On the transport's thread, as each delivery is read: one Delivery, filled again by
        // each (its strings keep their capacity), and no hand-off.
        auto slot = std::make_shared<Delivery>();
        raw = [handOver, slot](FillDelivery fill) {
            fill(*slot);
            handOver(*slot);
        };
    } else {
        // Deliveries wait in the consumer's mailbox; one dispatcher task drains whatever has
        // arrived, so a busy consumer costs one task (one allocation, one lock) per batch, not
        // per delivery. Order holds per consumer.
        auto mailbox = std::make_shared<Mailbox>();
        auto drain = [handOver, mailbox] {
            std::vector<Delivery> batch;
            std::size_t count = 0;
            for (;;) {
                {
                    std::lock_guard lock(mailbox->mutex);
                    if (batch.size() > mailbox->spare.size())
                        mailbox->spare.swap(batch);
                    if (mailbox->filled == 0) {
                        mailbox->scheduled = false;
                        return;
                    }
                    batch.swap(mailbox->filling);
                    count = std::exchange(mailbox->filled, 0);
                    mailbox->filling.swap(mailbox->spare);
                }
                for (std::size_t i = 0; i < count; ++i)
                    handOver(batch[i]);
                if (batch.size() > Mailbox::KEPT_DELIVERIES)
                    batch.resize(Mailbox::KEPT_DELIVERIES);
            }
        };
        // Posted as one shared pointer (one small allocation and one reference count, not a
        // copy of its captures): a consumer that gets one delivery per read (one of many on its
        // connection) posts a drain each time.
        auto drainTask = std::make_shared<const decltype(drain)>(std::move(drain));
        Dispatcher* dispatcher = &state_->dispatcher; // the transport calls `raw` only while open
        raw = [dispatcher, mailbox, drainTask](FillDelivery fill) {
            {
                std::lock_guard lock(mailbox->mutex);
                fill(mailbox->next());
                ++mailbox->filled; // not if fill threw
                if (mailbox->scheduled)
                    return;
                mailbox->scheduled = true;
            }
            dispatcher->post([drainTask] { (*drainTask)(); });
        };
    }
    std::string tag = startConsumer(queue, std::move(raw), options);
    bool shutDown = false;
    {
        std::lock_guard lock(state_->gatesMutex);
        shutDown = state_->shutDown;
        if (!shutDown)
            state_->gates[tag] = gate;
    }
    if (shutDown)
        gate->close(true);
    return Consumer(weak_from_this(), std::move(tag));
}

Reply Connection::request(std::string_view exchange, std::string_view routingKey, std::string body,
                          std::chrono::milliseconds timeout, Properties properties) {
    refuseInInlineHandler();
    State& state = *state_;
    std::string replyTo;
    {
        // The reply queue's consumer is a raw one: replies complete on the transport's thread,
        // so a request made by a handler on the dispatcher thread does not wait for itself.
        std::lock_guard setup(state.setupMutex);
        {
            std::lock_guard lock(state.pendingMutex);
            replyTo = state.replyQueue;
        }
        if (replyTo.empty()) {
            QueueDeclareOptions queueOptions;
            queueOptions.exclusive = true;
            queueOptions.autoDelete = true;
            replyTo = declareQueue("", queueOptions).name;
            ConsumeOptions consumeOptions;
            consumeOptions.noAck = true;
            consumeOptions.exclusive = true;
            State* s = &state; // the transport calls this only while the connection is open
            (void)startConsumer(
                replyTo,
                [s](FillDelivery fill) {
                    Delivery reply;
                    fill(reply);
                    s->completeRequest(reply);
                },
                consumeOptions);
            std::lock_guard lock(state.pendingMutex);
            state.replyQueue = replyTo;
        }
    }

    auto promise = std::make_shared<std::promise<ReplyOutcome>>();
    std::future<ReplyOutcome> reply = promise->get_future();
    std::string correlationId;
    {
        std::lock_guard lock(state.pendingMutex);
        correlationId = "rpc-" + std::to_string(state.nextCorrelationId++);
        state.pending.emplace(correlationId, std::move(promise));
    }
    PublishOptions publishOptions;
    publishOptions.properties = std::move(properties);
    publishOptions.properties.replyTo = replyTo;
    publishOptions.properties.correlationId = correlationId;
    std::uint64_t published = 0;
    try {
        // Confirmed, so that a request the broker refuses fails now rather than at the timeout;
        // but the caller waits for the reply alone (one wake-up, not two): a refusal fails it.
        // Over depot://, depotd answers only a refusal (publishRequest): a confirm on the way
        // back while the request is served cost the round trip 10 µs.
        State* s = &state; // the transport settles its requests before the connection goes
        published = publishRequest(
            exchange, routingKey, std::move(body), publishOptions,
            [s, correlationId, key = std::string(routingKey)](const Confirmation* confirmation,
                                                              const Error* failure) {
                if (failure != nullptr)
                    s->failRequest(correlationId, *failure);
                else if (!confirmation->ack)
                    s->failRequest(correlationId, Error(ErrorKind::BROKER,
                                                        "request to '" + key +
                                                            "' refused: " + confirmation->reason,
                                                        core::ErrorCode::RESOURCE_ERROR));
            });
    } catch (...) {
        state.forgetRequest(correlationId);
        throw;
    }
    const bool answered = reply.wait_for(timeout) == std::future_status::ready;
    forgetRequestPublish(published);
    if (!answered && state.forgetRequest(correlationId)) {
        // Still pending after the timeout: a reply that comes later is dropped.
        throw Error(ErrorKind::TIMEOUT, "no reply to request '" + correlationId + "' on '" +
                                            std::string(routingKey) + "' within " +
                                            std::to_string(timeout.count()) + " ms");
    }
    ReplyOutcome outcome = reply.get();
    if (outcome.index() == 1)
        throw std::get<1>(outcome).error(); // what resetRequests said
    return std::get<0>(std::move(outcome));
}

Consumer Connection::serve(std::string_view queue, Responder responder, std::uint32_t prefetch) {
    ConsumeOptions options;
    options.prefetch = prefetch;
    return serve(queue, std::move(responder), options);
}

Consumer Connection::serve(std::string_view queue, Responder responder,
                           const ConsumeOptions& consumeOptions) {
    ConsumeOptions options = consumeOptions;
    options.noAck = false; // acked once answered
    std::weak_ptr<Connection> weak = weak_from_this();
    std::string queueName(queue);
    return consume(
        queue,
        [weak, queueName, responder = std::move(responder)](Delivery& request) {
            std::shared_ptr<Connection> self = weak.lock();
            if (!self)
                return;
            const Properties& asked = request.properties();
            if (asked.replyTo.empty()) {
                request.ack(); // unanswerable, and another try would not change that
                self->notifyError(Error(ErrorKind::HANDLER_FAILED,
                                        "a request on '" + queueName +
                                            "' has no reply-to; acked without an answer"));
                return;
            }
            std::string answer;
            try {
                answer = responder(request);
            } catch (...) {
                request.reject(false); // dead-lettered if the queue says so
                self->notifyError(Error(ErrorKind::HANDLER_FAILED,
                                        "the responder on '" + queueName + "' threw: " +
                                            describeFailure(std::current_exception())));
                return;
            }
            PublishOptions reply;
            reply.properties.correlationId = asked.correlationId;
            self->publishReply("", asked.replyTo, std::move(answer), reply);
            request.ack();
        },
        options);
}

void Connection::publishConfirmedThen(std::string_view exchange, std::string_view routingKey,
                                      std::string body, const PublishOptions& options,
                                      ConfirmCallback settled) {
    Confirmation confirmation;
    try {
        confirmation = publishConfirmed(exchange, routingKey, std::move(body), options);
    } catch (const Error& error) {
        if (error.kind() == ErrorKind::CONNECTION_LOST)
            throw; // closed: thrown, as every transport does
        settled(nullptr, &error);
        return;
    }
    settled(&confirmation, nullptr);
}

void Connection::onReturn(std::function<void(const ReturnedMessage&)> handler) {
    auto shared = handler ? std::make_shared<const std::function<void(const ReturnedMessage&)>>(
                                std::move(handler))
                          : nullptr;
    std::lock_guard lock(state_->handlersMutex);
    state_->onReturn = std::move(shared);
}

void Connection::onError(std::function<void(const Error&)> handler) {
    auto shared =
        handler ? std::make_shared<const std::function<void(const Error&)>>(std::move(handler))
                : nullptr;
    std::lock_guard lock(state_->handlersMutex);
    state_->onError = std::move(shared);
}

void Connection::onEvent(std::function<void(ConnectionEvent)> handler) {
    auto shared =
        handler ? std::make_shared<const std::function<void(ConnectionEvent)>>(std::move(handler))
                : nullptr;
    std::lock_guard lock(state_->handlersMutex);
    state_->onEvent = std::move(shared);
}

Dispatcher& Connection::dispatcher() {
    return state_->dispatcher;
}

void Connection::notifyReturn(ReturnedMessage message) {
    std::shared_ptr<const std::function<void(const ReturnedMessage&)>> handler;
    {
        std::lock_guard lock(state_->handlersMutex);
        handler = state_->onReturn;
    }
    if (handler)
        state_->dispatcher.post([handler, message = std::move(message)] { (*handler)(message); });
}

void Connection::notifyError(Error error) {
    std::shared_ptr<const std::function<void(const Error&)>> handler;
    {
        std::lock_guard lock(state_->handlersMutex);
        handler = state_->onError;
    }
    if (handler)
        state_->dispatcher.post([handler, error = std::move(error)] { (*handler)(error); });
}

void Connection::notifyEvent(ConnectionEvent event) {
    std::shared_ptr<const std::function<void(ConnectionEvent)>> handler;
    {
        std::lock_guard lock(state_->handlersMutex);
        handler = state_->onEvent;
    }
    if (handler)
        state_->dispatcher.post([handler, event] { (*handler)(event); });
}

void Connection::resetRequests(const Error& reason) {
    std::unordered_map<std::string, std::shared_ptr<std::promise<ReplyOutcome>>> pending;
    {
        std::lock_guard lock(state_->pendingMutex);
        state_->replyQueue.clear();
        pending.swap(state_->pending);
    }
    for (auto& entry : pending)
        entry.second->set_value(ReplyOutcome(std::in_place_index<1>, reason));
}

void Connection::shutdownDispatcher() {
    std::unordered_map<std::string, std::shared_ptr<Gate>> gates;
    {
        std::lock_guard lock(state_->gatesMutex);
        state_->shutDown = true;
        gates.swap(state_->gates);
    }
    // First the requests, so that a handler waiting for a reply returns; then the gates:
    // deliveries not yet handled are dropped (the broker requeued them when the channel closed).
    resetRequests(connectionClosed());
    for (auto& entry : gates)
        entry.second->close(true); // not for a handler of this thread's (destroyed from it)
    state_->dispatcher.stop();
}

} // namespace depot::client
