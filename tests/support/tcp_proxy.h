#pragma once
// A loopback TCP proxy for tests: forwards every connection made to port() to a target port, and
// cut() breaks them all at once, which is what a client sees when its broker crashes or the
// network fails. Lets a test break a connection to a broker it cannot restart cheaply (RabbitMQ).

#include <asio.hpp>

#include <array>
#include <future>
#include <memory>
#include <thread>
#include <vector>

namespace depot::tests {

class TcpProxy {
public:
    explicit TcpProxy(unsigned short targetPort)
        : target_(asio::ip::make_address("127.0.0.1"), targetPort),
          acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }
    TcpProxy(const TcpProxy&) = delete;
    TcpProxy& operator=(const TcpProxy&) = delete;
    ~TcpProxy() {
        asio::post(io_, [this] {
            acceptor_.close();
            closeAll();
        });
        io_.stop();
        thread_.join();
    }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    // Closes every forwarded connection (both of its sockets); new ones are accepted as before.
    void cut() {
        std::promise<void> done;
        asio::post(io_, [this, &done] {
            closeAll();
            done.set_value();
        });
        done.get_future().wait();
    }

private:
    struct Pair {
        explicit Pair(asio::io_context& io) : client(io), server(io) {}
        asio::ip::tcp::socket client;
        asio::ip::tcp::socket server;
        std::array<char, 16384> up{};
        std::array<char, 16384> down{};
    };

    void accept() {
        auto pair = std::make_shared<Pair>(io_);
        acceptor_.async_accept(pair->client, [this, pair](asio::error_code error) {
            if (error)
                return;
            pair->server.async_connect(target_, [this, pair](asio::error_code e) {
                if (e) {
                    pair->client.close();
                    return;
                }
                pairs_.push_back(pair);
                pump(pair, pair->client, pair->server, pair->up);
                pump(pair, pair->server, pair->client, pair->down);
            });
            accept();
        });
    }

    static void pump(std::shared_ptr<Pair> pair, asio::ip::tcp::socket& from,
                     asio::ip::tcp::socket& to, std::array<char, 16384>& buffer) {
        from.async_read_some(asio::buffer(buffer), [pair, &from, &to, &buffer](
                                                       asio::error_code error, std::size_t n) {
            if (error) {
                asio::error_code ignored;
                to.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                return;
            }
            asio::async_write(to, asio::buffer(buffer.data(), n),
                              [pair, &from, &to, &buffer](asio::error_code e, std::size_t) {
                                  if (!e)
                                      pump(pair, from, to, buffer);
                              });
        });
    }

    void closeAll() {
        for (auto& pair : pairs_) {
            asio::error_code ignored;
            pair->client.close(ignored);
            pair->server.close(ignored);
        }
        pairs_.clear();
    }

    asio::io_context io_;
    asio::ip::tcp::endpoint target_;
    asio::ip::tcp::acceptor acceptor_;
    std::thread thread_;
    std::vector<std::shared_ptr<Pair>> pairs_; // on the io thread only
};

} // namespace depot::tests
