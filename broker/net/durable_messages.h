#pragma once
// Persistent messages in durable queues, on disk (depotd --data-dir): the core's
// MessageJournal, kept in a store::MessageStore under <data-dir>/messages. A message routed to
// several durable queues is written once. Writes are buffered and made durable together by a
// sync thread (group commit: one write and fdatasync for everything journaled since the last
// batch), while the event loop goes on with the next publishes; a publisher's confirm waits for
// its batch (afterSync), so a confirmed message survives a kill -9.
//
// On start, recover() puts the messages back into their queues, in order, marked redelivered
// (as RabbitMQ does: whether they had been delivered is not known), paged out: a queue reads
// each one back as it reaches the head (reload), so recovery holds no message bodies in memory.
// A message's TTL keeps counting from when it was first written.
//
// A stored message is Cap'n Proto's wire::Message without its body, packed, followed by the
// body as it is (stored_message.h has the layout); the unpacked form earlier versions wrote is
// still read.

#include "broker/core/broker.h"
#include "broker/core/message_journal.h"
#include "broker/store/message_store.h"

#include <asio.hpp>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace depot::net {

class DurableMessages final : public core::MessageJournal {
public:
    // Told when writes start failing (disk full, an I/O error: the reason) and when they
    // succeed again (""). Meanwhile confirms are nacked and what was journaled stays pending,
    // written by a retry every RETRY_INTERVAL.
    using AlarmHandler = std::function<void(const std::string& failure)>;
    static constexpr std::chrono::milliseconds RETRY_INTERVAL{500};

    // Opens (creating) the store; throws store::StoreError when it cannot.
    DurableMessages(std::filesystem::path directory, asio::io_context& io, AlarmHandler onAlarm);
    // Writes what is still buffered (a clean shutdown keeps even unconfirmed publishes and the
    // last acks).
    ~DurableMessages() override;
    DurableMessages(const DurableMessages&) = delete;
    DurableMessages& operator=(const DurableMessages&) = delete;

    // Puts what the store held back into the broker's durable queues; returns how many
    // messages. A queue that no longer exists loses its messages. Call before any client runs.
    std::size_t recover(core::Broker& broker, core::TimePoint now);

    void enqueued(const core::Queue& queue, const core::MessageRef& message) override;
    void removed(const core::Queue& queue, std::uint64_t handle) override;
    void queueDeleted(const core::Queue& queue) override;
    void reload(std::span<const std::uint64_t> handles, std::span<core::MessageRef> out) override;

    // Calls `done` once everything journaled so far is on disk (failure == nullptr), or could
    // not be made so (the reason): at once when nothing is waiting to be written.
    void afterSync(std::function<void(const std::string* failure)> done);
    // Changes whenever the callbacks waiting for the next sync are handed to a batch (or run):
    // while it has not changed, a callback given to afterSync earlier also covers what was
    // journaled since (a session groups its confirms under one callback that way).
    std::uint64_t syncGeneration() const { return generation_; }
    // Something journaled is not on disk yet (a confirm must wait).
    bool syncPending() const {
        return syncPosted_ || store_->hasUnsynced() || store_->batchInFlight();
    }

    store::StoreStats stats() const { return store_->stats(); }

private:
    void scheduleSync();
    void syncNow();
    void startBatch();
    void finishBatch(bool thenNext); // thenNext: start the next batch, or retry, or collect
    void collect();
    void collectLater(); // the oldest segment waits to be compacted: collect again then
    void retryLater();
    void syncLoop(); // the sync thread

    asio::io_context& io_;
    AlarmHandler onAlarm_;
    std::string failing_; // why the last sync failed; "" while writes succeed
    asio::steady_timer retry_;
    asio::steady_timer collectTimer_;
    bool collectArmed_ = false;
    store::Recovered recovered_; // what open found, until recover() has used it
    std::unique_ptr<store::MessageStore> store_;
    bool syncPosted_ = false;
    std::uint64_t generation_ = 0; // see syncGeneration
    // Confirms waiting for the next batch, and for the one being written.
    std::vector<std::function<void(const std::string*)>> waiting_;
    std::vector<std::function<void(const std::string*)>> inFlightWaiting_;

    // The sync thread and what it shares with the loop (under syncMutex_).
    std::thread syncThread_;
    std::mutex syncMutex_;
    std::condition_variable syncWake_;
    std::optional<store::MessageStore::SyncBatch> job_;  // for the sync thread to write
    std::optional<store::MessageStore::SyncBatch> done_; // written (or failed), for the loop
    std::string doneError_;
    bool stopping_ = false;
    // Completions queued on the loop hold aliveWeak_: after the destructor reset alive_, no-ops.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
    const std::weak_ptr<int> aliveWeak_ = alive_;
};

} // namespace depot::net
