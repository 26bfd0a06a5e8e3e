// Message properties through the wire: what depotd reads from a publish (into the packed form a
// queued message keeps) and writes into a delivery must be exactly what the publisher set. The
// packed texts lie back to back without NUL terminators, which capnp's Text::Reader requires
// (checked in debug builds: this test runs in the sanitizer build too).

#include "tests/support/core_helpers.h"

#include "protocol/convert.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <string>

using depot::core::PackedProperties;
using depot::core::Properties;

TEST_CASE("properties read from the wire into their packed form are written back unchanged") {
    const Properties sent = depot::tests::everyProperty();
    capnp::MallocMessageBuilder publish;
    depot::protocol::toWire(sent, publish.initRoot<depot::wire::Properties>());

    PackedProperties packed;
    depot::protocol::readProperties(publish.getRoot<depot::wire::Properties>().asReader(), packed);
    capnp::MallocMessageBuilder deliver;
    depot::protocol::toWire(packed, deliver.initRoot<depot::wire::Properties>());

    const Properties received =
        depot::protocol::fromWire(deliver.getRoot<depot::wire::Properties>().asReader());
    depot::tests::checkSameProperties(received, sent);
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
    depot::tests::checkSameProperties(depot::protocol::fromWire(out.asReader()), sent);
}
