#pragma once
// The brokers every client test runs against, so that one test body proves the same behaviour
// over every transport. Each run gets a fresh broker: tests share no state.

#include "tests/net/test_server.h"
#include "tests/support/rabbitmq.h"

#include "client/connection.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

namespace depot::tests {

inline std::string freshEmbeddedUrl() {
    static std::atomic<int> next{0};
    return "embedded:test-" + std::to_string(++next);
}

// Runs body(url) once per transport: an in-process broker (embedded:), a depotd server started
// for this body alone (depot:// on a kernel-chosen loopback port), and a vhost of its own on
// the test RabbitMQ node (amqp://, when ctest started one). A failure names the URL.
template <class F> void forEachUrl(F&& body) {
    {
        const std::string url = freshEmbeddedUrl();
        CAPTURE(url);
        body(url);
    }
    {
        TestServer server;
        const std::string url = server.url();
        CAPTURE(url);
        body(url);
    }
    if (const auto amqp = freshAmqpUrl()) {
        const std::string url = *amqp;
        CAPTURE(url);
        body(url);
    }
}

inline bool isAmqp(const std::string& url) {
    return url.rfind("amqp://", 0) == 0;
}

// Whether a confirmed publish reached `expected` queues. Depot says how many; AMQP does not
// (Confirmation::queues is empty there, and must be), so over amqp:// only what the queues
// receive shows the routing.
inline bool reached(const client::Confirmation& confirmation, std::uint32_t expected,
                    const std::string& url) {
    if (isAmqp(url))
        return !confirmation.queues.has_value();
    return confirmation.queues == expected;
}

} // namespace depot::tests
