// Message properties through the wire: what depotd reads from a publish (into the packed form a
// queued message keeps) and writes into a delivery must be exactly what the publisher set. The
// packed texts lie back to back without NUL terminators, which capnp's Text::Reader requires
// (checked in debug builds: this test runs in the sanitizer build too).

#include "protocol/convert.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <string>

using depot::core::DeliveryMode;
using depot::core::FieldTable;
using depot::core::Milliseconds;
using depot::core::PackedProperties;
using depot::core::Properties;
using depot::core::TextProperty;

namespace {

Properties everything() {
    Properties p;
    p.contentType = "application/json";
    p.contentEncoding = "gzip";
    p.correlationId = "c-42";
    p.replyTo = "amq.gen-reply";
    p.messageId = std::string(200, 'm');
    p.type = "OrderPlaced";
    p.userId = "guest";
    p.appId = "orders";
    p.expiration = Milliseconds(1500);
    p.deliveryMode = DeliveryMode::PERSISTENT;
    p.priority = 3;
    p.timestamp = 1'700'000'000;
    p.headers = FieldTable{{"region", std::string("eu")}};
    return p;
}

void checkSame(const Properties& a, const Properties& b) {
    for (int i = 0; i < 8; ++i)
        CHECK(a.text(static_cast<TextProperty>(i)) == b.text(static_cast<TextProperty>(i)));
    CHECK(a.expiration == b.expiration);
    CHECK(a.deliveryMode == b.deliveryMode);
    CHECK(a.priority == b.priority);
    CHECK(a.timestamp == b.timestamp);
    CHECK(a.headers == b.headers);
}

} // namespace

TEST_CASE("properties read from the wire into their packed form are written back unchanged") {
    const Properties sent = everything();
    capnp::MallocMessageBuilder publish;
    depot::protocol::toWire(sent, publish.initRoot<depot::wire::Properties>());

    PackedProperties packed;
    depot::protocol::readProperties(publish.getRoot<depot::wire::Properties>().asReader(), packed);
    capnp::MallocMessageBuilder deliver;
    depot::protocol::toWire(packed, deliver.initRoot<depot::wire::Properties>());

    const Properties received =
        depot::protocol::fromWire(deliver.getRoot<depot::wire::Properties>().asReader());
    checkSame(received, sent);
}

TEST_CASE("unset properties stay unset through the packed form") {
    Properties sent;
    sent.replyTo = "only-this";
    capnp::MallocMessageBuilder publish;
    depot::protocol::toWire(sent, publish.initRoot<depot::wire::Properties>());
    PackedProperties packed;
    depot::protocol::readProperties(publish.getRoot<depot::wire::Properties>().asReader(), packed);
    capnp::MallocMessageBuilder deliver;
    auto out = deliver.initRoot<depot::wire::Properties>();
    depot::protocol::toWire(packed, out);
    CHECK_FALSE(out.asReader().hasContentType());
    CHECK_FALSE(out.asReader().hasAppId());
    CHECK(depot::protocol::view(out.asReader().getReplyTo()) == "only-this");
    checkSame(depot::protocol::fromWire(out.asReader()), sent);
}
