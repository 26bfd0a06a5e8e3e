#pragma once
// Puts a routing core on an Asio io_context: the core's one thread is whichever thread runs
// that io_context. The runtime arms one steady_timer at the core's next deadline (TTL, queue
// expiry) and calls advanceTo when it fires, so messages expire without anyone polling.
// Other threads reach the core only through post(). Used by depotd and by embedded brokers.
//
// Lifetime: `io` and `clock` outlive the runtime. Call every core method on the io thread, and
// call rearm() after any core call made outside post() so the timer sees new deadlines.

#include "broker/core/broker.h"
#include "broker/runtime/clock.h"

#include <asio.hpp>

#include <utility>

namespace depot::runtime {

class BrokerRuntime {
public:
    BrokerRuntime(asio::io_context& io, const Clock& clock);
    BrokerRuntime(const BrokerRuntime&) = delete;
    BrokerRuntime& operator=(const BrokerRuntime&) = delete;

    core::Broker& broker() { return broker_; }
    const Clock& clock() const { return clock_; }
    core::TimePoint now() const { return clock_.now(); }
    asio::io_context& context() { return io_; }

    // Runs fn(broker, now) on the io thread, then re-arms the deadline timer.
    template <class F> void post(F&& fn) {
        asio::post(io_, [this, fn = std::forward<F>(fn)]() mutable {
            fn(broker_, clock_.now());
            rearm();
        });
    }

    // Expires what is due now and arms the timer for the next deadline.
    void rearm();

private:
    void onTimer(const asio::error_code& error);

    asio::io_context& io_;
    const Clock& clock_;
    core::Broker broker_;
    asio::steady_timer timer_;
    core::TimePoint armedFor_ = core::NEVER;
};

} // namespace depot::runtime
