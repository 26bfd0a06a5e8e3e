// libFuzzer target for the message store's recovery: whatever a crash, a bad disk or a stray
// write leaves in the segment files, opening the store must end in a clean result (problems
// reported, never read as data) or a StoreError, never a crash or undefined behaviour; and
// what it recovers must be consistent:
// - every queue entry's message is there, entries in sequence order;
// - opening again (nothing written meanwhile) recovers exactly the same;
// - acks written after a recovery take those entries away on the next.
//
// The input is read as a program that writes segment files: mostly well-formed records (with
// correct checksums, so that the fuzzer gets past them into the record logic) over a few
// message ids and queue names, so that enqueues, acks and drops meet; and raw bytes, records
// with a wrong checksum, and bad segment headers, for the reader's error paths. Built only with
// clang (DEPOT_SANITIZE=ON); CI runs it for a bounded time.

#include "broker/store/crc32c.h"
#include "broker/store/message_store.h"
#include "tests/fuzz/fuzz_input.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using depot::store::MessageStore;
using depot::store::Recovered;
using depot::tests::FuzzInput;

void put(std::string& out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
        out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string name(std::uint8_t which) {
    return which % 3 == 0 ? "a" : which % 3 == 1 ? "b" : "";
}

// A record as the store writes it (message_store.h has the layout); `crcOffset` spoils it.
std::string record(std::uint8_t type, const std::string& payload, std::uint32_t crcOffset = 0) {
    std::string out;
    put(out, payload.size(), 4);
    const char typeByte = static_cast<char>(type);
    std::uint32_t crc = depot::store::crc32c(&typeByte, 1);
    crc = depot::store::crc32c(payload.data(), payload.size(), crc);
    put(out, crc + crcOffset, 4);
    out += typeByte;
    return out + payload;
}

// Message ids are unique and sequences unique per queue, as the store writes them (a
// compaction's copy keeps both); enqueues and acks refer to messages written earlier, or now and
// then to one never written.
std::vector<std::string> segmentsFrom(FuzzInput& in) {
    std::vector<std::string> segments;
    std::string current;
    auto startSegment = [&](bool badHeader) {
        if (!current.empty())
            segments.push_back(current);
        current = badHeader ? std::string("DEPOTSEX") : std::string("DEPOTSEG");
        put(current, 1, 4);
        put(current, 0, 4);
    };
    std::vector<std::uint64_t> ids;
    std::uint64_t enqueues = 0;
    auto someId = [&](std::uint8_t pick) -> std::uint64_t {
        return ids.empty() || pick % 9 == 8 ? 999 : ids[pick % ids.size()];
    };
    auto queuePart = [](std::string& payload, const std::string& queue) {
        put(payload, queue.size(), 2);
        payload += queue;
    };
    startSegment(false);
    while (!in.empty() && segments.size() < 4) {
        const std::uint8_t op = in.byte();
        const std::string queue = name(op / 10);
        std::string payload;
        switch (op % 10) {
        case 0:
        case 1: // MESSAGE
            ids.push_back(ids.size() + 1);
            put(payload, ids.back(), 8);
            current += record(1, payload + in.bytes(in.byte() % 32 + 1));
            break;
        case 2:
        case 3: // ENQUEUE
            put(payload, someId(in.byte()), 8);
            put(payload, (std::uint64_t{in.byte()} << 32) | ++enqueues, 8); // sequence
            queuePart(payload, queue);
            current += record(2, payload);
            break;
        case 4: // ACK
            put(payload, someId(in.byte()), 8);
            queuePart(payload, queue);
            current += record(3, payload);
            break;
        case 5: // DROP
            queuePart(payload, queue);
            current += record(4, payload);
            break;
        case 6: // a record of any type too short for the fields of any, checksum right or wrong
            current += record(in.byte(), in.bytes(in.byte() % 8), op / 10 % 2);
            break;
        case 7: // raw bytes: a torn write, zeros ahead of the records, garbage
            current +=
                op / 10 % 2 == 0 ? in.bytes(in.byte() % 24) : std::string(in.byte() % 64, '\0');
            break;
        default: // the next segment
            startSegment(op == 255);
            break;
        }
    }
    segments.push_back(current);
    return segments;
}

// Each queue's messages, in order, as bytes.
using Snapshot = std::map<std::string, std::vector<std::string>>;

Snapshot snapshot(const Recovered& recovered) {
    Snapshot out;
    for (const auto& [queue, entries] : recovered.queues) {
        std::uint64_t last = 0;
        for (const Recovered::Entry& entry : entries) {
            if (entry.sequence < last)
                std::abort(); // out of queue order
            last = entry.sequence;
            out[queue].emplace_back(recovered.message(entry.messageId)); // throws if missing
        }
    }
    return out;
}

std::filesystem::path workDir() {
    const std::filesystem::path base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    return base / ("depot-store-fuzz-" + std::to_string(::getpid()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::filesystem::path dir = workDir();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    FuzzInput in(data, size);
    const std::vector<std::string> segments = segmentsFrom(in);
    for (std::size_t i = 0; i < segments.size(); ++i) {
        char file[16];
        std::snprintf(file, sizeof file, "%08zu.seg", i + 1);
        std::ofstream(dir / file, std::ios::binary) << segments[i];
    }
    MessageStore::Options options;
    options.directory = dir;
    options.segmentBytes = 4096;
    try {
        Snapshot first;
        std::vector<std::pair<std::string, std::uint64_t>> entries;
        {
            Recovered recovered;
            auto store = MessageStore::open(options, recovered);
            first = snapshot(recovered);
            for (const auto& [queue, list] : recovered.queues)
                for (const Recovered::Entry& entry : list)
                    entries.emplace_back(queue, entry.messageId);
        }
        Snapshot second;
        {
            Recovered recovered;
            auto store = MessageStore::open(options, recovered);
            second = snapshot(recovered);
            for (const auto& [queue, id] : entries)
                if (queue == "a" && !store->ack(queue, id))
                    std::abort(); // a recovered entry the store does not hold
            store->sync();
            store->collect();
        }
        if (second != first)
            std::abort(); // a second recovery of the same files differs
        Recovered recovered;
        auto store = MessageStore::open(options, recovered);
        first.erase("a");
        if (snapshot(recovered) != first)
            std::abort(); // the acks did not take exactly queue a's entries away
    } catch (const depot::store::StoreError&) {
        // the directory cannot be used: a clean error
    }
    return 0;
}
