#pragma once
// A persistent message as depotd keeps it in the message store (broker/store): the format of a
// MESSAGE record's bytes, which the store itself treats as opaque.
//
// Layout: the FORMAT byte 0xD2, the length (u32, little-endian) of what follows up to the body,
// the message without its body (Cap'n Proto's wire::Message, stamped with the wall-clock time
// it was written) in Cap'n Proto's packed stream format, then the body as it is. Packing
// squeezes out the zeros of the properties and of the structs' pointers (a 100-byte message's
// record went from 295 to 137 bytes), and the body, left out of it, is neither packed nor
// copied twice. Earlier versions stored the whole message unpacked, in Cap'n Proto's stream
// framing, which starts with a segment count (never the FORMAT byte): both are read.
//
// Reading never trusts the bytes: anything that is not a message in either form (damaged, or
// written by a newer version) reads as nothing, never as a crash (tests/fuzz/
// stored_message_fuzzer.cpp).

#include "broker/core/message.h"
#include "broker/core/time.h"
#include "broker/store/message_store.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace depot::net {

// Encodes `message` straight into the store's write buffer; returns the store's id for it.
std::uint64_t storeMessage(store::MessageStore& store, const core::Message& message);
// The same bytes, for tests and tools.
std::string encodeStoredMessage(const core::Message& message);

// The message in `bytes`; null when they are not one.
core::MessageRef decodeStoredMessage(std::string_view bytes);

// What recovery needs of a stored message to queue it without reading it all.
struct StoredSummary {
    bool ok = false; // false: `bytes` are not a message
    std::uint32_t bodyBytes = 0;
    std::optional<core::Milliseconds> expiration;
    std::int64_t storedAtMillis = 0; // wall clock; 0: written before the store kept the time
};
StoredSummary summarizeStoredMessage(std::string_view bytes);

// The wall clock the stored time is read against, in milliseconds since the Unix epoch.
std::int64_t wallClockMillis();

} // namespace depot::net
