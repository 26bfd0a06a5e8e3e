#include "client/amqp_codec.h"

#include <charconv>
#include <string_view>

namespace depot::client::amqp {
namespace {

using core::FieldValue;

std::optional<std::int64_t> integerOf(const amqp_field_value_t& v) {
    switch (v.kind) {
    case AMQP_FIELD_KIND_I8:
        return v.value.i8;
    case AMQP_FIELD_KIND_U8:
        return v.value.u8;
    case AMQP_FIELD_KIND_I16:
        return v.value.i16;
    case AMQP_FIELD_KIND_U16:
        return v.value.u16;
    case AMQP_FIELD_KIND_I32:
        return v.value.i32;
    case AMQP_FIELD_KIND_U32:
        return v.value.u32;
    case AMQP_FIELD_KIND_I64:
        return v.value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        return static_cast<std::int64_t>(v.value.u64);
    default:
        return std::nullopt;
    }
}

std::optional<FieldValue> scalarOf(const amqp_field_value_t& v) {
    if (auto i = integerOf(v))
        return FieldValue(*i);
    switch (v.kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        return FieldValue(v.value.boolean != 0);
    case AMQP_FIELD_KIND_F32:
        return FieldValue(static_cast<double>(v.value.f32));
    case AMQP_FIELD_KIND_F64:
        return FieldValue(v.value.f64);
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return FieldValue(text(v.value.bytes));
    case AMQP_FIELD_KIND_VOID:
        return FieldValue(std::monostate{});
    default:
        return std::nullopt; // decimal, table, array
    }
}

const amqp_field_value_t* findIn(const amqp_table_t& table, std::string_view name) {
    for (int i = 0; i < table.num_entries; ++i) {
        const amqp_table_entry_t& e = table.entries[i];
        if (std::string_view(static_cast<const char*>(e.key.bytes), e.key.len) == name)
            return &e.value;
    }
    return nullptr;
}

std::string stringIn(const amqp_table_t& table, std::string_view name) {
    const amqp_field_value_t* v = findIn(table, name);
    return v != nullptr && (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES)
               ? text(v->value.bytes)
               : std::string();
}

std::optional<core::Milliseconds> millisecondsOf(const std::string& s) {
    std::int64_t ms = 0;
    const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), ms);
    if (s.empty() || error != std::errc() || end != s.data() + s.size() || ms < 0)
        return std::nullopt;
    return core::Milliseconds(ms);
}

} // namespace

EncodedTable::EncodedTable(const core::FieldTable& table) {
    entries_.reserve(table.size());
    for (const auto& [name, value] : table) {
        amqp_table_entry_t e{};
        e.key = bytes(name);
        if (std::holds_alternative<bool>(value)) {
            e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
            e.value.value.boolean = std::get<bool>(value) ? 1 : 0;
        } else if (std::holds_alternative<std::int64_t>(value)) {
            e.value.kind = AMQP_FIELD_KIND_I64;
            e.value.value.i64 = std::get<std::int64_t>(value);
        } else if (std::holds_alternative<double>(value)) {
            e.value.kind = AMQP_FIELD_KIND_F64;
            e.value.value.f64 = std::get<double>(value);
        } else if (std::holds_alternative<std::string>(value)) {
            e.value.kind = AMQP_FIELD_KIND_UTF8;
            e.value.value.bytes = bytes(std::get<std::string>(value));
        } else {
            e.value.kind = AMQP_FIELD_KIND_VOID;
        }
        entries_.push_back(e);
    }
    table_.num_entries = static_cast<int>(entries_.size());
    table_.entries = entries_.empty() ? nullptr : entries_.data();
}

EncodedProperties::EncodedProperties(const core::Properties& p)
    : expiration_(p.expiration ? std::to_string(p.expiration->count()) : std::string()),
      headers_(p.headers) {
    amqp_basic_properties_t& out = properties_;
    auto set = [&out](amqp_flags_t flag, amqp_bytes_t& field, const std::string& value) {
        if (value.empty())
            return;
        out._flags |= flag;
        field = bytes(value);
    };
    set(AMQP_BASIC_CONTENT_TYPE_FLAG, out.content_type, p.contentType);
    set(AMQP_BASIC_CONTENT_ENCODING_FLAG, out.content_encoding, p.contentEncoding);
    set(AMQP_BASIC_CORRELATION_ID_FLAG, out.correlation_id, p.correlationId);
    set(AMQP_BASIC_REPLY_TO_FLAG, out.reply_to, p.replyTo);
    set(AMQP_BASIC_MESSAGE_ID_FLAG, out.message_id, p.messageId);
    set(AMQP_BASIC_TYPE_FLAG, out.type, p.type);
    set(AMQP_BASIC_USER_ID_FLAG, out.user_id, p.userId);
    set(AMQP_BASIC_APP_ID_FLAG, out.app_id, p.appId);
    set(AMQP_BASIC_EXPIRATION_FLAG, out.expiration, expiration_);
    out._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    out.delivery_mode = static_cast<std::uint8_t>(p.deliveryMode);
    if (p.priority != 0) {
        out._flags |= AMQP_BASIC_PRIORITY_FLAG;
        out.priority = p.priority;
    }
    if (p.timestamp != 0) {
        out._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        out.timestamp = static_cast<std::uint64_t>(p.timestamp);
    }
    if (!p.headers.empty()) {
        out._flags |= AMQP_BASIC_HEADERS_FLAG;
        out.headers = headers_.table();
    }
}

core::FieldTable decodeTable(const amqp_table_t& table) {
    core::FieldTable result;
    for (int i = 0; i < table.num_entries; ++i) {
        const amqp_table_entry_t& e = table.entries[i];
        if (auto value = scalarOf(e.value))
            result.set(text(e.key), std::move(*value));
    }
    return result;
}

core::Properties decodeProperties(const amqp_basic_properties_t& in) {
    core::Properties p;
    auto get = [&in](amqp_flags_t flag, amqp_bytes_t field) {
        return (in._flags & flag) != 0 ? text(field) : std::string();
    };
    p.contentType = get(AMQP_BASIC_CONTENT_TYPE_FLAG, in.content_type);
    p.contentEncoding = get(AMQP_BASIC_CONTENT_ENCODING_FLAG, in.content_encoding);
    p.correlationId = get(AMQP_BASIC_CORRELATION_ID_FLAG, in.correlation_id);
    p.replyTo = get(AMQP_BASIC_REPLY_TO_FLAG, in.reply_to);
    p.messageId = get(AMQP_BASIC_MESSAGE_ID_FLAG, in.message_id);
    p.type = get(AMQP_BASIC_TYPE_FLAG, in.type);
    p.userId = get(AMQP_BASIC_USER_ID_FLAG, in.user_id);
    p.appId = get(AMQP_BASIC_APP_ID_FLAG, in.app_id);
    p.expiration = millisecondsOf(get(AMQP_BASIC_EXPIRATION_FLAG, in.expiration));
    if ((in._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) != 0 && in.delivery_mode == 2)
        p.deliveryMode = core::DeliveryMode::PERSISTENT;
    if ((in._flags & AMQP_BASIC_PRIORITY_FLAG) != 0)
        p.priority = in.priority;
    if ((in._flags & AMQP_BASIC_TIMESTAMP_FLAG) != 0)
        p.timestamp = static_cast<std::int64_t>(in.timestamp);
    if ((in._flags & AMQP_BASIC_HEADERS_FLAG) != 0)
        p.headers = decodeTable(in.headers);
    return p;
}

std::vector<core::DeathRecord> deathsOf(const amqp_basic_properties_t& in) {
    std::vector<core::DeathRecord> deaths;
    if ((in._flags & AMQP_BASIC_HEADERS_FLAG) == 0)
        return deaths;
    const amqp_field_value_t* xDeath = findIn(in.headers, "x-death");
    if (xDeath == nullptr || xDeath->kind != AMQP_FIELD_KIND_ARRAY)
        return deaths;
    const amqp_array_t& entries = xDeath->value.array;
    for (int i = 0; i < entries.num_entries; ++i) {
        if (entries.entries[i].kind != AMQP_FIELD_KIND_TABLE)
            continue;
        const amqp_table_t& t = entries.entries[i].value.table;
        core::DeathRecord d;
        d.queue = stringIn(t, "queue");
        const std::string reason = stringIn(t, "reason");
        d.reason = reason == "expired"  ? core::DeathReason::EXPIRED
                   : reason == "maxlen" ? core::DeathReason::MAXLEN
                                        : core::DeathReason::REJECTED;
        if (const amqp_field_value_t* count = findIn(t, "count"))
            d.count = static_cast<std::uint64_t>(integerOf(*count).value_or(1));
        d.exchange = stringIn(t, "exchange");
        if (const amqp_field_value_t* keys = findIn(t, "routing-keys");
            keys != nullptr && keys->kind == AMQP_FIELD_KIND_ARRAY)
            for (int k = 0; k < keys->value.array.num_entries; ++k)
                if (keys->value.array.entries[k].kind == AMQP_FIELD_KIND_UTF8 ||
                    keys->value.array.entries[k].kind == AMQP_FIELD_KIND_BYTES)
                    d.routingKeys.push_back(text(keys->value.array.entries[k].value.bytes));
        d.originalExpiration = millisecondsOf(stringIn(t, "original-expiration"));
        deaths.push_back(std::move(d));
    }
    return deaths;
}

core::ErrorCode errorCodeOf(int replyCode) {
    switch (replyCode) {
    case 403:
    case 404:
    case 405:
    case 406:
    case 501:
    case 502:
    case 503:
    case 505:
    case 506:
    case 530:
    case 540:
    case 541:
        return static_cast<core::ErrorCode>(replyCode);
    default:
        return core::ErrorCode::INTERNAL_ERROR;
    }
}

core::Error brokerError(int replyCode, const std::string& replyText) {
    const core::ErrorCode code = errorCodeOf(replyCode);
    const std::string prefix = std::string(core::errorCodeName(code)) + " - ";
    std::string message =
        replyText.rfind(prefix, 0) == 0 ? replyText.substr(prefix.size()) : replyText;
    if (code == core::ErrorCode::INTERNAL_ERROR)
        message += " (AMQP reply code " + std::to_string(replyCode) + ")";
    return core::Error{code, std::move(message)};
}

} // namespace depot::client::amqp
