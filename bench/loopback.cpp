#include "bench/loopback.h"

#include <asio.hpp>

#include <algorithm>
#include <chrono>
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

void drain(tcp::socket& socket, std::size_t bytes) {
    std::vector<char> buffer(CHUNK);
    std::size_t got = 0;
    asio::error_code error;
    while (got < bytes && !error)
        got += socket.read_some(asio::buffer(buffer), error);
}

void fill(tcp::socket& socket, std::size_t bytes) {
    const std::vector<char> chunk(CHUNK, 'x');
    for (std::size_t sent = 0; sent < bytes;) {
        const std::size_t n = std::min(chunk.size(), bytes - sent);
        asio::write(socket, asio::buffer(chunk.data(), n));
        sent += n;
    }
}

// Forwards `bytes` from `in` to `out` as they come.
void forward(tcp::socket& in, tcp::socket& out, std::size_t bytes) {
    std::vector<char> buffer(CHUNK);
    std::size_t moved = 0;
    asio::error_code error;
    while (moved < bytes && !error) {
        const std::size_t n = in.read_some(asio::buffer(buffer), error);
        asio::write(out, asio::buffer(buffer.data(), n), error);
        moved += n;
    }
}

} // namespace

double loopbackSeconds(std::size_t bytes) {
    asio::io_context io;
    auto [writer, reader] = connectedPair(io);
    const auto start = Clock::now();
    std::thread receiver([&reader = reader, bytes] { drain(reader, bytes); });
    fill(writer, bytes);
    receiver.join();
    return secondsSince(start);
}

double relaySeconds(std::size_t bytes) {
    asio::io_context io;
    auto [writer, relayIn] = connectedPair(io);
    auto [relayOut, reader] = connectedPair(io);
    const auto start = Clock::now();
    std::thread relay([&in = relayIn, &out = relayOut, bytes] { forward(in, out, bytes); });
    std::thread receiver([&reader = reader, bytes] { drain(reader, bytes); });
    fill(writer, bytes);
    relay.join();
    receiver.join();
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
            asio::read(a, asio::buffer(buffer), error);
            asio::write(b, asio::buffer(buffer), error);
            asio::read(b, asio::buffer(buffer), error);
            asio::write(a, asio::buffer(buffer), error);
        }
    });
    std::thread responder([&echo = echo, messageBytes, total] {
        std::vector<char> buffer(messageBytes);
        asio::error_code error;
        for (std::size_t i = 0; i < total && !error; ++i) {
            asio::read(echo, asio::buffer(buffer), error);
            asio::write(echo, asio::buffer(buffer), error);
        }
    });
    std::vector<char> message(messageBytes, 'x');
    std::vector<double> micros;
    micros.reserve(calls);
    for (std::size_t i = 0; i < total; ++i) {
        const auto start = Clock::now();
        asio::write(caller, asio::buffer(message));
        asio::read(caller, asio::buffer(message));
        if (i >= WARM_UP)
            micros.push_back(secondsSince(start) * 1e6);
    }
    relay.join();
    responder.join();
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
