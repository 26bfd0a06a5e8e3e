// broker/store: the message store on its own. What a durable queue holds comes back after the
// store is reopened, in order; acked and dropped entries do not; a torn tail or a bad checksum
// is reported and cut, never read as data; disk use follows the live backlog.

#include "tests/support/process.h"
#include "tests/support/segment_files.h"

#include "broker/store/crc32c.h"
#include "broker/store/message_store.h"

#include <doctest/doctest.h>

#include <chrono>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using depot::store::MessageStore;
using depot::store::Recovered;
using depot::tests::segmentRecordsEnd;
using depot::tests::TempDir;

namespace {

MessageStore::Options at(const TempDir& dir, std::uint64_t segmentBytes = 64u << 20) {
    MessageStore::Options options;
    options.directory = dir.file("store");
    options.segmentBytes = segmentBytes;
    options.compactAfter = std::chrono::milliseconds(0); // see the test of compactAfter
    return options;
}

// The bodies a queue holds after a reopen, in order.
std::vector<std::string> bodies(const Recovered& recovered, const std::string& queue) {
    std::vector<std::string> out;
    auto q = recovered.queues.find(queue);
    if (q == recovered.queues.end())
        return out;
    for (const auto& entry : q->second)
        out.emplace_back(recovered.message(entry.messageId));
    return out;
}

// `count` messages of 100 bytes enqueued on "q", and synced: their ids, in order.
std::vector<std::uint64_t> fillQueue(MessageStore& store, int count) {
    std::vector<std::uint64_t> ids;
    const std::string body(100, 'b');
    for (int i = 0; i < count; ++i) {
        ids.push_back(store.addMessage(body));
        store.enqueue("q", ids.back());
    }
    store.sync();
    return ids;
}

std::vector<std::filesystem::path> segmentFiles(const TempDir& dir) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir.file("store")))
        files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

} // namespace

TEST_CASE("crc32c: the standard check value and incremental use") {
    CHECK(depot::store::crc32c("123456789", 9) == 0xe3069283u);
    const std::string text = "The quick brown fox jumps over the lazy dog";
    const std::uint32_t whole = depot::store::crc32c(text.data(), text.size());
    const std::uint32_t first = depot::store::crc32c(text.data(), 10);
    CHECK(depot::store::crc32c(text.data() + 10, text.size() - 10, first) == whole);
}

TEST_CASE("store: synced messages come back in queue order, acked ones do not") {
    TempDir dir;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir), nothing);
        CHECK(nothing.queues.empty());
        for (int i = 1; i <= 5; ++i) {
            const auto id = store->addMessage("m" + std::to_string(i));
            store->enqueue("orders", id);
            if (i % 2 == 0)
                store->enqueue("audit", id); // one record, two queues
        }
        store->ack("orders", 1);
        store->ack("orders", 4);  // still in audit
        store->ack("orders", 99); // unknown: ignored
        store->sync();
        CHECK(store->stats().liveMessages == 4);
    }
    Recovered recovered;
    auto store = MessageStore::open(at(dir), recovered);
    CHECK(recovered.problems.empty());
    CHECK(bodies(recovered, "orders") == std::vector<std::string>{"m2", "m3", "m5"});
    CHECK(bodies(recovered, "audit") == std::vector<std::string>{"m2", "m4"});
    CHECK(recovered.messages.size() == 4);
    // New ids and sequences continue after the recovered ones.
    const auto id = store->addMessage("m6");
    CHECK(id == 6);
    store->enqueue("orders", id);
    store->sync();
    Recovered again;
    store.reset();
    store = MessageStore::open(at(dir), again);
    CHECK(bodies(again, "orders") == std::vector<std::string>{"m2", "m3", "m5", "m6"});
}

// An encoder's segments go in as they are: the message's bytes are their concatenation,
// pending, on disk and after a restart, with a checksum over all of them.
TEST_CASE("store: a message added in pieces reads back whole") {
    TempDir dir;
    const std::string_view pieces[] = {"framing|", "", "segment one|", "segment two"};
    std::uint64_t id = 0;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir), nothing);
        id = store->addMessage(pieces);
        store->enqueue("q", id);
        const std::uint64_t ids[] = {id};
        CHECK(store->read(ids).front() == "framing|segment one|segment two"); // pending
        store->sync();
        CHECK(store->read(ids).front() == "framing|segment one|segment two"); // on disk
    }
    Recovered recovered;
    auto store = MessageStore::open(at(dir), recovered);
    CHECK(recovered.problems.empty());
    CHECK(bodies(recovered, "q") == std::vector<std::string>{"framing|segment one|segment two"});
}

TEST_CASE("store: what was not synced is not there after a crash") {
    TempDir dir;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir), nothing);
        store->enqueue("q", store->addMessage("safe"));
        store->sync();
        store->enqueue("q", store->addMessage("buffered only"));
        CHECK(store->hasUnsynced());
    } // gone without sync, as in a kill -9
    Recovered recovered;
    auto store = MessageStore::open(at(dir), recovered);
    CHECK(bodies(recovered, "q") == std::vector<std::string>{"safe"});
}

TEST_CASE("store: a dropped queue's entries are gone, others stay") {
    TempDir dir;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir), nothing);
        const auto id = store->addMessage("shared");
        store->enqueue("a", id);
        store->enqueue("b", id);
        store->dropQueue("a");
        store->sync();
    }
    Recovered recovered;
    auto store = MessageStore::open(at(dir), recovered);
    CHECK(recovered.queues.count("a") == 0);
    CHECK(bodies(recovered, "b") == std::vector<std::string>{"shared"});
}

TEST_CASE("store: a torn tail is reported and cut, what precedes it is intact") {
    TempDir dir;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir), nothing);
        store->enqueue("q", store->addMessage("one"));
        store->enqueue("q", store->addMessage("two"));
        store->sync();
    }
    const auto last = segmentFiles(dir).back();
    const auto end = segmentRecordsEnd(last);
    { // half a record over the zeros after them, as a crash in the middle of a write leaves it
        std::fstream out(last, std::ios::in | std::ios::out | std::ios::binary);
        out.seekp(static_cast<std::streamoff>(end));
        const char partial[] = {40, 0, 0, 0, 1, 2, 3, 4, 1, 'x', 'y'};
        out.write(partial, sizeof partial);
    }
    Recovered recovered;
    auto store = MessageStore::open(at(dir), recovered);
    REQUIRE(recovered.problems.size() == 1);
    CHECK(recovered.problems[0].find("torn tail") != std::string::npos);
    CHECK(bodies(recovered, "q") == std::vector<std::string>{"one", "two"});
    CHECK(std::filesystem::file_size(last) == end); // cut back
}

TEST_CASE("store: the active segment runs ahead of its records in zeros, read as its end") {
    TempDir dir;
    constexpr std::uint64_t SEGMENT = 1u << 20; // below the 4 MiB the store keeps ahead
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir, SEGMENT), nothing);
        fillQueue(*store, 3);
        const auto file = segmentFiles(dir).back();
        CHECK(std::filesystem::file_size(file) == SEGMENT); // zeros up to the segment's size
        CHECK(segmentRecordsEnd(file) < 1024);
        fillQueue(*store, 2); // written over the zeros
        CHECK(std::filesystem::file_size(file) == SEGMENT);
    }
    const auto first = segmentFiles(dir).back();
    Recovered recovered;
    auto store = MessageStore::open(at(dir, SEGMENT), recovered);
    CHECK(recovered.problems.empty()); // the zeros are no torn tail
    CHECK(bodies(recovered, "q").size() == 5);
    // Appends go to a new segment: the old one's zeros are cut.
    CHECK(std::filesystem::file_size(first) == segmentRecordsEnd(first));
    // Past the segment size, a new segment; the first keeps no zeros past it.
    fillQueue(*store, 12'000);
    const auto files = segmentFiles(dir);
    REQUIRE(files.size() >= 3);
    CHECK(std::filesystem::file_size(files[1]) <= SEGMENT);
    store.reset();
    Recovered again;
    store = MessageStore::open(at(dir, SEGMENT), again);
    CHECK(again.problems.empty());
    CHECK(bodies(again, "q").size() == 12'005);
}

TEST_CASE("store: a bad checksum ends that segment's reading, later segments still count") {
    TempDir dir;
    {
        Recovered nothing;
        auto store = MessageStore::open(at(dir, 100), nothing); // one message each
        for (int i = 1; i <= 6; ++i)
            store->enqueue("q", store->addMessage("message-" + std::to_string(i)));
        store->sync();
    }
    const auto files = segmentFiles(dir);
    REQUIRE(files.size() >= 3);
    { // flip one byte of the first record's payload in the first segment
        std::fstream file(files.front(), std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(16 + 9 + 8);
        file.put('!');
    }
    Recovered recovered;
    auto store = MessageStore::open(at(dir, 100), recovered);
    bool reported = false;
    for (const auto& problem : recovered.problems)
        reported = reported || problem.find("bad checksum") != std::string::npos;
    CHECK(reported);
    const auto kept = bodies(recovered, "q");
    CHECK_FALSE(kept.empty());
    for (const auto& body : kept)
        CHECK(body != "message-1"); // never read as data
    CHECK(kept.back() == "message-6");
}

TEST_CASE("store: disk use follows the backlog: acked segments go, an old survivor is moved") {
    TempDir dir;
    Recovered nothing;
    auto store = MessageStore::open(at(dir, 4096), nothing);
    std::vector<std::uint64_t> ids;
    const std::string body(100, 'b');
    for (int i = 0; i < 400; ++i) {
        ids.push_back(store->addMessage(body + std::to_string(i)));
        store->enqueue("q", ids.back());
    }
    store->sync();
    const std::size_t before = store->stats().segments;
    CHECK(before > 10);
    // Everything but the very first message is consumed.
    for (std::size_t i = 1; i < ids.size(); ++i)
        store->ack("q", ids[i]);
    store->sync();
    store->collect();
    CHECK(store->stats().segments <= 3);
    CHECK(store->stats().compactions >= 1);
    CHECK(store->stats().liveMessages == 1);
    store.reset();

    Recovered recovered;
    store = MessageStore::open(at(dir, 4096), recovered);
    CHECK(recovered.problems.empty());
    CHECK(bodies(recovered, "q") == std::vector<std::string>{body + "0"});
    store->ack("q", ids[0]);
    store->sync();
    store->collect();
    CHECK(store->stats().segments == 1); // only the active one
}

// What a queue pages out it reads back by id, wherever the bytes are at that moment.
TEST_CASE("store: read gives a message's bytes back while pending, being written, on disk, moved") {
    TempDir dir;
    Recovered nothing;
    auto store = std::shared_ptr<MessageStore>(MessageStore::open(at(dir, 4096), nothing));
    struct {
        std::shared_ptr<MessageStore> store;
        std::string read(std::uint64_t id) const {
            const std::uint64_t ids[] = {id};
            return store->read(ids).front();
        }
    } reader{store};
    const std::uint64_t kept = store->addMessage("the survivor");
    store->enqueue("q", kept);
    CHECK(reader.read(kept) == "the survivor"); // pending
    MessageStore::SyncBatch batch = store->takePending();
    const std::uint64_t later = store->addMessage("appended meanwhile");
    store->enqueue("q", later);
    CHECK(reader.read(kept) == "the survivor"); // in the batch
    CHECK(reader.read(later) == "appended meanwhile");
    MessageStore::writeBatch(batch);
    store->batchWritten(std::move(batch));
    CHECK(reader.read(kept) == "the survivor"); // in the file
    CHECK(reader.read(later) == "appended meanwhile");
    // Both at once (one read from the file), and an unknown id among them.
    const std::uint64_t both[] = {kept, 999, later};
    CHECK(store->read(both) == std::vector<std::string>{"the survivor", "", "appended meanwhile"});
    // Enough after it, consumed, for the segment to be compacted: the survivor moves.
    const std::string body(200, 'x');
    for (int i = 0; i < 100; ++i) {
        const std::uint64_t id = store->addMessage(body);
        store->enqueue("q", id);
        store->ack("q", id);
    }
    store->ack("q", later);
    store->sync();
    store->collect();
    CHECK(store->stats().compactions >= 1);
    CHECK(reader.read(kept) == "the survivor");
    CHECK(reader.read(later).empty()); // acked: gone
}

// A queue consumed in order: the head segment, nearly all consumed, is not copied to the active
// one (its last messages would be consumed a moment later); it goes when it is all dead.
TEST_CASE("store: a queue drained in order is not compacted under its consumer") {
    TempDir dir;
    Recovered nothing;
    auto store = MessageStore::open(at(dir, 4096), nothing); // about 28 messages a segment
    const std::vector<std::uint64_t> ids = fillQueue(*store, 400);
    const std::size_t segments = store->stats().segments;
    for (int i = 0; i < 25; ++i) // the head segment: under a quarter of it still live
        store->ack("q", ids[static_cast<std::size_t>(i)]);
    store->sync();
    store->collect();
    CHECK(store->stats().compactions == 0);
    CHECK(store->stats().segments == segments);
    for (int i = 25; i < 40; ++i) // past it: deleted, nothing copied
        store->ack("q", ids[static_cast<std::size_t>(i)]);
    store->sync();
    store->collect();
    CHECK(store->stats().compactions == 0);
    CHECK(store->stats().segments < segments);
}

// A head segment whose messages are still being consumed is left alone, even once dead bytes
// outweigh live ones (the consumer will have taken the rest a moment later); one that stopped
// draining, with only survivors left, is compacted once it has stayed so for compactAfter.
TEST_CASE("store: the oldest segment is compacted only once it has stopped draining") {
    TempDir dir;
    Recovered nothing;
    MessageStore::Options options = at(dir, 4096); // about 28 messages a segment
    options.compactAfter = std::chrono::seconds(1);
    auto store = MessageStore::open(options, nothing);
    const std::vector<std::uint64_t> ids = fillQueue(*store, 60);
    // All but the head segment's last few messages and one message behind it are consumed:
    // dead bytes outweigh live ones, and the head segment is under a quarter live.
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (i < 22 || (i > 28 && i != 40))
            store->ack("q", ids[i]);
    store->sync();
    const std::size_t segments = store->stats().segments;
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(store->collect(t0)); // a candidate: it waits
    store->ack("q", ids[22]);  // still draining
    store->sync();
    CHECK(store->collect(t0 + std::chrono::milliseconds(1500)));
    CHECK(store->stats().compactions == 0);
    CHECK(store->stats().segments == segments);
    // Nothing more of it went for a second: compacted. The next segment, its one survivor
    // behind it, is the oldest now: its turn comes a second later.
    CHECK(store->collect(t0 + std::chrono::milliseconds(2600)));
    CHECK(store->stats().compactions == 1);
    CHECK_FALSE(store->collect(t0 + std::chrono::milliseconds(3700)));
    CHECK(store->stats().compactions == 2);
    CHECK(store->stats().segments < segments);
    store.reset();

    Recovered recovered;
    store = MessageStore::open(options, recovered);
    CHECK(recovered.problems.empty());
    CHECK(recovered.queues.at("q").size() == 7); // 23..28 and 40, in order
    CHECK(recovered.queues.at("q").front().messageId == ids[23]);
    CHECK(recovered.queues.at("q").back().messageId == ids[40]);
}

// A head segment drained slowly (a little of it goes before every check) is compacted all the
// same once it has waited ten times compactAfter: a slow consumer must not hold the disk.
TEST_CASE("store: a slowly drained oldest segment is compacted after ten times compactAfter") {
    TempDir dir;
    Recovered nothing;
    MessageStore::Options options = at(dir, 32768); // about 225 messages a segment
    options.compactAfter = std::chrono::seconds(1);
    auto store = MessageStore::open(options, nothing);
    const std::vector<std::uint64_t> ids = fillQueue(*store, 500);
    // The head segment under a sixth live, the rest nearly all dead.
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (i < 190 || (i >= 230 && i != 400))
            store->ack("q", ids[i]);
    store->sync();
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(store->collect(t0));                      // a candidate, still draining: it waits
    for (std::size_t step = 1; step < 25; ++step) { // one more of it goes every 400 ms
        store->ack("q", ids[189 + step]);
        store->sync();
        CHECK(store->collect(t0 + std::chrono::milliseconds(400) * step));
    }
    CHECK(store->stats().compactions == 0);
    store->ack("q", ids[214]);
    store->sync();
    (void)store->collect(t0 + std::chrono::milliseconds(10'100)); // a candidate for 10 s
    CHECK(store->stats().compactions >= 1);
}

namespace {

// A file size limit (as `ulimit -f` sets) for the scope of one test: writes past it fail with
// EFBIG, as they would with ENOSPC on a full disk. SIGXFSZ is ignored meanwhile, as depotd does.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        ::getrlimit(RLIMIT_FSIZE, &saved_);
        previous_ = std::signal(SIGXFSZ, SIG_IGN);
        rlimit limit = saved_;
        limit.rlim_cur = bytes;
        ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ~FileSizeLimit() { lift(); }
    void lift() {
        if (lifted_)
            return;
        lifted_ = true;
        ::setrlimit(RLIMIT_FSIZE, &saved_);
        std::signal(SIGXFSZ, previous_);
    }

private:
    rlimit saved_{};
    void (*previous_)(int) = nullptr;
    bool lifted_ = false;
};

} // namespace

TEST_CASE("store: zeros that do not fit (disk full) are no failure: the records are appended") {
    TempDir dir;
    Recovered nothing;
    auto store = MessageStore::open(at(dir, 1u << 20), nothing);
    {
        FileSizeLimit limit(8192); // room for the records, not for the zeros ahead of them
        fillQueue(*store, 3);      // would throw if the zeros' failure failed the sync
        CHECK(store->stats().failedSyncs == 0);
        CHECK(std::filesystem::file_size(segmentFiles(dir).back()) <= 8192);
    }
    store.reset();
    Recovered recovered;
    store = MessageStore::open(at(dir, 1u << 20), recovered);
    CHECK(recovered.problems.empty());
    CHECK(bodies(recovered, "q").size() == 3);
}

TEST_CASE("store: a failed write (disk full) leaves nothing half-written and is written later") {
    TempDir dir;
    Recovered nothing;
    auto store = MessageStore::open(at(dir, 4096), nothing);
    for (int i = 1; i <= 3; ++i)
        store->enqueue("q", store->addMessage("m" + std::to_string(i)));
    store->sync();
    const auto first = segmentFiles(dir).at(0);
    const auto sizeBefore = segmentRecordsEnd(first);

    const std::string body(100, 'f');
    std::vector<std::uint64_t> failed;
    {
        FileSizeLimit limit(1024);
        for (int i = 0; i < 20; ++i) {
            failed.push_back(store->addMessage(body + std::to_string(i)));
            store->enqueue("q", failed.back());
        }
        store->ack("q", 1);
        CHECK_THROWS_AS(store->sync(), depot::store::StoreError);
        CHECK(store->hasUnsynced());
        CHECK(std::filesystem::file_size(first) == sizeBefore);   // the partial write was cut
        CHECK_THROWS_AS(store->sync(), depot::store::StoreError); // still full: still pending
        store->collect();                                         // does nothing while writes fail
        CHECK(store->stats().failedSyncs == 2);
    } // space is back

    store->sync();
    CHECK_FALSE(store->hasUnsynced());
    // More segments, then everything after m3 but one message of the failed batch is
    // consumed: compaction copies the survivor from where the retried write put it.
    for (int i = 0; i < 100; ++i) {
        const auto id = store->addMessage(body + "later" + std::to_string(i));
        store->enqueue("q", id);
        failed.push_back(id);
    }
    store->sync();
    for (std::size_t i = 0; i < failed.size(); ++i)
        if (i != 7)
            store->ack("q", failed[i]);
    store->sync();
    store->collect();
    CHECK(store->stats().compactions >= 1);
    store.reset();

    Recovered recovered;
    store = MessageStore::open(at(dir, 4096), recovered);
    CHECK(recovered.problems.empty());
    const std::vector<std::string> kept = bodies(recovered, "q");
    CHECK(kept == std::vector<std::string>{"m2", "m3", body + "7"});
}
