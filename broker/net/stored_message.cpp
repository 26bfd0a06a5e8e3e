#include "broker/net/stored_message.h"

#include "protocol/convert.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace depot::net {

std::int64_t wallClockMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {

using protocol::fromWire;
using protocol::toWire;
using protocol::view;
using protocol::wireText;

constexpr unsigned char PACKED_FORMAT = 0xD2;
constexpr std::size_t PACKED_HEAD = 5; // the format byte and the length

// Calls `use` with the stored bytes of `m` in three pieces (head, packed message, body), valid
// during the call. Stamped with the wall-clock time it was first written: the time it entered
// its queues (a dead-lettered copy is a new message, written when it moved).
template <typename Use> auto withEncoded(const core::Message& m, Use&& use) {
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
    return use(std::span<const std::string_view>(parts));
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

} // namespace

core::MessageRef decodeStoredMessage(std::string_view bytes) {
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

StoredSummary summarizeStoredMessage(std::string_view bytes) {
    StoredSummary p;
    p.ok = withStored(bytes, [&](wire::Message::Reader m, std::string_view body) {
        p.bodyBytes = static_cast<std::uint32_t>(body.size());
        const auto expiration = m.getProperties().getExpiration();
        if (expiration.isMilliseconds())
            p.expiration = fromWire(m.getProperties()).expiration; // validated as on publish
        p.storedAtMillis = m.getStoredAtMillis();
    });
    return p;
}

std::uint64_t storeMessage(store::MessageStore& store, const core::Message& message) {
    return withEncoded(
        message, [&](std::span<const std::string_view> parts) { return store.addMessage(parts); });
}

std::string encodeStoredMessage(const core::Message& message) {
    return withEncoded(message, [](std::span<const std::string_view> parts) {
        std::string bytes;
        for (const std::string_view part : parts)
            bytes += part;
        return bytes;
    });
}

} // namespace depot::net
