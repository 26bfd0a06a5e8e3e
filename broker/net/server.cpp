#include "broker/net/server.h"

#include "broker/core/queue_options.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace depot::net {

Server::Server(runtime::BrokerRuntime& runtime, const asio::ip::tcp::endpoint& endpoint,
               ServerConfig config)
    : runtime_(runtime), config_(std::move(config)), acceptor_(runtime.context()),
      memoryTimer_(runtime.context()), flowTimer_(runtime.context()), flow_(runtime.broker()) {
    if (!config_.dataDir.empty()) {
        std::filesystem::create_directories(config_.dataDir);
        // Two brokers on one store would corrupt it: the second one refuses to start.
        const std::filesystem::path lock = config_.dataDir / "lock";
        dataDirLock_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (dataDirLock_ < 0 || ::flock(dataDirLock_, LOCK_EX | LOCK_NB) != 0) {
            if (dataDirLock_ >= 0)
                ::close(dataDirLock_);
            throw std::runtime_error("data dir " + config_.dataDir.string() +
                                     " is in use by another depotd (" + lock.string() + ")");
        }
        definitions_.emplace(config_.dataDir / "definitions");
        const auto loaded = definitions_->load(runtime_.broker(), runtime_.now());
        durable_.emplace(config_.dataDir / "messages", runtime_.context(),
                         [this](const std::string& failure) {
                             diskAlarm_ = failure;
                             applyAlarms();
                         });
        // The journal first: what a length limit or a TTL takes while messages are restored,
        // and the dead letters that makes, are written like any other.
        for (const std::string& name : runtime_.broker().vhostNames())
            runtime_.broker().findVhost(name)->setJournal(&*durable_);
        const std::size_t messages = durable_->recover(runtime_.broker(), runtime_.now());
        runtime_.rearm();
        spdlog::info("data dir {}: {} durable exchanges, {} queues, {} bindings, {} persistent "
                     "messages recovered",
                     config_.dataDir.string(), loaded.exchanges, loaded.queues, loaded.bindings,
                     messages);
    }
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    endpoint_ = acceptor_.local_endpoint();
    accept();
    if (config_.memoryLimitBytes > 0)
        checkMemory();
    tickFlow();
}

void Server::afterSync(std::function<void(const std::string* failure)> done) {
    if (durable_)
        durable_->afterSync(std::move(done));
    else
        done(nullptr);
}

void Server::definitionsChanged() {
    if (!definitions_)
        return;
    try {
        definitions_->saveIfChanged(runtime_.broker());
    } catch (const std::exception& e) {
        // The change stands in memory; the next successful save carries it. Said loudly: a
        // restart before then would lose it.
        spdlog::error("durable definitions not saved: {}", e.what());
    }
}

std::size_t Server::messageBytes() const {
    std::size_t bytes = 0;
    core::Broker& broker = runtime_.broker();
    for (const std::string& name : broker.vhostNames())
        if (core::Vhost* vhost = broker.findVhost(name))
            for (const core::QueueInfo& queue : vhost->listQueues())
                bytes += queue.readyBytes - queue.pagedBytes; // paged out: on disk only
    for (const auto& [id, session] : sessions_)
        bytes += session->bufferedBytes();
    return bytes;
}

// Polled rather than computed on each publish: a few queue listings every 50 ms cost nothing,
// and the alarm needs no exactness, only a bound.
void Server::checkMemory() {
    evaluateMemory();
    memoryTimer_.expires_after(std::chrono::milliseconds(50));
    memoryTimer_.async_wait([this](const asio::error_code& error) {
        if (!error && !stopped_)
            checkMemory();
    });
}

void Server::notePublished(std::size_t bytes) {
    if (config_.memoryLimitBytes == 0)
        return;
    publishedSinceCheck_ += bytes;
    if (publishedSinceCheck_ >= config_.memoryLimitBytes / 8)
        evaluateMemory();
}

void Server::evaluateMemory() {
    publishedSinceCheck_ = 0;
    const std::size_t used = messageBytes();
    const std::size_t limit = config_.memoryLimitBytes;
    if (!alarm_ && used > limit) {
        alarm_ = true;
        spdlog::warn("memory alarm: {} bytes of messages held, limit {}: blocking publishers", used,
                     limit);
        applyAlarms();
    } else if (alarm_ && used < limit / 10 * 8) {
        alarm_ = false;
        spdlog::info("memory alarm cleared: {} bytes of messages held", used);
        applyAlarms();
    }
}

void Server::tickFlow() {
    flow_.tick();
    flowTimer_.expires_after(FlowControl::TICK);
    flowTimer_.async_wait([this](const asio::error_code& error) {
        if (!error && !stopped_)
            tickFlow();
    });
}

std::string Server::publishBlockReason() const {
    if (alarm_)
        return "memory alarm: message bytes above --memory-limit";
    if (!diskAlarm_.empty())
        return "disk alarm: the message store cannot write (" + diskAlarm_ + ")";
    return "";
}

void Server::applyAlarms() {
    const std::string reason = publishBlockReason();
    for (auto& [id, session] : sessions_)
        session->setPublishBlocked(!reason.empty(), reason);
}

Server::~Server() {
    stop("server destroyed");
    // The store writes its last batch before the data dir's lock is released, and no vhost
    // keeps a pointer to it.
    for (const std::string& name : runtime_.broker().vhostNames())
        runtime_.broker().findVhost(name)->setJournal(nullptr);
    durable_.reset();
    if (dataDirLock_ >= 0)
        ::close(dataDirLock_); // releases the lock
}

void Server::accept() {
    acceptor_.async_accept([this](const asio::error_code& error, asio::ip::tcp::socket socket) {
        if (error) {
            if (error != asio::error::operation_aborted && !stopped_) {
                // Out of file descriptors and the like: log, and keep accepting.
                spdlog::warn("accept failed: {}", error.message());
                accept();
            }
            return;
        }
        const std::uint64_t id = nextSessionId_++;
        auto session = std::make_shared<Session>(*this, std::move(socket), id);
        sessions_.emplace(id, session);
        session->start();
        accept();
    });
}

void Server::stop(const std::string& reason) {
    if (stopped_)
        return;
    stopped_ = true;
    asio::error_code ignored;
    acceptor_.close(ignored);
    memoryTimer_.cancel();
    flowTimer_.cancel();
    // shutdown() may forget() the session at once: iterate over a copy.
    auto sessions = sessions_;
    for (auto& [id, session] : sessions)
        session->shutdown(reason);
}

void Server::forget(std::uint64_t sessionId) {
    sessions_.erase(sessionId);
}

std::vector<SessionInfo> Server::listSessions() const {
    std::vector<SessionInfo> out;
    for (const auto& [id, session] : sessions_)
        out.push_back(session->info());
    return out;
}

} // namespace depot::net
