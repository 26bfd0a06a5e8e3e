#pragma once
// A bare protocol client for tests: a blocking socket with a receive timeout, frames built by
// hand, frames read with the same FrameReader the server uses. It can also send raw bytes,
// which is how the bad-input tests speak.

#include "protocol/frame_reader.h"
#include "protocol/wire.capnp.h"

#include <asio.hpp>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sys/socket.h>

#include <cerrno>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace depot::tests {

class RawClient {
public:
    explicit RawClient(unsigned short port,
                       std::chrono::milliseconds receiveTimeout = std::chrono::milliseconds(3000))
        : socket_(io_) {
        socket_.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(receiveTimeout.count() / 1000);
        tv.tv_usec = static_cast<suseconds_t>((receiveTimeout.count() % 1000) * 1000);
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }

    void sendBytes(const void* data, std::size_t size) {
        asio::write(socket_, asio::buffer(data, size));
    }

    // Builds a frame with `fill` and sends it.
    void send(std::uint64_t requestId, const std::function<void(wire::Frame::Builder)>& fill) {
        capnp::MallocMessageBuilder builder;
        auto frame = builder.initRoot<wire::Frame>();
        frame.setRequestId(requestId);
        fill(frame);
        const kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
        const auto bytes = words.asBytes();
        sendBytes(bytes.begin(), bytes.size());
    }

    void hello(const std::string& user = "guest", const std::string& password = "guest",
               std::uint32_t heartbeat = 0) {
        send(1, [&](wire::Frame::Builder f) {
            auto h = f.initHello();
            h.setProtocolVersion(wire::PROTOCOL_VERSION);
            h.setClientName("raw-test");
            h.setUsername(user);
            h.setPassword(password);
            h.setHeartbeatSeconds(heartbeat);
        });
    }

    // Calls `check` with the next frame; false if the connection closed or timed out first.
    bool receive(const std::function<void(wire::Frame::Reader)>& check) {
        std::optional<capnp::FlatArrayMessageReader> frame;
        std::string problem;
        for (;;) {
            const auto status = reader_.next(frame, problem);
            if (status == protocol::FrameReader::Status::FRAME) {
                check(frame->getRoot<wire::Frame>());
                return true;
            }
            if (status == protocol::FrameReader::Status::ERROR)
                throw std::runtime_error("bad frame from server: " + problem);
            frame.reset();
            const auto room = reader_.writable();
            // recv, not asio's read_some: asio retries a timed-out read (it polls on EAGAIN),
            // so SO_RCVTIMEO would never end it.
            const ssize_t n = ::recv(socket_.native_handle(), room.data(), room.size(), 0);
            if (n <= 0) {
                lastError_ = n == 0 ? asio::error::eof
                                    : asio::error_code(errno, asio::error::get_system_category());
                return false;
            }
            reader_.commit(static_cast<std::size_t>(n));
        }
    }

    // Skips heartbeats; returns the next other frame's kind, or nullopt on close/timeout.
    std::optional<wire::Frame::Which> nextKind() {
        std::optional<wire::Frame::Which> kind;
        while (receive([&](wire::Frame::Reader f) { kind = f.which(); })) {
            if (*kind != wire::Frame::HEARTBEAT)
                return kind;
        }
        return std::nullopt;
    }

    // True when the server has closed the connection (reads end) within the receive timeout.
    bool closedByServer() {
        while (receive([](wire::Frame::Reader) {})) {
        }
        return lastError_ == asio::error::eof || lastError_ == asio::error::connection_reset;
    }

    asio::ip::tcp::socket& socket() { return socket_; }

private:
    asio::io_context io_;
    asio::ip::tcp::socket socket_;
    protocol::FrameReader reader_;
    asio::error_code lastError_;
};

} // namespace depot::tests
