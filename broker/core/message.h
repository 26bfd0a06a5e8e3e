#pragma once
// A published message: AMQP's basic properties, the exchange and routing key it was published
// with, its dead-letter history, and the body. Immutable once built and shared by reference:
// a message routed to ten queues exists once, and every queue and delivery holds a MessageRef.

#include "broker/core/field_table.h"
#include "broker/core/time.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace depot::core {

enum class DeliveryMode : std::uint8_t { TRANSIENT = 1, PERSISTENT = 2 };

// AMQP's eight text properties, in the order Properties declares them.
enum class TextProperty : std::uint8_t {
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CORRELATION_ID,
    REPLY_TO,
    MESSAGE_ID,
    TYPE,
    USER_ID,
    APP_ID,
};
inline constexpr std::size_t TEXT_PROPERTY_COUNT = 8;

// AMQP 0-9-1 basic properties. `expiration` is typed here; the wire layer parses AMQP's string.
struct Properties {
    std::string contentType;
    std::string contentEncoding;
    std::string correlationId;
    std::string replyTo;
    std::string messageId;
    std::string type;
    std::string userId;
    std::string appId;
    std::optional<Milliseconds> expiration; // per-message TTL
    DeliveryMode deliveryMode = DeliveryMode::TRANSIENT;
    std::uint8_t priority = 0;
    std::int64_t timestamp = 0; // seconds since the Unix epoch, set by the publisher
    FieldTable headers;

    std::string& text(TextProperty property);
    const std::string& text(TextProperty property) const;
};

// Properties as a queued message keeps them: the eight text properties back to back in one
// string instead of eight (most are empty or short, and eight std::strings are 256 bytes of
// every queued message); the rest as in Properties.
class PackedProperties {
public:
    PackedProperties() = default;
    explicit PackedProperties(const Properties& properties);
    Properties unpack() const;
    // The same into `out`, every field of which it sets (its strings keep their capacity).
    void unpack(Properties& out) const;

    std::string_view text(TextProperty property) const;
    // Replaces all eight, in TextProperty order.
    void setTexts(const std::string_view (&texts)[TEXT_PROPERTY_COUNT]);

    std::string_view contentType() const { return text(TextProperty::CONTENT_TYPE); }
    std::string_view contentEncoding() const { return text(TextProperty::CONTENT_ENCODING); }
    std::string_view correlationId() const { return text(TextProperty::CORRELATION_ID); }
    std::string_view replyTo() const { return text(TextProperty::REPLY_TO); }
    std::string_view messageId() const { return text(TextProperty::MESSAGE_ID); }
    std::string_view type() const { return text(TextProperty::TYPE); }
    std::string_view userId() const { return text(TextProperty::USER_ID); }
    std::string_view appId() const { return text(TextProperty::APP_ID); }

    std::optional<Milliseconds> expiration;
    DeliveryMode deliveryMode = DeliveryMode::TRANSIENT;
    std::uint8_t priority = 0;
    std::int64_t timestamp = 0;
    FieldTable headers;

private:
    std::string texts_;
    std::uint32_t ends_[TEXT_PROPERTY_COUNT] = {}; // where each text ends in texts_
};

// Why a message was dead-lettered; the names are RabbitMQ's x-death reasons.
enum class DeathReason : std::uint8_t { REJECTED, EXPIRED, MAXLEN };
const char* deathReasonName(DeathReason reason);

// One entry of RabbitMQ's x-death header: where and why the message died, and how often.
// The newest entry is first; a repeat of the same (queue, reason) increments `count` and moves
// the entry to the front, as RabbitMQ does.
struct DeathRecord {
    std::string queue;
    DeathReason reason = DeathReason::REJECTED;
    std::uint64_t count = 1;
    std::string exchange;                 // the exchange the message had been published to
    std::vector<std::string> routingKeys; // the routing key it had been published with
    TimePoint time{};                     // the broker's time of the (latest) death
    std::optional<Milliseconds> originalExpiration;
};

struct Message {
    std::string exchange;
    std::string routingKey;
    PackedProperties properties;
    std::vector<DeathRecord> deaths; // x-death, newest first; empty for a fresh message
    std::string body;
    // The MessageJournal's own handle for this message (depotd's store id; 0: none). Not part
    // of the message: bookkeeping that rides along, so the journal needs no map to find it.
    mutable std::uint64_t journalHandle = 0;
};

// The one alias to change if reference counting ever shows in a profile (see STYLE.md, 15).
using MessageRef = std::shared_ptr<const Message>;

inline MessageRef makeMessage(std::string exchange, std::string routingKey,
                              const Properties& properties, std::string body) {
    return std::make_shared<const Message>(Message{std::move(exchange),
                                                   std::move(routingKey),
                                                   PackedProperties(properties),
                                                   {},
                                                   std::move(body)});
}

} // namespace depot::core
