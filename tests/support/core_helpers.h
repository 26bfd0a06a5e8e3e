#pragma once
// Shorthands for core unit tests: fixed points in time (the core has no clock; tests pass
// T0 + n ms), results as text so that a failing CHECK prints the AMQP error name, and one-line
// declare / publish / get helpers that REQUIRE success. Header-only; doctest only.

#include "broker/core/broker.h"
#include "broker/core/queue_options.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace depot::tests {

inline constexpr core::TimePoint T0{};

// T0 + ms milliseconds.
inline core::TimePoint at(std::int64_t ms) {
    return T0 + std::chrono::milliseconds(ms);
}

// "OK", or the AMQP name of the error ("NOT_FOUND"): readable in a failed CHECK.
inline std::string codeOf(const core::Status& status) {
    return status ? "OK" : core::errorCodeName(status.error().code);
}
template <class T> std::string codeOf(const core::Result<T>& result) {
    return result ? "OK" : core::errorCodeName(result.error().code);
}

// "" on success, else "NOT_FOUND - no queue 'q' in vhost '/'".
inline std::string describe(const core::Status& status) {
    return status ? std::string() : status.error().describe();
}
template <class T> std::string describe(const core::Result<T>& result) {
    return result ? std::string() : result.error().describe();
}

// The error's text alone ("no queue 'q' in vhost '/'"); "" on success.
inline std::string textOf(const core::Status& status) {
    return status ? std::string() : status.error().text;
}
template <class T> std::string textOf(const core::Result<T>& result) {
    return result ? std::string() : result.error().text;
}

#define DEPOT_REQUIRE_OK(expr)                                                                     \
    do {                                                                                           \
        const auto& depotResult_ = (expr);                                                         \
        REQUIRE_MESSAGE(depotResult_.ok(), ::depot::tests::describe(depotResult_));                \
    } while (0)

#define DEPOT_CHECK_OK(expr)                                                                       \
    do {                                                                                           \
        const auto& depotResult_ = (expr);                                                         \
        CHECK_MESSAGE(depotResult_.ok(), ::depot::tests::describe(depotResult_));                  \
    } while (0)

// Options from AMQP-style x-arguments; REQUIREs that they parse.
inline core::QueueOptions queueOptions(const core::FieldTable& arguments, bool durable = false,
                                       bool exclusive = false, bool autoDelete = false) {
    auto options = core::queueOptionsFromArguments(durable, exclusive, autoDelete, arguments);
    REQUIRE_MESSAGE(options.ok(), describe(options));
    return *options;
}

inline core::QueueDeclareOk declareQueue(core::Channel& channel, std::string_view name,
                                         const core::QueueOptions& options = {},
                                         core::TimePoint now = T0) {
    auto declared = channel.declareQueue(name, options, now);
    REQUIRE_MESSAGE(declared.ok(), describe(declared));
    return *declared;
}

inline void declareExchange(core::Channel& channel, std::string_view name, core::ExchangeType type,
                            const core::ExchangeOptions& options = {}) {
    DEPOT_REQUIRE_OK(channel.declareExchange(name, type, options));
}

inline core::PublishResult publish(core::Channel& channel, std::string_view exchange,
                                   std::string_view routingKey, std::string body,
                                   core::TimePoint now = T0, core::Properties properties = {},
                                   bool mandatory = false) {
    auto result = channel.publish(exchange, routingKey, std::move(properties), std::move(body),
                                  mandatory, now);
    REQUIRE_MESSAGE(result.ok(), describe(result));
    return *result;
}

// Publishes bodies prefix1..prefixN (m1, m2, ...) to the queue through the default exchange.
inline void publishNumbered(core::Channel& channel, std::string_view queue, int from, int to,
                            core::TimePoint now = T0, std::string_view prefix = "m") {
    for (int i = from; i <= to; ++i)
        (void)publish(channel, "", queue, std::string(prefix) + std::to_string(i), now);
}

// Every property set, one text long (past small-string buffers): what round trips check.
inline core::Properties everyProperty() {
    core::Properties p;
    p.contentType = "application/json";
    p.contentEncoding = "gzip";
    p.correlationId = "c-42";
    p.replyTo = "amq.gen-reply";
    p.messageId = std::string(200, 'm');
    p.type = "OrderPlaced";
    p.userId = "guest";
    p.appId = "orders";
    p.expiration = std::chrono::milliseconds(1500);
    p.deliveryMode = core::DeliveryMode::PERSISTENT;
    p.priority = 3;
    p.timestamp = 1'700'000'000;
    p.headers = core::FieldTable{{"region", std::string("eu")}, {"attempt", std::int64_t{2}}};
    return p;
}

// Every property of `a` equals `b`'s (doctest CHECKs, so a failure names the field).
inline void checkSameProperties(const core::Properties& a, const core::Properties& b) {
    for (std::size_t i = 0; i < core::TEXT_PROPERTY_COUNT; ++i)
        CHECK(a.text(static_cast<core::TextProperty>(i)) ==
              b.text(static_cast<core::TextProperty>(i)));
    CHECK(a.expiration == b.expiration);
    CHECK(a.deliveryMode == b.deliveryMode);
    CHECK(a.priority == b.priority);
    CHECK(a.timestamp == b.timestamp);
    CHECK(a.headers == b.headers);
}

inline core::Properties expiringIn(std::int64_t ms) {
    core::Properties properties;
    properties.expiration = std::chrono::milliseconds(ms);
    return properties;
}

// basic.get: REQUIREs success and returns the delivery (nullopt if the queue had none ready).
inline std::optional<core::Delivery> get(core::Channel& channel, std::string_view queue, bool noAck,
                                         core::TimePoint now = T0) {
    auto got = channel.get(queue, noAck, now);
    REQUIRE_MESSAGE(got.ok(), describe(got));
    return *got;
}

// "m1", "m1(R)", or "" when the queue had nothing ready.
inline std::string label(const std::optional<core::Delivery>& delivery) {
    if (!delivery)
        return {};
    std::string text = delivery->message->body;
    if (delivery->redelivered)
        text += "(R)";
    return text;
}

// Reads every ready message with no-ack basic.get, as labels: what "the queue then read" means
// in RABBITMQ-FACTS.md.
inline std::vector<std::string> drain(core::Channel& channel, std::string_view queue,
                                      core::TimePoint now = T0) {
    std::vector<std::string> out;
    while (auto delivery = get(channel, queue, true, now))
        out.push_back(label(delivery));
    return out;
}

inline std::optional<core::QueueInfo> queueInfo(const core::Vhost& vhost, std::string_view name) {
    for (core::QueueInfo& info : vhost.listQueues())
        if (info.name == name)
            return info;
    return std::nullopt;
}

inline std::uint64_t readyCount(const core::Vhost& vhost, std::string_view name) {
    auto info = queueInfo(vhost, name);
    REQUIRE_MESSAGE(info.has_value(), "no queue " << std::string(name));
    return info->ready;
}

inline std::uint64_t unackedCount(const core::Vhost& vhost, std::string_view name) {
    auto info = queueInfo(vhost, name);
    REQUIRE_MESSAGE(info.has_value(), "no queue " << std::string(name));
    return info->unacked;
}

inline core::ConsumeOptions consumeOptions(std::string tag, std::uint32_t prefetchCount = 0,
                                           bool noAck = false, bool exclusive = false) {
    core::ConsumeOptions options;
    options.consumerTag = std::move(tag);
    options.prefetchCount = prefetchCount;
    options.noAck = noAck;
    options.exclusive = exclusive;
    return options;
}

// basic.consume; REQUIREs success and returns the tag.
inline std::string consume(core::Channel& channel, std::string_view queue, core::DeliverySink& sink,
                           const core::ConsumeOptions& options, core::TimePoint now = T0) {
    auto tag = channel.consume(queue, sink, options, now);
    REQUIRE_MESSAGE(tag.ok(), describe(tag));
    return *tag;
}

} // namespace depot::tests
