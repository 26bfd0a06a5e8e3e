#pragma once
// Helpers for client tests: a thread-safe inbox that handlers push into and tests wait on (a
// condition variable with a deadline, never a sleep), `eventually` for other conditions, and
// CHECK_THROWS_KIND for the Error a call must throw.
//
// Declare inboxes (and whatever else handlers capture) before the connections and consumers
// that feed them, so that those are destroyed first.

#include "client/connection.h"

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace depot::tests {

using namespace std::chrono_literals;

// Long enough for a loaded sanitizer build; a passing test never waits for it.
inline constexpr std::chrono::milliseconds WAIT_LIMIT = 5s;

template <class T> class Inbox {
public:
    // Notifies holding the lock: a waiter that returns may destroy the Inbox at once, and a
    // pushing thread nobody joins (a task that outlives its dispatcher) must not touch it after.
    void push(T item) {
        std::lock_guard lock(mutex_);
        items_.push_back(std::move(item));
        changed_.notify_all();
    }

    // True once at least `count` items arrived; false at the deadline.
    bool waitFor(std::size_t count, std::chrono::milliseconds limit = WAIT_LIMIT) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, limit, [&] { return items_.size() >= count; });
    }

    std::vector<T> items() const {
        std::lock_guard lock(mutex_);
        return items_;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return items_.size();
    }
    T at(std::size_t i) const {
        std::lock_guard lock(mutex_);
        return items_.at(i);
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<T> items_;
};

// Polls `done` until it holds or the limit passes; for conditions nothing signals.
template <class P> bool eventually(P&& done, std::chrono::milliseconds limit = WAIT_LIMIT) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

inline std::vector<std::string> bodies(const std::vector<client::Delivery>& deliveries) {
    std::vector<std::string> out;
    for (const client::Delivery& d : deliveries)
        out.push_back(d.body());
    return out;
}

// The ready-message count of a queue, through a passive declare.
inline std::uint64_t readyCount(client::Connection& connection, const std::string& queue) {
    client::QueueDeclareOptions options;
    options.passive = true;
    return connection.declareQueue(queue, options).messageCount;
}

// How many consumers a queue has, through a passive declare.
inline std::uint64_t consumerCount(client::Connection& connection, const std::string& queue) {
    client::QueueDeclareOptions options;
    options.passive = true;
    return connection.declareQueue(queue, options).consumerCount;
}

// "BROKER/NOT_FOUND", "TIMEOUT", ... of what `expr` throws; "no exception" if nothing.
template <class F> std::string errorOf(F&& expr) {
    try {
        expr();
    } catch (const client::Error& e) {
        switch (e.kind()) {
        case client::ErrorKind::BROKER:
            return std::string("BROKER/") + core::errorCodeName(e.code());
        case client::ErrorKind::TIMEOUT:
            return "TIMEOUT";
        case client::ErrorKind::CONNECTION_LOST:
            return "CONNECTION_LOST";
        case client::ErrorKind::INVALID_ARGUMENT:
            return "INVALID_ARGUMENT";
        case client::ErrorKind::HANDLER_FAILED:
            return "HANDLER_FAILED";
        }
        return "unknown kind";
    } catch (const std::exception& e) {
        return std::string("std::exception: ") + e.what();
    }
    return "no exception";
}

} // namespace depot::tests
