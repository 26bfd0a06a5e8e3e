// What is particular to the embedded: transport: the process-wide registry of named brokers.
// Everything else it does is covered, transport by transport, by transport_conformance_test.

#include "tests/client/client_helpers.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>

using depot::client::Connection;
using depot::tests::errorOf;
using depot::tests::readyCount;

namespace {

std::string uniqueName() {
    static std::atomic<int> next{0};
    return "embedded:registry-" + std::to_string(++next);
}

} // namespace

TEST_CASE("connections to one embedded name share a broker, other names do not") {
    const std::string name = uniqueName();
    auto a = Connection::open(name);
    auto b = Connection::open(name);
    auto elsewhere = Connection::open(uniqueName());
    a->declareQueue("shared");
    (void)a->publishConfirmed("", "shared", "x");
    CHECK(readyCount(*b, "shared") == 1);
    CHECK(errorOf([&] { (void)readyCount(*elsewhere, "shared"); }) == "BROKER/NOT_FOUND");
}

TEST_CASE("an embedded broker lives while a connection uses it, then starts afresh") {
    const std::string name = uniqueName();
    {
        auto first = Connection::open(name);
        first->declareQueue("kept");
        {
            auto second = Connection::open(name);
            second->declareQueue("also-kept");
        }
        CHECK(readyCount(*first, "also-kept") == 0); // still there: `first` kept the broker
    }
    auto later = Connection::open(name);
    CHECK(errorOf([&] { (void)readyCount(*later, "kept"); }) == "BROKER/NOT_FOUND");
}

TEST_CASE("embedded: is the process's default broker") {
    auto a = Connection::open("embedded:");
    auto b = Connection::open("embedded:");
    a->declareQueue("default-broker-test");
    CHECK(readyCount(*b, "default-broker-test") == 0);
    CHECK(b->deleteQueue("default-broker-test") == 0);
}
