#pragma once
// The message store: what durable queues hold, on disk, so that it survives a crash of the
// broker (issue 5). Single-threaded, like the core it will serve: the owner calls it from one
// thread and decides when to sync (group commit: many publishes, one fsync).
//
// Layout: a directory of segment files 00000001.seg, 00000002.seg, ... appended to in order,
// the last one active. Each starts with a 16-byte header ("DEPOTSEG", version) followed by
// records:
//
//   u32 length of payload | u32 CRC-32C of (type, payload) | u8 type | payload
//
//   MESSAGE   u64 id, then the message's bytes (opaque here: the owner encodes it)
//   ENQUEUE   u64 message id, u64 sequence (per queue, increasing), u16 name length, name
//   ACK       u64 message id, u16 name length, name
//   DROP      u16 name length, name (a durable queue deleted or purged: its entries go)
//
// A message routed to several durable queues is written once, with one ENQUEUE per queue.
// Integers are little-endian.
//
// The active segment's file is kept ZERO_AHEAD bytes longer than its records, filled with
// zeros (up to segmentBytes): an fdatasync then overwrites blocks the file already has and
// commits no metadata, where an append makes the filesystem commit the new length and blocks
// each time (ext4 on this VM, 40 KB written and fdatasync'd 3,000 times: a median of 280-320
// µs instead of 505, and a third less CPU). Zeros where a record header should be, and only
// zeros after them, are the end of a segment's records; recovery cuts them (appends go to a
// new segment). Best effort: where the zeros cannot be written (a full disk), the records are
// appended as before.
//
// Recovery reads every segment in order and rebuilds, per queue, the messages enqueued and not
// acked, ordered by sequence. A record whose length runs past the end of the file or whose
// checksum fails ends what is read of that segment: in the last segment that is a torn tail (a
// crash in the middle of an append) and the file is cut there; in an older one it is
// corruption, and the rest of that segment is skipped. Either way it is reported, never read as
// data.
//
// Disk use follows the live backlog: segments are deleted oldest first once nothing in them is
// live (no message still enqueued somewhere, no enqueue not yet acked); and the oldest segment,
// when little of it is live and the store holds more dead bytes than live ones, is compacted
// (its live records copied to the active segment) so that one old message does not pin
// everything written after it. The second condition, and a third, spare a queue drained in
// order: its head segment, nearly consumed, would be copied only to be consumed a moment later
// (disk use may then reach about twice the live bytes before compaction starts). The third: the
// oldest segment is compacted only once it has stopped draining, none of its records having
// gone for `compactAfter` (or, drained slowly, once it has waited ten times that); collect()
// says when it waits, so that the owner calls it again. Only the oldest is ever deleted, so an ACK
// or DROP record is never deleted before the ENQUEUE records it cancels.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace depot::store {

// What a store held when it was opened.
struct Recovered {
    struct Entry {
        std::uint64_t messageId = 0;
        std::uint64_t sequence = 0;
    };
    std::map<std::string, std::vector<Entry>, std::less<>> queues; // in queue order
    // The live messages' bytes (views into segmentData), by id, sorted: one allocation, not a
    // node per message.
    std::vector<std::pair<std::uint64_t, std::string_view>> messages;
    std::vector<std::string> segmentData; // what was read of each segment
    std::vector<std::string> problems;    // torn tails and corruption found, one line each
    // A live message's bytes; throws std::out_of_range for an id it does not have.
    std::string_view message(std::uint64_t id) const;
};

struct StoreStats {
    std::size_t segments = 0;
    std::uint64_t bytesOnDisk = 0;
    std::size_t liveMessages = 0;
    std::uint64_t syncs = 0;
    std::uint64_t failedSyncs = 0; // syncs that hit an I/O error (disk full)
    std::uint64_t compactions = 0;
};

class MessageStore {
public:
    struct Options {
        std::filesystem::path directory;
        std::uint64_t segmentBytes = std::uint64_t{64} << 20; // a new segment past this size
        // The oldest segment is compacted when less than this share of its bytes is live, and
        // none of them has gone for compactAfter (it is not being drained).
        double compactBelow = 0.25;
        std::chrono::milliseconds compactAfter{1000};
    };

    // Opens (creating the directory) and recovers. Throws StoreError when the directory cannot
    // be used; damaged records are reported in `recovered.problems`, not thrown.
    static std::unique_ptr<MessageStore> open(const Options& options, Recovered& recovered);
    ~MessageStore();
    MessageStore(const MessageStore&) = delete;
    MessageStore& operator=(const MessageStore&) = delete;

    // Each appends a record to the write buffer; nothing is durable until sync() returns.
    // A message is live while a queue holds it: enqueue it before the next collect(), which
    // forgets messages no queue holds.
    std::uint64_t addMessage(std::string_view bytes); // returns the message's id
    // The same for bytes in several pieces (an encoder's segments), copied once, into the
    // write buffer.
    std::uint64_t addMessage(std::span<const std::string_view> parts);
    // False (nothing written) when the store no longer has the message: add it again.
    bool enqueue(std::string_view queue, std::uint64_t messageId);
    // False (nothing written) for a pair the store does not hold: ignored.
    bool ack(std::string_view queue, std::uint64_t messageId);
    void dropQueue(std::string_view queue);
    // Live messages' bytes, out[i] for ids[i], wherever they are: on disk, in the batch being
    // written, or pending; "" for one it cannot read (an id it does not hold, an I/O error: a
    // message's bytes are never empty). Neighbours in one segment file, in the order asked,
    // come from one read.
    std::vector<std::string> read(std::span<const std::uint64_t> ids) const;

    // Writes what is pending and fsyncs: what was added before is on disk when it returns.
    // Throws StoreError on an I/O error (disk full): nothing half-written stays on disk, the
    // owner must not confirm what it could not sync, and what is pending stays pending, to be
    // written by the next sync() (call it again when space may have returned).
    void sync();

    // sync() in three steps, so that the writing can happen on another thread while this one
    // goes on appending: takePending() moves the pending records into a batch (nothing when
    // none), writeBatch() writes and fsyncs it (any thread; it touches only the batch and its
    // files; throws StoreError), then batchWritten() or batchFailed() on this thread again
    // (failed: the records are pending again). One batch at a time; no collect() meanwhile.
    struct SyncBatch {
        struct Part {
            std::uint32_t segment = 0;
            int fd = -1; // -1: create the file first (create)
            bool create = false;
            bool written = false; // on disk (set by writeBatch)
            std::filesystem::path path;
            std::filesystem::path directory;
            std::uint64_t offset = 0; // where the bytes go
            std::string bytes;
            std::uint64_t zeroedTo = 0;  // the file's length: records, then zeros (in and out)
            std::uint64_t zeroLimit = 0; // no zeros past this (the segment size)
        };
        std::vector<Part> parts;
        bool empty() const { return parts.empty(); }
    };
    SyncBatch takePending();
    static void writeBatch(SyncBatch& batch);
    void batchWritten(SyncBatch&& batch);
    void batchFailed(SyncBatch&& batch);
    bool batchInFlight() const { return inFlight_; }
    // Deletes and compacts old segments (see above). Cheap when there is nothing to do. True
    // when the oldest segment waits to be compacted (it is still draining, or has stopped only
    // lately): call again, at `now` plus compactAfter at the latest, for it to happen.
    bool collect(std::chrono::steady_clock::time_point now);
    bool collect() { return collect(std::chrono::steady_clock::now()); }
    std::chrono::milliseconds compactAfter() const { return options_.compactAfter; }

    StoreStats stats() const;
    bool hasUnsynced() const { return unsynced_ > 0; }

private:
    struct Segment;
    static void preallocate(SyncBatch::Part& part); // zeros ahead of the part's records
    struct MessageInfo {
        std::uint32_t segment = 0; // number
        std::uint64_t offset = 0;  // of the record's payload in the file
        std::uint32_t size = 0;    // of the message's bytes
        std::uint32_t references = 0;
    };
    struct QueueEntry {
        std::uint64_t sequence = 0; // its place in the queue (recovery sorts by it)
        std::uint32_t segment = 0;  // where its ENQUEUE record is
    };
    // By message id only: what an ack looks up. The order is needed only on recovery, which
    // sorts; no ordered map to keep up on every enqueue and ack.
    struct QueueIndex {
        std::unordered_map<std::uint64_t, QueueEntry> entries;
        std::uint64_t nextSequence = 1;
    };

    explicit MessageStore(Options options);
    void recover(Recovered& recovered);
    void startSegment();
    static int createFile(const std::filesystem::path& path,
                          const std::filesystem::path& directory);
    void append(std::uint8_t type, std::string_view head, std::string_view tail = {});
    void append(std::uint8_t type, std::string_view head, std::span<const std::string_view> tail);
    void release(std::uint64_t messageId);
    void compactOldest();
    bool mostlyDead() const; // more dead bytes than live ones on disk
    std::string readMessage(const MessageInfo& info) const;
    void segmentLost(std::uint32_t segment); // a live record in it went away
    void keepSpare(std::string&& buffer);    // a written batch's buffer, as spare_

    Options options_;
    std::map<std::uint32_t, std::unique_ptr<Segment>> segments_; // oldest first
    std::uint64_t unsynced_ = 0;  // bytes pending in segments, not yet written and synced
    bool inFlight_ = false;       // a SyncBatch is out (takePending .. batchWritten/Failed)
    bool lastSyncFailed_ = false; // until a sync succeeds, collect() leaves old segments alone
    std::uint64_t nextMessageId_ = 1;
    std::unordered_map<std::uint64_t, MessageInfo> messages_;
    std::vector<std::uint64_t> added_; // ids added since the last collect()
    std::map<std::string, QueueIndex, std::less<>> queues_;
    std::uint64_t syncs_ = 0;
    std::uint64_t failedSyncs_ = 0;
    std::uint64_t compactions_ = 0;
    std::string scratch_; // a record's payload, built here before append() copies it
    std::string spare_;   // a written batch's buffer, empty, for the next records to go into
    // The oldest segment as a compaction candidate: its live bytes when last seen changed,
    // since when they have stayed so, and since when it has been the candidate.
    struct Candidate {
        std::uint32_t segment = 0;
        std::uint64_t liveBytes = 0;
        std::chrono::steady_clock::time_point since;
        std::chrono::steady_clock::time_point first;
    };
    Candidate candidate_;
};

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace depot::store
