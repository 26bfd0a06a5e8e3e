#include "broker/net/durable_messages.h"

#include "broker/core/queue.h"
#include "broker/core/vhost.h"
#include "protocol/convert.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace depot::net {

namespace {

using protocol::fromWire;
using protocol::text;
using protocol::toWire;
using protocol::view;
using protocol::wireText;

std::int64_t wallClockMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A message's bytes in the store: the FORMAT byte, the length (u32, little-endian) of what
// follows up to the body, the message without its body in Cap'n Proto's packed stream format,
// then the body as it is. Packing squeezes out the zeros of the properties and of the structs'
// pointers (a 100-byte message's record went from 295 to 137 bytes), and the body, left
// out of it, is neither packed nor copied twice. Earlier versions stored the whole message
// unpacked, in Cap'n Proto's stream framing, which starts with a segment count (never this
// byte): both are read.
constexpr unsigned char PACKED_FORMAT = 0xD2;
constexpr std::size_t PACKED_HEAD = 5; // the format byte and the length

// Stamped with the wall-clock time it was first written: the time it entered its queues (a
// dead-lettered copy is a new message, written when it moved). Added to the store as it is
// encoded, the pieces going straight into the store's write buffer.
std::uint64_t addEncoded(store::MessageStore& store, const core::Message& m) {
    // On a zeroed scratch segment (zeroed again by the builder's destructor): no 8 KiB
    // allocation per message.
    constexpr std::size_t SCRATCH_WORDS = 1024;
    thread_local const std::unique_ptr<capnp::word[]> scratch =
        std::make_unique<capnp::word[]>(SCRATCH_WORDS);
    capnp::MallocMessageBuilder builder(kj::ArrayPtr<capnp::word>(scratch.get(), SCRATCH_WORDS));
    auto w = builder.initRoot<wire::Message>();
    w.setStoredAtMillis(wallClockMillis());
    w.setExchange(wireText(m.exchange));
    w.setRoutingKey(wireText(m.routingKey));
    toWire(m.properties, w.initProperties());
    if (!m.deaths.empty())
        toWire(m.deaths, w.initDeaths(static_cast<unsigned>(m.deaths.size())));
    // Packing never makes a word longer than a tag, a count and the word itself.
    const std::size_t bound = capnp::computeSerializedSizeInWords(builder) * 10 + 16;
    thread_local std::vector<kj::byte> packed;
    if (packed.size() < bound)
        packed.resize(bound);
    kj::ArrayOutputStream out(kj::arrayPtr(packed.data(), packed.size()));
    capnp::writePackedMessage(out, builder);
    const kj::ArrayPtr<kj::byte> written = out.getArray();
    char head[PACKED_HEAD] = {static_cast<char>(PACKED_FORMAT)};
    for (std::size_t i = 0; i < 4; ++i)
        head[1 + i] = static_cast<char>((written.size() >> (8 * i)) & 0xff);
    const std::string_view parts[] = {
        std::string_view(head, sizeof head),
        std::string_view(reinterpret_cast<const char*>(written.begin()), written.size()),
        std::string_view(m.body)};
    return store.addMessage(parts);
}

// Calls `use` with the root of a stored message's bytes and its body; false for bytes that are
// not a message (damaged, or a newer version's).
template <typename Use> bool withStored(std::string_view bytes, Use&& use) {
    if (bytes.empty())
        return false;
    try {
        if (static_cast<unsigned char>(bytes[0]) == PACKED_FORMAT) {
            if (bytes.size() < PACKED_HEAD)
                return false;
            std::size_t length = 0;
            for (std::size_t i = 0; i < 4; ++i)
                length |= std::size_t{static_cast<unsigned char>(bytes[1 + i])} << (8 * i);
            if (length > bytes.size() - PACKED_HEAD)
                return false;
            const auto packed =
                kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data() + PACKED_HEAD), length);
            // Headers may be larger than the default traversal limit (64 MiB) allows: allow
            // what these bytes unpack to, as the frame reader allows what a frame holds.
            capnp::ReaderOptions options;
            options.traversalLimitInWords = capnp::computeUnpackedSizeInWords(packed) * 4 + 64;
            kj::ArrayInputStream in(packed);
            // Unpacked into a buffer reused for every message (a recovery reads a million).
            constexpr std::size_t SCRATCH_WORDS = 1024;
            thread_local const std::unique_ptr<capnp::word[]> scratch =
                std::make_unique<capnp::word[]>(SCRATCH_WORDS);
            capnp::PackedMessageReader reader(
                in, options, kj::ArrayPtr<capnp::word>(scratch.get(), SCRATCH_WORDS));
            use(reader.getRoot<wire::Message>(), bytes.substr(PACKED_HEAD + length));
            return true;
        }
        if (bytes.size() % sizeof(capnp::word) != 0)
            return false;
        // The earlier, unpacked form. Copied to word alignment (a record's bytes in a segment
        // are not aligned) into one buffer reused for every message.
        thread_local std::unique_ptr<capnp::word[]> words;
        thread_local std::size_t capacity = 0;
        const std::size_t count = bytes.size() / sizeof(capnp::word);
        if (count > capacity) {
            words = std::make_unique<capnp::word[]>(count);
            capacity = count;
        }
        std::memcpy(words.get(), bytes.data(), bytes.size());
        // The default traversal limit (64 MiB) is below the largest body a publish may carry: as
        // the frame reader does, allow what these bytes can hold, which a store record bounds.
        capnp::ReaderOptions options;
        options.traversalLimitInWords = count * 4 + 64;
        capnp::FlatArrayMessageReader reader(kj::ArrayPtr<const capnp::word>(words.get(), count),
                                             options);
        const auto root = reader.getRoot<wire::Message>();
        const auto body = root.getBody();
        use(root, std::string_view(reinterpret_cast<const char*>(body.begin()), body.size()));
        return true;
    } catch (const kj::Exception&) {
        return false;
    } catch (const protocol::ProtocolError&) {
        return false;
    }
}

core::MessageRef decode(std::string_view bytes) {
    core::MessageRef message;
    (void)withStored(bytes, [&](wire::Message::Reader m, std::string_view body) {
        auto built = std::make_shared<core::Message>();
        built->exchange = view(m.getExchange());
        built->routingKey = view(m.getRoutingKey());
        protocol::readProperties(m.getProperties(), built->properties);
        if (m.hasDeaths())
            built->deaths = fromWire(m.getDeaths());
        built->body = protocol::paddedBody(
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(body.data()), body.size()));
        message = std::move(built);
    });
    return message;
}

// What recovery needs of a stored message to queue it without its contents.
struct Peeked {
    bool ok = false;
    std::uint32_t bodyBytes = 0;
    std::optional<core::Milliseconds> expiration;
    std::int64_t storedAtMillis = 0; // 0: written before the store kept it
};

Peeked peek(std::string_view bytes) {
    Peeked p;
    p.ok = withStored(bytes, [&](wire::Message::Reader m, std::string_view body) {
        p.bodyBytes = static_cast<std::uint32_t>(body.size());
        const auto expiration = m.getProperties().getExpiration();
        if (expiration.isMilliseconds())
            p.expiration = fromWire(m.getProperties()).expiration; // validated as on publish
        p.storedAtMillis = m.getStoredAtMillis();
    });
    return p;
}

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
            const Peeked known = peek(recovered_.message(entry.messageId));
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
        message->journalHandle = addEncoded(*store_, *message);
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
        out[i] = bytes[i].empty() ? nullptr : decode(bytes[i]);
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
