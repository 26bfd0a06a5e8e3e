#pragma once
// A queue's properties: the declare flags and RabbitMQ's optional x-arguments (TTL, expiry,
// length limits, overflow, dead-lettering), parsed once into typed fields and validated with
// RabbitMQ's rules and messages. Two declares of one queue must agree on all of them.

#include "broker/core/error.h"
#include "broker/core/field_table.h"
#include "broker/core/time.h"

#include <cstdint>
#include <optional>
#include <string>

namespace depot::core {

// What a full queue does with one more message (x-overflow).
enum class Overflow : std::uint8_t {
    DROP_HEAD,          // drop (dead-letter) the oldest ready message; the default
    REJECT_PUBLISH,     // refuse the new message: the publisher's confirm is a nack
    REJECT_PUBLISH_DLX, // refuse it and dead-letter it
};
const char* overflowName(Overflow overflow);

// x-queue-mode: LAZY keeps every message it can on disk only (RabbitMQ's lazy queues).
enum class QueueMode : std::uint8_t { DEFAULT, LAZY };

// How much of a durable queue's backlog of persistent messages stays in memory when nothing
// says otherwise (x-max-in-memory-length, x-max-in-memory-bytes): past it, messages are paged
// out (kept on disk only, read back when they come near the head). Other messages (transient,
// or in a queue that is not durable) always stay in memory.
constexpr std::uint64_t DEFAULT_IN_MEMORY_LENGTH = 10'000;
constexpr std::uint64_t DEFAULT_IN_MEMORY_BYTES = std::uint64_t{16} << 20;

struct QueueOptions {
    bool durable = false;
    bool exclusive = false;  // owned by the declaring channel; deleted when it closes
    bool autoDelete = false; // deleted when its last consumer goes (after having had one)
    std::optional<Milliseconds> messageTtl;          // x-message-ttl
    std::optional<Milliseconds> expires;             // x-expires: delete after this long unused
    std::optional<std::uint64_t> maxLength;          // x-max-length, counted in ready messages
    std::optional<std::uint64_t> maxLengthBytes;     // x-max-length-bytes, ready body bytes
    Overflow overflow = Overflow::DROP_HEAD;         // x-overflow
    std::optional<std::string> deadLetterExchange;   // x-dead-letter-exchange
    std::optional<std::string> deadLetterRoutingKey; // x-dead-letter-routing-key
    QueueMode mode = QueueMode::DEFAULT;             // x-queue-mode
    std::optional<std::uint64_t> maxInMemoryLength;  // x-max-in-memory-length
    std::optional<std::uint64_t> maxInMemoryBytes;   // x-max-in-memory-bytes

    // The in-memory limits that apply: zero for a lazy queue, else the x-arguments or the
    // defaults above.
    std::uint64_t inMemoryLength() const;
    std::uint64_t inMemoryBytes() const;

    friend bool operator==(const QueueOptions&, const QueueOptions&) = default;
};

// Builds options from AMQP declare flags and x-arguments, with RabbitMQ's checks: wrong types
// and negative values are PRECONDITION_FAILED; queue types and features Depot does not have
// (quorum, stream, priorities, single active consumer) are NOT_IMPLEMENTED rather than ignored;
// unknown arguments are ignored, as RabbitMQ ignores them.
Result<QueueOptions> queueOptionsFromArguments(bool durable, bool exclusive, bool autoDelete,
                                               const FieldTable& arguments);
// The x-arguments that reproduce `options` (for listings and for clients that speak AMQP).
FieldTable queueArguments(const QueueOptions& options);
// Checks combinations that make no sense, whichever way the options were built.
Status validateQueueOptions(const QueueOptions& options);
// The first property in which `declared` differs from `current`, phrased like RabbitMQ's
// "inequivalent arg 'x-message-ttl' ... received '100' but current is '200'"; empty if equal.
// x-queue-mode and the in-memory limits are not compared (see the .cpp).
std::string describeInequivalence(const QueueOptions& declared, const QueueOptions& current);

} // namespace depot::core
