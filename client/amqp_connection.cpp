#include "client/amqp_connection.h"

#include "client/ack_coalescer.h"
#include "client/amqp_codec.h"
#include "client/amqp_frames.h"
#include "client/dispatcher.h"
#include "client/inline_handler.h"
#include "client/topology.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

// rabbitmq-c is blocking and not thread-safe: one mutex guards the connection state, and every
// call runs on the caller's thread under it. A reader thread waits for the socket outside the
// mutex and, holding it, takes in what arrived: deliveries, publisher confirms, returns, and
// channel closes the broker sends on its own.
//
// Publishes do not go through rabbitmq-c's send (three system calls per message, one per
// frame): their frames (amqp_frames.h) gather in a buffer that goes out in one write, from the
// reader thread (woken for it) or from the publisher once the buffer holds PUBLISH_FLUSH_BYTES.
// A publish someone waits for (alone in flight with a confirm, or a reply to an RPC) is written
// at once from the caller's thread. Everything else the connection sends first writes the
// buffered publishes, so the broker sees them in the order the application made them.
//
// Three channels, so that a refusal closes only the channel it concerns:
//   CONTROL  declares, deletes, binds, purge and get; a refused request closes it, and it is
//            opened again at once (a get's unacked message goes back to its queue then);
//   PUBLISH  publishes, in confirm mode from the first publish that asks for a confirm (until
//            then RabbitMQ spares itself the confirms: a publisher that never asks goes about
//            60 % faster); a publish to a missing exchange closes it, is reported to onError,
//            and fails the confirms still pending on it;
//   CONSUME  consumers and their acks: before basic.consume a passive declare on CONTROL turns a
//            missing or locked queue into an error that leaves the other consumers running.
// A delivery's ack goes to the channel it came from, and only while that channel is the one it
// came from (a generation per channel): after a reopen the broker has requeued it already.

namespace depot::client {
namespace {

using namespace std::chrono_literals;
using amqp::bytes;
using amqp::text;

constexpr amqp_channel_t CONTROL = 1;
constexpr amqp_channel_t PUBLISH = 2;
constexpr amqp_channel_t CONSUME = 3;
constexpr int FRAME_MAX = 131072;            // RabbitMQ's default
constexpr std::size_t FRAMES_PER_TURN = 256; // then the reader lets callers have the mutex
// Buffered publishes past this are written by the publishing thread itself.
constexpr std::size_t PUBLISH_FLUSH_BYTES = 64 * 1024;
constexpr std::chrono::milliseconds FIRST_BACKOFF{100};

timeval toTimeval(std::chrono::milliseconds ms) {
    return timeval{static_cast<time_t>(ms.count() / 1000),
                   static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

enum class Settle { ACK, NACK, REJECT };

class AmqpConnection;

// Where a delivery's ack goes: one channel in one generation. Holds the connection weakly, so
// that an ack after the connection is gone does nothing.
class AmqpAckLink final : public AckTarget {
public:
    AmqpAckLink(std::weak_ptr<Connection> owner, amqp_channel_t channel, std::uint64_t generation)
        : owner_(std::move(owner)), channel_(channel), generation_(generation) {}
    void ack(std::uint64_t tag, bool multiple) override { send(Settle::ACK, tag, multiple, false); }
    void nack(std::uint64_t tag, bool multiple, bool requeue) override {
        send(Settle::NACK, tag, multiple, requeue);
    }
    void reject(std::uint64_t tag, bool requeue) override {
        send(Settle::REJECT, tag, false, requeue);
    }

private:
    void send(Settle how, std::uint64_t tag, bool multiple, bool requeue);
    std::weak_ptr<Connection> owner_;
    amqp_channel_t channel_;
    std::uint64_t generation_;
};

class AmqpConnection final : public Connection {
public:
    AmqpConnection(BrokerUrl url, ConnectionOptions options)
        : url_(std::move(url)), options_(std::move(options)),
          wakeFd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        if (wakeFd_ < 0)
            throw Error(ErrorKind::CONNECTION_LOST, "eventfd failed: " + std::to_string(errno));
        // Acks that handlers made in a batch leave when the batch is done (see settle).
        dispatcher().onIdle([this] {
            std::lock_guard lock(mutex_);
            flushAcksLocked();
        });
    }

    ~AmqpConnection() override {
        {
            // Allowed from an inline handler that dropped the last reference: closing waits
            // for RabbitMQ, but on the dispatcher thread, where that handler runs.
            const InlineHandlerScope allowed(false);
            close();
        }
        stopReader();
        shutdownDispatcher();
        ::close(wakeFd_);
    }

    void start() {
        {
            std::lock_guard lock(mutex_);
            connectLocked(); // throws: nothing to undo, the reader is not running yet
        }
        reader_ = std::thread([this] { readLoop(); });
    }

    // --- the Connection API ---

    void close() override {
        refuseInInlineHandler();
        if (closed_.exchange(true))
            return;
        {
            std::lock_guard lock(mutex_);
            flushAcksLocked(); // acks held for the end of a batch (the publishes made before
                               // them go first): the broker would requeue
            if (conn_ != nullptr) {
                // A broker that does not answer the close costs 2 s, not a request timeout.
                timeval closeTimeout = toTimeval(std::min<std::chrono::milliseconds>(
                    options_.requestTimeout, std::chrono::milliseconds(2'000)));
                (void)amqp_set_rpc_timeout(conn_, &closeTimeout);
                (void)amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
                linkDownLocked("closed by the application", /*tell=*/false);
            }
        }
        wake();
        if (std::this_thread::get_id() != reader_.get_id())
            stopReader();
        notifyEvent(ConnectionEvent::CLOSED);
    }

    void declareExchange(std::string_view name, ExchangeType type,
                         const ExchangeDeclareOptions& options) override {
        Topology::Exchange record{std::string(name), type, options};
        locked([&] {
            declareExchangeLocked(record);
            topology_.declared(record);
            return 0;
        });
    }

    void deleteExchange(std::string_view name, bool ifUnused) override {
        const std::string n(name);
        locked([&] {
            amqp_exchange_delete(conn_, CONTROL, bytes(n), ifUnused);
            check(amqp_get_rpc_reply(conn_), CONTROL);
            topology_.exchangeDeleted(n);
            return 0;
        });
    }

    QueueDeclared declareQueue(std::string_view name, const QueueDeclareOptions& options) override {
        Topology::Queue record{std::string(name), name.empty(), options};
        return locked([&] {
            QueueDeclared declared = declareQueueLocked(record);
            if (!options.passive) {
                record.name = declared.name;
                topology_.declared(record);
            }
            return declared;
        });
    }

    std::uint64_t deleteQueue(std::string_view name, bool ifUnused, bool ifEmpty) override {
        const std::string n(name);
        return locked([&] {
            const amqp_queue_delete_ok_t* ok =
                amqp_queue_delete(conn_, CONTROL, bytes(n), ifUnused, ifEmpty);
            check(amqp_get_rpc_reply(conn_), CONTROL);
            topology_.queueDeleted(n);
            return std::uint64_t{ok->message_count};
        });
    }

    std::uint64_t purge(std::string_view queue) override {
        const std::string n(queue);
        return locked([&] {
            const amqp_queue_purge_ok_t* ok = amqp_queue_purge(conn_, CONTROL, bytes(n));
            check(amqp_get_rpc_reply(conn_), CONTROL);
            return std::uint64_t{ok->message_count};
        });
    }

    void bindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                   const FieldTable& arguments) override {
        binding(true,
                {std::string(queue), std::string(exchange), std::string(key), arguments, false});
    }
    void unbindQueue(std::string_view queue, std::string_view exchange, std::string_view key,
                     const FieldTable& arguments) override {
        binding(false,
                {std::string(queue), std::string(exchange), std::string(key), arguments, false});
    }
    void bindExchange(std::string_view destination, std::string_view source, std::string_view key,
                      const FieldTable& arguments) override {
        binding(true,
                {std::string(destination), std::string(source), std::string(key), arguments, true});
    }
    void unbindExchange(std::string_view destination, std::string_view source, std::string_view key,
                        const FieldTable& arguments) override {
        binding(false,
                {std::string(destination), std::string(source), std::string(key), arguments, true});
    }

    void publish(std::string_view exchange, std::string_view routingKey, std::string body,
                 const PublishOptions& options) override {
        publishUnconfirmed(exchange, routingKey, body, options, false);
    }

    Confirmation publishConfirmed(std::string_view exchange, std::string_view routingKey,
                                  std::string body, const PublishOptions& options) override {
        refuseInInlineHandler();
        auto future = publishConfirmedAsync(exchange, routingKey, std::move(body), options);
        if (future.wait_for(options_.requestTimeout) != std::future_status::ready)
            throw Error(ErrorKind::TIMEOUT,
                        "no publisher confirm from " + url_.redacted() + " in " +
                            std::to_string(options_.requestTimeout.count()) + " ms");
        return future.get();
    }

    std::future<Confirmation> publishConfirmedAsync(std::string_view exchange,
                                                    std::string_view routingKey, std::string body,
                                                    const PublishOptions& options) override {
        auto answer = std::make_shared<std::promise<Confirmation>>();
        auto future = answer->get_future();
        publishConfirmedThen(exchange, routingKey, std::move(body), options,
                             [answer](const Confirmation* confirmation, const Error* failure) {
                                 if (failure != nullptr)
                                     answer->set_exception(std::make_exception_ptr(*failure));
                                 else
                                     answer->set_value(*confirmation);
                             });
        return future;
    }

protected:
    // Pipelined: the broker's confirm (basic.ack, often "multiple") settles it later, on the
    // reader's thread. Not connected: throws, as publishConfirmedAsync always has here.
    void publishConfirmedThen(std::string_view exchange, std::string_view routingKey,
                              std::string body, const PublishOptions& options,
                              ConfirmCallback settled) override {
        const amqp::EncodedProperties properties(options.properties);
        locked(
            [&] {
                amqp::checkNames(exchange, routingKey); // before confirm.select is sent
                // Alone in flight (publishConfirmed, an RPC): someone waits for it, write it now.
                if (!confirmModeLocked() ||
                    !publishLocked(exchange, routingKey, body, options.mandatory, properties,
                                   confirms_.empty()))
                    throw Error(ErrorKind::CONNECTION_LOST, "not connected: " + downReason_);
                confirms_.emplace(publishSeq_, std::move(settled));
                return 0;
            },
            /*publishes=*/true);
    }

    // A responder's reply: the caller waits for it, so it is written at once.
    void publishReply(std::string_view exchange, std::string_view routingKey, std::string body,
                      const PublishOptions& options) override {
        publishUnconfirmed(exchange, routingKey, body, options, true);
    }

public:
    std::optional<Delivery> get(std::string_view queue, bool noAck) override {
        const std::string n(queue);
        return locked([&]() -> std::optional<Delivery> {
            const amqp_rpc_reply_t reply = amqp_basic_get(conn_, CONTROL, bytes(n), noAck);
            check(reply, CONTROL);
            if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD)
                return std::nullopt; // get-empty
            const auto* ok = static_cast<const amqp_basic_get_ok_t*>(reply.reply.decoded);
            const std::uint64_t tag = ok->delivery_tag;
            const bool redelivered = ok->redelivered != 0;
            std::string exchange = text(ok->exchange), routingKey = text(ok->routing_key);
            return readDelivery(CONTROL, "", tag, redelivered, std::move(exchange),
                                std::move(routingKey), !noAck);
        });
    }

    Listing list(ListKind) override {
        throw Error(ErrorKind::BROKER,
                    "NOT_IMPLEMENTED - AMQP 0-9-1 has no listings: over amqp:// use rabbitmqctl "
                    "or RabbitMQ's management plugin",
                    core::ErrorCode::NOT_IMPLEMENTED);
    }

    void settle(amqp_channel_t channel, std::uint64_t generation, Settle how, std::uint64_t tag,
                bool multiple, bool requeue) {
        std::lock_guard lock(mutex_);
        if (conn_ == nullptr || generation_[channel] != generation)
            return; // the broker requeued it when the channel or the link closed
        AckCoalescer& acks = acks_[channel];
        if (how == Settle::ACK && acks.ack(tag, multiple)) {
            // Absorbed into the pending "ack multiple": a handler's acks go at the end of its
            // batch (the dispatcher's idle hook) or after ACK_BATCH more, one basic.ack for
            // them all; an ack from any other thread goes now.
            if (!dispatcher().onDispatcherThread() || ++deferredAcks_ >= ACK_BATCH)
                flushAcksLocked();
            return;
        }
        if (how != Settle::ACK)
            acks.settledOtherwise(tag, multiple);
        flushAcksLocked(); // the publishes and acks made before this go before it
        if (conn_ == nullptr)
            return;
        int status = AMQP_STATUS_OK;
        switch (how) {
        case Settle::ACK:
            status = amqp_basic_ack(conn_, channel, tag, multiple);
            break;
        case Settle::NACK:
            status = amqp_basic_nack(conn_, channel, tag, multiple, requeue);
            break;
        case Settle::REJECT:
            status = amqp_basic_reject(conn_, channel, tag, requeue);
            break;
        }
        if (status != AMQP_STATUS_OK)
            linkDownLocked(amqp_error_string2(status));
    }

    // With mutex_ held: each channel's pending "ack multiple", if any, to the broker.
    // The publishes buffered before go first: a handler that publishes, then acks what it
    // handled, must not have the ack reach the broker without the publish.
    void flushAcksLocked() {
        deferredAcks_ = 0;
        flushPublishesLocked();
        for (amqp_channel_t channel : {CONTROL, CONSUME}) {
            const std::uint64_t upTo = acks_[channel].takePending();
            if (upTo == 0 || conn_ == nullptr)
                continue;
            if (const int status = amqp_basic_ack(conn_, channel, upTo, true);
                status != AMQP_STATUS_OK) {
                linkDownLocked(amqp_error_string2(status));
                return;
            }
        }
    }

protected:
    std::string startConsumer(std::string_view queue, RawHandler handler,
                              const ConsumeOptions& options) override {
        if (options.prefetch > 65535)
            throw Error(ErrorKind::INVALID_ARGUMENT, "prefetch " +
                                                         std::to_string(options.prefetch) +
                                                         " is more than AMQP's 65535");
        auto record = std::make_shared<ConsumerRecord>(
            ConsumerRecord{std::string(queue), options, std::move(handler)});
        return locked([&] {
            // A refusal here closes CONTROL, not the channel the other consumers are on.
            (void)amqp_queue_declare(conn_, CONTROL, bytes(record->queue), 1, 0, 0, 0,
                                     amqp_empty_table);
            check(amqp_get_rpc_reply(conn_), CONTROL);
            std::string tag = consumeLocked(*record, options.consumerTag);
            consumers_[tag] = record;
            return tag;
        });
    }

    void cancelConsumer(const std::string& tag) override {
        std::lock_guard lock(mutex_);
        auto it = consumers_.find(tag);
        if (it == consumers_.end())
            return;
        cancelledNeedAck_[tag] = !it->second->options.noAck;
        consumers_.erase(it);
        flushPublishesLocked();
        if (conn_ == nullptr)
            return;
        (void)amqp_basic_cancel(conn_, CONSUME, bytes(tag));
        try {
            check(amqp_get_rpc_reply(conn_), CONSUME);
        } catch (const Error& e) {
            notifyError(Error(e.kind(), "cancel '" + tag + "': " + e.what(), e.code()));
        }
        wakeIfBuffered();
    }

private:
    friend class AmqpAckLink;

    struct ConsumerRecord {
        std::string queue;
        ConsumeOptions options;
        RawHandler handler;
    };

    // Runs `work` under the mutex on a live link; rabbitmq-c refusals become Error. Buffered
    // publishes are written first, unless `work` is another publish.
    template <class F> auto locked(F&& work, bool publishes = false) -> decltype(work()) {
        if (!publishes)
            refuseInInlineHandler(); // a synchronous AMQP method: it waits for the answer
        if (closed_)
            throw Error(ErrorKind::CONNECTION_LOST, "the connection is closed");
        std::lock_guard lock(mutex_);
        if (conn_ == nullptr)
            throw Error(ErrorKind::CONNECTION_LOST,
                        "not connected to " + url_.redacted() + ": " + downReason_);
        struct Wake {
            AmqpConnection* self;
            ~Wake() { self->wakeIfBuffered(); }
        } wakeAfter{this};
        if (!publishes)
            flushPublishesLocked(); // publishes made before this request go before it
        if (conn_ == nullptr)
            throw Error(ErrorKind::CONNECTION_LOST,
                        "not connected to " + url_.redacted() + ": " + downReason_);
        return work();
    }

    // A synchronous request read frames: those that were not its answer wait in rabbitmq-c's
    // queue, where the reader, asleep on the socket, would not see them.
    void wakeIfBuffered() {
        if (conn_ != nullptr && (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)))
            wake();
    }

    void wake() {
        const std::uint64_t one = 1;
        (void)!::write(wakeFd_, &one, sizeof one);
    }

    // Throws the broker's refusal as Error. A refused request closed its channel: acknowledge
    // that and open the channel again. A lost link is taken down (the reader reconnects).
    void check(const amqp_rpc_reply_t& reply, amqp_channel_t channel) {
        switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
                const core::Error error =
                    amqp::brokerError(close->reply_code, text(close->reply_text));
                channelClosedLocked(channel);
                throw Error::broker(error);
            }
            if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const auto* close =
                    static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
                const core::Error error =
                    amqp::brokerError(close->reply_code, text(close->reply_text));
                amqp_connection_close_ok_t ok{};
                (void)amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                linkDownLocked("the broker closed the connection: " + error.describe());
                throw Error::broker(error);
            }
            linkDownLocked("unexpected answer from the broker");
            throw Error(ErrorKind::CONNECTION_LOST, "unexpected answer from the broker");
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: {
            const std::string why = amqp_error_string2(reply.library_error);
            linkDownLocked(why);
            throw Error(reply.library_error == AMQP_STATUS_TIMEOUT ? ErrorKind::TIMEOUT
                                                                   : ErrorKind::CONNECTION_LOST,
                        why + " (" + url_.redacted() + ")");
        }
        case AMQP_RESPONSE_NONE:
            break;
        }
        linkDownLocked("no answer from the broker");
        throw Error(ErrorKind::CONNECTION_LOST, "no answer from " + url_.redacted());
    }

    // The broker closed `channel` (a refusal): acknowledge, then open it again in a new
    // generation. PUBLISH fails its pending confirms; CONSUME restarts its consumers (their
    // unacked deliveries come again, redelivered).
    void channelClosedLocked(amqp_channel_t channel, const std::optional<core::Error>& why = {}) {
        amqp_channel_close_ok_t ok{};
        if (amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK) {
            linkDownLocked("could not acknowledge a channel close");
            return;
        }
        amqp_maybe_release_buffers_on_channel(conn_, channel);
        if (channel == PUBLISH)
            dropPublishesLocked(); // made after the close: the broker would drop them (AMQP)
        newGeneration(channel);
        if (channel == PUBLISH && why)
            failConfirms(Error::broker(*why));
        if (!openChannelLocked(channel))
            return;
        if (channel == CONSUME)
            for (auto& [tag, record] : consumers_)
                try {
                    (void)consumeLocked(*record, tag);
                } catch (const Error& e) {
                    notifyError(Error(e.kind(),
                                      "consume '" + record->queue +
                                          "' again after a "
                                          "channel error: " +
                                          e.what(),
                                      e.code()));
                    if (conn_ == nullptr)
                        return;
                }
    }

    bool openChannelLocked(amqp_channel_t channel) {
        (void)amqp_channel_open(conn_, channel);
        if (amqp_get_rpc_reply(conn_).reply_type != AMQP_RESPONSE_NORMAL) {
            linkDownLocked("could not open channel " + std::to_string(channel));
            return false;
        }
        if (channel == PUBLISH)
            publishConfirming_ = false; // until a publish asks for a confirm
        return true;
    }

    // Puts PUBLISH in confirm mode if it is not yet: the publishes buffered before go first,
    // unconfirmed, and confirms count from the next one. False when the link went down.
    bool confirmModeLocked() {
        if (publishConfirming_)
            return true;
        flushPublishesLocked();
        for (int attempt = 0; attempt < 2 && conn_ != nullptr; ++attempt) {
            (void)amqp_confirm_select(conn_, PUBLISH);
            const amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn_);
            if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
                // What rabbitmq-c queued while it waited belongs to the publishes before: a
                // basic.return for one of them must not mark the first confirmed one returned.
                takeQueuedLocked();
                publishConfirming_ = true;
                publishSeq_ = 0;
                returnedBeforeAck_ = false;
                return conn_ != nullptr;
            }
            if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                // A publish made before this one was refused (no such exchange), and the broker
                // closed PUBLISH: onError hears of it, as of any refused fire-and-forget publish,
                // the channel opens again, and confirm mode is asked for again.
                const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
                const core::Error error =
                    amqp::brokerError(close->reply_code, text(close->reply_text));
                notifyError(Error::broker(error));
                channelClosedLocked(PUBLISH, error);
                continue;
            }
            break;
        }
        linkDownLocked("the broker refused publisher confirms");
        return false;
    }

    // Takes in the frames rabbitmq-c queued while a request waited for its answer.
    void takeQueuedLocked() {
        Dispatcher::Batch batch(dispatcher());
        while (conn_ != nullptr && amqp_frames_enqueued(conn_)) {
            amqp_frame_t frame{};
            timeval zero{0, 0};
            if (amqp_simple_wait_frame_noblock(conn_, &frame, &zero) != AMQP_STATUS_OK)
                return;
            try {
                handleFrameLocked(frame);
            } catch (const Error&) {
                return; // the link is down (check took it down)
            }
        }
    }

    // A publish nobody waits a confirm for; `now` as for publishLocked. Not connected: dropped,
    // and onError hears of it.
    void publishUnconfirmed(std::string_view exchange, std::string_view routingKey,
                            std::string_view body, const PublishOptions& options, bool now) {
        if (closed_)
            throw Error(ErrorKind::CONNECTION_LOST, "the connection is closed");
        const amqp::EncodedProperties properties(options.properties);
        std::unique_lock lock(mutex_);
        if (conn_ == nullptr) {
            lock.unlock();
            notifyError(Error(ErrorKind::CONNECTION_LOST, "publish to '" + std::string(exchange) +
                                                              "' dropped: not connected to " +
                                                              url_.redacted()));
            return;
        }
        publishLocked(exchange, routingKey, body, options.mandatory, properties, now);
    }

    // False when it could not be sent (the link went down); in confirm mode publishSeq_ is
    // then its sequence number. `now`: written before returning; otherwise buffered (see the
    // top of this file). Throws Error (INVALID_ARGUMENT) for what AMQP cannot carry, sending
    // nothing.
    bool publishLocked(std::string_view exchange, std::string_view key, std::string_view body,
                       bool mandatory, const amqp::EncodedProperties& properties, bool now) {
        amqp::appendPublish(publishOut_,
                            {PUBLISH, exchange, key, mandatory, properties.get(), body}, frameMax_);
        if (publishConfirming_)
            ++publishSeq_;
        if (now || publishOut_.size() >= PUBLISH_FLUSH_BYTES) {
            flushPublishesLocked();
        } else if (!publishFlushWanted_) {
            publishFlushWanted_ = true;
            wake(); // the reader writes them, with whatever follows meanwhile
        }
        return conn_ != nullptr;
    }

    // With mutex_ held: forgets the buffered publishes (a wake asked for them stays harmless).
    void dropPublishesLocked() {
        publishOut_.clear();
        publishFlushWanted_ = false;
    }

    // With mutex_ held: writes the buffered publishes, all of them (rabbitmq-c's own writes
    // block likewise); a failed write takes the link down.
    void flushPublishesLocked() {
        publishFlushWanted_ = false;
        if (publishOut_.empty())
            return;
        if (conn_ == nullptr) {
            dropPublishesLocked();
            return;
        }
        const int fd = amqp_get_sockfd(conn_);
        std::size_t written = 0;
        while (written < publishOut_.size()) {
            const ssize_t n = ::send(fd, publishOut_.data() + written, publishOut_.size() - written,
                                     MSG_NOSIGNAL);
            if (n > 0) {
                written += static_cast<std::size_t>(n);
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                pollfd out{fd, POLLOUT, 0};
                (void)::poll(&out, 1, -1); // the broker may hold us back (connection.blocked)
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                dropPublishesLocked();
                linkDownLocked(std::string("could not send publishes: ") +
                               (n == 0 ? "the socket took nothing" : std::strerror(errno)));
                return;
            }
        }
        publishOut_.clear();
        if (publishOut_.capacity() > 4 * PUBLISH_FLUSH_BYTES)
            publishOut_.shrink_to_fit(); // after a large body: do not keep its size
    }

    void declareExchangeLocked(const Topology::Exchange& x) {
        const amqp::EncodedTable arguments(x.options.arguments);
        (void)amqp_exchange_declare(conn_, CONTROL, bytes(x.name),
                                    amqp_cstring_bytes(core::exchangeTypeName(x.type)),
                                    x.options.passive, x.options.durable, x.options.autoDelete,
                                    x.options.internal, arguments.table());
        check(amqp_get_rpc_reply(conn_), CONTROL);
    }

    QueueDeclared declareQueueLocked(const Topology::Queue& q) {
        const amqp::EncodedTable arguments(q.options.arguments);
        const amqp_queue_declare_ok_t* ok = amqp_queue_declare(
            conn_, CONTROL, bytes(q.serverNamed ? std::string() : q.name), q.options.passive,
            q.options.durable, q.options.exclusive, q.options.autoDelete, arguments.table());
        check(amqp_get_rpc_reply(conn_), CONTROL);
        return QueueDeclared{text(ok->queue), ok->message_count, ok->consumer_count};
    }

    void bindLocked(bool bind, const Topology::Binding& b) {
        const amqp::EncodedTable arguments(b.arguments);
        if (b.toExchange && bind)
            (void)amqp_exchange_bind(conn_, CONTROL, bytes(b.destination), bytes(b.source),
                                     bytes(b.key), arguments.table());
        else if (b.toExchange)
            (void)amqp_exchange_unbind(conn_, CONTROL, bytes(b.destination), bytes(b.source),
                                       bytes(b.key), arguments.table());
        else if (bind)
            (void)amqp_queue_bind(conn_, CONTROL, bytes(b.destination), bytes(b.source),
                                  bytes(b.key), arguments.table());
        else
            (void)amqp_queue_unbind(conn_, CONTROL, bytes(b.destination), bytes(b.source),
                                    bytes(b.key), arguments.table());
        check(amqp_get_rpc_reply(conn_), CONTROL);
    }

    void binding(bool bind, Topology::Binding b) {
        locked([&] {
            bindLocked(bind, b);
            if (bind)
                topology_.bound(b);
            else
                topology_.unbound(b);
            return 0;
        });
    }

    // basic.qos before basic.consume: RabbitMQ applies a non-global prefetch to each consumer
    // started after it on the channel, which is this library's per-consumer prefetch.
    std::string consumeLocked(const ConsumerRecord& c, const std::string& tag) {
        (void)amqp_basic_qos(conn_, CONSUME, 0, static_cast<std::uint16_t>(c.options.prefetch), 0);
        check(amqp_get_rpc_reply(conn_), CONSUME);
        const amqp_basic_consume_ok_t* ok =
            amqp_basic_consume(conn_, CONSUME, bytes(c.queue), bytes(tag), 0, c.options.noAck,
                               c.options.exclusive, amqp_empty_table);
        check(amqp_get_rpc_reply(conn_), CONSUME);
        return text(ok->consumer_tag);
    }

    // The content frames that follow a basic.deliver, basic.get-ok or basic.return.
    std::optional<Delivery> readDelivery(amqp_channel_t channel, std::string consumerTag,
                                         std::uint64_t tag, bool redelivered, std::string exchange,
                                         std::string routingKey, bool needsAck) {
        amqp_message_t message{};
        const amqp_rpc_reply_t reply = amqp_read_message(conn_, channel, &message, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            check(reply, channel); // throws
            return std::nullopt;
        }
        if (needsAck)
            acks_[channel].delivered(tag);
        Delivery delivery(links_[channel], std::move(consumerTag), tag, redelivered,
                          std::move(exchange), std::move(routingKey),
                          amqp::decodeProperties(message.properties),
                          amqp::deathsOf(message.properties), text(message.body), needsAck);
        amqp_destroy_message(&message);
        return delivery;
    }

    // --- the reader thread ---

    void readLoop() {
        std::chrono::milliseconds backoff = FIRST_BACKOFF;
        while (!closed_) {
            int fd = -1;
            bool buffered = false;
            {
                std::lock_guard lock(mutex_);
                if (conn_ != nullptr) {
                    fd = amqp_get_sockfd(conn_);
                    buffered = amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_);
                }
            }
            if (fd < 0) {
                if (!options_.reconnect) {
                    sleepUntilWoken(-1);
                    continue;
                }
                sleepUntilWoken(static_cast<int>(backoff.count()));
                if (closed_)
                    break;
                if (reconnect())
                    backoff = FIRST_BACKOFF;
                else
                    backoff = std::min(backoff * 2, options_.maxBackoff);
                continue;
            }
            if (!buffered) {
                // Wake at least twice per heartbeat interval: rabbitmq-c sends heartbeats and
                // notices a silent broker only when it is called.
                const int heartbeatMs = options_.heartbeatSeconds == 0
                                            ? 1000
                                            : static_cast<int>(options_.heartbeatSeconds) * 500;
                pollfd fds[2] = {{fd, POLLIN, 0}, {wakeFd_, POLLIN, 0}};
                (void)::poll(fds, 2, heartbeatMs);
                if ((fds[1].revents & POLLIN) != 0)
                    drainWake();
            }
            std::lock_guard lock(mutex_);
            pumpLocked();
        }
    }

    void sleepUntilWoken(int timeoutMs) {
        pollfd wake{wakeFd_, POLLIN, 0};
        (void)::poll(&wake, 1, timeoutMs);
        drainWake();
    }

    void drainWake() {
        std::uint64_t count = 0;
        (void)!::read(wakeFd_, &count, sizeof count);
    }

    void stopReader() {
        closed_ = true;
        wake();
        if (reader_.joinable())
            reader_.join();
    }

    // Takes in what has arrived, without waiting for more.
    void pumpLocked() {
        flushPublishesLocked(); // what publishers buffered since they woke this thread
        Dispatcher::Batch batch(dispatcher()); // one wake-up for this turn's deliveries
        for (std::size_t n = 0; conn_ != nullptr && n < FRAMES_PER_TURN; ++n) {
            amqp_frame_t frame{};
            timeval zero{0, 0};
            const int status = amqp_simple_wait_frame_noblock(conn_, &frame, &zero);
            if (status == AMQP_STATUS_TIMEOUT)
                break;
            if (status != AMQP_STATUS_OK) {
                linkDownLocked(amqp_error_string2(status));
                return;
            }
            try {
                handleFrameLocked(frame);
            } catch (const Error&) {
                // The link is down (check took it down): the reader reconnects.
            }
        }
        if (conn_ != nullptr)
            amqp_maybe_release_buffers(conn_);
    }

    void handleFrameLocked(const amqp_frame_t& frame) {
        if (frame.frame_type != AMQP_FRAME_METHOD)
            return; // content frames are read with the method they follow
        const amqp_channel_t channel = frame.channel;
        const void* decoded = frame.payload.method.decoded;
        switch (frame.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
            const auto* d = static_cast<const amqp_basic_deliver_t*>(decoded);
            std::string tag = text(d->consumer_tag);
            const std::uint64_t deliveryTag = d->delivery_tag;
            auto it = consumers_.find(tag);
            const bool needsAck =
                it != consumers_.end() ? !it->second->options.noAck : cancelledNeedAck_[tag];
            std::optional<Delivery> delivery =
                readDelivery(channel, tag, deliveryTag, d->redelivered != 0, text(d->exchange),
                             text(d->routing_key), needsAck);
            if (!delivery)
                return;
            if (it != consumers_.end())
                it->second->handler([&](Delivery& out) { out = std::move(*delivery); });
            else if (needsAck) { // sent before the cancel took effect: back to the queue
                acks_[channel].settledOtherwise(deliveryTag, false);
                (void)amqp_basic_reject(conn_, channel, deliveryTag, 1);
            }
            return;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            const auto* r = static_cast<const amqp_basic_return_t*>(decoded);
            std::string exchange = text(r->exchange), routingKey = text(r->routing_key);
            std::optional<Delivery> returned =
                readDelivery(channel, "", 0, false, exchange, routingKey, false);
            if (!returned)
                return;
            if (channel == PUBLISH && publishConfirming_)
                returnedBeforeAck_ = true; // RabbitMQ sends the return, then the confirm
            notifyReturn(ReturnedMessage{std::move(exchange), std::move(routingKey),
                                         returned->properties(), returned->body()});
            return;
        }
        case AMQP_BASIC_ACK_METHOD: {
            const auto* a = static_cast<const amqp_basic_ack_t*>(decoded);
            if (channel == PUBLISH)
                confirmLocked(a->delivery_tag, a->multiple != 0, true);
            return;
        }
        case AMQP_BASIC_NACK_METHOD: {
            const auto* a = static_cast<const amqp_basic_nack_t*>(decoded);
            if (channel == PUBLISH)
                confirmLocked(a->delivery_tag, a->multiple != 0, false);
            return;
        }
        case AMQP_BASIC_CANCEL_METHOD: { // the broker ended a consumer: its queue was deleted
            const auto* c = static_cast<const amqp_basic_cancel_t*>(decoded);
            const std::string tag = text(c->consumer_tag);
            auto it = consumers_.find(tag);
            if (it == consumers_.end())
                return;
            const std::string queue = it->second->queue;
            cancelledNeedAck_[tag] = !it->second->options.noAck;
            consumers_.erase(it);
            notifyError(Error(ErrorKind::BROKER,
                              "NOT_FOUND - the broker cancelled consumer '" + tag + "' of queue '" +
                                  queue + "' (deleted)",
                              core::ErrorCode::NOT_FOUND));
            return;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            const auto* c = static_cast<const amqp_channel_close_t*>(decoded);
            // A refused publish (no such exchange) closes PUBLISH: the confirms waiting there
            // fail with the refusal, or, with none waiting, onError hears of it. Publishes sent
            // after it and before the close arrived were dropped by the broker, as AMQP says.
            const core::Error error = amqp::brokerError(c->reply_code, text(c->reply_text));
            if (channel != PUBLISH || confirms_.empty())
                notifyError(Error::broker(error));
            channelClosedLocked(channel, error);
            return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            const auto* c = static_cast<const amqp_connection_close_t*>(decoded);
            const core::Error error = amqp::brokerError(c->reply_code, text(c->reply_text));
            amqp_connection_close_ok_t ok{};
            (void)amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            linkDownLocked("the broker closed the connection: " + error.describe());
            return;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD:
            notifyEvent(ConnectionEvent::BLOCKED);
            return;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            notifyEvent(ConnectionEvent::UNBLOCKED);
            return;
        default:
            return;
        }
    }

    void confirmLocked(std::uint64_t tag, bool multiple, bool ack) {
        auto end = multiple ? confirms_.upper_bound(tag) : confirms_.find(tag);
        auto begin = multiple ? confirms_.begin() : end;
        if (!multiple) {
            if (end == confirms_.end()) {
                returnedBeforeAck_ = false; // a fire-and-forget publish's confirm
                return;
            }
            ++end;
        }
        for (auto it = begin; it != end; ++it) {
            Confirmation c;
            c.ack = ack;
            c.returned = returnedBeforeAck_;
            returnedBeforeAck_ = false;
            if (!ack)
                c.reason = "the broker nacked the message (a queue refused it: x-overflow "
                           "reject-publish, or an internal error)";
            it->second(&c, nullptr);
        }
        confirms_.erase(begin, end);
        returnedBeforeAck_ = false;
    }

    void failConfirms(const Error& why) {
        for (auto& entry : confirms_)
            entry.second(nullptr, &why);
        confirms_.clear();
    }

    // The link broke or closed: waiting callers fail, acks of its deliveries go nowhere, and the
    // reader connects again (unless closed).
    void linkDownLocked(const std::string& reason, bool tell = true) {
        if (conn_ == nullptr)
            return;
        amqp_destroy_connection(conn_);
        conn_ = nullptr;
        dropPublishesLocked(); // their confirms fail below; fire-and-forget ones go with it
        downReason_ = reason;
        for (amqp_channel_t channel : {CONTROL, PUBLISH, CONSUME})
            newGeneration(channel);
        failConfirms(Error(ErrorKind::CONNECTION_LOST, "connection lost: " + reason));
        resetRequests(Error(ErrorKind::CONNECTION_LOST, "connection lost: " + reason));
        if (tell && !closed_)
            notifyEvent(ConnectionEvent::DISCONNECTED);
        wake();
    }

    // Connects, logs in and opens the three channels; throws Error, leaving conn_ null.
    void connectLocked() {
        amqp_connection_state_t conn = amqp_new_connection();
        if (conn == nullptr)
            throw Error(ErrorKind::CONNECTION_LOST, "rabbitmq-c: out of memory");
        struct Guard {
            amqp_connection_state_t c;
            ~Guard() {
                if (c != nullptr)
                    amqp_destroy_connection(c);
            }
        } guard{conn};
        amqp_socket_t* socket = amqp_tcp_socket_new(conn);
        timeval connectTimeout = toTimeval(options_.connectTimeout);
        const int opened = socket == nullptr ? AMQP_STATUS_NO_MEMORY
                                             : amqp_socket_open_noblock(socket, url_.host.c_str(),
                                                                        url_.port, &connectTimeout);
        if (opened != AMQP_STATUS_OK)
            throw Error(
                opened == AMQP_STATUS_TIMEOUT ? ErrorKind::TIMEOUT : ErrorKind::CONNECTION_LOST,
                "could not connect to " + url_.redacted() + ": " + amqp_error_string2(opened));
        (void)amqp_set_handshake_timeout(conn, &connectTimeout);
        timeval requestTimeout = toTimeval(options_.requestTimeout);
        (void)amqp_set_rpc_timeout(conn, &requestTimeout);

        core::FieldTable capabilities{{"publisher_confirms", true},
                                      {"basic.nack", true},
                                      {"consumer_cancel_notify", true},
                                      {"connection.blocked", true}};
        const amqp::EncodedTable capabilityTable(capabilities);
        const std::string product = "depot-client", name = options_.clientName;
        amqp_table_entry_t entries[3] = {};
        entries[0].key = amqp_cstring_bytes("product");
        entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[0].value.value.bytes = bytes(product);
        entries[1].key = amqp_cstring_bytes("connection_name");
        entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[1].value.value.bytes = bytes(name);
        entries[2].key = amqp_cstring_bytes("capabilities");
        entries[2].value.kind = AMQP_FIELD_KIND_TABLE;
        entries[2].value.value.table = capabilityTable.table();
        const amqp_table_t clientProperties{3, entries};

        const amqp_rpc_reply_t login = amqp_login_with_properties(
            conn, url_.vhost.c_str(), 0, FRAME_MAX, static_cast<int>(options_.heartbeatSeconds),
            &clientProperties, AMQP_SASL_METHOD_PLAIN, url_.username.c_str(),
            url_.password.c_str());
        if (login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
            login.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const auto* close = static_cast<const amqp_connection_close_t*>(login.reply.decoded);
            throw Error::broker(amqp::brokerError(close->reply_code, text(close->reply_text)));
        }
        if (login.reply_type != AMQP_RESPONSE_NORMAL) {
            const std::string why = login.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                                        ? amqp_error_string2(login.library_error)
                                        : "unexpected answer";
            // RabbitMQ answers refused credentials by closing the socket.
            throw Error(ErrorKind::BROKER,
                        "ACCESS_REFUSED - could not log in to " + url_.redacted() + " (" + why +
                            "): check the user, password and vhost",
                        core::ErrorCode::ACCESS_REFUSED);
        }
        conn_ = conn;
        guard.c = nullptr;
        frameMax_ = static_cast<std::size_t>(std::max(amqp_get_frame_max(conn_), 4096));
        for (amqp_channel_t channel : {CONTROL, PUBLISH, CONSUME})
            if (!openChannelLocked(channel))
                throw Error(ErrorKind::CONNECTION_LOST, downReason_);
        for (amqp_channel_t channel : {CONTROL, PUBLISH, CONSUME})
            if (!links_[channel])
                newGeneration(channel);
    }

    // Acks of deliveries from the channel's previous life go nowhere from here on.
    void newGeneration(amqp_channel_t channel) {
        links_[channel] =
            std::make_shared<AmqpAckLink>(weak_from_this(), channel, ++generation_[channel]);
        acks_[channel].reset();
    }

    // After the link broke: connect, declare again what this connection declared, and restart
    // its consumers under their old tags.
    bool reconnect() {
        std::lock_guard lock(mutex_);
        if (closed_)
            return false;
        try {
            connectLocked();
        } catch (const Error& e) {
            downReason_ = e.what();
            return false;
        }
        auto attempt = [this](const std::string& what, auto&& step) {
            if (conn_ == nullptr)
                return;
            try {
                step();
            } catch (const Error& e) {
                notifyError(Error(e.kind(), "recovery: " + what + ": " + e.what(), e.code()));
            }
        };
        for (const Topology::Exchange& x : topology_.exchanges)
            attempt("declare exchange '" + x.name + "'", [&] { declareExchangeLocked(x); });
        const std::vector<Topology::Queue> queues = topology_.queues;
        for (const Topology::Queue& q : queues)
            attempt("declare queue '" + q.name + "'", [&] {
                const std::string newName = declareQueueLocked(q).name;
                if (q.serverNamed && newName != q.name) {
                    topology_.queueRenamed(q.name, newName);
                    for (auto& [tag, consumer] : consumers_)
                        if (consumer->queue == q.name)
                            consumer->queue = newName;
                }
            });
        for (const Topology::Binding& b : topology_.bindings)
            attempt("bind '" + b.destination + "' to '" + b.source + "'",
                    [&] { bindLocked(true, b); });
        for (const auto& entry : consumers_)
            attempt("consume '" + entry.second->queue + "'",
                    [&] { (void)consumeLocked(*entry.second, entry.first); });
        if (conn_ == nullptr)
            return false;
        notifyEvent(ConnectionEvent::RECONNECTED);
        return true;
    }

    const BrokerUrl url_;
    const ConnectionOptions options_;
    const int wakeFd_;
    std::atomic<bool> closed_{false};
    std::thread reader_;

    std::mutex mutex_;                       // everything below, and every rabbitmq-c call
    amqp_connection_state_t conn_ = nullptr; // null while the link is down
    std::string downReason_ = "not connected yet";
    std::uint64_t generation_[CONSUME + 1] = {};
    std::shared_ptr<AmqpAckLink> links_[CONSUME + 1];
    // Deliveries that need an ack, by channel: acks in delivery order share one basic.ack with
    // multiple set, as over depot:// (AckCoalescer).
    AckCoalescer acks_[CONSUME + 1];
    std::size_t deferredAcks_ = 0;    // handlers' acks absorbed since the last flush
    bool publishConfirming_ = false;  // PUBLISH is in confirm mode
    std::uint64_t publishSeq_ = 0;    // in confirm mode: the last publish's sequence number
    std::string publishOut_;          // publishes' frames not written yet
    bool publishFlushWanted_ = false; // the reader was woken to write them
    std::size_t frameMax_ = FRAME_MAX;
    bool returnedBeforeAck_ = false;
    std::map<std::uint64_t, ConfirmCallback> confirms_; // by publish sequence number
    Topology topology_;
    std::map<std::string, std::shared_ptr<ConsumerRecord>> consumers_;
    std::unordered_map<std::string, bool> cancelledNeedAck_;
};

void AmqpAckLink::send(Settle how, std::uint64_t tag, bool multiple, bool requeue) {
    if (auto owner = owner_.lock())
        static_cast<AmqpConnection&>(*owner).settle(channel_, generation_, how, tag, multiple,
                                                    requeue);
}

} // namespace

std::shared_ptr<Connection> openAmqpConnection(const BrokerUrl& url,
                                               const ConnectionOptions& options) {
    auto connection = std::make_shared<AmqpConnection>(url, options);
    connection->start();
    return connection;
}

} // namespace depot::client
