#include "broker/net/server.h"

#include <spdlog/spdlog.h>

namespace depot::net {

Server::Server(runtime::BrokerRuntime& runtime, const asio::ip::tcp::endpoint& endpoint,
               ServerConfig config)
    : runtime_(runtime), config_(std::move(config)), acceptor_(runtime.context()) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    endpoint_ = acceptor_.local_endpoint();
    accept();
}

Server::~Server() {
    stop("server destroyed");
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
