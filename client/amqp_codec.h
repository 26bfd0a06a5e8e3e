#pragma once
// Between the client library's values and rabbitmq-c's (the amqp:// transport): basic
// properties, field tables, x-death, and AMQP's reply codes. Pure functions, no connection.
//
// rabbitmq-c's values point into memory they do not own. An Encoded* points into the table or
// properties it was made from (no copy per publish): both must outlive the call it is passed to.

#include "broker/core/error.h"
#include "broker/core/field_table.h"
#include "broker/core/message.h"

#include <amqp.h>

#include <string>
#include <string_view>
#include <vector>

namespace depot::client::amqp {

inline amqp_bytes_t bytes(std::string_view s) {
    return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
inline std::string text(amqp_bytes_t b) {
    return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

class EncodedTable {
public:
    explicit EncodedTable(const core::FieldTable& table);
    explicit EncodedTable(core::FieldTable&&) = delete; // it would point into a temporary
    EncodedTable(const EncodedTable&) = delete;
    EncodedTable& operator=(const EncodedTable&) = delete;
    const amqp_table_t& table() const { return table_; }

private:
    std::vector<amqp_table_entry_t> entries_;
    amqp_table_t table_{};
};

class EncodedProperties {
public:
    explicit EncodedProperties(const core::Properties& properties);
    explicit EncodedProperties(core::Properties&&) = delete;
    EncodedProperties(const EncodedProperties&) = delete;
    EncodedProperties& operator=(const EncodedProperties&) = delete;
    const amqp_basic_properties_t* get() const { return &properties_; }

private:
    std::string expiration_;
    EncodedTable headers_;
    amqp_basic_properties_t properties_{};
};

// Scalars are kept; nested tables and arrays have no FieldValue and are left out (x-death is
// read by deathsOf).
core::FieldTable decodeTable(const amqp_table_t& table);
core::Properties decodeProperties(const amqp_basic_properties_t& properties);
// RabbitMQ's x-death header, newest first. The time of death is not kept (the core's is a
// steady-clock time point, meaningless outside the broker).
std::vector<core::DeathRecord> deathsOf(const amqp_basic_properties_t& properties);

// AMQP's reply code (404, 406, ...) as the ErrorCode it already is; an unknown one is
// INTERNAL_ERROR.
core::ErrorCode errorCodeOf(int replyCode);
// "NOT_FOUND - no queue 'q' in vhost '/'" already carries the name: RabbitMQ's reply text is the
// error's text, without the repeated prefix.
core::Error brokerError(int replyCode, const std::string& replyText);

} // namespace depot::client::amqp
