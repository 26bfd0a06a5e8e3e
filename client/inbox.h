#pragma once
// An Inbox remembers the ids of the messages a consumer has handled, so that a redelivered
// message (at-least-once delivery: a consumer that died before its ack, a publisher that sent
// again) is recognised and dropped instead of being handled twice.
//
// In memory, or backed by a file of one id per line that is read back on start: a service that
// is killed and restarted still knows what it did. Appends go to the file before the message
// is acked; a line is written with one write() call, so a process crash (kill -9) cannot leave
// a torn id that matters: a torn last line is an id nobody will send, and is ignored. Surviving
// a machine crash would need an fsync per record, which this does not do.
//
// It keeps the newest `capacity` ids (older ones are forgotten, oldest first); the file is
// rewritten with only those when it has grown past twice that.

#include <cstddef>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace depot::client {

class Inbox {
public:
    static constexpr std::size_t DEFAULT_CAPACITY = 1'000'000;

    explicit Inbox(std::size_t capacity = DEFAULT_CAPACITY);
    // Reads `file` if it exists, then appends to it. Throws std::runtime_error when it cannot.
    explicit Inbox(std::filesystem::path file, std::size_t capacity = DEFAULT_CAPACITY);
    ~Inbox();
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;

    bool contains(std::string_view id) const;
    // Returns false (and does nothing) when `id` was already there.
    bool record(std::string_view id);
    std::size_t size() const;

private:
    void remember(std::string id);
    void compact();

    std::size_t capacity_;
    std::filesystem::path file_;
    int fd_ = -1;
    std::size_t linesInFile_ = 0;
    mutable std::mutex mutex_;
    std::unordered_set<std::string> ids_;
    std::deque<std::string> order_; // oldest first, for eviction and compaction
};

} // namespace depot::client
