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
std::string describeInequivalence(const QueueOptions& declared, const QueueOptions& current);

} // namespace depot::core
