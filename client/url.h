#pragma once
// Broker URLs: `embedded:` (an in-process broker shared by every connection of the process that
// names it; `embedded:NAME` for a separate one), `depot://user:pass@host:port/vhost` (depotd;
// every part optional: guest:guest@127.0.0.1:7672, vhost "/"), and
// `amqp://user:pass@host:port/vhost` (RabbitMQ or any AMQP 0-9-1 broker; the same defaults but port
// 5672). Percent-escapes are decoded in the user, password and vhost ("%2F" is "/", as in AMQP
// URIs). An empty path keeps the vhost "/" for both (RabbitMQ's URI spec would read "amqp://host/"
// as the vhost "", which no broker has: docs/compatibility.md).

#include <cstdint>
#include <string>
#include <string_view>

namespace depot::client {

struct BrokerUrl {
    enum class Scheme { EMBEDDED, DEPOT, AMQP };
    Scheme scheme = Scheme::EMBEDDED;
    std::string name; // embedded only: which in-process broker ("" = the default one)
    std::string username = "guest";
    std::string password = "guest";
    std::string host = "127.0.0.1";
    std::uint16_t port = 7672;
    std::string vhost = "/";

    // Throws Error(INVALID_ARGUMENT) with the reason.
    static BrokerUrl parse(std::string_view url);
    // The URL without the password, for logs.
    std::string redacted() const;
};

} // namespace depot::client
