#pragma once
// An in-process depotd for tests: the same Server and BrokerRuntime depotd runs, on its own io
// thread, listening on 127.0.0.1 with a port the kernel picks. Stopped and joined on destruction.

#include "broker/net/server.h"
#include "broker/runtime/broker_runtime.h"
#include "broker/runtime/clock.h"

#include <asio.hpp>

#include <future>
#include <optional>
#include <thread>

namespace depot::tests {

class TestServer {
public:
    // Port 0: the kernel picks one. A given port lets a test restart "the same" server.
    explicit TestServer(net::ServerConfig config = {}, unsigned short port = 0)
        : runtime_(io_, clock_) {
        server_.emplace(runtime_,
                        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), config);
        port_ = server_->endpoint().port();
        // The guard keeps run() going after stop() has closed the acceptor.
        thread_ = std::thread([this] { io_.run(); });
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    unsigned short port() const { return port_; }
    std::string url() const {
        return "depot://guest:guest@127.0.0.1:" + std::to_string(port_) + "/";
    }

    // Runs fn(server) on the io thread and returns its result.
    template <class F> auto run(F fn) {
        using R = decltype(fn(*server_));
        std::promise<R> promise;
        auto future = promise.get_future();
        asio::post(io_, [&] {
            if constexpr (std::is_void_v<R>) {
                fn(*server_);
                promise.set_value();
            } else {
                promise.set_value(fn(*server_));
            }
        });
        return future.get();
    }

    ~TestServer() { // after run(): its return type must be deduced first
        run([](net::Server& server) { server.stop("test over"); });
        // Let closing sessions flush and finish, then stop.
        for (int i = 0; i < 200 && run([](net::Server& s) { return s.sessionCount(); }) > 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        io_.stop();
        thread_.join();
        server_.reset();
    }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    runtime::SteadyClock clock_;
    runtime::BrokerRuntime runtime_;
    std::optional<net::Server> server_;
    unsigned short port_ = 0;
    std::thread thread_;
};

} // namespace depot::tests
