// libFuzzer target for how depotd reads a persistent message back from its store
// (broker/net/stored_message.h). A record's checksum keeps random damage out, but the bytes
// behind a good checksum may still be a newer version's or a bug's: reading them must give a
// message or nothing, never a crash, undefined behaviour or an unbounded allocation. And what
// depotd writes must read back as it was.
//
// The first input byte chooses: even, the rest is read as stored bytes as they are; odd, the
// rest builds a message (texts, properties, headers, a dead-letter history, a body), which is
// encoded, read back and compared field by field, then read again with one byte changed or the
// bytes cut short. Built only with clang (DEPOT_SANITIZE=ON); CI runs it for a bounded time.

#include "broker/net/stored_message.h"
#include "tests/fuzz/fuzz_input.h"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

using depot::core::DeathReason;
using depot::core::DeathRecord;
using depot::core::DeliveryMode;
using depot::core::Message;
using depot::core::Properties;
using depot::tests::FuzzInput;

// Texts of up to 23 bytes.
std::string text(FuzzInput& in) {
    return in.bytes(in.byte() % 24);
}

void read(std::string_view bytes) {
    (void)depot::net::decodeStoredMessage(bytes);
    (void)depot::net::summarizeStoredMessage(bytes);
}

Message messageFrom(FuzzInput& in) {
    Message m;
    m.exchange = text(in);
    m.routingKey = text(in);
    Properties p;
    for (std::size_t i = 0; i < depot::core::TEXT_PROPERTY_COUNT; ++i)
        if (in.byte() % 2 == 1)
            p.text(static_cast<depot::core::TextProperty>(i)) = text(in);
    if (in.byte() % 2 == 1)
        p.expiration = depot::core::Milliseconds(in.byte() * 1000);
    p.deliveryMode = in.byte() % 2 == 0 ? DeliveryMode::TRANSIENT : DeliveryMode::PERSISTENT;
    p.priority = in.byte();
    p.timestamp = static_cast<std::int8_t>(in.byte()) * 1'000'000;
    for (int i = in.byte() % 4; i > 0; --i) {
        const std::string name = text(in);
        switch (in.byte() % 5) {
        case 0:
            p.headers.set(name, std::monostate{});
            break;
        case 1:
            p.headers.set(name, in.byte() % 2 == 1);
            break;
        case 2:
            p.headers.set(name, std::int64_t{static_cast<std::int8_t>(in.byte())} << 40);
            break;
        case 3:
            p.headers.set(name, in.byte() / 7.0);
            break;
        default:
            p.headers.set(name, text(in));
            break;
        }
    }
    m.properties = depot::core::PackedProperties(p);
    for (int i = in.byte() % 3; i > 0; --i) {
        DeathRecord d;
        d.queue = text(in);
        d.reason = static_cast<DeathReason>(in.byte() % 3);
        d.count = in.byte() + 1;
        d.exchange = text(in);
        d.routingKeys = {text(in)};
        if (in.byte() % 2 == 1)
            d.originalExpiration = depot::core::Milliseconds(in.byte());
        m.deaths.push_back(d);
    }
    m.body = in.rest();
    return m;
}

bool same(const DeathRecord& a, const DeathRecord& b) {
    return a.queue == b.queue && a.reason == b.reason && a.count == b.count &&
           a.exchange == b.exchange && a.routingKeys == b.routingKeys &&
           a.originalExpiration == b.originalExpiration;
}

bool same(const Message& a, const Message& b) {
    const Properties x = a.properties.unpack(), y = b.properties.unpack();
    for (std::size_t i = 0; i < depot::core::TEXT_PROPERTY_COUNT; ++i)
        if (x.text(static_cast<depot::core::TextProperty>(i)) !=
            y.text(static_cast<depot::core::TextProperty>(i)))
            return false;
    if (a.deaths.size() != b.deaths.size())
        return false;
    for (std::size_t i = 0; i < a.deaths.size(); ++i)
        if (!same(a.deaths[i], b.deaths[i]))
            return false;
    return a.exchange == b.exchange && a.routingKey == b.routingKey && a.body == b.body &&
           x.expiration == y.expiration && x.deliveryMode == y.deliveryMode &&
           x.priority == y.priority && x.timestamp == y.timestamp && x.headers == y.headers;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzInput in(data, size);
    const std::uint8_t mode = in.byte();
    if (mode % 2 == 0) {
        read(in.rest());
        return 0;
    }
    const std::uint8_t at = in.byte(), flip = in.byte();
    const Message message = messageFrom(in);
    std::string bytes = depot::net::encodeStoredMessage(message);
    const depot::core::MessageRef back = depot::net::decodeStoredMessage(bytes);
    if (!back || !same(*back, message))
        std::abort(); // what depotd wrote did not read back as it was
    const depot::net::StoredSummary summary = depot::net::summarizeStoredMessage(bytes);
    if (!summary.ok || summary.bodyBytes != message.body.size())
        std::abort();
    // Damaged: one byte changed, or cut short.
    bytes[at % bytes.size()] = static_cast<char>(bytes[at % bytes.size()] ^ (flip | 1));
    read(bytes);
    read(std::string_view(bytes).substr(0, at % bytes.size()));
    return 0;
}
