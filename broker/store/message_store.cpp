#include "broker/store/message_store.h"

#include "broker/store/crc32c.h"
#include "broker/store/write_all.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace depot::store {

namespace {

constexpr char MAGIC[8] = {'D', 'E', 'P', 'O', 'T', 'S', 'E', 'G'};
constexpr std::uint32_t VERSION = 1;
constexpr std::size_t SEGMENT_HEADER = 16;
constexpr std::size_t RECORD_HEADER = 9;         // length, checksum, type
constexpr std::uint32_t MAX_RECORD = 512u << 20; // a sanity bound on a length field
constexpr std::size_t NAME_LIMIT = 0xffff;
constexpr int COMPACT_WAIT_LIMIT = 10; // see collect()
// How far the active segment's file runs ahead of its records in zeros. Measured (pwrite of 40
// KB + fdatasync, 3,000 times, ext4 on virtio): 1 MiB ahead gained nearly as much as 4, 16 MiB
// made the write that adds them stall 15 ms.
constexpr std::uint64_t ZERO_AHEAD = std::uint64_t{4} << 20;

enum RecordType : std::uint8_t { MESSAGE = 1, ENQUEUE = 2, ACK = 3, DROP = 4 };

StoreError ioError(const std::string& what, const std::filesystem::path& path) {
    return StoreError(what + " " + path.string() + ": " + std::strerror(errno));
}

// The store's integers: little-endian, whatever the host.
template <typename T> std::array<char, sizeof(T)> littleEndian(T v) {
    std::array<char, sizeof(T)> bytes;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return bytes;
}
// In one append (a byte at a time, each with its capacity check, was 3 % of depotd's loop in
// the persistent benchmark).
template <typename T> void putLittleEndian(std::string& out, T v) {
    const auto bytes = littleEndian(v);
    out.append(bytes.data(), bytes.size());
}
void put32(std::string& out, std::uint32_t v) {
    putLittleEndian(out, v);
}
void put64(std::string& out, std::uint64_t v) {
    putLittleEndian(out, v);
}
void putName(std::string& out, std::string_view name) {
    if (name.size() > NAME_LIMIT)
        throw StoreError("queue name longer than 65535 bytes");
    out += static_cast<char>(name.size() & 0xff);
    out += static_cast<char>(name.size() >> 8);
    out.append(name);
}

// Reads little-endian fields from a record's payload; `ok` turns false past its end.
class Reader {
public:
    Reader(const char* data, std::size_t size) : p_(data), left_(size) {}
    std::uint64_t get(int bytes) {
        if (left_ < static_cast<std::size_t>(bytes)) {
            ok_ = false;
            return 0;
        }
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p_[i])) << (8 * i);
        p_ += bytes;
        left_ -= static_cast<std::size_t>(bytes);
        return v;
    }
    std::string name() {
        const auto size = static_cast<std::size_t>(get(2));
        if (!ok_ || left_ < size) {
            ok_ = false;
            return {};
        }
        std::string out(p_, size);
        p_ += size;
        left_ -= size;
        return out;
    }
    std::size_t offsetFrom(const char* start) const { return static_cast<std::size_t>(p_ - start); }
    std::size_t left() const { return left_; }
    bool ok() const { return ok_; }

private:
    const char* p_;
    std::size_t left_;
    bool ok_ = true;
};

// From `at` to the end, only zeros: a segment's preallocated, never written tail.
bool zeroTail(const std::string& data, std::size_t at) {
    return std::all_of(data.begin() + static_cast<std::ptrdiff_t>(at), data.end(),
                       [](char c) { return c == 0; });
}

std::string readFile(int fd, std::uint64_t size) {
    std::string data(size, '\0');
    std::uint64_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(fd, data.data() + done, size - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += static_cast<std::uint64_t>(n);
    }
    data.resize(done);
    return data;
}

void syncDirectory(const std::filesystem::path& directory) {
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)::fsync(fd);
        ::close(fd);
    }
}

} // namespace

std::string_view Recovered::message(std::uint64_t id) const {
    auto it =
        std::lower_bound(messages.begin(), messages.end(), id,
                         [](const auto& entry, std::uint64_t key) { return entry.first < key; });
    if (it == messages.end() || it->first != id)
        throw std::out_of_range("no recovered message " + std::to_string(id));
    return it->second;
}

struct MessageStore::Segment {
    std::uint32_t number = 0;
    std::filesystem::path path;
    int fd = -1;                // -1 until its first sync creates the file
    std::uint64_t size = 0;     // bytes in the file plus those pending for it
    std::uint64_t written = 0;  // bytes in the file (written; durable once synced)
    std::uint64_t zeroedTo = 0; // the file's length: `written`, then zeros (see preallocate)
    std::string pending;        // records appended and not yet written: the last bytes of size
    // The records a SyncBatch is writing (its bytes; their place in the file), so that read()
    // finds them meanwhile. The batch's buffer does not move while it is out.
    std::string_view inFlight;
    std::uint64_t inFlightOffset = 0;
    std::uint64_t live = 0;      // live records in it (messages still referenced, enqueues)
    std::uint64_t liveBytes = 0; // their sizes
    ~Segment() {
        if (fd >= 0)
            ::close(fd);
    }
};

MessageStore::MessageStore(Options options) : options_(std::move(options)) {}

MessageStore::~MessageStore() = default;

std::unique_ptr<MessageStore> MessageStore::open(const Options& options, Recovered& recovered) {
    std::error_code error;
    std::filesystem::create_directories(options.directory, error);
    if (error)
        throw StoreError("cannot create " + options.directory.string() + ": " + error.message());
    std::unique_ptr<MessageStore> store(new MessageStore(options));
    store->recover(recovered);
    store->startSegment(); // appends always go to a fresh segment: a recovered tail stays read-only
    Segment& first = *store->segments_.rbegin()->second; // created now: a bad dir fails here
    first.fd = createFile(first.path, options.directory);
    first.written = first.zeroedTo = SEGMENT_HEADER;
    return store;
}

void MessageStore::recover(Recovered& recovered) {
    std::vector<std::uint32_t> numbers;
    for (const auto& entry : std::filesystem::directory_iterator(options_.directory)) {
        const std::string name = entry.path().filename().string();
        unsigned number = 0;
        char tail[8] = {};
        if (std::sscanf(name.c_str(), "%8u.%3s", &number, tail) == 2 &&
            std::string(tail) == "seg" && name.size() == 12 && number > 0)
            numbers.push_back(number);
    }
    std::sort(numbers.begin(), numbers.end());
    std::unordered_map<std::uint32_t, std::size_t> dataOf; // segment number -> segmentData index

    for (std::size_t index = 0; index < numbers.size(); ++index) {
        const bool last = index + 1 == numbers.size();
        auto segment = std::make_unique<Segment>();
        segment->number = numbers[index];
        char name[16];
        std::snprintf(name, sizeof name, "%08u.seg", segment->number);
        segment->path = options_.directory / name;
        segment->fd = ::open(segment->path.c_str(), O_RDWR | O_CLOEXEC);
        if (segment->fd < 0)
            throw ioError("cannot open", segment->path);
        const std::uint64_t fileSize =
            static_cast<std::uint64_t>(::lseek(segment->fd, 0, SEEK_END));
        // Kept until the owner is done with `recovered`: messages are views into it (one
        // allocation per segment, released whole, rather than one per message).
        recovered.segmentData.push_back(readFile(segment->fd, fileSize));
        dataOf[segment->number] = recovered.segmentData.size() - 1;
        const std::string& data = recovered.segmentData.back();
        std::size_t at = SEGMENT_HEADER;
        if (data.size() < SEGMENT_HEADER || std::memcmp(data.data(), MAGIC, 8) != 0) {
            recovered.problems.push_back(segment->path.string() + ": not a segment, ignored");
            continue;
        }
        while (at < data.size()) {
            if (data[at] == 0 && zeroTail(data, at)) {
                // The zeros ahead of the records, never written over: the file is read-only
                // from now on, so they go (nothing is lost if that is not durable).
                (void)::ftruncate(segment->fd, static_cast<off_t>(at));
                break;
            }
            Reader header(data.data() + at, data.size() - at);
            const auto length = static_cast<std::uint32_t>(header.get(4));
            const auto checksum = static_cast<std::uint32_t>(header.get(4));
            const auto type = static_cast<std::uint8_t>(header.get(1));
            const bool fits =
                header.ok() && length <= MAX_RECORD && at + RECORD_HEADER + length <= data.size();
            if (!fits || crc32c(data.data() + at + 8, 1 + length) != checksum) {
                const std::uint64_t dropped = data.size() - at;
                if (last) {
                    recovered.problems.push_back(segment->path.string() + ": torn tail at offset " +
                                                 std::to_string(at) + ", " +
                                                 std::to_string(dropped) + " bytes cut");
                    if (::ftruncate(segment->fd, static_cast<off_t>(at)) != 0)
                        throw ioError("cannot truncate", segment->path);
                    (void)::fsync(segment->fd);
                } else {
                    recovered.problems.push_back(
                        segment->path.string() + ": " + (fits ? "bad checksum" : "bad length") +
                        " at offset " + std::to_string(at) + ", the " + std::to_string(dropped) +
                        " bytes after it skipped");
                }
                break;
            }
            const char* payload = data.data() + at + RECORD_HEADER;
            Reader r(payload, length);
            switch (type) {
            case MESSAGE: {
                const std::uint64_t id = r.get(8);
                const auto offset = at + RECORD_HEADER + r.offsetFrom(payload);
                messages_[id] =
                    MessageInfo{segment->number, offset, static_cast<std::uint32_t>(r.left()), 0};
                nextMessageId_ = std::max(nextMessageId_, id + 1);
                break;
            }
            case ENQUEUE: {
                const std::uint64_t id = r.get(8);
                const std::uint64_t sequence = r.get(8);
                const std::string queue = r.name();
                if (!r.ok())
                    break;
                QueueIndex& index = queues_[queue];
                index.entries[id] = QueueEntry{sequence, segment->number}; // a copy moves it
                index.nextSequence = std::max(index.nextSequence, sequence + 1);
                break;
            }
            case ACK: {
                const std::uint64_t id = r.get(8);
                const std::string queue = r.name();
                auto q = queues_.find(queue);
                if (!r.ok() || q == queues_.end())
                    break;
                q->second.entries.erase(id);
                break;
            }
            case DROP: {
                const std::string queue = r.name();
                if (r.ok())
                    queues_.erase(queue);
                break;
            }
            default:
                break; // a record type from a newer version: skipped
            }
            at += RECORD_HEADER + length;
        }
        segment->size = segment->written = std::min<std::uint64_t>(at, data.size());
        segments_[segment->number] = std::move(segment);
    }

    // What is live: enqueues not acked, and the messages they reference.
    for (auto& [name, index] : queues_) {
        std::vector<Recovered::Entry>& entries = recovered.queues[name];
        entries.reserve(index.entries.size());
        for (auto it = index.entries.begin(); it != index.entries.end();) {
            auto message = messages_.find(it->first);
            if (message == messages_.end()) { // its MESSAGE record was lost to corruption
                recovered.problems.push_back("queue '" + name + "': message " +
                                             std::to_string(it->first) + " missing, dropped");
                it = index.entries.erase(it);
                continue;
            }
            ++message->second.references;
            Segment& segment = *segments_.at(it->second.segment);
            ++segment.live;
            segment.liveBytes += RECORD_HEADER + 18 + name.size();
            entries.push_back(Recovered::Entry{it->first, it->second.sequence});
            ++it;
        }
        std::sort(entries.begin(), entries.end(),
                  [](const Recovered::Entry& a, const Recovered::Entry& b) {
                      return a.sequence < b.sequence;
                  });
    }
    recovered.messages.reserve(messages_.size());
    for (auto it = messages_.begin(); it != messages_.end();) {
        if (it->second.references == 0) {
            it = messages_.erase(it);
            continue;
        }
        Segment& segment = *segments_.at(it->second.segment);
        ++segment.live;
        segment.liveBytes += RECORD_HEADER + 8 + it->second.size;
        const std::string& data = recovered.segmentData[dataOf.at(it->second.segment)];
        recovered.messages.emplace_back(
            it->first, std::string_view(data).substr(it->second.offset, it->second.size));
        ++it;
    }
    std::sort(recovered.messages.begin(), recovered.messages.end());
}

// In memory only: its file is created by the sync that first writes to it, so that starting a
// segment (in the middle of a publish) never does I/O that could fail.
void MessageStore::startSegment() {
    const std::uint32_t number = segments_.empty() ? 1 : segments_.rbegin()->first + 1;
    auto segment = std::make_unique<Segment>();
    segment->number = number;
    char name[16];
    std::snprintf(name, sizeof name, "%08u.seg", number);
    segment->path = options_.directory / name;
    segment->size = SEGMENT_HEADER;
    segments_[number] = std::move(segment);
}

// Creates a started segment's file with its header, durably (the directory entry too); returns
// its descriptor.
int MessageStore::createFile(const std::filesystem::path& path,
                             const std::filesystem::path& directory) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw ioError("cannot create", path);
    std::string header(MAGIC, 8);
    put32(header, VERSION);
    put32(header, 0);
    if (!writeAll(fd, header) || ::fsync(fd) != 0) {
        const StoreError error = ioError("cannot write", path);
        ::close(fd); // tried again, from scratch, by the next sync
        (void)::unlink(path.c_str());
        throw error;
    }
    syncDirectory(directory);
    return fd;
}

// A record whose payload is `head` then `tail`, written straight into the active segment's
// pending bytes (the checksum computed over the pieces, nothing assembled first).
void MessageStore::append(std::uint8_t type, std::string_view head, std::string_view tail) {
    const std::string_view parts[] = {tail};
    append(type, head, parts);
}

void MessageStore::append(std::uint8_t type, std::string_view head,
                          std::span<const std::string_view> tail) {
    std::size_t payloadSize = head.size();
    for (const std::string_view part : tail)
        payloadSize += part.size();
    Segment* active = segments_.rbegin()->second.get();
    if (active->size + RECORD_HEADER + payloadSize > options_.segmentBytes &&
        active->size > SEGMENT_HEADER) {
        // The old segment's pending records are written (and synced) before the new one's.
        startSegment();
        active = segments_.rbegin()->second.get();
    }
    const char typeByte = static_cast<char>(type);
    std::uint32_t crc = crc32c(&typeByte, 1);
    crc = crc32c(head.data(), head.size(), crc);
    for (const std::string_view part : tail)
        crc = crc32c(part.data(), part.size(), crc);
    std::string& out = active->pending;
    put32(out, static_cast<std::uint32_t>(payloadSize));
    put32(out, crc);
    out += typeByte;
    out.append(head);
    for (const std::string_view part : tail)
        out.append(part);
    active->size += RECORD_HEADER + payloadSize;
    unsynced_ += RECORD_HEADER + payloadSize;
}

std::uint64_t MessageStore::addMessage(std::string_view bytes) {
    const std::string_view parts[] = {bytes};
    return addMessage(parts);
}

std::uint64_t MessageStore::addMessage(std::span<const std::string_view> parts) {
    const std::uint64_t id = nextMessageId_++;
    std::size_t size = 0;
    for (const std::string_view part : parts)
        size += part.size();
    const auto head = littleEndian(id);
    append(MESSAGE, std::string_view(head.data(), head.size()), parts);
    Segment& active = *segments_.rbegin()->second;
    messages_[id] =
        MessageInfo{active.number, active.size - size, static_cast<std::uint32_t>(size), 0};
    added_.push_back(id);
    return id; // live once enqueued (see collect)
}

bool MessageStore::enqueue(std::string_view queue, std::uint64_t messageId) {
    auto message = messages_.find(messageId);
    if (message == messages_.end())
        return false;
    auto q = queues_.find(queue);
    if (q == queues_.end())
        q = queues_.emplace(std::string(queue), QueueIndex{}).first;
    QueueIndex& index = q->second;
    auto [slot, inserted] = index.entries.try_emplace(messageId); // one lookup
    if (!inserted)
        return true; // enqueued there already
    const std::uint64_t sequence = index.nextSequence++;
    std::string& payload = scratch_; // no allocation per record
    payload.clear();
    put64(payload, messageId);
    put64(payload, sequence);
    putName(payload, queue);
    append(ENQUEUE, payload);
    Segment& active = *segments_.rbegin()->second;
    slot->second = QueueEntry{sequence, active.number};
    ++active.live;
    active.liveBytes += RECORD_HEADER + payload.size();
    if (message->second.references++ == 0) {
        Segment& home = *segments_.at(message->second.segment);
        ++home.live;
        home.liveBytes += RECORD_HEADER + 8 + message->second.size;
    }
    return true;
}

bool MessageStore::ack(std::string_view queue, std::uint64_t messageId) {
    auto q = queues_.find(queue);
    if (q == queues_.end())
        return false;
    auto s = q->second.entries.find(messageId);
    if (s == q->second.entries.end())
        return false;
    std::string& payload = scratch_;
    payload.clear();
    put64(payload, messageId);
    putName(payload, queue);
    append(ACK, payload);
    const QueueEntry entry = s->second;
    q->second.entries.erase(s);
    Segment& segment = *segments_.at(entry.segment);
    --segment.live;
    segment.liveBytes -=
        std::min<std::uint64_t>(segment.liveBytes, RECORD_HEADER + 18 + queue.size());
    release(messageId);
    return true;
}

void MessageStore::dropQueue(std::string_view queue) {
    auto q = queues_.find(queue);
    if (q == queues_.end())
        return;
    std::string payload;
    putName(payload, queue);
    append(DROP, payload);
    for (const auto& [messageId, entry] : q->second.entries) {
        Segment& segment = *segments_.at(entry.segment);
        --segment.live;
        segment.liveBytes -=
            std::min<std::uint64_t>(segment.liveBytes, RECORD_HEADER + 18 + queue.size());
        release(messageId);
    }
    queues_.erase(q);
}

void MessageStore::release(std::uint64_t messageId) {
    auto message = messages_.find(messageId);
    if (message == messages_.end() || --message->second.references > 0)
        return;
    Segment& home = *segments_.at(message->second.segment);
    --home.live;
    home.liveBytes -=
        std::min<std::uint64_t>(home.liveBytes, RECORD_HEADER + 8 + message->second.size);
    messages_.erase(message);
}

void MessageStore::sync() {
    SyncBatch batch = takePending();
    if (batch.empty())
        return;
    try {
        writeBatch(batch);
    } catch (const StoreError&) {
        batchFailed(std::move(batch));
        throw;
    }
    batchWritten(std::move(batch));
}

MessageStore::SyncBatch MessageStore::takePending() {
    SyncBatch batch;
    if (unsynced_ == 0)
        return batch;
    for (auto& [number, segment] : segments_) {
        if (segment->pending.empty() && segment->fd >= 0)
            continue;
        SyncBatch::Part part;
        part.segment = number;
        part.fd = segment->fd;
        part.create = segment->fd < 0;
        part.path = segment->path;
        part.directory = options_.directory;
        part.offset = segment->written;
        part.zeroedTo = segment->zeroedTo;
        part.zeroLimit = options_.segmentBytes;
        part.bytes.swap(segment->pending);
        // The active segment's next records go into the buffer the last batch gave back:
        // growing a new one again for every batch was a realloc and a copy of everything
        // pending, each doubling. An older segment gets no more records: no buffer for it.
        if (number == segments_.rbegin()->first) {
            segment->pending.swap(spare_);
            spare_.clear();
        }
        unsynced_ -= part.bytes.size();
        batch.parts.push_back(std::move(part));
    }
    for (const SyncBatch::Part& part : batch.parts) { // now that the parts are where they stay
        Segment& segment = *segments_.at(part.segment);
        segment.inFlight = part.bytes;
        // Pending bytes are the last of the segment's size (a new file's header comes first).
        segment.inFlightOffset = segment.size - segment.pending.size() - part.bytes.size();
    }
    inFlight_ = !batch.empty();
    return batch;
}

// Oldest segment first, each synced before the next is written: after a crash, a newer
// segment's records never exist without the older ones'. Touches only the batch and its files
// (the store's thread leaves them alone meanwhile).
void MessageStore::writeBatch(SyncBatch& batch) {
    for (SyncBatch::Part& part : batch.parts) {
        if (part.create) {
            part.fd = createFile(part.path, part.directory);
            part.offset = part.zeroedTo = SEGMENT_HEADER;
        }
        preallocate(part);
        // At the end of what is known written: after a failed write, over its remains.
        if (::lseek(part.fd, static_cast<off_t>(part.offset), SEEK_SET) < 0 ||
            !writeAll(part.fd, part.bytes) || ::fdatasync(part.fd) != 0) {
            const StoreError error = ioError("cannot write", part.path);
            // Cut what was half-written (and the zeros after it): never read as a torn tail.
            (void)::ftruncate(part.fd, static_cast<off_t>(part.offset));
            part.zeroedTo = part.offset;
            throw error;
        }
        part.written = true;
    }
}

// Once the records would reach past the zeros, ZERO_AHEAD more (the fdatasync after the
// records covers them too: the filesystem commits a new length once per ZERO_AHEAD, not once
// per batch). A failure (a full disk) ends them where they got to: the records that follow are
// appended as before.
void MessageStore::preallocate(SyncBatch::Part& part) {
    const std::uint64_t end = part.offset + part.bytes.size();
    const std::uint64_t target = std::min(end + ZERO_AHEAD, part.zeroLimit);
    if (end <= part.zeroedTo || target <= end)
        return;
    static const std::string zeros(64 * 1024, '\0');
    for (std::uint64_t at = std::max(part.zeroedTo, end); at < target;) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), target - at));
        const ssize_t wrote = ::pwrite(part.fd, zeros.data(), n, static_cast<off_t>(at));
        if (wrote <= 0) {
            if (wrote < 0 && errno == EINTR)
                continue;
            return;
        }
        at += static_cast<std::uint64_t>(wrote);
        part.zeroedTo = at;
    }
}

void MessageStore::batchWritten(SyncBatch&& batch) {
    inFlight_ = false;
    lastSyncFailed_ = false;
    for (SyncBatch::Part& part : batch.parts) {
        Segment& segment = *segments_.at(part.segment);
        segment.fd = part.fd;
        segment.written = part.offset + part.bytes.size();
        segment.zeroedTo = std::max(part.zeroedTo, segment.written);
        segment.inFlight = {};
        keepSpare(std::move(part.bytes));
    }
    ++syncs_;
}

void MessageStore::keepSpare(std::string&& buffer) {
    constexpr std::size_t MAX_SPARE = std::size_t{16} << 20; // a burst's buffer is not kept
    if (buffer.capacity() > spare_.capacity() && buffer.capacity() <= MAX_SPARE) {
        buffer.clear();
        spare_.swap(buffer);
    }
}

// The records go back in front of what was appended meanwhile: the next sync writes them again
// at the offsets the index gave them. The owner must not confirm them now.
void MessageStore::batchFailed(SyncBatch&& batch) {
    inFlight_ = false;
    lastSyncFailed_ = true;
    ++failedSyncs_;
    for (SyncBatch::Part& part : batch.parts) {
        Segment& segment = *segments_.at(part.segment);
        segment.inFlight = {};
        if (part.written) { // an older part of the batch is on disk: keep it
            segment.fd = part.fd;
            segment.written = part.offset + part.bytes.size();
            segment.zeroedTo = std::max(part.zeroedTo, segment.written);
            continue;
        }
        segment.zeroedTo = part.zeroedTo;  // the file was cut back to its records
        if (part.create && part.fd >= 0) { // made by this batch: made again by the next
            ::close(part.fd);
            (void)::unlink(part.path.c_str());
            segment.fd = -1;
        }
        unsynced_ += part.bytes.size();
        part.bytes += segment.pending;
        segment.pending.swap(part.bytes);
    }
}

bool MessageStore::collect(std::chrono::steady_clock::time_point now) {
    // Only a message added since the last collect can be unreferenced here (release() forgets
    // the others when their last queue lets go): looking at those alone keeps this O(new
    // messages), not O(backlog) per sync.
    if (inFlight_ || lastSyncFailed_)
        return false; // writes are under way, or failing: old segments stay as they are
    for (const std::uint64_t id : added_)
        if (auto it = messages_.find(id); it != messages_.end() && it->second.references == 0)
            messages_.erase(it);
    added_.clear();
    while (segments_.size() > 1) {
        Segment& oldest = *segments_.begin()->second;
        const double live = static_cast<double>(oldest.liveBytes) /
                            static_cast<double>(std::max<std::uint64_t>(1, oldest.size));
        if (oldest.live > 0 && (live >= options_.compactBelow || !mostlyDead()))
            return false;
        if (oldest.live > 0) {
            // Still draining (a consumer taking its messages in order): it may be all dead in
            // a moment, and copying it would be wasted. Measured: compacting under a consumer
            // was 12 % of depotd's CPU in a persistent 1 -> 1 run.
            // A segment drained slowly (one ack now and then) is compacted all the same once it
            // has been a candidate for COMPACT_WAIT_LIMIT times compactAfter: disk use must not
            // wait on a slow consumer while the segments behind it pile up.
            if (candidate_.segment != oldest.number)
                candidate_ = Candidate{oldest.number, oldest.liveBytes, now, now};
            else if (candidate_.liveBytes != oldest.liveBytes)
                candidate_ = Candidate{oldest.number, oldest.liveBytes, now, candidate_.first};
            if (now - candidate_.since < options_.compactAfter &&
                now - candidate_.first < options_.compactAfter * COMPACT_WAIT_LIMIT)
                return true;
        }
        // Whatever is pending first: compaction reads records from the files, and a segment is
        // deleted only once its records (and those of older ones) are on disk.
        if (unsynced_ > 0)
            sync();
        if (oldest.live == 0) {
            std::filesystem::remove(oldest.path);
            segments_.erase(segments_.begin());
            continue;
        }
        compactOldest();
    }
    return false;
}

bool MessageStore::mostlyDead() const {
    std::uint64_t total = 0, live = 0;
    for (const auto& [number, segment] : segments_) {
        total += segment->size;
        live += std::min(segment->liveBytes, segment->size);
    }
    return total - live > live;
}

// Copies the oldest segment's live records to the active one (messages with their ids,
// enqueues with their sequences, so order and identity survive), makes that durable, then
// deletes the oldest segment.
void MessageStore::compactOldest() {
    const std::uint32_t oldest = segments_.begin()->first;
    for (auto& [id, info] : messages_) {
        if (info.segment != oldest)
            continue;
        const std::string bytes = readMessage(info);
        std::string payload;
        put64(payload, id);
        payload += bytes;
        append(MESSAGE, payload);
        Segment& active = *segments_.rbegin()->second;
        info.segment = active.number;
        info.offset = active.size - bytes.size();
        ++active.live;
        active.liveBytes += RECORD_HEADER + payload.size();
    }
    for (auto& [name, index] : queues_) {
        for (auto& [messageId, entry] : index.entries) {
            if (entry.segment != oldest)
                continue;
            std::string payload;
            put64(payload, messageId);
            put64(payload, entry.sequence);
            putName(payload, name);
            append(ENQUEUE, payload);
            Segment& active = *segments_.rbegin()->second;
            entry.segment = active.number;
            ++active.live;
            active.liveBytes += RECORD_HEADER + payload.size();
        }
    }
    sync();
    std::filesystem::remove(segments_.begin()->second->path);
    segments_.erase(segments_.begin());
    ++compactions_;
}

std::vector<std::string> MessageStore::read(std::span<const std::uint64_t> ids) const {
    constexpr std::uint64_t MAX_RUN = 4u << 20; // bytes one read may cover
    std::vector<std::string> out(ids.size());
    std::size_t i = 0;
    while (i < ids.size()) {
        auto first = messages_.find(ids[i]);
        if (first == messages_.end()) {
            ++i;
            continue;
        }
        const MessageInfo& head = first->second;
        const Segment& segment = *segments_.at(head.segment);
        // A run: the next ids' records in the same file, after one another, all written.
        std::vector<const MessageInfo*> run{&head};
        std::uint64_t end = head.offset + head.size;
        while (end <= segment.written && i + run.size() < ids.size()) {
            auto next = messages_.find(ids[i + run.size()]);
            if (next == messages_.end())
                break;
            const MessageInfo& info = next->second;
            if (info.segment != head.segment || info.offset < end ||
                info.offset + info.size > segment.written ||
                info.offset + info.size - head.offset > MAX_RUN)
                break;
            run.push_back(&info);
            end = info.offset + info.size;
        }
        try {
            if (run.size() == 1) {
                out[i] = readMessage(head);
            } else {
                const std::string block = readMessage(MessageInfo{
                    head.segment, head.offset, static_cast<std::uint32_t>(end - head.offset), 0});
                for (std::size_t k = 0; k < run.size(); ++k)
                    out[i + k] = block.substr(run[k]->offset - head.offset, run[k]->size);
            }
        } catch (const StoreError&) {
            // Left empty: the owner reports them.
        }
        i += run.size();
    }
    return out;
}

std::string MessageStore::readMessage(const MessageInfo& info) const {
    const Segment& segment = *segments_.at(info.segment);
    const std::uint64_t pendingStart = segment.size - segment.pending.size();
    if (info.offset >= pendingStart)
        return segment.pending.substr(info.offset - pendingStart, info.size);
    if (!segment.inFlight.empty() && info.offset >= segment.inFlightOffset &&
        info.offset - segment.inFlightOffset < segment.inFlight.size())
        return std::string(
            segment.inFlight.substr(info.offset - segment.inFlightOffset, info.size));
    std::string bytes(info.size, '\0');
    std::size_t done = 0;
    while (done < info.size) {
        const ssize_t n = ::pread(segment.fd, bytes.data() + done, info.size - done,
                                  static_cast<off_t>(info.offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw ioError("cannot read", segment.path);
        done += static_cast<std::size_t>(n);
    }
    return bytes;
}

StoreStats MessageStore::stats() const {
    StoreStats s;
    s.segments = segments_.size();
    for (const auto& [number, segment] : segments_)
        s.bytesOnDisk += segment->size;
    s.liveMessages = messages_.size();
    s.syncs = syncs_;
    s.failedSyncs = failedSyncs_;
    s.compactions = compactions_;
    return s;
}

} // namespace depot::store
