#include "protocol/convert.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace depot::protocol {

namespace {

constexpr std::size_t WORD = 8;
// 100 years: any time or duration from the wire stays far from int64 nanoseconds' limit.
constexpr std::uint64_t MAX_DURATION_MS = 100ull * 365 * 24 * 3600 * 1000;
// Below this a body is copied into the frame: a separate write range costs more than a memcpy.
constexpr std::size_t REFERENCE_MIN_BYTES = 4096;

std::size_t roundUpToWord(std::size_t n) {
    return (n + WORD - 1) & ~(WORD - 1);
}

} // namespace

core::FieldTable fromWire(capnp::List<wire::Field>::Reader fields) {
    core::FieldTable table;
    for (wire::Field::Reader field : fields) {
        const wire::Value::Reader value = field.getValue();
        core::FieldValue converted;
        switch (value.which()) {
        case wire::Value::VOID:
            break;
        case wire::Value::BOOL:
            converted = value.getBool();
            break;
        case wire::Value::INT:
            converted = value.getInt();
            break;
        case wire::Value::FLOAT:
            converted = value.getFloat();
            break;
        case wire::Value::TEXT:
            converted = text(value.getText());
            break;
        default:
            throw ProtocolError(core::ErrorCode::SYNTAX_ERROR,
                                "field '" + text(field.getName()) + "' has a value type (" +
                                    std::to_string(static_cast<int>(value.which())) +
                                    ") this server does not know");
        }
        table.set(text(field.getName()), std::move(converted));
    }
    return table;
}

void toWire(const core::FieldTable& table, capnp::List<wire::Field>::Builder fields) {
    unsigned i = 0;
    for (const auto& [name, value] : table) {
        wire::Field::Builder field = fields[i++];
        field.setName(wireText(name));
        wire::Value::Builder out = field.initValue();
        std::visit(
            [&out](const auto& v) {
                using T = std::decay_t<decltype(v)>;
                if constexpr (std::is_same_v<T, std::monostate>)
                    out.setVoid();
                else if constexpr (std::is_same_v<T, bool>)
                    out.setBool(v);
                else if constexpr (std::is_same_v<T, std::int64_t>)
                    out.setInt(v);
                else if constexpr (std::is_same_v<T, double>)
                    out.setFloat(v);
                else
                    out.setText(wireText(v));
            },
            value);
    }
}

core::Properties fromWire(wire::Properties::Reader in) {
    core::Properties p;
    readProperties(in, p);
    return p;
}

namespace {

using core::TextProperty;

// Each text property's accessors on the wire, in TextProperty order.
struct WireText {
    bool (wire::Properties::Reader::*has)() const;
    capnp::Text::Reader (wire::Properties::Reader::*get)() const;
    // init, not set: a PackedProperties text is not NUL-terminated, as capnp::Text::Reader
    // requires (checked in debug builds).
    capnp::Text::Builder (wire::Properties::Builder::*init)(unsigned int);
};
using R = wire::Properties::Reader;
using B = wire::Properties::Builder;
constexpr WireText WIRE_TEXTS[core::TEXT_PROPERTY_COUNT] = {
    {&R::hasContentType, &R::getContentType, &B::initContentType},
    {&R::hasContentEncoding, &R::getContentEncoding, &B::initContentEncoding},
    {&R::hasCorrelationId, &R::getCorrelationId, &B::initCorrelationId},
    {&R::hasReplyTo, &R::getReplyTo, &B::initReplyTo},
    {&R::hasMessageId, &R::getMessageId, &B::initMessageId},
    {&R::hasType, &R::getType, &B::initType},
    {&R::hasUserId, &R::getUserId, &B::initUserId},
    {&R::hasAppId, &R::getAppId, &B::initAppId},
};

// Text property `i` of `in`; empty when unset. has*() is a pointer test, get*() validates the
// text: most properties are unset, so a publish costs a few pointer tests, not eight
// validations (capnp's getBlob was 4 % of depotd).
std::string_view textOf(wire::Properties::Reader in, std::size_t i) {
    const WireText& t = WIRE_TEXTS[i];
    return (in.*t.has)() ? view((in.*t.get)()) : std::string_view();
}

// What Properties and PackedProperties share: all but the text properties.
template <class P> void readScalars(wire::Properties::Reader in, P& p) {
    if (in.hasHeaders())
        p.headers = fromWire(in.getHeaders());
    else if (!p.headers.empty())
        p.headers = core::FieldTable();
    p.deliveryMode =
        in.getPersistent() ? core::DeliveryMode::PERSISTENT : core::DeliveryMode::TRANSIENT;
    p.priority = in.getPriority();
    switch (in.getExpiration().which()) {
    case wire::Properties::Expiration::NONE:
        p.expiration.reset();
        break;
    case wire::Properties::Expiration::MILLISECONDS: {
        const std::uint64_t ms = in.getExpiration().getMilliseconds();
        // Bounded so that now + expiration, in nanoseconds, cannot overflow anywhere.
        if (ms > MAX_DURATION_MS)
            throw ProtocolError(core::ErrorCode::PRECONDITION_FAILED,
                                "invalid expiration " + std::to_string(ms) + " ms");
        p.expiration = core::Milliseconds(static_cast<std::int64_t>(ms));
        break;
    }
    default:
        throw ProtocolError(core::ErrorCode::SYNTAX_ERROR, "unknown kind of expiration");
    }
    p.timestamp = in.getTimestamp();
}

template <class P> void writeProperties(const P& p, wire::Properties::Builder out) {
    for (std::size_t i = 0; i < core::TEXT_PROPERTY_COUNT; ++i)
        if (const std::string_view value = p.text(static_cast<TextProperty>(i)); !value.empty()) {
            capnp::Text::Builder text =
                (out.*WIRE_TEXTS[i].init)(static_cast<unsigned int>(value.size()));
            std::memcpy(text.begin(), value.data(), value.size());
        }
    if (!p.headers.empty())
        toWire(p.headers, out.initHeaders(static_cast<unsigned>(p.headers.size())));
    out.setPersistent(p.deliveryMode == core::DeliveryMode::PERSISTENT);
    out.setPriority(p.priority);
    if (p.expiration)
        out.getExpiration().setMilliseconds(static_cast<std::uint64_t>(p.expiration->count()));
    else
        out.getExpiration().setNone();
    out.setTimestamp(p.timestamp);
}

} // namespace

void readProperties(wire::Properties::Reader in, core::Properties& p) {
    for (std::size_t i = 0; i < core::TEXT_PROPERTY_COUNT; ++i)
        p.text(static_cast<TextProperty>(i)) = textOf(in, i);
    readScalars(in, p);
}

void readProperties(wire::Properties::Reader in, core::PackedProperties& p) {
    std::string_view texts[core::TEXT_PROPERTY_COUNT];
    for (std::size_t i = 0; i < core::TEXT_PROPERTY_COUNT; ++i)
        texts[i] = textOf(in, i);
    p.setTexts(texts);
    readScalars(in, p);
}

void toWire(const core::Properties& p, wire::Properties::Builder out) {
    writeProperties(p, out);
}

void toWire(const core::PackedProperties& p, wire::Properties::Builder out) {
    writeProperties(p, out);
}

std::vector<core::DeathRecord> fromWire(capnp::List<wire::Death>::Reader deaths) {
    std::vector<core::DeathRecord> out;
    out.reserve(deaths.size());
    for (wire::Death::Reader d : deaths) {
        core::DeathRecord record;
        record.queue = text(d.getQueue());
        switch (d.getReason()) {
        case wire::DeathReason::REJECTED:
            record.reason = core::DeathReason::REJECTED;
            break;
        case wire::DeathReason::EXPIRED:
            record.reason = core::DeathReason::EXPIRED;
            break;
        case wire::DeathReason::MAXLEN:
            record.reason = core::DeathReason::MAXLEN;
            break;
        default:
            throw ProtocolError(core::ErrorCode::SYNTAX_ERROR, "unknown death reason");
        }
        record.count = d.getCount();
        record.exchange = text(d.getExchange());
        for (capnp::Text::Reader key : d.getRoutingKeys())
            record.routingKeys.push_back(text(key));
        // A time from the wire is only shown, never computed with; clamp it so that converting
        // it to the clock's nanoseconds cannot overflow (found by the frame fuzzer).
        const std::int64_t ms =
            std::clamp<std::int64_t>(d.getTimeMs(), -static_cast<std::int64_t>(MAX_DURATION_MS),
                                     static_cast<std::int64_t>(MAX_DURATION_MS));
        record.time = core::TimePoint(std::chrono::milliseconds(ms));
        if (d.getOriginalExpiration().isMilliseconds())
            record.originalExpiration = core::Milliseconds(static_cast<std::int64_t>(
                std::min<std::uint64_t>(d.getOriginalExpiration().getMilliseconds(),
                                        MAX_DURATION_MS))); // only shown, as the time
        out.push_back(std::move(record));
    }
    return out;
}

void toWire(const std::vector<core::DeathRecord>& deaths, capnp::List<wire::Death>::Builder out) {
    unsigned i = 0;
    for (const core::DeathRecord& record : deaths) {
        wire::Death::Builder d = out[i++];
        d.setQueue(wireText(record.queue));
        switch (record.reason) {
        case core::DeathReason::REJECTED:
            d.setReason(wire::DeathReason::REJECTED);
            break;
        case core::DeathReason::EXPIRED:
            d.setReason(wire::DeathReason::EXPIRED);
            break;
        case core::DeathReason::MAXLEN:
            d.setReason(wire::DeathReason::MAXLEN);
            break;
        }
        d.setCount(record.count);
        d.setExchange(wireText(record.exchange));
        auto keys = d.initRoutingKeys(static_cast<unsigned>(record.routingKeys.size()));
        for (unsigned k = 0; k < record.routingKeys.size(); ++k)
            keys.set(k, wireText(record.routingKeys[k]));
        d.setTimeMs(
            std::chrono::duration_cast<std::chrono::milliseconds>(record.time.time_since_epoch())
                .count());
        if (record.originalExpiration)
            d.getOriginalExpiration().setMilliseconds(static_cast<std::uint64_t>(
                std::max<std::int64_t>(0, record.originalExpiration->count())));
    }
}

core::ExchangeType fromWire(wire::ExchangeType type) {
    switch (type) {
    case wire::ExchangeType::DIRECT:
        return core::ExchangeType::DIRECT;
    case wire::ExchangeType::FANOUT:
        return core::ExchangeType::FANOUT;
    case wire::ExchangeType::TOPIC:
        return core::ExchangeType::TOPIC;
    case wire::ExchangeType::HEADERS:
        return core::ExchangeType::HEADERS;
    }
    throw ProtocolError(core::ErrorCode::COMMAND_INVALID,
                        "unknown exchange type " + std::to_string(static_cast<int>(type)));
}

wire::ExchangeType toWire(core::ExchangeType type) {
    switch (type) {
    case core::ExchangeType::DIRECT:
        return wire::ExchangeType::DIRECT;
    case core::ExchangeType::FANOUT:
        return wire::ExchangeType::FANOUT;
    case core::ExchangeType::TOPIC:
        return wire::ExchangeType::TOPIC;
    case core::ExchangeType::HEADERS:
        return wire::ExchangeType::HEADERS;
    }
    return wire::ExchangeType::DIRECT;
}

core::ErrorCode fromWire(wire::ErrorCode code) {
    switch (code) {
    case wire::ErrorCode::ACCESS_REFUSED:
        return core::ErrorCode::ACCESS_REFUSED;
    case wire::ErrorCode::NOT_FOUND:
        return core::ErrorCode::NOT_FOUND;
    case wire::ErrorCode::RESOURCE_LOCKED:
        return core::ErrorCode::RESOURCE_LOCKED;
    case wire::ErrorCode::PRECONDITION_FAILED:
        return core::ErrorCode::PRECONDITION_FAILED;
    case wire::ErrorCode::FRAME_ERROR:
        return core::ErrorCode::FRAME_ERROR;
    case wire::ErrorCode::SYNTAX_ERROR:
        return core::ErrorCode::SYNTAX_ERROR;
    case wire::ErrorCode::COMMAND_INVALID:
        return core::ErrorCode::COMMAND_INVALID;
    case wire::ErrorCode::UNEXPECTED_FRAME:
        return core::ErrorCode::UNEXPECTED_FRAME;
    case wire::ErrorCode::RESOURCE_ERROR:
        return core::ErrorCode::RESOURCE_ERROR;
    case wire::ErrorCode::NOT_ALLOWED:
        return core::ErrorCode::NOT_ALLOWED;
    case wire::ErrorCode::NOT_IMPLEMENTED:
        return core::ErrorCode::NOT_IMPLEMENTED;
    case wire::ErrorCode::INTERNAL_ERROR:
    case wire::ErrorCode::UNKNOWN:
        break;
    }
    return core::ErrorCode::INTERNAL_ERROR;
}

wire::ErrorCode toWire(core::ErrorCode code) {
    switch (code) {
    case core::ErrorCode::ACCESS_REFUSED:
        return wire::ErrorCode::ACCESS_REFUSED;
    case core::ErrorCode::NOT_FOUND:
        return wire::ErrorCode::NOT_FOUND;
    case core::ErrorCode::RESOURCE_LOCKED:
        return wire::ErrorCode::RESOURCE_LOCKED;
    case core::ErrorCode::PRECONDITION_FAILED:
        return wire::ErrorCode::PRECONDITION_FAILED;
    case core::ErrorCode::FRAME_ERROR:
        return wire::ErrorCode::FRAME_ERROR;
    case core::ErrorCode::SYNTAX_ERROR:
        return wire::ErrorCode::SYNTAX_ERROR;
    case core::ErrorCode::COMMAND_INVALID:
        return wire::ErrorCode::COMMAND_INVALID;
    case core::ErrorCode::UNEXPECTED_FRAME:
        return wire::ErrorCode::UNEXPECTED_FRAME;
    case core::ErrorCode::RESOURCE_ERROR:
        return wire::ErrorCode::RESOURCE_ERROR;
    case core::ErrorCode::NOT_ALLOWED:
        return wire::ErrorCode::NOT_ALLOWED;
    case core::ErrorCode::NOT_IMPLEMENTED:
        return wire::ErrorCode::NOT_IMPLEMENTED;
    case core::ErrorCode::INTERNAL_ERROR:
        return wire::ErrorCode::INTERNAL_ERROR;
    }
    return wire::ErrorCode::UNKNOWN;
}

core::Error fromWire(wire::Error::Reader error) {
    // The message already reads "CODE - text"; keep only the text part in Error::text.
    std::string message = text(error.getMessage());
    const core::ErrorCode code = fromWire(error.getCode());
    const std::string prefix = std::string(core::errorCodeName(code)) + " - ";
    if (message.rfind(prefix, 0) == 0)
        message.erase(0, prefix.size());
    return core::Error{code, std::move(message)};
}

std::string paddedBody(capnp::Data::Reader data) {
    std::string body;
    const std::size_t padded = roundUpToWord(data.size());
    body.reserve(padded);
    body.assign(reinterpret_cast<const char*>(data.begin()), data.size());
    // Only the padding is zeroed (zero-filling the whole body first, then copying over it,
    // was 4 % of depotd's CPU with 16 KiB bodies); resize keeps the allocation and the zeros.
    body.append(padded - data.size(), '\0');
    body.resize(data.size());
    return body;
}

bool canReferenceBody(const std::string& body) {
    if (body.size() < REFERENCE_MIN_BYTES)
        return false;
    const auto address = reinterpret_cast<std::uintptr_t>(body.data());
    if (address % WORD != 0 || body.capacity() < roundUpToWord(body.size()))
        return false;
    // The tail up to a whole word goes on the wire: it must be zero, never stale heap bytes.
    for (std::size_t i = body.size(); i < roundUpToWord(body.size()); ++i)
        if (body.data()[i] != '\0')
            return false;
    return true;
}

} // namespace depot::protocol
