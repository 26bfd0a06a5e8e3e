#pragma once
// ConfirmWindow: many confirmed publishes in flight, without a future per message. The fast way
// to publish persistent messages: the broker writes what arrives together (one fsync per batch)
// and confirms it together, while the publisher goes on. As a RabbitMQ publisher does with
// confirm listeners and waitForConfirms, but with the window (how many may be unconfirmed)
// kept for you:
//
//     depot::client::ConfirmWindow window(*connection, 1000);
//     for (const auto& event : events)
//         window.publish("package-events", event.key, event.body, persistent);
//     const depot::client::ConfirmTally tally = window.wait(); // all settled
//     if (!tally.allAcked()) ...                               // nacked or failed: publish again
//
// Never more than `limit` publishes are unsettled: once `limit` are, publish() waits until a
// quarter of them are settled (confirms come in batches, one per fsync; waking the publisher
// for each made it spend a seventh more CPU per message). A publish is settled when the broker
// confirms it (ack), refuses it (nack: x-overflow reject-publish, a disk that could not write
// it) or cannot be told of it (the link broke, an error): the tally counts each. Not
// thread-safe: one publisher thread per window (several windows may share a connection). Not
// from an inline handler (ConsumeOptions::inlineHandler), which must not wait for the broker:
// publish() and wait() throw Error(INVALID_ARGUMENT) there.

#include "client/connection.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace depot::client {

struct ConfirmTally {
    std::uint64_t acked = 0;
    std::uint64_t nacked = 0;   // refused by the broker (Confirmation::ack false)
    std::uint64_t returned = 0; // mandatory and routed nowhere (also counted as acked)
    std::uint64_t failed = 0;   // no confirm: the link broke, or the broker sent an error
    std::string firstNackReason;
    std::optional<Error> firstError;
    bool allAcked() const { return nacked == 0 && failed == 0; }
};

class ConfirmWindow {
public:
    // `connection` outlives the window. `timeout` bounds each wait (publish() with the window
    // full, wait()): past it they throw Error(TIMEOUT).
    ConfirmWindow(Connection& connection, std::size_t limit,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
    // Does not wait: confirms still in flight are counted by nobody.
    ~ConfirmWindow();
    ConfirmWindow(const ConfirmWindow&) = delete;
    ConfirmWindow& operator=(const ConfirmWindow&) = delete;

    // Publishes with a confirm and returns once it is on its way; first waits while `limit`
    // are unsettled. Throws what publish() would (a closed connection).
    void publish(std::string_view exchange, std::string_view routingKey, std::string body,
                 const PublishOptions& options = {});
    // Waits until every publish so far is settled; returns their tally since the last wait().
    ConfirmTally wait();
    // Publishes not yet settled.
    std::size_t unsettled() const;

private:
    struct State;
    Connection& connection_;
    std::size_t limit_;
    std::chrono::milliseconds timeout_;
    std::shared_ptr<State> state_; // shared with the confirm callbacks, which may outlive us
};

} // namespace depot::client
