#include "client/tcp_connection.h"

#include "client/ack_coalescer.h"

#include "client/dispatcher.h"
#include "client/inline_handler.h"
#include "client/pending_requests.h"
#include "client/topology.h"
#include "protocol/convert.h"
#include "protocol/frame_reader.h"
#include "protocol/outbox.h"
#include "protocol/wire.capnp.h"

#include <asio.hpp>
#include <capnp/message.h>
#include <kj/exception.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace depot::client {

namespace {

using protocol::fromWire;
using protocol::text;
using protocol::toWire;
using protocol::view;
using protocol::wireText;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t SCRATCH_WORDS = 1024;
// An urgent write from the caller's thread takes at most this many pieces (else the io thread
// writes them): a request or a reply is one or two.
constexpr std::size_t MAX_INLINE_RANGES = 16;
constexpr std::chrono::milliseconds FIRST_BACKOFF{100};
// A publisher waits while this much is queued for the socket and not yet written: the broker
// (or the network) sets the pace, and the client's memory stays bounded. Small, so that what
// the kernel copies was just written and is still in the CPU's cache: with 8 MiB a publisher
// spent twice the CPU per message in that copy and in page faults of its buffers.
constexpr std::size_t PUBLISH_BACKLOG_LIMIT = std::size_t{256} << 10;

class TcpConnection;

// Where deliveries of one link send their acks. A new link (after a reconnect) gets a new one:
// delivery tags restart at 1 there, so an ack for an old delivery must go nowhere.
class AckLink final : public AckTarget {
public:
    explicit AckLink(TcpConnection* owner) : owner_(owner) {}
    void ack(std::uint64_t tag, bool multiple) override;
    void nack(std::uint64_t tag, bool multiple, bool requeue) override;
    void reject(std::uint64_t tag, bool requeue) override;
    void detach() {
        std::lock_guard lock(mutex_);
        owner_ = nullptr;
    }

private:
    std::mutex mutex_;
    TcpConnection* owner_;
};

class TcpConnection final : public Connection {
public:
    TcpConnection(BrokerUrl url, ConnectionOptions options)
        : url_(std::move(url)), options_(std::move(options)), socket_(io_), timer_(io_) {
        // Acks that handlers made in a batch leave when the batch is done (see settle).
        dispatcher().onIdle([this] {
            std::lock_guard lock(outMutex_);
            writeAcksNowLocked();
        });
    }

    ~TcpConnection() override {
        try {
            // Never in an inline handler (see destroy()), but close() must not refuse here.
            const InlineHandlerScope allowed(false);
            close();
        } catch (...) {
            // closing is best effort when the connection is being destroyed
        }
        stopThread();
        shutdownDispatcher();
    }

    void start() {
        work_.emplace(io_.get_executor());
        thread_ = std::thread([this] { io_.run(); });
        auto ready = std::make_shared<std::promise<void>>();
        std::future<void> future = ready->get_future();
        asio::post(io_, [this, ready] {
            connectPromise_ = ready;
            connect();
        });
        if (future.wait_for(options_.connectTimeout) != std::future_status::ready) {
            asio::post(io_, [this] {
                connectPromise_.reset();
                giveUp_ = true;
                linkDown("connect timed out");
            });
            stopThread();
            throw Error(ErrorKind::TIMEOUT, "could not connect to " + url_.redacted() + " in " +
                                                std::to_string(options_.connectTimeout.count()) +
                                                " ms");
        }
        try {
            future.get();
        } catch (...) {
            stopThread();
            throw;
        }
    }

    // --- the Connection API ---

    void close() override {
        refuseInInlineHandler();
        if (closed_.exchange(true) || !thread_.joinable())
            return;
        {
            std::lock_guard lock(outMutex_); // wake publishers waiting for room
        }
        room_.notify_all();
        if (onIoThread())
            return; // cannot wait for ourselves; the destructor finishes the job
        auto done = std::make_shared<std::promise<void>>();
        auto future = done->get_future();
        asio::post(io_, [this, done] {
            giveUp_ = true;
            if (link_ != Link::OPEN) {
                linkDown("closed by the application");
                done->set_value();
                return;
            }
            request(
                [](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                   std::shared_ptr<const void>&) { f.initClose().setReason("closed by client"); },
                [this, done](const wire::Frame::Reader*, const Error*) {
                    linkDown("closed by the application");
                    done->set_value();
                });
        });
        if (future.wait_for(std::chrono::seconds(2)) != std::future_status::ready)
            asio::post(io_, [this] { linkDown("close timed out"); });
        notifyEvent(ConnectionEvent::CLOSED);
    }

    void declareExchange(std::string_view name, ExchangeType type,
                         const ExchangeDeclareOptions& options) override {
        Topology::Exchange record{std::string(name), type, options};
        call<bool>([record](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                            std::shared_ptr<const void>&) { fillDeclareExchange(f, record); },
                   [](wire::Frame::Reader) { return true; });
        runOnIo([this, record] { topology_.declared(record); });
    }

    void deleteExchange(std::string_view name, bool ifUnused) override {
        std::string n(name);
        call<bool>(
            [n, ifUnused](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                          std::shared_ptr<const void>&) {
                auto d = f.initDeleteExchange();
                d.setName(wireText(n));
                d.setIfUnused(ifUnused);
            },
            [](wire::Frame::Reader) { return true; });
        runOnIo([this, n] { topology_.exchangeDeleted(n); });
    }

    QueueDeclared declareQueue(std::string_view name, const QueueDeclareOptions& options) override {
        Topology::Queue record{std::string(name), name.empty(), options};
        QueueDeclared declared = call<QueueDeclared>(
            [record](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                     std::shared_ptr<const void>&) { fillDeclareQueue(f, record); },
            [](wire::Frame::Reader f) {
                const auto ok = f.getDeclareQueueOk();
                return QueueDeclared{text(ok.getName()), ok.getMessageCount(),
                                     ok.getConsumerCount()};
            });
        record.name = declared.name;
        runOnIo([this, record] { topology_.declared(record); });
        return declared;
    }

    std::uint64_t deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty) override {
        std::string n(name);
        const std::uint64_t count = call<std::uint64_t>(
            [n, ifUnused, ifEmpty](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                   std::shared_ptr<const void>&) {
                auto d = f.initDeleteQueue();
                d.setName(wireText(n));
                d.setIfUnused(ifUnused);
                d.setIfEmpty(ifEmpty);
            },
            [](wire::Frame::Reader f) { return f.getMessageCount(); });
        runOnIo([this, n] { topology_.queueDeleted(n); });
        return count;
    }

    std::uint64_t purge(std::string_view queue) override {
        std::string n(queue);
        return call<std::uint64_t>([n](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                       std::shared_ptr<const void>&) { f.setPurge(wireText(n)); },
                                   [](wire::Frame::Reader f) { return f.getMessageCount(); });
    }

    void bindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                   const FieldTable& arguments) override {
        binding(true, Topology::Binding{std::string(queue), std::string(exchange), std::string(key),
                                        arguments, false});
    }
    void unbindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                     const FieldTable& arguments) override {
        binding(false, Topology::Binding{std::string(queue), std::string(exchange),
                                         std::string(key), arguments, false});
    }
    void bindExchange(std::string_view destination, std::string_view source, std::string_view key,
                      const FieldTable& arguments) override {
        binding(true, Topology::Binding{std::string(destination), std::string(source),
                                        std::string(key), arguments, true});
    }
    void unbindExchange(std::string_view destination, std::string_view source, std::string_view key,
                        const FieldTable& arguments) override {
        binding(false, Topology::Binding{std::string(destination), std::string(source),
                                         std::string(key), arguments, true});
    }

    // Encoded on the caller's thread and appended to the outbox there: no hop to the network
    // thread per message, which is woken once per batch (see appendFrame).
    void publish(std::string_view exchange, std::string_view routingKey, std::string body,
                 const PublishOptions& options) override {
        publishFrame(exchange, routingKey, std::move(body), options, /*urgent=*/false);
    }

protected:
    // An RPC reply: someone waits for it, so it leaves at once when the socket is idle.
    void publishReply(std::string_view exchange, std::string_view routingKey, std::string body,
                      const PublishOptions& options) override {
        publishFrame(exchange, routingKey, std::move(body), options, /*urgent=*/true);
    }

public:
    void publishFrame(std::string_view exchange, std::string_view routingKey, std::string body,
                      const PublishOptions& options, bool urgent) {
        if (closed_)
            throw Error(ErrorKind::CONNECTION_LOST, "the connection is closed");
        const PublishFill fill(exchange, routingKey, std::move(body), options);
        const bool sent = appendFrame(0, fill, {.urgent = urgent, .waitForRoom = true});
        if (!sent)
            notifyError(Error(ErrorKind::CONNECTION_LOST, "publish to '" + std::string(exchange) +
                                                              "' dropped: not connected to " +
                                                              url_.redacted()));
    }

    Confirmation publishConfirmed(std::string_view exchange, std::string_view routingKey,
                                  std::string body, const PublishOptions& options) override {
        const PublishFill fill(exchange, routingKey, std::move(body), options);
        return call<Confirmation>(std::cref(fill), confirmationOf());
    }

    std::future<Confirmation> publishConfirmedAsync(std::string_view exchange,
                                                    std::string_view routingKey, std::string body,
                                                    const PublishOptions& options) override {
        const PublishFill fill(exchange, routingKey, std::move(body), options);
        return start<Confirmation>(std::cref(fill), confirmationOf());
    }

protected:
    void publishConfirmedThen(std::string_view exchange, std::string_view routingKey,
                              std::string body, const PublishOptions& options,
                              ConfirmCallback settled) override {
        (void)startConfirmed(exchange, routingKey, std::move(body), options,
                             std::make_shared<CallbackSink>(std::move(settled)), false);
    }
    void publishConfirmedTo(std::string_view exchange, std::string_view routingKey,
                            std::string body, const PublishOptions& options,
                            std::shared_ptr<ConfirmSink> sink) override {
        (void)startConfirmed(exchange, routingKey, std::move(body), options, std::move(sink),
                             false);
    }
    // depotd answers only a refusal (wire::Publish.refusalsOnly): the request's waiting entry
    // stays until forgetRequestPublish, unless a refusal (or a lost link) took it first.
    std::uint64_t publishRequest(std::string_view exchange, std::string_view routingKey,
                                 std::string body, const PublishOptions& options,
                                 ConfirmCallback settled) override {
        return startConfirmed(exchange, routingKey, std::move(body), options,
                              std::make_shared<CallbackSink>(std::move(settled)), true);
    }
    void forgetRequestPublish(std::uint64_t id) override {
        std::lock_guard lock(pendingMutex_);
        quiet_.erase(id);
    }

public:
    std::optional<Delivery> get(std::string_view queue, bool noAck) override {
        std::string n(queue);
        return call<std::optional<Delivery>>(
            [n, noAck](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                       std::shared_ptr<const void>&) {
                auto g = f.initGet();
                g.setQueue(wireText(n));
                g.setNoAck(noAck);
            },
            [this, noAck](wire::Frame::Reader f) -> std::optional<Delivery> {
                const auto ok = f.getGetOk();
                if (ok.isEmpty())
                    return std::nullopt;
                return toDelivery("", ok.getMessage(), !noAck);
            });
    }

    Listing list(ListKind kind) override {
        return call<Listing>([kind](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                    std::shared_ptr<const void>&) { f.setList(toWireKind(kind)); },
                             [](wire::Frame::Reader f) { return toListing(f.getListOk()); });
    }

protected:
    // Inline handlers run in handleFrame, on the io thread: acks and publishes from there are
    // appended to the outbox and written after the read (or at once: a reply), never waited on.
    bool runsInlineHandlers() const override { return true; }

    std::string startConsumer(std::string_view queue, RawHandler handler,
                              const ConsumeOptions& options) override {
        auto record = std::make_shared<ConsumerRecord>(
            ConsumerRecord{std::string(queue), options, std::move(handler)});
        return call<std::string>(
            [record](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                     std::shared_ptr<const void>&) { fillConsume(f, *record, ""); },
            [this, record](wire::Frame::Reader f) {
                // Registered here, on the io thread, before the next frame (its first delivery
                // may follow at once) is read.
                std::string tag = text(f.getConsumeOk());
                consumers_[tag] = record;
                return tag;
            });
    }

    void cancelConsumer(const std::string& tag) override {
        runOnIo([this, tag] {
            auto it = consumers_.find(tag);
            if (it == consumers_.end())
                return;
            cancelledNeedAck_[tag] = !it->second->options.noAck;
            consumers_.erase(it);
            if (link_ != Link::OPEN)
                return;
            request([tag](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                          std::shared_ptr<const void>&) { f.setCancel(wireText(tag)); },
                    [](const wire::Frame::Reader*, const Error*) {});
        });
    }

private:
    friend class AckLink;

    enum class Link { DOWN, CONNECTING, OPEN };
    using Fill = std::function<void(capnp::MessageBuilder&, wire::Frame::Builder, const void*&,
                                    std::shared_ptr<const void>&)>;
    // Called on the io thread with the answer frame, or with the failure (connection lost).
    using Callback = std::function<void(const wire::Frame::Reader*, const Error*)>;
    // What waits for a request's answer: a callback given the frame, or (a publish with a
    // confirm) a sink given the Confirmation.
    struct Waiting {
        Callback generic;
        std::shared_ptr<ConfirmSink> sink; // instead of `generic`
    };
    // A ConfirmCallback as a sink (Connection::publishConfirmedTo's default does the reverse).
    struct CallbackSink final : ConfirmSink {
        explicit CallbackSink(ConfirmCallback callback) : callback(std::move(callback)) {}
        void settled(const Confirmation* confirmation, const Error* failure) override {
            callback(confirmation, failure);
        }
        ConfirmCallback callback;
    };

    // A publish with a confirm, told to `sink`; with `refusalsOnly`, a quiet request.
    std::uint64_t startConfirmed(std::string_view exchange, std::string_view routingKey,
                                 std::string body, const PublishOptions& options,
                                 std::shared_ptr<ConfirmSink> sink, bool refusalsOnly) {
        if (closed_)
            throw Error(ErrorKind::CONNECTION_LOST, "the connection is closed");
        const PublishFill fill(exchange, routingKey, std::move(body), options, refusalsOnly);
        return startRequest(fill, Waiting{{}, std::move(sink)}, /*quiet=*/refusalsOnly);
    }

    // Fills a publish frame from the caller's arguments, which it only refers to: for a frame
    // encoded before the call returns (appendFrame, startRequest and so call and start encode
    // at once), so nothing is copied into a payload. A body large enough to be sent from where
    // it lives is moved to an owner that the outbox keeps until it is written.
    class PublishFill {
    public:
        PublishFill(std::string_view exchange, std::string_view routingKey, std::string body,
                    const PublishOptions& options, bool refusalsOnly = false)
            : exchange_(exchange), routingKey_(routingKey), options_(options),
              refusalsOnly_(refusalsOnly) {
            if (protocol::canReferenceBody(body))
                owner_ = std::make_shared<const std::string>(std::move(body));
            else
                body_ = std::move(body);
        }
        void operator()(capnp::MessageBuilder& b, wire::Frame::Builder f, const void*& external,
                        std::shared_ptr<const void>& keepAlive) const {
            fillPublish(b, f, exchange_, routingKey_, options_, owner_ ? *owner_ : body_, owner_,
                        external, keepAlive);
            if (refusalsOnly_)
                f.getPublish().setRefusalsOnly(true);
        }

    private:
        std::string_view exchange_;
        std::string_view routingKey_;
        const PublishOptions& options_;
        bool refusalsOnly_;
        std::string body_;
        std::shared_ptr<const std::string> owner_;
    };
    struct ConsumerRecord {
        std::string queue;
        ConsumeOptions options;
        RawHandler handler;
    };

    // On the io thread, with the confirm frame.
    std::function<Confirmation(wire::Frame::Reader)> confirmationOf() {
        return [this](wire::Frame::Reader f) { return confirmationIn(f); };
    }
    Confirmation confirmationIn(wire::Frame::Reader f) {
        const auto c = f.getConfirm();
        Confirmation confirmation;
        confirmation.ack = c.getAck();
        confirmation.queues = c.getRoutedQueues();
        confirmation.reason = text(c.getReason());
        confirmation.returned = returnedIds_.erase(f.getRequestId()) > 0;
        return confirmation;
    }

    // A request's answer (or its failure: frame null) to whoever waits for it.
    void answer(Waiting& waiting, const wire::Frame::Reader* frame, const Error* failure) {
        if (!waiting.sink) {
            waiting.generic(frame, failure);
        } else if (failure != nullptr) {
            waiting.sink->settled(nullptr, failure);
        } else if (frame->isError()) {
            const Error error = Error::broker(fromWire(frame->getError()));
            waiting.sink->settled(nullptr, &error);
        } else {
            const Confirmation confirmation = confirmationIn(*frame);
            waiting.sink->settled(&confirmation, nullptr);
        }
    }

    // --- frame builders (pure) ---

    static void fillDeclareExchange(wire::Frame::Builder f, const Topology::Exchange& x) {
        auto d = f.initDeclareExchange();
        d.setName(wireText(x.name));
        d.setType(toWire(x.type));
        d.setPassive(x.options.passive);
        d.setDurable(x.options.durable);
        d.setAutoDelete(x.options.autoDelete);
        d.setInternal(x.options.internal);
        toWire(x.options.arguments,
               d.initArguments(static_cast<unsigned>(x.options.arguments.size())));
    }

    static void fillDeclareQueue(wire::Frame::Builder f, const Topology::Queue& q) {
        auto d = f.initDeclareQueue();
        d.setName(wireText(q.serverNamed ? std::string() : q.name));
        d.setPassive(q.options.passive);
        d.setDurable(q.options.durable);
        d.setExclusive(q.options.exclusive);
        d.setAutoDelete(q.options.autoDelete);
        toWire(q.options.arguments,
               d.initArguments(static_cast<unsigned>(q.options.arguments.size())));
    }

    static void fillBinding(wire::Frame::Builder f, bool bind, const Topology::Binding& b) {
        auto w = bind ? f.initBind() : f.initUnbind();
        w.setSource(wireText(b.source));
        w.setDestination(wireText(b.destination));
        w.setToExchange(b.toExchange);
        w.setKey(wireText(b.key));
        toWire(b.arguments, w.initArguments(static_cast<unsigned>(b.arguments.size())));
    }

    static void fillConsume(wire::Frame::Builder f, const ConsumerRecord& c,
                            const std::string& tag) {
        auto w = f.initConsume();
        w.setQueue(wireText(c.queue));
        w.setConsumerTag(wireText(tag.empty() ? c.options.consumerTag : tag));
        w.setNoAck(c.options.noAck);
        w.setExclusive(c.options.exclusive);
        w.setPrefetchCount(c.options.prefetch);
    }

    // `owner` keeps `body` alive when it is sent from where it lives (a large body).
    static void fillPublish(capnp::MessageBuilder& builder, wire::Frame::Builder f,
                            std::string_view exchange, std::string_view routingKey,
                            const PublishOptions& options, const std::string& body,
                            const std::shared_ptr<const void>& owner, const void*& external,
                            std::shared_ptr<const void>& keepAlive) {
        auto w = f.initPublish();
        w.setExchange(wireText(exchange));
        w.setRoutingKey(wireText(routingKey));
        w.setMandatory(options.mandatory);
        toWire(options.properties, w.initProperties());
        external = protocol::setBody(builder, w, body);
        if (external != nullptr)
            keepAlive = owner;
    }

    static wire::ListKind toWireKind(ListKind kind) {
        switch (kind) {
        case ListKind::EXCHANGES:
            return wire::ListKind::EXCHANGES;
        case ListKind::QUEUES:
            return wire::ListKind::QUEUES;
        case ListKind::BINDINGS:
            return wire::ListKind::BINDINGS;
        case ListKind::CONNECTIONS:
            return wire::ListKind::CONNECTIONS;
        case ListKind::CONSUMERS:
            return wire::ListKind::CONSUMERS;
        }
        return wire::ListKind::QUEUES;
    }

    static std::string exchangeTypeText(wire::ExchangeType type) {
        return core::exchangeTypeName(fromWire(type));
    }

    static std::string argumentsText(capnp::List<wire::Field>::Reader fields) {
        std::string out;
        for (const auto& [name, value] : fromWire(fields)) {
            if (!out.empty())
                out += ",";
            out += name + "=" + core::fieldValueText(value);
        }
        return out;
    }

    static Listing toListing(wire::ListOk::Reader ok) {
        using V = core::FieldValue;
        auto n = [](std::uint64_t v) { return V(static_cast<std::int64_t>(v)); };
        Listing listing;
        switch (ok.which()) {
        case wire::ListOk::EXCHANGES:
            listing.columns = {"name", "type", "durable", "auto_delete", "internal", "arguments"};
            for (auto x : ok.getExchanges())
                listing.rows.push_back({V(text(x.getName())), V(exchangeTypeText(x.getType())),
                                        V(x.getDurable()), V(x.getAutoDelete()), V(x.getInternal()),
                                        V(argumentsText(x.getArguments()))});
            break;
        case wire::ListOk::QUEUES:
            listing.columns = {
                "name",    "messages_ready", "messages_unacked", "consumers", "ready_bytes",
                "durable", "exclusive",      "auto_delete",      "arguments", "messages_paged_out"};
            for (auto q : ok.getQueues())
                listing.rows.push_back(
                    {V(text(q.getName())), n(q.getReady()), n(q.getUnacked()), n(q.getConsumers()),
                     n(q.getReadyBytes()), V(q.getDurable()), V(q.getExclusive()),
                     V(q.getAutoDelete()), V(argumentsText(q.getArguments())), n(q.getPagedOut())});
            break;
        case wire::ListOk::BINDINGS:
            listing.columns = {"source", "destination", "destination_type", "routing_key",
                               "arguments"};
            for (auto b : ok.getBindings())
                listing.rows.push_back({V(text(b.getSource())), V(text(b.getDestination())),
                                        V(std::string(b.getToExchange() ? "exchange" : "queue")),
                                        V(text(b.getKey())), V(argumentsText(b.getArguments()))});
            break;
        case wire::ListOk::CONNECTIONS:
            listing.columns = {"name",        "client",    "user",       "vhost",
                               "connected_s", "frames_in", "frames_out", "unacked",
                               "consumers",   "blocked",   "flow"};
            for (auto c : ok.getConnections())
                listing.rows.push_back({V(text(c.getName())), V(text(c.getClientName())),
                                        V(text(c.getUsername())), V(text(c.getVhost())),
                                        n(c.getConnectedSeconds()), n(c.getFramesIn()),
                                        n(c.getFramesOut()), n(c.getUnacked()), n(c.getConsumers()),
                                        V(c.getBlocked()), V(c.getFlow())});
            break;
        case wire::ListOk::CONSUMERS:
            listing.columns = {"queue",     "consumer_tag", "connection", "ack_required",
                               "exclusive", "prefetch",     "unacked"};
            for (auto c : ok.getConsumers())
                listing.rows.push_back({V(text(c.getQueue())), V(text(c.getConsumerTag())),
                                        V(text(c.getConnection())), V(!c.getNoAck()),
                                        V(c.getExclusive()), n(c.getPrefetchCount()),
                                        n(c.getUnacked())});
            break;
        default:
            throw protocol::ProtocolError(core::ErrorCode::FRAME_ERROR, "unknown listing");
        }
        return listing;
    }

    // --- threads ---

public:
    // The shared_ptr's deleter (see openTcpConnection).
    static void destroy(TcpConnection* connection) {
        if (connection->onIoThread() || inInlineHandler())
            connection->dispatcher().post([connection] { delete connection; });
        else
            delete connection;
    }

private:
    bool onIoThread() const { return std::this_thread::get_id() == thread_.get_id(); }

    void stopThread() {
        if (!thread_.joinable())
            return;
        asio::post(io_, [this] {
            giveUp_ = true;
            linkDown("connection closed");
            if (ackLink_)
                ackLink_->detach();
            work_.reset();
            io_.stop();
        });
        if (onIoThread())
            thread_.detach(); // only from a handler during destruction: nothing left to join
        else
            thread_.join();
    }

    template <class F> void runOnIo(F fn) { asio::post(io_, std::move(fn)); }

    // Sends a request and returns at once; the future holds extract(answer) or the Error. With
    // `id`, the request's id is stored there (for a caller that may give up waiting).
    template <class T, class Extract>
    std::future<T> start(Fill fill, Extract extract, std::shared_ptr<std::uint64_t> id = nullptr) {
        if (closed_)
            throw Error(ErrorKind::CONNECTION_LOST, "the connection is closed");
        auto promise = std::make_shared<std::promise<T>>();
        std::future<T> future = promise->get_future();
        Callback done = [promise, extract](const wire::Frame::Reader* frame,
                                           const Error* failure) mutable {
            try {
                if (failure != nullptr)
                    throw *failure;
                if (frame->isError())
                    throw Error::broker(fromWire(frame->getError()));
                promise->set_value(extract(*frame));
            } catch (...) {
                promise->set_exception(std::current_exception());
            }
        };
        const std::uint64_t sent = startRequest(fill, Waiting{std::move(done), {}});
        if (id)
            *id = sent;
        return future;
    }

    // Registered and written from the caller's thread: a request alone in flight (an RPC, a
    // confirm waited for) leaves at once when the socket is idle (appendFrame's urgent write),
    // without waking the io thread first. Requests behind others already in flight (a window of
    // confirms) gain nothing from that, since their answers queue behind the others': they go
    // with the io thread's next batched write, many per system call. Not connected: `done` is
    // told at once. Returns the request's id. A `quiet` request (a publish with refusalsOnly)
    // gets no answer unless refused: it waits apart, until forgetRequestPublish, so that it
    // neither holds up the removal of answered entries nor counts as a request in flight.
    template <class F> std::uint64_t startRequest(F&& fill, Waiting done, bool quiet = false) {
        std::uint64_t sent = 0;
        bool alone = false;
        {
            std::lock_guard lock(pendingMutex_);
            sent = nextRequestId_++;
            alone = pending_.empty();
            if (quiet)
                quiet_.emplace(sent, std::move(done));
            else
                pending_.add(sent, std::move(done));
        }
        if (!appendFrame(sent, std::forward<F>(fill), {.urgent = alone && !onIoThread()})) {
            // Not connected (or reconnecting): fail now, unless linkDown already did.
            if (std::optional<Waiting> failed = takePending(sent)) {
                std::string reason;
                {
                    std::lock_guard lock(outMutex_);
                    reason = outDownReason_;
                }
                const Error lost(ErrorKind::CONNECTION_LOST,
                                 "not connected to " + url_.redacted() + ": " + reason);
                answer(*failed, nullptr, &lost);
            }
        }
        return sent;
    }

    // What waits for request `id`, removed; nullopt if nothing does (answered or failed).
    std::optional<Waiting> takePending(std::uint64_t id) {
        std::lock_guard lock(pendingMutex_);
        if (!quiet_.empty())
            if (auto it = quiet_.find(id); it != quiet_.end()) {
                std::optional<Waiting> taken = std::move(it->second);
                quiet_.erase(it);
                return taken;
            }
        return pending_.take(id);
    }

    // Sends a request on the io thread and blocks the caller until `extract` has read the answer.
    template <class T, class Extract> T call(Fill fill, Extract extract) {
        refuseInInlineHandler();
        if (onIoThread())
            throw Error(ErrorKind::INVALID_ARGUMENT,
                        "blocking call on the connection's network thread");
        auto id = std::make_shared<std::uint64_t>(0);
        std::future<T> future = start<T>(std::move(fill), std::move(extract), id);
        if (future.wait_for(options_.requestTimeout) != std::future_status::ready) {
            (void)takePending(*id);
            throw Error(ErrorKind::TIMEOUT, "no answer from " + url_.redacted() + " in " +
                                                std::to_string(options_.requestTimeout.count()) +
                                                " ms");
        }
        return future.get();
    }

    void binding(bool bind, Topology::Binding b) {
        call<bool>([bind, b](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                             std::shared_ptr<const void>&) { fillBinding(f, bind, b); },
                   [](wire::Frame::Reader) { return true; });
        runOnIo([this, bind, b] {
            if (bind)
                topology_.bound(b);
            else
                topology_.unbound(b);
        });
    }

    // --- io thread: the link ---

    void connect() {
        link_ = Link::CONNECTING;
        auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
        resolver->async_resolve(
            url_.host, std::to_string(url_.port),
            [this, resolver](const asio::error_code& error,
                             asio::ip::tcp::resolver::results_type results) {
                if (error) {
                    connectFailed("cannot resolve " + url_.host + ": " + error.message());
                    return;
                }
                asio::async_connect(
                    socket_, results,
                    [this](const asio::error_code& e, const asio::ip::tcp::endpoint&) {
                        if (e) {
                            connectFailed("cannot connect to " + url_.redacted() + ": " +
                                          e.message());
                            return;
                        }
                        onConnected();
                    });
            });
    }

    void connectFailed(const std::string& why) {
        asio::error_code ignored;
        socket_.close(ignored);
        link_ = Link::DOWN;
        downReason_ = why;
        if (connectPromise_) {
            connectPromise_->set_exception(
                std::make_exception_ptr(Error(ErrorKind::CONNECTION_LOST, why)));
            connectPromise_.reset();
            return;
        }
        scheduleReconnect();
    }

    void onConnected() {
        asio::error_code ignored;
        socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
        reader_ = protocol::FrameReader(protocol::DEFAULT_MAX_FRAME_BYTES);
        {
            std::lock_guard lock(outMutex_);
            outbox_ = protocol::Outbox();
            ++outEpoch_;
            acks_.reset();
            flushPosted_ = false;
        }
        lastRead_ = lastWrite_ = SteadyClock::now();
        ackLink_ = std::make_shared<AckLink>(this);
        readMore();
        request(
            [this](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                   std::shared_ptr<const void>&) {
                auto h = f.initHello();
                h.setProtocolVersion(wire::PROTOCOL_VERSION);
                h.setClientName(wireText(options_.clientName));
                h.setUsername(wireText(url_.username));
                h.setPassword(wireText(url_.password));
                h.setVhost(wireText(url_.vhost));
                h.setHeartbeatSeconds(options_.heartbeatSeconds);
            },
            [this](const wire::Frame::Reader* frame, const Error* failure) {
                if (failure != nullptr || frame->isError()) {
                    const Error error =
                        failure != nullptr ? *failure : Error::broker(fromWire(frame->getError()));
                    if (connectPromise_) {
                        giveUp_ = true; // refused credentials will not get better by retrying
                        connectPromise_->set_exception(std::make_exception_ptr(error));
                        connectPromise_.reset();
                    }
                    linkDown(error.what());
                    return;
                }
                heartbeat_ = std::chrono::seconds(frame->getHelloOk().getHeartbeatSeconds());
                reader_.setMaxFrameBytes(std::max<std::size_t>(
                    protocol::DEFAULT_MAX_FRAME_BYTES, frame->getHelloOk().getMaxFrameBytes()));
                link_ = Link::OPEN;
                backoff_ = FIRST_BACKOFF;
                armTimer();
                // Other threads may append (publishes, acks) from here on: before open()
                // returns, and after a reconnect only once recovery has queued its frames, so
                // that nothing overtakes the topology it declares again.
                if (connectPromise_) {
                    openForOthers();
                    connectPromise_->set_value();
                    connectPromise_.reset();
                } else {
                    recover();
                    openForOthers();
                }
            },
            /*beforeOpen=*/true);
    }

    // After a reconnect: declare again what this connection declared, then restart its
    // consumers under their old tags, in that order (frames are handled in order).
    void recover() {
        auto logFailure = [this](const std::string& what) {
            return [this, what](const wire::Frame::Reader* frame, const Error* failure) {
                if (failure == nullptr && frame != nullptr && frame->isError())
                    notifyError(
                        Error(ErrorKind::BROKER,
                              "recovery: " + what + ": " + fromWire(frame->getError()).describe()));
            };
        };
        for (const Topology::Exchange& x : topology_.exchanges)
            request([x](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                        std::shared_ptr<const void>&) { fillDeclareExchange(f, x); },
                    logFailure("declare exchange '" + x.name + "'"));
        for (const Topology::Queue& q : topology_.queues) {
            const std::string oldName = q.name;
            request([q](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                        std::shared_ptr<const void>&) { fillDeclareQueue(f, q); },
                    [this, oldName, serverNamed = q.serverNamed,
                     log = logFailure("declare queue '" + q.name + "'")](
                        const wire::Frame::Reader* frame, const Error* failure) {
                        log(frame, failure);
                        if (failure != nullptr || frame->isError() || !serverNamed)
                            return;
                        const std::string newName = text(frame->getDeclareQueueOk().getName());
                        topology_.queueRenamed(oldName, newName);
                        for (auto& [tag, consumer] : consumers_)
                            if (consumer->queue == oldName)
                                consumer->queue = newName;
                    });
        }
        // Bindings and consumers go after every declare has been answered: a server-named
        // queue's new name is known only then.
        request([](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                   std::shared_ptr<const void>&) { f.setRecover(); },
                [this, logFailure](const wire::Frame::Reader*, const Error* failure) {
                    if (failure != nullptr)
                        return;
                    for (const Topology::Binding& b : topology_.bindings)
                        request([b](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                    std::shared_ptr<const void>&) { fillBinding(f, true, b); },
                                logFailure("bind '" + b.destination + "' to '" + b.source + "'"));
                    for (const auto& [tag, consumer] : consumers_) {
                        const std::string t = tag;
                        const ConsumerRecord c = *consumer;
                        request([t, c](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                       std::shared_ptr<const void>&) { fillConsume(f, c, t); },
                                logFailure("consume '" + c.queue + "'"));
                    }
                    notifyEvent(ConnectionEvent::RECONNECTED);
                });
    }

    // Sends a frame with a fresh request id and remembers what to do with the answer.
    std::uint64_t request(Fill fill, Callback callback, bool beforeOpen = false) {
        if (link_ != Link::OPEN && !beforeOpen) {
            const Error lost(ErrorKind::CONNECTION_LOST, "not connected: " + downReason_);
            callback(nullptr, &lost);
            return 0;
        }
        std::uint64_t id = 0;
        {
            std::lock_guard lock(pendingMutex_);
            id = nextRequestId_++;
            pending_.add(id, Waiting{std::move(callback), {}});
        }
        sendFrame(id, fill);
        return id;
    }

    void openForOthers() {
        std::lock_guard lock(outMutex_);
        outOpen_ = true;
    }

    // On the io thread: any frame, while the link is being opened too.
    template <class F> void sendFrame(std::uint64_t requestId, F&& fill) {
        (void)appendFrame(requestId, std::forward<F>(fill), {.force = true});
    }

    // From any thread: encodes the frame (outside the lock, on a scratch segment of the calling
    // thread) and appends it to the outbox. The io thread is woken only when no flush is
    // already on its way and no write is in progress (it flushes again when that write
    // completes), so frames from a busy publisher or consumer go out in batches, many per
    // system call. Other threads may append only while the link is open (`outOpen_`); returns
    // false when the frame was dropped for that reason.
    struct Append {
        bool force = false;       // on the io thread: also while the link is being opened
        bool urgent = false;      // written from this thread at once when the socket is idle
        bool waitForRoom = false; // a publish: first waits while the backlog is at its limit
    };
    template <class F> bool appendFrame(std::uint64_t requestId, F&& fill, Append how) {
        thread_local const std::unique_ptr<capnp::word[]> scratch =
            std::make_unique<capnp::word[]>(SCRATCH_WORDS);
        const void* external = nullptr;
        std::shared_ptr<const void> keepAlive;
        // The scratch segment is zeroed again by the builder's destructor, ready for reuse.
        capnp::MallocMessageBuilder builder(
            kj::ArrayPtr<capnp::word>(scratch.get(), SCRATCH_WORDS));
        wire::Frame::Builder frame = builder.initRoot<wire::Frame>();
        frame.setRequestId(requestId);
        fill(builder, frame, external, keepAlive);
        bool wake = false;
        {
            std::unique_lock lock(outMutex_);
            // No timeout: while the broker has blocked us (memory alarm) a publisher waits, as
            // with RabbitMQ's connection.blocked. A lost link empties the backlog and wakes it.
            if (how.waitForRoom && !onIoThread())
                room_.wait(lock, [this] {
                    return outbox_.bufferedBytes() < PUBLISH_BACKLOG_LIMIT || closed_;
                });
            if (!outOpen_ && !how.force)
                return false;
            appendPendingAckLocked();
            outbox_.append(builder, external, std::move(keepAlive));
            if (how.urgent && outOpen_ && !flushPosted_ && !outbox_.writing())
                writeNowLocked();
            else
                wake = wantFlushLocked();
        }
        if (wake)
            asio::post(io_, [this] { flush(); });
        return true;
    }

    // With outMutex_ held, the link open and nothing being written: writes what is pending
    // with one non-blocking sendmsg from the calling thread, sparing the round trip's sender
    // the wake-up of the io thread (requests and replies: RPC, confirms). What the socket does
    // not take at once (or an error) is left to the io thread, which finishes the write.
    void writeNowLocked() {
        const auto& ranges = outbox_.startWrite();
        std::size_t written = 0;
        if (ranges.size() <= MAX_INLINE_RANGES) {
            iovec parts[MAX_INLINE_RANGES];
            std::size_t total = 0;
            for (std::size_t i = 0; i < ranges.size(); ++i) {
                parts[i].iov_base = const_cast<std::byte*>(ranges[i].data());
                parts[i].iov_len = ranges[i].size();
                total += ranges[i].size();
            }
            msghdr message{};
            message.msg_iov = parts;
            message.msg_iovlen = ranges.size();
            const ssize_t n =
                ::sendmsg(socket_.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                written = static_cast<std::size_t>(n);
            if (written == total) {
                outbox_.finishWrite();
                room_.notify_all();
                return;
            }
        }
        // The rest, by the io thread (it also sees an error there and takes the link down).
        std::vector<asio::const_buffer> rest;
        for (const auto& range : ranges) {
            if (written >= range.size()) {
                written -= range.size();
                continue;
            }
            rest.push_back(asio::const_buffer(range.data(), range.size()) + written);
            written = 0;
        }
        asio::post(io_, [this, epoch = outEpoch_, rest = std::move(rest)] {
            {
                std::lock_guard lock(outMutex_);
                if (epoch != outEpoch_)
                    return; // that outbox is gone with its link
            }
            writeAsync(rest);
        });
    }

    enum class Settle { ACK, NACK, REJECT };

    // An ack, nack or reject from the application, from any thread (through the AckLink).
    void settle(Settle kind, std::uint64_t tag, bool multiple, bool requeue) {
        bool wake = false;
        {
            std::lock_guard lock(outMutex_);
            if (!outOpen_)
                return;
            if (kind == Settle::ACK && acks_.ack(tag, multiple)) {
                // The pending multiple ack goes with the next write. A handler's ack waits
                // for the end of the dispatcher's batch (its idle hook), or for ACK_BATCH
                // more, and is then written from this thread: no wake-up of the io thread,
                // and one ack frame for the batch.
                if (!dispatcher().onDispatcherThread())
                    wake = wantFlushLocked();
                else if (++deferredAcks_ >= ACK_BATCH)
                    writeAcksNowLocked();
            } else {
                if (kind != Settle::ACK)
                    acks_.settledOtherwise(tag, multiple);
                appendPendingAckLocked();
                appendSmallLocked([&](wire::Frame::Builder f) {
                    switch (kind) {
                    case Settle::ACK: {
                        auto a = f.initAck();
                        a.setDeliveryTag(tag);
                        a.setMultiple(multiple);
                        break;
                    }
                    case Settle::NACK: {
                        auto n = f.initNack();
                        n.setDeliveryTag(tag);
                        n.setMultiple(multiple);
                        n.setRequeue(requeue);
                        break;
                    }
                    case Settle::REJECT: {
                        auto r = f.initReject();
                        r.setDeliveryTag(tag);
                        r.setRequeue(requeue);
                        break;
                    }
                    }
                });
                wake = wantFlushLocked();
            }
        }
        if (wake)
            asio::post(io_, [this] { flush(); });
    }

    // With outMutex_ held: whether the caller must post a flush (none posted, none writing).
    bool wantFlushLocked() {
        if (flushPosted_ || outbox_.writing())
            return false;
        flushPosted_ = true;
        return true;
    }

    // With outMutex_ held: a small frame (an ack, nack or reject), built on the stack.
    template <class F> void appendSmallLocked(F&& fill) {
        capnp::word scratch[32] = {};
        capnp::MallocMessageBuilder builder(kj::ArrayPtr<capnp::word>(scratch, 32));
        wire::Frame::Builder frame = builder.initRoot<wire::Frame>();
        frame.setRequestId(0);
        fill(frame);
        outbox_.append(builder);
    }

    // With outMutex_ held: the coalesced ack, if any, written from this thread when the socket
    // is idle; else it goes with the write in progress's successor (or the posted flush).
    void writeAcksNowLocked() {
        if (!acks_.hasPending() || !outOpen_)
            return;
        appendPendingAckLocked();
        if (!flushPosted_ && !outbox_.writing())
            writeNowLocked();
    }

    // With outMutex_ held: the coalesced "ack multiple", if one is pending, into the outbox.
    void appendPendingAckLocked() {
        deferredAcks_ = 0;
        if (const std::uint64_t tag = acks_.takePending())
            appendSmallLocked([tag](wire::Frame::Builder f) {
                auto a = f.initAck();
                a.setDeliveryTag(tag);
                a.setMultiple(true);
            });
    }

    void flush() {
        std::vector<asio::const_buffer> buffers;
        {
            std::lock_guard lock(outMutex_);
            flushPosted_ = false;
            if (link_ == Link::DOWN || outbox_.writing())
                return;
            appendPendingAckLocked();
            if (!outbox_.hasPending())
                return;
            // The batch in flight is touched by nobody else until finishWrite.
            for (const auto& range : outbox_.startWrite())
                buffers.emplace_back(range.data(), range.size());
        }
        writeAsync(buffers);
    }

    // On the io thread: writes the batch in flight; when done, the next one.
    void writeAsync(const std::vector<asio::const_buffer>& buffers) {
        asio::async_write(
            socket_, buffers,
            [this, generation = generation_](const asio::error_code& error, std::size_t) {
                if (generation != generation_)
                    return; // a write of a link that is gone
                bool more = false;
                {
                    std::lock_guard lock(outMutex_);
                    outbox_.finishWrite();
                    more = outbox_.hasPending() || acks_.hasPending();
                }
                room_.notify_all();
                if (error) {
                    linkDown("write failed: " + error.message());
                    return;
                }
                lastWrite_ = SteadyClock::now();
                if (more)
                    flush();
            });
    }

    void readMore() {
        const std::span<std::byte> room = reader_.writable();
        socket_.async_read_some(
            asio::buffer(room.data(), room.size()),
            [this, generation = generation_](const asio::error_code& error, std::size_t bytes) {
                if (generation != generation_)
                    return;
                if (error) {
                    linkDown(error == asio::error::eof ? "the broker closed the connection"
                                                       : error.message());
                    return;
                }
                lastRead_ = SteadyClock::now();
                reader_.commit(bytes);
                Dispatcher::Batch batch(dispatcher()); // one wake-up for this read's deliveries
                std::optional<capnp::FlatArrayMessageReader> frame;
                std::string problem;
                while (generation == generation_) {
                    const auto status = reader_.next(frame, problem);
                    if (status == protocol::FrameReader::Status::NEED_MORE)
                        break;
                    if (status == protocol::FrameReader::Status::ERROR) {
                        linkDown("bad frame from the broker: " + problem);
                        return;
                    }
                    try {
                        handleFrame(frame->getRoot<wire::Frame>());
                    } catch (const kj::Exception& e) {
                        linkDown(std::string("malformed frame from the broker: ") +
                                 e.getDescription().cStr());
                        return;
                    } catch (const protocol::ProtocolError& e) {
                        linkDown(std::string("bad frame from the broker: ") + e.what());
                        return;
                    }
                }
                frame.reset();
                if (generation == generation_)
                    readMore();
            });
    }

    void handleFrame(wire::Frame::Reader frame) {
        const std::uint64_t requestId = frame.getRequestId();
        switch (frame.which()) {
        case wire::Frame::HEARTBEAT:
            return;
        case wire::Frame::DELIVER: {
            const auto d = frame.getDeliver();
            auto it = consumers_.find(view(d.getConsumerTag()));
            if (it == consumers_.end()) {
                // Sent before the broker saw our cancel, or for a consumer whose consume timed
                // out here (its consumeOk came late): give it back to the queue now rather than
                // hold it unacked, where a later coalesced "ack multiple" would take it too. A
                // consumer nobody knows is cancelled as well. (Were it a no-ack consumer, the
                // broker refuses the reject, which onError shows; nothing is lost.)
                const std::string tag = text(d.getConsumerTag());
                auto cancelled = cancelledNeedAck_.find(tag);
                if (cancelled == cancelledNeedAck_.end()) {
                    cancelled = cancelledNeedAck_.emplace(tag, true).first;
                    request([tag](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                  std::shared_ptr<const void>&) { f.setCancel(wireText(tag)); },
                            [](const wire::Frame::Reader*, const Error*) {});
                }
                if (cancelled->second)
                    rejectUntracked(d.getMessage().getDeliveryTag());
                return;
            }
            // The handler fills a Delivery and posts it on, or (inline) runs the application's
            // handler, which cannot change consumers_ either: consume() is refused there, and a
            // cancel reaches this thread as a task of its own.
            const ConsumerRecord& consumer = *it->second;
            const bool needsAck = !consumer.options.noAck;
            consumer.handler(
                [&](Delivery& out) { fillDelivery(out, it->first, d.getMessage(), needsAck); });
            return;
        }
        case wire::Frame::RETURNED: {
            const auto r = frame.getReturned();
            if (r.getRequestId() != 0)
                returnedIds_.insert(r.getRequestId());
            notifyReturn(ReturnedMessage{
                text(r.getExchange()), text(r.getRoutingKey()), fromWire(r.getProperties()),
                std::string(reinterpret_cast<const char*>(r.getBody().begin()),
                            r.getBody().size())});
            return;
        }
        case wire::Frame::CANCELLED:
            consumers_.erase(text(frame.getCancelled()));
            return;
        case wire::Frame::BLOCKED:
            notifyEvent(ConnectionEvent::BLOCKED);
            return;
        case wire::Frame::UNBLOCKED:
            notifyEvent(ConnectionEvent::UNBLOCKED);
            return;
        case wire::Frame::CLOSE:
            sendFrame(0, [](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                            std::shared_ptr<const void>&) { f.setCloseOk(); });
            closingByBroker_ = text(frame.getClose().getReason());
            return;
        default:
            break;
        }
        if (requestId != 0) {
            if (std::optional<Waiting> waiting = takePending(requestId)) {
                answer(*waiting, &frame, nullptr);
                return;
            }
        }
        if (frame.isError()) {
            const auto e = frame.getError();
            notifyError(Error::broker(fromWire(e)));
            if (e.getFatal())
                closingByBroker_ = text(e.getMessage()); // the reason linkDown will give
        }
        // Anything else unasked for (a late answer after a timeout) is dropped; a message a
        // late getOk carries goes back to its queue (see rejectUntracked).
        if (frame.isGetOk() && !frame.getGetOk().isEmpty())
            rejectUntracked(frame.getGetOk().getMessage().getDeliveryTag());
    }

    // A delivery nobody will see: rejected back to its queue at once, before any later ack
    // (a coalesced ack multiple must not cover it).
    void rejectUntracked(std::uint64_t deliveryTag) {
        sendFrame(0, [deliveryTag](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                   std::shared_ptr<const void>&) {
            auto r = f.initReject();
            r.setDeliveryTag(deliveryTag);
            r.setRequeue(true);
        });
    }

    // Filled in place: one pass from the frame into the Delivery's own strings.
    Delivery toDelivery(std::string_view consumerTag, wire::Message::Reader m, bool needsAck) {
        Delivery delivery;
        fillDelivery(delivery, consumerTag, m, needsAck);
        return delivery; // NRVO: built where the caller wants it
    }

    // Sets every field of `delivery`, which may hold an earlier one: assigning keeps the
    // capacity of its strings.
    void fillDelivery(Delivery& delivery, std::string_view consumerTag, wire::Message::Reader m,
                      bool needsAck) {
        if (needsAck) {
            // First: should reading the rest fail (a get's failure leaves the link up), the
            // tag is tracked, so no later "ack multiple" settles a message nobody saw.
            std::lock_guard lock(outMutex_);
            acks_.delivered(m.getDeliveryTag());
        }
        DeliveryFields fields(delivery);
        fields.head(ackLink_, m.getDeliveryTag(), m.getRedelivered(), needsAck);
        fields.consumerTag() = consumerTag;
        fields.exchange() = view(m.getExchange());
        fields.routingKey() = view(m.getRoutingKey());
        protocol::readProperties(m.getProperties(), fields.properties());
        if (m.hasDeaths())
            fields.deaths() = fromWire(m.getDeaths());
        else
            fields.deaths().clear();
        const auto body = m.getBody();
        fields.body().assign(reinterpret_cast<const char*>(body.begin()), body.size());
    }

    void linkDown(const std::string& why) {
        if (link_ == Link::DOWN && !socket_.is_open())
            return;
        const bool wasOpen = link_ == Link::OPEN;
        link_ = Link::DOWN;
        ++generation_;
        downReason_ = closingByBroker_.empty() ? why : closingByBroker_ + " (" + why + ")";
        closingByBroker_.clear();
        if (ackLink_) {
            ackLink_->detach();
            ackLink_.reset();
        }
        {
            // Closed under the lock: another thread's urgent write uses the socket only while
            // it holds the lock and the link is open.
            std::lock_guard lock(outMutex_);
            outOpen_ = false;
            outDownReason_ = downReason_;
            outbox_ = protocol::Outbox();
            ++outEpoch_;
            flushPosted_ = false;
            asio::error_code ignored;
            socket_.close(ignored);
        }
        timer_.cancel();
        room_.notify_all();
        returnedIds_.clear();
        cancelledNeedAck_.clear();
        std::vector<Waiting> pending;
        {
            std::lock_guard lock(pendingMutex_);
            pending = pending_.takeAll();
            for (auto& [id, waiting] : quiet_)
                pending.push_back(std::move(waiting));
            quiet_.clear();
        }
        const Error lost(ErrorKind::CONNECTION_LOST, "connection lost: " + downReason_);
        for (Waiting& waiting : pending) // in the order they were sent (quiet ones last)
            answer(waiting, nullptr, &lost);
        resetRequests(lost); // RPC calls in flight; the next request() makes a new reply queue
        if (wasOpen && !giveUp_)
            notifyEvent(ConnectionEvent::DISCONNECTED);
        if (!giveUp_ && options_.reconnect && !connectPromise_)
            scheduleReconnect();
    }

    void scheduleReconnect() {
        if (giveUp_ || !options_.reconnect || reconnectScheduled_)
            return;
        reconnectScheduled_ = true;
        timer_.expires_after(backoff_);
        backoff_ = std::min(backoff_ * 2, options_.maxBackoff);
        timer_.async_wait([this](const asio::error_code& error) {
            reconnectScheduled_ = false;
            if (error || giveUp_)
                return;
            socket_ = asio::ip::tcp::socket(io_);
            connect();
        });
    }

    void armTimer() {
        if (heartbeat_.count() == 0)
            return;
        const auto tick = std::max<std::chrono::milliseconds>(
            std::chrono::milliseconds(250),
            std::chrono::duration_cast<std::chrono::milliseconds>(heartbeat_) / 4);
        timer_.expires_after(tick);
        timer_.async_wait([this, generation = generation_](const asio::error_code& error) {
            if (error || generation != generation_ || link_ != Link::OPEN)
                return;
            const auto now = SteadyClock::now();
            if (now - lastRead_ >= 2 * heartbeat_) {
                linkDown("missed heartbeats from the broker");
                return;
            }
            if (now - lastWrite_ >= heartbeat_) {
                lastWrite_ = now;
                sendFrame(0, [](capnp::MessageBuilder&, wire::Frame::Builder f, const void*&,
                                std::shared_ptr<const void>&) { f.setHeartbeat(); });
            }
            armTimer();
        });
    }

    const BrokerUrl url_;
    const ConnectionOptions options_;
    std::atomic<bool> closed_{false};

    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::thread thread_;

    // Everything below is touched on the io thread only.
    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    protocol::FrameReader reader_;
    Link link_ = Link::DOWN;
    std::uint64_t generation_ = 0; // bumped when a link goes down: late callbacks see it
    std::string downReason_ = "not connected yet";
    std::string closingByBroker_;
    bool giveUp_ = false;
    bool reconnectScheduled_ = false;
    std::chrono::milliseconds backoff_{FIRST_BACKOFF};
    std::shared_ptr<std::promise<void>> connectPromise_;
    std::shared_ptr<AckLink> ackLink_;
    std::mutex pendingMutex_; // requests are registered from any thread (start)
    std::uint64_t nextRequestId_ = 1;
    PendingRequests<Waiting> pending_;
    std::map<std::uint64_t, Waiting> quiet_; // startRequest's quiet ones: RPC requests in flight
    std::set<std::uint64_t> returnedIds_;
    std::map<std::string, std::shared_ptr<ConsumerRecord>, std::less<>> consumers_;
    // Consumers cancelled on this link, and whether their deliveries need an ack: deliveries
    // still in flight for them are rejected back to the queue. Cleared when the link goes.
    std::map<std::string, bool> cancelledNeedAck_;
    Topology topology_;
    SteadyClock::time_point lastRead_;
    SteadyClock::time_point lastWrite_;
    std::chrono::seconds heartbeat_{0};

    // The outbox is shared: any thread appends (appendFrame), the io thread writes.
    std::mutex outMutex_;
    std::condition_variable room_; // a write completed, or the link went: publishers may go on
    protocol::Outbox outbox_;
    AckCoalescer acks_;            // this link's deliveries that need an ack
    std::size_t deferredAcks_ = 0; // handlers' acks absorbed into acks_ since it was last sent
    std::uint64_t outEpoch_ = 0;   // bumped when the outbox is replaced (a link comes or goes)
    std::string outDownReason_;    // why the link went down, for other threads' errors
    bool flushPosted_ = false;
    bool outOpen_ = false; // others may append: the link is open and recovery is queued
};

// From the acking thread (the dispatcher's, usually): many acks share a write, and acks in
// delivery order share a frame (AckCoalescer). detach() happens before the link's outbox is
// dropped, so an ack of an old link goes nowhere: after a reconnect the same tags mean other
// messages.
void AckLink::ack(std::uint64_t tag, bool multiple) {
    std::lock_guard lock(mutex_);
    if (owner_ != nullptr)
        owner_->settle(TcpConnection::Settle::ACK, tag, multiple, false);
}

void AckLink::nack(std::uint64_t tag, bool multiple, bool requeue) {
    std::lock_guard lock(mutex_);
    if (owner_ != nullptr)
        owner_->settle(TcpConnection::Settle::NACK, tag, multiple, requeue);
}

void AckLink::reject(std::uint64_t tag, bool requeue) {
    std::lock_guard lock(mutex_);
    if (owner_ != nullptr)
        owner_->settle(TcpConnection::Settle::REJECT, tag, false, requeue);
}

} // namespace

std::shared_ptr<Connection> openTcpConnection(const BrokerUrl& url,
                                              const ConnectionOptions& options) {
    // Never destroyed in an inline handler: one on this connection's io thread may drop the last
    // reference, and the read in progress there still uses the connection after the handler
    // returns; one of another connection's would wait for this one's close and threads. Its
    // dispatcher thread destroys it then, as when a dispatched handler drops it.
    std::shared_ptr<TcpConnection> connection(new TcpConnection(url, options),
                                              [](TcpConnection* c) { TcpConnection::destroy(c); });
    connection->start();
    return connection;
}

} // namespace depot::client
