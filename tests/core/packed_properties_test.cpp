// PackedProperties: what a queued message keeps of its properties, all eight text properties in
// one string. Packing and unpacking must give back exactly what was published.

#include "tests/support/core_helpers.h"

#include "broker/core/message.h"

#include <doctest/doctest.h>

#include <string>

using depot::core::DeliveryMode;
using depot::core::Milliseconds;
using depot::core::PackedProperties;
using depot::core::Properties;
using depot::core::TextProperty;

TEST_CASE("PackedProperties keeps every property, each text where it belongs") {
    const Properties p = depot::tests::everyProperty();
    const PackedProperties packed(p);
    CHECK(packed.contentType() == "application/json");
    CHECK(packed.contentEncoding() == "gzip");
    CHECK(packed.correlationId() == "c-42");
    CHECK(packed.replyTo() == "amq.gen-reply");
    CHECK(packed.messageId() == std::string(200, 'm'));
    CHECK(packed.type() == "OrderPlaced");
    CHECK(packed.userId() == "guest");
    CHECK(packed.appId() == "orders");
    CHECK(packed.expiration == Milliseconds(1500));
    CHECK(packed.deliveryMode == DeliveryMode::PERSISTENT);
    CHECK(packed.priority == 3);
    CHECK(packed.timestamp == 1'700'000'000);
    CHECK(packed.headers == p.headers);
    depot::tests::checkSameProperties(packed.unpack(), p);
}

TEST_CASE("PackedProperties: empty texts between set ones, long texts, and a copy stay apart") {
    Properties p;
    p.correlationId = std::string(300, 'c'); // past any small-string buffer
    p.appId = "last";
    PackedProperties packed(p);
    CHECK(packed.contentType().empty());
    CHECK(packed.replyTo().empty());
    CHECK(packed.correlationId() == std::string(300, 'c'));
    CHECK(packed.appId() == "last");
    CHECK(packed.deliveryMode == DeliveryMode::TRANSIENT);
    CHECK_FALSE(packed.expiration.has_value());

    PackedProperties copy = packed; // views point into each one's own buffer
    packed = PackedProperties();
    CHECK(packed.correlationId().empty());
    CHECK(copy.correlationId() == std::string(300, 'c'));
    CHECK(copy.appId() == "last");

    const PackedProperties none;
    for (int i = 0; i < 8; ++i)
        CHECK(none.text(static_cast<TextProperty>(i)).empty());
}
