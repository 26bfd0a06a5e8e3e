#include "broker/runtime/broker_runtime.h"

namespace depot::runtime {

BrokerRuntime::BrokerRuntime(asio::io_context& io, const Clock& clock)
    : io_(io), clock_(clock), timer_(io) {}

void BrokerRuntime::rearm() {
    const core::TimePoint now = clock_.now();
    if (broker_.nextDeadline() <= now)
        broker_.advanceTo(now);
    const core::TimePoint deadline = broker_.nextDeadline();
    if (deadline == armedFor_)
        return;
    armedFor_ = deadline;
    if (deadline == core::NEVER) {
        timer_.cancel();
        return;
    }
    // Relative to the injected clock, so a ManualClock's deadlines map onto real waiting too.
    timer_.expires_after(deadline - now);
    timer_.async_wait([this](const asio::error_code& error) { onTimer(error); });
}

void BrokerRuntime::onTimer(const asio::error_code& error) {
    if (error == asio::error::operation_aborted)
        return; // re-armed or cancelled: a newer wait is in charge
    armedFor_ = core::NEVER;
    rearm();
}

} // namespace depot::runtime
