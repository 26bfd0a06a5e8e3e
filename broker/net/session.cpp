#include "broker/net/session.h"

#include "broker/core/vhost.h"
#include "broker/net/server.h"
#include "protocol/convert.h"

#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace depot::net {

namespace {

using protocol::fromWire;
using protocol::text;
using protocol::toWire;
using protocol::view;
using protocol::wireText;
using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds TICK{250};
constexpr std::chrono::seconds CLOSING_TIMEOUT{5};

const char* frameName(wire::Frame::Which which) {
    switch (which) {
    case wire::Frame::HELLO_OK:
        return "helloOk";
    case wire::Frame::ERROR:
        return "error";
    case wire::Frame::OK:
        return "ok";
    case wire::Frame::BLOCKED:
        return "blocked";
    case wire::Frame::UNBLOCKED:
        return "unblocked";
    case wire::Frame::DECLARE_QUEUE_OK:
        return "declareQueueOk";
    case wire::Frame::MESSAGE_COUNT:
        return "messageCount";
    case wire::Frame::CONFIRM:
        return "confirm";
    case wire::Frame::RETURNED:
        return "returned";
    case wire::Frame::CONSUME_OK:
        return "consumeOk";
    case wire::Frame::CANCELLED:
        return "cancelled";
    case wire::Frame::DELIVER:
        return "deliver";
    case wire::Frame::GET_OK:
        return "getOk";
    case wire::Frame::LIST_OK:
        return "listOk";
    default:
        return "a server frame";
    }
}

// Fills a wire Message from a core message; returns what Outbox::append must keep alive.
void fillMessage(capnp::MessageBuilder& builder, wire::Message::Builder out,
                 const core::MessageRef& message, std::uint64_t deliveryTag, bool redelivered,
                 const void*& external, std::shared_ptr<const void>& keepAlive) {
    out.setExchange(wireText(message->exchange));
    out.setRoutingKey(wireText(message->routingKey));
    out.setRedelivered(redelivered);
    out.setDeliveryTag(deliveryTag);
    toWire(message->properties, out.initProperties());
    if (!message->deaths.empty())
        toWire(message->deaths, out.initDeaths(static_cast<unsigned>(message->deaths.size())));
    external = protocol::setBody(builder, out, message->body);
    if (external != nullptr)
        keepAlive = message;
}

} // namespace

Session::Session(Server& server, asio::ip::tcp::socket socket, std::uint64_t id)
    : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()), id_(id),
      reader_(server.config().maxFrameBytes) {
    asio::error_code error;
    const auto peer = socket_.remote_endpoint(error);
    name_ = error ? "connection-" + std::to_string(id)
                  : peer.address().to_string() + ":" + std::to_string(peer.port());
}

Session::~Session() = default;

void Session::start() {
    connectedAt_ = lastRead_ = lastWrite_ = SteadyClock::now();
    asio::error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
    spdlog::info("connection {} accepted", name_);
    armTimer();
    readMore();
}

SessionInfo Session::info() const {
    SessionInfo info;
    info.name = name_;
    info.clientName = clientName_;
    info.username = username_;
    info.vhost = vhost_ != nullptr ? vhost_->name() : "";
    info.connectedSeconds = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() - connectedAt_)
            .count());
    info.framesIn = framesIn_;
    info.framesOut = framesOut_;
    info.unacked = channel_ != nullptr ? channel_->unackedCount() : 0;
    info.consumers = channel_ != nullptr ? channel_->consumerCount() : 0;
    info.blocked = publishBlocked_;
    info.flow = heldByFlow();
    return info;
}

// --- reading ---

void Session::readMore() {
    if (reading_ || publishBlocked_ || heldByFlow() || state_ == State::CLOSING ||
        state_ == State::CLOSED)
        return;
    const std::span<std::byte> room = reader_.writable();
    reading_ = true;
    socket_.async_read_some(
        asio::buffer(room.data(), std::min(room.size(), readChunk())),
        [self = shared_from_this()](const asio::error_code& error, std::size_t bytes) {
            self->onRead(error, bytes);
        });
}

std::size_t Session::readChunk() const {
    return fillsBacklog_ && onlyPublishes() ? PUBLISHER_CHUNK : READ_CHUNK;
}

bool Session::onlyPublishes() const {
    return hasPublished_ && (channel_ == nullptr || channel_->consumerCount() == 0);
}

void Session::onRead(const asio::error_code& error, std::size_t bytes) {
    reading_ = false;
    if (state_ == State::CLOSED)
        return;
    if (error) {
        terminate(error == asio::error::eof ? "client closed the connection" : error.message());
        return;
    }
    lastRead_ = SteadyClock::now();
    reader_.commit(bytes);
    handleBufferedFrames();
    readMore();
}

void Session::handleBufferedFrames() {
    std::optional<capnp::FlatArrayMessageReader> frame;
    std::string problem;
    const core::TimePoint now = server_.runtime().now();
    while (state_ == State::AWAITING_HELLO || state_ == State::OPEN) {
        const auto status = reader_.next(frame, problem);
        if (status == protocol::FrameReader::Status::NEED_MORE)
            break;
        if (status == protocol::FrameReader::Status::ERROR) {
            fail(core::ErrorCode::FRAME_ERROR, problem);
            break;
        }
        ++framesIn_;
        try {
            handleFrame(frame->getRoot<wire::Frame>(), now);
        } catch (const kj::Exception& e) {
            fail(core::ErrorCode::FRAME_ERROR,
                 std::string("malformed frame: ") + e.getDescription().cStr());
        }
    }
    frame.reset();
    server_.runtime().rearm();
    server_.flow().check(); // these frames may have been acks that drained a queue
}

void Session::handleFrame(wire::Frame::Reader frame, core::TimePoint now) {
    const std::uint64_t requestId = frame.getRequestId();
    const wire::Frame::Which which = frame.which();
    if (state_ == State::AWAITING_HELLO) {
        if (which == wire::Frame::HELLO)
            handleHello(requestId, frame.getHello());
        else
            fail(core::ErrorCode::UNEXPECTED_FRAME, "the first frame must be hello");
        return;
    }
    switch (which) {
    case wire::Frame::HEARTBEAT:
        return;
    case wire::Frame::CLOSE:
        spdlog::info("connection {} closing: {}", name_, view(frame.getClose().getReason()));
        send(requestId,
             [](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) { f.setCloseOk(); });
        beginClose();
        return;
    case wire::Frame::CLOSE_OK:
        terminate("closed");
        return;
    case wire::Frame::HELLO:
        fail(core::ErrorCode::UNEXPECTED_FRAME, "hello was already said");
        return;
    case wire::Frame::HELLO_OK:
    case wire::Frame::ERROR:
    case wire::Frame::OK:
    case wire::Frame::BLOCKED:
    case wire::Frame::UNBLOCKED:
    case wire::Frame::DECLARE_QUEUE_OK:
    case wire::Frame::MESSAGE_COUNT:
    case wire::Frame::CONFIRM:
    case wire::Frame::RETURNED:
    case wire::Frame::CONSUME_OK:
    case wire::Frame::CANCELLED:
    case wire::Frame::DELIVER:
    case wire::Frame::GET_OK:
    case wire::Frame::LIST_OK:
        fail(core::ErrorCode::UNEXPECTED_FRAME,
             std::string("a client may not send ") + frameName(which));
        return;
    default:
        break;
    }
    try {
        handleRequest(requestId, frame, now);
    } catch (const protocol::ProtocolError& e) {
        sendError(requestId, e.code(),
                  std::string(core::errorCodeName(e.code())) + " - " + e.what(), false);
    }
    switch (which) {
    case wire::Frame::DECLARE_EXCHANGE:
    case wire::Frame::DELETE_EXCHANGE:
    case wire::Frame::DECLARE_QUEUE:
    case wire::Frame::DELETE_QUEUE:
    case wire::Frame::BIND:
    case wire::Frame::UNBIND:
    case wire::Frame::CANCEL: // an auto-delete queue goes with its last consumer
        // Saved now, while the answer still waits in the outbox: a change the client was told
        // about is on disk.
        server_.definitionsChanged();
        break;
    default:
        break;
    }
}

void Session::handleHello(std::uint64_t requestId, wire::Hello::Reader hello) {
    const ServerConfig& config = server_.config();
    if (hello.getProtocolVersion() != wire::PROTOCOL_VERSION) {
        fail(core::ErrorCode::NOT_IMPLEMENTED,
             "protocol version " + std::to_string(hello.getProtocolVersion()) +
                 " is not supported; this server speaks version " +
                 std::to_string(wire::PROTOCOL_VERSION),
             requestId);
        return;
    }
    clientName_ = text(hello.getClientName());
    username_ = text(hello.getUsername());
    if (username_ != config.username || view(hello.getPassword()) != config.password) {
        fail(core::ErrorCode::ACCESS_REFUSED,
             "login was refused for user '" + username_ + "': wrong username or password",
             requestId);
        return;
    }
    std::string vhostName = text(hello.getVhost());
    if (vhostName.empty())
        vhostName = "/";
    vhost_ = server_.runtime().broker().findVhost(vhostName);
    if (vhost_ == nullptr) {
        fail(core::ErrorCode::NOT_ALLOWED, "vhost '" + vhostName + "' not found", requestId);
        return;
    }
    channel_ = &vhost_->openChannel();
    const std::uint32_t wanted = hello.getHeartbeatSeconds();
    const std::uint32_t offered = config.heartbeatSeconds;
    const std::uint32_t agreed =
        wanted == 0 ? offered : (offered == 0 ? wanted : std::min(wanted, offered));
    heartbeat_ = std::chrono::seconds(agreed);
    state_ = State::OPEN;
    spdlog::info("connection {} open: client '{}', user '{}', vhost '{}', heartbeat {}s", name_,
                 clientName_, username_, vhostName, agreed);
    send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
        auto ok = f.initHelloOk();
        ok.setProtocolVersion(wire::PROTOCOL_VERSION);
        ok.setServerName(wireText(config.serverName));
        ok.setHeartbeatSeconds(agreed);
        ok.setMaxFrameBytes(config.maxFrameBytes);
        ok.setConnectionName(wireText(name_));
    });
}

void Session::handleRequest(std::uint64_t requestId, wire::Frame::Reader frame,
                            core::TimePoint now) {
    core::Channel& channel = *channel_;
    auto answer = [&](const core::Status& status) {
        if (status)
            sendOk(requestId);
        else
            sendError(requestId, status.error());
    };
    auto answerCount = [&](const core::Result<std::uint64_t>& count) {
        if (!count) {
            sendError(requestId, count.error());
            return;
        }
        send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
            f.setMessageCount(*count);
        });
    };

    switch (frame.which()) {
    case wire::Frame::DECLARE_EXCHANGE: {
        const auto d = frame.getDeclareExchange();
        if (d.getPassive()) {
            answer(channel.declareExchangePassive(view(d.getName())));
            return;
        }
        const core::ExchangeType type = fromWire(d.getType());
        answer(channel.declareExchange(
            view(d.getName()), type,
            core::exchangeOptionsFromArguments(d.getDurable(), d.getAutoDelete(), d.getInternal(),
                                               fromWire(d.getArguments()))));
        return;
    }
    case wire::Frame::DELETE_EXCHANGE: {
        const auto d = frame.getDeleteExchange();
        answer(channel.deleteExchange(view(d.getName()), d.getIfUnused()));
        return;
    }
    case wire::Frame::DECLARE_QUEUE: {
        const auto d = frame.getDeclareQueue();
        core::Result<core::QueueDeclareOk> declared = [&]() -> core::Result<core::QueueDeclareOk> {
            if (d.getPassive())
                return channel.declareQueuePassive(view(d.getName()), now);
            auto options = core::queueOptionsFromArguments(
                d.getDurable(), d.getExclusive(), d.getAutoDelete(), fromWire(d.getArguments()));
            if (!options)
                return options.error();
            return channel.declareQueue(view(d.getName()), *options, now);
        }();
        if (!declared) {
            sendError(requestId, declared.error());
            return;
        }
        send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
            auto ok = f.initDeclareQueueOk();
            ok.setName(wireText(declared->queue));
            ok.setMessageCount(declared->messageCount);
            ok.setConsumerCount(declared->consumerCount);
        });
        return;
    }
    case wire::Frame::DELETE_QUEUE: {
        const auto d = frame.getDeleteQueue();
        answerCount(channel.deleteQueue(view(d.getName()), d.getIfUnused(), d.getIfEmpty(), now));
        return;
    }
    case wire::Frame::PURGE:
        answerCount(channel.purgeQueue(view(frame.getPurge()), now));
        return;
    case wire::Frame::BIND:
    case wire::Frame::UNBIND: {
        const bool bind = frame.which() == wire::Frame::BIND;
        const auto b = bind ? frame.getBind() : frame.getUnbind();
        const core::FieldTable arguments = fromWire(b.getArguments());
        const auto source = view(b.getSource());
        const auto destination = view(b.getDestination());
        const auto key = view(b.getKey());
        if (b.getToExchange())
            answer(bind ? channel.bindExchange(destination, source, key, arguments)
                        : channel.unbindExchange(destination, source, key, arguments));
        else
            answer(bind ? channel.bindQueue(destination, source, key, arguments)
                        : channel.unbindQueue(destination, source, key, arguments));
        return;
    }
    case wire::Frame::PUBLISH:
        handlePublish(requestId, frame.getPublish(), now);
        return;
    case wire::Frame::QOS:
        prefetch_ = frame.getQos().getPrefetchCount();
        sendOk(requestId);
        return;
    case wire::Frame::CONSUME: {
        const auto c = frame.getConsume();
        core::ConsumeOptions options;
        options.consumerTag = text(c.getConsumerTag());
        options.prefetchCount = c.getPrefetchCount() != 0 ? c.getPrefetchCount() : prefetch_;
        options.noAck = c.getNoAck();
        options.exclusive = c.getExclusive();
        // The core may deliver at once, from inside consume(): hold those deliveries back so
        // the client sees consumeOk first, as AMQP orders them.
        holdingDeliveries_ = true;
        core::Result<std::string> tag = channel.consume(view(c.getQueue()), *this, options, now);
        holdingDeliveries_ = false;
        if (!tag)
            sendError(requestId, tag.error());
        else
            send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
                f.setConsumeOk(wireText(*tag));
            });
        std::vector<Held> held = std::move(held_);
        held_.clear();
        heldBytes_ = 0;
        for (const Held& h : held)
            writeDelivery(h.consumerTag, h.deliveryTag, h.redelivered, h.message);
        return;
    }
    case wire::Frame::CANCEL:
        answer(channel.cancel(view(frame.getCancel()), now));
        return;
    case wire::Frame::ACK: {
        const auto a = frame.getAck();
        if (core::Status s = channel.ack(a.getDeliveryTag(), a.getMultiple(), now); !s)
            sendError(requestId, s.error());
        return;
    }
    case wire::Frame::NACK: {
        const auto n = frame.getNack();
        if (core::Status s = channel.nack(n.getDeliveryTag(), n.getMultiple(), n.getRequeue(), now);
            !s)
            sendError(requestId, s.error());
        return;
    }
    case wire::Frame::REJECT: {
        const auto r = frame.getReject();
        if (core::Status s = channel.reject(r.getDeliveryTag(), r.getRequeue(), now); !s)
            sendError(requestId, s.error());
        return;
    }
    case wire::Frame::GET: {
        const auto g = frame.getGet();
        auto got = channel.get(view(g.getQueue()), g.getNoAck(), now);
        if (!got) {
            sendError(requestId, got.error());
            return;
        }
        send(requestId, [&](capnp::MessageBuilder& builder, wire::Frame::Builder f, Extras& x) {
            auto ok = f.initGetOk();
            if (!got->has_value()) {
                ok.setEmpty();
                return;
            }
            const core::Delivery& d = **got;
            ok.setMessageCount(d.messageCount);
            fillMessage(builder, ok.initMessage(), d.message, d.deliveryTag, d.redelivered,
                        x.external, x.keepAlive);
        });
        return;
    }
    case wire::Frame::RECOVER:
        channel.recover(now);
        sendOk(requestId);
        return;
    case wire::Frame::LIST:
        handleList(requestId, frame.getList());
        return;
    default:
        // A frame type from a newer protocol: refuse it, but keep the connection (evolution).
        sendError(requestId, core::ErrorCode::NOT_IMPLEMENTED,
                  "NOT_IMPLEMENTED - unknown frame type " +
                      std::to_string(static_cast<unsigned>(frame.which())),
                  false);
        return;
    }
}

void Session::handlePublish(std::uint64_t requestId, wire::Publish::Reader publish,
                            core::TimePoint now) {
    if (!hasPublished_) {
        hasPublished_ = true;
        // The first publish during an alarm: blocked from the next read.
        if (const std::string reason = server_.publishBlockReason(); !reason.empty())
            setPublishBlocked(true, reason);
    }
    // Built where it will live: no temporary Message to move eleven strings out of.
    auto built = std::make_shared<core::Message>();
    built->exchange = view(publish.getExchange());
    built->routingKey = view(publish.getRoutingKey());
    protocol::readProperties(publish.getProperties(), built->properties);
    built->body = protocol::paddedBody(publish.getBody());
    core::MessageRef message = std::move(built);
    auto result = channel_->publish(message, publish.getMandatory(), now);
    server_.notePublished(message->body.size());
    if (!result) {
        sendError(requestId, result.error());
        return;
    }
    const FlowControl::Pressure pressure = FlowControl::pressure(result->routed);
    fillsBacklog_ = pressure.behind;
    if (pressure.over != nullptr && !flowHeld_ && onlyPublishes())
        flowHeld_ = server_.flow().hold(vhost_->name(), *pressure.over, weak_from_this(), [this] {
            flowHeld_ = false;
            lastRead_ = SteadyClock::now(); // we were not reading: silence was ours
            readMore();
        });
    if (result->returned) {
        send(0, [&](capnp::MessageBuilder& builder, wire::Frame::Builder f, Extras& x) {
            auto r = f.initReturned();
            r.setReplyCode(312);
            r.setReplyText("NO_ROUTE");
            r.setExchange(wireText(message->exchange));
            r.setRoutingKey(wireText(message->routingKey));
            toWire(message->properties, r.initProperties());
            r.setRequestId(requestId);
            x.external = protocol::setBody(builder, r, message->body);
            if (x.external != nullptr)
                x.keepAlive = message;
        });
    }
    if (requestId != 0) {
        // Sent once what the publish journaled (a persistent message in a durable queue) is on
        // disk: a confirmed message survives a crash. Group commit: one fsync per batch.
        const PendingConfirm confirm{requestId, result->rejected,
                                     static_cast<std::uint32_t>(result->queues),
                                     publish.getRefusalsOnly()};
        if (!server_.syncPending()) {
            sendConfirm(confirm, nullptr); // nothing waits for the disk: nothing to group
            return;
        }
        const std::uint64_t generation = server_.syncGeneration();
        if (!openConfirms_ || openConfirms_->generation != generation) {
            openConfirms_ = std::make_shared<ConfirmGroup>(ConfirmGroup{generation, {}});
            server_.afterSync(
                [self = shared_from_this(), group = openConfirms_](const std::string* failure) {
                    for (const PendingConfirm& c : group->confirms)
                        self->sendConfirm(c, failure); // `self` keeps the session alive until then
                });
        }
        openConfirms_->confirms.push_back(confirm);
    }
}

void Session::sendConfirm(const PendingConfirm& confirm, const std::string* failure) {
    if (confirm.refusalsOnly && !confirm.rejected && failure == nullptr)
        return; // granted: no answer asked for
    send(confirm.requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
        auto c = f.initConfirm();
        c.setAck(!confirm.rejected && failure == nullptr);
        c.setRoutedQueues(confirm.queues);
        if (failure != nullptr)
            c.setReason(wireText("not written to disk: " + *failure));
        else if (confirm.rejected)
            c.setReason("a queue is full and its x-overflow is reject-publish");
    });
}

void Session::handleList(std::uint64_t requestId, wire::ListKind kind) {
    send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
        auto ok = f.initListOk();
        switch (kind) {
        case wire::ListKind::EXCHANGES: {
            const auto exchanges = vhost_->listExchanges();
            auto list = ok.initExchanges(static_cast<unsigned>(exchanges.size()));
            for (unsigned i = 0; i < exchanges.size(); ++i) {
                const core::ExchangeInfo& x = exchanges[i];
                list[i].setName(wireText(x.name));
                list[i].setType(toWire(x.type));
                list[i].setDurable(x.options.durable);
                list[i].setAutoDelete(x.options.autoDelete);
                list[i].setInternal(x.options.internal);
                toWire(x.options.arguments,
                       list[i].initArguments(static_cast<unsigned>(x.options.arguments.size())));
            }
            return;
        }
        case wire::ListKind::QUEUES: {
            const auto queues = vhost_->listQueues();
            auto list = ok.initQueues(static_cast<unsigned>(queues.size()));
            for (unsigned i = 0; i < queues.size(); ++i) {
                const core::QueueInfo& q = queues[i];
                list[i].setName(wireText(q.name));
                list[i].setDurable(q.options.durable);
                list[i].setExclusive(q.options.exclusive);
                list[i].setAutoDelete(q.options.autoDelete);
                const core::FieldTable arguments = core::queueArguments(q.options);
                toWire(arguments, list[i].initArguments(static_cast<unsigned>(arguments.size())));
                list[i].setReady(q.ready);
                list[i].setReadyBytes(q.readyBytes);
                list[i].setPagedOut(q.paged);
                list[i].setUnacked(q.unacked);
                list[i].setConsumers(q.consumers);
            }
            return;
        }
        case wire::ListKind::BINDINGS: {
            const auto bindings = vhost_->listBindings();
            auto list = ok.initBindings(static_cast<unsigned>(bindings.size()));
            for (unsigned i = 0; i < bindings.size(); ++i) {
                const core::BindingInfo& b = bindings[i];
                list[i].setSource(wireText(b.source));
                list[i].setDestination(wireText(b.destination));
                list[i].setToExchange(b.destinationIsExchange);
                list[i].setKey(wireText(b.key));
                toWire(b.arguments,
                       list[i].initArguments(static_cast<unsigned>(b.arguments.size())));
            }
            return;
        }
        case wire::ListKind::CONNECTIONS: {
            const auto sessions = server_.listSessions();
            auto list = ok.initConnections(static_cast<unsigned>(sessions.size()));
            for (unsigned i = 0; i < sessions.size(); ++i) {
                const SessionInfo& s = sessions[i];
                list[i].setName(wireText(s.name));
                list[i].setClientName(wireText(s.clientName));
                list[i].setUsername(wireText(s.username));
                list[i].setVhost(wireText(s.vhost));
                list[i].setConnectedSeconds(s.connectedSeconds);
                list[i].setFramesIn(s.framesIn);
                list[i].setFramesOut(s.framesOut);
                list[i].setUnacked(s.unacked);
                list[i].setConsumers(s.consumers);
                list[i].setBlocked(s.blocked);
                list[i].setFlow(s.flow);
            }
            return;
        }
        case wire::ListKind::CONSUMERS: {
            struct Row {
                const core::Consumer* consumer;
                std::string connection;
            };
            std::vector<Row> rows;
            server_.forEachChannel([&](const core::Channel& channel, const std::string& owner) {
                if (&channel.vhost() != vhost_)
                    return;
                channel.forEachConsumer([&](const core::Consumer& c) {
                    rows.push_back(Row{&c, owner});
                });
            });
            auto list = ok.initConsumers(static_cast<unsigned>(rows.size()));
            for (unsigned i = 0; i < rows.size(); ++i) {
                const core::Consumer& c = *rows[i].consumer;
                list[i].setQueue(wireText(c.queue().name()));
                list[i].setConsumerTag(wireText(c.tag()));
                list[i].setConnection(wireText(rows[i].connection));
                list[i].setNoAck(c.noAck());
                list[i].setExclusive(c.exclusive());
                list[i].setPrefetchCount(c.prefetchCount());
                list[i].setUnacked(c.unackedCount());
            }
            return;
        }
        }
        throw protocol::ProtocolError(core::ErrorCode::COMMAND_INVALID, "unknown list kind");
    });
}

// --- writing ---

template <class Fill> void Session::send(std::uint64_t requestId, Fill&& fill) {
    if (state_ == State::CLOSED)
        return;
    Extras extras;
    {
        // The scratch segment is zeroed again by the builder's destructor, ready for reuse.
        capnp::MallocMessageBuilder builder(
            kj::ArrayPtr<capnp::word>(scratch_.get(), SCRATCH_WORDS));
        wire::Frame::Builder frame = builder.initRoot<wire::Frame>();
        frame.setRequestId(requestId);
        fill(builder, frame, extras);
        outbox_.append(builder, extras.external, std::move(extras.keepAlive));
    }
    ++framesOut_;
    scheduleFlush();
}

void Session::sendOk(std::uint64_t requestId) {
    send(requestId, [](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) { f.setOk(); });
}

void Session::sendError(std::uint64_t requestId, core::ErrorCode code, const std::string& text,
                        bool fatal) {
    send(requestId, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
        auto e = f.initError();
        e.setCode(toWire(code));
        e.setMessage(wireText(text));
        e.setFatal(fatal);
    });
}

void Session::writeDelivery(std::string_view consumerTag, std::uint64_t deliveryTag,
                            bool redelivered, const core::MessageRef& message) {
    send(0, [&](capnp::MessageBuilder& builder, wire::Frame::Builder f, Extras& x) {
        auto d = f.initDeliver();
        d.setConsumerTag(wireText(consumerTag));
        fillMessage(builder, d.initMessage(), message, deliveryTag, redelivered, x.external,
                    x.keepAlive);
    });
}

void Session::scheduleFlush() {
    if (flushPosted_ || outbox_.writing())
        return;
    flushPosted_ = true;
    // Posted, not immediate: everything produced in this loop turn goes out in one write.
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->flush(); });
}

void Session::flush() {
    flushPosted_ = false;
    if (state_ == State::CLOSED || outbox_.writing() || !outbox_.hasPending())
        return;
    writeStartedAt_ = SteadyClock::now();
    const auto& ranges = outbox_.startWrite();
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(ranges.size());
    for (const auto& range : ranges)
        buffers.emplace_back(range.data(), range.size());
    asio::async_write(socket_, buffers,
                      [self = shared_from_this()](const asio::error_code& error, std::size_t) {
                          self->onWritten(error);
                      });
}

void Session::onWritten(const asio::error_code& error) {
    outbox_.finishWrite();
    if (state_ == State::CLOSED)
        return;
    if (error) {
        terminate("write failed: " + error.message());
        return;
    }
    lastWrite_ = SteadyClock::now();
    if (consumersPaused_ && outbox_.bufferedBytes() <= server_.config().outboxLowWater &&
        channel_ != nullptr) {
        consumersPaused_ = false;
        channel_->resumeDeliveries(server_.runtime().now());
        server_.runtime().rearm();
        server_.flow().check();
    }
    if (outbox_.hasPending())
        flush();
    else if (state_ == State::CLOSING)
        terminate("closed");
}

// --- ending ---

void Session::fail(core::ErrorCode code, const std::string& text, std::uint64_t requestId) {
    spdlog::warn("connection {}: {} - {}", name_, core::errorCodeName(code), text);
    sendError(requestId, code, std::string(core::errorCodeName(code)) + " - " + text, true);
    beginClose();
}

void Session::beginClose() {
    if (state_ == State::CLOSING || state_ == State::CLOSED)
        return;
    state_ = State::CLOSING;
    closingSince_ = SteadyClock::now();
    // Nobody will ack what we deliver now: keep it in the queues.
    if (channel_ != nullptr)
        channel_->setFlow(false, server_.runtime().now());
    // Stop reading, but let the outbox drain: the client should see why we close.
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
    if (!outbox_.writing() && !outbox_.hasPending())
        terminate("closed");
}

void Session::shutdown(const std::string& reason) {
    if (state_ == State::CLOSED)
        return;
    if (state_ == State::OPEN)
        send(0, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
            f.initClose().setReason(wireText(reason));
        });
    beginClose();
}

void Session::terminate(const std::string& why) {
    if (state_ == State::CLOSED)
        return;
    auto self = shared_from_this(); // forget() below may drop the server's reference
    state_ = State::CLOSED;
    asio::error_code ignored;
    timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (channel_ != nullptr) {
        // Requeues unacked deliveries (redelivered) and deletes exclusive queues.
        vhost_->closeChannel(*channel_, server_.runtime().now());
        channel_ = nullptr;
        server_.runtime().rearm();
        server_.definitionsChanged(); // auto-delete queues its consumers took with them
    }
    spdlog::info("connection {} closed: {}", name_, why);
    server_.forget(id_);
}

void Session::setPublishBlocked(bool blocked, const std::string& reason) {
    if (blocked == publishBlocked_ || state_ != State::OPEN)
        return;
    // Only connections that publish are blocked, as in RabbitMQ: a consumer's connection must
    // keep reading its acks, or the queues it drains could never fall below the limit.
    if (blocked && !hasPublished_)
        return;
    publishBlocked_ = blocked;
    if (blocked)
        send(0, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
            f.setBlocked(wireText(reason));
        });
    else {
        send(0, [](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) { f.setUnblocked(); });
        lastRead_ = SteadyClock::now(); // we were not reading: silence was ours
        readMore();
    }
}

// --- timers ---

void Session::armTimer() {
    timer_.expires_after(TICK);
    timer_.async_wait(
        [self = shared_from_this()](const asio::error_code& error) { self->onTimer(error); });
}

void Session::onTimer(const asio::error_code& error) {
    if (error || state_ == State::CLOSED)
        return;
    const auto now = SteadyClock::now();
    if (state_ == State::AWAITING_HELLO &&
        now - connectedAt_ >= server_.config().handshakeTimeout) {
        fail(core::ErrorCode::FRAME_ERROR, "no hello within the handshake timeout");
    } else if (state_ == State::CLOSING && now - closingSince_ >= CLOSING_TIMEOUT) {
        terminate("the client did not read our last frames in time");
        return;
    } else if (outbox_.writing() && now - writeStartedAt_ >= server_.config().writeStallTimeout) {
        terminate("the client has not read for " +
                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                     server_.config().writeStallTimeout)
                                     .count()) +
                  " s");
        return;
    } else if (state_ == State::OPEN && heartbeat_.count() > 0) {
        // Only a reading connection can hear heartbeats: a blocked one is not judged.
        if (!publishBlocked_ && !heldByFlow() && now - lastRead_ >= 2 * heartbeat_) {
            terminate("missed heartbeats from the client");
            return;
        }
        if (now - lastWrite_ >= heartbeat_ && !outbox_.writing()) {
            lastWrite_ = now;
            send(0,
                 [](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) { f.setHeartbeat(); });
        }
    }
    armTimer();
}

// --- core::DeliverySink ---

void Session::deliver(const core::Delivery& delivery) {
    if (holdingDeliveries_) {
        held_.push_back(Held{std::string(delivery.consumerTag), delivery.deliveryTag,
                             delivery.redelivered, delivery.message});
        heldBytes_ += delivery.message->body.size();
        return;
    }
    writeDelivery(delivery.consumerTag, delivery.deliveryTag, delivery.redelivered,
                  delivery.message);
}

void Session::onCancelled(std::string_view consumerTag) {
    send(0, [&](capnp::MessageBuilder&, wire::Frame::Builder f, Extras&) {
        f.setCancelled(wireText(consumerTag));
    });
}

bool Session::acceptsMore() const {
    if (outbox_.bufferedBytes() + heldBytes_ < server_.config().outboxHighWater)
        return true;
    consumersPaused_ = true;
    return false;
}

} // namespace depot::net
