#pragma once
// depot::client::Bus: typed messaging over a Connection, for services whose messages are Cap'n
// Proto contracts. A contract is any struct whose field 0 is `meta :Meta`
// (protocol/envelope.capnp). The conventions, so that services agree without sharing code:
//
//   publish(event, key)      the topic exchange named after the event's type ("OrderPlaced"),
//                            declared (durable) on first use, with `key` as routing key
//   send(command, queue)     the default exchange, straight to `queue`
//   request<Reply>(r, queue) RPC: to `queue`, the reply comes back to the connection's own
//                            reply queue (Connection::request)
//   serve<Req, Reply>(queue) the responder side
//   subscribe(queue)         declares `queue` (durable) and its error queue `<queue>.error`,
//                            binds it to each handled event type's exchange, and consumes
//
// Every message carries the AMQP properties type (the contract's name, which is how one queue
// carries several types), message-id, timestamp, and correlation-id (except requests and
// replies, whose correlation-id matches them up; the business correlation is in Meta).
//
// Message ids are deterministic where they need to be: a message published while a handler
// runs gets an id derived from the handled message's id, its type and its position, so a
// redelivered message, handled again, republishes the same ids, and a subscriber with an Inbox
// drops what it has seen. That is at-least-once delivery with idempotent consumers.
//
// Lifetimes: a Bus must outlive its Subscriptions and the Consumers serve() returned.
//
// Failures: a handler that throws is called again per the RetryPolicy, in place, so the queue's
// order holds (the queue's later messages wait behind it: use a prefetch above 1 or several
// consumers when order does not matter). When the attempts run out, or the message cannot be
// read at all, it goes to `<queue>.error` with the reason in its headers (x-error-reason,
// x-error-attempts, x-error-service, x-original-exchange, x-original-routing-key) and is acked:
// not lost, not looping. It is not recorded in the inbox, so an operator can send it back.
// Retries sleep on the connection's dispatcher thread; give each service its own Connection so
// one service's retries do not hold up another's handlers.

#include "client/connection.h"
#include "client/inbox.h"

#include "protocol/envelope.capnp.h"

#include <capnp/message.h>
#include <capnp/schema.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace depot::client {

// The contract's name: its Cap'n Proto struct name, the exchange name of its events, and the
// AMQP type property of every message of it.
template <typename T> const std::string& contractName() {
    static const std::string name = capnp::Schema::from<T>().getShortDisplayName().cStr();
    return name;
}

// A message being built: `auto placed = Outgoing<OrderPlaced>(); placed->setOrderId(id);`.
// The bus fills in what is left empty of its meta when it sends it.
template <typename T> class Outgoing {
public:
    Outgoing()
        : message_(std::make_unique<capnp::MallocMessageBuilder>(256)),
          root_(message_->initRoot<T>()) {}

    typename T::Builder* operator->() { return &root_; }
    typename T::Builder& body() { return root_; }
    capnp::MessageBuilder& message() { return *message_; }

private:
    std::unique_ptr<capnp::MallocMessageBuilder> message_;
    typename T::Builder root_;
};

// The readable form of a received body (aligned words and a reader over them).
class DecodedBody {
public:
    // Throws std::invalid_argument when the bytes are not a Cap'n Proto message.
    explicit DecodedBody(const std::string& bytes);
    ~DecodedBody();
    DecodedBody(const DecodedBody&) = delete;
    DecodedBody& operator=(const DecodedBody&) = delete;

    template <typename T> typename T::Reader root() {
        return reader().getRoot<T>(); // checks the struct lazily: a bad pointer throws kj
    }

private:
    capnp::MessageReader& reader();
    struct Words;
    std::unique_ptr<Words> words_;
};

// A message received by a handler or as a reply: the contract's reader, its meta and the
// delivery it came in. Valid while the handler runs (a reply's: as long as the object).
template <typename T> class Received {
public:
    Received(std::shared_ptr<DecodedBody> body, const Delivery& delivery)
        : body_(std::move(body)), delivery_(&delivery), root_(body_->template root<T>()) {}
    Received(std::shared_ptr<DecodedBody> body, Delivery&& owned)
        : body_(std::move(body)), owned_(std::move(owned)), delivery_(&*owned_),
          root_(body_->template root<T>()) {}
    Received(const Received&) = delete;
    Received& operator=(const Received&) = delete;
    Received(Received&& other) noexcept
        : body_(std::move(other.body_)), owned_(std::move(other.owned_)),
          delivery_(owned_ ? &*owned_ : other.delivery_), root_(other.root_) {}

    const typename T::Reader* operator->() const { return &root_; }
    const typename T::Reader& body() const { return root_; }
    contracts::Meta::Reader meta() const { return root_.getMeta(); }
    const Delivery& delivery() const { return *delivery_; }

private:
    std::shared_ptr<DecodedBody> body_;
    std::optional<Delivery> owned_;
    const Delivery* delivery_;
    typename T::Reader root_;
};

struct RetryPolicy {
    std::uint32_t attempts = 3;            // calls of the handler in all; 1 = no retry
    std::chrono::milliseconds backoff{50}; // before the second call
    double multiplier = 2.0;               // each further wait grows by this
    std::chrono::milliseconds maxBackoff{2'000};

    std::chrono::milliseconds delayBefore(std::uint32_t attempt) const; // attempt >= 2
};

struct SubscribeOptions {
    std::uint32_t prefetch = 16;
    RetryPolicy retry;
    // Drops deliveries whose message id it has recorded; records each one a handler completed
    // (not those sent to the error queue), after the broker has answered a request on this
    // connection when the handler sent anything (so that what it sent cannot be lost with the
    // process while the id says "done"). Null: every delivery is handled.
    std::shared_ptr<Inbox> inbox;
    bool exclusive = false; // a private, server-named queue when the name is ""
};

// What a bus has done, for summaries and tests.
struct BusStats {
    std::uint64_t published = 0; // events, commands, requests and replies sent
    std::uint64_t handled = 0;   // deliveries a handler completed
    std::uint64_t duplicates = 0;
    std::uint64_t retries = 0;      // handler calls after a failed one
    std::uint64_t deadLettered = 0; // sent to an error queue
};

class Bus;

// A queue and the handlers for the contract types it carries; start() declares and consumes.
class Subscription {
public:
    template <typename T> using Handler = std::function<void(const Received<T>&)>;

    // Handles messages of type T on this queue. `bindingKeys`: bind the queue to T's exchange
    // with each key (events); none: T arrives sent to the queue by name (commands).
    template <typename T>
    Subscription& on(Handler<T> handler, std::vector<std::string> bindingKeys = {}) {
        Route route;
        route.type = contractName<T>();
        route.bindingKeys = std::move(bindingKeys);
        route.handle = [handler = std::move(handler)](std::shared_ptr<DecodedBody> body,
                                                      const Delivery& delivery) {
            handler(Received<T>(std::move(body), delivery));
        };
        addRoute(std::move(route));
        return *this;
    }

    // Declares the queue, its error queue and the bindings, and starts consuming. Returns the
    // queue's name (the broker's choice for "").
    const std::string& start();
    void stop();
    const std::string& queue() const { return queue_; }
    // "<queue>.error"; "" for an exclusive subscription, which has none (what its handlers
    // cannot take is rejected: dead-lettered if the queue has a dead-letter exchange).
    const std::string& errorQueue() const { return errorQueue_; }

    Subscription(Subscription&&) noexcept;
    Subscription& operator=(Subscription&&) noexcept;
    ~Subscription();

private:
    friend class Bus;
    struct Route {
        std::string type;
        std::vector<std::string> bindingKeys;
        std::function<void(std::shared_ptr<DecodedBody>, const Delivery&)> handle;
    };
    Subscription(Bus& bus, std::string queue, SubscribeOptions options);
    void addRoute(Route route);

    Bus* bus_;
    std::string queue_;
    std::string errorQueue_;
    SubscribeOptions options_;
    std::shared_ptr<std::map<std::string, Route, std::less<>>> routes_;
    Consumer consumer_;
    bool started_ = false;
};

class Bus {
public:
    // `service` names this bus's owner in logs and error-queue headers.
    Bus(std::shared_ptr<Connection> connection, std::string service);

    Connection& connection() { return *connection_; }
    const std::string& service() const { return service_; }

    template <typename T> void publish(Outgoing<T>& event, std::string_view routingKey) {
        declareEventExchange(contractName<T>());
        send(contractName<T>(), event.body().getMeta(), event.message(), contractName<T>(),
             routingKey);
    }

    template <typename T> void send(Outgoing<T>& command, std::string_view queue) {
        send(contractName<T>(), command.body().getMeta(), command.message(), "", queue);
    }

    template <typename Reply, typename T>
    Received<Reply> request(Outgoing<T>& request, std::string_view queue,
                            std::chrono::milliseconds timeout) {
        Delivery reply =
            call(contractName<T>(), request.body().getMeta(), request.message(), queue, timeout);
        auto body = std::make_shared<DecodedBody>(reply.body());
        return Received<Reply>(std::move(body), std::move(reply));
    }

    // Answers each Request on `queue` (declared here) with what `respond` builds. A responder
    // that throws gets the request rejected, and the caller times out.
    template <typename Request, typename Reply>
    [[nodiscard]] Consumer
    serve(std::string_view queue,
          std::function<void(const Received<Request>&, Outgoing<Reply>&)> respond,
          std::uint32_t prefetch = 16) {
        return serveRaw(
            queue, prefetch,
            [this, respond = std::move(respond)](const Delivery& delivery) -> std::string {
                auto body = std::make_shared<DecodedBody>(delivery.body());
                Received<Request> request(std::move(body), delivery);
                Outgoing<Reply> reply;
                std::string sealed;
                handleWithin(request.meta(), [&] {
                    respond(request, reply);
                    sealed = seal(contractName<Reply>(), reply.body().getMeta(), reply.message());
                });
                return sealed;
            });
    }

    // A subscription to fill with on<T>(...) and start().
    Subscription subscribe(std::string queue, SubscribeOptions options = {});

    BusStats stats() const;

private:
    friend class Subscription;

    void declareEventExchange(const std::string& name);
    // Runs `handle` as the handling of the message with `meta`: what it publishes derives its
    // ids and correlation from it.
    static void handleWithin(contracts::Meta::Reader meta, const std::function<void()>& handle);
    // Fills in the meta, encodes, publishes; counts.
    void send(const std::string& type, contracts::Meta::Builder meta,
              capnp::MessageBuilder& message, std::string_view exchange,
              std::string_view routingKey);
    Delivery call(const std::string& type, contracts::Meta::Builder meta,
                  capnp::MessageBuilder& message, std::string_view queue,
                  std::chrono::milliseconds timeout);
    Consumer serveRaw(std::string_view queue, std::uint32_t prefetch,
                      std::function<std::string(const Delivery&)> respond);
    // Completes the meta (ids, timestamp) and returns the encoded message.
    std::string seal(const std::string& type, contracts::Meta::Builder meta,
                     capnp::MessageBuilder& message);
    Properties propertiesFor(const std::string& type, contracts::Meta::Reader meta) const;
    // Runs one delivery through a subscription's handlers (on the dispatcher thread).
    void dispatch(const std::string& queue, const std::string& errorQueue,
                  const SubscribeOptions& options,
                  const std::map<std::string, Subscription::Route, std::less<>>& routes,
                  Delivery& delivery);
    void deadLetter(const std::string& errorQueue, Delivery& delivery, const std::string& reason,
                    std::uint32_t attempts);

    std::shared_ptr<Connection> connection_;
    std::string service_;
    std::mutex declaredMutex_;
    std::set<std::string, std::less<>> declaredExchanges_;
    std::atomic<std::uint64_t> published_{0};
    std::atomic<std::uint64_t> handled_{0};
    std::atomic<std::uint64_t> duplicates_{0};
    std::atomic<std::uint64_t> retries_{0};
    std::atomic<std::uint64_t> deadLettered_{0};
};

} // namespace depot::client
