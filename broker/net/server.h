#pragma once
// depotd's TCP server: accepts connections on one endpoint and runs a Session for each, all on
// the io thread that owns the broker (see docs/architecture.md for why one thread).

#include "broker/net/config.h"
#include "broker/net/definitions.h"
#include "broker/net/durable_messages.h"
#include "broker/net/flow_control.h"
#include "broker/net/session.h"
#include "broker/runtime/broker_runtime.h"

#include <asio.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace depot::net {

class Server {
public:
    // Binds and listens at once (throws asio::system_error if the address is taken). With a
    // data dir, first declares the durable definitions kept there (throws std::runtime_error
    // when they cannot be read).
    Server(runtime::BrokerRuntime& runtime, const asio::ip::tcp::endpoint& endpoint,
           ServerConfig config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // The bound endpoint: with port 0, the port the kernel chose.
    asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
    // Stops accepting and closes every connection (each is told why). Call on the io thread.
    void stop(const std::string& reason);

    runtime::BrokerRuntime& runtime() { return runtime_; }
    const ServerConfig& config() const { return config_; }
    std::vector<SessionInfo> listSessions() const;
    std::size_t sessionCount() const { return sessions_.size(); }
    // The message store's counters; nullopt without a data dir.
    std::optional<store::StoreStats> storeStats() const {
        return durable_ ? std::optional<store::StoreStats>(durable_->stats()) : std::nullopt;
    }

    // Called by sessions.
    void forget(std::uint64_t sessionId);
    // Why publishers are blocked now ("" when they are not): the memory alarm
    // (--memory-limit) or the disk alarm (the message store cannot write), as RabbitMQ's
    // resource alarms block every publishing connection.
    std::string publishBlockReason() const;
    // Holds connections that only publish while the queues they fill are far behind.
    FlowControl& flow() { return flow_; }
    // After anything that may have changed the definitions (a declare, delete, bind, unbind,
    // cancel, or a closed connection's cleanup): with a data dir, the durable ones are written
    // before this returns, so before the client hears that its change succeeded.
    void definitionsChanged();
    // Runs `done` once what was journaled so far is on disk (at once without a data dir):
    // publisher confirms wait for it. `failure` is the reason when it could not be written.
    void afterSync(std::function<void(const std::string* failure)> done);
    bool syncPending() const { return durable_ && durable_->syncPending(); }
    std::uint64_t syncGeneration() const { return durable_ ? durable_->syncGeneration() : 0; }
    // A publish of `bytes` was routed: past an eighth of the limit since the last check, check
    // now rather than at the next tick, so a fast publisher cannot overshoot by much.
    void notePublished(std::size_t bytes);
    // The figure the memory alarm watches, in bytes (see ServerConfig::memoryLimitBytes).
    std::size_t messageBytes() const;
    // fn(const core::Channel&, const std::string& connectionName) for each open session.
    template <class F> void forEachChannel(F&& fn) const {
        for (const auto& entry : sessions_)
            if (const core::Channel* channel = entry.second->channel())
                fn(*channel, entry.second->name());
    }

private:
    void accept();
    void checkMemory(); // evaluates, then again in 50 ms
    void evaluateMemory();
    void applyAlarms(); // blocks or unblocks every session as publishBlockReason() says
    void tickFlow();    // flow_.tick(), then again in FlowControl::TICK

    runtime::BrokerRuntime& runtime_;
    ServerConfig config_;
    asio::ip::tcp::acceptor acceptor_;
    asio::ip::tcp::endpoint endpoint_;
    std::map<std::uint64_t, std::shared_ptr<Session>> sessions_;
    std::uint64_t nextSessionId_ = 1;
    bool stopped_ = false;
    asio::steady_timer memoryTimer_;
    asio::steady_timer flowTimer_;
    FlowControl flow_;
    int dataDirLock_ = -1; // held (flock) while this server uses its data dir
    std::optional<DefinitionsFile> definitions_;
    std::optional<DurableMessages> durable_;
    bool alarm_ = false;    // memory
    std::string diskAlarm_; // the store's write failure, "" when none
    std::size_t publishedSinceCheck_ = 0;
};

} // namespace depot::net
