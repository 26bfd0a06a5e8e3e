#pragma once
// Conversions between the core's value types and the wire schema, shared by depotd and the
// client. Reading untrusted input throws ProtocolError (a field the schema allows but the core
// does not: an unknown enum value or union member); Cap'n Proto's own checks throw
// kj::Exception. Callers turn both into an error frame.

#include "broker/core/error.h"
#include "broker/core/exchange.h"
#include "broker/core/field_table.h"
#include "broker/core/message.h"
#include "protocol/wire.capnp.h"

#include <capnp/message.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace depot::protocol {

class ProtocolError : public std::runtime_error {
public:
    ProtocolError(core::ErrorCode code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    core::ErrorCode code() const { return code_; }

private:
    core::ErrorCode code_;
};

inline std::string text(capnp::Text::Reader t) {
    return std::string(t.cStr(), t.size());
}
inline std::string_view view(capnp::Text::Reader t) {
    return std::string_view(t.cStr(), t.size());
}
inline capnp::Text::Reader wireText(std::string_view s) {
    return capnp::Text::Reader(s.data(), s.size());
}

core::FieldTable fromWire(capnp::List<wire::Field>::Reader fields);
void toWire(const core::FieldTable& table, capnp::List<wire::Field>::Builder fields);

core::Properties fromWire(wire::Properties::Reader properties);
// The same into `out`, every field of which it sets: what a publish builds its message in
// place with, and what a client fills a reused Delivery with (its strings keep their capacity).
void readProperties(wire::Properties::Reader properties, core::Properties& out);
void readProperties(wire::Properties::Reader properties, core::PackedProperties& out);
void toWire(const core::Properties& properties, wire::Properties::Builder out);
void toWire(const core::PackedProperties& properties, wire::Properties::Builder out);

std::vector<core::DeathRecord> fromWire(capnp::List<wire::Death>::Reader deaths);
void toWire(const std::vector<core::DeathRecord>& deaths, capnp::List<wire::Death>::Builder out);

core::ExchangeType fromWire(wire::ExchangeType type);
wire::ExchangeType toWire(core::ExchangeType type);

core::ErrorCode fromWire(wire::ErrorCode code);
wire::ErrorCode toWire(core::ErrorCode code);

// A body copied out of a frame into a string whose allocation is word-aligned and zero-padded
// to a whole word, so that setBody below can later send it without copying.
std::string paddedBody(capnp::Data::Reader data);

// True when `body` is large enough to be worth a segment of its own and laid out as paddedBody
// makes it: word-aligned, with the bytes past its end up to a whole word allocated and zero
// (they go on the wire, so they must hold nothing).
bool canReferenceBody(const std::string& body);

// Sets the `body` field of `target`, a builder in `message`: by reference when
// canReferenceBody, else by copy. Returns the referenced bytes' address (for
// Outbox::append), or nullptr when copied.
template <class Builder>
const void* setBody(capnp::MessageBuilder& message, Builder target, const std::string& body) {
    const capnp::Data::Reader data(reinterpret_cast<const kj::byte*>(body.data()), body.size());
    if (canReferenceBody(body)) {
        target.adoptBody(message.getOrphanage().referenceExternalData(data));
        return body.data();
    }
    target.setBody(data);
    return nullptr;
}

// "NOT_FOUND - ..." from an error frame.
core::Error fromWire(wire::Error::Reader error);

} // namespace depot::protocol
