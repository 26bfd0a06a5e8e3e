#include "client/confirm_window.h"

#include "client/inline_handler.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>

namespace depot::client {

struct ConfirmWindow::State final : ConfirmSink {
    std::mutex mutex;
    std::condition_variable changed; // settled() made room, or all are settled
    std::size_t unsettled = 0;
    std::size_t wakeAt = 0; // the publisher waits until `unsettled` is at most this
    bool waiting = false;   // only then do confirms notify: no system call per confirm
    ConfirmTally tally;

    void settled(const Confirmation* confirmation, const Error* failure) override {
        std::lock_guard lock(mutex);
        --unsettled;
        if (failure != nullptr) {
            if (tally.failed++ == 0)
                tally.firstError = *failure;
        } else if (!confirmation->ack) {
            if (tally.nacked++ == 0)
                tally.firstNackReason = confirmation->reason;
        } else {
            ++tally.acked;
            if (confirmation->returned)
                ++tally.returned;
        }
        if (waiting && unsettled <= wakeAt)
            changed.notify_one();
    }

    // With `lock` held: waits until at most `target` are unsettled, or throws TIMEOUT.
    void waitFor(std::unique_lock<std::mutex>& lock, std::size_t target,
                 std::chrono::milliseconds timeout) {
        if (unsettled <= target)
            return;
        waiting = true;
        wakeAt = target;
        const bool done = changed.wait_for(lock, timeout, [&] { return unsettled <= target; });
        waiting = false;
        if (!done)
            throw Error(ErrorKind::TIMEOUT, std::to_string(unsettled) +
                                                " publishes still unconfirmed after " +
                                                std::to_string(timeout.count()) + " ms");
    }
};

ConfirmWindow::ConfirmWindow(Connection& connection, std::size_t limit,
                             std::chrono::milliseconds timeout)
    : connection_(connection), limit_(limit == 0 ? 1 : limit), timeout_(timeout),
      state_(std::make_shared<State>()) {}

ConfirmWindow::~ConfirmWindow() = default;

void ConfirmWindow::publish(std::string_view exchange, std::string_view routingKey,
                            std::string body, const PublishOptions& options) {
    refuseInInlineHandler(); // it waits when the window is full: always refused there
    {
        std::unique_lock lock(state_->mutex);
        if (state_->unsettled >= limit_)
            state_->waitFor(lock, limit_ - std::max<std::size_t>(1, limit_ / 4), timeout_);
        ++state_->unsettled;
    }
    try {
        // The state itself, not a callback holding it: no allocation per publish.
        connection_.publishConfirmedTo(exchange, routingKey, std::move(body), options, state_);
    } catch (...) {
        std::lock_guard lock(state_->mutex);
        --state_->unsettled; // never sent: nothing will settle it
        throw;
    }
}

ConfirmTally ConfirmWindow::wait() {
    refuseInInlineHandler();
    std::unique_lock lock(state_->mutex);
    state_->waitFor(lock, 0, timeout_);
    return std::exchange(state_->tally, ConfirmTally{});
}

std::size_t ConfirmWindow::unsettled() const {
    std::lock_guard lock(state_->mutex);
    return state_->unsettled;
}

} // namespace depot::client
