#include "bench/loopback.h"

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace depot::bench {

namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

constexpr std::size_t CHUNK = 64 * 1024;

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Two ends of one loopback TCP connection, without Nagle's delay (as depotd and the client
// library set it).
std::pair<tcp::socket, tcp::socket> connectedPair(asio::io_context& io) {
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket near(io);
    near.connect(acceptor.local_endpoint());
    tcp::socket far = acceptor.accept();
    near.set_option(tcp::no_delay(true));
    far.set_option(tcp::no_delay(true));
    return {std::move(near), std::move(far)};
}

// Each thread closes its sockets when it stops early (an error), so that the threads at their
// other ends fail too instead of waiting for ever; the caller then throws.
void closeAll(std::initializer_list<tcp::socket*> sockets) {
    asio::error_code ignored;
    for (tcp::socket* socket : sockets)
        socket->close(ignored);
}

asio::error_code drain(tcp::socket& socket, std::size_t bytes) {
    std::vector<char> buffer(CHUNK);
    std::size_t got = 0;
    asio::error_code error;
    while (got < bytes && !error)
        got += socket.read_some(asio::buffer(buffer), error);
    if (error)
        closeAll({&socket});
    return error;
}

asio::error_code fill(tcp::socket& socket, std::size_t bytes) {
    const std::vector<char> chunk(CHUNK, 'x');
    asio::error_code error;
    for (std::size_t sent = 0; sent < bytes && !error;)
        sent += asio::write(
            socket, asio::buffer(chunk.data(), std::min(chunk.size(), bytes - sent)), error);
    if (error)
        closeAll({&socket});
    return error;
}

// Forwards `bytes` from `in` to `out` as they come.
asio::error_code forward(tcp::socket& in, tcp::socket& out, std::size_t bytes) {
    std::vector<char> buffer(CHUNK);
    std::size_t moved = 0;
    asio::error_code error;
    while (moved < bytes && !error) {
        const std::size_t n = in.read_some(asio::buffer(buffer), error);
        if (!error)
            asio::write(out, asio::buffer(buffer.data(), n), error);
        moved += n;
    }
    if (error)
        closeAll({&in, &out});
    return error;
}

// One message of buffer's size read whole from `from` and written to `to` (the same socket for
// an echo); nothing once `error` is set.
void passOn(tcp::socket& from, tcp::socket& to, std::vector<char>& buffer,
            asio::error_code& error) {
    if (!error)
        asio::read(from, asio::buffer(buffer), error);
    if (!error)
        asio::write(to, asio::buffer(buffer), error);
}

void check(asio::error_code error) {
    if (error)
        throw std::runtime_error("loopback measurement failed: " + error.message());
}

} // namespace

double loopbackSeconds(std::size_t bytes) {
    asio::io_context io;
    auto [writer, reader] = connectedPair(io);
    const auto start = Clock::now();
    asio::error_code received;
    std::thread receiver([&reader = reader, &received, bytes] { received = drain(reader, bytes); });
    const asio::error_code sent = fill(writer, bytes);
    receiver.join();
    check(sent ? sent : received);
    return secondsSince(start);
}

double relaySeconds(std::size_t bytes) {
    asio::io_context io;
    auto [writer, relayIn] = connectedPair(io);
    auto [relayOut, reader] = connectedPair(io);
    const auto start = Clock::now();
    asio::error_code relayed, received;
    std::thread relay(
        [&in = relayIn, &out = relayOut, &relayed, bytes] { relayed = forward(in, out, bytes); });
    std::thread receiver([&reader = reader, &received, bytes] { received = drain(reader, bytes); });
    const asio::error_code sent = fill(writer, bytes);
    relay.join();
    receiver.join();
    check(sent ? sent : relayed ? relayed : received);
    return secondsSince(start);
}

RoundTrips relayRoundTrips(std::size_t messageBytes, std::size_t calls) {
    asio::io_context io;
    auto [caller, relayA] = connectedPair(io);
    auto [relayB, echo] = connectedPair(io);
    constexpr std::size_t WARM_UP = 20;
    const std::size_t total = calls + WARM_UP;
    std::thread relay([&a = relayA, &b = relayB, messageBytes, total] {
        std::vector<char> buffer(messageBytes);
        asio::error_code error;
        for (std::size_t i = 0; i < total && !error; ++i) {
            passOn(a, b, buffer, error); // the request
            passOn(b, a, buffer, error); // its answer
        }
        if (error)
            closeAll({&a, &b});
    });
    std::thread responder([&echo = echo, messageBytes, total] {
        std::vector<char> buffer(messageBytes);
        asio::error_code error;
        for (std::size_t i = 0; i < total && !error; ++i)
            passOn(echo, echo, buffer, error);
        if (error)
            closeAll({&echo});
    });
    std::vector<char> message(messageBytes, 'x');
    std::vector<double> micros;
    micros.reserve(calls);
    asio::error_code error;
    for (std::size_t i = 0; i < total && !error; ++i) {
        const auto start = Clock::now();
        asio::write(caller, asio::buffer(message), error);
        if (!error)
            asio::read(caller, asio::buffer(message), error);
        if (i >= WARM_UP)
            micros.push_back(secondsSince(start) * 1e6);
    }
    if (error)
        closeAll({&caller});
    relay.join();
    responder.join();
    check(error);
    return percentiles(std::move(micros));
}

RoundTrips percentiles(std::vector<double> micros) {
    if (micros.empty())
        return {};
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) {
        return micros[std::min(micros.size() - 1, static_cast<std::size_t>(q * micros.size()))];
    };
    return RoundTrips{at(0.50), at(0.99), at(0.999)};
}

} // namespace depot::bench
