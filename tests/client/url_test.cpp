// Broker URLs: embedded:[NAME] and depot://user:pass@host:port/vhost with AMQP-URI defaults and
// percent-escapes; anything else is INVALID_ARGUMENT before a connection is tried.

#include "tests/client/client_helpers.h"

#include "client/url.h"

#include <doctest/doctest.h>

#include <string>

using depot::client::BrokerUrl;
using depot::tests::errorOf;

TEST_CASE("embedded URLs name an in-process broker") {
    const BrokerUrl plain = BrokerUrl::parse("embedded:");
    CHECK(plain.scheme == BrokerUrl::Scheme::EMBEDDED);
    CHECK(plain.name.empty());
    CHECK(plain.vhost == "/");
    const BrokerUrl named = BrokerUrl::parse("embedded:test-7");
    CHECK(named.scheme == BrokerUrl::Scheme::EMBEDDED);
    CHECK(named.name == "test-7");
    CHECK(named.redacted() == "embedded:test-7");
    CHECK(errorOf([] { (void)BrokerUrl::parse("embedded:two words"); }) == "INVALID_ARGUMENT");
}

TEST_CASE("depot URLs: every part is optional") {
    const BrokerUrl defaults = BrokerUrl::parse("depot://");
    CHECK(defaults.scheme == BrokerUrl::Scheme::DEPOT);
    CHECK(defaults.username == "guest");
    CHECK(defaults.password == "guest");
    CHECK(defaults.host == "127.0.0.1");
    CHECK(defaults.port == 7672);
    CHECK(defaults.vhost == "/");

    const BrokerUrl hostOnly = BrokerUrl::parse("depot://broker.local");
    CHECK(hostOnly.host == "broker.local");
    CHECK(hostOnly.port == 7672);
    CHECK(BrokerUrl::parse("depot://broker.local/").vhost == "/");
    CHECK(BrokerUrl::parse("depot://:9000").port == 9000);
    CHECK(BrokerUrl::parse("depot://:9000").host == "127.0.0.1");
}

TEST_CASE("depot URLs: user, password, host, port and vhost, with percent-escapes") {
    const BrokerUrl url = BrokerUrl::parse("depot://ali%40ce:p%3Ass@10.0.0.5:7000/staging");
    CHECK(url.username == "ali@ce");
    CHECK(url.password == "p:ss");
    CHECK(url.host == "10.0.0.5");
    CHECK(url.port == 7000);
    CHECK(url.vhost == "staging");
    CHECK(BrokerUrl::parse("depot://h/%2F").vhost == "/");
    CHECK(BrokerUrl::parse("depot://h/%2Fprod").vhost == "/prod");
    CHECK(BrokerUrl::parse("DEPOT://h").host == "h");

    const BrokerUrl userOnly = BrokerUrl::parse("depot://bob@h");
    CHECK(userOnly.username == "bob");
    CHECK(userOnly.password == "guest");

    const BrokerUrl v6 = BrokerUrl::parse("depot://[::1]:7001/v");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 7001);
}

TEST_CASE("amqp URLs name an AMQP 0-9-1 broker: the same parts, port 5672 by default") {
    const BrokerUrl defaults = BrokerUrl::parse("amqp://");
    CHECK(defaults.scheme == BrokerUrl::Scheme::AMQP);
    CHECK(defaults.port == 5672);
    CHECK(defaults.host == "127.0.0.1");
    CHECK(defaults.vhost == "/");
    const BrokerUrl url = BrokerUrl::parse("AMQP://app:s%40cret@rabbit:5673/orders");
    CHECK(url.scheme == BrokerUrl::Scheme::AMQP);
    CHECK(url.username == "app");
    CHECK(url.password == "s@cret");
    CHECK(url.host == "rabbit");
    CHECK(url.port == 5673);
    CHECK(url.vhost == "orders");
    CHECK(url.redacted() == "amqp://app@rabbit:5673/orders");
    CHECK(BrokerUrl::parse("amqp://h/").vhost == "/");
}

TEST_CASE("redacted() drops the password and parses back") {
    const BrokerUrl url = BrokerUrl::parse("depot://alice:secret@h:7000/%2Fprod");
    const std::string shown = url.redacted();
    CHECK(shown == "depot://alice@h:7000/%2Fprod");
    CHECK(shown.find("secret") == std::string::npos);
    const BrokerUrl back = BrokerUrl::parse(shown);
    CHECK(back.vhost == "/prod");
    CHECK(back.host == "h");
    CHECK(BrokerUrl::parse("depot://[::1]:1/").redacted() == "depot://guest@[::1]:1/%2F");
}

TEST_CASE("bad URLs are INVALID_ARGUMENT") {
    for (const char* bad :
         {"", "embedded", "amqps://h", "http://h", "amqp://h:0", "depot://h:0", "depot://h:65536",
          "depot://h:12x", "depot://h/a/b", "depot://h/%zz", "depot://h/%2",
          "depot://h?heartbeat=5", "depot://@h", "depot://[::1", "depot://[::1]x"}) {
        CAPTURE(bad);
        CHECK(errorOf([bad] { (void)BrokerUrl::parse(bad); }) == "INVALID_ARGUMENT");
    }
}
