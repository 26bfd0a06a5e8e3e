#include "broker/core/queue_options.h"

#include <functional>
#include <vector>

namespace depot::core {

namespace {

Error invalidArg(std::string_view name, const FieldValue& value, std::string_view why) {
    return makeError(ErrorCode::PRECONDITION_FAILED, "invalid arg '" + std::string(name) +
                                                         "': " + std::string(why) + " (received " +
                                                         fieldTypeName(value) + " '" +
                                                         fieldValueText(value) + "')");
}

// A non-negative integer argument; `positive` for those where zero is meaningless (x-expires).
Result<std::int64_t> integerArg(std::string_view name, const FieldValue& value, bool positive) {
    const std::int64_t* number = std::get_if<std::int64_t>(&value);
    if (number == nullptr)
        return invalidArg(name, value, "expected an integer");
    if (*number < 0 || (positive && *number == 0))
        return invalidArg(name, value, positive ? "must be positive" : "must not be negative");
    return *number;
}

Result<std::string> stringArg(std::string_view name, const FieldValue& value) {
    const std::string* text = std::get_if<std::string>(&value);
    if (text == nullptr)
        return invalidArg(name, value, "expected a string");
    return *text;
}

Error notImplemented(std::string_view name, std::string_view what) {
    return makeError(ErrorCode::NOT_IMPLEMENTED,
                     "queue argument '" + std::string(name) + "': " + std::string(what) +
                         " is not supported by Depot (see docs/compatibility.md)");
}

} // namespace

std::uint64_t QueueOptions::inMemoryLength() const {
    return mode == QueueMode::LAZY ? 0 : maxInMemoryLength.value_or(DEFAULT_IN_MEMORY_LENGTH);
}

std::uint64_t QueueOptions::inMemoryBytes() const {
    return mode == QueueMode::LAZY ? 0 : maxInMemoryBytes.value_or(DEFAULT_IN_MEMORY_BYTES);
}

const char* overflowName(Overflow overflow) {
    switch (overflow) {
    case Overflow::DROP_HEAD:
        return "drop-head";
    case Overflow::REJECT_PUBLISH:
        return "reject-publish";
    case Overflow::REJECT_PUBLISH_DLX:
        return "reject-publish-dlx";
    }
    return "unknown";
}

Result<QueueOptions> queueOptionsFromArguments(bool durable, bool exclusive, bool autoDelete,
                                               const FieldTable& arguments) {
    QueueOptions options;
    options.durable = durable;
    options.exclusive = exclusive;
    options.autoDelete = autoDelete;
    for (const auto& [name, value] : arguments) {
        if (name == "x-message-ttl") {
            auto ms = integerArg(name, value, false);
            if (!ms)
                return ms.error();
            options.messageTtl = Milliseconds(*ms);
        } else if (name == "x-expires") {
            auto ms = integerArg(name, value, true);
            if (!ms)
                return ms.error();
            options.expires = Milliseconds(*ms);
        } else if (name == "x-max-length" || name == "x-max-length-bytes") {
            auto limit = integerArg(name, value, false);
            if (!limit)
                return limit.error();
            (name == "x-max-length" ? options.maxLength : options.maxLengthBytes) =
                static_cast<std::uint64_t>(*limit);
        } else if (name == "x-max-in-memory-length" || name == "x-max-in-memory-bytes") {
            auto limit = integerArg(name, value, false);
            if (!limit)
                return limit.error();
            (name == "x-max-in-memory-length" ? options.maxInMemoryLength
                                              : options.maxInMemoryBytes) =
                static_cast<std::uint64_t>(*limit);
        } else if (name == "x-queue-mode") {
            auto text = stringArg(name, value);
            if (!text)
                return text.error();
            if (*text == "default")
                options.mode = QueueMode::DEFAULT;
            else if (*text == "lazy")
                options.mode = QueueMode::LAZY;
            else
                return invalidArg(name, value, "expected default or lazy");
        } else if (name == "x-overflow") {
            auto text = stringArg(name, value);
            if (!text)
                return text.error();
            if (*text == "drop-head")
                options.overflow = Overflow::DROP_HEAD;
            else if (*text == "reject-publish")
                options.overflow = Overflow::REJECT_PUBLISH;
            else if (*text == "reject-publish-dlx")
                options.overflow = Overflow::REJECT_PUBLISH_DLX;
            else
                return invalidArg(name, value,
                                  "expected drop-head, reject-publish or reject-publish-dlx");
        } else if (name == "x-dead-letter-exchange" || name == "x-dead-letter-routing-key") {
            auto text = stringArg(name, value);
            if (!text)
                return text.error();
            (name == "x-dead-letter-exchange" ? options.deadLetterExchange
                                              : options.deadLetterRoutingKey) = std::move(*text);
        } else if (name == "x-queue-type") {
            auto text = stringArg(name, value);
            if (!text)
                return text.error();
            if (*text != "classic")
                return notImplemented(name, "queue type '" + *text + "'");
        } else if (name == "x-max-priority") {
            return notImplemented(name, "priority queues");
        } else if (name == "x-single-active-consumer") {
            return notImplemented(name, "single active consumer");
        }
        // Anything else (x-queue-master-locator, ...) is ignored, as in RabbitMQ.
    }
    if (Status s = validateQueueOptions(options); !s)
        return s.error();
    return options;
}

Status validateQueueOptions(const QueueOptions& options) {
    if (options.deadLetterRoutingKey && !options.deadLetterExchange)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "x-dead-letter-routing-key must be given together with "
                         "x-dead-letter-exchange");
    if (options.messageTtl && options.messageTtl->count() < 0)
        return makeError(ErrorCode::PRECONDITION_FAILED, "x-message-ttl must not be negative");
    if (options.expires && options.expires->count() <= 0)
        return makeError(ErrorCode::PRECONDITION_FAILED, "x-expires must be positive");
    // Deadlines are now + duration in int64 nanoseconds: keep far from overflow (100 years).
    constexpr std::int64_t MAX_MS = 100ll * 365 * 24 * 3600 * 1000;
    if (options.messageTtl && options.messageTtl->count() > MAX_MS)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "x-message-ttl must be at most " + std::to_string(MAX_MS) + " ms");
    if (options.expires && options.expires->count() > MAX_MS)
        return makeError(ErrorCode::PRECONDITION_FAILED,
                         "x-expires must be at most " + std::to_string(MAX_MS) + " ms");
    return {};
}

FieldTable queueArguments(const QueueOptions& options) {
    FieldTable arguments;
    if (options.messageTtl)
        arguments.set("x-message-ttl", std::int64_t{options.messageTtl->count()});
    if (options.expires)
        arguments.set("x-expires", std::int64_t{options.expires->count()});
    if (options.maxLength)
        arguments.set("x-max-length", static_cast<std::int64_t>(*options.maxLength));
    if (options.maxLengthBytes)
        arguments.set("x-max-length-bytes", static_cast<std::int64_t>(*options.maxLengthBytes));
    if (options.overflow != Overflow::DROP_HEAD)
        arguments.set("x-overflow", std::string(overflowName(options.overflow)));
    if (options.deadLetterExchange)
        arguments.set("x-dead-letter-exchange", *options.deadLetterExchange);
    if (options.deadLetterRoutingKey)
        arguments.set("x-dead-letter-routing-key", *options.deadLetterRoutingKey);
    if (options.mode == QueueMode::LAZY)
        arguments.set("x-queue-mode", std::string("lazy"));
    if (options.maxInMemoryLength)
        arguments.set("x-max-in-memory-length",
                      static_cast<std::int64_t>(*options.maxInMemoryLength));
    if (options.maxInMemoryBytes)
        arguments.set("x-max-in-memory-bytes",
                      static_cast<std::int64_t>(*options.maxInMemoryBytes));
    return arguments;
}

std::string describeInequivalence(const QueueOptions& declared, const QueueOptions& current) {
    auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
    struct Field {
        const char* name;
        std::function<std::string(const QueueOptions&)> text;
    };
    auto optionalMs = [](const std::optional<Milliseconds>& ms) {
        return ms ? std::to_string(ms->count()) : std::string("none");
    };
    auto optionalCount = [](const std::optional<std::uint64_t>& n) {
        return n ? std::to_string(*n) : std::string("none");
    };
    auto optionalText = [](const std::optional<std::string>& s) {
        return s ? *s : std::string("none");
    };
    const std::vector<Field> fields = {
        {"durable", [&](const QueueOptions& o) { return flag(o.durable); }},
        {"exclusive", [&](const QueueOptions& o) { return flag(o.exclusive); }},
        {"auto_delete", [&](const QueueOptions& o) { return flag(o.autoDelete); }},
        {"x-message-ttl", [&](const QueueOptions& o) { return optionalMs(o.messageTtl); }},
        {"x-expires", [&](const QueueOptions& o) { return optionalMs(o.expires); }},
        {"x-max-length", [&](const QueueOptions& o) { return optionalCount(o.maxLength); }},
        {"x-max-length-bytes",
         [&](const QueueOptions& o) { return optionalCount(o.maxLengthBytes); }},
        {"x-overflow", [](const QueueOptions& o) { return std::string(overflowName(o.overflow)); }},
        {"x-dead-letter-exchange",
         [&](const QueueOptions& o) { return optionalText(o.deadLetterExchange); }},
        {"x-dead-letter-routing-key",
         [&](const QueueOptions& o) { return optionalText(o.deadLetterRoutingKey); }},
        // Not x-queue-mode nor the in-memory limits: they tune where messages wait, not what
        // the queue does, and a queue kept from before Depot knew them would refuse every
        // client that declares it lazy (as RabbitMQ 3.12 ignores x-queue-mode). The first
        // declare's values stay.
    };
    for (const Field& field : fields) {
        std::string received = field.text(declared);
        std::string now = field.text(current);
        if (received != now)
            return "inequivalent arg '" + std::string(field.name) + "': received '" + received +
                   "' but current is '" + now + "'";
    }
    return {};
}

} // namespace depot::core
