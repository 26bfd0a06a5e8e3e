#include "broker/net/durable_messages.h"
#include "broker/net/stored_message.h"

#include "broker/core/queue.h"
#include "broker/core/vhost.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace depot::net {

namespace {

// When a message stored at `storedAtMillis` entered its queue, on the broker's steady clock: as
// long before `now` as it was written before this moment. A clock that went backwards, or a
// record without the time, counts from now; the age is capped (a message that old has expired
// under any TTL a queue can have).
core::TimePoint enqueuedAt(std::int64_t storedAtMillis, core::TimePoint now) {
    if (storedAtMillis <= 0)
        return now;
    constexpr std::int64_t MAX_AGE_MS = std::int64_t{400} * 24 * 3600 * 1000;
    const std::int64_t age =
        std::clamp<std::int64_t>(wallClockMillis() - storedAtMillis, 0, MAX_AGE_MS);
    return now - core::Milliseconds(age);
}

} // namespace

DurableMessages::DurableMessages(std::filesystem::path directory, asio::io_context& io,
                                 AlarmHandler onAlarm)
    : io_(io), onAlarm_(std::move(onAlarm)), retry_(io), collectTimer_(io) {
    store::MessageStore::Options options;
    options.directory = std::move(directory);
    store_ = store::MessageStore::open(options, recovered_);
    for (const std::string& problem : recovered_.problems)
        spdlog::warn("message store: {}", problem);
    syncThread_ = std::thread([this] { syncLoop(); });
}

DurableMessages::~DurableMessages() {
    alive_.reset(); // a completion still queued on the loop becomes a no-op: finished here
    {
        std::lock_guard lock(syncMutex_);
        stopping_ = true;
    }
    syncWake_.notify_all();
    syncThread_.join();
    try {
        finishBatch(/*thenNext=*/false); // the last batch the thread wrote, if any
        if (store_->hasUnsynced())
            store_->sync();
    } catch (const std::exception& e) {
        spdlog::error("message store: at shutdown: {}", e.what());
    }
}

// The sync thread: writes and fsyncs one batch at a time, then hands it back to the loop.
void DurableMessages::syncLoop() {
    for (;;) {
        store::MessageStore::SyncBatch batch;
        {
            std::unique_lock lock(syncMutex_);
            syncWake_.wait(lock, [this] { return stopping_ || job_.has_value(); });
            if (!job_)
                return; // stopping, nothing handed over
            batch = std::move(*job_);
            job_.reset();
        }
        std::string error;
        try {
            store::MessageStore::writeBatch(batch);
        } catch (const std::exception& e) {
            error = e.what();
        }
        {
            std::lock_guard lock(syncMutex_);
            done_ = std::move(batch);
            doneError_ = std::move(error);
        }
        asio::post(io_, [alive = aliveWeak_, this] {
            if (alive.lock())
                finishBatch(/*thenNext=*/true);
        });
    }
}

std::size_t DurableMessages::recover(core::Broker& broker, core::TimePoint now) {
    std::size_t restored = 0;
    for (const auto& [name, entries] : recovered_.queues) {
        core::Queue* queue = nullptr;
        if (core::Vhost* vhost = broker.findVhost("/"))
            queue = vhost->queue(name);
        if (queue == nullptr || !queue->options().durable) {
            spdlog::warn("message store: queue '{}' is gone: its {} messages are dropped", name,
                         entries.size());
            store_->dropQueue(name);
            continue;
        }
        for (const store::Recovered::Entry& entry : entries) {
            // Peeked again for each queue that holds it: cheaper than a map of a million entries
            // whose freed nodes would stay scattered through the heap after recovery.
            const StoredSummary known = summarizeStoredMessage(recovered_.message(entry.messageId));
            if (!known.ok) {
                spdlog::warn("message store: message {} unreadable, dropped", entry.messageId);
                store_->ack(name, entry.messageId);
                continue;
            }
            // Journal calls from restore (a no-ack consumer cannot exist yet, but a length
            // limit or a TTL may drop it, and dead-letter it after a reload) go to this journal.
            queue->restore(core::PagedMessage{entry.messageId, known.bodyBytes, known.expiration},
                           enqueuedAt(known.storedAtMillis, now), now);
            ++restored;
        }
    }
    recovered_ = store::Recovered{};
    if (core::Vhost* vhost = broker.findVhost("/"))
        vhost->settle(now); // what a length limit dead-lettered while restoring
    if (store_->hasUnsynced())
        store_->sync();
    collect(); // and again later, if the oldest segment waits to be compacted
    return restored;
}

// The store's id for a message rides on the message (journalHandle): no map from messages to
// ids, and the store's own per-queue index says which queue holds what.
void DurableMessages::enqueued(const core::Queue& queue, const core::MessageRef& message) {
    if (message->journalHandle == 0 || !store_->enqueue(queue.name(), message->journalHandle)) {
        message->journalHandle = storeMessage(*store_, *message);
        (void)store_->enqueue(queue.name(), message->journalHandle);
    }
    scheduleSync();
}

void DurableMessages::removed(const core::Queue& queue, std::uint64_t handle) {
    if (handle == 0)
        return; // never written
    if (store_->ack(queue.name(), handle))
        scheduleSync();
}

void DurableMessages::reload(std::span<const std::uint64_t> handles,
                             std::span<core::MessageRef> out) {
    std::vector<std::string> bytes = store_->read(handles);
    std::size_t failed = 0;
    for (std::size_t i = 0; i < handles.size(); ++i) {
        out[i] = bytes[i].empty() ? nullptr : decodeStoredMessage(bytes[i]);
        if (out[i])
            out[i]->journalHandle = handles[i];
        else if (failed++ == 0)
            spdlog::error("message store: message {} could not be read back{} (a queue skips "
                          "what it cannot read; the store keeps it for a restart)",
                          handles[i],
                          handles.size() > 1
                              ? " (with others of " + std::to_string(handles.size()) +
                                    " read together)"
                              : "");
    }
}

void DurableMessages::queueDeleted(const core::Queue& queue) {
    store_->dropQueue(queue.name());
    scheduleSync();
}

void DurableMessages::afterSync(std::function<void(const std::string* failure)> done) {
    if (!syncPending()) {
        done(nullptr);
        return;
    }
    waiting_.push_back(std::move(done));
    scheduleSync();
}

void DurableMessages::scheduleSync() {
    if (syncPosted_)
        return;
    syncPosted_ = true;
    // After the frames of this turn: everything they journaled shares one fsync.
    asio::post(io_, [this] { syncNow(); });
}

void DurableMessages::syncNow() {
    syncPosted_ = false;
    if (!store_->batchInFlight())
        startBatch();
    // else: finishBatch starts the next one
}

// The fsync runs on the sync thread: meanwhile this thread goes on with the next publishes,
// which form the next batch (group commit without stalling every connection for the disk).
void DurableMessages::startBatch() {
    store::MessageStore::SyncBatch batch = store_->takePending();
    if (batch.empty()) {
        auto waiting = std::move(waiting_); // everything they wait for is on disk already
        waiting_.clear();
        ++generation_;
        for (auto& done : waiting)
            done(nullptr);
        if (failing_.empty())
            collect();
        return;
    }
    inFlightWaiting_ = std::move(waiting_);
    waiting_.clear();
    ++generation_;
    {
        std::lock_guard lock(syncMutex_);
        job_ = std::move(batch);
    }
    syncWake_.notify_one();
}

void DurableMessages::finishBatch(bool thenNext) {
    store::MessageStore::SyncBatch batch;
    std::string failure;
    {
        std::lock_guard lock(syncMutex_);
        if (!done_)
            return;
        batch = std::move(*done_);
        done_.reset();
        failure = std::move(doneError_);
    }
    if (failure.empty())
        store_->batchWritten(std::move(batch));
    else
        store_->batchFailed(std::move(batch));
    auto waiting = std::move(inFlightWaiting_);
    inFlightWaiting_.clear();
    for (auto& done : waiting)
        done(failure.empty() ? nullptr : &failure);
    if (!thenNext)
        return; // shutting down: the owner's alarm handler may be gone already
    if (failure != failing_) {
        if (failure.empty())
            spdlog::info("message store: writing again");
        else
            spdlog::error("message store: {} (publishers blocked; retrying every {} ms)", failure,
                          RETRY_INTERVAL.count());
        failing_ = failure;
        if (onAlarm_)
            onAlarm_(failing_);
    }
    if (!failing_.empty()) {
        retryLater();
        return;
    }
    // Old segments go between batches: under a steady load there is always a next one.
    collect();
    if (store_->hasUnsynced() || !waiting_.empty())
        startBatch(); // what arrived while the disk was busy: the next group
}

void DurableMessages::collect() {
    try {
        if (store_->collect())
            collectLater();
    } catch (const std::exception& e) {
        spdlog::error("message store: collecting old segments: {}", e.what());
    }
}

// Batches call collect() as they finish; this is for a store that goes quiet meanwhile (the
// last acks came in, and nothing else will be written for a while).
void DurableMessages::collectLater() {
    if (collectArmed_)
        return;
    collectArmed_ = true;
    collectTimer_.expires_after(store_->compactAfter());
    collectTimer_.async_wait([alive = aliveWeak_, this](const asio::error_code& error) {
        if (error || !alive.lock())
            return; // cancelled, or this object is gone
        collectArmed_ = false;
        if (!store_->batchInFlight() && failing_.empty())
            collect();
    });
}

void DurableMessages::retryLater() {
    retry_.expires_after(RETRY_INTERVAL);
    retry_.async_wait([this](const asio::error_code& error) {
        if (!error && !syncPosted_ && !store_->batchInFlight())
            startBatch();
    });
}

} // namespace depot::net
