#pragma once
// One client connection to depotd: reads frames, calls the core, writes answers and
// deliveries. Everything runs on the io thread that owns the core; the session is the only
// code that touches its socket and its core Channel.
//
// Lifecycle: start() -> waiting for hello (handshake timeout) -> open -> closing (a close was
// sent or received; what is queued is flushed) -> closed (socket shut, channel closed, which
// requeues unacked deliveries and deletes exclusive queues).

#include "broker/core/channel.h"
#include "broker/core/delivery_sink.h"
#include "broker/net/config.h"
#include "protocol/frame_reader.h"
#include "protocol/outbox.h"
#include "protocol/wire.capnp.h"

#include <asio.hpp>
#include <capnp/message.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace depot::net {

class Server;

struct SessionInfo {
    std::string name; // peer address
    std::string clientName;
    std::string username;
    std::string vhost;
    std::uint64_t connectedSeconds = 0;
    std::uint64_t framesIn = 0;
    std::uint64_t framesOut = 0;
    std::uint64_t unacked = 0;
    std::uint64_t consumers = 0;
    bool blocked = false;
    bool flow = false; // FlowControl holds it
};

class Session final : public std::enable_shared_from_this<Session>, private core::DeliverySink {
public:
    Session(Server& server, asio::ip::tcp::socket socket, std::uint64_t id);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    // Server shutdown: tell the client why, flush, close.
    void shutdown(const std::string& reason);
    // Memory alarm: stop reading this connection's publishes, or start again.
    void setPublishBlocked(bool blocked, const std::string& reason);

    std::uint64_t id() const { return id_; }
    const std::string& name() const { return name_; }
    core::Channel* channel() const { return channel_; }
    std::size_t bufferedBytes() const { return outbox_.bufferedBytes() + heldBytes_; }
    SessionInfo info() const;

private:
    enum class State { AWAITING_HELLO, OPEN, CLOSING, CLOSED };

    // --- reading ---
    void readMore();
    void onRead(const asio::error_code& error, std::size_t bytes);
    void handleBufferedFrames();
    // `now`: read once per batch of frames (one clock read for many publishes).
    void handleFrame(wire::Frame::Reader frame, core::TimePoint now);
    void handleHello(std::uint64_t requestId, wire::Hello::Reader hello);
    void handleRequest(std::uint64_t requestId, wire::Frame::Reader frame, core::TimePoint now);
    void handlePublish(std::uint64_t requestId, wire::Publish::Reader publish, core::TimePoint now);
    void handleList(std::uint64_t requestId, wire::ListKind kind);

    // --- writing ---
    struct Extras {
        const void* external = nullptr; // a body referenced, not copied (Outbox::append)
        std::shared_ptr<const void> keepAlive;
    };
    template <class Fill> void send(std::uint64_t requestId, Fill&& fill);
    void sendOk(std::uint64_t requestId);
    void sendError(std::uint64_t requestId, core::ErrorCode code, const std::string& text,
                   bool fatal);
    void sendError(std::uint64_t requestId, const core::Error& error) {
        sendError(requestId, error.code, error.describe(), false);
    }
    void writeDelivery(std::string_view consumerTag, std::uint64_t deliveryTag, bool redelivered,
                       const core::MessageRef& message);
    void scheduleFlush();
    void flush();
    void onWritten(const asio::error_code& error);

    // --- ending ---
    // Sends an error (fatal) and closes once it is written.
    // `requestId`: the request that caused it, if any (a refused hello), so the client can tell.
    void fail(core::ErrorCode code, const std::string& text, std::uint64_t requestId = 0);
    void beginClose();
    void terminate(const std::string& why);

    // --- timers ---
    void armTimer();
    void onTimer(const asio::error_code& error);

    // --- core::DeliverySink: only appends to the outbox (never calls the core) ---
    void deliver(const core::Delivery& delivery) override;
    void onCancelled(std::string_view consumerTag) override;
    bool acceptsMore() const override;

    Server& server_;
    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    std::uint64_t id_;
    std::string name_;
    State state_ = State::AWAITING_HELLO;

    protocol::FrameReader reader_;
    protocol::Outbox outbox_;
    // The first segment of every frame we build: zeroed, and zeroed again by each builder.
    // 8 KiB: every frame but those with large bodies fits.
    static constexpr std::size_t SCRATCH_WORDS = 1024;
    // The most one read takes from a socket, so that a fast publisher cannot hold the loop for
    // long while other connections (a consumer's acks) wait: fairness between connections.
    static constexpr std::size_t READ_CHUNK = 32 * 1024;
    // What a connection that only publishes reads per turn while the queue its last publish
    // reached is behind its consumers (FlowControl::lowFor), before flow control holds it: the
    // consumers get the loop more often, and the publisher feels TCP's backpressure sooner.
    // (Fanout to 10 queues without it: 0.72M instead of 1.05-1.19M deliveries/s.)
    static constexpr std::size_t PUBLISHER_CHUNK = 4 * 1024;
    std::size_t readChunk() const;
    // Has published and consumes nothing: flow control may hold it (see FlowControl).
    bool onlyPublishes() const;
    // Not read because flow control holds it; a connection that started consuming in the read
    // that got it held is read again at once (it must read its acks), held or not.
    bool heldByFlow() const { return flowHeld_ && onlyPublishes(); }
    std::unique_ptr<capnp::word[]> scratch_ = std::make_unique<capnp::word[]>(SCRATCH_WORDS);
    bool reading_ = false;
    bool flowHeld_ = false;     // FlowControl holds this connection: no reads until it releases
    bool fillsBacklog_ = false; // its last publish reached a queue past FlowControl::lowFor
    bool flushPosted_ = false;
    mutable bool consumersPaused_ = false; // acceptsMore() said no; resume when drained
    // Deliveries made from inside consume(), sent after its consumeOk.
    struct Held {
        std::string consumerTag;
        std::uint64_t deliveryTag;
        bool redelivered;
        core::MessageRef message;
    };
    bool holdingDeliveries_ = false;
    std::vector<Held> held_;
    // Publisher confirms waiting for the disk, grouped under one Server::afterSync callback per
    // sync batch rather than one closure each: a publish joins the open group while the sync's
    // waiting callbacks have not been handed to a batch since (Server::syncGeneration), so the
    // group's callback runs only once this publish, too, is on disk.
    struct PendingConfirm {
        std::uint64_t requestId;
        bool rejected;
        std::uint32_t queues;
        bool refusalsOnly; // wire::Publish.refusalsOnly: no answer unless refused
    };
    struct ConfirmGroup {
        std::uint64_t generation;
        std::vector<PendingConfirm> confirms;
    };
    std::shared_ptr<ConfirmGroup> openConfirms_;
    void sendConfirm(const PendingConfirm& confirm, const std::string* failure);
    bool publishBlocked_ = false;
    bool hasPublished_ = false;

    core::Vhost* vhost_ = nullptr;
    core::Channel* channel_ = nullptr;
    std::uint32_t prefetch_ = 0; // qos: for consumers started after it
    std::string clientName_;
    std::string username_;

    std::chrono::steady_clock::time_point connectedAt_;
    std::chrono::steady_clock::time_point lastRead_;
    std::chrono::steady_clock::time_point lastWrite_;
    std::chrono::steady_clock::time_point closingSince_;
    std::chrono::steady_clock::time_point writeStartedAt_;
    std::size_t heldBytes_ = 0; // bodies in held_: counted by acceptsMore()
    std::chrono::seconds heartbeat_{0};
    std::uint64_t framesIn_ = 0;
    std::uint64_t framesOut_ = 0;
};

} // namespace depot::net
