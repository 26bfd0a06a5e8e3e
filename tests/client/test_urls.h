#pragma once
// The brokers every client test runs against, so that one test body proves the same behaviour
// over every transport. Each run gets a fresh broker: tests share no state.

#include "tests/net/test_server.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

namespace depot::tests {

inline std::string freshEmbeddedUrl() {
    static std::atomic<int> next{0};
    return "embedded:test-" + std::to_string(++next);
}

// Runs body(url) once per transport: an in-process broker (embedded:), then a depotd server
// started for this body alone (depot:// on a kernel-chosen loopback port). A failure names
// the URL.
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
}

} // namespace depot::tests
